"""berg-things-eeg2: the reference toolkit's THINGS EEG2 models (63 channels x 140 times)."""

__version__ = "0.1.0"

#: Modules other plugins may import (tests/test_layers.py): the family's facts.
PUBLIC_MODULES = ("layout",)

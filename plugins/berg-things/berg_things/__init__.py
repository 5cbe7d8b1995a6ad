"""berg-things: the THINGS-fMRI1 ViT-B/32 whole-brain encoding model as a berg plugin."""

__version__ = "0.1.0"

#: The modules other plugins may import (berg-things' public API; the rest is private):
#: :mod:`berg_things.card` (card, file layout, voxel count, ROI names) and :mod:`berg_things.model`
#: (``VIT_NODES``). Depend on berg-things with a version bound.
PUBLIC_MODULES = ("card", "model")

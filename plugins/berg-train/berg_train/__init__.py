"""berg-train: train linear fMRI encoding models on NSD and THINGS-fMRI1 with berg.

The public API (imported lazily, so ``import berg_train`` and berg's plugin discovery stay
cheap)::

    from berg_train import train_nsd, train_things, TrainConfig

    result = train_nsd("/data/nsd", subject=1, berg_dir="/data/berg", backbone="alexnet_untrained")
    print("\\n".join(result.summary_lines()))

Lower-level pieces: :class:`NSDDataset` / :class:`ThingsDataset` (readers of the published
formats), :func:`train` (the engine), :class:`Backbone` (a user's own feature network),
:func:`simulate_nsd` / :func:`simulate_things` (small simulated datasets in those formats).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Modules other plugins may import (tests/test_layers.py): berg-distributed runs these trainers
#: with its own runner.
PUBLIC_MODULES = ("api", "runner", "things_eeg2")

_EXPORTS = {
    "Backbone": "berg_train.backbones",
    "TrainConfig": "berg_train.engine",
    "TrainResult": "berg_train.engine",
    "train": "berg_train.engine",
    "train_nsd": "berg_train.api",
    "train_things": "berg_train.api",
    "NSDDataset": "berg_train.datasets.nsd",
    "ThingsDataset": "berg_train.datasets.things",
    "simulate_nsd": "berg_train.simulate",
    "simulate_things": "berg_train.simulate",
    "run_demo": "berg_train.demo",
    "EEG2TrainConfig": "berg_train.things_eeg2",
    "train_things_eeg2": "berg_train.things_eeg2",
    "ThingsEEG2Data": "berg_train.datasets.things_eeg2",
    "simulate_things_eeg2": "berg_train.simulate_eeg2",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'berg_train' has no attribute {name!r}")

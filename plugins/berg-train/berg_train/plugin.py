"""The ``berg`` entry point of berg-train: the ``berg train nsd``, ``berg train things``,
``berg train things-eeg2`` and ``berg demo`` commands.

Registration only: the commands' ``configure`` functions (in :mod:`berg_train.cli`) use argparse
alone, and their ``run`` functions are named by import path, so ``berg --help`` and
``berg list`` import neither torch nor the training engine.
"""

from __future__ import annotations

from collections.abc import Callable

from berg_core import hookimpl

__all__ = ["register_commands"]


@hookimpl
def register_commands(register: Callable[..., None]) -> None:
    """Register ``train nsd``, ``train things``, ``train things-eeg2`` and ``demo``."""
    register(
        "train nsd",
        "train an NSD fsaverage encoding model from the NSD files (berg-train)",
        "berg_train.cli:configure_nsd",
        "berg_train.cli:run_nsd",
    )
    register(
        "train things",
        "train a THINGS-fMRI1 encoding model from the THINGS files (berg-train)",
        "berg_train.cli:configure_things",
        "berg_train.cli:run_things",
    )
    register(
        "train things-eeg2",
        "train a THINGS EEG2 encoding model from the reference's prepared data (berg-train)",
        "berg_train.cli:configure_things_eeg2",
        "berg_train.cli:run_things_eeg2",
    )
    register(
        "demo",
        "simulate a small NSD subject, train, evaluate and encode with it, offline (berg-train)",
        "berg_train.cli:configure_demo",
        "berg_train.cli:run_demo",
    )

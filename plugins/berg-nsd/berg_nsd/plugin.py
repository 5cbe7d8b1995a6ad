"""The ``berg`` entry point of berg-nsd: registers the NSD fsaverage fMRI models.

Registration is declarative and cheap: cards, the selection schema, the metadata loader and an
import path to the loader (:func:`berg_nsd.model.load`). No torch, torchvision or scikit-learn is
imported here.
"""

from __future__ import annotations

from collections.abc import Callable

from berg_core import hookimpl
from berg_nsd.cards import CARDS
from berg_nsd.files import load_metadata
from berg_nsd.selection import NSDSelection

__all__ = [
    "register_metadata_loaders",
    "register_models",
    "register_selection_schemas",
]


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Register the three NSD fsaverage models with their cards and lazy loader."""
    for card in CARDS.values():
        register(card, "berg_nsd.model:load")


@hookimpl
def register_selection_schemas(register: Callable[..., None]) -> None:
    """Every model selects vertices with :class:`berg_nsd.selection.NSDSelection`."""
    for model_id in CARDS:
        register(model_id, NSDSelection)


@hookimpl
def register_metadata_loaders(register: Callable[..., None]) -> None:
    """Per-subject metadata is read from ``metadata/metadata_subject-SS.npy``."""
    for model_id in CARDS:
        register(model_id, load_metadata)

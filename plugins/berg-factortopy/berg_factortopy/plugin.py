"""The ``berg`` entry point of berg-factortopy.

Registers ``fmri-nsd_fsaverage-factortopy`` (card, berg-nsd's vertex selection schema, metadata
loader, lazy loader :func:`berg_factortopy.model.load`) and the commands ``berg train
factortopy`` and ``berg maps``. Nothing heavy is imported here: no torch, nilearn or matplotlib.
"""

from __future__ import annotations

from collections.abc import Callable

from berg_nsd.selection import NSDSelection

from berg_core import hookimpl
from berg_factortopy.card import CARD
from berg_factortopy.layout import MODEL_ID, load_metadata

__all__ = [
    "register_commands",
    "register_metadata_loaders",
    "register_models",
    "register_selection_schemas",
]


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Register the FactorTopy model."""
    register(CARD, "berg_factortopy.model:load")


@hookimpl
def register_selection_schemas(register: Callable[..., None]) -> None:
    """Vertices are selected as for every NSD fsaverage model (roi, lh_vertices, rh_vertices)."""
    register(MODEL_ID, NSDSelection)


@hookimpl
def register_metadata_loaders(register: Callable[..., None]) -> None:
    """Subject metadata: NSD's ``fmri`` entry plus the berg_dir checkpoint's accuracy."""
    register(MODEL_ID, load_metadata)


@hookimpl
def register_commands(register: Callable[..., None]) -> None:
    """``berg train factortopy`` and ``berg maps``."""
    register(
        "train factortopy",
        "train a FactorTopy encoder (fmri-nsd_fsaverage-factortopy) on Algonauts 2023 data",
        "berg_factortopy.cli:configure_train",
        "berg_factortopy.cli:run_train",
    )
    register(
        "maps",
        "brain maps (GIFTI, PNG) of what each vertex of a FactorTopy checkpoint reads",
        "berg_factortopy.cli:configure_maps",
        "berg_factortopy.cli:run_maps",
    )

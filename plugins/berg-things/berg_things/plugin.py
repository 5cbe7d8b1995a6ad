"""berg hook implementations of berg-things. Imports no torch: the model is built lazily."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from berg_core import ModelCard, hookimpl
from berg_core.files import load_model_file
from berg_things.card import CARD, METADATA_FILE, MODEL_ID


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Register ``fmri-things_fmri_1-vit_b_32``."""
    register(CARD, "berg_things.model:load")


@hookimpl
def register_selection_schemas(register: Callable[..., None]) -> None:
    """Register the ROI-list / voxel-mask selection schema."""
    register(MODEL_ID, "berg_things.selection:ThingsSelection")


@hookimpl
def register_metadata_loaders(register: Callable[..., None]) -> None:
    """Register the per-subject metadata reader."""
    register(MODEL_ID, load_metadata)


def load_metadata(card: ModelCard, berg_dir: Path, subject: int) -> dict[str, Any]:
    """Read ``metadata_sub-0S.npy`` safely (arrays and plain containers only)."""
    metadata = load_model_file(
        berg_dir, METADATA_FILE.format(subject=subject), card.model_id, subject
    )
    if not isinstance(metadata, dict):
        from berg_core import ModelLoadError

        raise ModelLoadError(
            f"{METADATA_FILE.format(subject=subject)} under {berg_dir} holds a "
            f"{type(metadata).__name__}, expected a dict"
        )
    return metadata

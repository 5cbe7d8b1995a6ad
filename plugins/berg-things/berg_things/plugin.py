"""berg hook implementations of berg-things. Imports no torch: the model is built lazily."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from berg_core import ModelCard, hookimpl
from berg_core.checks import Location, require_array, require_indices, require_mapping
from berg_core.files import load_model_file
from berg_things.card import CARD, METADATA_FILE, MODEL_ID, N_VOXELS, model_file


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
    """Read ``metadata_sub-0S.npy`` safely (arrays and plain containers only), then check it.

    What the model uses is checked (:func:`roi_table`): every ROI of ``metadata['roi']`` is a
    1-D integer array of voxel indices in ``0..211338``, and ``metadata['fmri']['voxel_coords']``
    (placing voxels in NIfTI output) is an integer ``(211339, 3)`` array.

    Raises
    ------
    ModelLoadError
        If the file is missing (the message says how to get it), unsafe or malformed.
    """
    metadata = load_model_file(
        berg_dir, METADATA_FILE.format(subject=subject), card.model_id, subject
    )
    root = Location(model_file(berg_dir, METADATA_FILE, subject), "metadata")
    require_mapping(metadata, root, ("fmri", "roi"))
    fmri = require_mapping(metadata["fmri"], root["fmri"], ("voxel_coords",))
    require_array(
        fmri["voxel_coords"],
        root["fmri"]["voxel_coords"],
        kind="integer",
        shape=(N_VOXELS, 3),
        what="of (i, j, k) voxel coordinates",
    )
    roi_table(metadata, root)
    return metadata


def roi_table(metadata: dict[str, Any], root: Location) -> dict[str, np.ndarray]:
    """Each ROI's voxel indices of ``metadata['roi']``, checked, as new int64 arrays.

    Parameters
    ----------
    metadata : dict
        A THINGS-fMRI1 metadata dict.
    root : Location
        Its location (file, ``"metadata"``), for error messages.

    Raises
    ------
    ModelLoadError
        If ``metadata['roi']`` is not a dict, or an ROI is not a 1-D integer array of voxel indices
        in ``0..211338`` (floats and booleans are refused: cast to indices they would select other
        voxels). The message names the file and the key path.
    """
    table = require_mapping(metadata.get("roi"), root["roi"])
    return {
        name: require_indices(indices, root["roi"][name], size=N_VOXELS, what="voxel indices")
        for name, indices in table.items()
    }

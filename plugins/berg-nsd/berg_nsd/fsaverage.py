"""Public facts of the NSD fsaverage models, for berg-nsd and the plugins built on it.

One definition of what other plugins (berg-factortopy, berg-train) need to know about NSD on
fsaverage: the surface's size and hemispheres, the ROI names of the metadata files (by atlas), the
layout of the model files under ``berg_dir``, and the readers of the weights and metadata files.
This is berg-nsd's public API for other plugins (listed in :data:`berg_nsd.PUBLIC_MODULES`); depend
on it with a version bound (``berg-nsd>=0.1,<0.2``). No torch here.

Weights and metadata are pickled dicts saved with ``np.save``; they are read only through
:func:`berg_core.safe_npy.load_pickled_npy`, which rebuilds numpy arrays and plain containers and
refuses anything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from berg_core import Dim, ModelCard, ModelLoadError, Output
from berg_core.checks import Location, require_indices, require_mapping
from berg_core.files import require_file
from berg_core.safe_npy import load_pickled_npy

__all__ = [
    "HEMISPHERES",
    "METADATA_FILE",
    "METADATA_KEYS",
    "MODELS_DIR",
    "N_VERTICES",
    "OUTPUTS",
    "ROIS",
    "ROI_ALIASES",
    "ROI_ATLASES",
    "WEIGHTS_FILE",
    "WEIGHT_KEYS",
    "file_path",
    "load_metadata",
    "load_weights",
    "model_dir",
    "require",
    "roi_tables",
]

#: Vertices per hemisphere of FreeSurfer's fsaverage surface (ico7).
N_VERTICES = 163_842
#: The hemispheres, in output order.
HEMISPHERES = ("lh", "rh")
#: The labelled outputs of a model of fsaverage vertices: ``lh`` and ``rh``, one dim ``vertex``
#: each, whose coordinates are the selected vertex indices (a card's ``outputs=``).
OUTPUTS = tuple(
    Output(
        name=hemi,
        dims=(
            Dim(
                name="vertex",
                size=N_VERTICES,
                description="fsaverage vertex (coordinate: its index in the hemisphere)",
            ),
        ),
        description=f"{side} hemisphere",
    )
    for hemi, side in zip(HEMISPHERES, ("Left", "Right"), strict=True)
)

#: The ROI names of each NSD fsaverage atlas, in colour-table order (label value 1, 2, ...).
ROI_ATLASES: dict[str, tuple[str, ...]] = {
    "prf-visualrois": ("V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"),
    "floc-bodies": ("EBA", "FBA-1", "FBA-2", "mTL-bodies"),
    "floc-faces": ("OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"),
    "floc-places": ("OPA", "PPA", "RSC"),
    "floc-words": ("OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"),
    "streams": (
        "early",
        "midventral",
        "midlateral",
        "midparietal",
        "ventral",
        "lateral",
        "parietal",
    ),
    "nsdgeneral": ("nsdgeneral",),
}
#: ROI names of the metadata files (``metadata['fmri']['{lh,rh}_fsaverage_rois']``), atlas by atlas.
ROIS: tuple[str, ...] = tuple(name for names in ROI_ATLASES.values() for name in names)
#: Spellings accepted for compatibility: the reference card lists "OVWFA" for "OWFA".
ROI_ALIASES = {"OVWFA": "OWFA"}

#: Folder of the NSD fsaverage models under ``berg_dir`` (and the reference bucket).
MODELS_DIR = "encoding_models/modality-fmri/train_dataset-nsd_fsaverage"
#: A subject's weights file under the model's folder (:func:`model_dir`), a ``str.format`` template.
WEIGHTS_FILE = "encoding_models_weights/weights_subject-{subject:02d}.npy"
#: A subject's metadata file under the model's folder, a ``str.format`` template.
METADATA_FILE = "metadata/metadata_subject-{subject:02d}.npy"
#: Top-level keys of a weights file.
WEIGHT_KEYS = ("scaler_param", "pca_param", "lh_reg_param", "rh_reg_param")
#: Top-level keys of a metadata file.
METADATA_KEYS = ("fmri", "encoding_models")


def model_dir(folder: str) -> str:
    """The folder of model ``model-<folder>`` relative to ``berg_dir`` (e.g. ``"alexnet"``)."""
    return f"{MODELS_DIR}/model-{folder}"


_WHICH = {"weights": 0, "metadata": 1}


def file_path(card: ModelCard, berg_dir: Path, subject: int, which: str) -> Path:
    """Path of the ``"weights"`` or ``"metadata"`` file of *subject* under *berg_dir*."""
    return Path(berg_dir) / card.files_for(subject)[_WHICH[which]]


def require(card: ModelCard, berg_dir: Path, subject: int, which: str) -> Path:
    """The file's path, or :class:`ModelLoadError` naming it, ``berg_dir`` and how to get it."""
    return require_file(berg_dir, card.files_for(subject)[_WHICH[which]], card.model_id, subject)


def _read(card: ModelCard, berg_dir: Path, subject: int, which: str) -> dict[str, Any]:
    path = require(card, berg_dir, subject, which)
    data = load_pickled_npy(path)
    keys = WEIGHT_KEYS if which == "weights" else METADATA_KEYS
    if not isinstance(data, dict):
        raise ModelLoadError(
            f"{path} holds a {type(data).__name__}, not the dict of a {card.model_id} {which} file"
        )
    missing = [key for key in keys if key not in data]
    if missing:
        raise ModelLoadError(
            f"{path} is not a {card.model_id} {which} file: it lacks key(s) {', '.join(missing)} "
            f"(has: {', '.join(map(str, data))})"
        )
    return data


def load_weights(card: ModelCard, berg_dir: Path, subject: int) -> dict[str, Any]:
    """Read a subject's weights dict (``scaler_param``, ``pca_param``, ``{lh,rh}_reg_param``).

    Only the top level is checked here; :meth:`berg_core.torchkit.LinearReadout.from_params`
    checks the arrays (without reading them) when it builds the readout.

    Raises
    ------
    ModelLoadError
        If the file is missing (the message says how to get it), unsafe or malformed.
    """
    return _read(card, berg_dir, subject, "weights")


def load_metadata(card: ModelCard, berg_dir: Path, subject: int) -> dict[str, Any]:
    """Read a subject's metadata dict (``fmri`` and ``encoding_models``), as the reference saves it.

    This is the metadata loader registered for every NSD fsaverage model: ``berg_dir`` is a
    :class:`pathlib.Path` and ``subject`` was already validated by berg. The ROI tables are
    checked (:func:`roi_tables`): every ROI is a 1-D integer array of vertex indices in
    ``0..163841``.

    Raises
    ------
    ModelLoadError
        If the file is missing (the message says how to get it), unsafe or malformed.
    """
    metadata = _read(card, berg_dir, subject, "metadata")
    roi_tables(metadata, file_path(card, berg_dir, subject, "metadata"))
    return metadata


def roi_tables(metadata: dict[str, Any], path: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{"lh": {roi: indices}, "rh": {roi: indices}}`` from a metadata dict, checked.

    Parameters
    ----------
    metadata : dict
        The metadata dict read from *path*.
    path : Path
        The metadata file (named in error messages).

    Returns
    -------
    dict
        Per hemisphere, each ROI's vertex indices as a new int64 array, in file order.

    Raises
    ------
    ModelLoadError
        If ``metadata['fmri']`` or an ROI table is not a dict, or an ROI is not a 1-D integer
        array of indices in ``0..163841`` (floats and booleans are refused: cast to indices they
        would select other vertices). The message names the file and the key path.
    """
    fmri_at = Location(path, "metadata")["fmri"]
    tables_keys = [f"{h}_fsaverage_rois" for h in HEMISPHERES]
    fmri = require_mapping(metadata.get("fmri"), fmri_at, tables_keys)
    tables = {}
    for hemisphere in HEMISPHERES:
        table_at = fmri_at[f"{hemisphere}_fsaverage_rois"]
        table = require_mapping(fmri[f"{hemisphere}_fsaverage_rois"], table_at)
        tables[hemisphere] = {
            name: require_indices(
                indices, table_at[name], size=N_VERTICES, what="fsaverage vertex indices"
            )
            for name, indices in table.items()
        }
    return tables

"""The reference files of the NSD fsaverage models: where they are and how they are read.

Weights and metadata are pickled dicts saved with ``np.save``; they are read only through
:func:`berg_core.safe_npy.load_pickled_npy`, which rebuilds numpy arrays and plain containers and
refuses anything else. No torch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from berg_core import ModelCard, ModelLoadError
from berg_core.files import require_file
from berg_core.safe_npy import load_pickled_npy

__all__ = [
    "METADATA_KEYS",
    "WEIGHT_KEYS",
    "file_path",
    "load_metadata",
    "load_weights",
    "require",
    "roi_tables",
]

#: Top-level keys of a weights file.
WEIGHT_KEYS = ("scaler_param", "pca_param", "lh_reg_param", "rh_reg_param")
#: Top-level keys of a metadata file.
METADATA_KEYS = ("fmri", "encoding_models")

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

    Raises
    ------
    ModelLoadError
        If the file is missing (the message says how to get it), unsafe or malformed.
    """
    return _read(card, berg_dir, subject, "weights")


def load_metadata(card: ModelCard, berg_dir: Path, subject: int) -> dict[str, Any]:
    """Read a subject's metadata dict (``fmri`` and ``encoding_models``), as the reference saves it.

    This is the metadata loader registered for every NSD fsaverage model: ``berg_dir`` is a
    :class:`pathlib.Path` and ``subject`` was already validated by berg.

    Raises
    ------
    ModelLoadError
        If the file is missing (the message says how to get it), unsafe or malformed.
    """
    return _read(card, berg_dir, subject, "metadata")


def roi_tables(metadata: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """``{"lh": {roi: indices}, "rh": {roi: indices}}`` from a metadata dict."""
    fmri = metadata.get("fmri")
    tables = {}
    for hemisphere in ("lh", "rh"):
        key = f"{hemisphere}_fsaverage_rois"
        table = fmri.get(key) if isinstance(fmri, dict) else None
        if not isinstance(table, dict):
            raise ModelLoadError(f"{path}: metadata['fmri'] has no ROI dict {key!r}")
        tables[hemisphere] = table
    return tables

"""Writing NSD fsaverage responses as GIFTI functional files, one per hemisphere."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

from berg_core import InvalidParameterError
from berg_core.atomic import atomic_outputs
from berg_core.output import scatter_columns
from berg_nsd.fsaverage import N_VERTICES

__all__ = ["FSAVERAGE_VERTICES", "WRITE_ID_KEY", "check_gifti_pair", "gifti_paths", "write_gifti"]

#: Vertices per hemisphere of fsaverage (ico7), :data:`berg_nsd.fsaverage.N_VERTICES`.
FSAVERAGE_VERTICES = N_VERTICES
#: GIFTI metadata key holding an id shared by the two files of one write (one per hemisphere).
WRITE_ID_KEY = "berg_write_id"
_SUFFIX = ".func.gii"
_STRUCTURES = {"lh": "CortexLeft", "rh": "CortexRight"}


def gifti_paths(path: str | os.PathLike[str]) -> list[Path]:
    """The two files a write to *path* creates: ``<stem>_hemi-L.func.gii``, ``<stem>_hemi-R...``.

    The hemisphere entity follows BIDS (``hemi-L`` / ``hemi-R``).
    """
    path = Path(path)
    stem = path.name[: -len(_SUFFIX)] if path.name.lower().endswith(_SUFFIX) else path.stem
    return [path.with_name(f"{stem}_hemi-{h}{_SUFFIX}") for h in ("L", "R")]


def write_gifti(
    responses: tuple[np.ndarray, np.ndarray],
    columns: dict[str, np.ndarray],
    path: str | os.PathLike[str],
    *,
    force: bool = True,
) -> list[Path]:
    """Write ``(lh, rh)`` responses as two fsaverage GIFTI files, one data array per stimulus.

    Each file holds N float32 data arrays of 163,842 values (one per stimulus, in stimulus order),
    NaN at vertices outside the selection, with ``AnatomicalStructurePrimary`` set to
    ``CortexLeft`` / ``CortexRight`` so surface viewers place them on the right hemisphere, and
    ``berg_write_id``: a random id, the same in both files of one write.

    Both files are written to temporary files first and renamed only when both are complete,
    right hemisphere first, left last (:func:`berg_core.atomic.atomic_outputs`). A file under a
    final name is therefore always whole; a ``kill -9`` between the two renames can leave a new
    right file beside no left file (or the previous left file), which :func:`check_gifti_pair`
    detects.

    Parameters
    ----------
    responses : tuple of numpy.ndarray
        ``(N, n_lh)`` and ``(N, n_rh)`` responses.
    columns : dict
        ``{"lh": ..., "rh": ...}``: the fsaverage vertex of every column.
    path : path-like
        ``<name>.func.gii``; the files are :func:`gifti_paths` of it.
    force : bool
        Replace existing files (without it, an existing file raises InvalidParameterError and
        nothing is written).

    Returns
    -------
    list of Path
        The left and right hemisphere files.
    """
    import nibabel as nib

    write_id = uuid.uuid4().hex
    lh_path, rh_path = gifti_paths(path)
    images = {}
    for hemi, values in zip(("lh", "rh"), responses, strict=True):
        full = scatter_columns(values, columns[hemi], FSAVERAGE_VERTICES)
        meta = nib.gifti.GiftiMetaData(
            {"AnatomicalStructurePrimary": _STRUCTURES[hemi], WRITE_ID_KEY: write_id}
        )
        arrays = [
            nib.gifti.GiftiDataArray(row, intent="NIFTI_INTENT_NONE", datatype="NIFTI_TYPE_FLOAT32")
            for row in full
        ]
        images[hemi] = nib.gifti.GiftiImage(meta=meta, darrays=arrays)
    with atomic_outputs([rh_path, lh_path], force=force) as parts:
        for hemi, part in zip(("rh", "lh"), parts, strict=True):
            part.write_bytes(images[hemi].to_xml())
    return [lh_path, rh_path]


def check_gifti_pair(path: str | os.PathLike[str]) -> list[Path]:
    """Check that the two files of a :func:`write_gifti` to *path* exist and belong together.

    Returns
    -------
    list of Path
        The left and right hemisphere files.

    Raises
    ------
    InvalidParameterError
        A file is missing, or the two files carry different ``berg_write_id`` values (they come
        from two different writes, e.g. one interrupted between its two renames).
    """
    import nibabel as nib

    files = gifti_paths(path)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InvalidParameterError(
            f"GIFTI pair {path}: {', '.join(missing)} missing; write both hemispheres again"
        )
    ids = [nib.load(f).meta.get(WRITE_ID_KEY) for f in files]
    if ids[0] is None or ids[0] != ids[1]:
        raise InvalidParameterError(
            f"GIFTI pair {path}: {files[0].name} ({WRITE_ID_KEY} {ids[0]!r}) and {files[1].name} "
            f"({WRITE_ID_KEY} {ids[1]!r}) come from different writes; write both again"
        )
    return files

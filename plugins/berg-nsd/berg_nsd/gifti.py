"""Writing NSD fsaverage responses as GIFTI functional files, one per hemisphere."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from berg_core.output import scatter_columns

__all__ = ["FSAVERAGE_VERTICES", "gifti_paths", "write_gifti"]

#: Vertices per hemisphere of fsaverage (ico7).
FSAVERAGE_VERTICES = 163_842
_SUFFIX = ".func.gii"


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
) -> list[Path]:
    """Write ``(lh, rh)`` responses as two fsaverage GIFTI files, one data array per stimulus.

    Each file holds N float32 data arrays of 163,842 values (one per stimulus, in stimulus order),
    NaN at vertices outside the selection, with ``AnatomicalStructurePrimary`` set to
    ``CortexLeft`` / ``CortexRight`` so surface viewers place them on the right hemisphere.

    Returns
    -------
    list of Path
        The left and right hemisphere files.
    """
    import nibabel as nib

    written = []
    structures = {"lh": "CortexLeft", "rh": "CortexRight"}
    for (hemi, values), target in zip(
        zip(("lh", "rh"), responses, strict=True), gifti_paths(path), strict=True
    ):
        full = scatter_columns(values, columns[hemi], FSAVERAGE_VERTICES)
        meta = nib.gifti.GiftiMetaData({"AnatomicalStructurePrimary": structures[hemi]})
        arrays = [
            nib.gifti.GiftiDataArray(row, intent="NIFTI_INTENT_NONE", datatype="NIFTI_TYPE_FLOAT32")
            for row in full
        ]
        nib.save(nib.gifti.GiftiImage(meta=meta, darrays=arrays), target)
        written.append(target)
    return written

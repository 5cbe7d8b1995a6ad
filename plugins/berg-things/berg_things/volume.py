"""THINGS-fMRI1 responses as a 4-D NIfTI volume, placed by the voxel coordinates of the metadata."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from berg_core import InvalidParameterError
from berg_core.atomic import atomic_outputs
from berg_core.output import scatter_columns

__all__ = ["responses_to_volume", "write_nifti"]


def responses_to_volume(
    responses: np.ndarray,
    columns: np.ndarray,
    voxel_coords: np.ndarray,
    shape: tuple[int, int, int],
) -> np.ndarray:
    """Place responses into a ``(X, Y, Z, N)`` float32 volume, NaN where nothing was predicted.

    Parameters
    ----------
    responses : numpy.ndarray
        ``(N, n)`` responses, one column per selected voxel.
    columns : numpy.ndarray
        ``(n,)`` voxel index (row of *voxel_coords*) of every column.
    voxel_coords : numpy.ndarray
        ``(n_voxels, 3)`` integer (i, j, k) array indices of every voxel.
    shape : tuple of int
        Spatial shape of the volume.
    """
    coords = np.asarray(voxel_coords, dtype=np.int64)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise InvalidParameterError(f"voxel_coords has shape {coords.shape}; expected (n, 3)")
    if (coords < 0).any() or (coords >= np.asarray(shape)).any():
        raise InvalidParameterError(
            f"voxel coordinates reach {coords.max(axis=0).tolist()}, outside the volume shape "
            f"{list(shape)}: the reference image does not belong to this subject's data"
        )
    full = scatter_columns(responses, columns, coords.shape[0])  # (N, n_voxels)
    volume = np.full((*shape, responses.shape[0]), np.nan, dtype=np.float32)
    volume[coords[:, 0], coords[:, 1], coords[:, 2], :] = full.T
    return volume


def write_nifti(
    responses: np.ndarray,
    columns: np.ndarray,
    voxel_coords: np.ndarray,
    path: str | os.PathLike[str],
    *,
    reference: str | os.PathLike[str] | None = None,
    force: bool = True,
) -> Path:
    """Write responses as a 4-D NIfTI-1 image, one volume per stimulus.

    With *reference* (any NIfTI image of the subject's functional space, e.g. its brain mask), the
    volume takes the reference's spatial shape, affine and header units. Without one, the volume
    is the bounding box of ``voxel_coords`` (``max + 1`` along each axis) with an identity affine,
    i.e. in voxel-index space: overlay it only on images in the same voxel grid.

    A path ending in ``.gz`` is gzip-compressed (level 1, as nibabel). The image is written to a
    temporary file renamed to *path* when complete (:func:`berg_core.atomic.atomic_outputs`):
    *path* never holds a truncated image. Without *force*, an existing *path* raises
    InvalidParameterError and nothing is written.
    """
    import nibabel as nib

    coords = np.asarray(voxel_coords, dtype=np.int64)
    if reference is not None:
        ref = nib.load(os.fspath(reference))
        shape = tuple(int(s) for s in ref.shape[:3])
        affine = ref.affine
        header = ref.header.copy()
    else:
        shape = tuple(int(s) + 1 for s in coords.max(axis=0))
        affine = np.eye(4)
        header = None
    volume = responses_to_volume(responses, columns, coords, shape)  # type: ignore[arg-type]
    image = nib.Nifti1Image(volume, affine, header=header)
    image.set_data_dtype(np.float32)
    image.header["descrip"] = b"berg in silico fMRI responses"
    path = Path(path)
    with atomic_outputs([path], force=force) as (part,), open(part, "wb") as raw:
        if path.name.lower().endswith(".gz"):
            # the gzip header names the final file (not the temporary one), mtime 0
            with gzip.GzipFile(path.name[:-3], "wb", 1, raw, mtime=0) as stream:
                image.to_file_map(image.make_file_map({"image": stream}))
        else:
            image.to_file_map(image.make_file_map({"image": raw}))
    return path

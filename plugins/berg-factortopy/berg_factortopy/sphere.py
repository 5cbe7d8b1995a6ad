"""Cortical-surface coordinates of fsaverage vertices, from a FreeSurfer sphere (no torch here).

FactorTopy's selectors are functions of where a vertex lies on the cortical surface. berg takes
that position from FreeSurfer's spherical registration surface of fsaverage (``surf/lh.sphere``
and ``surf/rh.sphere`` of the subject ``fsaverage`` that ships with FreeSurfer): each vertex's
point on the sphere, scaled to unit length. Neighbouring vertices have neighbouring coordinates,
so selectors that are smooth functions of them choose alike for neighbours.

:func:`icosphere` builds the icosahedral sphere fsaverage is made of (163,842 vertices after 7
subdivisions, the first 10,242 of which are the fsaverage5 vertices); tests use it in place of
FreeSurfer's files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from berg_nsd.fsaverage import N_VERTICES

from berg_core import InvalidParameterError

__all__ = ["FSAVERAGE_VERTICES", "icosphere", "read_sphere", "sphere_paths", "write_sphere"]

#: Vertices per hemisphere of fsaverage (icosahedron subdivided 7 times).
FSAVERAGE_VERTICES = N_VERTICES


def sphere_paths(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """``{"lh": folder/lh.sphere, "rh": folder/rh.sphere}`` (e.g. ``$FREESURFER_HOME/subjects/
    fsaverage/surf``)."""
    folder = Path(folder)
    return {hemi: folder / f"{hemi}.sphere" for hemi in ("lh", "rh")}


def read_sphere(path: str | os.PathLike[str]) -> np.ndarray:
    """Unit-length coordinates of every vertex of a FreeSurfer sphere surface.

    Parameters
    ----------
    path : path-like
        A FreeSurfer geometry file (``lh.sphere``), read with
        :func:`nibabel.freesurfer.read_geometry`.

    Returns
    -------
    numpy.ndarray
        ``(163842, 3)`` float32, each row of norm 1.

    Raises
    ------
    InvalidParameterError
        If the file is missing, unreadable, or not a 163,842-vertex fsaverage sphere.
    """
    import nibabel.freesurfer as fs

    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(
            f"no sphere surface at {path}; give FreeSurfer's fsaverage lh.sphere / rh.sphere "
            f"(in $FREESURFER_HOME/subjects/fsaverage/surf)"
        )
    try:
        coords, _faces = fs.read_geometry(str(path))
    except Exception as exc:
        raise InvalidParameterError(
            f"{path} is not a readable FreeSurfer surface ({type(exc).__name__}: {exc})"
        ) from None
    if coords.shape != (FSAVERAGE_VERTICES, 3):
        raise InvalidParameterError(
            f"{path} has {coords.shape[0]} vertices; an fsaverage sphere has {FSAVERAGE_VERTICES}"
        )
    norms = np.linalg.norm(coords, axis=1, keepdims=True)
    if not np.all(norms > 0):
        raise InvalidParameterError(f"{path} has vertices at the origin: not a sphere surface")
    return (coords / norms).astype(np.float32)


def icosphere(order: int) -> tuple[np.ndarray, np.ndarray]:
    """The unit icosphere subdivided *order* times, vertices in FreeSurfer's ico order.

    Every subdivision splits each triangle into four and appends one vertex per edge (its
    midpoint pushed onto the sphere) after the existing ones, so the first ``10 * 4**k + 2``
    vertices are those of order *k*: order 7 has 163,842 vertices, whose first 10,242 are the
    order-5 (fsaverage5) vertices.

    Parameters
    ----------
    order : int
        Number of subdivisions (0: the icosahedron).

    Returns
    -------
    vertices : numpy.ndarray
        ``(10 * 4**order + 2, 3)`` float64 unit vectors.
    faces : numpy.ndarray
        ``(20 * 4**order, 3)`` int64 vertex indices, counter-clockwise seen from outside.
    """
    t = (1.0 + 5.0**0.5) / 2.0
    vertices = np.array(
        [
            [-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0],
            [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
            [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1],
        ],
        dtype=np.float64,
    )  # fmt: skip
    faces = np.array(
        [
            [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
            [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
            [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
            [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
        ],
        dtype=np.int64,
    )  # fmt: skip
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    for _ in range(order):
        # the three edges of every face, as (low, high) vertex pairs
        edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        midpoints = vertices[unique].mean(axis=1)
        midpoints /= np.linalg.norm(midpoints, axis=1, keepdims=True)
        mid = (len(vertices) + inverse.reshape(-1, 3)).astype(np.int64)  # (faces, 3): 01, 12, 20
        a, b, c = faces.T
        ab, bc, ca = mid.T
        faces = np.stack(
            [
                np.stack([a, ab, ca], axis=1),
                np.stack([ab, b, bc], axis=1),
                np.stack([ca, bc, c], axis=1),
                np.stack([ab, bc, ca], axis=1),
            ],
            axis=1,
        ).reshape(-1, 3)
        vertices = np.concatenate([vertices, midpoints])
    return vertices, faces


def write_sphere(
    path: str | os.PathLike[str], vertices: np.ndarray, faces: np.ndarray, radius: float = 100.0
) -> Path:
    """Write a sphere as a FreeSurfer geometry file (as ``lh.sphere``), scaled to *radius* mm.

    Returns
    -------
    Path
        *path*.
    """
    import nibabel.freesurfer as fs

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fs.write_geometry(str(path), np.asarray(vertices, dtype=np.float64) * radius, faces)
    return path

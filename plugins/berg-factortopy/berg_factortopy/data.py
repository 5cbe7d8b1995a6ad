"""Training data of a FactorTopy encoder: images, fMRI responses, and which vertices they are.

:meth:`TrainingData.from_algonauts` reads one subject of the Algonauts 2023 challenge::

    <root>/training_split/training_fmri/lh_training_fmri.npy    (N, V_lh) float
    <root>/training_split/training_fmri/rh_training_fmri.npy    (N, V_rh)
    <root>/training_split/training_images/*.png                 N images; row i of the arrays is
                                                                the i-th file in sorted order
    <root>/roi_masks/lh.all-vertices_fsaverage_space.npy        (163842,) 0/1: the fsaverage
    <root>/roi_masks/rh.all-vertices_fsaverage_space.npy        vertices of the columns, ascending

When the arrays have 163,842 columns (full fsaverage hemispheres, as the NSD fsaverage betas) the
masks are not needed. Any other data set fits :class:`TrainingData` directly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from berg_nsd.fsaverage import HEMISPHERES

from berg_core import InvalidParameterError
from berg_core.stimulus import Stimulus, as_stimulus
from berg_factortopy.sphere import FSAVERAGE_VERTICES, read_sphere, sphere_paths

__all__ = ["HEMISPHERES", "TrainingData", "vertex_coords"]


def _vertices(value: Any, hemi: str, columns: int, source: str) -> np.ndarray:
    array = np.asarray(value)
    is_mask = array.dtype == bool or (
        array.shape == (FSAVERAGE_VERTICES,)
        and columns != FSAVERAGE_VERTICES
        and array.dtype.kind in "iuf"
        and np.isin(array, (0, 1)).all()
    )
    if is_mask:
        array = np.flatnonzero(array)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise InvalidParameterError(
            f"{source}: {hemi} vertices must be indices (or a 163,842-long 0/1 mask)"
        )
    array = array.astype(np.int64)
    if len(array) != columns:
        raise InvalidParameterError(
            f"{source}: {len(array)} {hemi} vertices for {columns} {hemi} response columns"
        )
    if len(array) and (array.min() < 0 or array.max() >= FSAVERAGE_VERTICES):
        raise InvalidParameterError(f"{source}: {hemi} vertex indices outside 0..163841")
    if np.any(np.diff(array) <= 0):
        raise InvalidParameterError(f"{source}: {hemi} vertex indices must be strictly ascending")
    return array


@dataclass
class TrainingData:
    """Images and the responses of a subject's fsaverage vertices to them.

    Attributes
    ----------
    images : berg_core.Stimulus
        N images (anything :func:`berg_core.as_stimulus` accepts: a folder, files, an array).
    lh, rh : numpy.ndarray
        ``(N, V_lh)`` and ``(N, V_rh)`` responses (memory-mapped arrays are fine).
    lh_vertices, rh_vertices : numpy.ndarray
        The fsaverage vertex of each column, strictly ascending (or a 163,842-long 0/1 mask).
    subject : int
        NSD subject, 1..8: the subject the trained encoder is registered for.
    source : str
        Where the data came from (recorded in the checkpoint).
    """

    images: Stimulus
    lh: np.ndarray
    rh: np.ndarray
    lh_vertices: np.ndarray
    rh_vertices: np.ndarray
    subject: int
    source: str = ""

    def __post_init__(self) -> None:
        self.images = as_stimulus(self.images)
        source = self.source or "training data"
        if isinstance(self.subject, bool) or self.subject not in range(1, 9):
            raise InvalidParameterError(f"subject = {self.subject!r} must be an NSD subject 1..8")
        n = len(self.images)
        for hemi in HEMISPHERES:
            array = getattr(self, hemi)
            if not (isinstance(array, np.ndarray) and array.ndim == 2 and array.shape[0] == n):
                raise InvalidParameterError(
                    f"{source}: {hemi} responses must be an (N, vertices) array with N = {n} "
                    f"images, got {getattr(array, 'shape', type(array).__name__)}"
                )
            if array.dtype.kind not in "fiu":
                raise InvalidParameterError(f"{source}: {hemi} responses are not numeric")
            vertices = _vertices(getattr(self, f"{hemi}_vertices"), hemi, array.shape[1], source)
            setattr(self, f"{hemi}_vertices", vertices)
        if self.n_vertices == 0:
            raise InvalidParameterError(f"{source}: no vertices to train")
        if n < 2:
            raise InvalidParameterError(f"{source}: at least 2 images are needed, got {n}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_lh(self) -> int:
        """Number of left-hemisphere vertices."""
        return int(self.lh.shape[1])

    @property
    def n_rh(self) -> int:
        """Number of right-hemisphere vertices."""
        return int(self.rh.shape[1])

    @property
    def n_vertices(self) -> int:
        """Number of vertices of both hemispheres."""
        return int(self.lh.shape[1] + self.rh.shape[1])

    def targets(self, indices: np.ndarray) -> np.ndarray:
        """``(len(indices), V)`` float32 responses of images *indices*, left then right."""
        indices = np.asarray(indices, dtype=np.int64)
        return np.concatenate(
            [np.asarray(self.lh[indices], np.float32), np.asarray(self.rh[indices], np.float32)],
            axis=1,
        )

    @classmethod
    def from_algonauts(
        cls, root: str | os.PathLike[str], subject: int | None = None
    ) -> TrainingData:
        """Read one subject of the Algonauts 2023 layout (see the module docstring).

        Parameters
        ----------
        root : path-like
            The subject's folder (``.../subj01``).
        subject : int, optional
            NSD subject; by default read from the folder name (``subjNN``).

        Raises
        ------
        InvalidParameterError
            A file is missing, or counts or shapes disagree.
        """
        root = Path(root)
        split = root / "training_split"
        if subject is None:
            match = re.search(r"subj0*(\d+)", root.name)
            if match is None:
                raise InvalidParameterError(
                    f"cannot tell the subject from the folder name {root.name!r}; give subject"
                )
            subject = int(match.group(1))
        arrays = {}
        for hemi in HEMISPHERES:
            path = split / "training_fmri" / f"{hemi}_training_fmri.npy"
            if not path.is_file():
                raise InvalidParameterError(
                    f"{path} is missing: {root} is not an Algonauts 2023 subject folder"
                )
            try:
                arrays[hemi] = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as exc:
                raise InvalidParameterError(f"{path}: not a plain numeric array ({exc})") from None
        folder = split / "training_images"
        images = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if len(images) != arrays["lh"].shape[0]:
            raise InvalidParameterError(
                f"{folder} has {len(images)} .png images but the fMRI arrays have "
                f"{arrays['lh'].shape[0]} rows"
            )
        vertices = {}
        for hemi in HEMISPHERES:
            columns = arrays[hemi].shape[1] if arrays[hemi].ndim == 2 else -1
            mask = root / "roi_masks" / f"{hemi}.all-vertices_fsaverage_space.npy"
            if mask.is_file():
                vertices[hemi] = np.load(mask, allow_pickle=False)
            elif columns == FSAVERAGE_VERTICES:
                vertices[hemi] = np.arange(FSAVERAGE_VERTICES)
            else:
                raise InvalidParameterError(
                    f"{mask} is missing: which fsaverage vertices the {columns} {hemi} columns "
                    f"are cannot be told without it"
                )
        return cls(
            images=[str(p) for p in images],
            lh=arrays["lh"],
            rh=arrays["rh"],
            lh_vertices=vertices["lh"],
            rh_vertices=vertices["rh"],
            subject=subject,
            source=f"algonauts2023:{root}",
        )


def vertex_coords(
    spheres: str | os.PathLike[str] | Mapping[str, Any],
    lh_vertices: np.ndarray,
    rh_vertices: np.ndarray,
) -> np.ndarray:
    """``(V, 4)`` float32 selector inputs: unit-sphere position and hemisphere (-1 / +1).

    Parameters
    ----------
    spheres : path-like or mapping
        A folder with ``lh.sphere`` and ``rh.sphere``, or ``{"lh": ..., "rh": ...}`` with, for
        each hemisphere, the path of its sphere or its ``(163842, 3)`` coordinates.
    lh_vertices, rh_vertices : numpy.ndarray
        fsaverage indices of the vertices, left then right in the result.
    """
    if isinstance(spheres, (str, os.PathLike)):
        spheres = sphere_paths(spheres)
    rows = []
    for sign, hemi, vertices in ((-1.0, "lh", lh_vertices), (1.0, "rh", rh_vertices)):
        if hemi not in spheres:
            raise InvalidParameterError(f"no {hemi} sphere given")
        value = spheres[hemi]
        if isinstance(value, (str, os.PathLike)):
            coords = read_sphere(value)
        else:
            coords = np.asarray(value, dtype=np.float64)
            if coords.shape != (FSAVERAGE_VERTICES, 3):
                raise InvalidParameterError(
                    f"{hemi} sphere coordinates must be (163842, 3), got {coords.shape}"
                )
            coords = (coords / np.linalg.norm(coords, axis=1, keepdims=True)).astype(np.float32)
        part = coords[np.asarray(vertices, dtype=np.int64)]
        rows.append(np.concatenate([part, np.full((len(part), 1), sign, np.float32)], axis=1))
    return np.concatenate(rows).astype(np.float32)

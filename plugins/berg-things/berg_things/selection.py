"""Selection schema of the THINGS-fMRI1 model (pydantic; no heavy imports)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from berg_core import InvalidParameterError, SelectionSchema
from berg_core.checks import Location, require_indices
from berg_core.schemas import binary_mask, names_from
from berg_things.card import N_VOXELS, ROIS


class ThingsSelection(SelectionSchema):
    """``roi``: ROI name(s); ``voxel_index``: 0/1 mask over the 211,339 voxels.

    Columns follow the reference toolkit, so code that slices its output keeps working: the voxels
    of each ROI in the order the ROIs are given (each ROI's voxels in metadata order), then the
    voxels of ``voxel_index`` in ascending order. A voxel in two selected ROIs (or in an ROI and
    the mask) appears in both places; the columns are identical. ``encode(...,
    return_metadata=True)`` reports the voxel index of every column in
    ``metadata["output"]["columns"]["responses"]`` and the column range of each ROI in
    ``metadata["output"]["roi_columns"]``.
    """

    roi: names_from(ROIS, what="an ROI") | None = None  # type: ignore[valid-type]
    voxel_index: binary_mask(N_VOXELS) | None = None  # type: ignore[valid-type]

    def resolve(self, roi_indices: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, list[int]]]:
        """Voxel index of every output column, and the ``[start, stop)`` columns of each ROI.

        Parameters
        ----------
        roi_indices : mapping
            The metadata's ``roi`` dict (ROI name -> voxel indices).

        Returns
        -------
        (numpy.ndarray, dict)
            int64 voxel indices (all voxels when nothing is selected) and ROI column ranges.

        Raises
        ------
        InvalidParameterError
            If a selected ROI is not in *roi_indices*.
        ModelLoadError
            If an ROI's indices are not a 1-D integer array of voxel indices (normally checked
            when the file is read, by :func:`berg_things.plugin.roi_table`).
        """
        if self.roi is None and self.voxel_index is None:
            return np.arange(N_VOXELS, dtype=np.int64), {}
        parts: list[np.ndarray] = []
        ranges: dict[str, list[int]] = {}
        start = 0
        for name in self.roi or ():
            if name not in roi_indices:
                raise InvalidParameterError(
                    f"selection['roi'] = {name!r} is not in this subject's metadata; ROIs there: "
                    f"{', '.join(roi_indices)}"
                )
            voxels = require_indices(
                roi_indices[name],
                Location("the subject's metadata", "metadata")["roi"][name],
                size=N_VOXELS,
                what="voxel indices",
            )
            parts.append(voxels)
            ranges[name] = [start, start + voxels.size]
            start += voxels.size
        if self.voxel_index is not None:
            parts.append(np.flatnonzero(self.voxel_index).astype(np.int64))
        return np.concatenate(parts), ranges

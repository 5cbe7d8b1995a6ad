"""Selection schema of ``toy-synthetic-linear``: an ROI, or vertex masks per hemisphere."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import model_validator

from berg_core.schemas import SelectionSchema, binary_mask, one_of
from berg_testplugin.layout import HEMISPHERES, N_VERTICES, ROI_ALIASES, ROIS


class ToySelection(SelectionSchema):
    """``selection`` of the toy linear model.

    Attributes
    ----------
    roi : str, optional
        One of :data:`berg_testplugin.layout.ROIS` (``"OVWFA"`` is accepted for ``"OWFA"``);
        selects that ROI's vertices in both hemispheres.
    lh_vertices, rh_vertices : array of 0/1, optional
        Vertex masks (20 and 16 long); a hemisphere without a mask keeps all its vertices.
        Not combinable with ``roi``.
    """

    roi: one_of(ROIS, what="an ROI", aliases=ROI_ALIASES) | None = None
    lh_vertices: binary_mask(N_VERTICES["lh"]) | None = None
    rh_vertices: binary_mask(N_VERTICES["rh"]) | None = None

    @model_validator(mode="after")
    def _roi_or_masks(self) -> ToySelection:
        if self.roi is not None and (self.lh_vertices is not None or self.rh_vertices is not None):
            raise ValueError("give either 'roi' or 'lh_vertices'/'rh_vertices', not both")
        return self

    def resolve(self, metadata: dict[str, Any]) -> dict[str, np.ndarray]:
        """Selected vertex indices of each hemisphere, using the subject's ROI definitions."""
        indices: dict[str, np.ndarray] = {}
        for hemi in HEMISPHERES:
            mask = getattr(self, f"{hemi}_vertices")
            if self.roi is not None:
                rois = metadata["fmri"][f"{hemi}_fsaverage_rois"]
                indices[hemi] = np.asarray(rois[self.roi], dtype=np.int64)
            elif mask is not None:
                indices[hemi] = np.flatnonzero(mask).astype(np.int64)
            else:
                indices[hemi] = np.arange(N_VERTICES[hemi], dtype=np.int64)
        return indices

"""Which vertices an NSD fsaverage model computes: the ``selection`` schema (no torch here)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator, model_validator

from berg_core import InvalidParameterError, SelectionSchema
from berg_core.checks import Location, require_indices
from berg_core.schemas import binary_mask, one_of
from berg_nsd.fsaverage import N_VERTICES, ROI_ALIASES, ROIS

__all__ = ["ROIS", "ROI_ALIASES", "NSDSelection"]


def _optional(annotated: Any) -> Any:
    """``annotated`` (an ``Annotated[T, BeforeValidator(check), ...]``), also accepting ``None``.

    The rest of its metadata (the :class:`~berg_core.schemas.ValueSpec` ``describe()`` reports)
    is kept.
    """
    check, *rest = annotated.__metadata__
    inner = annotated.__origin__
    none_or_check = BeforeValidator(lambda v: None if v is None else check.func(v))
    return Annotated[(inner | None, none_or_check, *rest)]  # a tuple: Python 3.10 syntax


class NSDSelection(SelectionSchema):
    """Selection of fsaverage vertices.

    Give at most one of:

    * ``roi`` - an ROI name (both hemispheres' vertices of that ROI for the subject; an ROI that
      is empty in one hemisphere gives an ``(N, 0)`` array there). ``"OVWFA"`` is accepted for
      ``"OWFA"``;
    * ``lh_vertices`` and/or ``rh_vertices`` - 0/1 masks of length 163,842 (list or array). A
      hemisphere without a mask keeps all its vertices.

    ``roi`` together with a mask is an error (the reference silently ignored the masks).
    Without a selection all 163,842 vertices of each hemisphere are computed.
    """

    roi: _optional(one_of(ROIS, what="an ROI", aliases=ROI_ALIASES)) = None
    lh_vertices: _optional(binary_mask(N_VERTICES)) = None
    rh_vertices: _optional(binary_mask(N_VERTICES)) = None

    @model_validator(mode="after")
    def _roi_or_masks(self) -> NSDSelection:
        masks = [k for k in ("lh_vertices", "rh_vertices") if getattr(self, k) is not None]
        if self.roi is not None and masks:
            raise ValueError(
                f"give either 'roi' or vertex masks, not both: roi={self.roi!r} was given "
                f"together with {' and '.join(masks)}"
            )
        return self

    def vertices(
        self, rois: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
    ) -> dict[str, np.ndarray | None]:
        """Selected vertex indices of each hemisphere, ascending (``None`` = all vertices).

        Parameters
        ----------
        rois : callable, optional
            Returns ``{"lh": {roi: indices}, "rh": {roi: indices}}`` (from the subject's
            metadata); called only when ``roi`` is set.

        Returns
        -------
        dict
            ``{"lh": indices or None, "rh": indices or None}``, int64 arrays.

        Raises
        ------
        InvalidParameterError
            If the subject's metadata does not define the ROI.
        ModelLoadError
            If the metadata's indices are not a 1-D integer array of vertex indices (normally
            checked when the file is read, by :func:`berg_nsd.files.roi_tables`).
        """
        if self.roi is None:
            return {
                "lh": None if self.lh_vertices is None else np.flatnonzero(self.lh_vertices),
                "rh": None if self.rh_vertices is None else np.flatnonzero(self.rh_vertices),
            }
        if rois is None:
            raise ValueError("an ROI selection needs the subject's ROI definitions")
        definitions = rois()
        result: dict[str, np.ndarray | None] = {}
        for hemisphere in ("lh", "rh"):
            table = definitions[hemisphere]
            if self.roi not in table:
                known = ", ".join(str(name) for name in table)
                raise InvalidParameterError(
                    f"selection['roi'] = {self.roi!r} is not defined for this subject "
                    f"({hemisphere}); ROIs in its metadata: {known}"
                )
            where = Location("the subject's metadata", "metadata")["fmri"]
            indices = require_indices(
                table[self.roi],
                where[f"{hemisphere}_fsaverage_rois"][self.roi],
                size=N_VERTICES,
                what="fsaverage vertex indices",
            )
            indices = np.unique(indices)
            result[hemisphere] = indices
        return result

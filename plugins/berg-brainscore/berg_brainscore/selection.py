"""Selection schema of the Brain-Score family: the region to predict (pydantic; nothing heavy)."""

from __future__ import annotations

from pydantic import model_validator

from berg_brainscore.benchmarks import BENCHMARKS, ROIS, RoiBenchmark
from berg_core import SelectionSchema
from berg_core.schemas import one_of


class BrainScoreSelection(SelectionSchema):
    """``roi``: ``"V1"``, ``"V2"``, ``"V4"`` or ``"IT"`` (required).

    Each region is fitted on one Brain-Score public benchmark: V1 and V2 on
    ``FreemanZiemba2013public.V1-pls`` / ``.V2-pls`` (102 and 103 neuroids), V4 and IT on
    ``MajajHong2015public.V4-pls`` / ``.IT-pls`` (88 and 168 neuroids).
    """

    roi: one_of(ROIS, what="a region") | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _roi_is_required(self) -> BrainScoreSelection:
        if self.roi is None:
            raise ValueError(
                "'roi' is required: one of "
                + ", ".join(f"{roi} ({BENCHMARKS[roi].benchmark})" for roi in ROIS)
            )
        return self

    @property
    def benchmark(self) -> RoiBenchmark:
        """How the selected region is fitted (:class:`~berg_brainscore.benchmarks.RoiBenchmark`)."""
        return BENCHMARKS[self.roi]  # type: ignore[index]

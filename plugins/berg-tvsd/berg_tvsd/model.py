"""Loader of the TVSD model (imports torch: imported only when the model is loaded).

ViT-B/32 encoder-block outputs -> StandardScaler -> PCA -> one regression whose rows the
selection keeps (rows are electrode-major: ``electrode * 300 + time``), built with
:func:`berg_core.torchkit.build_readout_model`; the output ``(electrode, time)`` is labelled with
electrode indices and the monkey's times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torchvision

from berg_core import LoadRequest, ModelLoadError
from berg_core.checks import Location, require_array, require_mapping
from berg_core.files import load_model_file
from berg_core.reference import VIT_B_32_NODES
from berg_core.torchkit import (
    FeatureReadoutModel,
    build_readout_model,
    grid_rows,
    torchvision_backbone,
)
from berg_tvsd.plugin import N_ELECTRODES, N_TIMES, WEIGHTS_FILE, metadata_relative

__all__ = ["load", "read_axes", "selected_rows"]


def read_axes(metadata: Any, where: Location) -> dict[str, Any]:
    """The monkey's times (s), ROI assignment (ints) and ROI labels, checked."""
    require_mapping(metadata, where, ("utah-array", "roi"))
    array = require_mapping(metadata["utah-array"], where["utah-array"], ("times",))
    roi = require_mapping(metadata["roi"], where["roi"], ("roi_assignments", "roi_labels"))
    times = require_array(
        array["times"], where["utah-array"]["times"], kind="numeric", shape=(N_TIMES,)
    )
    assignments = require_array(
        roi["roi_assignments"],
        where["roi"]["roi_assignments"],
        kind="integer",
        shape=(N_ELECTRODES,),
    )
    labels = roi["roi_labels"]
    labels = labels.tolist() if isinstance(labels, np.ndarray) else labels
    if not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) for x in labels):
        raise where["roi"]["roi_labels"].error(f"a {type(labels).__name__}", "a list of str")
    return {
        "times": np.asarray(times, dtype=np.float64),
        "assignments": np.asarray(assignments),
        "labels": list(labels),
    }


def selected_rows(selection: Any, axes: Mapping[str, Any], where: Location) -> tuple[Any, ...]:
    """(electrode indices, time indices, regression rows) that the selection keeps.

    Electrodes: the sorted union of the ``roi`` and ``electrodes`` picks, or all 1024; times
    ascending. Rows: ``electrode * 300 + time``.
    """
    rois = getattr(selection, "roi", None)
    mask = getattr(selection, "electrodes", None)
    if rois is None and mask is None:
        electrodes = np.arange(N_ELECTRODES, dtype=np.int64)
    else:
        keep = np.zeros(N_ELECTRODES, dtype=bool) if mask is None else np.array(mask, dtype=bool)
        for roi in rois or ():
            if roi not in axes["labels"]:
                raise ModelLoadError(
                    f"selection['roi'] names {roi!r}, which {where['roi']['roi_labels']} does "
                    f"not list (it has {axes['labels']})"
                )
            keep |= axes["assignments"] == axes["labels"].index(roi)
        electrodes = np.flatnonzero(keep).astype(np.int64)
        if electrodes.size == 0:
            raise ModelLoadError(
                f"selection['roi'] {list(rois or ())} has no electrode in "
                f"{where['roi']['roi_assignments']}"
            )
    timepoints = getattr(selection, "timepoints", None)
    times = (
        np.arange(N_TIMES, dtype=np.int64)
        if timepoints is None
        else np.flatnonzero(timepoints).astype(np.int64)
    )
    rows = grid_rows([electrodes, times], (N_ELECTRODES, N_TIMES))
    return electrodes, times, rows


def load(request: LoadRequest) -> FeatureReadoutModel:
    """Loader of ``utah_array-tvsd-vit_b_32``."""
    subject = request.subject
    meta_relative = metadata_relative(request.berg_dir, subject)
    metadata = load_model_file(request.berg_dir, meta_relative, request.model_id, subject)
    meta_at = Location(request.berg_dir / meta_relative, "metadata")
    axes = read_axes(metadata, meta_at)
    electrodes, times, rows = selected_rows(request.selection, axes, meta_at)

    relative = WEIGHTS_FILE.format(subject=subject)
    weights = load_model_file(request.berg_dir, relative, request.model_id, subject)
    preprocessing = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    return build_readout_model(
        request,
        backbone=torchvision_backbone(torchvision.models.vit_b_32, weights=preprocessing),
        nodes=VIT_B_32_NODES,
        preprocessing=preprocessing,
        readout=weights,
        source=Location(request.berg_dir / relative, "weights"),
        rows={"responses": rows},
        shapes={"responses": (len(electrodes), len(times))},
        coords={"responses": {"electrode": electrodes.copy(), "time": axes["times"][times]}},
        metadata=metadata,
    )

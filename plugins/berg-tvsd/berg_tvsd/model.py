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
    LinearReadout,
    build_readout_model,
    resolve_device,
    torchvision_backbone,
)
from berg_tvsd.plugin import N_ELECTRODES, N_FEATURES, N_TIMES, WEIGHTS_FILE, metadata_relative

__all__ = ["TVSDModel", "load", "read_axes", "selected_rows"]


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
    rows = (electrodes[:, None] * N_TIMES + times[None, :]).ravel()
    return electrodes, times, rows


class TVSDModel(FeatureReadoutModel):
    """A loaded TVSD model: coordinates and metadata from the monkey's metadata file."""

    def __init__(self, request: LoadRequest, *, metadata: Mapping[str, Any], coords: Any, **kw):
        super().__init__(request, **kw)
        self._metadata = metadata
        self._coords = coords

    def output_coords(self) -> dict[str, dict[str, np.ndarray]]:
        """The selected electrodes' indices and time points' times (s)."""
        return {"responses": {name: values.copy() for name, values in self._coords.items()}}

    def subject_metadata(self) -> dict[str, Any]:
        """The whole metadata dict of the monkey, as the reference returns it (unselected)."""
        return dict(self._metadata)


def load(request: LoadRequest) -> TVSDModel:
    """Loader of ``utah_array-tvsd-vit_b_32``."""
    subject = request.subject
    meta_relative = metadata_relative(request.berg_dir, subject)
    metadata = load_model_file(request.berg_dir, meta_relative, request.model_id, subject)
    meta_at = Location(request.berg_dir / meta_relative, "metadata")
    axes = read_axes(metadata, meta_at)
    electrodes, times, rows = selected_rows(request.selection, axes, meta_at)

    relative = WEIGHTS_FILE.format(subject=subject)
    weights = load_model_file(request.berg_dir, relative, request.model_id, subject)
    where = Location(request.berg_dir / relative, "weights")
    require_mapping(weights, where, ("scaler_param", "pca_param", "reg_param"))
    readout = LinearReadout.from_params(
        weights["scaler_param"],
        weights["pca_param"],
        {"responses": (weights["reg_param"], rows)},
        resolve_device(request.device),
        source=where,
        reg_keys={"responses": "reg_param"},
        feature_dim=N_FEATURES,
        n_rows={"responses": N_ELECTRODES * N_TIMES},
    )
    preprocessing = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    coords = {"electrode": electrodes.copy(), "time": axes["times"][times]}
    return build_readout_model(  # type: ignore[return-value]
        request,
        backbone=torchvision_backbone(torchvision.models.vit_b_32, weights=preprocessing),
        nodes=VIT_B_32_NODES,
        preprocessing=preprocessing,
        readout=readout,
        source=where,
        shapes={"responses": (len(electrodes), len(times))},
        model_class=TVSDModel,
        metadata=metadata,
        coords=coords,
    )

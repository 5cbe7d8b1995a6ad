"""Loader of the THINGS MEG1 model (imports torch: imported only when the model is loaded).

ViT-B/32 encoder-block outputs -> StandardScaler -> PCA -> one regression whose rows the
selection keeps (rows are sensor-major: ``sensor * 281 + time``), built with
:func:`berg_core.torchkit.build_readout_model`; the output ``(sensor, time)`` is labelled with
the subject's sensor names and times.
"""

from __future__ import annotations

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
from berg_things_meg.plugin import (
    METADATA_FILE,
    N_SENSORS,
    N_TIMES,
    WEIGHTS_FILE,
)

__all__ = ["SubjectAxes", "load", "read_axes", "selected_rows"]

SubjectAxes = dict[str, np.ndarray]


def _strings(value: Any, where: Location, n: int) -> np.ndarray:
    array = np.asarray(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    if array is None or array.shape != (n,) or array.dtype.kind not in "US":
        raise where.error(f"a {type(value).__name__}", f"{n} strings")
    return array.astype(str)


def read_axes(metadata: Any, where: Location) -> SubjectAxes:
    """The subject's sensor names, prefixes, regions and times (s) from its metadata, checked."""
    require_mapping(metadata, where, ("meg", "sensors"))
    meg = require_mapping(metadata["meg"], where["meg"], ("times",))
    keys = ("sensor_names", "sensor_prefixes", "sensor_regions")
    sensors = require_mapping(metadata["sensors"], where["sensors"], keys)
    axes = {key: _strings(sensors[key], where["sensors"][key], N_SENSORS) for key in keys}
    times = require_array(meg["times"], where["meg"]["times"], kind="numeric", shape=(N_TIMES,))
    axes["times"] = np.asarray(times, dtype=np.float64)
    return axes


def selected_rows(selection: Any, axes: SubjectAxes, where: Location) -> tuple[np.ndarray, ...]:
    """(sensor indices, time indices, regression rows) that the selection keeps.

    Sensors: the sorted union of the ``region``, ``sensors`` (prefix) and ``sensor_index``
    picks, or all 271 when none is given; times ascending. Rows: ``sensor * 281 + time``.
    """
    region = getattr(selection, "region", None)
    prefixes = getattr(selection, "sensors", None)
    index = getattr(selection, "sensor_index", None)
    if region is None and prefixes is None and index is None:
        sensors = np.arange(N_SENSORS, dtype=np.int64)
    else:
        keep = np.zeros(N_SENSORS, dtype=bool)
        for key, values, column in (
            ("region", region, "sensor_regions"),
            ("sensors", prefixes, "sensor_prefixes"),
        ):
            for value in values or ():
                match = axes[column] == value
                if not match.any():
                    raise ModelLoadError(
                        f"selection[{key!r}] names {value!r}, which no sensor of {where} has in "
                        f"['sensors'][{column!r}] (it lists {sorted(set(axes[column]))})"
                    )
                keep |= match
        if index is not None:
            keep |= np.asarray(index, dtype=bool)
        sensors = np.flatnonzero(keep).astype(np.int64)
    timepoints = getattr(selection, "timepoints", None)
    if timepoints is None:
        times = np.arange(N_TIMES, dtype=np.int64)
    else:
        times = np.flatnonzero(timepoints).astype(np.int64)
    rows = grid_rows([sensors, times], (N_SENSORS, N_TIMES))
    return sensors, times, rows


def load(request: LoadRequest) -> FeatureReadoutModel:
    """Loader of ``meg-things_meg_1-vit_b_32`` (``train_splits='all'``)."""
    subject = request.subject
    meta_relative = METADATA_FILE.format(subject=subject)
    metadata = load_model_file(request.berg_dir, meta_relative, request.model_id, subject)
    meta_at = Location(request.berg_dir / meta_relative, "metadata")
    axes = read_axes(metadata, meta_at)
    sensors, times, rows = selected_rows(request.selection, axes, meta_at)

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
        shapes={"responses": (len(sensors), len(times))},
        coords={
            "responses": {"sensor": axes["sensor_names"][sensors], "time": axes["times"][times]}
        },
        metadata=metadata,
    )

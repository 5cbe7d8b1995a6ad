"""Loader of the THINGS EEG2 models (imports torch: imported only when a model is loaded).

Backbone features (torchvision ViT-B/32 or AlexNet nodes, the reference's) -> one scaler, then
one PCA and regression per repetition (:class:`~berg_core.torchkit.StackedReadout`, from the
weights-file generation :mod:`berg_things_eeg2.weights` tells apart), keeping the rows the
``channels`` and ``timepoints`` selection keeps, built with
:func:`~berg_core.torchkit.build_readout_model`: the output ``(repetition, channel, time)`` is
labelled with the subject's channel names and times.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torchvision

from berg_core import LoadRequest, ModelLoadError
from berg_core.checks import Location, require_array, require_mapping
from berg_core.files import load_model_file
from berg_core.reference import ALEXNET_NODES, UNTRAINED_SEED, VIT_B_32_NODES
from berg_core.torchkit import (
    FeatureReadoutModel,
    StackedReadout,
    build_readout_model,
    grid_rows,
    resolve_device,
    torchvision_backbone,
)
from berg_things_eeg2.layout import FOLDERS, N_REPETITIONS, REPETITIONS, metadata_file, weights_file
from berg_things_eeg2.weights import read_layout

__all__ = ["ALEXNET_NODES", "UNTRAINED_SEED", "VIT_B_32_NODES", "load"]


def _backbone(folder: str) -> tuple[Any, tuple[str, ...], Any]:
    """(network, feature nodes, preprocessing weights) of a model folder."""
    models = torchvision.models
    if folder == "vit_b_32":
        weights = models.ViT_B_32_Weights.IMAGENET1K_V1
        return torchvision_backbone(models.vit_b_32, weights=weights), VIT_B_32_NODES, weights
    weights = models.AlexNet_Weights.IMAGENET1K_V1
    if folder == "alexnet":
        return torchvision_backbone(models.alexnet, weights=weights), ALEXNET_NODES, weights
    net = torchvision_backbone(models.alexnet, seed=UNTRAINED_SEED)
    return net, ALEXNET_NODES, weights


def subject_axes(metadata: Any, where: Location) -> tuple[list[str], np.ndarray]:
    """The subject's channel names and times (s) from its metadata dict, checked."""
    eeg = require_mapping(require_mapping(metadata, where, ("eeg",))["eeg"], where["eeg"])
    require_mapping(eeg, where["eeg"], ("ch_names", "times"))
    names = eeg["ch_names"]
    names = names.tolist() if isinstance(names, np.ndarray) else names
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise where["eeg"]["ch_names"].error(f"a {type(names).__name__}", "a list of str")
    times = require_array(eeg["times"], where["eeg"]["times"], kind="numeric", shape=(None,))
    return list(names), np.asarray(times, dtype=np.float64)


def selected_rows(
    selection: Any, names: list[str], n_times: int, where: Location
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(channel indices, time indices, regression rows) that the selection keeps.

    Channels keep the order and repeats of the selection (the reference's rule); time points
    are ascending. Rows are channel-major: ``channel * n_times + time``.
    """
    channels = getattr(selection, "channels", None)
    timepoints = getattr(selection, "timepoints", None)
    if channels is None:
        channel_index = np.arange(len(names), dtype=np.int64)
    else:
        missing = [c for c in channels if c not in names]
        if missing:
            raise ModelLoadError(
                f"selection['channels'] names {missing}, which {where} does not list; "
                f"the subject's channels: {', '.join(names)}"
            )
        channel_index = np.array([names.index(c) for c in channels], dtype=np.int64)
    if timepoints is None:
        time_index = np.arange(n_times, dtype=np.int64)
    else:
        if len(timepoints) != n_times:
            raise ModelLoadError(
                f"selection['timepoints'] has {len(timepoints)} elements; {where} lists "
                f"{n_times} time points"
            )
        time_index = np.flatnonzero(timepoints).astype(np.int64)
    return channel_index, time_index, grid_rows([channel_index, time_index], (len(names), n_times))


def load(request: LoadRequest) -> FeatureReadoutModel:
    """Loader of the three THINGS EEG2 models."""
    folder = FOLDERS[request.card.model_id]
    subject = request.subject
    meta_relative = metadata_file(folder).format(subject=subject)
    metadata = load_model_file(request.berg_dir, meta_relative, request.model_id, subject)
    meta_at = Location(request.berg_dir / meta_relative, "metadata")
    names, times = subject_axes(metadata, meta_at)
    channel_index, time_index, rows = selected_rows(
        request.selection, names, len(times), meta_at["eeg"]
    )
    relative = weights_file(folder).format(subject=subject)
    weights = load_model_file(request.berg_dir, relative, request.model_id, subject)
    where = Location(str(request.berg_dir / relative), "weights")
    layout = read_layout(weights, where)
    per_rep = layout.generation != "A"
    backbone, nodes, preprocessing = _backbone(folder)
    readout = StackedReadout.from_params(
        "responses",
        layout.scaler,
        layout.pcas,
        layout.regressions,
        resolve_device(request.device),
        rows=rows,
        source=where,
        pca_at=[where["pca_param"][r] if per_rep else where["pca_param"] for r in REPETITIONS],
        reg_at=[where["reg_param"][r] for r in REPETITIONS],
        n_rows=len(names) * len(times),
    )
    coords = {
        "repetition": np.arange(1, N_REPETITIONS + 1, dtype=np.int64),
        "channel": np.array([names[i] for i in channel_index], dtype=str),
        "time": times[time_index],
    }
    return build_readout_model(
        request,
        backbone=backbone,
        nodes=nodes,
        preprocessing=preprocessing,
        readout=readout,
        source=where,
        shapes={"responses": (N_REPETITIONS, len(channel_index), len(time_index))},
        coords={"responses": coords},
        metadata=metadata,
        channels_last=bool(request.options.get("channels_last", False)),
    )

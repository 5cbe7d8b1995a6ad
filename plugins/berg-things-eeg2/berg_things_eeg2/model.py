"""Loader of the THINGS EEG2 models (imports torch: imported only when a model is loaded).

Backbone features (torchvision ViT-B/32 or AlexNet nodes, the reference's) -> the per-repetition
readout of :mod:`berg_things_eeg2.readout`, with the rows the ``channels`` and ``timepoints``
selection keeps, as a :class:`~berg_core.torchkit.FeatureReadoutModel` whose output is
``(repetition, channel, time)``, labelled with the subject's channel names and times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torchvision

from berg_core import LoadRequest, ModelLoadError
from berg_core.checks import Location, require_array, require_mapping
from berg_core.files import load_model_file
from berg_core.reference import ALEXNET_NODES, UNTRAINED_SEED, VIT_B_32_NODES
from berg_core.torchkit import (
    FeatureReadoutModel,
    NodeFeatureExtractor,
    Preprocessor,
    resolve_device,
    torchvision_backbone,
)
from berg_things_eeg2.plugin import FOLDERS, N_REPETITIONS, metadata_file, weights_file
from berg_things_eeg2.readout import RepetitionReadout
from berg_things_eeg2.weights import read_layout

__all__ = ["ALEXNET_NODES", "UNTRAINED_SEED", "VIT_B_32_NODES", "EEGModel", "load"]


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
    rows = (channel_index[:, None] * n_times + time_index[None, :]).ravel()
    return channel_index, time_index, rows


class EEGModel(FeatureReadoutModel):
    """A loaded THINGS EEG2 model: coordinates and metadata from the subject's metadata file."""

    def __init__(self, request: LoadRequest, *, metadata: Mapping[str, Any], coords: Any, **kw):
        super().__init__(request, **kw)
        self._metadata = metadata
        self._coords = coords

    def output_coords(self) -> dict[str, dict[str, np.ndarray]]:
        """Repetition (1-4), the selected channels' names and time points' times (s)."""
        return {"responses": {name: values.copy() for name, values in self._coords.items()}}

    def subject_metadata(self) -> dict[str, Any]:
        """The whole metadata dict of the subject, as the reference returns it (unselected)."""
        return dict(self._metadata)


def load(request: LoadRequest) -> EEGModel:
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
    source = str(request.berg_dir / relative)
    layout = read_layout(weights, Location(source, "weights"))

    device = resolve_device(request.device)
    channels_last = bool(request.options.get("channels_last", False))
    backbone, nodes, preprocessing = _backbone(folder)
    preprocessor = Preprocessor.from_weights(preprocessing, device, channels_last=channels_last)
    extractor = NodeFeatureExtractor(backbone, nodes, device, channels_last=channels_last)
    readout = RepetitionReadout.from_layout(
        layout,
        rows,
        device,
        source=source,
        feature_dim=extractor.feature_dim,
        n_rows=len(names) * len(times),
    )
    shape = (N_REPETITIONS, len(channel_index), len(time_index))
    coords = {
        "repetition": np.arange(1, N_REPETITIONS + 1, dtype=np.int64),
        "channel": np.array([names[i] for i in channel_index], dtype=str),
        "time": times[time_index],
    }
    return EEGModel(
        request,
        metadata=metadata,
        coords=coords,
        preprocessor=preprocessor,
        extractor=extractor,
        readout=readout,  # type: ignore[arg-type]
        device=device,
        shapes={"responses": shape},
    )

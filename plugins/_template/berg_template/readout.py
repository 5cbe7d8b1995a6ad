"""Level 1, base network + readout: your torch network's features -> stored linear readout.

What you write: :func:`build_network` (any ``torch.nn.Module``; load trained weights here, e.g.
``berg_core.torchkit.torchvision_backbone(torchvision.models.resnet18, weights=...)``), the
nodes whose outputs are the features (:data:`NODES`) and the preprocessing (:data:`TRANSFORM`).
:func:`berg_core.torchkit.build_readout_model` does the rest: device, preprocessing batch by
batch, feature extraction, the ``(D, n)`` readout, the card's ``(channel, time)`` shape; the core
does batching, dim picks (``{"channel": ["Oz"], "time": {"min": 0, "max": 50}}``), shape checks,
HDF5 output and metadata. Imported only when the model is loaded.
"""

from __future__ import annotations

from torch import nn

from berg_core import LoadRequest
from berg_core.torchkit import FeatureReadoutModel, build_seeded
from berg_core.torchkit.family import ImageTransform, build_readout_model
from berg_template.files import read_arrays
from berg_template.plugin import CHANNELS, N_FEATURES, TIMES_MS

#: Seed of the network's weights (a real family loads trained weights instead).
SEED = 20240101
#: The network's input: resize the shorter side to 32, centre-crop 32, normalise.
TRANSFORM = ImageTransform(size=32, resize=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
#: The node whose output, ``(B, 16)``, is the features (the final Flatten).
NODES = ("5",)


def build_network() -> nn.Module:
    """The base network: ``(B, 3, 32, 32)`` normalised images -> ``(B, 16)`` features."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2),
        nn.ReLU(),
        nn.Conv2d(8, N_FEATURES, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def load(request: LoadRequest) -> FeatureReadoutModel:
    """Loader of ``eeg-template-readout``: the network, and the subject's readout arrays."""
    relative = request.card.files_for(request.subject)[0]
    size = len(CHANNELS) * len(TIMES_MS)
    arrays = read_arrays(
        request.berg_dir, relative, {"weight": (N_FEATURES, size), "bias": (size,)}
    )
    return build_readout_model(
        request,
        backbone=build_seeded(build_network, SEED),
        nodes=NODES,
        preprocessing=TRANSFORM,
        readout=arrays,
        source=str(request.berg_dir / relative),
    )

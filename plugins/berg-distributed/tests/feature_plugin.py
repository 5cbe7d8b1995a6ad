"""A test-only berg plugin: ``toy-feature-readout``, a torch network + per-subject linear readout.

Built with :func:`berg_core.torchkit.build_readout_model` (a :class:`FeatureReadoutModel`), so
its backbone features go through the process's feature cache, as every real family's do. The
network (a seeded 2-layer conv net, 8 features) is the same for every subject; the readout
``(8, 5)`` and bias are drawn from the subject number, so subjects differ. No file is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from berg_core import Dim, ModelCard, Output, hookimpl

FEATURE_ID = "toy-feature-readout"
N_FEATURES, N_UNITS = 8, 5

FEATURE_CARD = ModelCard(
    model_id=FEATURE_ID,
    modality="fMRI",
    training_dataset="none (random weights)",
    species="Human",
    model_type="Base network + linear readout",
    creator="berg-distributed tests",
    description="A seeded conv net's 8 features, a random readout per subject.",
    subjects=(1, 2, 3),
    outputs=(Output(name="resp", dims=(Dim(name="unit", size=N_UNITS),), description="a.u."),),
    output_description="5 units",
)


def readout_arrays(subject: int) -> dict[str, np.ndarray]:
    """Subject *subject*'s readout: ``weight (8, 5)`` and ``bias (5,)``, float32."""
    rng = np.random.default_rng(100 + int(subject))
    return {
        "weight": rng.normal(0, 0.5, (N_FEATURES, N_UNITS)).astype(np.float32),
        "bias": rng.normal(0, 0.1, N_UNITS).astype(np.float32),
    }


def build_network() -> Any:
    """``(B, 3, 16, 16)`` -> ``(B, 8)``."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, N_FEATURES, 3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip


def load(request: Any) -> Any:
    """Loader of ``toy-feature-readout``."""
    from berg_core.torchkit import build_seeded
    from berg_core.torchkit.family import ImageTransform, build_readout_model

    return build_readout_model(
        request,
        backbone=build_seeded(build_network, 7),
        nodes=("5",),
        preprocessing=ImageTransform(size=16, resize=16, mean=(0.5,) * 3, std=(0.25,) * 3),
        readout=readout_arrays(request.subject),
        source=f"toy readout of subject {request.subject}",
    )


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Declare ``toy-feature-readout``."""
    register(FEATURE_CARD, "feature_plugin:load")

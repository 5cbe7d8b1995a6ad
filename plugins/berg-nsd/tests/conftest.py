"""Fixtures of berg-nsd's tests: reference-layout berg_dirs, a fake torchvision cache, references.

Session-scoped so that each backbone is built, and each berg_dir written, once per test run.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision

# The helpers next to this file are imported by name, whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nsd_reference import (
    ALEXNET,
    ALEXNET_NODES,
    SUBJECT,
    UNTRAINED,
    VIT,
    VIT_NODES,
    Model,
    ReferencePipeline,
    write_model_files,
)

from berg_core import BERG, registry
from berg_core.testing import torch_home_fixture


def _installed() -> bool:
    try:
        dist = importlib.metadata.distribution("berg-nsd")
    except importlib.metadata.PackageNotFoundError:
        return False
    return any(ep.group == "berg" and ep.name == "nsd" for ep in dist.entry_points)


@pytest.fixture(scope="session", autouse=True)
def nsd_registry() -> Iterator[None]:
    """The registry with berg-nsd: through its entry point if installed, else in-process."""
    if _installed():
        registry.reset()
    else:  # running from a source tree without `pip install -e plugins/berg-nsd`
        import berg_nsd.plugin

        registry.reset(extra={"nsd": berg_nsd.plugin})
    yield
    registry.reset()


@pytest.fixture(scope="session")
def berg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty berg_dir that model fixtures fill."""
    return tmp_path_factory.mktemp("berg_dir")


@pytest.fixture(scope="session")
def berg(berg_dir: Path) -> BERG:
    return BERG(berg_dir)


@pytest.fixture(scope="session")
def calibration() -> np.ndarray:
    """Images whose features set the scaler statistics of the random weights."""
    return np.random.default_rng(1).integers(0, 256, (6, 3, 256, 256), dtype=np.uint8)


@pytest.fixture(scope="session")
def stimulus() -> np.ndarray:
    """Five non-square uint8 images (the resize and the crop both matter)."""
    return np.random.default_rng(2).integers(0, 256, (5, 3, 240, 262), dtype=np.uint8)


def _write(berg_dir: Path, model_id: str, folder: str, pipeline: ReferencePipeline,
           calibration: np.ndarray, k: int, seed: int) -> Model:  # fmt: skip
    features = pipeline.features(calibration)
    weights, metadata = write_model_files(
        berg_dir, folder, SUBJECT, features.mean(0), features.std(0), k=k, seed=seed
    )
    return Model(model_id, folder, weights, metadata, pipeline)


@pytest.fixture(scope="session")
def untrained(berg_dir: Path, calibration: np.ndarray) -> Model:
    """fmri-nsd_fsaverage-alexnet_untrained, subject 1, k = 16, reference pipeline."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(20200220)  # exactly what the reference does
        backbone = torchvision.models.alexnet(weights=None)
    transform = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms()
    pipeline = ReferencePipeline(backbone, ALEXNET_NODES, transform)
    return _write(berg_dir, UNTRAINED, "alexnet_untrained", pipeline, calibration, k=16, seed=10)


#: A TORCH_HOME holding random AlexNet and ViT-B/32 weights under their real names (set while used).
torch_home = torch_home_fixture(
    "AlexNet_Weights.IMAGENET1K_V1", "ViT_B_32_Weights.IMAGENET1K_V1", seed=7
)


def _pretrained(builder: Any, weights: Any) -> Any:
    with torch.random.fork_rng(devices=[]):
        return builder(weights=weights)


@pytest.fixture(scope="session")
def alexnet(berg_dir: Path, torch_home: Path, calibration: np.ndarray) -> Model:
    """fmri-nsd_fsaverage-alexnet with the cache's random 'pretrained' weights, k = 12."""
    weights = torchvision.models.AlexNet_Weights.IMAGENET1K_V1
    pipeline = ReferencePipeline(
        _pretrained(torchvision.models.alexnet, weights), ALEXNET_NODES, weights.transforms()
    )
    return _write(berg_dir, ALEXNET, "alexnet", pipeline, calibration, k=12, seed=11)


@pytest.fixture(scope="session")
def vit(berg_dir: Path, torch_home: Path, calibration: np.ndarray) -> Model:
    """fmri-nsd_fsaverage-vit_b_32 with the cache's random 'pretrained' weights, k = 10."""
    weights = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    pipeline = ReferencePipeline(
        _pretrained(torchvision.models.vit_b_32, weights), VIT_NODES, weights.transforms()
    )
    return _write(berg_dir, VIT, "vit_b_32", pipeline, calibration[:3], k=10, seed=12)

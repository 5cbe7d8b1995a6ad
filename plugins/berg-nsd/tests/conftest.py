"""Fixtures of berg-nsd's tests: reference-layout berg_dirs, a fake torchvision cache, references.

Session-scoped so that each backbone is built, and each berg_dir written, once per test run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from nsd_reference import ALEXNET_NODES, VIT_NODES, ReferencePipeline, write_model_files

from berg_core import BERG, registry

UNTRAINED = "fmri-nsd_fsaverage-alexnet_untrained"
ALEXNET = "fmri-nsd_fsaverage-alexnet"
VIT = "fmri-nsd_fsaverage-vit_b_32"
SUBJECT = 1


def assert_float32_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to float32 rounding of the (long) sums involved, relative to the response scale."""
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape
    if expected.size == 0:
        return
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)


@dataclass
class Model:
    """Everything a test needs about one model written into the berg_dir."""

    model_id: str
    folder: str
    weights: dict[str, Any]
    metadata: dict[str, Any]
    pipeline: ReferencePipeline
    _features: dict[str, np.ndarray] = field(default_factory=dict)

    def features(self, stimulus: np.ndarray) -> np.ndarray:
        """Reference features of *stimulus* (cached by content)."""
        digest = hashlib.sha1(np.ascontiguousarray(stimulus).tobytes()).hexdigest()
        key = f"{stimulus.shape}{stimulus.dtype}{digest}"
        if key not in self._features:
            self._features[key] = self.pipeline.features(stimulus)
        return self._features[key]

    def responses(
        self, stimulus: np.ndarray, lh: Any = None, rh: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reference responses of *stimulus*, vertices ``lh``/``rh`` (``None`` = all)."""
        return ReferencePipeline.readout(self.features(stimulus), self.weights, lh, rh)

    def rois(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        fmri = self.metadata["fmri"]
        return fmri["lh_fsaverage_rois"][name], fmri["rh_fsaverage_rois"][name]


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


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A torchvision cache holding random AlexNet and ViT-B/32 weights under their real names."""
    home = tmp_path_factory.mktemp("torch_home")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        for builder, weights in (
            (torchvision.models.alexnet, torchvision.models.AlexNet_Weights.IMAGENET1K_V1),
            (torchvision.models.vit_b_32, torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1),
        ):
            name = os.path.basename(weights.url)
            torch.save(builder(weights=None).state_dict(), checkpoints / name)
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = previous


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

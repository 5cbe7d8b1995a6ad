"""Fixtures of berg-factortopy's tests: spheres, a synthetic Algonauts subject, a trained encoder.

Session-scoped: the icosphere is written, the synthetic subject generated and the encoder trained
once per test run (about 15 s on two CPU cores).
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

# The helpers next to this file are imported by name, whatever pytest's import mode; the
# checkpoints name the test backbone by its import path factortopy_testkit:TinyBackbone.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from berg_factortopy.config import TrainConfig
from berg_factortopy.data import TrainingData
from berg_factortopy.train import TrainResult, train
from factortopy_testkit import (
    Truth,
    make_truth,
    smooth_images,
    write_algonauts,
    write_nsd_metadata,
    write_spheres,
)

from berg_core import BERG, registry

SUBJECT = 1
#: Training settings of the synthetic subject: the tiny backbone, a bottleneck as wide as its
#: layers (so that choosing the right layer matters), a short regulariser decay.
CONFIG = TrainConfig(
    backbone="factortopy_testkit:TinyBackbone",
    bottleneck=16,
    hidden=64,
    n_frequencies=4,
    epochs=14,
    batch_size=32,
    lr=1e-2,
    weight_decay=1e-4,
    reg_weight=0.1,
    reg_decay_steps=150,
    val_fraction=0.15,
    seed=0,
    cache="ram",
    cache_dtype="float32",
    device="cpu",
)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the setting (other plugins' tests share the process).

    The tests' tensors are tiny, and on a shared two-core machine a second thread waiting for a
    busy core makes every training step several times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def _installed(distribution: str, name: str) -> bool:
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return any(ep.group == "berg" and ep.name == name for ep in dist.entry_points)


@pytest.fixture(scope="session", autouse=True)
def factortopy_registry() -> Iterator[None]:
    """The registry with berg-nsd and berg-factortopy: from entry points, else in-process."""
    extra = {}
    if not _installed("berg-nsd", "nsd"):
        import berg_nsd.plugin

        extra["nsd"] = berg_nsd.plugin
    if not _installed("berg-factortopy", "factortopy"):
        import berg_factortopy.plugin

        extra["factortopy"] = berg_factortopy.plugin
    registry.reset(extra=extra or None)
    yield
    registry.reset()


@pytest.fixture(scope="session")
def spheres(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with lh.sphere and rh.sphere: icospheres of 163,842 vertices."""
    return write_spheres(tmp_path_factory.mktemp("fsaverage_surf"))


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """700 smooth 32 x 32 uint8 images."""
    return smooth_images(700, seed=0)


@pytest.fixture(scope="session")
def truth(images: np.ndarray) -> Truth:
    """Synthetic responses of 150 vertices per hemisphere."""
    return make_truth(images, per_hemisphere=150, seed=1)


@pytest.fixture(scope="session")
def algonauts(tmp_path_factory: pytest.TempPathFactory, images: np.ndarray, truth: Truth) -> Path:
    """The synthetic subject in the Algonauts 2023 layout (folder ``subj01``)."""
    return write_algonauts(tmp_path_factory.mktemp("algonauts") / "subj01", images, truth)


@pytest.fixture(scope="session")
def data(algonauts: Path) -> TrainingData:
    return TrainingData.from_algonauts(algonauts)


@pytest.fixture(scope="session")
def trained(
    tmp_path_factory: pytest.TempPathFactory, data: TrainingData, spheres: Path
) -> TrainResult:
    """The encoder trained on the synthetic subject."""
    out = tmp_path_factory.mktemp("checkpoints") / "subj01"
    with one_thread():  # session fixtures are set up before the per-test _one_thread
        return train(data, spheres, out, CONFIG, show_progress=False)


@pytest.fixture(scope="session")
def small_data(images: np.ndarray, truth: Truth) -> TrainingData:
    """160 images and 40 + 40 vertices of the synthetic subject, as arrays (for quick runs)."""
    return TrainingData(
        images=images[:160],
        lh=truth.responses["lh"][:160, :40],
        rh=truth.responses["rh"][:160, :40],
        lh_vertices=truth.vertices["lh"][:40],
        rh_vertices=truth.vertices["rh"][:40],
        subject=SUBJECT,
        source="synthetic",
    )


@pytest.fixture(scope="session")
def small_config() -> TrainConfig:
    return replace(CONFIG, epochs=2, hidden=32, reg_decay_steps=10)


@pytest.fixture(scope="session")
def berg_dir(tmp_path_factory: pytest.TempPathFactory, truth: Truth) -> Path:
    """A berg_dir with subject 1's NSD metadata: ROI V1v = 30 trained + 30 untrained vertices per
    hemisphere, and FFA-1 = untrained vertices only."""
    root = tmp_path_factory.mktemp("berg_dir")
    rois = {}
    for hemi in ("lh", "rh"):
        trained = truth.vertices[hemi]
        untrained = np.setdiff1d(np.arange(163_842), trained)[:30]
        rois[hemi] = {
            "V1v": np.sort(np.concatenate([trained[::5], untrained])),
            "FFA-1": untrained[:10],
        }
    write_nsd_metadata(root, SUBJECT, rois)
    return root


@pytest.fixture(scope="session")
def berg(berg_dir: Path) -> BERG:
    return BERG(berg_dir)

"""Shared fixtures: small simulated NSD / THINGS-fMRI1 subjects and models trained on them.

The datasets are written in the published formats by :mod:`berg_train.simulate` (checked
independently in ``test_formats.py``) from a known linear ground truth plus noise of known SNR.
Sizes are kept small (few sessions, trials and images, 32-48 px images) but vertex and voxel
counts are the real ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from berg_core.testing import torch_home_fixture

NSD_K = 20  # PCA components of the NSD fixture model (200 training images)


def tiny_backbone() -> Any:
    """A seeded 2-layer conv net (576 features) standing in for a user's own backbone."""
    from berg_train import Backbone
    from berg_train.backbones import imagenet_transform

    def build() -> Any:
        import torch
        from torch import nn

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            return nn.Sequential(
                nn.Conv2d(3, 16, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(6), nn.Flatten()
            )

    return Backbone(
        name="tiny",
        build=build,
        nodes=None,
        transform=lambda: imagenet_transform(64, 72),
        input_size=64,
        identity="tiny-conv-v1",
    )


@pytest.fixture(scope="session")
def nsd_sim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A simulated NSD subject 1 (untrained-AlexNet ground truth): 200 train, 30 test images."""
    from berg_train.simulate import simulate_nsd

    root = tmp_path_factory.mktemp("nsd")
    return simulate_nsd(
        root,
        n_train=200,
        n_test=30,
        n_val=10,
        sessions=3,
        image_size=32,
        visual_vertices=1500,
        seed=1,
        device="cpu",
        show_progress=False,
    )


@pytest.fixture(scope="session")
def nsd_berg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the NSD fixture model is written."""
    return tmp_path_factory.mktemp("berg_dir_nsd")


@pytest.fixture(scope="session")
def nsd_trained(nsd_sim: Any, nsd_berg_dir: Path) -> Any:
    """``alexnet_untrained`` trained with OLS on :func:`nsd_sim` (work folder kept)."""
    from berg_train import NSDDataset, TrainConfig, train

    dataset = NSDDataset(nsd_sim.root, 1)
    config = TrainConfig(n_components=NSD_K, device="cpu", show_progress=False)
    return train(dataset, nsd_berg_dir, config)


@pytest.fixture(scope="session")
def things_sim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A simulated THINGS-fMRI1 subject 1 whose ground truth lives in :func:`tiny_backbone`."""
    from berg_train.simulate import simulate_things

    root = tmp_path_factory.mktemp("things")
    return simulate_things(
        root,
        backbone=tiny_backbone(),
        n_train=80,
        n_test=8,
        test_repeats=4,
        image_size=48,
        visual_voxels=2000,
        seed=2,
        device="cpu",
        show_progress=False,
    )


#: A TORCH_HOME whose cache holds random ViT-B/32 weights under torchvision's file name.
torch_home = torch_home_fixture("ViT_B_32_Weights.IMAGENET1K_V1", seed=7)


def oracle_r(signal: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Pearson r of the noise-free responses with the measured test targets, per column."""
    s = signal - signal.mean(axis=0)
    m = measured - measured.mean(axis=0)
    return (s * m).sum(0) / np.sqrt((s * s).sum(0) * (m * m).sum(0))


@pytest.fixture(scope="session")
def helpers() -> Any:
    """Functions shared by the test modules."""

    class Helpers:
        oracle_r = staticmethod(oracle_r)
        tiny_backbone = staticmethod(tiny_backbone)

    return Helpers

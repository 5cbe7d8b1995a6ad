"""Fixtures of the THINGS MEG1 tests: the plugin alone, random ViT-B/32 weights, images."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("berg_things_meg") is None:  # run from a source tree, not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import berg_things_meg.plugin

from berg_core import BERG
from berg_core.testing import only_plugin, torch_home_fixture

torch_home = torch_home_fixture("ViT_B_32_Weights.IMAGENET1K_V1", seed=7)


@pytest.fixture
def berg(tmp_path: Path, torch_home: Path) -> Iterator[BERG]:
    """A BERG over an empty berg_dir that sees this plugin only."""
    with only_plugin(berg_things_meg.plugin, "things_meg"):
        yield BERG(tmp_path / "berg_dir")


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """Three random uint8 images of 230 x 250 pixels."""
    return np.random.default_rng(3).integers(0, 256, (3, 3, 230, 250), dtype=np.uint8)


@pytest.fixture(scope="session")
def vit_features(torch_home: Path, images: np.ndarray) -> np.ndarray:
    """The reference's ViT-B/32 features of *images* (module hooks, as torchextractor)."""
    from berg_core.testing import vit_b_32_features as vit_features

    return vit_features(images)

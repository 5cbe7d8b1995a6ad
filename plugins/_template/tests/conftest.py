"""Fixtures of the template's tests: a berg_dir with tiny random model files, the plugin alone."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("berg_template") is None:  # run from a source tree, not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import berg_template.plugin
from berg_template.fixture import write_berg_dir

from berg_core import BERG
from berg_core.testing import only_plugin


@pytest.fixture
def berg_dir(tmp_path: Path) -> Path:
    """Both models' files for subjects 1 and 2."""
    return write_berg_dir(tmp_path / "berg_dir")


@pytest.fixture
def berg(berg_dir: Path) -> Iterator[BERG]:
    """A BERG over *berg_dir* that sees this plugin only (registered in-process)."""
    with only_plugin(berg_template.plugin, "template"):
        yield BERG(berg_dir)


@pytest.fixture
def images() -> np.ndarray:
    """Four random uint8 images of 40 x 52 pixels."""
    return np.random.default_rng(3).integers(0, 256, (4, 3, 40, 52), dtype=np.uint8)

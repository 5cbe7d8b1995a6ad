"""Fixtures: the simulated plugin registered alone, and images of planted classes."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("berg_insilico") is None:  # run from a source tree, not installed
    sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import simulated  # noqa: E402

from berg_core import BERG  # noqa: E402
from berg_core.testing import only_plugin  # noqa: E402


@pytest.fixture
def berg(tmp_path: Path) -> Iterator[BERG]:
    """A BERG that sees the simulated plugin only."""
    with only_plugin(simulated, "simulated"):
        yield BERG(tmp_path)


@pytest.fixture(scope="module")
def planted():
    """300 images of four planted classes."""
    return simulated.make_images(300, seed=1)

"""Fixtures shared by berg-core's tests.

Two ways to get the toy models of ``tests/plugins/berg-testplugin``:

* ``toy_plugin``: its plugin module registered in-process from the source tree (no install
  needed, so these tests also run for the core alone); every installed plugin is left out.
* ``installed_testplugin``: the distribution as pip installed it, found through its ``berg`` entry
  point. Tests using it are skipped when it is not installed, and fail instead when
  ``BERG_TESTS_REQUIRE_TESTPLUGIN=1`` (CI sets it after installing it, so a broken install
  cannot hide behind skips).

Every test starts and ends with no registry built and no ``BERG_*`` variable set.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from berg_core import registry

TESTS_DIR = Path(__file__).resolve().parent
TESTPLUGIN_DIR = TESTS_DIR / "plugins" / "berg-testplugin"
REQUIRE_ENV = "BERG_TESTS_REQUIRE_TESTPLUGIN"


def testplugin_installed() -> bool:
    """Whether the ``berg-testplugin`` distribution is installed with its entry point."""
    try:
        dist = importlib.metadata.distribution("berg-testplugin")
    except importlib.metadata.PackageNotFoundError:
        return False
    return any(ep.group == "berg" for ep in dist.entry_points)


@pytest.fixture(autouse=True)
def _clean_berg_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("BERG_DIR", "BERG_LOAD_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    registry._registry = None
    yield
    registry._registry = None


@pytest.fixture
def toy_plugin(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The test plugin registered in-process (from the source tree); no installed plugin loads."""
    monkeypatch.syspath_prepend(str(TESTPLUGIN_DIR))
    import berg_testplugin.plugin

    monkeypatch.setenv("BERG_LOAD_PLUGINS", "")
    registry.reset({"testplugin": berg_testplugin.plugin})
    return berg_testplugin.plugin


@pytest.fixture
def installed_testplugin(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The pip-installed test plugin, loaded through its entry point (alone)."""
    if not testplugin_installed():
        message = "berg-testplugin is not installed (pip install -e tests/plugins/berg-testplugin)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message}, and {REQUIRE_ENV}=1")
        pytest.skip(message)
    import berg_testplugin.plugin

    monkeypatch.setenv("BERG_LOAD_PLUGINS", "testplugin")
    return berg_testplugin.plugin


@pytest.fixture
def berg_dir(tmp_path: Path, toy_plugin: ModuleType) -> Path:
    """A berg_dir holding the toy linear model's files for subjects 1 and 2."""
    from berg_testplugin.layout import write_berg_dir

    return write_berg_dir(tmp_path / "berg_dir")


@pytest.fixture
def images() -> np.ndarray:
    """Seven random ``uint8`` images ``(7, 3, 9, 11)``."""
    return np.random.default_rng(1).integers(0, 256, size=(7, 3, 9, 11), dtype=np.uint8)


def expected_linear(berg_dir: Path, subject: int, images: np.ndarray) -> dict[str, np.ndarray]:
    """Responses of ``toy-synthetic-linear``, computed independently of berg.

    Reads the weights with plain ``np.load(..., allow_pickle=True)`` and applies the model's
    definition (mean R, G, B intensity in [0, 1], then ``@ coef + intercept``) to a ``uint8`` or
    ``[0, 1]`` float array.
    """
    path = (
        berg_dir
        / "encoding_models/modality-toy/train_dataset-synthetic/model-linear"
        / f"encoding_models_weights/weights_subject-{subject:02d}.npy"
    )
    weights = np.load(path, allow_pickle=True).item()
    pixels = images.astype(np.float64)
    if np.issubdtype(images.dtype, np.integer):
        pixels /= 255.0
    features = pixels.reshape(len(images), 3, -1).mean(axis=2)
    return {
        hemi: features @ weights[f"{hemi}_coef"].astype(np.float64)
        + weights[f"{hemi}_intercept"].astype(np.float64)
        for hemi in ("lh", "rh")
    }


@pytest.fixture
def expected() -> object:
    """:func:`expected_linear`, as a fixture (test modules cannot import conftest)."""
    return expected_linear

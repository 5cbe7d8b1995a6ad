"""The test plugin as a real, pip-installed third-party distribution.

Discovery through its ``berg`` entry point, registration, selection validation, encode and
metadata, through the public API, the CLI in a subprocess and the ``berg`` console script.
Skipped when ``berg-testplugin`` is not installed (see ``installed_testplugin`` in conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import pytest

from berg_core import BERG, InvalidParameterError, registry

LINEAR = "toy-synthetic-linear"
Expected = Callable[[Path, int, np.ndarray], dict[str, np.ndarray]]
CLI = "import sys; from berg_core.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture
def installed_berg_dir(installed_testplugin: ModuleType, tmp_path: Path) -> Path:
    from berg_testplugin.layout import write_berg_dir

    return write_berg_dir(tmp_path / "berg_dir")


def berg_cli(*argv: str | Path, berg_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``berg`` in a fresh interpreter with only the test plugin loaded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERG_")}
    env["BERG_LOAD_PLUGINS"] = "testplugin"
    if berg_dir is not None:
        env["BERG_DIR"] = str(berg_dir)
    return subprocess.run(
        [sys.executable, "-c", CLI, *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_discovered_through_its_entry_point(installed_testplugin: ModuleType) -> None:
    assert BERG("/x").list_models() == [LINEAR, "toy-synthetic-timecourse", "toy_family"]
    (info,) = registry.get_registry().plugins
    assert info.name == "testplugin"
    assert info.distribution == "berg-testplugin"
    assert info.version == "0.1.0"
    assert info.error is None
    assert info.module is installed_testplugin
    assert info.models == [LINEAR, "toy-synthetic-timecourse", "toy_family"]
    assert info.families == ["toy_family"]


def test_end_to_end_through_the_api(
    installed_berg_dir: Path, images: np.ndarray, expected: Expected
) -> None:
    berg = BERG(installed_berg_dir)
    assert berg.describe(LINEAR, print_format=False)["distribution"] == "berg-testplugin 0.1.0"
    with pytest.raises(InvalidParameterError, match="'V9' is not an ROI of toy-synthetic-linear"):
        berg.get_encoding_model(LINEAR, subject=1, selection={"roi": "V9"})
    with berg.get_encoding_model(LINEAR, subject=2, selection={"roi": "FFA-1"}) as model:
        (lh, rh), metadata = berg.encode(model, images, return_metadata=True, show_progress=False)
    want = expected(installed_berg_dir, 2, images)
    np.testing.assert_allclose(lh, want["lh"][:, [10, 12, 14]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rh, want["rh"][:, [8, 9, 10]], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(metadata["output"]["columns"]["lh"], [10, 12, 14])
    assert metadata["subject"] == 2
    assert berg.get_model_metadata(LINEAR, subject=1)["subject"] == 1
    family = berg.encode(berg.get_encoding_model("toy_family-alpha"), images, show_progress=False)
    assert family.shape == (7, 4)


def test_cli_in_a_subprocess(
    installed_berg_dir: Path, tmp_path: Path, images: np.ndarray, expected: Expected
) -> None:
    result = berg_cli("plugins")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == [
        "berg-testplugin", "0.1.0", "[testplugin]", "3", "models",
    ]  # fmt: skip
    assert berg_cli("list", "--expand", "toy_family").stdout.split() == [
        LINEAR, "toy-synthetic-timecourse",
        "toy_family-alpha", "toy_family-beta", "toy_family-gamma",
    ]  # fmt: skip

    stimulus = tmp_path / "images.npy"
    np.save(stimulus, images.astype(np.int64))
    out = tmp_path / "out.h5"
    args = ("encode", LINEAR, "--subject", "1", "--stimulus", stimulus, "--out", out, "--quiet")
    result = berg_cli(*args, "--roi", "V1", berg_dir=installed_berg_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {out}: 7 images x (lh 3, rh 2) columns\n"
    want = expected(installed_berg_dir, 1, images)
    with h5py.File(out, "r") as h5:
        np.testing.assert_allclose(h5["lh"][()], want["lh"][:, [0, 1, 2]], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h5["rh"][()], want["rh"][:, [0, 1]], rtol=1e-5, atol=1e-6)
        assert h5.attrs["plugin"] == "berg-testplugin 0.1.0"

    result = berg_cli(*args, berg_dir=installed_berg_dir)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"berg: error: output file {out} exists; pass --force to overwrite it\n"

    result = berg_cli("metadata", LINEAR, "--subject", "7", berg_dir=installed_berg_dir)
    assert result.returncode == 2
    assert result.stderr == (
        "berg: error: subject = 7 is not a subject of toy-synthetic-linear; valid: 1, 2\n"
    )


def test_console_script(installed_berg_dir: Path) -> None:
    script = Path(sys.executable).parent / ("berg.exe" if os.name == "nt" else "berg")
    if not script.exists():
        pytest.skip(f"no berg console script beside {sys.executable}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERG_")}
    env |= {"BERG_LOAD_PLUGINS": "testplugin", "BERG_DIR": str(installed_berg_dir)}
    result = subprocess.run(
        [str(script), "metadata", LINEAR, "--subject", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "  rh_ncsnr: array (16,) float32" in result.stdout.splitlines()
    result = subprocess.run(
        [str(script), "describe", "fmri-nsd_fsaverage-nope"],
        capture_output=True,
        text=True,
        env=env | {"BERG_LOAD_PLUGINS": "testplugin"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "pip install berg-nsd" in result.stderr

"""The commands berg-train adds to ``berg``, and the lightness of its plugin module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from berg_core.cli import main


def test_plugin_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, berg_train.plugin, berg_train.cli, berg_train\n"
        "from berg_core.cli import _parser\n"
        "_parser()\n"
        "heavy = [m for m in ('torch', 'torchvision', 'sklearn', 'scipy', 'matplotlib', "
        "'nibabel', 'berg_train.engine') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "train" in text and "demo" in text
    with pytest.raises(SystemExit):
        main(["train", "nsd", "--help"])
    text = capsys.readouterr().out
    for option in ("--nsd-root", "--subject", "--backbone", "--regression", "--berg-dir"):
        assert option in text


def test_train_nsd_command_resumes_from_the_work_folder(
    nsd_trained: Any, nsd_sim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    berg_dir = tmp_path / "out"
    code = main(
        [
            "train", "nsd", "--nsd-root", str(nsd_sim.root), "--subject", "1",
            "--n-components", "20", "--device", "cpu", "--quiet",
            "--work-dir", str(nsd_trained.work_dir), "--berg-dir", str(berg_dir),
        ]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    assert "SIMULATED" in text and "200 training, 10 validation, 30 test images" in text
    weights = (
        berg_dir / "encoding_models/modality-fmri/train_dataset-nsd_fsaverage"
        / "model-alexnet_untrained/encoding_models_weights/weights_subject-01.npy"
    )  # fmt: skip
    assert weights.is_file() and f"wrote weights: {weights}" in text


def test_errors_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "nsd", "--nsd-root", str(tmp_path), "--subject", "1", "--quiet"])
    assert code == 2
    assert "experimental design not found" in capsys.readouterr().err
    code = main(
        ["train", "things", "--things-root", str(tmp_path), "--subject", "1", "--backbone", "nope"]
    )
    assert code == 2

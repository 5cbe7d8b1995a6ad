"""plugins/_template as a real distribution, and ``berg new-plugin``.

The install tests build the template (or a renamed copy) with pip into a folder of their own
(``--target``, no dependencies, no build isolation: offline) and run ``berg check`` in a fresh
interpreter with that folder on ``PYTHONPATH``, so that importlib.metadata finds the entry point.
Those two (``test_slow_*``) take 10-30 s each (pip, and torch imported by the check); they need
torch (the template's base network).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from berg_core import InvalidParameterError
from berg_core.cli import main
from berg_core.scaffold import find_template, new_plugin

TEMPLATE = Path(__file__).resolve().parents[1] / "plugins" / "_template"
CLI = "import sys; from berg_core.cli import main; sys.exit(main(sys.argv[1:]))"


def install(source: Path, target: Path) -> None:
    """``pip install --no-deps --no-build-isolation --target target source`` from a copy."""
    build = target.parent / f"src-{source.name}"
    shutil.copytree(source, build, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(build)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def berg(site: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``berg ARGV`` in a fresh interpreter that sees the distributions installed in *site*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERG_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *(p for p in sys.path if p)])
    return subprocess.run(
        [sys.executable, "-c", CLI, *argv],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def test_slow_template_installs_and_berg_check_passes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    site = tmp_path / "site"
    install(TEMPLATE, site)
    assert (site / "berg_template" / "plugin.py").is_file()
    result = berg(site, "check", "berg-template")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "berg-template 0.1.0: all 27 checks passed"
    assert "ok    load: [template]" in lines
    assert "ok    light registration" in lines
    assert "ok    eeg-template-readout (subject 1): shapes: eeg (3, 4, 12)" in lines
    listed = berg(site, "list", "*-template-*")
    assert listed.stdout.split() == ["eeg-template-readout", "fmri-template-brainmodel"]


def test_slow_new_plugin_copy_installs_and_berg_check_passes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    assert main(["new-plugin", "things-eeg2", "--dir", str(tmp_path)]) == 0
    copy = tmp_path / "berg-things-eeg2"
    names = sorted(p.name for p in copy.iterdir())
    assert names == ["README.md", "berg_things_eeg2", "pyproject.toml", "tests"]
    for path in copy.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for old in ("berg_template", "berg-template", "-template-"):
                assert old not in text, f"{old} left in {path}"
    assert 'things_eeg2 = "berg_things_eeg2.plugin"' in (copy / "pyproject.toml").read_text()
    site = tmp_path / "site"
    install(copy, site)
    result = berg(site, "check", "berg-things-eeg2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    eeg-things_eeg2-readout (subject 1): batching" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == "berg-things-eeg2 0.1.0: all 27 checks passed"


@pytest.mark.parametrize(
    "name", ["", "Upper", "1abc", "a b", "x--y", "bad.name", "template", "trailing-"]
)
def test_new_plugin_refuses_invalid_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidParameterError, match="a family name is lower-case"):
        new_plugin(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_new_plugin_refuses_an_existing_target_and_a_missing_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "berg-lab").mkdir()
    (tmp_path / "berg-lab" / "mine.txt").write_text("keep")
    assert main(["new-plugin", "lab", "--dir", str(tmp_path)]) == 2
    assert "berg-lab exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "berg-lab").iterdir()] == ["mine.txt"]
    with pytest.raises(InvalidParameterError, match="no such folder"):
        new_plugin("lab", tmp_path / "missing")


def test_new_plugin_renames_everything(tmp_path: Path) -> None:
    copy = new_plugin("my_lab", tmp_path)
    assert copy == tmp_path / "berg-my-lab"
    plugin = (copy / "berg_my_lab" / "plugin.py").read_text()
    assert 'READOUT_ID = "eeg-my_lab-readout"' in plugin
    assert "train_dataset-my_lab" in plugin
    assert 'name = "berg-my-lab"' in (copy / "pyproject.toml").read_text()
    assert not list(copy.rglob("__pycache__")) and not list(tmp_path.glob(".*partial"))
    assert find_template() == TEMPLATE


def test_dev_install_skips_underscore_folders() -> None:
    script = (TEMPLATE.parents[1] / "scripts" / "dev-install.sh").read_text()
    start = script.index("for dir in plugins/*/; do")
    loop = script[start : script.index("done", start)]
    result = subprocess.run(
        ["bash", "-c", f"cd {TEMPLATE.parents[1]}; packages=(); {{ {loop}done; }} >/dev/null; "
         'printf "%s\\n" "${packages[@]}"'],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    installed = result.stdout.split()
    assert "plugins/berg-nsd" in installed or "plugins/berg-nsd[test]" in installed
    assert not [p for p in installed if "_template" in p]

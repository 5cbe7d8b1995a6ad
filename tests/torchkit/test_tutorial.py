"""The plugin built in docs/writing-a-plugin.md: its files are written out and run.

Every Python block titled with a file name (```python title="berg_eeg_toy/plugin.py"```) is
written to that path; the plugin is registered in-process, the example's printed results are
compared with the values its comments state, ``berg check`` runs on it, and so do the tutorial's
own tests.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

from berg_core import registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-plugin.md"
BLOCK = re.compile(r'^```python title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)
FILES = {
    "berg_eeg_toy/plugin.py",
    "berg_eeg_toy/model.py",
    "berg_eeg_toy/testing.py",
    "berg_eeg_toy/brain.py",
    "example.py",
    "tests/test_berg_eeg_toy.py",
}


def doc_files() -> dict[str, str]:
    """Title -> code of every titled Python block of the tutorial."""
    found = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    files = dict(found)
    assert len(files) == len(found), "two blocks with the same title"
    return files


@pytest.fixture
def plugin_src(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The tutorial's files under tmp_path/src, importable; only this plugin registered."""
    src = tmp_path / "src"
    for name, code in doc_files().items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding="utf-8")
    (src / "berg_eeg_toy" / "__init__.py").write_text("", encoding="utf-8")
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setenv("BERG_LOAD_PLUGINS", "")
    yield src
    for name in [m for m in sys.modules if m == "berg_eeg_toy" or m.startswith("berg_eeg_toy.")]:
        del sys.modules[name]
    registry.reset()


def test_the_tutorial_has_its_files() -> None:
    assert set(doc_files()) == FILES


def code_lines(code: str) -> int:
    """Lines that are not blank, comments or docstrings."""
    without_docstrings = re.sub(r'"""(.*?)"""', "", code, flags=re.DOTALL)
    return sum(
        1
        for line in without_docstrings.splitlines()
        if line.strip() and not line.strip().startswith("#")
    )


def test_the_base_network_level_is_about_50_lines() -> None:
    files = doc_files()
    plugin = files["berg_eeg_toy/plugin.py"]
    # the base-network model: its card, options and registration, and the loader (the brain
    # model's card and registration are counted with the brain model)
    brain_part = plugin[plugin.index("BRAIN_CARD = ") : plugin.index("berg_check_fixture = ")]
    lines = code_lines(plugin) - code_lines(brain_part) + code_lines(files["berg_eeg_toy/model.py"])
    assert 35 <= lines <= 60, lines


def test_the_example_prints_what_it_says(plugin_src: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import berg_eeg_toy.plugin

    registry.reset({"eeg_toy": berg_eeg_toy.plugin})
    monkeypatch.chdir(plugin_src.parent)
    example = plugin_src / "example.py"
    stated = re.findall(r"^\s*print\(.*\)  # (.*)$", example.read_text(), flags=re.MULTILINE)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(str(example), run_name="__main__")
    assert out.getvalue().splitlines() == stated
    assert len(stated) == 6


def test_berg_check_passes(plugin_src: Path) -> None:
    check = pytest.importorskip("berg_core.check")
    report = check.check_plugin("berg_eeg_toy.plugin")
    assert report.ok, "\n".join(report.lines)
    text = "\n".join(report.lines)
    for model_id in ("eeg-toy-resnet18", "eeg-toy-contrast"):
        assert model_id in text  # both models were encoded through the fixture
    assert not any(line.lstrip().startswith("skip") for line in report.lines), text


def test_berg_check_fails_on_a_wrong_shape(plugin_src: Path) -> None:
    check = pytest.importorskip("berg_core.check")
    brain = plugin_src / "berg_eeg_toy" / "brain.py"
    brain.write_text(brain.read_text().replace("return (self.kernel.shape,)", "return ((8, 19),)"))
    report = check.check_plugin("berg_eeg_toy.plugin", heavy_probe=False)
    assert not report.ok
    assert any("eeg-toy-contrast" in problem for problem in report.problems), report.problems


def test_the_tutorials_own_tests_pass(plugin_src: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_src), *sys.path]))
    env.pop("BERG_LOAD_PLUGINS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=plugin_src,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout

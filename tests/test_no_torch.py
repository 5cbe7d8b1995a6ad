"""In a fresh interpreter, ``import berg_core`` and ``berg list`` import no heavy library.

Every installed plugin is loaded (``BERG_LOAD_PLUGINS`` unset), so this also proves that each
plugin's registration is light: registration must name model code by import path, never import
torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "torch",
    "torchvision",
    "sklearn",
    "brainscore_vision",
    "dask",
    "distributed",
    "dask_jobqueue",
    "berg_distributed",
)

PROBE = """
import json, sys

HEAVY = {heavy!r}

def heavy_loaded():
    return sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)

import berg_core
after_import = heavy_loaded()

from berg_core.cli import main
status = main(["list"])
after_list = heavy_loaded()

from berg_core.plugins import _entry_points
from berg_core.registry import get_registry
plugins = get_registry().plugins
print("PROBE " + json.dumps({{
    "status": status,
    "after_import": after_import,
    "after_list": after_list,
    "entry_points": sorted(ep.name for ep in _entry_points()),
    "loaded": sorted(p.name for p in plugins if p.error is None and p.module is not None),
    "errors": {{p.label: p.error for p in plugins if p.error}},
    "models": sorted(m for p in plugins for m in p.models),
}}))
"""


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERG_")}
    env["PYTHONWARNINGS"] = "default"
    return env


def test_import_and_list_import_no_torch_with_every_plugin_loaded() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    probe = json.loads(line[len("PROBE ") :])
    assert probe["status"] == 0
    assert probe["after_import"] == []
    assert probe["after_list"] == [], f"berg list imported {probe['after_list']}"
    # every installed plugin loaded and registered without error
    assert probe["errors"] == {}
    assert probe["loaded"] == probe["entry_points"]
    # berg list printed every registered model
    listed = [line for line in result.stdout.splitlines() if not line.startswith("PROBE ")]
    assert set(probe["models"]) <= set(listed)
    assert "skipped plugin" not in result.stderr


def _imported_modules(stderr: str) -> set[str]:
    """Module names from ``-X importtime`` output (``import time: self | cumulative | name``)."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_console_script_berg_list_imports_no_torch() -> None:
    script = Path(sys.executable).parent / ("berg.exe" if os.name == "nt" else "berg")
    if not script.exists():
        pytest.skip(f"no berg console script beside {sys.executable}")
    env = clean_env() | {"PYTHONPROFILEIMPORTTIME": "1"}
    result = subprocess.run(
        [str(script), "list"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    imported = _imported_modules(result.stderr)
    assert "berg_core.cli" in imported  # the import log works
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert heavy == [], f"`berg list` imported {heavy}"

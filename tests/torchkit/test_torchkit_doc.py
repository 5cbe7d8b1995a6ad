"""The examples of docs/torchkit.md run as they stand, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("torchvision")

DOC = Path(__file__).resolve().parents[2] / "docs" / "torchkit.md"


def test_the_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.M | re.S)
    runnable = [block for block in blocks if "import" in block]  # not the signature block
    assert len(runnable) == 6
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for number, block in enumerate(runnable):
        exec(compile(block, f"{DOC.name} example {number + 1}", "exec"), namespace)

"""GIFTI pairs appear whole: a writer killed while writing or between its two renames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from berg_nsd.gifti import (
    FSAVERAGE_VERTICES,
    WRITE_ID_KEY,
    check_gifti_pair,
    gifti_paths,
    write_gifti,
)

from berg_core import InvalidParameterError
from berg_core.testing_kill import kill_at_marker

nib = pytest.importorskip("nibabel")

COLUMNS = {"lh": np.array([0, 7, 163_841]), "rh": np.array([5, 6])}

#: Writes a pair of value argv[4] to argv[2] (with force), stopping for good at the point argv[1]
#: names, after creating the marker argv[3]: "writing" (half of the right file written) or
#: "between-renames" (right file renamed, left not yet).
WRITER = """
import sys, time, pathlib
import numpy as np
import berg_core.atomic as atomic
from berg_nsd.gifti import write_gifti

mode, out, marker, value = sys.argv[1:5]

def stop():
    pathlib.Path(marker).touch()
    time.sleep(60)

if mode == "writing":
    def write_bytes(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
        stop()
    pathlib.Path.write_bytes = write_bytes
else:
    claim = atomic._claim
    def claim_then_stop(part, target, force):
        claim(part, target, force)
        stop()
    atomic._claim = claim_then_stop
lh = np.full((2, 3), float(value), dtype=np.float32)
rh = np.full((2, 2), float(value), dtype=np.float32)
write_gifti((lh, rh), {"lh": np.array([0, 7, 163841]), "rh": np.array([5, 6])}, out)
"""


def _write(path: Path, value: float, force: bool = True) -> list[Path]:
    lh = np.full((2, 3), value, dtype=np.float32)
    rh = np.full((2, 2), value, dtype=np.float32)
    return write_gifti((lh, rh), COLUMNS, path, force=force)


def _value(path: Path) -> float:
    data = np.stack([a.data for a in nib.load(path).darrays])
    assert data.shape == (2, FSAVERAGE_VERTICES)
    return float(np.nanmax(data))


def _kill_at(mode: str, out: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    kill_at_marker(WRITER, mode, out, marker, 2, marker=marker)


def _finals(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_pair_is_written_with_one_write_id(tmp_path: Path) -> None:
    lh, rh = _write(tmp_path / "r.func.gii", 1.0)
    assert check_gifti_pair(tmp_path / "r.func.gii") == [lh, rh]
    ids = {nib.load(p).meta[WRITE_ID_KEY] for p in (lh, rh)}
    assert len(ids) == 1 and len(ids.pop()) == 32
    assert [nib.load(p).meta["AnatomicalStructurePrimary"] for p in (lh, rh)] == [
        "CortexLeft",
        "CortexRight",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [lh.name, rh.name]  # no temporary file


def test_existing_pair_is_kept_without_force(tmp_path: Path) -> None:
    out = tmp_path / "r.func.gii"
    _write(out, 1.0)
    before = [p.read_bytes() for p in gifti_paths(out)]
    with pytest.raises(InvalidParameterError, match="exists; pass --force"):
        _write(out, 2.0, force=False)
    assert [p.read_bytes() for p in gifti_paths(out)] == before
    assert _finals(tmp_path) == sorted(p.name for p in gifti_paths(out))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("old_pair", [False, True])
def test_killed_while_writing_leaves_no_new_file(tmp_path: Path, old_pair: bool) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "r.func.gii"
    lh, rh = gifti_paths(out)
    if old_pair:
        _write(out, 1.0)
    before = {p.name: p.read_bytes() for p in (lh, rh) if p.exists()}
    _kill_at("writing", out, tmp_path)
    assert {p.name: p.read_bytes() for p in (lh, rh) if p.exists()} == before
    if old_pair:
        assert check_gifti_pair(out) == [lh, rh]
        assert (_value(lh), _value(rh)) == (1.0, 1.0)
    # the half-written right file (and the empty left one) exist only under temporary names
    parts = sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))
    assert [p.split(".berg-")[0] for p in parts] == [f".{lh.name}", f".{rh.name}"]


def test_killed_between_the_renames_is_detected(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "r.func.gii"
    lh, rh = gifti_paths(out)
    _kill_at("between-renames", out, tmp_path)
    # the right hemisphere is renamed first: it is whole, and the left one is missing
    assert _finals(folder) == [rh.name]
    assert _value(rh) == 2.0
    with pytest.raises(InvalidParameterError) as info:
        check_gifti_pair(out)
    assert str(info.value) == (f"GIFTI pair {out}: {lh} missing; write both hemispheres again")


def test_killed_between_the_renames_over_an_old_pair_is_detected(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "r.func.gii"
    lh, rh = gifti_paths(out)
    _write(out, 1.0)
    _kill_at("between-renames", out, tmp_path)
    assert (_value(lh), _value(rh)) == (1.0, 2.0)  # both whole, from two different writes
    with pytest.raises(InvalidParameterError, match="come from different writes"):
        check_gifti_pair(out)
    _write(out, 3.0)  # a complete write repairs the pair
    assert check_gifti_pair(out) == [lh, rh]
    assert (_value(lh), _value(rh)) == (3.0, 3.0)

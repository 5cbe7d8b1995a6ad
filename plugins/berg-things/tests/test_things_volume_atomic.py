"""NIfTI output appears whole: a writer killed after the header leaves no truncated image."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from berg_things.volume import write_nifti

from berg_core import InvalidParameterError
from berg_core.testing_kill import kill_at_marker

nib = pytest.importorskip("nibabel")

COORDS = np.array([[0, 0, 0], [3, 4, 5], [6, 2, 1]])
COLUMNS = np.array([2, 0])

#: Writes responses of value argv[3] to argv[1] (with force) and stops for good after the first
#: block of bytes (the header) went into the compressed stream, creating the marker argv[2].
WRITER = """
import sys, time, pathlib, gzip
import numpy as np
from berg_things.volume import write_nifti

out, marker, value = sys.argv[1:4]
write = gzip.GzipFile.write

def write_then_stop(self, data):
    n = write(self, data)
    self.flush()
    pathlib.Path(marker).touch()
    time.sleep(60)
    return n

gzip.GzipFile.write = write_then_stop
responses = np.full((3, 2), float(value), dtype=np.float32)
write_nifti(responses, np.array([2, 0]), np.array([[0, 0, 0], [3, 4, 5], [6, 2, 1]]), out)
"""


def _responses(value: float) -> np.ndarray:
    return np.full((3, 2), value, dtype=np.float32)


@pytest.mark.parametrize("name", ["r.nii.gz", "r.nii"])
def test_round_trip_matches_nibabel(tmp_path: Path, name: str) -> None:
    out = write_nifti(_responses(1.5), COLUMNS, COORDS, tmp_path / name)
    image = nib.load(out)
    assert image.shape == (7, 5, 6, 3) and image.get_data_dtype() == np.float32
    data = np.asarray(image.dataobj)
    assert (data[6, 2, 1] == 1.5).all() and (data[0, 0, 0] == 1.5).all()
    assert np.isnan(data).sum() == 7 * 5 * 6 * 3 - 6
    # the same image nibabel writes itself (same header and voxels)
    nib.save(image, tmp_path / f"ref-{name}")
    ref = nib.load(tmp_path / f"ref-{name}")
    assert ref.header.binaryblock == image.header.binaryblock
    np.testing.assert_array_equal(np.asarray(ref.dataobj), data)
    if name.endswith(".gz"):
        with gzip.open(out) as f:  # a complete gzip stream (no truncation)
            assert len(f.read()) == 352 + data.nbytes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, f"ref-{name}"])


def test_existing_file_is_kept_without_force(tmp_path: Path) -> None:
    out = tmp_path / "r.nii.gz"
    out.write_bytes(b"previous")
    with pytest.raises(InvalidParameterError, match="exists; pass --force"):
        write_nifti(_responses(1.0), COLUMNS, COORDS, out, force=False)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["r.nii.gz"]


@pytest.mark.parametrize("old", [False, True])
def test_killed_after_the_header_leaves_no_truncated_image(tmp_path: Path, old: bool) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "r.nii.gz"
    if old:
        write_nifti(_responses(1.0), COLUMNS, COORDS, out)
    before = out.read_bytes() if old else None
    marker = tmp_path / "marker"
    kill_at_marker(WRITER, out, marker, 2, marker=marker)
    assert (out.read_bytes() if out.exists() else None) == before
    if old:
        assert (np.asarray(nib.load(out).dataobj)[6, 2, 1] == 1.0).all()
    # the truncated image exists only under its temporary name
    (part,) = [p for p in folder.iterdir() if p.name.endswith(".part")]
    assert part.name.startswith(".r.nii.gz.berg-")

"""encode_to_hdf5: datasets, attributes, column indices, overwrite rules, no partial files."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from berg_core import BERG, InvalidParameterError, __version__, as_stimulus
from berg_core.output import encode_to_hdf5

LINEAR = "toy-synthetic-linear"
Expected = Callable[[Path, int, np.ndarray], dict[str, np.ndarray]]


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_file_holds_responses_columns_and_attributes(
    berg_dir: Path, tmp_path: Path, images: np.ndarray, expected: Expected
) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=2, selection={"roi": "V2"}, batch_size=3)
    out = tmp_path / "out" / "responses.h5"  # the folder is created
    assert encode_to_hdf5(model, as_stimulus(images), out, show_progress=False) == out
    metadata = berg.get_model_metadata(LINEAR, subject=2)
    want = expected(berg_dir, 2, images)
    with h5py.File(out, "r") as h5:
        assert sorted(h5) == ["columns", "coords", "lh", "rh"]  # no stimulus_sources for arrays
        assert sorted(h5["columns"]) == ["lh", "rh"]
        for hemi in ("lh", "rh"):
            index = metadata["fmri"][f"{hemi}_fsaverage_rois"]["V2"]
            # the labelled axes, and the coordinate (vertex) of every column
            assert list(h5[hemi].attrs["dims"]) == ["image", "column"]
            np.testing.assert_array_equal(h5[f"coords/{hemi}/column"][()], index)
            np.testing.assert_array_equal(h5[f"columns/{hemi}"][()], index)
            assert h5[hemi].dtype == np.float32
            assert h5[hemi].shape == (7, len(index))
            np.testing.assert_allclose(h5[hemi][()], want[hemi][:, index], rtol=1e-5, atol=1e-6)
            assert h5["columns"][hemi].dtype == np.int64
            np.testing.assert_array_equal(h5["columns"][hemi][()], index)
        attrs = dict(h5.attrs)
    assert attrs == {
        "model_id": LINEAR,
        "subject": "2",
        "selection": json.dumps({"roi": "V2"}),
        "berg_core_version": __version__,
        "plugin": "testplugin (in-process)",
    }
    assert files_in(out.parent) == ["responses.h5"]


def test_file_matches_encode(berg_dir: Path, tmp_path: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    mask = np.zeros(16, dtype=bool)
    mask[[2, 3, 15]] = True
    model = berg.get_encoding_model(LINEAR, subject=1, selection={"rh_vertices": mask})
    lh, rh = berg.encode(model, images, show_progress=False)
    out = encode_to_hdf5(model, as_stimulus(images), tmp_path / "r.h5", show_progress=False)
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["lh"][()], lh)
        np.testing.assert_array_equal(h5["rh"][()], rh)
        np.testing.assert_array_equal(h5["columns/rh"][()], [2, 3, 15])
        assert json.loads(h5.attrs["selection"]) == {"rh_vertices": [2, 3, 15]}


def test_images_from_files_are_recorded(berg_dir: Path, tmp_path: Path, images: np.ndarray) -> None:
    from PIL import Image

    folder = tmp_path / "stimuli"
    folder.mkdir()
    for i, img in enumerate(images[:3]):
        Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(folder / f"{i}.png")
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=1)
    out = encode_to_hdf5(model, as_stimulus(folder), tmp_path / "r.h5", show_progress=False)
    with h5py.File(out, "r") as h5:
        sources = [s.decode() for s in h5["stimulus_sources"][()]]
        assert h5["lh"].shape == (3, 20)
    assert sources == [str(folder / f"{i}.png") for i in range(3)]


def test_model_without_subject_or_selection(tmp_path: Path, toy_plugin: object) -> None:
    model = BERG(tmp_path).get_encoding_model("toy_family-gamma")
    stimulus = as_stimulus(np.full((2, 3, 2, 2), 255, dtype=np.uint8))
    out = encode_to_hdf5(model, stimulus, tmp_path / "f.h5", show_progress=False)
    with h5py.File(out, "r") as h5:
        assert sorted(h5) == ["columns", "coords", "responses"]
        # white images: mean RGB = (1, 1, 1); gamma (third member) = 3 * [[1..4], [5..8], [9..12]]
        np.testing.assert_allclose(h5["responses"][()], [[45, 54, 63, 72]] * 2)
        assert h5.attrs["subject"] == ""
        assert h5.attrs["selection"] == "{}"


def test_empty_output_is_written(berg_dir: Path, tmp_path: Path, images: np.ndarray) -> None:
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=1, selection={"roi": "FFA-2"})
    out = encode_to_hdf5(model, as_stimulus(images), tmp_path / "r.h5", show_progress=False)
    with h5py.File(out, "r") as h5:
        assert h5["lh"].shape == (7, 0)
        assert h5["rh"].shape == (7, 2)


def test_existing_file_is_kept_without_force(
    berg_dir: Path, tmp_path: Path, images: np.ndarray
) -> None:
    out = tmp_path / "r.h5"
    out.write_bytes(b"precious")
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=1)
    with pytest.raises(InvalidParameterError) as info:
        encode_to_hdf5(model, as_stimulus(images), out, show_progress=False)
    assert str(info.value) == f"output file {out} exists; pass --force to overwrite it"
    assert out.read_bytes() == b"precious"
    encode_to_hdf5(model, as_stimulus(images), out, force=True, show_progress=False)
    with h5py.File(out, "r") as h5:
        assert h5["lh"].shape == (7, 20)


def _failing_after_first_batch(
    model: object, error: BaseException
) -> Callable[[object], Iterator[tuple[np.ndarray, ...]]]:
    original = model.encode_batches  # type: ignore[attr-defined]

    def encode_batches(stimulus: object) -> Iterator[tuple[np.ndarray, ...]]:
        batches = original(stimulus)
        yield next(batches)
        raise error

    return encode_batches


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_no_partial_file_after_a_failure_mid_way(
    berg_dir: Path,
    tmp_path: Path,
    images: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=1, batch_size=2)
    monkeypatch.setattr(model, "encode_batches", _failing_after_first_batch(model, error))
    with pytest.raises(type(error)):
        encode_to_hdf5(model, as_stimulus(images), out_dir / "r.h5", show_progress=False)
    assert files_in(out_dir) == []
    # with --force, an existing file survives a failed run untouched
    (out_dir / "r.h5").write_bytes(b"previous run")
    with pytest.raises(type(error)):
        encode_to_hdf5(
            model, as_stimulus(images), out_dir / "r.h5", force=True, show_progress=False
        )
    assert files_in(out_dir) == ["r.h5"]
    assert (out_dir / "r.h5").read_bytes() == b"previous run"


def test_closed_model_writes_nothing(berg_dir: Path, tmp_path: Path, images: np.ndarray) -> None:
    model = BERG(berg_dir).get_encoding_model(LINEAR, subject=1)
    model.close()
    with pytest.raises(InvalidParameterError, match="was closed"):
        encode_to_hdf5(model, as_stimulus(images), tmp_path / "r.h5", show_progress=False)
    assert not (tmp_path / "r.h5").exists()
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())

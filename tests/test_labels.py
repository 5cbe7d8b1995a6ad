"""berg_core.labels.to_xarray and BERG.encode(return_xarray=True): arrays with dims and coords."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from berg_core import BERG, BergError, InvalidParameterError
from berg_core.labels import dataset_dims, to_xarray

xarray = pytest.importorskip("xarray")

TIMECOURSE = "toy-synthetic-timecourse"
LINEAR = "toy-synthetic-linear"


def test_time_resolved_model(berg_dir: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    selection = {"channel": ["O2", "O1"], "time": {"min": 0}}
    model = berg.get_encoding_model(TIMECOURSE, subject=1, selection=selection)
    responses = berg.encode(model, images, show_progress=False)
    dataset = berg.encode(model, images, show_progress=False, return_xarray=True)
    assert isinstance(dataset, xarray.Dataset)
    assert list(dataset.data_vars) == ["responses"]
    data = dataset["responses"]
    assert data.dims == ("image", "repetition", "channel", "time")
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data.values, responses)
    assert data.coords["channel"].values.tolist() == ["O2", "O1"]
    np.testing.assert_array_equal(data.coords["time"].values, [0.0, 50.0, 100.0, 150.0])
    assert data.coords["time"].attrs["units"] == "ms"
    np.testing.assert_array_equal(data.coords["image"].values, np.arange(7))
    # labels select what positions did: channel O1 at 100 ms is channel 1, time 2 of the array
    np.testing.assert_array_equal(data.sel(channel="O1", time=100.0).values, responses[:, :, 1, 2])
    assert dataset.attrs["model_id"] == TIMECOURSE and dataset.attrs["subject"] == "1"
    assert json.loads(dataset.attrs["selection"])["channel"] == ["O2", "O1"]


def test_shared_dims_are_named_per_output(berg_dir: Path, images: np.ndarray) -> None:
    """lh and rh both have a dim 'column' with other positions: lh_column and rh_column."""
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(LINEAR, subject=2, selection={"roi": "V2"})
    lh, rh = berg.encode(model, images, show_progress=False)
    dataset, metadata = berg.encode(
        model, images, show_progress=False, return_xarray=True, return_metadata=True
    )
    assert dataset_dims(model) == {"lh": ("image", "lh_column"), "rh": ("image", "rh_column")}
    assert dataset["lh"].dims == ("image", "lh_column")
    np.testing.assert_array_equal(dataset["lh"].values, lh)
    np.testing.assert_array_equal(dataset["rh"].values, rh)
    np.testing.assert_array_equal(dataset["lh_column"].values, metadata["output"]["columns"]["lh"])
    np.testing.assert_array_equal(dataset["rh_column"].values, [5, 6])  # V2 of subject 2 (rh)
    assert metadata["output"]["names"] == ["lh", "rh"]


def test_image_coordinate_is_the_file_names(
    berg_dir: Path, tmp_path: Path, images: np.ndarray
) -> None:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, image in enumerate(images[:3]):
        Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(folder / f"{i}.png")
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(TIMECOURSE, subject=2)
    dataset = berg.encode(model, folder, show_progress=False, return_xarray=True)
    assert [Path(p).name for p in dataset["image"].values.tolist()] == ["0.png", "1.png", "2.png"]
    np.testing.assert_array_equal(
        dataset["responses"].values, berg.encode(model, images[:3], show_progress=False)
    )


def test_to_xarray_checks_its_arguments(berg_dir: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(TIMECOURSE, subject=1)
    responses = berg.encode(model, images, show_progress=False)
    with pytest.raises(InvalidParameterError, match=r"responses of shapes \(\(7, 2, 3\),\) are"):
        to_xarray(model, responses[..., 0])
    with pytest.raises(InvalidParameterError, match=r"with shapes \(\(2, 3, 5\),\), one array"):
        to_xarray(model, (responses, responses))
    with pytest.raises(InvalidParameterError, match=r"images: 2 labels for 7 images"):
        to_xarray(model, responses, images=["a", "b"])
    labelled = to_xarray(model, responses, images=[f"im{i}" for i in range(7)])
    np.testing.assert_array_equal(labelled["responses"].sel(image="im3").values, responses[3])
    with pytest.raises(InvalidParameterError, match="return_xarray = 'yes' is not valid"):
        berg.encode(model, images, return_xarray="yes")


def test_without_xarray_installed(
    berg_dir: Path, images: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_xarray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "xarray" or name.startswith("xarray."):
            raise ImportError("No module named 'xarray'")
        return real_import(name, *args, **kwargs)

    berg = BERG(berg_dir)
    model = berg.get_encoding_model(TIMECOURSE, subject=1)
    encoded: list[int] = []
    original = type(model).encode_batches
    monkeypatch.setattr(
        type(model), "encode_batches", lambda self, s: encoded.append(1) or original(self, s)
    )
    monkeypatch.setattr(builtins, "__import__", no_xarray)
    with pytest.raises(
        BergError, match=r"need xarray, which is not installed .*pip install xarray"
    ):
        berg.encode(model, images, show_progress=False, return_xarray=True)
    assert encoded == []  # refused before any work
    assert berg.encode(model, images, show_progress=False).shape == (7, 2, 3, 5)

"""Aux coordinates: coordinates along dims that are not a dim's index (channel positions, xyz).

``toy-synthetic-timecourse`` gives ``channel_position``, ``(channel, 2)``: channel *i* of 3 at
angle ``2 pi i / 3`` on the unit circle (computed here independently). Picks along ``channel``
must keep the same rows as they keep channels, in metadata, HDF5 and xarray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from berg_core import BERG, PluginError
from berg_core.output import encode_to_hdf5
from berg_core.stimulus import as_stimulus

TIMECOURSE = "toy-synthetic-timecourse"
CHANNELS = ["O1", "Oz", "O2"]


def positions(indices: list[int]) -> np.ndarray:
    """Independent: the vertices of a triangle on the unit circle, channel 0 at (1, 0)."""
    half = np.sqrt(3.0) / 2
    vertices = np.array([[1.0, 0.0], [-0.5, half], [-0.5, -half]])
    return vertices[indices]


#: The plugin computes angle 2 pi i / 3 (pi rounded, one division: abs error <= eps * angle,
#: angle < 2 pi) then cos/sin (1-Lipschitz, libm within 1 ulp <= eps): error <= eps * (2 pi + 1).
ATOL = float(np.finfo(np.float64).eps) * (2 * np.pi + 1)


def load(berg_dir: Path, selection: dict[str, Any] | None = None) -> Any:
    return BERG(berg_dir).get_encoding_model(TIMECOURSE, subject=1, selection=selection)


@pytest.mark.parametrize(
    ("selection", "kept"),
    [(None, [0, 1, 2]), ({"channel": ["O2", "O1", "O2"]}, [2, 0, 2])],
)
def test_picks_along_channel_keep_the_same_rows(
    berg_dir: Path, images: np.ndarray, selection: dict | None, kept: list[int]
) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(TIMECOURSE, subject=1, selection=selection)
    responses, metadata = berg.encode(model, images, return_metadata=True, show_progress=False)
    assert responses.shape == (7, 2, len(kept), 5)
    (dims, values) = model.aux_coords()["responses"]["channel_position"]
    assert dims == ("channel",)
    assert values.shape == (len(kept), 2) and values.dtype == np.float64
    np.testing.assert_allclose(values, positions(kept), rtol=0, atol=ATOL)
    given = metadata["output"]["aux_coords"]["responses"]["channel_position"]
    assert given["dims"] == ["channel"]
    np.testing.assert_array_equal(given["values"], values)
    assert metadata["output"]["coords"]["responses"]["channel"].tolist() == [
        CHANNELS[i] for i in kept
    ]


def test_hdf5_and_xarray_carry_them(berg_dir: Path, tmp_path: Path, images: np.ndarray) -> None:
    pytest.importorskip("xarray")
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(TIMECOURSE, subject=1, selection={"channel": ["O2", "Oz"]})
    want = positions([2, 1])
    out = encode_to_hdf5(model, as_stimulus(images), tmp_path / "tc.h5", show_progress=False)
    with h5py.File(out, "r") as h5:
        dataset = h5["coords/responses/channel_position"]
        assert list(dataset.attrs["dims"]) == ["channel"]
        assert dataset.shape == (2, 2) and dataset.dtype == np.float64
        np.testing.assert_allclose(dataset[()], want, rtol=0, atol=ATOL)
        assert "dims" not in h5["coords/responses/channel"].attrs  # index coordinates: no attr
    data = berg.encode(model, images, show_progress=False, return_xarray=True)
    # a coordinate of the dataset; with its trailing axis it cannot be one of data["responses"]
    coord = data.coords["channel_position"]
    assert coord.dims == ("channel", "channel_position_axis")
    np.testing.assert_allclose(coord.values, want, rtol=0, atol=ATOL)
    assert "channel_position" not in data.indexes  # a non-index coordinate
    picked = data.sel(channel="Oz")
    np.testing.assert_array_equal(picked["channel_position"].values, coord.values[1])


def test_several_dims_in_any_order_with_trailing_axes(
    berg_dir: Path, tmp_path: Path, images: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An aux coordinate along (time, channel), (5, 3, 2, 2): picks apply to both axes."""
    xarray = pytest.importorskip("xarray")
    from berg_testplugin.timecourse import TimecourseModel

    full = np.arange(5 * 3 * 4).reshape(5, 3, 2, 2)
    labels = np.array([[f"c{c}t{t}" for c in range(3)] for t in range(5)])
    monkeypatch.setattr(
        TimecourseModel,
        "output_aux_coords",
        lambda self: {
            "responses": {"grid": (("time", "channel"), full), "tag": (("time", "channel"), labels)}
        },
    )
    berg = BERG(berg_dir)
    selection = {"channel": ["O2", "O1"], "time": {"min": 50}}  # channels [2, 0], times [2, 3, 4]
    model = berg.get_encoding_model(TIMECOURSE, subject=1, selection=selection)
    aux = model.aux_coords()["responses"]
    assert aux["grid"][0] == ("time", "channel")
    np.testing.assert_array_equal(aux["grid"][1], full[[2, 3, 4]][:, [2, 0]])
    assert aux["tag"][1].tolist() == [["c2t2", "c0t2"], ["c2t3", "c0t3"], ["c2t4", "c0t4"]]
    out = encode_to_hdf5(model, as_stimulus(images), tmp_path / "grid.h5", show_progress=False)
    with h5py.File(out, "r") as h5:
        assert list(h5["coords/responses/grid"].attrs["dims"]) == ["time", "channel"]
        np.testing.assert_array_equal(h5["coords/responses/grid"][()], aux["grid"][1])
        tags = h5["coords/responses/tag"]
        assert h5py.check_string_dtype(tags.dtype).encoding == "utf-8"
        assert tags.asstr()[()].tolist() == aux["tag"][1].tolist()
    data = berg.encode(model, images, show_progress=False, return_xarray=True)
    assert data["grid"].dims == ("time", "channel", "grid_axis0", "grid_axis1")
    assert data["tag"].dims == ("time", "channel")
    np.testing.assert_array_equal(data["grid"].sel(time=100.0, channel="O1").values, full[3, 0])
    assert isinstance(data, xarray.Dataset)


@pytest.mark.parametrize(
    ("aux", "match"),
    [
        ({"eeg": {"x": (("channel",), np.zeros(3))}}, r"output 'eeg' is not one of .*'responses'"),
        (
            {"responses": {"time": (("channel",), np.zeros(3))}},
            r"\['time'\]: the name must .* not a dim",
        ),
        ({"responses": {"a/b": (("channel",), np.zeros(3))}}, r"without '/'"),
        (
            {"responses": {"x": (("sensor",), np.zeros(3))}},
            r"dims \['sensor'\] must be distinct dims",
        ),
        ({"responses": {"x": (("channel", "channel"), np.zeros((3, 3)))}}, r"must be distinct"),
        ({"responses": {"x": ((), np.zeros(3))}}, r"dims \[\] must be distinct .*at least one"),
        (
            {"responses": {"x": (("channel", "time"), np.zeros((3, 4)))}},
            r"values of shape \(3, 4\) along dims \['channel', 'time'\] of sizes \(3, 5\)",
        ),
        ({"responses": {"x": (("channel",), np.zeros(()))}}, r"values of shape \(\) along"),
    ],
)
def test_malformed_aux_coords_are_a_plugin_error(
    berg_dir: Path, monkeypatch: pytest.MonkeyPatch, aux: dict, match: str
) -> None:
    from berg_testplugin.timecourse import TimecourseModel

    monkeypatch.setattr(TimecourseModel, "output_aux_coords", lambda self: aux)
    with pytest.raises(PluginError, match=match):
        load(berg_dir).aux_coords()


def test_a_dataset_name_clash_is_a_plugin_error(
    berg_dir: Path, images: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("xarray")
    from berg_testplugin.timecourse import TimecourseModel

    monkeypatch.setattr(
        TimecourseModel,
        "output_aux_coords",
        lambda self: {"responses": {"image": (("channel",), np.zeros(3))}},
    )
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(TIMECOURSE, subject=1)
    with pytest.raises(
        PluginError, match=r"aux coordinate 'image' of output 'responses' would be named 'image'"
    ):
        berg.encode(model, images, show_progress=False, return_xarray=True)


def test_models_without_aux_coords_have_none(berg_dir: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model("toy-synthetic-linear", subject=1)
    _, metadata = berg.encode(model, images, return_metadata=True, show_progress=False)
    assert model.aux_coords() == {} and metadata["output"]["aux_coords"] == {}

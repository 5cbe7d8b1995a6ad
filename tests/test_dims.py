"""Labelled multi-dim outputs and picks along their dims, with the time-resolved toy model.

``toy-synthetic-timecourse`` returns ``(N, repetition=2, channel=3, time=5)``; its channel names
come from the subject's metadata file and its times (ms) from the card. Expected values are
computed here from the model's definition, independently of berg.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import pytest

from berg_core import BERG, InvalidParameterError, PluginError
from berg_core.cli import main

TIMECOURSE = "toy-synthetic-timecourse"
CHANNELS = {1: ["O1", "Oz", "O2"], 2: ["PO7", "POz", "PO8"]}
TIMES = np.array([-50.0, 0.0, 50.0, 100.0, 150.0])


def expected_timecourse(
    images: np.ndarray, subject: int, gain: float = 1.0, reference: str = "none"
) -> np.ndarray:
    """``gain * (r + 1) * mean(colour c) * (1 + t / 100) + subject / 10``, ``(N, 2, 3, 5)``."""
    rgb = images.astype(np.float64).reshape(len(images), 3, -1).mean(axis=2) / 255.0
    out = np.empty((len(images), 2, 3, 5))
    for r in range(2):
        for c in range(3):
            for t, ms in enumerate(TIMES):
                out[:, r, c, t] = gain * (r + 1) * rgb[:, c] * (1 + ms / 100) + subject / 10
    if reference == "average":
        out -= out.mean(axis=2, keepdims=True)
    return out


def encode(berg_dir: Path, images: np.ndarray, subject: int = 1, **kwargs: object) -> np.ndarray:
    berg = BERG(berg_dir)
    return berg.encode(
        berg.get_encoding_model(TIMECOURSE, subject=subject, **kwargs), images, show_progress=False
    )


@pytest.mark.parametrize("subject", [1, 2])
def test_full_output_shape_dtype_values_and_labels(
    berg_dir: Path, images: np.ndarray, subject: int
) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(TIMECOURSE, subject=subject, batch_size=3)
    responses = berg.encode(model, images, show_progress=False)
    assert isinstance(responses, np.ndarray)  # one output: a bare array
    assert responses.shape == (7, 2, 3, 5) and responses.dtype == np.float32
    np.testing.assert_allclose(responses, expected_timecourse(images, subject), rtol=1e-6)
    assert model.dims() == {"responses": ("image", "repetition", "channel", "time")}
    assert model.shapes() == ((2, 3, 5),)
    coords = model.coords()["responses"]
    assert list(coords) == ["repetition", "channel", "time"]
    np.testing.assert_array_equal(coords["repetition"], [0, 1])
    assert coords["channel"].tolist() == CHANNELS[subject]
    np.testing.assert_array_equal(coords["time"], TIMES)
    assert model.columns() == {}  # no one-dim output


def test_channels_by_name_keep_order_and_duplicates(berg_dir: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(
        TIMECOURSE, subject=1, selection={"channel": ["O2", "O1", "O2"]}
    )
    responses = berg.encode(model, images, show_progress=False)
    full = expected_timecourse(images, 1)
    assert responses.shape == (7, 2, 3, 5)
    np.testing.assert_allclose(responses, full[:, :, [2, 0, 2], :], rtol=1e-6)
    assert model.coords()["responses"]["channel"].tolist() == ["O2", "O1", "O2"]
    one = encode(berg_dir, images, selection={"channel": "Oz"})  # one name
    np.testing.assert_allclose(one, full[:, :, [1], :], rtol=1e-6)


def test_time_window_and_channels_together(berg_dir: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    selection = {"channel": ["POz"], "time": {"min": 0, "max": 100}, "repetition": [1]}
    model = berg.get_encoding_model(TIMECOURSE, subject=2, selection=selection)
    responses = berg.encode(model, images, show_progress=False)
    assert responses.shape == (7, 1, 1, 3)
    np.testing.assert_allclose(
        responses, expected_timecourse(images, 2)[:, [1]][:, :, [1]][:, :, :, 1:4], rtol=1e-6
    )
    coords = model.coords()["responses"]
    np.testing.assert_array_equal(coords["time"], [0.0, 50.0, 100.0])
    np.testing.assert_array_equal(coords["repetition"], [1])
    assert model.shapes() == ((1, 1, 3),)
    half_open = encode(berg_dir, images, selection={"time": {"min": 60}})
    np.testing.assert_allclose(half_open, expected_timecourse(images, 1)[..., 3:], rtol=1e-6)


def test_picks_combine_with_the_family_selection(berg_dir: Path, images: np.ndarray) -> None:
    """The family's re-referencing uses every channel; the pick then keeps two of them."""
    responses = encode(
        berg_dir, images, selection={"reference": "average", "channel": ["O2", "O1"]}
    )
    want = expected_timecourse(images, 1, reference="average")[:, :, [2, 0], :]
    np.testing.assert_allclose(responses, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(responses, expected_timecourse(images, 1)[:, :, [2, 0], :])


def test_options_reach_the_model(berg_dir: Path, images: np.ndarray) -> None:
    responses = encode(berg_dir, images, gain=2.5)
    np.testing.assert_allclose(responses, expected_timecourse(images, 1, gain=2.5), rtol=1e-6)
    with pytest.raises(InvalidParameterError, match=r"option gain = -1 is not valid for toy-syn"):
        BERG(berg_dir).get_encoding_model(TIMECOURSE, subject=1, gain=-1)


def test_unknown_channel_names_the_valid_ones(
    berg_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The picks are resolved when the model is loaded; the model is closed on error."""
    from berg_testplugin.timecourse import TimecourseModel

    closed: list[TimecourseModel] = []
    monkeypatch.setattr(TimecourseModel, "close", lambda self: closed.append(self))
    with pytest.raises(InvalidParameterError) as info:
        BERG(berg_dir).get_encoding_model(
            TIMECOURSE, subject=1, selection={"channel": ["Oz", "Cz"]}
        )
    assert len(closed) == 1
    message = str(info.value)
    assert "selection['channel']" in message and "'Cz'" in message
    assert "O1, Oz, O2" in message and TIMECOURSE in message


@pytest.mark.parametrize(
    ("selection", "match"),
    [
        ({"channel": {"min": 0}}, r"window, but the channel coordinates of .* are not numbers"),
        ({"time": {"min": 151}}, r"keeps no position of .*run from -50.0 to 150.0"),
        ({"time": {"min": 100, "max": 0}}, r"'min' is above 'max'"),
        ({"time": {"start": 0}}, r"a window is a dict with numeric 'min' and/or 'max'"),
        ({"time": []}, r"expected a non-empty list of time coordinates"),
        ({"time": [0.0, 42.0]}, r"\[42.0\] not among the 5 time coordinates"),
        ({"repetition": [True]}, r"holds True; coordinates are names or numbers"),
    ],
)
def test_bad_picks(berg_dir: Path, images: np.ndarray, selection: dict, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        encode(berg_dir, images, selection=selection)


def test_metadata_carries_dims_and_coords(berg_dir: Path, images: np.ndarray) -> None:
    berg = BERG(berg_dir)
    model = berg.get_encoding_model(
        TIMECOURSE, subject=1, selection={"channel": ["O2"], "time": {"max": 0}}
    )
    responses, metadata = berg.encode(model, images, return_metadata=True, show_progress=False)
    assert responses.shape == (7, 2, 1, 2)
    assert metadata["eeg"]["ch_names"] == CHANNELS[1]  # the subject's metadata
    output = metadata["output"]
    assert output["dims"] == {"responses": ["image", "repetition", "channel", "time"]}
    assert output["coords"]["responses"]["channel"].tolist() == ["O2"]
    np.testing.assert_array_equal(output["coords"]["responses"]["time"], [-50.0, 0.0])
    assert output["columns"] == {}
    assert output["selection"] == {
        "reference": "none",  # the family's key, with its default
        "channel": ["O2"],
        "time": {"min": None, "max": 0},
    }


def run_cli(*argv: object) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 1


def test_hdf5_from_the_command_line(berg_dir: Path, tmp_path: Path, images: np.ndarray) -> None:
    stimulus = tmp_path / "images.npy"
    np.save(stimulus, images)
    out = tmp_path / "tc.h5"
    selection = json.dumps({"channel": ["O2", "Oz"], "time": {"min": 0}})
    status = run_cli(
        "--berg-dir", berg_dir, "encode", TIMECOURSE, "--subject", "1",
        "--stimulus", stimulus, "--selection", selection, "--out", out, "--quiet",
    )  # fmt: skip
    assert status == 0
    with h5py.File(out, "r") as h5:
        assert sorted(h5) == ["coords", "responses"]  # no columns/: not a one-dim output
        data = h5["responses"]
        assert data.shape == (7, 2, 2, 4) and data.dtype == np.float32
        assert list(data.attrs["dims"]) == ["image", "repetition", "channel", "time"]
        want = expected_timecourse(images, 1)[:, :, [2, 1], 1:]
        np.testing.assert_allclose(data[()], want, rtol=1e-6)
        channel = h5["coords/responses/channel"]
        assert h5py.check_string_dtype(channel.dtype).encoding == "utf-8"
        assert [c.decode("utf-8") for c in channel[()]] == ["O2", "Oz"]
        np.testing.assert_array_equal(h5["coords/responses/time"][()], [0, 50, 100, 150])
        assert h5["coords/responses/time"].attrs["unit"] == "ms"
        assert "unit" not in h5["coords/responses/channel"].attrs
        np.testing.assert_array_equal(h5["coords/responses/repetition"][()], [0, 1])
        assert json.loads(h5.attrs["selection"]) == {
            "reference": "none",
            "channel": ["O2", "Oz"],
            "time": {"min": 0, "max": None},
        }


def test_one_dim_outputs_keep_their_columns(
    berg_dir: Path, tmp_path: Path, images: np.ndarray
) -> None:
    """The toy linear model's outputs stay ``(N, columns)`` with ``columns/<output>``."""
    stimulus = tmp_path / "images.npy"
    np.save(stimulus, images)
    out = tmp_path / "lin.h5"
    status = run_cli(
        "--berg-dir", berg_dir, "encode", "toy-synthetic-linear", "--subject", "1",
        "--stimulus", stimulus, "--selection", '{"column": [3, 1]}', "--out", out, "--quiet",
    )  # fmt: skip
    assert status == 0
    with h5py.File(out, "r") as h5:
        assert sorted(h5) == ["columns", "coords", "lh", "rh"]
        for hemi in ("lh", "rh"):
            assert h5[hemi].shape == (7, 2)
            np.testing.assert_array_equal(h5[f"columns/{hemi}"][()], [3, 1])
            np.testing.assert_array_equal(h5[f"coords/{hemi}/column"][()], [3, 1])


def test_wrong_batch_shapes_are_a_plugin_error(
    berg_dir: Path, images: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from berg_testplugin.timecourse import TimecourseModel

    def transposed(self: TimecourseModel, stimulus: object) -> Iterator[tuple[np.ndarray, ...]]:
        for batch in stimulus.batches(self.batch_size):  # type: ignore[attr-defined]
            yield (np.zeros((len(batch), 2, 5, 3), dtype=np.float32),)

    monkeypatch.setattr(TimecourseModel, "encode_batches", transposed)
    with pytest.raises(PluginError, match=r"yielded shapes \(\(7, 2, 5, 3\),\); expected"):
        encode(berg_dir, images, batch_size=10)


def test_flat_and_shaped_batches_give_the_same_result(
    berg_dir: Path, images: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from berg_testplugin.timecourse import TimecourseModel

    flat = encode(berg_dir, images, selection={"channel": ["O1"]})
    original: Callable[..., Iterator[tuple[np.ndarray, ...]]] = TimecourseModel.encode_batches

    def shaped(self: TimecourseModel, stimulus: object) -> Iterator[tuple[np.ndarray, ...]]:
        for (values,) in original(self, stimulus):
            yield (values.reshape(len(values), 2, 3, 5),)

    monkeypatch.setattr(TimecourseModel, "encode_batches", shaped)
    np.testing.assert_array_equal(encode(berg_dir, images, selection={"channel": ["O1"]}), flat)


def test_describe_lists_dims(toy_plugin: ModuleType) -> None:
    info = BERG("/x").describe(TIMECOURSE, print_format=False)
    dims = info["output_dims"]["responses"]
    assert [(d["name"], d["size"], d["unit"]) for d in dims] == [
        ("repetition", 2, ""),
        ("channel", 3, ""),
        ("time", 5, "ms"),
    ]
    assert info["option_specs"]["gain"]["default"] == 1.0


def test_options_from_the_command_line(
    berg_dir: Path, tmp_path: Path, images: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    stimulus = tmp_path / "images.npy"
    np.save(stimulus, images)
    out = tmp_path / "gain.h5"
    base = ("--berg-dir", berg_dir, "encode", TIMECOURSE, "--subject", "2", "--stimulus", stimulus)
    status = run_cli(*base, "-o", "gain=2.5", "--option", "batch_size=3", "--out", out, "--quiet")
    assert status == 0
    assert capsys.readouterr().out == (
        f"wrote {out}: 7 images x responses[repetition 2, channel 3, time 5]\n"
    )
    with h5py.File(out, "r") as h5:
        want = expected_timecourse(images, 2, gain=2.5)
        np.testing.assert_allclose(h5["responses"][()], want, rtol=1e-6)
        assert h5["responses"].chunks[0] == 3  # chunks of one batch: batch_size reached the model


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("-o", "gain"), "-o 'gain' is not KEY=VALUE; e.g. -o batch_size=8"),
        (("-o", "=2"), "-o '=2' is not KEY=VALUE"),
        (("-o", "gain=1", "-o", "gain=2"), "-o gain= is given twice ('1' and '2')"),
        (
            ("-o", "gian=2"),
            "berg encode -o got unexpected option(s) gian for toy-synthetic-timecourse; options "
            "it accepts: batch_size, gain",
        ),
        (("-o", "gain=-1"), "option gain = '-1' is not valid for toy-synthetic-timecourse"),
        (("-o", "gain=loud"), "option gain = 'loud' is not valid"),
        (("-o", "batch_size=0"), "option batch_size = '0' is not valid"),
        (("-o", "batch_size=2", "--batch-size", "2"), "with --batch-size or -o batch_size=, not"),
    ],
)
def test_bad_options_on_the_command_line(
    berg_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: tuple[str, ...],
    message: str,
) -> None:
    stimulus = tmp_path / "images.npy"
    np.save(stimulus, np.zeros((2, 3, 4, 4), dtype=np.uint8))
    out = tmp_path / "x.h5"
    base = ("--berg-dir", berg_dir, "encode", TIMECOURSE, "--subject", "1", "--stimulus", stimulus)
    assert run_cli(*base, *options, "--out", out) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_describe_shows_dims_and_options(
    toy_plugin: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("describe", TIMECOURSE) == 0
    out = capsys.readouterr().out
    assert "  responses: repetition (2) x channel (3) x time (5, ms)" in out
    assert "  gain: number = 1.0 (> 0)  Multiplies every response." in out
    assert "  batch_size: integer | null = None (> 0)  Images per forward pass" in out

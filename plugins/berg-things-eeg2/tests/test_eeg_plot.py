"""``berg eeg-plot``: the PNG is written, and the plotted lines are the HDF5 values."""

from __future__ import annotations

from pathlib import Path

import berg_things_eeg2.plugin
import h5py
import numpy as np
import pytest
from berg_things_eeg2.fixture import write_model_files
from berg_things_eeg2.layout import CHANNELS, FOLDERS, TIMES
from berg_things_eeg2.plot import make_figure, read_responses

from berg_core import InvalidParameterError
from berg_core.cli import main
from berg_core.output import encode_to_hdf5, write_coords
from berg_core.stimulus import as_stimulus
from berg_core.testing import only_plugin

UNTRAINED = list(FOLDERS)[2]


def write_h5(path: Path, n: int = 2, positions: bool = False) -> np.ndarray:
    """A file with the layout ``berg encode`` writes (dims, coords, units), random values."""
    values = np.random.default_rng(0).normal(0, 1, (n, 4, len(CHANNELS), len(TIMES)))
    values = values.astype(np.float32)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("responses", data=values).attrs["dims"] = [
            "image",
            "repetition",
            "channel",
            "time",
        ]
        write_coords(h5, "coords/responses/repetition", np.arange(1, 5))
        write_coords(h5, "coords/responses/channel", np.array(CHANNELS))
        write_coords(h5, "coords/responses/time", TIMES, unit="s")
        if positions:
            angle = np.linspace(0, 2 * np.pi, len(CHANNELS), endpoint=False)
            xy = np.stack([np.cos(angle), np.sin(angle)], axis=1)
            write_coords(h5, "coords/responses/channel_position", xy).attrs["dims"] = ["channel"]
    return values


def test_encode_output_plots_its_values(berg, images, tmp_path):
    """The real ``berg encode`` file: the lines are its values, x is its times in ms."""
    write_model_files(berg.berg_dir, UNTRAINED, 1)
    out = tmp_path / "r.h5"
    with berg.get_encoding_model(
        UNTRAINED, subject=1, device="cpu", selection={"channel": ["Oz", "Cz"]}
    ) as model:
        encode_to_hdf5(model, as_stimulus(images[:2]), out, show_progress=False)
    with h5py.File(out, "r") as h5:
        stored = h5["responses"][1]
    responses = read_responses(out, image=1)
    fig = make_figure(responses, "Cz")
    lines = fig.axes[0].lines
    for r in range(4):
        np.testing.assert_array_equal(lines[r].get_xdata(), TIMES * 1000.0)
        np.testing.assert_array_equal(lines[r].get_ydata(), stored[r, 1])
    np.testing.assert_array_equal(lines[4].get_ydata(), stored[:, 1].mean(axis=0))


def test_command_writes_png_of_expected_size(tmp_path):
    path = tmp_path / "r.h5"
    values = write_h5(path)
    png = tmp_path / "fig.png"
    with only_plugin(berg_things_eeg2.plugin, "things_eeg2"):
        assert main(["eeg-plot", str(path), "--channel", "Oz", "--out", str(png)]) == 0
        assert (
            main(
                [
                    "eeg-plot",
                    str(path),
                    "--channel",
                    "O1",
                    "--image",
                    "1",
                    "--time",
                    "0.1",
                    "--out",
                    str(tmp_path / "two.png"),
                ]
            )
            == 0
        )
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[:2] == (400, 640)  # 6.4 x 4 in at 100 dpi
    assert matplotlib.image.imread(tmp_path / "two.png").shape[:2] == (400, 1280)
    fig = make_figure(read_responses(path, 0), "Oz")
    oz = CHANNELS.index("Oz")
    np.testing.assert_array_equal(fig.axes[0].lines[2].get_ydata(), values[0, 2, oz])


def test_time_panel_heat_map_without_positions_and_scalp_map_with(tmp_path):
    plain, placed = tmp_path / "plain.h5", tmp_path / "placed.h5"
    values = write_h5(plain)
    write_h5(placed, positions=True)
    heat = make_figure(read_responses(plain, 0), "Oz", time=0.1).axes[1]
    assert "no channel positions" in heat.get_title()
    np.testing.assert_allclose(heat.images[0].get_array(), values[0].mean(axis=0), rtol=1e-6)
    scalp = make_figure(read_responses(placed, 0), "Oz", time=0.1).axes[1]
    t = int(np.argmin(np.abs(TIMES - 0.1)))
    assert "topography at 100 ms" in scalp.get_title()
    np.testing.assert_allclose(
        scalp.collections[0].get_array(), values[0].mean(axis=0)[:, t], rtol=1e-6
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channel": "Xx"}, "--channel 'Xx' is not in the file"),
        ({"image": 5}, "--image 5 is out of range; the file has 2 images"),
        ({"time": 2.0}, "--time 2.0 s is outside the file's times"),
    ],
)
def test_bad_arguments_name_parameter_and_allowed(tmp_path, kwargs, message):
    path = tmp_path / "r.h5"
    write_h5(path)
    with pytest.raises(InvalidParameterError, match=message):
        responses = read_responses(path, kwargs.get("image", 0))
        make_figure(responses, kwargs.get("channel", "Oz"), kwargs.get("time"))


def test_a_file_of_another_model_is_refused(tmp_path):
    path = tmp_path / "fmri.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("lh", data=np.zeros((1, 3))).attrs["dims"] = ["image", "vertex"]
    with pytest.raises(InvalidParameterError, match="expected \\['image', 'repetition'"):
        read_responses(path)
    with pytest.raises(InvalidParameterError, match="is not a file"):
        read_responses(tmp_path / "missing.h5")

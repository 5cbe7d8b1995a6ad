"""berg_train.datasets.base.ImageFiles: the image source of the THINGS and THINGS EEG2 readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from berg_train.datasets.things import ThingsImages
from berg_train.datasets.things_eeg2 import EEG2Images
from PIL import Image

from berg_core import InvalidParameterError


def _write(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def test_loads_rgb_uint8_channel_first_in_the_order_asked(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    _write(tmp_path / "a" / "x.png", rgb)
    _write(tmp_path / "b" / "y.png", gray)
    source = ThingsImages(tmp_path, ["a", "b"], ["x.png", "y.png"])
    assert len(source) == 2
    second, first = source.load([1, 0])
    np.testing.assert_array_equal(first, rgb.transpose(2, 0, 1))  # PNG: lossless
    assert second.shape == (3, 4, 6) and second.dtype == np.uint8
    for channel in second:  # grey converted to RGB: three equal channels
        np.testing.assert_array_equal(channel, gray)


@pytest.mark.parametrize(
    ("make", "label"),
    [
        (lambda root: ThingsImages(root, ["c"], ["gone.jpg"]), "THINGS image"),
        (lambda root: EEG2Images([root / "c" / "gone.jpg"]), "THINGS EEG2 image"),
    ],
)
def test_a_missing_image_names_the_file(tmp_path: Path, make, label: str) -> None:
    source = make(tmp_path)
    with pytest.raises(InvalidParameterError, match=f"^{label} not found: .*gone.jpg$"):
        source.load([0])

"""Stimulus normalisation and validation (berg_core.stimulus), for the core alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from berg_core import InvalidParameterError, StimulusError, as_stimulus
from berg_core.stimulus import Stimulus

RNG = np.random.default_rng(7)
UINT8 = RNG.integers(0, 256, size=(5, 3, 6, 4), dtype=np.uint8)


def all_batches(stimulus: Stimulus, size: int = 2) -> list[np.ndarray | list[np.ndarray]]:
    return list(stimulus.batches(size))


def stacked(stimulus: Stimulus) -> np.ndarray:
    return np.concatenate(all_batches(stimulus, 2))


def save_png(path: Path, array_chw: np.ndarray) -> Path:
    Image.fromarray(np.ascontiguousarray(array_chw.transpose(1, 2, 0))).save(path)
    return path


# -- arrays --------------------------------------------------------------------------------------


def test_uint8_array_is_kept_as_8bit_intensities() -> None:
    stimulus = as_stimulus(UINT8)
    assert stimulus.kind == "uint8"
    assert len(stimulus) == 5
    assert stimulus.sources is None
    assert stimulus.array is UINT8
    batches = all_batches(stimulus, 2)
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    assert all(b.dtype == np.uint8 for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), UINT8)


@pytest.mark.parametrize(
    "dtype",
    [np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint32, np.uint64, np.intc, np.uint8],
)
def test_every_integer_dtype_means_the_same_as_uint8(dtype: type) -> None:
    # int8 holds 0-127 only; every other dtype gets the full 0-255 range
    source = UINT8 // 2 if dtype is np.int8 else UINT8
    stimulus = as_stimulus(source.astype(dtype))
    assert stimulus.kind == "uint8"
    result = stacked(stimulus)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, source)


def test_int64_from_randint_is_not_rescaled_by_2_to_the_63() -> None:
    # the reference toolkit's own example: np.random.randint gives int64
    images = np.random.default_rng(0).integers(0, 255, (3, 3, 4, 4))
    assert images.dtype == np.int64
    result = stacked(as_stimulus(images))
    assert result.max() == images.max() > 200
    np.testing.assert_array_equal(result, images)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_in_unit_interval_becomes_float32(dtype: type) -> None:
    source = (UINT8 / 255.0).astype(dtype)
    stimulus = as_stimulus(source)
    assert stimulus.kind == "float"
    result = stacked(stimulus)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, source.astype(np.float32))
    assert result.min() >= 0 and result.max() <= 1


def test_float_bounds_0_and_1_are_accepted() -> None:
    source = np.zeros((2, 3, 2, 2))
    source[1] = 1.0
    np.testing.assert_array_equal(stacked(as_stimulus(source)), source.astype(np.float32))


@pytest.mark.parametrize(
    ("value", "dtype", "shown"),
    [(-1, np.int16, "from -1 to 9"), (256, np.int64, "from 0 to 256"), (2**40, np.uint64, "")],
)
def test_out_of_range_integers_are_refused(value: int, dtype: type, shown: str) -> None:
    array = np.zeros((2, 3, 4, 4), dtype=dtype)
    array[0, 0, 0, 0] = 9
    array[1, 2, 3, 3] = value
    with pytest.raises(StimulusError) as info:
        as_stimulus(array)
    message = str(info.value)
    assert f"dtype {np.dtype(dtype)}" in message
    assert str(value) in message
    assert shown in message
    assert "8-bit intensities and must lie in 0-255" in message


def test_out_of_range_value_in_a_late_chunk_is_found() -> None:
    # validation reads the array in chunks of 64 images: the bad value is in the third chunk
    array = np.zeros((150, 3, 2, 2), dtype=np.int32)
    array[140, 1, 1, 1] = 300
    with pytest.raises(StimulusError, match="from 0 to 300"):
        as_stimulus(array)


def test_floats_in_0_255_get_the_divide_by_255_hint() -> None:
    with pytest.raises(StimulusError) as info:
        as_stimulus(UINT8.astype(np.float32))
    message = str(info.value)
    assert "float32" in message
    assert f"from {UINT8.min():g} to {UINT8.max():g}" in message
    assert "must lie in [0, 1]" in message
    assert "divide by 255" in message


def test_negative_floats_get_no_0_255_hint() -> None:
    with pytest.raises(StimulusError) as info:
        as_stimulus(np.full((1, 3, 2, 2), -0.5))
    assert "from -0.5 to -0.5" in str(info.value)
    assert "divide by 255" not in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinity_are_refused(bad: float) -> None:
    array = np.full((2, 3, 4, 4), 0.5)
    array[1, 1, 2, 2] = bad
    with pytest.raises(StimulusError, match=r"contains NaN or infinite values; expected floats"):
        as_stimulus(array)


@pytest.mark.parametrize(
    ("shape", "fragments"),
    [
        ((3, 6, 4), ["shape (3, 6, 4)", "3 dimensions", "(N, 3, H, W)", "stimulus[None]"]),
        ((6, 4), ["shape (6, 4)", "2 dimensions", "expected 4 dimensions"]),
        ((1, 1, 3, 6, 4), ["5 dimensions", "expected 4 dimensions"]),
    ],
)
def test_wrong_rank_is_refused(shape: tuple[int, ...], fragments: list[str]) -> None:
    with pytest.raises(StimulusError) as info:
        as_stimulus(np.zeros(shape, dtype=np.uint8))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_channel_last_is_refused_with_the_transpose_hint() -> None:
    with pytest.raises(StimulusError) as info:
        as_stimulus(np.zeros((2, 8, 8, 3), dtype=np.uint8))
    message = str(info.value)
    assert "(2, 8, 8, 3)" in message
    assert "channel-last" in message
    assert "stimulus.transpose(0, 3, 1, 2)" in message


def test_one_channel_is_refused() -> None:
    with pytest.raises(StimulusError) as info:
        as_stimulus(np.zeros((2, 1, 8, 8), dtype=np.uint8))
    assert "has 1 channel(s) (shape (2, 1, 8, 8))" in str(info.value)
    assert "expected 3 RGB channels" in str(info.value)


def test_zero_images_are_refused() -> None:
    with pytest.raises(StimulusError, match=r"holds no images \(shape \(0, 3, 8, 8\)\)"):
        as_stimulus(np.zeros((0, 3, 8, 8), dtype=np.uint8))


def test_empty_images_are_refused() -> None:
    with pytest.raises(StimulusError, match="images are empty"):
        as_stimulus(np.zeros((2, 3, 0, 8), dtype=np.uint8))


@pytest.mark.parametrize("dtype", [bool, object, np.complex64])
def test_non_numeric_dtypes_are_refused(dtype: type) -> None:
    with pytest.raises(StimulusError) as info:
        as_stimulus(np.zeros((1, 3, 2, 2), dtype=dtype))
    assert f"dtype {np.dtype(dtype)}" in str(info.value)
    assert "expected an integer dtype (0-255) or a float dtype ([0, 1])" in str(info.value)


def test_stimulus_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        as_stimulus(np.zeros((0, 3, 8, 8), dtype=np.uint8))


@pytest.mark.parametrize("value", [None, 3, {"a": 1}])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(StimulusError) as info:
        as_stimulus(value)
    assert f"stimulus is a {type(value).__name__}; expected a (N, 3, H, W) array" in str(info.value)


def test_a_stimulus_passes_through() -> None:
    stimulus = as_stimulus(UINT8)
    assert as_stimulus(stimulus) is stimulus


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(InvalidParameterError, match="batch_size must be an integer >= 1, got 0"):
        next(as_stimulus(UINT8).batches(0))


# -- files and PIL images ------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    """Three PNGs named so that name order differs from creation order, plus a non-image."""
    folder = tmp_path / "images"
    folder.mkdir()
    arrays = [RNG.integers(0, 256, size=(3, 5, 7), dtype=np.uint8) for _ in range(3)]
    for name, array in zip(["c.png", "a.png", "b.PNG"], arrays, strict=True):
        save_png(folder / name, array)
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    save_png(folder / "sub" / "0.png", arrays[0])  # sub-folders are not read
    # sorted by name: a.png (arrays[1]), b.PNG (arrays[2]), c.png (arrays[0])
    return folder, [arrays[1], arrays[2], arrays[0]]


def test_folder_is_read_sorted_by_name(image_folder: tuple[Path, list[np.ndarray]]) -> None:
    folder, expected = image_folder
    stimulus = as_stimulus(folder)
    assert len(stimulus) == 3
    assert stimulus.kind == "uint8"
    assert [Path(s).name for s in stimulus.sources] == ["a.png", "b.PNG", "c.png"]
    result = stacked(stimulus)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, np.stack(expected))
    assert as_stimulus(str(folder)).sources == stimulus.sources


def test_jpeg_files_are_decoded_like_pillow_does(tmp_path: Path) -> None:
    paths = []
    for i in range(2):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(RNG.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    expected = np.stack(
        [np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1) for p in paths]
    )
    np.testing.assert_array_equal(stacked(as_stimulus(tmp_path)), expected)


def test_list_of_paths_keeps_the_given_order(image_folder: tuple[Path, list[np.ndarray]]) -> None:
    folder, expected = image_folder
    paths = [folder / "c.png", str(folder / "a.png")]
    stimulus = as_stimulus(paths)
    assert stimulus.sources == [str(folder / "c.png"), str(folder / "a.png")]
    np.testing.assert_array_equal(stacked(stimulus), np.stack([expected[2], expected[0]]))


def test_single_image_path(image_folder: tuple[Path, list[np.ndarray]]) -> None:
    folder, expected = image_folder
    stimulus = as_stimulus(folder / "a.png")
    assert len(stimulus) == 1
    np.testing.assert_array_equal(stacked(stimulus)[0], expected[0])


def test_pil_images_in_any_mode_become_rgb() -> None:
    rgb = RNG.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    gray = RNG.integers(0, 256, size=(4, 6), dtype=np.uint8)
    images = [Image.fromarray(rgb), Image.fromarray(gray), Image.fromarray(rgb).convert("RGBA")]
    stimulus = as_stimulus(images)
    assert len(stimulus) == 3
    assert stimulus.sources is None
    result = stacked(stimulus)
    assert result.shape == (3, 3, 4, 6)
    np.testing.assert_array_equal(result[0], rgb.transpose(2, 0, 1))
    np.testing.assert_array_equal(result[1], np.stack([gray] * 3))
    np.testing.assert_array_equal(result[2], rgb.transpose(2, 0, 1))
    assert len(as_stimulus(images[0])) == 1  # one PIL image alone


def test_mixed_sizes_come_as_a_list_of_arrays(tmp_path: Path) -> None:
    small = RNG.integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    large = RNG.integers(0, 256, size=(3, 6, 5), dtype=np.uint8)
    paths = [save_png(tmp_path / "1.png", small), save_png(tmp_path / "2.png", large)]
    (batch,) = all_batches(as_stimulus(paths), 10)
    assert isinstance(batch, list)
    np.testing.assert_array_equal(batch[0], small)
    np.testing.assert_array_equal(batch[1], large)
    # batches of same-size images are still stacked
    first, second = all_batches(as_stimulus(paths), 1)
    assert isinstance(first, np.ndarray) and first.shape == (1, 3, 4, 4)
    assert isinstance(second, np.ndarray) and second.shape == (1, 3, 6, 5)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    good = save_png(tmp_path / "a.png", UINT8[0])
    with pytest.raises(StimulusError) as info:
        as_stimulus([good, tmp_path / "missing.png"])
    assert str(info.value) == f"stimulus[1]: no such file or folder: {tmp_path / 'missing.png'}"
    with pytest.raises(StimulusError, match=r"stimulus: no such file or folder: .*nope\.png"):
        as_stimulus(tmp_path / "nope.png")


def test_empty_path_is_refused() -> None:
    with pytest.raises(StimulusError, match="stimulus is an empty path"):
        as_stimulus("")


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    good = save_png(tmp_path / "good.png", UINT8[0])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(StimulusError) as info:
        as_stimulus([good, bad])
    assert f"stimulus[1]: {bad} is not a readable image" in str(info.value)
    with pytest.raises(StimulusError, match=r"bad\.png is not a readable image"):
        as_stimulus(tmp_path)  # the folder holds it too


def test_truncated_image_fails_when_decoded(tmp_path: Path) -> None:
    path = save_png(tmp_path / "t.png", RNG.integers(0, 256, (3, 64, 64), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:200])  # header intact, pixels cut off
    stimulus = as_stimulus(path)
    with pytest.raises(StimulusError, match=r"could not decode image .*t\.png"):
        all_batches(stimulus)


def test_folder_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(StimulusError) as info:
        as_stimulus(tmp_path)
    assert "contains no image files" in str(info.value)
    assert ".png" in str(info.value)


def test_a_folder_in_a_list_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StimulusError, match="is not a file"):
        as_stimulus([tmp_path])


def test_empty_and_mixed_lists_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StimulusError, match="stimulus is an empty list"):
        as_stimulus([])
    with pytest.raises(StimulusError, match=r"is a list of \w+, ndarray; a list must hold only"):
        as_stimulus([Image.new("RGB", (2, 2)), UINT8[0]])
    with pytest.raises(StimulusError, match="stack arrays into one"):
        as_stimulus(list(UINT8))

"""Property-based tests of berg_core.stimulus: any input normalises as documented or raises
StimulusError, never anything else."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from berg_core import StimulusError, as_stimulus

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- arrays --------------------------------------------------------------------------------------

DTYPES = (
    hnp.integer_dtypes(endianness="?")
    | hnp.unsigned_integer_dtypes(endianness="?")
    | hnp.floating_dtypes(endianness="?")
    | hnp.boolean_dtypes()
    | hnp.complex_number_dtypes()
    | hnp.datetime64_dtypes()
    | hnp.timedelta64_dtypes()
    | hnp.unicode_string_dtypes(max_len=2)
)
SHAPES = st.one_of(
    st.tuples(st.integers(0, 3), st.just(3), st.integers(0, 4), st.integers(0, 4)),
    hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4),
)


def elements(dtype: np.dtype) -> st.SearchStrategy | None:
    """Mostly valid values for integer and float dtypes (else any value of the dtype)."""
    if dtype.kind in "iu":
        return st.one_of(st.integers(0, min(255, np.iinfo(dtype).max)), hnp.from_dtype(dtype))
    if dtype.kind == "f":
        return st.one_of(st.floats(0, 1, width=dtype.itemsize * 8), hnp.from_dtype(dtype))
    return None


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(DTYPES)
    array = draw(hnp.arrays(dtype, draw(SHAPES), elements=elements(dtype)))
    if array.ndim == 4 and draw(st.booleans()):
        array = array[:, ::-1, :, ::-1]  # negative strides, not contiguous
    return array


def documented(array: np.ndarray) -> np.ndarray | None:
    """What the module docstring promises for *array*, computed on the whole array at once."""
    if array.ndim != 4 or array.shape[1] != 3 or 0 in array.shape:
        return None
    if array.dtype.kind in "iu":
        values = array.astype(object)  # exact Python integers: no wrap-around
        if values.min() < 0 or values.max() > 255:
            return None
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        wide = array.astype(np.float64)
        if not np.isfinite(wide).all() or wide.min() < 0 or wide.max() > 1:
            return None
        return array.astype(np.float32)
    return None


@SETTINGS
@given(arrays(), st.integers(1, 4))
def test_arrays_normalise_as_documented_or_raise_stimulus_error(
    array: np.ndarray, batch_size: int
) -> None:
    expected = documented(array)
    if expected is None:
        with pytest.raises(StimulusError):
            as_stimulus(array)
        return
    batches = list(as_stimulus(array).batches(batch_size))
    assert all(b.flags["C_CONTIGUOUS"] and b.dtype.isnative for b in batches)
    result = np.concatenate(batches)
    assert result.dtype == expected.dtype
    np.testing.assert_array_equal(result, expected)


# -- PIL images ----------------------------------------------------------------------------------

MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"]
MODES += ["I;16", "I;16B", "I", "F", "HSV", "LAB"]


@st.composite
def pil_images(draw: st.DrawFn) -> Image.Image:
    mode = draw(st.sampled_from(MODES))
    size = (draw(st.integers(0, 5)), draw(st.integers(0, 5)))
    nbytes = len(Image.new(mode, size).tobytes())
    image = Image.frombytes(mode, size, draw(st.binary(min_size=nbytes, max_size=nbytes)))
    if mode == "F" and draw(st.booleans()):  # mostly random bit patterns: give [0, 1] a chance
        values = draw(hnp.arrays(np.float32, size[::-1], elements=st.floats(0, 1, width=32)))
        image = Image.fromarray(values, mode="F") if values.size else image
    return image


def documented_rgb(image: Image.Image) -> np.ndarray | None:
    """The documented (3, H, W) result for the modes with a simple rule, else None (unchecked)."""
    pixels = np.asarray(image)
    if image.mode == "L":
        return np.stack([pixels] * 3)
    if image.mode == "RGB":
        return pixels.transpose(2, 0, 1)
    if image.mode in ("I;16", "I;16B"):
        grey = (pixels.astype(np.int64) // 256).astype(np.uint8)
        return np.stack([grey] * 3)
    if image.mode == "RGBA":
        alpha = pixels[..., 3:].astype(np.float64) / 255
        return np.round(pixels[..., :3] * alpha).astype(np.uint8).transpose(2, 0, 1)
    if image.mode == "F":
        grey = np.round(pixels.astype(np.float64) * 255).astype(np.uint8)
        return np.stack([grey] * 3)
    return None


@SETTINGS
@given(pil_images())
def test_pil_images_become_rgb_or_raise_stimulus_error(image: Image.Image) -> None:
    try:
        (result,) = as_stimulus([image]).batches(1)
    except StimulusError as error:
        assert str(error).startswith("stimulus[0]")
        width, height = image.size
        pixels = np.asarray(image)
        refused = (
            width * height == 0
            or image.mode in ("HSV", "LAB", "I")
            or (image.mode == "F" and not ((pixels >= 0) & (pixels <= 1)).all())
        )
        assert refused, f"mode {image.mode} size {image.size} refused: {error}"
        return
    assert result.dtype == np.uint8 and result.shape == (1, 3, image.size[1], image.size[0])
    expected = documented_rgb(image)
    if expected is not None:
        np.testing.assert_array_equal(result[0], expected)


# -- files ---------------------------------------------------------------------------------------


def encoded(format_name: str, mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(3).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=format_name)
    return buffer.getvalue()


VALID_FILES = {
    ".png": encoded("PNG"),
    ".jpg": encoded("JPEG"),
    ".gif": encoded("GIF", "P"),
    ".bmp": encoded("BMP"),
    ".tif": encoded("TIFF"),
    ".webp": encoded("WEBP"),
    ".pgm": encoded("PPM", "L"),
}


def read_all(path: Path) -> None:
    """Decode *path* through as_stimulus; any output must be a (1, 3, H, W) uint8 batch."""
    (batch,) = as_stimulus(path).batches(1)
    assert batch.dtype == np.uint8 and batch.ndim == 4 and batch.shape[:2] == (1, 3)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@SETTINGS
@given(data=st.binary(max_size=600), suffix=st.sampled_from([".png", ".jpg", ".gif", ".tif"]))
def test_random_bytes_raise_stimulus_error(scratch: Path, data: bytes, suffix: str) -> None:
    path = scratch / f"random{suffix}"
    path.write_bytes(data)
    with pytest.raises(StimulusError) as info:
        read_all(path)
    assert str(path) in str(info.value)


@SETTINGS
@given(
    suffix=st.sampled_from(sorted(VALID_FILES)),
    cut=st.none() | st.integers(0, 2000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4),
)
def test_damaged_files_decode_or_raise_stimulus_error(
    scratch: Path, suffix: str, cut: int | None, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(VALID_FILES[suffix])
    for position, mask in flips:
        data[position % len(data)] ^= mask
    path = scratch / f"damaged{suffix}"
    path.write_bytes(bytes(data if cut is None else data[:cut]))
    try:
        read_all(path)
    except StimulusError as error:
        assert str(path) in str(error)

"""Image files and PIL images in berg_core.stimulus: every mode's pixels, limits, hostile files."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from berg_core import InvalidParameterError, StimulusError, as_stimulus
from berg_core.stimulus import MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS_ENV

RNG = np.random.default_rng(11)


def decoded(stimulus: object, **kwargs: object) -> np.ndarray:
    """All images of *stimulus* as one (N, 3, H, W) array."""
    batches = list(as_stimulus(stimulus, **kwargs).batches(8))
    return np.concatenate(batches)


def hwc(chw: np.ndarray) -> np.ndarray:
    return chw.transpose(1, 2, 0)


# -- hand-made PNG files (Pillow cannot write 16-bit colour or broken files) ----------------------


def png_chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bytes(
    samples: np.ndarray, bit_depth: int, colour_type: int, extra: bytes = b"", idat: bool = True
) -> bytes:
    """A PNG of *samples* ``(H, W, C)`` (big-endian 16-bit or 8-bit), unfiltered rows."""
    height, width = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else np.uint8
    raw = b"".join(b"\x00" + samples[y].astype(dtype).tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    body = png_chunk(b"IDAT", zlib.compress(raw)) if idat else b""
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + body + extra + png_chunk(b"IEND", b"")
    )


# -- 8 and 16 bits -------------------------------------------------------------------------------


def test_16bit_grey_png_gradient_keeps_the_high_byte(tmp_path: Path) -> None:
    gradient = np.arange(0, 65536, 97, dtype=np.uint16).reshape(1, -1).repeat(3, axis=0)
    gradient[0, -1] = 65535
    path = tmp_path / "grey16.png"
    Image.fromarray(gradient).save(path)
    assert Image.open(path).mode == "I;16"
    (result,) = decoded(path)
    expected = np.floor(gradient.astype(np.float64) / 256).astype(np.uint8)  # independent
    np.testing.assert_array_equal(result, np.stack([expected] * 3))
    assert result.max() == 255 and result.min() == 0
    # the old behaviour clipped at 255: almost every pixel white
    assert (result == 255).mean() < 0.01


def test_16bit_is_the_inverse_of_the_8_to_16_bit_expansion(tmp_path: Path) -> None:
    eight = np.arange(256, dtype=np.uint16).reshape(16, 16)
    path = tmp_path / "expanded.png"
    Image.fromarray(eight * 257).save(path)
    np.testing.assert_array_equal(decoded(path)[0], np.stack([eight.astype(np.uint8)] * 3))


@pytest.mark.parametrize("mode", ["I;16B", "I;16L", "I;16"])
def test_16bit_pil_modes_of_either_byte_order(mode: str) -> None:
    values = np.array([[0, 255, 256, 32767, 65280, 65535]], dtype=np.uint16)
    order = ">u2" if mode == "I;16B" else "<u2"
    image = Image.frombytes(mode, (6, 1), values.astype(order).tobytes())
    expected = np.array([[0, 0, 1, 127, 255, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(decoded(image)[0], np.stack([expected] * 3))


@pytest.mark.parametrize(("channels", "colour_type"), [(3, 2), (4, 6), (2, 4)])
def test_16bit_colour_png_agrees_with_16bit_grey(
    tmp_path: Path, channels: int, colour_type: int
) -> None:
    samples = RNG.integers(0, 65536, size=(5, 7, channels), dtype=np.uint16)
    if channels in (2, 4):
        samples[..., -1] = 65535  # opaque, so the colour is the high byte alone
    path = tmp_path / "colour16.png"
    path.write_bytes(png_bytes(samples, 16, colour_type))
    high = (samples >> 8).astype(np.uint8)
    expected = high[..., :3] if channels >= 3 else high[..., :1].repeat(3, axis=2)
    np.testing.assert_array_equal(hwc(decoded(path)[0]), expected)


def test_16bit_pgm_opened_as_mode_i_is_16bit(tmp_path: Path) -> None:
    values = np.array([[0, 256, 40000, 65535]], dtype=">u2")
    path = tmp_path / "grey16.pgm"
    path.write_bytes(b"P5\n4 1\n65535\n" + values.tobytes())
    assert Image.open(path).mode == "I"
    expected = np.array([[0, 1, 156, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(decoded(path)[0], np.stack([expected] * 3))


def test_32bit_integer_tiff_is_refused_with_its_range(tmp_path: Path) -> None:
    path = tmp_path / "int32.tif"
    Image.fromarray(np.array([[3, 70000], [5, 9]], dtype=np.int32)).save(path)
    stimulus = as_stimulus(path)
    with pytest.raises(StimulusError) as info:
        list(stimulus.batches(1))
    message = str(info.value)
    assert str(path) in message
    assert "32-bit integer pixels (PIL mode 'I') from 3 to 70000" in message


def test_float_tiff_in_unit_interval_is_rounded_to_8bit(tmp_path: Path) -> None:
    values = np.linspace(0, 1, 40, dtype=np.float32).reshape(4, 10)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "F"
    expected = np.round(values.astype(np.float64) * 255).astype(np.uint8)
    np.testing.assert_array_equal(decoded(path)[0], np.stack([expected] * 3))


@pytest.mark.parametrize(
    ("bad", "shown"),
    [(1.5, "from 0 to 1.5"), (-0.25, "from -0.25 to 0.75"), (300.0, "from 0 to 300")],
)
def test_float_tiff_outside_unit_interval_is_refused(
    tmp_path: Path, bad: float, shown: str
) -> None:
    values = np.array([[0.0, 0.75], [0.5, bad]], dtype=np.float32)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    with pytest.raises(StimulusError) as info:
        decoded(path)
    assert str(path) in str(info.value)
    assert f"float pixels (PIL mode 'F') {shown}" in str(info.value)
    assert "must lie in [0, 1]" in str(info.value)


def test_float_image_with_nan_is_refused() -> None:
    image = Image.fromarray(np.array([[0.5, np.nan]], dtype=np.float32))
    with pytest.raises(StimulusError, match=r"stimulus\[0\] has float pixels .* NaN"):
        decoded([image])


# -- grey, palette, alpha, CMYK, 1-bit -------------------------------------------------------------


def test_grey_and_1bit_are_replicated(tmp_path: Path) -> None:
    grey = RNG.integers(0, 256, size=(6, 5), dtype=np.uint8)
    bits = RNG.random((6, 5)) > 0.5
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    result = decoded(tmp_path)
    np.testing.assert_array_equal(result[0], np.stack([grey] * 3))
    np.testing.assert_array_equal(result[1], np.stack([bits.astype(np.uint8) * 255] * 3))


def test_rgba_is_composited_over_black(tmp_path: Path) -> None:
    rgba = RNG.integers(0, 256, size=(9, 8, 4), dtype=np.uint8)
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    result = hwc(decoded(path)[0])
    alpha = rgba[..., 3:].astype(np.float64) / 255
    expected = np.round(rgba[..., :3] * alpha).astype(np.uint8)  # independent, in float64
    np.testing.assert_array_equal(result, expected)
    assert (result[0, 0] == 0).all()  # fully transparent: background
    np.testing.assert_array_equal(result[0, 1], rgba[0, 1, :3])  # opaque: unchanged


def test_grey_with_alpha_is_composited_over_black(tmp_path: Path) -> None:
    la = RNG.integers(0, 256, size=(4, 5, 2), dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    expected = np.round(la[..., 0] * (la[..., 1] / 255)).astype(np.uint8)
    np.testing.assert_array_equal(decoded(path)[0], np.stack([expected] * 3))


def test_premultiplied_rgba_keeps_its_colour() -> None:
    premultiplied = RNG.integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    image = Image.frombytes("RGBa", (4, 3), premultiplied.tobytes())
    np.testing.assert_array_equal(hwc(decoded(image)[0]), premultiplied[..., :3])


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 200, 100, 50]
    indices = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette)
    path = tmp_path / "palette.png"
    # index 1 fully transparent, index 3 half transparent (tRNS alpha 128)
    image.save(path, transparency=bytes([255, 0, 255, 128]))
    assert Image.open(path).mode == "P"
    colours = np.array(palette, dtype=np.float64).reshape(4, 3)
    alphas = np.array([255, 0, 255, 128], dtype=np.float64) / 255
    expected = np.round(colours[indices] * alphas[indices][..., None]).astype(np.uint8)
    np.testing.assert_array_equal(hwc(decoded(path)[0]), expected)
    assert (hwc(decoded(path)[0])[0, 1] == 0).all()


def test_palette_without_transparency_uses_the_palette(tmp_path: Path) -> None:
    palette = RNG.integers(0, 256, size=(256, 3), dtype=np.uint8)
    indices = RNG.integers(0, 256, size=(5, 6), dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette.tobytes())
    path = tmp_path / "palette.gif"
    image.save(path)
    np.testing.assert_array_equal(hwc(decoded(path)[0]), palette[indices])


def test_rgb_with_a_colour_key_is_keyed_out(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (10, 20, 30)
    rgb[1, 1] = (200, 201, 202)
    path = tmp_path / "key.png"
    Image.fromarray(rgb).save(path, transparency=(200, 201, 202))
    expected = rgb.copy()
    expected[1, 1] = 0
    np.testing.assert_array_equal(hwc(decoded(path)[0]), expected)


def test_cmyk_tiff_is_converted_to_rgb(tmp_path: Path) -> None:
    # pure inks: cyan, magenta, yellow, black, paper
    cmyk = np.array(
        [[[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 255], [0, 0, 0, 0]]],
        dtype=np.uint8,
    )
    path = tmp_path / "cmyk.tif"
    Image.frombytes("CMYK", (5, 1), cmyk.tobytes()).save(path)
    expected = np.array(
        [[[0, 255, 255], [255, 0, 255], [255, 255, 0], [0, 0, 0], [255, 255, 255]]],
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(hwc(decoded(path)[0]), expected)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    # solid 16x16 blocks of each ink (JPEG is lossy: allow a few levels)
    inks = [(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255), (0, 0, 0, 0)]
    cmyk = np.concatenate([np.full((16, 16, 4), ink, dtype=np.uint8) for ink in inks], axis=1)
    path = tmp_path / "cmyk.jpg"
    Image.frombytes("CMYK", (80, 16), cmyk.tobytes()).save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    result = hwc(decoded(path)[0]).astype(int)
    expected = [(0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0), (255, 255, 255)]
    for block, colour in enumerate(expected):
        centre = result[8, block * 16 + 8]
        assert np.abs(centre - colour).max() <= 4, (block, centre)


@pytest.mark.parametrize("mode", ["LAB", "HSV"])
def test_modes_without_an_rgb_meaning_are_refused(mode: str) -> None:
    image = Image.new(mode, (2, 2))
    with pytest.raises(StimulusError) as info:
        as_stimulus([image])
    assert f"stimulus[0] has PIL mode {mode!r}" in str(info.value)
    assert "supported modes: 1, L, P, RGB" in str(info.value)


def test_32bit_integer_pil_image_is_refused() -> None:
    image = Image.fromarray(np.array([[0, 255]], dtype=np.int32))
    with pytest.raises(StimulusError, match=r"stimulus\[0\] has 32-bit integer .* from 0 to 255"):
        decoded([image])


def test_animated_gif_reads_the_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((4, 4), value, dtype=np.uint8)) for value in (30, 220)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert Image.open(path).n_frames == 2
    np.testing.assert_array_equal(decoded(path)[0], np.full((3, 4, 4), 30, dtype=np.uint8))


# -- EXIF orientation ----------------------------------------------------------------------------

ASYMMETRIC = RNG.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
# what a viewer shows for each EXIF orientation (the EXIF specification, in numpy)
UPRIGHT = {
    1: ASYMMETRIC,
    2: ASYMMETRIC[:, ::-1],
    3: ASYMMETRIC[::-1, ::-1],
    4: ASYMMETRIC[::-1],
    5: ASYMMETRIC.transpose(1, 0, 2),
    6: np.rot90(ASYMMETRIC, -1),
    7: ASYMMETRIC[::-1, ::-1].transpose(1, 0, 2),
    8: np.rot90(ASYMMETRIC, 1),
}


def exif(orientation: int) -> Image.Exif:
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / "turned.png"
    Image.fromarray(ASYMMETRIC).save(path, exif=exif(orientation))
    np.testing.assert_array_equal(hwc(decoded(path)[0]), UPRIGHT[orientation])
    with Image.open(path) as image:  # PIL images too
        np.testing.assert_array_equal(hwc(decoded([image])[0]), UPRIGHT[orientation])


def test_exif_rotated_jpeg_is_upright(tmp_path: Path) -> None:
    stored = RNG.integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(stored).save(path, exif=exif(6), quality=95)
    with Image.open(path) as image:
        as_stored = np.asarray(image.convert("RGB"))  # the decoder's pixels, not turned
    result = hwc(decoded(path)[0])
    assert result.shape == (24, 16, 3)
    np.testing.assert_array_equal(result, np.rot90(as_stored, -1))


# -- size limit and bombs ------------------------------------------------------------------------


def bomb_png(width: int, height: int) -> bytes:
    """A 1-bit PNG header declaring *width* x *height* with almost no data (a few hundred bytes)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def test_huge_declared_size_is_refused_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(12000, 12000))
    assert path.stat().st_size < 200
    with pytest.raises(StimulusError) as info:
        as_stimulus(path)
    message = str(info.value)
    assert str(path) in message
    assert f"12000x12000 = 144,000,000 pixels, over the limit of {MAX_IMAGE_PIXELS:,}" in message
    assert MAX_IMAGE_PIXELS_ENV in message and "max_pixels" in message


def test_a_real_1bit_bomb_under_a_low_limit(tmp_path: Path) -> None:
    path = tmp_path / "white.png"
    Image.new("1", (3000, 3000), 1).save(path)
    assert path.stat().st_size < 10_000
    with pytest.raises(StimulusError, match=r"3000x3000 = 9,000,000 pixels, over .* 1,000,000"):
        as_stimulus([path], max_pixels=1_000_000)
    assert decoded(path, max_pixels=9_000_000).shape == (1, 3, 3000, 3000)


def test_the_limit_is_checked_again_when_decoding(tmp_path: Path) -> None:
    path = tmp_path / "grows.png"
    Image.new("L", (10, 10)).save(path)
    stimulus = as_stimulus(path, max_pixels=100)
    Image.new("L", (11, 10)).save(path)  # replaced after validation
    with pytest.raises(StimulusError, match=r"11x10 = 110 pixels, over the limit of 100"):
        list(stimulus.batches(1))


def test_the_environment_variable_sets_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (10, 10)).save(path)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "99")
    with pytest.raises(StimulusError, match="100 pixels, over the limit of 99"):
        as_stimulus(path)
    assert len(as_stimulus(path, max_pixels=100)) == 1  # the parameter wins
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "lots")
    with pytest.raises(InvalidParameterError, match=rf"{MAX_IMAGE_PIXELS_ENV} is 'lots'"):
        as_stimulus(path)


@pytest.mark.parametrize("bad", [0, -5, True, 2.5, "100"])
def test_max_pixels_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(InvalidParameterError, match=r"max_pixels is .*expected a positive integer"):
        as_stimulus(np.zeros((1, 3, 2, 2), dtype=np.uint8), max_pixels=bad)  # type: ignore[arg-type]


def test_pillow_decompression_bomb_error_is_a_stimulus_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses above 2000 pixels
    with pytest.raises(StimulusError) as info:
        as_stimulus(path)
    assert f"{path} is not a readable image (DecompressionBombError" in str(info.value)


def test_arrays_over_the_limit_are_refused_without_reading_them() -> None:
    view = np.broadcast_to(np.uint8(0), (2, 3, 20_000, 20_000))  # 2.4 GB that do not exist
    with pytest.raises(StimulusError, match="20000x20000 = 400,000,000 pixels, over the limit"):
        as_stimulus(view)


def test_empty_pil_image_is_refused() -> None:
    with pytest.raises(StimulusError, match=r"stimulus\[0\] is empty \(0x0 pixels\)"):
        as_stimulus([Image.new("RGB", (0, 0))])


# -- corrupt and hostile files -------------------------------------------------------------------


def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    full = path.read_bytes()
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(StimulusError) as info:
        decoded(path)
    assert str(path) in str(info.value)
    assert "truncated" in str(info.value).lower()


def test_png_with_a_chunk_running_past_the_end_after_the_image_data(tmp_path: Path) -> None:
    samples = RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    runaway = struct.pack(">I", 2**31 - 1) + b"tEXt" + b"abc"  # declares 2 GB, holds 3 bytes
    path = tmp_path / "after_idat.png"
    path.write_bytes(png_bytes(samples, 8, 2, extra=runaway))
    stimulus = as_stimulus(path)  # the header is fine
    with pytest.raises(StimulusError) as info:
        list(stimulus.batches(1))
    assert str(info.value) == f"could not decode image {path}: OSError: Truncated File Read"


def test_png_with_a_bad_checksum_before_the_image_data(tmp_path: Path) -> None:
    broken = png_chunk(b"tEXt", b"comment\x00hello", crc=0xDEADBEEF)
    data = png_bytes(RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8), 8, 2)
    at = data.index(b"IDAT") - 4
    path = tmp_path / "before_idat.png"
    path.write_bytes(data[:at] + broken + data[at:])
    with pytest.raises(StimulusError) as info:
        as_stimulus([path])
    assert str(info.value) == (
        f"stimulus[0]: {path} is not a readable image (not an image, a format Pillow does not "
        f"read, or a corrupt header)"
    )


def test_bad_ancillary_chunk_after_complete_pixels_is_ignored(tmp_path: Path) -> None:
    # Pillow does not check chunks after the pixels; the pixels are whole, and exact
    samples = RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    broken = png_chunk(b"tEXt", b"comment\x00hello", crc=0xDEADBEEF)
    path = tmp_path / "after_idat.png"
    path.write_bytes(png_bytes(samples, 8, 2, extra=broken))
    np.testing.assert_array_equal(hwc(decoded(path)[0]), samples)


def test_png_with_cut_image_data(tmp_path: Path) -> None:
    samples = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    data = png_bytes(samples, 8, 2)
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8 : start - 4])[0]
    compressed = data[start : start + length]
    header = data[: start - 8]
    path = tmp_path / "cut.png"
    path.write_bytes(header + png_chunk(b"IDAT", compressed[:100]) + png_chunk(b"IEND", b""))
    with pytest.raises(StimulusError) as info:
        decoded(path)
    assert f"could not decode image {path}: OSError: image file is truncated" in str(info.value)


def test_png_with_a_bad_image_data_checksum(tmp_path: Path) -> None:
    data = bytearray(png_bytes(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8), 8, 2))
    start = data.index(b"IDAT") + 4
    data[start + 5] ^= 0xFF  # one byte of the compressed pixels
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(data))
    with pytest.raises(StimulusError, match=rf"{path.name}"):
        decoded(path)


def test_png_without_image_data(tmp_path: Path) -> None:
    path = tmp_path / "noidat.png"
    path.write_bytes(png_bytes(np.zeros((2, 2, 3), dtype=np.uint8), 8, 2, idat=False))
    with pytest.raises(StimulusError, match=rf"{path.name}"):
        decoded(path)


def test_eps_is_never_handed_to_ghostscript(tmp_path: Path) -> None:
    path = tmp_path / "looks.png"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(StimulusError, match=r"looks\.png is not a readable image"):
        as_stimulus(path)


def test_closed_pil_images_are_named_by_index(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (3, 3)).save(path)
    opened = Image.open(path)
    opened.close()
    made = Image.new("RGB", (3, 3))
    made.close()
    stimulus = as_stimulus([Image.new("RGB", (3, 3)), opened, made])
    with pytest.raises(StimulusError) as info:
        list(stimulus.batches(1))
    assert str(info.value) == (
        "stimulus[1]: could not read the PIL image (ValueError: Operation on closed image)"
    )
    with pytest.raises(StimulusError, match=r"stimulus\[2\]: could not read the PIL image"):
        stimulus.batch(2, 3)


def test_lazily_opened_pil_images_are_read(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    with Image.open(path) as image:
        np.testing.assert_array_equal(hwc(decoded(image)[0]), rgb)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_no_file_handle_is_left_open(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:60])
    not_image = tmp_path / "text.png"
    not_image.write_bytes(b"hello")
    before = open_descriptors()
    for _ in range(20):
        decoded(good)
        for path in (bad, not_image):
            with pytest.raises(StimulusError):
                decoded(path)
    assert open_descriptors() == before


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("a\x00b.png", r"the path 'a\x00b.png' contains a NUL character"),
        ("x" * 5000 + ".png", "File name too long"),
    ],
)
def test_impossible_paths_are_refused(path: str, fragment: str) -> None:
    with pytest.raises(StimulusError) as info:
        as_stimulus(path)
    assert fragment in str(info.value)
    with pytest.raises(StimulusError):
        as_stimulus([path])


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_devices_are_not_read() -> None:
    with pytest.raises(StimulusError, match="/dev/null is not a file"):
        as_stimulus("/dev/null")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions")
def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(StimulusError, match=r"secret\.png is not a readable image \(Permis"):
            as_stimulus(path)
    finally:
        path.chmod(0o600)


# -- arrays --------------------------------------------------------------------------------------


def test_negative_strides_give_contiguous_batches() -> None:
    bgr = RNG.integers(0, 256, (3, 3, 4, 5), dtype=np.uint8)
    rgb = bgr[:, ::-1]  # the usual BGR -> RGB flip
    (batch,) = as_stimulus(rgb).batches(3)
    assert batch.flags["C_CONTIGUOUS"] and all(stride > 0 for stride in batch.strides)
    np.testing.assert_array_equal(batch, rgb)


def test_big_endian_floats_come_out_native() -> None:
    values = RNG.random((2, 3, 2, 2)).astype(">f8")
    (batch,) = as_stimulus(values).batches(2)
    assert batch.dtype == np.dtype("float32") and batch.dtype.isnative
    np.testing.assert_array_equal(batch, values.astype(np.float32))


def test_masked_arrays_are_refused() -> None:
    array = np.ma.masked_greater(np.full((1, 3, 2, 2), 300, dtype=np.int64), 255)
    with pytest.raises(StimulusError, match=r"masked array.*stimulus\.filled"):
        as_stimulus(array)


@pytest.mark.parametrize("dtype", ["datetime64[s]", "timedelta64[s]", "U3", "S3", "i4,i4"])
def test_other_dtypes_are_refused(dtype: str) -> None:
    with pytest.raises(StimulusError, match="expected an integer dtype"):
        as_stimulus(np.zeros((1, 3, 2, 2), dtype=dtype))

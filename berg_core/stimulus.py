"""Stimulus normalisation and validation, shared by every model family (numpy and Pillow only).

:func:`as_stimulus` accepts what users have at hand and returns a :class:`Stimulus` that yields
batches in one of two well-defined forms:

* ``uint8`` arrays ``(B, 3, H, W)`` of 8-bit intensities 0-255, for any integer input (the reference
  toolkit divides ``int64`` input by 2**63 and returns near-constant responses; berg does not), and
  for image files and PIL images;
* ``float32`` arrays ``(B, 3, H, W)`` with values in [0, 1], for floating-point input.

Anything else - wrong rank, channel-last layout, out-of-range values, NaN, an empty batch, an image
over :data:`MAX_IMAGE_PIXELS`, a missing, unreadable or corrupt file - raises
:class:`~berg_core.errors.StimulusError` saying what was found and what is expected. Validation
reads the data once in chunks, so memory stays flat; image files are decoded lazily, one batch at a
time.

Image files and PIL images become RGB by these rules (one per PIL mode):

* ``RGB``, ``L`` (grey, copied to the three channels), ``1`` (0 or 255), ``P`` (through its
  palette), ``CMYK`` and ``YCbCr`` (Pillow's conversion), ``RGBX`` (padding dropped);
* 16-bit grey (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``, and ``I`` from a PNG or PGM file, which
  older Pillow versions use for 16-bit grey): each sample keeps its high byte, ``v >> 8``
  (``floor(v / 256)``). This is the exact inverse of the usual 8-to-16-bit expansion ``v * 257``
  and is what Pillow itself does to 16-bit RGB and RGBA PNGs, so 16-bit grey and colour files agree;
* ``F`` (32-bit float): values must lie in [0, 1] and become ``round(v * 255)``; NaN or values
  outside [0, 1] are refused, naming the range found;
* alpha (``RGBA``, ``LA``, ``PA``, ``P`` or ``L`` or ``RGB`` with a transparency key) is composited
  over :data:`ALPHA_BACKGROUND` (black): ``round(c * a / 255)``. Dropping alpha (Pillow's plain
  ``convert("RGB")``, the usual choice, and what berg did before) shows whatever colour happens to
  be stored under transparent pixels. Over black, opaque pixels are unchanged, and so are
  transparent pixels stored black (what most encoders write), so results match the alpha-dropping
  reading on such files, while every other file gets a defined result; black is also what
  premultiplied alpha means: ``RGBa`` and ``La`` keep their colour channels;
* ``I`` (32-bit integer) from anything but PNG or PGM, ``LAB``, ``HSV`` and other modes have no
  agreed 8-bit meaning and are refused.

The EXIF orientation tag is applied (:func:`PIL.ImageOps.exif_transpose`), so a photo is encoded
upright as a viewer shows it. Only the first frame of a multi-frame file (GIF, TIFF, WebP) is read.
Files are opened by content, not by extension, in any format Pillow reads except EPS (which Pillow
renders by running Ghostscript); each file is read through a handle closed before the next one is
opened, and any failure of Pillow (unknown format, truncated or corrupt data, a decompression bomb,
a closed PIL image) becomes a :class:`~berg_core.errors.StimulusError` naming the file, or the
list index of a PIL image, and the reason.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from berg_core.errors import BergError, InvalidParameterError, StimulusError, describe_value

__all__ = [
    "ALPHA_BACKGROUND",
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_PIXELS_ENV",
    "Stimulus",
    "as_stimulus",
]

#: File extensions read as images when a folder is given (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: Largest image berg accepts, in pixels (width x height), for files, PIL images and arrays alike.
#: Checked on the header, before any pixel is decoded, so a small file declaring a huge image (a
#: decompression bomb) costs nothing; decoding one image then needs about 20 bytes per pixel at
#: most (measured: 6 for 1-bit, 12 for RGB, 17 for RGBA), so about 1.3 GB at this limit. 64
#: million pixels is 8000 x 8000, more than a 48-megapixel phone photo and far more than any
#: encoding model looks at (they resize to 224 x 224). Override it with the ``max_pixels``
#: parameter of :func:`as_stimulus` or the environment variable named by
#: :data:`MAX_IMAGE_PIXELS_ENV`. Pillow's own limit (``PIL.Image.MAX_IMAGE_PIXELS``; files over
#: twice it are refused) still applies above berg's.
MAX_IMAGE_PIXELS = 64_000_000

#: Environment variable that overrides :data:`MAX_IMAGE_PIXELS` (a positive integer).
MAX_IMAGE_PIXELS_ENV = "BERG_MAX_IMAGE_PIXELS"

#: The 8-bit grey level transparent pixels are composited over: 0, black (see the module docstring).
ALPHA_BACKGROUND = 0

_EXPECTED = (
    "expected a (N, 3, H, W) array of integers 0-255 or floats in [0, 1], a folder of images, "
    "a list of image paths, or a list of PIL images"
)
_VALIDATION_CHUNK = 64  # images per chunk when scanning an array for its value range

# PIL modes and how they become RGB (see the module docstring).
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_SIXTEEN_BIT_I_FORMATS = ("PNG", "PPM")  # formats whose mode "I" images hold 16-bit samples
_PREMULTIPLIED_MODES = ("La", "RGBa")
_ALPHA_MODES = ("LA", "PA", "RGBA")
_TRANSPARENCY_KEY_MODES = ("1", "L", "P", "RGB")  # a "transparency" entry in info is a colour key
_CONVERTED_MODES = ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr")
_SUPPORTED_MODES = (
    _CONVERTED_MODES + _ALPHA_MODES + _PREMULTIPLIED_MODES + _SIXTEEN_BIT_MODES + ("I", "F")
)
# Pillow formats never opened: EPS is rendered by running Ghostscript, an external interpreter.
_REFUSED_FORMATS = frozenset({"EPS"})
_EXIF_ORIENTATION = 0x0112


class Stimulus:
    """A validated batch of RGB images, iterated in model-sized batches.

    Do not construct directly: use :func:`as_stimulus`.

    Attributes
    ----------
    kind : {"uint8", "float"}
        The form of the yielded arrays (see the module docstring).
    sources : list of str or None
        The image file of each stimulus when read from files, else ``None``.
    max_pixels : int
        The largest image, in pixels, that is decoded (see :data:`MAX_IMAGE_PIXELS`).
    """

    def __init__(
        self,
        *,
        array: np.ndarray | None = None,
        paths: Sequence[Path] | None = None,
        images: Sequence[Any] | None = None,
        source: Any = None,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ) -> None:
        self._array = array
        self._paths = list(paths) if paths is not None else None
        self._images = list(images) if images is not None else None
        self._source = source  # a berg_core.sources.ImageSource, read (and checked) per batch
        self.max_pixels = max_pixels
        if array is not None:
            self.kind = "float" if np.issubdtype(array.dtype, np.floating) else "uint8"
        else:
            self.kind = source.pixel_kind if source is not None else "uint8"
        self.sources = [str(p) for p in self._paths] if self._paths is not None else None

    def __len__(self) -> int:
        if self._array is not None:
            return int(self._array.shape[0])
        if self._source is not None:
            return len(self._source)
        return len(self._paths if self._paths is not None else self._images)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        if self._array is not None:
            return f"Stimulus({len(self)} images, array {self._array.shape} {self._array.dtype})"
        if self._source is not None:
            return f"Stimulus({len(self)} images from {self._source.describe()})"
        origin = "files" if self._paths is not None else "PIL images"
        return f"Stimulus({len(self)} images from {origin})"

    @property
    def array(self) -> np.ndarray | None:
        """The caller's array, unconverted, when the stimulus came from one."""
        return self._array

    def batches(self, batch_size: int) -> Iterator[np.ndarray | list[np.ndarray]]:
        """Yield consecutive batches of at most *batch_size* images.

        Each batch is a C-contiguous ``(B, 3, H, W)`` array (``uint8`` or ``float32``, see
        :attr:`kind`), or, when images read from files differ in size, a list of ``(3, H, W)``
        arrays.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidParameterError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        for start in range(0, len(self), batch_size):
            yield self.batch(start, min(start + batch_size, len(self)))

    def batch(self, start: int, stop: int) -> np.ndarray | list[np.ndarray]:
        """Return images ``start:stop`` in the form described in :meth:`batches`."""
        if self._array is not None:
            dtype = np.uint8 if self.kind == "uint8" else np.float32
            # contiguous and native byte order: torch.from_numpy refuses negative strides
            return np.ascontiguousarray(self._array[start:stop], dtype=dtype)
        if self._source is not None:
            return self._source.read(start, stop).batch(0, stop - start)
        if self._paths is not None:
            images = [_read_image(path, self.max_pixels) for path in self._paths[start:stop]]
        else:
            images = [
                _read_pil_image(img, f"stimulus[{i}]", self.max_pixels)
                for i, img in enumerate(self._images[start:stop], start)  # type: ignore[index]
            ]
        if len({img.shape for img in images}) == 1:
            return np.stack(images)
        return images


def as_stimulus(stimulus: Any, *, max_pixels: int | None = None) -> Stimulus:
    """Validate *stimulus* and wrap it as a :class:`Stimulus`.

    Parameters
    ----------
    stimulus : numpy.ndarray, str, os.PathLike, sequence of paths, sequence of PIL images, \
Stimulus, ImageSource
        * an array ``(N, 3, H, W)``: any integer dtype with values 0-255 (8-bit intensities), or a
          float dtype with values in [0, 1];
        * a folder: every file with an extension in :data:`IMAGE_EXTENSIONS`, sorted by name;
        * one image file, or a list of image files;
        * one :class:`PIL.Image.Image`, or a list of them.
        * a :class:`berg_core.sources.ImageSource` (an HDF5 dataset, a ``.npy`` file, ...; see
          :func:`berg_core.sources.open_source`): read batch by batch, so memory holds one batch.

        Image files and PIL images become RGB by the rules in the module docstring.
    max_pixels : int, optional
        The largest image accepted, in pixels (width x height). Default: the environment variable
        ``BERG_MAX_IMAGE_PIXELS`` if set, else :data:`MAX_IMAGE_PIXELS`.

    Returns
    -------
    Stimulus

    Raises
    ------
    StimulusError
        For anything else, saying what was found and what is expected. Files and PIL images are
        checked here on their header (size, mode); a file that turns out corrupt when its pixels
        are decoded raises it when its batch is read.
    InvalidParameterError
        If *max_pixels* or ``BERG_MAX_IMAGE_PIXELS`` is not a positive integer.
    """
    if isinstance(stimulus, Stimulus):
        return stimulus
    from berg_core.sources import ImageSource  # imported here: berg_core.sources imports this

    if isinstance(stimulus, ImageSource):
        if max_pixels is not None:
            stimulus = dataclasses.replace(stimulus, max_pixels=_pixel_limit(max_pixels))
        return stimulus.stimulus()
    limit = _pixel_limit(max_pixels)
    if isinstance(stimulus, np.ndarray):
        return Stimulus(array=_checked_array(stimulus, limit), max_pixels=limit)
    if isinstance(stimulus, (str, os.PathLike)):
        if not os.fspath(stimulus):  # Path("") is the current folder: never what was meant
            raise StimulusError(f"stimulus is an empty path; {_EXPECTED}")
        path = Path(stimulus)
        if _stat_checked(path, "stimulus") == "folder":
            return Stimulus(paths=_folder_images(path, limit), max_pixels=limit)
        return Stimulus(paths=[_checked_file(path, "stimulus", limit)], max_pixels=limit)
    if _is_pil_image(stimulus):
        return Stimulus(images=[_checked_pil_image(stimulus, "stimulus", limit)], max_pixels=limit)
    if isinstance(stimulus, (list, tuple)):
        if not stimulus:
            raise StimulusError(f"stimulus is an empty {type(stimulus).__name__}; {_EXPECTED}")
        if all(isinstance(item, (str, os.PathLike)) for item in stimulus):
            return Stimulus(
                paths=[
                    _checked_file(Path(p), f"stimulus[{i}]", limit) for i, p in enumerate(stimulus)
                ],
                max_pixels=limit,
            )
        if all(_is_pil_image(item) for item in stimulus):
            images = [
                _checked_pil_image(img, f"stimulus[{i}]", limit) for i, img in enumerate(stimulus)
            ]
            return Stimulus(images=images, max_pixels=limit)
        kinds = sorted({type(item).__name__ for item in stimulus})
        raise StimulusError(
            f"stimulus is a list of {', '.join(kinds)}; a list must hold only image paths or only "
            f"PIL images (stack arrays into one (N, 3, H, W) array instead)"
        )
    raise StimulusError(f"stimulus is a {type(stimulus).__name__}; {_EXPECTED}")


def _pixel_limit(max_pixels: int | None) -> int:
    """The per-image pixel limit: *max_pixels*, else the environment variable, else the default."""
    if max_pixels is None:
        text = os.environ.get(MAX_IMAGE_PIXELS_ENV)
        if text is None or not text.strip():
            return MAX_IMAGE_PIXELS
        try:
            value = int(text.strip())
        except ValueError:
            value = 0
        if value < 1:
            raise InvalidParameterError(
                f"environment variable {MAX_IMAGE_PIXELS_ENV} is {describe_value(text)}; "
                f"expected a positive integer (pixels per image)"
            )
        return value
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise InvalidParameterError(
            f"max_pixels is {describe_value(max_pixels)}; expected a positive integer "
            f"(pixels per image)"
        )
    if max_pixels < 1:
        raise InvalidParameterError(
            f"max_pixels is {max_pixels}; expected a positive integer (pixels per image)"
        )
    return int(max_pixels)


def _check_pixels(width: int, height: int, limit: int, what: str) -> None:
    """Refuse an image of *width* x *height* pixels over *limit*, or one with no pixels."""
    if width <= 0 or height <= 0:
        raise StimulusError(f"{what} is empty ({width}x{height} pixels)")
    if width * height > limit:
        raise StimulusError(
            f"{what} is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{limit:,} pixels per image (raise it with as_stimulus(..., max_pixels=...) or the "
            f"environment variable {MAX_IMAGE_PIXELS_ENV})"
        )


# -- arrays --------------------------------------------------------------------------------------


def _checked_array(array: np.ndarray, limit: int) -> np.ndarray:
    if isinstance(array, np.ma.MaskedArray):
        raise StimulusError(
            "stimulus is a masked array; masked values have no intensity: pass "
            "stimulus.filled(value) (a plain array)"
        )
    if array.ndim != 4:
        hint = ""
        if array.ndim == 3 and 3 in (array.shape[0], array.shape[-1]):
            hint = " (a single image? add a batch axis: stimulus[None])"
        raise StimulusError(
            f"stimulus has shape {array.shape} ({array.ndim} dimensions); expected 4 dimensions "
            f"(N, 3, H, W){hint}"
        )
    n, channels, height, width = array.shape
    if channels != 3:
        if array.shape[-1] == 3:
            raise StimulusError(
                f"stimulus has shape {array.shape}, which looks channel-last (N, H, W, 3); "
                f"expected channel-first (N, 3, H, W): use stimulus.transpose(0, 3, 1, 2)"
            )
        raise StimulusError(
            f"stimulus has {channels} channel(s) (shape {array.shape}); expected 3 RGB channels "
            f"in axis 1, (N, 3, H, W)"
        )
    if n == 0:
        raise StimulusError(f"stimulus holds no images (shape {array.shape}); expected N >= 1")
    if height == 0 or width == 0:
        raise StimulusError(f"stimulus images are empty (shape {array.shape})")
    _check_pixels(width, height, limit, f"each stimulus image (shape {array.shape})")
    if array.dtype.kind in "iu" and array.dtype != np.uint8:  # not timedelta64, a numpy integer
        low, high = _value_range(array)
        if low < 0 or high > 255:
            raise StimulusError(
                f"stimulus has dtype {array.dtype} with values from {low} to {high}; integer "
                f"stimuli are 8-bit intensities and must lie in 0-255"
            )
    elif array.dtype.kind == "f":
        low, high = _value_range(array)
        if not (np.isfinite(low) and np.isfinite(high)):
            raise StimulusError(
                f"stimulus ({array.dtype}) contains NaN or infinite values; expected floats in "
                f"[0, 1]"
            )
        if low < 0 or high > 1:
            hint = ""
            if low >= 0 and high <= 255:
                hint = (
                    " (values look like 0-255 intensities: divide by 255, or cast to uint8 "
                    "with np.round(stimulus).astype(np.uint8))"
                )
            raise StimulusError(
                f"stimulus has dtype {array.dtype} with values from {low:g} to {high:g}; float "
                f"stimuli must lie in [0, 1]{hint}"
            )
    elif array.dtype != np.uint8:
        raise StimulusError(
            f"stimulus has dtype {array.dtype}; expected an integer dtype (0-255) or a float "
            f"dtype ([0, 1])"
        )
    return array


def _value_range(array: np.ndarray) -> tuple[Any, Any]:
    """Min and max over *array*, reading it in chunks; NaN propagates to the result."""
    low = high = None
    for start in range(0, array.shape[0], _VALIDATION_CHUNK):
        chunk = array[start : start + _VALIDATION_CHUNK]
        chunk_low, chunk_high = chunk.min(), chunk.max()
        if np.issubdtype(array.dtype, np.floating) and (
            np.isnan(chunk_low) or np.isnan(chunk_high)
        ):
            return float("nan"), float("nan")
        low = chunk_low if low is None else min(low, chunk_low)
        high = chunk_high if high is None else max(high, chunk_high)
    return low.item(), high.item()  # type: ignore[union-attr]


# -- files and PIL images: checks on the header --------------------------------------------------


def _stat_checked(path: Path, name: str) -> str:
    """Return ``"folder"`` or ``"file"`` for *path*, or raise naming what it is instead."""
    if "\x00" in str(path):
        raise StimulusError(f"{name}: the path {str(path)!r} contains a NUL character")
    try:
        if path.is_dir():
            return "folder"
        if path.is_file():
            return "file"
        exists = path.exists()
    except OSError as exc:  # name too long, no permission
        raise StimulusError(
            f"{name}: cannot use the path {describe_value(str(path))}: "
            f"{exc.strerror or _reason(exc)}"
        ) from None
    if not exists:
        raise StimulusError(f"{name}: no such file or folder: {path}")
    raise StimulusError(f"{name}: {path} is not a file (a device, socket or pipe)")


def _folder_images(folder: Path, limit: int) -> list[Path]:
    try:
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
    except OSError as exc:
        raise StimulusError(f"stimulus folder {folder} cannot be listed: {_reason(exc)}") from None
    if not files:
        raise StimulusError(
            f"stimulus folder {folder} contains no image files; expected files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )
    return [_checked_file(p, "stimulus", limit) for p in files]


def _checked_file(path: Path, name: str, limit: int) -> Path:
    """Check *path* is a readable image of an accepted size and mode, from its header only."""
    if _stat_checked(path, name) == "folder":
        raise StimulusError(f"{name}: {path} is not a file")
    try:
        with _open_image(path) as img:
            _check_header(img, str(path), limit)
    except BergError:
        raise
    except Exception as exc:  # whatever Pillow raises on a file, the file is bad
        raise StimulusError(f"{name}: {path} is not a readable image ({_reason(exc)})") from None
    return path


def _checked_pil_image(img: Any, name: str, limit: int) -> Any:
    """Check a PIL image's size and mode (its pixels may not be loaded yet: they are not read)."""
    try:
        _check_header(img, name, limit)
    except BergError:
        raise
    except Exception as exc:  # a broken PIL object is a bad stimulus
        raise StimulusError(f"{name}: not a usable PIL image ({_reason(exc)})") from None
    return img


def _check_header(img: Any, what: str, limit: int) -> None:
    width, height = img.size
    _check_pixels(width, height, limit, what)
    if img.mode not in _SUPPORTED_MODES:
        raise StimulusError(
            f"{what} has PIL mode {img.mode!r}, which has no defined RGB meaning here; supported "
            f"modes: {', '.join(_SUPPORTED_MODES)} (convert it to RGB yourself first)"
        )


@contextmanager
def _open_image(path: Path) -> Iterator[Any]:
    """Open *path* with Pillow (header read only); the file is closed when the block ends."""
    from PIL import Image

    with open(path, "rb") as handle:
        with warnings.catch_warnings():  # the size is checked against berg's own limit next
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(handle, formats=_formats())
        with img:
            yield img


def _formats() -> list[str]:
    """Every format Pillow can open, except those in :data:`_REFUSED_FORMATS`."""
    from PIL import Image

    Image.init()
    return [name for name in Image.OPEN if name not in _REFUSED_FORMATS]


# -- files and PIL images: decoding --------------------------------------------------------------


def _read_image(path: Path, limit: int) -> np.ndarray:
    try:
        with _open_image(path) as img:
            return _image_to_rgb(img, str(path), limit)
    except BergError:
        raise
    except Exception as exc:  # whatever Pillow raises on a file, the file is bad
        raise StimulusError(f"could not decode image {path}: {_reason(exc)}") from None


def _read_pil_image(img: Any, name: str, limit: int) -> np.ndarray:
    if not _is_pil_image(img):
        raise StimulusError(f"{name} is a {type(img).__name__}, not a PIL image")
    try:
        return _image_to_rgb(img, name, limit)
    except BergError:
        raise
    except Exception as exc:  # a closed or broken PIL image is a bad stimulus
        raise StimulusError(f"{name}: could not read the PIL image ({_reason(exc)})") from None


def _image_to_rgb(img: Any, what: str, limit: int) -> np.ndarray:
    """Decode *img* to a C-contiguous ``(3, H, W)`` uint8 array by the module's rules."""
    _check_header(img, what, limit)  # again: a file may have changed since it was validated
    file_format = img.format  # the upright copy has none
    img = _upright(img)
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES or (mode == "I" and file_format in _SIXTEEN_BIT_I_FORMATS):
        return _grey_to_rgb(_sixteen_to_eight(img, what))
    if mode == "I":
        low, high = img.getextrema()
        raise StimulusError(
            f"{what} has 32-bit integer pixels (PIL mode 'I') from {low} to {high}, whose range "
            f"is not defined; save it as 8-bit or 16-bit, or pass an array"
        )
    if mode == "F":
        return _grey_to_rgb(_float_to_eight(img, what))
    if mode in _PREMULTIPLIED_MODES:
        bands = np.asarray(img)
        colour = bands[..., :1].repeat(3, axis=2) if mode == "La" else bands[..., :3]
        return np.ascontiguousarray(colour.transpose(2, 0, 1))
    if mode in _ALPHA_MODES or (mode in _TRANSPARENCY_KEY_MODES and "transparency" in img.info):
        return _composite(np.asarray(img if mode == "RGBA" else img.convert("RGBA")))
    if mode in ("1", "L"):  # grey: one byte per pixel until the three channels are made
        return _grey_to_rgb(np.asarray(img if mode == "L" else img.convert("L")))
    rgb = img if mode == "RGB" else img.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))


def _upright(img: Any) -> Any:
    """*img* turned as its EXIF orientation tag says (itself when there is none)."""
    from PIL import ImageOps

    if img.getexif().get(_EXIF_ORIENTATION, 1) in (None, 1):
        return img
    return ImageOps.exif_transpose(img)


def _sixteen_to_eight(img: Any, what: str) -> np.ndarray:
    """16-bit grey samples to 8 bits by their high byte; a transparency key becomes background."""
    samples = np.asarray(img)
    low, high = int(samples.min()), int(samples.max())
    if low < 0 or high > 65535:
        raise StimulusError(
            f"{what} has 16-bit grey pixels (PIL mode {img.mode!r}) from {low} to {high}; "
            f"expected 0-65535"
        )
    grey = (samples >> 8).astype(np.uint8)
    key = img.info.get("transparency")
    if isinstance(key, int) and not isinstance(key, bool):
        grey[samples == key] = ALPHA_BACKGROUND
    return grey


def _float_to_eight(img: Any, what: str) -> np.ndarray:
    """Float grey samples in [0, 1] to 8 bits, ``round(v * 255)``; anything else is refused."""
    samples = np.asarray(img, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise StimulusError(
            f"{what} has float pixels (PIL mode 'F') with NaN or infinite values; expected "
            f"floats in [0, 1]"
        )
    low, high = float(samples.min()), float(samples.max())
    if low < 0 or high > 1:
        raise StimulusError(
            f"{what} has float pixels (PIL mode 'F') from {low:g} to {high:g}; float images "
            f"must lie in [0, 1]"
        )
    return np.rint(samples * 255).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(grey, (3, *grey.shape)))


def _composite(rgba: np.ndarray) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBA over :data:`ALPHA_BACKGROUND` -> ``(3, H, W)`` uint8, rounded."""
    # in uint16: c * a + background * (255 - a) + 127 <= 255 * 255 + 127 < 2**16
    alpha = rgba[..., 3].astype(np.uint16)
    background = (255 - alpha) * np.uint16(ALPHA_BACKGROUND) + np.uint16(127)
    out = np.empty((3, *rgba.shape[:2]), dtype=np.uint8)
    for channel in range(3):
        out[channel] = (rgba[..., channel] * alpha + background) // np.uint16(255)
    return out


def _reason(exc: BaseException) -> str:
    """The exception as ``Type: message`` for an error message."""
    if type(exc).__name__ == "UnidentifiedImageError":  # its message is the file object's repr
        return "not an image, a format Pillow does not read, or a corrupt header"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_pil_image(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Image.Image)

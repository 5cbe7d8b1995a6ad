"""Stimulus normalisation and validation, shared by every model family (numpy and Pillow only).

:func:`as_stimulus` accepts what users have at hand and returns a :class:`Stimulus` that yields
batches in one of two well-defined forms:

* ``uint8`` arrays ``(B, 3, H, W)`` of 8-bit intensities 0-255, for any integer input (the reference
  toolkit divides ``int64`` input by 2**63 and returns near-constant responses; berg does not), and
  for image files and PIL images;
* ``float32`` arrays ``(B, 3, H, W)`` with values in [0, 1], for floating-point input.

Anything else - wrong rank, channel-last layout, out-of-range values, NaN, an empty batch, a
missing or unreadable file - raises :class:`~berg_core.errors.StimulusError` saying what was found
and what is expected. Validation reads the data once in chunks, so memory stays flat; image files
are decoded lazily, one batch at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from berg_core.errors import InvalidParameterError, StimulusError

__all__ = ["IMAGE_EXTENSIONS", "Stimulus", "as_stimulus"]

#: File extensions read as images when a folder is given (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

_EXPECTED = (
    "expected a (N, 3, H, W) array of integers 0-255 or floats in [0, 1], a folder of images, "
    "a list of image paths, or a list of PIL images"
)
_VALIDATION_CHUNK = 64  # images per chunk when scanning an array for its value range


class Stimulus:
    """A validated batch of RGB images, iterated in model-sized batches.

    Do not construct directly: use :func:`as_stimulus`.

    Attributes
    ----------
    kind : {"uint8", "float"}
        The form of the yielded arrays (see the module docstring).
    sources : list of str or None
        The image file of each stimulus when read from files, else ``None``.
    """

    def __init__(
        self,
        *,
        array: np.ndarray | None = None,
        paths: Sequence[Path] | None = None,
        images: Sequence[Any] | None = None,
    ) -> None:
        self._array = array
        self._paths = list(paths) if paths is not None else None
        self._images = list(images) if images is not None else None
        if array is not None:
            self.kind = "float" if np.issubdtype(array.dtype, np.floating) else "uint8"
        else:
            self.kind = "uint8"
        self.sources = [str(p) for p in self._paths] if self._paths is not None else None

    def __len__(self) -> int:
        if self._array is not None:
            return int(self._array.shape[0])
        return len(self._paths if self._paths is not None else self._images)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        if self._array is not None:
            return f"Stimulus({len(self)} images, array {self._array.shape} {self._array.dtype})"
        origin = "files" if self._paths is not None else "PIL images"
        return f"Stimulus({len(self)} images from {origin})"

    @property
    def array(self) -> np.ndarray | None:
        """The caller's array, unconverted, when the stimulus came from one."""
        return self._array

    def batches(self, batch_size: int) -> Iterator[np.ndarray | list[np.ndarray]]:
        """Yield consecutive batches of at most *batch_size* images.

        Each batch is a ``(B, 3, H, W)`` array (``uint8`` or ``float32``, see :attr:`kind`), or,
        when images read from files differ in size, a list of ``(3, H, W)`` arrays.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidParameterError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        for start in range(0, len(self), batch_size):
            yield self.batch(start, min(start + batch_size, len(self)))

    def batch(self, start: int, stop: int) -> np.ndarray | list[np.ndarray]:
        """Return images ``start:stop`` in the form described in :meth:`batches`."""
        if self._array is not None:
            chunk = self._array[start:stop]
            if self.kind == "uint8":
                return chunk if chunk.dtype == np.uint8 else chunk.astype(np.uint8)
            return chunk if chunk.dtype == np.float32 else chunk.astype(np.float32)
        if self._paths is not None:
            images = [_read_image(path) for path in self._paths[start:stop]]
        else:
            images = [
                _pil_to_array(img, f"stimulus[{i}]")
                for i, img in enumerate(self._images[start:stop], start)
            ]  # type: ignore[index]
        if len({img.shape for img in images}) == 1:
            return np.stack(images)
        return images


def as_stimulus(stimulus: Any) -> Stimulus:
    """Validate *stimulus* and wrap it as a :class:`Stimulus`.

    Parameters
    ----------
    stimulus : numpy.ndarray, str, os.PathLike, sequence of paths, sequence of PIL images, Stimulus
        * an array ``(N, 3, H, W)``: any integer dtype with values 0-255 (8-bit intensities), or a
          float dtype with values in [0, 1];
        * a folder: every file with an extension in :data:`IMAGE_EXTENSIONS`, sorted by name;
        * one image file, or a list of image files;
        * a list of :class:`PIL.Image.Image`.

    Returns
    -------
    Stimulus

    Raises
    ------
    StimulusError
        For anything else, saying what was found and what is expected.
    """
    if isinstance(stimulus, Stimulus):
        return stimulus
    if isinstance(stimulus, np.ndarray):
        return Stimulus(array=_checked_array(stimulus))
    if isinstance(stimulus, (str, os.PathLike)):
        if not os.fspath(stimulus):  # Path("") is the current folder: never what was meant
            raise StimulusError(f"stimulus is an empty path; {_EXPECTED}")
        path = Path(stimulus)
        if path.is_dir():
            return Stimulus(paths=_folder_images(path))
        return Stimulus(paths=[_checked_file(path, "stimulus")])
    if _is_pil_image(stimulus):
        return Stimulus(images=[stimulus])
    if isinstance(stimulus, (list, tuple)):
        if not stimulus:
            raise StimulusError(f"stimulus is an empty {type(stimulus).__name__}; {_EXPECTED}")
        if all(isinstance(item, (str, os.PathLike)) for item in stimulus):
            return Stimulus(
                paths=[_checked_file(Path(p), f"stimulus[{i}]") for i, p in enumerate(stimulus)]
            )
        if all(_is_pil_image(item) for item in stimulus):
            return Stimulus(images=stimulus)
        kinds = sorted({type(item).__name__ for item in stimulus})
        raise StimulusError(
            f"stimulus is a list of {', '.join(kinds)}; a list must hold only image paths or only "
            f"PIL images (stack arrays into one (N, 3, H, W) array instead)"
        )
    raise StimulusError(f"stimulus is a {type(stimulus).__name__}; {_EXPECTED}")


def _checked_array(array: np.ndarray) -> np.ndarray:
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
    if np.issubdtype(array.dtype, np.integer) and array.dtype != np.uint8:
        low, high = _value_range(array)
        if low < 0 or high > 255:
            raise StimulusError(
                f"stimulus has dtype {array.dtype} with values from {low} to {high}; integer "
                f"stimuli are 8-bit intensities and must lie in 0-255"
            )
    elif np.issubdtype(array.dtype, np.floating):
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


def _folder_images(folder: Path) -> list[Path]:
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise StimulusError(
            f"stimulus folder {folder} contains no image files; expected files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )
    return [_checked_file(p, "stimulus") for p in files]


def _checked_file(path: Path, name: str) -> Path:
    """Check *path* is a readable image by opening its header (the pixels are read later)."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise StimulusError(f"{name}: no such file or folder: {path}")
    if not path.is_file():
        raise StimulusError(f"{name}: {path} is not a file")
    try:
        with Image.open(path) as img:
            img.size  # noqa: B018 - header only
    except (UnidentifiedImageError, OSError) as exc:
        raise StimulusError(f"{name}: {path} is not a readable image ({exc})") from None
    return path


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return _pil_to_array(img, str(path))
    except OSError as exc:
        raise StimulusError(f"could not decode image {path}: {exc}") from None


def _pil_to_array(img: Any, name: str) -> np.ndarray:
    if not _is_pil_image(img):
        raise StimulusError(f"{name} is a {type(img).__name__}, not a PIL image")
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))


def _is_pil_image(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Image.Image)

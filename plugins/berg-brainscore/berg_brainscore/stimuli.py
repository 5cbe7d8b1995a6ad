"""Turning berg stimuli into Brain-Score stimulus sets, named by their content.

Brain-Score models read images from files. Image files given by the user (a folder or a list of
paths) are passed as they are; arrays and PIL images are written as lossless PNGs into a private
temporary folder that is removed when the chunk is done, also on error.

Brain-Score caches activations on disk under the model's identifier and the stimulus set's
``identifier``, never looking at the images. berg therefore names every stimulus set after its
content: a sha256 over the pixels (arrays) or over each file's path and bytes (files). The same
images get the same name, and different images can never be served another set's activations.

Cached activations also remember the image paths, and Brain-Score compares them with the paths of
the set being encoded after cutting everything before a folder named ``.brainio``. The temporary
PNGs are written under ``<private dir>/.brainio/<identifier>/``, so the same images encoded again
(in a new temporary folder) match their cached activations.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["array_identifier", "files_identifier", "stimulus_set"]

_PREFIX = "berg-stimuli-"


def _name(tag: str, digest: Any) -> str:
    return f"{_PREFIX}{tag}-{digest.hexdigest()[:40]}"


def array_identifier(images: Sequence[np.ndarray], tag: str) -> str:
    """Content identifier of 8-bit images (each ``(3, H, W)`` ``uint8``), in order, for *tag*."""
    digest = hashlib.sha256(f"berg-brainscore arrays v1\0{tag}\0".encode())
    for image in images:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        digest.update(np.asarray(image.shape, dtype=np.int64).tobytes())
        digest.update(image.tobytes())
    return _name(tag, digest)


def files_identifier(paths: Sequence[Path], tag: str) -> str:
    """Content identifier of image files, in order (each file's resolved path and bytes)."""
    digest = hashlib.sha256(f"berg-brainscore files v1\0{tag}\0".encode())
    for path in paths:
        resolved = str(Path(path).resolve())
        digest.update(resolved.encode("utf-8", "surrogateescape") + b"\0")
        file_digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                file_digest.update(block)
        digest.update(file_digest.digest())
    return _name(tag, digest)


def to_uint8(images: np.ndarray | list[np.ndarray], kind: str) -> list[np.ndarray]:
    """8-bit ``(3, H, W)`` images from a batch of berg's :class:`~berg_core.Stimulus`.

    ``"uint8"`` batches are kept as they are; ``"float"`` batches (values in [0, 1]) are rounded to
    the nearest of the 256 levels an image file can hold (Brain-Score reads images from files).
    """
    out = []
    for image in images:
        if kind == "float":
            image = np.rint(np.asarray(image, dtype=np.float64) * 255.0)
        out.append(np.ascontiguousarray(image, dtype=np.uint8))
    return out


def _frame(identifier: str, paths: Sequence[Path]) -> Any:
    import pandas as pd
    from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet

    ids = [f"stimulus{i:06d}" for i in range(len(paths))]
    frame = StimulusSet(pd.DataFrame({"stimulus_id": ids, "filename": [p.name for p in paths]}))
    frame.stimulus_paths = {sid: str(path) for sid, path in zip(ids, paths, strict=True)}
    frame.identifier = identifier
    return frame


@contextmanager
def stimulus_set(
    tag: str, *, images: list[np.ndarray] | None = None, paths: Sequence[Path] | None = None
) -> Iterator[Any]:
    """A Brain-Score ``StimulusSet`` for one chunk of images, named by content and *tag*.

    Give either *images* (8-bit ``(3, H, W)`` arrays, written as PNGs into a private temporary
    folder that is removed on exit, also after an error) or *paths* (image files, used in place).
    The set's rows are in the given order, with ``stimulus_id`` ``stimulus000000``, ... .

    *tag* (the region) goes into the identifier, so that each cached activations file holds the
    layer(s) of one region only: Brain-Score merges a partly cached file with new layers by image
    path, which would duplicate images whose temporary folder changed.
    """
    if (images is None) == (paths is None):
        raise TypeError("give images or paths")
    if paths is not None:
        paths = [Path(p).resolve() for p in paths]
        yield _frame(files_identifier(paths, tag), paths)
        return
    from PIL import Image

    identifier = array_identifier(images, tag)  # type: ignore[arg-type]
    private = Path(tempfile.mkdtemp(prefix="berg-brainscore-"))  # mode 0700
    try:
        folder = private / ".brainio" / identifier
        folder.mkdir(parents=True)
        written = []
        for i, image in enumerate(images):  # type: ignore[arg-type]
            path = folder / f"image_{i:06d}.png"
            Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(path, format="PNG")
            written.append(path)
        yield _frame(identifier, written)
    finally:
        shutil.rmtree(private, ignore_errors=True)

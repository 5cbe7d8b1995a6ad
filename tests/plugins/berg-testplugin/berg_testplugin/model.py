"""The toy linear model: mean RGB intensity of each image -> a linear map per hemisphere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from berg_core import EncodingModel, LoadRequest, ModelCard, Stimulus
from berg_core.errors import ModelLoadError
from berg_core.safe_npy import load_pickled_npy
from berg_testplugin.layout import HEMISPHERES, METADATA_FILE, WEIGHTS_FILE

__all__ = ["ToyLinearModel", "load", "load_metadata", "mean_rgb"]


def mean_rgb(batch: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """Mean red, green and blue intensity of each image, in [0, 1], as ``float64`` ``(B, 3)``.

    *batch* is what :meth:`berg_core.Stimulus.batches` yields: a ``uint8`` array (0-255), a
    ``float32`` array ([0, 1]) or a list of ``(3, H, W)`` arrays of different sizes.
    """
    images = list(batch) if isinstance(batch, list) else [batch]
    parts = []
    for image in images:
        array = np.asarray(image)
        scale = 255.0 if array.dtype == np.uint8 else 1.0
        parts.append(array.astype(np.float64).mean(axis=(-2, -1)).reshape(-1, 3) / scale)
    return np.concatenate(parts)


def _read(berg_dir: Path, template: str, subject: int) -> dict[str, Any]:
    path = berg_dir / template.format(subject=subject)
    if not path.is_file():
        raise ModelLoadError(
            f"missing file {path} (berg_dir = {berg_dir}); write it with "
            f"berg_testplugin.layout.write_berg_dir(berg_dir)"
        )
    data = load_pickled_npy(path)
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} holds a {type(data).__name__}, expected a dict")
    return data


def load_metadata(card: ModelCard, berg_dir: Path, subject: int) -> dict[str, Any]:
    """Metadata loader registered for ``toy-synthetic-linear`` (reads one ``.npy`` dict)."""
    return _read(berg_dir, METADATA_FILE, subject)


def load(request: LoadRequest) -> ToyLinearModel:
    """Loader registered for ``toy-synthetic-linear``."""
    return ToyLinearModel(request)


class ToyLinearModel(EncodingModel):
    """``lh``/``rh`` responses: ``mean_rgb(images) @ coef[:, selected] + intercept[selected]``."""

    def __init__(self, request: LoadRequest) -> None:
        super().__init__(request)  # the core validated the batch_size option and applied it
        subject = int(request.subject)  # type: ignore[arg-type]
        self._metadata = load_metadata(request.card, request.berg_dir, subject)
        weights = _read(request.berg_dir, WEIGHTS_FILE, subject)
        selection = request.selection
        if selection is not None:
            self._columns = selection.resolve(self._metadata)  # type: ignore[attr-defined]
        else:
            self._columns = {}
        self._coef: dict[str, np.ndarray] = {}
        self._intercept: dict[str, np.ndarray] = {}
        for hemi in HEMISPHERES:
            coef = np.asarray(weights[f"{hemi}_coef"], dtype=np.float64)
            columns = self._columns.setdefault(hemi, np.arange(coef.shape[1], dtype=np.int64))
            self._coef[hemi] = coef[:, columns]
            self._intercept[hemi] = np.asarray(weights[f"{hemi}_intercept"], np.float64)[columns]

    def output_sizes(self) -> tuple[int, ...]:
        """Selected vertices of each hemisphere."""
        return tuple(len(self._columns[hemi]) for hemi in HEMISPHERES)

    def column_indices(self) -> dict[str, np.ndarray]:
        """The vertex index of every returned column."""
        return {hemi: self._columns[hemi].copy() for hemi in HEMISPHERES}

    def subject_metadata(self) -> dict[str, Any]:
        """The subject's metadata dict."""
        return self._metadata

    def encode_batches(self, stimulus: Stimulus) -> Iterator[tuple[np.ndarray, ...]]:
        """One ``(lh, rh)`` pair of ``float32`` arrays per batch of ``batch_size`` images."""
        for batch in stimulus.batches(self.batch_size):
            features = mean_rgb(batch)
            yield tuple(
                (features @ self._coef[hemi] + self._intercept[hemi]).astype(np.float32)
                for hemi in HEMISPHERES
            )

    def close(self) -> None:
        """Drop the weights."""
        self._coef = {}
        self._intercept = {}
        super().close()

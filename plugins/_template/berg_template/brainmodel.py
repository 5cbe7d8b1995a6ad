"""Level 2, brain model: an :class:`~berg_core.EncodingModel` that computes responses itself.

Use this level when your model is not "network features -> linear readout": implement
:meth:`output_shapes` (or ``output_sizes``), :meth:`encode_batches` and, if your outputs have
coordinates of their own, :meth:`output_coords`. Here: mean red, green and blue intensity ->
linear map to voxels -> ``sign(x) * |x| ** exponent`` (the typed option of the card). numpy only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from berg_core import EncodingModel, LoadRequest, ModelLoadError, Stimulus
from berg_template.files import read_arrays


def mean_rgb(batch: Any) -> np.ndarray:
    """Mean R, G, B intensity in [0, 1] of each image of a batch: ``(B, 3)`` float64."""
    rows = []
    for image in batch:
        array = np.asarray(image)
        scale = 255.0 if array.dtype == np.uint8 else 1.0
        rows.append(array.astype(np.float64).mean(axis=(-2, -1)) / scale)
    return np.stack(rows)


def load(request: LoadRequest) -> BrainModel:
    """Loader of ``fmri-template-brainmodel`` (``request.options`` holds the typed options)."""
    arrays = read_arrays(
        request.berg_dir,
        request.card.files_for(request.subject)[0],
        {"coef": (3, None), "intercept": (None,)},
    )
    return BrainModel(request, arrays["coef"], arrays["intercept"])


class BrainModel(EncodingModel):
    """``f(mean_rgb(images) @ coef + intercept)`` with ``f(x) = sign(x) |x| ** exponent``."""

    def __init__(self, request: LoadRequest, coef: np.ndarray, intercept: np.ndarray) -> None:
        super().__init__(request)
        if coef.shape[1] != intercept.shape[0]:
            raise ModelLoadError(
                f"{request.model_id}: coef has {coef.shape[1]} voxels, intercept "
                f"{intercept.shape[0]}"
            )
        self.coef = np.asarray(coef, np.float64)
        self.intercept = np.asarray(intercept, np.float64)
        self.exponent = float(request.options["exponent"])

    def output_sizes(self) -> tuple[int, ...]:
        """One output with one value per voxel (coordinates 0..n-1, the default)."""
        return (self.coef.shape[1],)

    def encode_batches(self, stimulus: Stimulus) -> Iterator[tuple[np.ndarray, ...]]:
        """One ``(B, n_voxels)`` float32 array per batch."""
        for batch in stimulus.batches(self.batch_size):
            linear = mean_rgb(batch) @ self.coef + self.intercept
            yield ((np.sign(linear) * np.abs(linear) ** self.exponent).astype(np.float32),)

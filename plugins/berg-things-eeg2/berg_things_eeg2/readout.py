"""One StandardScaler, then one PCA and one regression per repetition, in float32 torch.

For a ``(B, D)`` feature matrix ``X`` and each repetition ``r``::

    S   = (X - scaler.mean_) / scaler.scale_                     # shared by the repetitions
    Z_r = (S - pca_r.mean_) @ pca_r.components_.T                # (B, k)
    Y_r = Z_r @ reg_r.coef_[rows].T + reg_r.intercept_[rows]     # (B, n_rows)

and the response is ``[Y_1, Y_2, Y_3, Y_4]`` side by side, ``(B, 4 * n_rows)`` (repetition major).
Each repetition's PCA and regression are its own tensors, built from its own dicts, so no
repetition can reuse another's (the reference's "stale PCA" bug, docs/compatibility.md). Built
from :class:`berg_core.torchkit.LinearReadout` parts, which check every array first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from berg_core.checks import Location
from berg_core.torchkit import LinearReadout
from berg_things_eeg2.plugin import REPETITIONS
from berg_things_eeg2.weights import WeightsLayout

__all__ = ["RepetitionReadout"]


@dataclass(frozen=True)
class _Where(Location):
    """A file's location whose top-level keys may stand for nested ones (for messages)."""

    paths: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __getitem__(self, key: object) -> Location:
        for name, path in self.paths:
            if key == name:
                where = Location(self.file, self.key)
                for part in path:
                    where = where[part]
                return where
        return Location(self.file, self.key)[key]


class RepetitionReadout:
    """The EEG readout: a shared scaler, per-repetition PCAs and regressions.

    It has the interface :class:`~berg_core.torchkit.FeatureReadoutModel` runs (``heads``,
    ``feature_dim``, ``output_sizes()``, call, ``release()``) with one head, ``responses``.

    Parameters
    ----------
    parts : sequence of (LinearReadout, tuple of str)
        Readouts and the heads of each to use, in repetition order. Generation A files give one
        readout (one PCA) with four heads; B and C files four readouts with one head each.
    """

    def __init__(self, parts: Sequence[tuple[LinearReadout, tuple[str, ...]]]) -> None:
        self.parts = list(parts)
        sizes = {int(r.heads[h][0].shape[0]) for r, heads in self.parts for h in heads}
        if len(sizes) != 1:
            raise ValueError(f"repetitions keep different numbers of rows: {sorted(sizes)}")
        self.n_rows = sizes.pop()
        self.n_repetitions = sum(len(heads) for _, heads in self.parts)
        self.heads = {"responses": None}

    @classmethod
    def from_layout(
        cls,
        layout: WeightsLayout,
        rows: np.ndarray,
        device: torch.device,
        *,
        source: str,
        feature_dim: int,
        n_rows: int,
    ) -> RepetitionReadout:
        """Build and check the readout of a weights file, keeping *rows* of each regression.

        Raises
        ------
        ModelLoadError
            A missing key, or an array of the wrong kind or shape (naming the file and key).
        """
        reg = {r: (r, ("reg_param", r)) for r in REPETITIONS}
        if layout.generation == "A":
            where = _Where(source, "weights", paths=tuple(reg.values()))
            readout = LinearReadout.from_params(
                layout.scaler,
                layout.pcas[0],
                {
                    r: (params, rows)
                    for r, params in zip(REPETITIONS, layout.regressions, strict=True)
                },
                device,
                source=where,
                reg_keys={r: r for r in REPETITIONS},
                feature_dim=feature_dim,
                n_rows=dict.fromkeys(REPETITIONS, n_rows),
            )
            return cls([(readout, REPETITIONS)])
        parts = []
        for r, pca, params in zip(REPETITIONS, layout.pcas, layout.regressions, strict=True):
            where = _Where(source, "weights", paths=(reg[r], ("pca_param", ("pca_param", r))))
            readout = LinearReadout.from_params(
                layout.scaler,
                pca,
                {r: (params, rows)},
                device,
                source=where,
                reg_keys={r: r},
                feature_dim=feature_dim,
                n_rows={r: n_rows},
            )
            parts.append((readout, (r,)))
        return cls(parts)

    @property
    def feature_dim(self) -> int:
        """Number of input features D."""
        return self.parts[0][0].feature_dim

    def output_sizes(self) -> tuple[int, ...]:
        """``(n_repetitions * n_rows,)``."""
        return (self.n_repetitions * self.n_rows,)

    def __call__(
        self, features: torch.Tensor, out: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``(B, n_repetitions * n_rows)`` float32 responses (*features* standardised in place)."""
        first = self.parts[0][0]
        if features.shape[-1] != first.feature_dim:
            raise ValueError(
                f"features have {features.shape[-1]} columns; the readout expects "
                f"{first.feature_dim}"
            )
        scaled = features.sub_(first.scaler_mean).div_(first.scaler_scale)
        centred = torch.empty_like(scaled)
        result = (
            out[0]
            if out is not None
            else torch.empty(
                (scaled.shape[0], self.n_repetitions * self.n_rows),
                dtype=torch.float32,
                device=scaled.device,
            )
        )
        column = 0
        for readout, heads in self.parts:
            z = torch.sub(scaled, readout.pca_mean, out=centred) @ readout.components.T
            for head in heads:
                coef, intercept = readout.heads[head]
                result[:, column : column + self.n_rows] = torch.addmm(intercept, z, coef.T)
                column += self.n_rows
        return (result,)

    def release(self) -> None:
        """Drop every tensor."""
        for readout, _ in self.parts:
            readout.release()
        self.parts = []

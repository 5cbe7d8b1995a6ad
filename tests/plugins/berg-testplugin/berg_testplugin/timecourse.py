"""The time-resolved toy model: ``(repetition, channel, time)`` responses, an EEG stand-in.

Shows what a family with a multi-dim output implements: :meth:`output_shapes` and the
coordinates the card cannot know (the subject's channel names, :meth:`output_coords`); the core
does the picks along ``repetition``, ``channel`` and ``time``, the shapes and the files.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from pydantic import Field

from berg_core import EncodingModel, LoadRequest, ModelCard, Stimulus
from berg_core.errors import ModelLoadError
from berg_core.safe_npy import load_pickled_npy
from berg_core.schemas import SelectionSchema
from berg_testplugin.layout import (
    TIMECOURSE_METADATA_FILE,
    TIMECOURSE_REPETITIONS,
    TIMES_MS,
    timecourse,
)
from berg_testplugin.model import mean_rgb

__all__ = [
    "TimecourseModel",
    "TimecourseSelection",
    "channel_positions",
    "load",
    "load_metadata",
]


class TimecourseSelection(SelectionSchema):
    """The family's own selection key; ``repetition``, ``channel`` and ``time`` are dim picks."""

    reference: Literal["none", "average"] = Field(
        "none", description="'average': subtract the mean over all channels (before any pick)."
    )


def load_metadata(card: ModelCard, berg_dir: Any, subject: int) -> dict[str, Any]:
    """Metadata loader: the subject's ``{"eeg": {"ch_names", "times_ms"}, "subject"}``."""
    path = berg_dir / TIMECOURSE_METADATA_FILE.format(subject=subject)
    if not path.is_file():
        raise ModelLoadError(
            f"missing file {path}; write it with berg_testplugin.layout.write_berg_dir(berg_dir)"
        )
    data = load_pickled_npy(path)
    if not isinstance(data, dict) or "eeg" not in data:
        raise ModelLoadError(f"{path} holds no 'eeg' entry")
    return data


def channel_positions(n: int) -> np.ndarray:
    """Channel *i* of *n* at angle ``2 pi i / n`` on the unit circle: ``(n, 2)`` float64."""
    angle = 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def load(request: LoadRequest) -> TimecourseModel:
    """Loader registered for ``toy-synthetic-timecourse``."""
    return TimecourseModel(request)


class TimecourseModel(EncodingModel):
    """Responses :func:`berg_testplugin.layout.timecourse` of each image's mean RGB."""

    def __init__(self, request: LoadRequest) -> None:
        super().__init__(request)
        subject = int(request.subject)  # type: ignore[arg-type]
        self._subject = subject
        self._metadata = load_metadata(request.card, request.berg_dir, subject)
        self._channels = np.asarray(self._metadata["eeg"]["ch_names"], dtype=str)
        selection = request.selection
        self._reference = selection.reference if selection is not None else "none"  # type: ignore[attr-defined]

    def output_shapes(self) -> tuple[tuple[int, ...], ...]:
        """One output ``(repetition, channel, time)``."""
        return ((TIMECOURSE_REPETITIONS, len(self._channels), len(TIMES_MS)),)

    def output_coords(self) -> dict[str, dict[str, np.ndarray]]:
        """The card's coordinates (repetitions ``0..1``, times in ms), the subject's channels."""
        coords = super().output_coords()
        coords["responses"]["channel"] = self._channels.copy()
        return coords

    def output_aux_coords(self) -> dict[str, dict[str, tuple[tuple[str, ...], np.ndarray]]]:
        """``channel_position``: each channel's (x, y) on a unit circle, ``(n_channels, 2)``."""
        return {
            "responses": {
                "channel_position": (("channel",), channel_positions(len(self._channels)))
            }
        }

    def subject_metadata(self) -> dict[str, Any]:
        """The subject's metadata dict."""
        return self._metadata

    def encode_batches(self, stimulus: Stimulus) -> Iterator[tuple[np.ndarray, ...]]:
        """Flat ``(B, 2 * 3 * 5)`` blocks (the core reshapes them)."""
        gain = self.request.options["gain"]
        for batch in stimulus.batches(self.batch_size):
            values = timecourse(mean_rgb(batch), self._subject, gain, self._reference)
            yield (values.reshape(len(values), -1).astype(np.float32),)

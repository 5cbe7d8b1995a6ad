"""The one streaming loop: a collection of images through many encoders, block by block.

Blocks are encoded by every encoder in turn (block-major), each with the same batch
composition, so encoders that share a backbone (the subjects and ROIs of one family) reuse its
features through berg's content-keyed feature cache (``berg_core.torchkit.cache``): the backbone
runs once per block, whatever the number of encoders.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np

from berg_core import BERG, as_stimulus
from berg_insilico.areas import Area, flatten_outputs
from berg_insilico.images import ImageCollection

__all__ = ["Encoder", "open_encoders", "stream"]


class Encoder:
    """One loaded model: an area for one subject."""

    def __init__(self, area: Area, subject: Any, model: Any) -> None:
        self.area = area
        self.subject = subject
        self.model = model

    @property
    def key(self) -> tuple[str, Any]:
        """``(area name, subject)``."""
        return (self.area.name, self.subject)

    def columns(self) -> list[str]:
        """A label of every flattened position: ``output/position``."""
        labels = []
        for name, shape in zip(self.model.output_names, self.model.shapes(), strict=True):
            labels.extend(f"{name}/{i}" for i in range(int(np.prod(shape))))
        return labels

    def encode(self, block: Any) -> np.ndarray:
        """The block's responses, every output flattened: ``(B, P)`` float32."""
        stimulus = as_stimulus(block)
        n = len(stimulus)
        out = None
        for start, stop, arrays in self.model.iter_rows(stimulus, show_progress=False):
            flat = flatten_outputs(arrays)
            if out is None:
                out = np.empty((n, flat.shape[1]), dtype=np.float32)
            out[start:stop] = flat
        return out


@contextmanager
def open_encoders(
    berg: BERG, areas: Sequence[Area], subjects: Sequence[Any], device: str = "auto"
) -> Iterator[list[Encoder]]:
    """Load every (area, subject) model; close them all on exit."""
    with ExitStack() as stack:
        encoders = []
        for subject in subjects:
            for area in areas:
                model = berg.get_encoding_model(
                    area.model_id, subject, area.selection, device, **dict(area.options)
                )
                stack.enter_context(model)
                encoders.append(Encoder(area, subject, model))
        yield encoders


def stream(
    encoders: Sequence[Encoder],
    images: ImageCollection,
    *,
    block_size: int,
    start: int = 0,
    show_progress: bool = True,
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Yield ``(first_index, [responses of each encoder])`` for every block from *start*."""
    from tqdm.auto import tqdm

    total = images.n
    with tqdm(
        total=total, initial=start, unit="img", desc="in-silico", disable=not show_progress
    ) as bar:
        for first, block in images.blocks(block_size, start):
            yield first, [encoder.encode(block) for encoder in encoders]
            bar.update(len(block))

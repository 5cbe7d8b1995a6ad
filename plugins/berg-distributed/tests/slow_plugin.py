"""A test-only berg plugin: ``toy-slow-linear``, the toy linear model that can stall once.

When ``berg_dir/STALL`` exists, the first model process to rename it to ``berg_dir/STALLED``
writes its process id to ``berg_dir/stalled.pid`` and sleeps (a worker stuck mid-task, for the
test to ``kill -9``); every other call, and every call once the file is gone, encodes at once,
exactly as ``toy-synthetic-linear``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from berg_testplugin.model import ToyLinearModel
from berg_testplugin.plugin import LINEAR_CARD

from berg_core import LoadRequest, Stimulus, hookimpl

SLOW_ID = "toy-slow-linear"
SLOW_CARD = LINEAR_CARD.model_copy(update={"model_id": SLOW_ID})
#: Seconds a stalled model sleeps (the test kills it long before).
STALL_SECONDS = 120


class SlowLinearModel(ToyLinearModel):
    """:class:`ToyLinearModel` that stalls while ``berg_dir/STALL`` can be claimed."""

    def encode_batches(self, stimulus: Stimulus) -> Iterator[tuple[np.ndarray, ...]]:
        folder = Path(self.request.berg_dir)
        try:
            os.rename(folder / "STALL", folder / "STALLED")
        except OSError:
            pass
        else:
            (folder / "stalled.pid.tmp").write_text(str(os.getpid()))
            os.rename(folder / "stalled.pid.tmp", folder / "stalled.pid")  # never seen half-written
            time.sleep(STALL_SECONDS)
        yield from super().encode_batches(stimulus)


def load(request: LoadRequest) -> SlowLinearModel:
    """Loader of ``toy-slow-linear``."""
    return SlowLinearModel(request)


@hookimpl
def register_models(register: Callable[..., None]) -> None:
    """Declare ``toy-slow-linear``."""
    register(SLOW_CARD, "slow_plugin:load")


@hookimpl
def register_metadata_loaders(register: Callable[..., None]) -> None:
    """The toy linear model's metadata loader."""
    register(SLOW_ID, "berg_testplugin.model:load_metadata")

"""What runs on a worker: one shard of one (model, subject) into its own part file.

Each worker process keeps the models it loaded (:data:`_MODELS`, keyed by model id, subject,
selection, options, device and ``berg_dir``), so a model is loaded once per worker, not once per
shard; a worker with several threads encodes with one model one shard at a time (a lock per
model), so give workers one thread each (``--nthreads 1``) and let torch use the cores.

A part is written whole or not at all (:func:`berg_core.atomic.atomic_outputs`): it exists under
its final name only when complete, and its attributes name the run and the rows it holds.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berg_distributed.stimuli import StimulusRef

__all__ = [
    "BATCH_ATTR",
    "RUN_ATTR",
    "ShardTask",
    "clear_cache",
    "executions",
    "part_is_done",
    "run_shard",
]

#: Attribute of a part file: the run key and the rows it holds, as JSON.
RUN_ATTR = "berg_distributed_part"
#: Attribute of a part file: the model's batch size (the assembled file's chunk rows).
BATCH_ATTR = "berg_distributed_batch_size"

_MODELS: dict[tuple[str, ...], tuple[Any, threading.Lock]] = {}
_LOCK = threading.Lock()
_EXECUTIONS: list[int] = [0]


@dataclass(frozen=True)
class ShardTask:
    """One task: images ``start:stop`` of *stimulus* through one model, into *part*."""

    run: str
    berg_dir: str
    model_id: str
    subject: int | str | None
    selection: dict[str, Any] | None
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    stimulus: StimulusRef | None = None
    start: int = 0
    stop: int = 0
    part: str = ""
    header: bool = False

    def cache_key(self) -> tuple[str, ...]:
        plain = json.dumps([self.selection, self.options], sort_keys=True, default=str)
        return (self.model_id, repr(self.subject), plain, self.device, self.berg_dir)


def clear_cache() -> int:
    """Close and forget this worker's models; return how many there were."""
    with _LOCK:
        models = [model for model, _ in _MODELS.values()]
        _MODELS.clear()
    for model in models:
        model.close()
    return len(models)


def executions() -> int:
    """How many shards this worker process has encoded (tests and benchmarks)."""
    return _EXECUTIONS[0]


def _model(task: ShardTask) -> tuple[Any, threading.Lock, float]:
    """The worker's model for *task* (loaded on first use), its lock, the seconds loading took."""
    key = task.cache_key()
    with _LOCK:
        cached = _MODELS.get(key)
        if cached is not None:
            return (*cached, 0.0)
        from berg_core.api import BERG

        began = time.perf_counter()
        model = BERG(task.berg_dir).get_encoding_model(
            task.model_id, task.subject, task.selection, task.device, **task.options
        )
        _MODELS[key] = (model, threading.Lock())
        return (*_MODELS[key], time.perf_counter() - began)


def part_is_done(part: str | Path, run: str, start: int, stop: int) -> bool:
    """Whether *part* is a complete part of run *run* holding rows ``start:stop``."""
    import h5py

    try:
        with h5py.File(part, "r") as h5:
            found = json.loads(h5.attrs.get(RUN_ATTR, "{}"))
    except (OSError, ValueError):
        return False
    return found == {"run": run, "start": start, "stop": stop}


def run_shard(task: ShardTask) -> dict[str, Any]:
    """Encode one shard into its part file.

    The part holds the response datasets (rows ``start:stop``, layout of
    :func:`berg_core.output.create_response_datasets`) and, for the part that starts the run
    (``task.header``), the header of :func:`berg_core.output.write_header`.

    Returns
    -------
    dict
        ``start``, ``stop``, ``part``, ``load_s`` (model load, 0 when cached), ``read_s``,
        ``encode_s`` (encode and write), ``batch_size`` and the outputs' ``dims``.
    """
    import h5py

    from berg_core.atomic import atomic_outputs
    from berg_core.output import create_response_datasets, write_header

    model, lock, load_s = _model(task)
    assert task.stimulus is not None
    began = time.perf_counter()
    stimulus = task.stimulus.read(task.start, task.stop)
    read_s = time.perf_counter() - began
    began = time.perf_counter()
    n = task.stop - task.start
    with (
        lock,
        atomic_outputs([task.part], force=True) as (tmp,),
        h5py.File(tmp, "w") as h5,
    ):
        datasets = create_response_datasets(h5, model.dims(), model.shapes(), n, model.batch_size)
        if task.header:
            write_header(h5, model, None)
        for start, stop, batch in model.iter_rows(stimulus, show_progress=False):
            for dataset, values in zip(datasets, batch, strict=True):
                dataset[start:stop] = values
        h5.attrs[BATCH_ATTR] = model.batch_size
        h5.attrs[RUN_ATTR] = json.dumps({"run": task.run, "start": task.start, "stop": task.stop})
    _EXECUTIONS[0] += 1
    return {
        "start": task.start,
        "stop": task.stop,
        "part": task.part,
        "load_s": load_s,
        "read_s": read_s,
        "encode_s": time.perf_counter() - began,
        "batch_size": model.batch_size,
        "dims": {name: list(dims) for name, dims in model.dims().items()},
    }

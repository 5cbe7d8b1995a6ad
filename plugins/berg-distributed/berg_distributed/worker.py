"""What runs on a worker: one image shard through one model for one or more subjects.

A task is one shard of one model for the subjects whose parts are missing. It reads its images
once and runs every subject's model over them batch by batch, in lock-step: the first subject's
model computes a batch's backbone features and stores them in the process's feature cache
(:mod:`berg_core.torchkit.cache`); every other subject's model finds the same network, the same
preprocessing and the same pixels there and only applies its readout. The backbone thus runs
once per image for all subjects of a model, and each subject still gets the numbers of its own
single-process run (the cache serves the stored bytes, for the same batch composition). Models
without backbone features (or with the cache disabled, ``BERG_FEATURE_CACHE_BYTES=0``) simply
compute everything per subject.

Each worker process keeps the models it loaded (:data:`_MODELS`, keyed by model id, subject,
selection, options, device and ``berg_dir``), so a model is loaded once per worker, not once per
shard; a worker with several threads encodes with one model one shard at a time (a lock per
model), so give workers one thread each (``--nthreads 1``) and let torch use the cores.

A task's parts (one per subject) are written whole or not at all
(:func:`berg_core.atomic.atomic_outputs`): they exist under their final names only when
complete, and their attributes name the run and the rows they hold.
"""

from __future__ import annotations

import contextlib
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
    "model_for",
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
    """One task: images ``start:stop`` of *stimulus* through one model for *subjects*.

    ``subjects``, ``runs`` and ``parts`` go together: subject ``subjects[i]`` is written into
    ``parts[i]``, marked as a part of run ``runs[i]`` (each subject is its own run, with its
    own result file).
    """

    berg_dir: str
    model_id: str
    subjects: tuple[int | str | None, ...]
    runs: tuple[str, ...]
    parts: tuple[str, ...]
    selection: dict[str, Any] | None
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    stimulus: StimulusRef | None = None
    start: int = 0
    stop: int = 0
    header: bool = False

    def cache_key(self, subject: int | str | None) -> tuple[str, ...]:
        """The key of *subject*'s model in the worker's model cache."""
        return _cache_key(
            self.berg_dir, self.model_id, subject, self.selection, self.options, self.device
        )


def _cache_key(
    berg_dir: str,
    model_id: str,
    subject: Any,
    selection: dict[str, Any] | None,
    options: dict[str, Any],
    device: str,
) -> tuple[str, ...]:
    plain = json.dumps([selection, options], sort_keys=True, default=str)
    return (model_id, repr(subject), plain, device, berg_dir)


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


def _model(task: ShardTask, subject: int | str | None) -> tuple[Any, threading.Lock, float]:
    """The worker's model of *subject* for *task* (loaded on first use), its lock, the seconds
    loading took."""
    return model_for(
        task.berg_dir, task.model_id, subject, task.selection, task.options, task.device
    )


def model_for(
    berg_dir: str,
    model_id: str,
    subject: Any,
    selection: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    device: str = "auto",
) -> tuple[Any, threading.Lock, float]:
    """This worker process's model (loaded on first use, then kept), its lock, the load seconds.

    For other plugins' Dask tasks (``berg_insilico``'s ranking on a cluster): a model is loaded
    once per worker process, not once per task. Hold the lock while encoding with the model.

    Parameters
    ----------
    berg_dir, model_id, subject, selection, options, device
        As :meth:`berg_core.BERG.get_encoding_model` takes them (*options*: its keywords).

    Returns
    -------
    tuple
        ``(model, lock, seconds)``; *seconds* is 0.0 when the model was cached.
    """
    options = dict(options or {})
    key = _cache_key(str(berg_dir), model_id, subject, selection, options, device)
    with _LOCK:
        cached = _MODELS.get(key)
        if cached is not None:
            return (*cached, 0.0)
        from berg_core.api import BERG

        began = time.perf_counter()
        model = BERG(berg_dir).get_encoding_model(model_id, subject, selection, device, **options)
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
    """Encode one shard for every subject of *task*, each into its part file.

    A part holds the response datasets (rows ``start:stop``, layout of
    :func:`berg_core.output.create_response_datasets`) and, for the shard that starts the run
    (``task.header``), the header of :func:`berg_core.output.write_header`. The subjects'
    encode loops advance one batch at a time together, so that every subject after the first
    is served the batch's backbone features from the feature cache.

    Returns
    -------
    dict
        ``start``, ``stop``, ``subjects``, ``parts``, ``load_s`` (model loads, 0 when cached),
        ``read_s``, ``encode_s`` (encode and write, all subjects), ``batch_size`` and the
        outputs' ``dims`` (of the first subject).
    """
    import h5py

    from berg_core.atomic import atomic_outputs
    from berg_core.output import create_response_datasets, write_header

    if not (len(task.subjects) == len(task.runs) == len(task.parts) >= 1):
        raise ValueError("a ShardTask needs one run and one part per subject, and a subject")
    loaded = [_model(task, subject) for subject in task.subjects]
    models = [model for model, _, _ in loaded]
    load_s = sum(seconds for _, _, seconds in loaded)
    assert task.stimulus is not None
    began = time.perf_counter()
    stimulus = task.stimulus.read(task.start, task.stop)
    read_s = time.perf_counter() - began
    began = time.perf_counter()
    n = task.stop - task.start
    with contextlib.ExitStack() as stack:
        # locks in one global order (model cache keys), so that two threads never deadlock
        for _, lock, _ in sorted(loaded, key=lambda item: id(item[1])):
            stack.enter_context(lock)
        tmps = stack.enter_context(atomic_outputs(list(task.parts), force=True))
        files = [stack.enter_context(h5py.File(tmp, "w")) for tmp in tmps]
        sinks = []
        for model, h5 in zip(models, files, strict=True):
            sinks.append(
                create_response_datasets(h5, model.dims(), model.shapes(), n, model.batch_size)
            )
            if task.header:
                write_header(h5, model, None)
        loops = [model.iter_rows(stimulus, show_progress=False) for model in models]
        for rows in zip(*loops, strict=True):
            for (start, stop, batch), datasets in zip(rows, sinks, strict=True):
                for dataset, values in zip(datasets, batch, strict=True):
                    dataset[start:stop] = values
        for model, h5, run in zip(models, files, task.runs, strict=True):
            h5.attrs[BATCH_ATTR] = model.batch_size
            h5.attrs[RUN_ATTR] = json.dumps({"run": run, "start": task.start, "stop": task.stop})
        # leaving the stack closes the files, then renames the parts (atomic_outputs), then
        # releases the locks
    _EXECUTIONS[0] += 1
    return {
        "start": task.start,
        "stop": task.stop,
        "subjects": list(task.subjects),
        "parts": list(task.parts),
        "load_s": load_s,
        "read_s": read_s,
        "encode_s": time.perf_counter() - began,
        "batch_size": models[0].batch_size,
        "dims": {name: list(dims) for name, dims in models[0].dims().items()},
    }

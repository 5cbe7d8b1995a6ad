"""Distributed training: berg-train's per-shard and per-chunk functions as Dask tasks.

:class:`DaskRunner` is a :class:`berg_train.runner.Runner` on a Dask cluster: berg-train's
steps hand it their tasks (feature shards, PCA column blocks, regression chunks) and add the
results up in task order, as in one process, so the weights and metadata are the same files
bit for bit whatever the number of workers (given the same BLAS and thread count on every
machine). A task lost with its worker (``kill -9``) is rerun by the scheduler on another one;
every file a task writes appears under its final name only when complete, and a restarted run
skips the feature shards and regression chunks already written (see docs/scaling.md).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from berg_core.errors import BergError

__all__ = ["DaskRunner", "MissingTrainError", "train_nsd", "train_things", "train_things_eeg2"]

#: How to get berg-train with this package (the ``train`` extra of its pyproject.toml).
TRAIN_INSTALL = 'pip install "berg-distributed[train]"'


#: Times a task cancelled because its shared data was lost is submitted again.
RETRIES = 3


class MissingTrainError(BergError, ImportError):
    """Distributed training was asked for, but berg-train is not installed."""


def _require_train(what: str) -> None:
    """Raise :class:`MissingTrainError` naming *what* when berg-train cannot be imported."""
    import importlib.util

    if importlib.util.find_spec("berg_train") is None:
        raise MissingTrainError(
            f"{what} needs berg-train, which is not installed: {TRAIN_INSTALL} "
            "(or pip install berg-train)"
        )


class DaskRunner:
    """Run tasks on a Dask cluster, at most *window* at a time, results in task order.

    Parameters
    ----------
    client : distributed.Client
    window : int, optional
        Tasks submitted ahead of the result being read (default: twice the workers, at least
        2). Bounds the results held on the workers (a PCA block's Gram matrix is
        ``n_fit^2 x 4`` bytes).
    workers : list of str, optional
        Run the tasks only on these workers (addresses); default any.
    shard_size : int
        Images per feature-extraction task (rounded down to a multiple of the batch size).

    Attributes
    ----------
    submitted : collections.Counter
        Tasks submitted by this runner, per function name (tests count executions with it).
    """

    distributed = True

    def __init__(
        self,
        client: Any,
        window: int | None = None,
        workers: list[str] | None = None,
        shard_size: int = 256,
    ) -> None:
        from berg_core.errors import InvalidParameterError, describe_value

        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise InvalidParameterError(
                f"shard_size must be an integer >= 1, got {describe_value(shard_size)}"
            )
        self.client = client
        self.shard_size = shard_size
        self.workers = list(workers) if workers else None
        count = len(self.workers or client.scheduler_info().get("workers", {})) or 1
        self.window = int(window) if window else max(2, 2 * count)
        self.submitted: collections.Counter[str] = collections.Counter()
        self._shared: dict[Any, tuple[Any, Any]] = {}  # key -> (future, value)
        self._replaced: dict[Any, Any] = {}  # key of a lost shared value -> its new future

    def _submit(self, function: Callable[..., Any], args: Sequence[Any]) -> Any:
        self.submitted[getattr(function, "__name__", repr(function))] += 1
        return self.client.submit(
            function, *args, pure=False, workers=self.workers, allow_other_workers=False
        )

    def share(self, value: Any) -> Any:
        """*value* sent once to every worker (a future the tasks receive as *value*).

        The runner keeps *value* here too: scattered data that every worker holding it lost
        (a worker killed before a restarted one received it) is scattered again (:meth:`map`).
        """
        future = self.client.scatter(value, broadcast=True, hash=False, workers=self.workers)
        self._shared[future.key] = (future, value)
        return future

    def _reshare(self, args: Sequence[Any]) -> tuple[Any, ...]:
        """*args* with every shared value whose data is lost scattered again."""
        from distributed import Future

        fresh = []
        for arg in args:
            if isinstance(arg, Future) and arg.key in self._shared and arg.status != "finished":
                old, value = self._shared.pop(arg.key)
                arg = self.share(value)
                self._replaced[old.key] = arg
            elif isinstance(arg, Future) and arg.key in self._replaced:
                arg = self._replaced[arg.key]
            fresh.append(arg)
        return tuple(fresh)

    def map(
        self, function: Callable[..., Any], tasks: Iterable[Sequence[Any]], *, label: str = ""
    ) -> Iterator[Any]:
        """``function(*args)`` of each task on the cluster, yielded in the order of *tasks*.

        A task lost with its worker is rerun by the scheduler; a task cancelled because shared
        data it needs was lost with every worker holding it is submitted again with that data
        scattered again (at most :data:`RETRIES` times per task).
        """
        from distributed.client import FutureCancelledError

        pending: collections.deque[tuple[Any, Sequence[Any], int]] = collections.deque()
        queue = iter(tasks)
        try:
            for args in queue:
                args = self._reshare(args)
                pending.append((self._submit(function, args), args, 0))
                if len(pending) >= self.window:
                    break
            while pending:
                future, args, tries = pending[0]
                try:
                    result = future.result()
                except FutureCancelledError:
                    if tries >= RETRIES or not any(
                        getattr(a, "key", None) in self._shared for a in args
                    ):
                        raise
                    # resubmit this task and the ones after it, with their data scattered again
                    again = [(self._reshare(a), t) for _, a, t in pending]
                    pending.clear()
                    for i, (a, t) in enumerate(again):
                        pending.append((self._submit(function, a), a, t + (i == 0)))
                    continue
                pending.popleft()
                for args in queue:
                    args = self._reshare(args)
                    pending.append((self._submit(function, args), args, 0))
                    break
                yield result
        finally:
            if pending:
                self.client.cancel([future for future, _, _ in pending])


def _runner(client: Any, window: int | None) -> DaskRunner:
    return DaskRunner(client, window)


def train_nsd(
    nsd_root: str | os.PathLike[str],
    subject: int,
    berg_dir: str | os.PathLike[str],
    config: Any = None,
    *,
    client: Any,
    window: int | None = None,
    **dataset_options: Any,
) -> Any:
    """``berg train nsd`` on a Dask cluster: :func:`berg_train.train` of an
    :class:`~berg_train.NSDDataset` with a :class:`DaskRunner`. The NSD folder and *berg_dir*
    must be visible to every worker at the same paths."""
    _require_train("train_nsd")
    from berg_train.api import NSDDataset, train

    dataset = NSDDataset(Path(nsd_root), subject, **dataset_options)
    return train(dataset, berg_dir, config, runner=_runner(client, window))


def train_things(
    root: str | os.PathLike[str],
    subject: int,
    berg_dir: str | os.PathLike[str],
    config: Any = None,
    *,
    client: Any,
    window: int | None = None,
    **dataset_options: Any,
) -> Any:
    """``berg train things`` on a Dask cluster (as :func:`train_nsd`, THINGS-fMRI1)."""
    _require_train("train_things")
    from berg_train.api import ThingsDataset, train

    dataset = ThingsDataset(Path(root), subject, **dataset_options)
    return train(dataset, berg_dir, config, runner=_runner(client, window))


def train_things_eeg2(
    data: str | os.PathLike[str],
    images: str | os.PathLike[str],
    subject: int,
    berg_dir: str | os.PathLike[str],
    config: Any = None,
    *,
    client: Any,
    window: int | None = None,
    **options: Any,
) -> Any:
    """``berg train things-eeg2`` on a Dask cluster: :func:`berg_train.things_eeg2.
    train_things_eeg2` with a :class:`DaskRunner` (*options*: its config fields)."""
    _require_train("train_things_eeg2")
    from berg_train.things_eeg2 import train_things_eeg2 as train

    return train(data, images, subject, berg_dir, config, runner=_runner(client, window), **options)

"""Where the per-shard and per-chunk functions of training run: here, or on a cluster.

The training steps (:mod:`berg_train.engine`, :mod:`berg_train.things_eeg2`) cut their work into
tasks - image shards of the features, column blocks of the PCA, output chunks of the
regression - and call the same module-level function for each, through a runner:
:class:`SerialRunner` (this process, one task after the other) or a cluster's
(``berg_distributed.training.DaskRunner``). A runner returns the results in task order, so the
partial sums of the PCA are added in the same order whatever ran them, and a distributed run
writes the same numbers as a single-process one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

__all__ = ["Runner", "SerialRunner"]


class Runner(Protocol):
    """Runs a function over argument tuples and yields the results in the tasks' order."""

    #: Whether tasks run in other processes (they then read features from files by path).
    distributed: bool

    def share(self, value: Any) -> Any:
        """A handle of *value* that tasks receive as *value* (sent once to every worker)."""

    def map(
        self, function: Callable[..., Any], tasks: Iterable[Sequence[Any]], *, label: str = ""
    ) -> Iterator[Any]:
        """``function(*args)`` of every *args* of *tasks*, yielded in the order of *tasks*."""


class SerialRunner:
    """The single-process runner: each task in this process, in order, when its result is
    asked for (so one result at a time is held)."""

    distributed = False

    def share(self, value: Any) -> Any:
        """*value* itself."""
        return value

    def map(
        self, function: Callable[..., Any], tasks: Iterable[Sequence[Any]], *, label: str = ""
    ) -> Iterator[Any]:
        """``function(*args)`` for each task, lazily, in order."""
        for args in tasks:
            yield function(*args)

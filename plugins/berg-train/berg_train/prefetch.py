"""Load the next batches in a background thread while the current one is processed.

:class:`Prefetcher` runs ``load(item)`` for each item in order on one worker thread and hands the
results over through a bounded queue (at most *depth* loaded batches wait), so reading stimuli
overlaps the backbone's forward pass (torch releases the GIL while it computes). An exception in
``load`` is raised in the consuming thread, at the position of the batch that failed; leaving the
``with`` block (normally, by an exception, or by ``break``) stops the worker and joins it, so no
thread outlives the prefetcher.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

from berg_core import InvalidParameterError

__all__ = ["Prefetcher"]

T = TypeVar("T")
R = TypeVar("R")

_DONE = object()
#: Seconds between the worker's checks of the stop flag while the queue is full.
_POLL_S = 0.05


class Prefetcher(Generic[T, R]):
    """Iterate over ``(item, load(item))`` for *items*, loading ahead in a background thread.

    Parameters
    ----------
    load : callable
        ``load(item) -> result``; called on the worker thread, in the order of *items*.
    items : iterable
        What to load.
    depth : int
        Loaded results that may wait in the queue (memory: *depth* + 2 batches at most: the one
        being consumed, *depth* queued, one being loaded).
    name : str
        Name of the worker thread.

    Examples
    --------
    >>> with Prefetcher(lambda i: i * i, range(3)) as batches:
    ...     [result for _, result in batches]
    [0, 1, 4]
    """

    def __init__(
        self,
        load: Callable[[T], R],
        items: Iterable[T],
        *,
        depth: int = 1,
        name: str = "berg-train-prefetch",
    ) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise InvalidParameterError(f"prefetch depth must be an integer >= 1, got {depth!r}")
        self._load = load
        self._items = items
        self._queue: queue.Queue[tuple[object, object, BaseException | None]] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._started = False
        self._finished = False

    # -- worker --------------------------------------------------------------------------------
    def _put(self, entry: tuple[object, object, BaseException | None]) -> bool:
        """Queue *entry* unless stopped; whether it was queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for item in self._items:
                if self._stop.is_set():
                    return
                if not self._put((item, self._load(item), None)):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            self._put((_DONE, None, error))
            return
        self._put((_DONE, None, None))

    # -- consumer ------------------------------------------------------------------------------
    def __enter__(self) -> Prefetcher[T, R]:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def __iter__(self) -> Iterator[tuple[T, R]]:
        self.__enter__()
        while not self._finished:
            item, result, error = self._queue.get()
            if item is _DONE:
                self._finished = True
                self._thread.join()
                if error is not None:
                    raise error
                return
            yield item, result  # type: ignore[misc]

    def close(self) -> None:
        """Stop the worker (dropping what it loaded ahead) and wait for it to end."""
        self._stop.set()
        while True:  # unblock a worker waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._started:
            self._thread.join()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread.is_alive()

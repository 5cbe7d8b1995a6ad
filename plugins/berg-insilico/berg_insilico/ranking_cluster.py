"""Ranking on a Dask cluster: image shards ranked on workers, merged in order on the client.

:func:`berg_insilico.rank` with ``client=`` (``berg insilico rank --cluster SPEC``) cuts the
images into shards of whole blocks. A task (:func:`rank_shard`) runs every (area, subject)
encoder over its shard, block by block and block-major as the single-process loop does
(:mod:`berg_insilico.stream`), so encoders sharing a backbone reuse its features through the
worker's feature cache; the models stay loaded in the worker process between tasks
(:func:`berg_distributed.worker.model_for`). A task returns, per encoder, one
:class:`~berg_insilico.ranking.EncoderRanking` per block: the first holds the shard's top and
bottom k, every one its block's statistics and scores. The client merges them in shard and
block order, which repeats the single-process run's arithmetic: the same top/bottom-k images,
the same scores (one thread per process: see docs/scaling.md) and the same Chan updates, so the
statistics agree in every bit too.

berg-distributed (Dask) is optional: ``pip install "berg-insilico[cluster]"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from berg_core import InvalidParameterError
from berg_insilico.areas import Area
from berg_insilico.images import ImageCollection
from berg_insilico.stats import TopK
from berg_insilico.stream import Encoder

__all__ = ["INSTALL", "RankShard", "rank_shard", "rank_shards", "require_cluster", "shard_tasks"]

#: What to install for ``client=`` / ``--cluster``.
INSTALL = 'pip install "berg-insilico[cluster]"'


def require_cluster(parameter: str = "client") -> None:
    """Check that berg-distributed (and Dask) can be imported.

    Raises
    ------
    InvalidParameterError
        Naming *parameter* and the install line, when they cannot.
    """
    try:
        import berg_distributed.worker  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise InvalidParameterError(
            f"{parameter}: ranking on a cluster needs berg-distributed and Dask, which are not "
            f"installed ({exc.name or exc}); {INSTALL}"
        ) from None


@dataclass(frozen=True)
class RankShard:
    """One task: images ``start:stop`` through every (area, subject) encoder.

    ``start`` is a multiple of ``block_size`` (as is ``stop``, except at the collection's end),
    so the shard's blocks are the single-process run's blocks.
    """

    berg_dir: str
    areas: tuple[Area, ...]
    subjects: tuple[Any, ...]
    images: ImageCollection
    start: int
    stop: int
    block_size: int
    k: int
    per_column: bool
    store_scores: bool
    device: str = "auto"


def rank_shard(task: RankShard) -> dict[tuple[str, Any], list[Any]]:
    """Rank one shard on a worker: per (area, subject), one EncoderRanking per block.

    The first block's ranking holds the whole shard's top and bottom k (the others' are empty),
    so that no more than k images per column travel back; every block keeps its own statistics
    and scores.
    """
    from berg_distributed.worker import model_for

    from berg_insilico.ranking import EncoderRanking

    loaded = [
        (area, subject, model_for(
            task.berg_dir, area.model_id, subject, area.selection, dict(area.options), task.device
        ))
        for subject in task.subjects
        for area in task.areas
    ]  # fmt: skip
    encoders = [Encoder(area, subject, model) for area, subject, (model, _, _) in loaded]
    parts: dict[tuple[str, Any], list[EncoderRanking]] = {e.key: [] for e in encoders}
    with contextlib.ExitStack() as stack:
        # one global lock order (as berg_distributed.worker), so two threads never deadlock
        for _, _, (_, lock, _) in sorted(loaded, key=lambda item: id(item[2][1])):
            stack.enter_context(lock)
        for first in range(task.start, task.stop, task.block_size):
            block = task.images.read(first, min(first + task.block_size, task.stop))
            for encoder in encoders:
                ranking = EncoderRanking.empty(
                    encoder, task.k, per_column=task.per_column, store_scores=task.store_scores
                )
                ranking.update(first, encoder.encode(block))
                parts[encoder.key].append(ranking)
    for blocks in parts.values():
        head = blocks[0]
        for later in blocks[1:]:
            for name in ("top", "bottom", "column_top", "column_bottom"):
                mine, theirs = getattr(head, name), getattr(later, name)
                if mine is not None:
                    mine.merge(theirs)
                    setattr(
                        later, name, TopK(theirs.k, theirs.values.shape[1], largest=theirs.largest)
                    )
    return parts


def rank_shards(
    client: Any,
    tasks: Sequence[RankShard],
    merge: Callable[[RankShard, dict[tuple[str, Any], list[Any]]], None],
    *,
    show_progress: bool = True,
) -> None:
    """Run *tasks* on *client*'s cluster; call ``merge(task, result)`` in task order.

    Results that arrive early wait for the ones before them, so *merge* (and the checkpoints it
    writes) always sees a prefix of the shards.
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    futures = [client.submit(rank_shard, task, pure=False) for task in tasks]
    order = {future.key: i for i, future in enumerate(futures)}
    ready: dict[int, Any] = {}
    following = 0
    try:
        with tqdm(
            total=len(tasks), unit="shard", desc="in-silico", disable=not show_progress
        ) as bar:
            for future in as_completed(futures):
                ready[order[future.key]] = future.result()
                future.release()
                bar.update(1)
                while following in ready:
                    merge(tasks[following], ready.pop(following))
                    following += 1
    finally:
        for future in futures:
            future.cancel()


def shard_tasks(
    berg_dir: str,
    areas: Sequence[Area],
    subjects: Sequence[Any],
    images: ImageCollection,
    *,
    start: int,
    stop: int,
    shard_size: int,
    block_size: int,
    k: int,
    per_column: bool,
    store_scores: bool,
    device: str,
) -> list[RankShard]:
    """The tasks of images ``start:stop`` (*start* and *shard_size* whole blocks)."""
    return [
        RankShard(
            berg_dir=berg_dir,
            areas=tuple(areas),
            subjects=tuple(subjects),
            images=images.shard(first, min(first + shard_size, stop)),
            start=first,
            stop=min(first + shard_size, stop),
            block_size=block_size,
            k=k,
            per_column=per_column,
            store_scores=store_scores,
            device=device,
        )
        for first in range(start, stop, shard_size)
    ]

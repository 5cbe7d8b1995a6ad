"""Stream and rank: top/bottom-k images and running statistics per area (and per column)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from berg_core import BERG, InvalidParameterError
from berg_insilico.areas import Area, as_areas
from berg_insilico.images import ImageCollection, open_images
from berg_insilico.stats import RunningStats, TopK
from berg_insilico.stream import Encoder, open_encoders, stream

__all__ = ["EncoderRanking", "RankResult", "rank"]


@dataclass
class EncoderRanking:
    """What :func:`rank` keeps for one (area, subject).

    Attributes
    ----------
    area, subject
        Which encoder.
    top, bottom : TopK
        The k images with the largest / smallest area mean (``values`` ``(k, 1)``,
        ``indices`` ``(k, 1)``, best first).
    stats : RunningStats
        Count, mean and variance of the area mean over images.
    scores : numpy.ndarray or None
        The area mean of every image, ``(N,)`` float32 (``store_scores=True``).
    columns : list of str or None
        Per column (``per_column=True``): each column's label (``output/position``) ...
    column_top, column_bottom, column_stats
        ... and its top/bottom-k and running statistics (``(k, P)``, ``(P,)``).
    """

    area: str
    subject: Any
    top: TopK
    bottom: TopK
    stats: RunningStats
    scores: list[np.ndarray] | np.ndarray | None = None
    columns: list[str] | None = None
    column_top: TopK | None = None
    column_bottom: TopK | None = None
    column_stats: RunningStats | None = None

    @classmethod
    def empty(
        cls, encoder: Encoder, k: int, *, per_column: bool, store_scores: bool
    ) -> EncoderRanking:
        """The ranking of no image yet for *encoder*."""
        columns = encoder.columns() if per_column else None
        size = len(columns) if columns is not None else 0
        return cls(
            area=encoder.area.name,
            subject=encoder.subject,
            top=TopK(k, 1, largest=True),
            bottom=TopK(k, 1, largest=False),
            stats=RunningStats(1),
            scores=[] if store_scores else None,
            columns=columns,
            column_top=TopK(k, size, largest=True) if per_column else None,
            column_bottom=TopK(k, size, largest=False) if per_column else None,
            column_stats=RunningStats(size) if per_column else None,
        )

    def merge(self, other: EncoderRanking) -> None:
        """Merge the ranking of the images that follow these (a cluster shard's blocks).

        Exact: top/bottom-k as if all images were seen at once; merging the statistics of one
        block repeats :meth:`update`'s arithmetic (:meth:`RunningStats.merge`).
        """
        self.top.merge(other.top)
        self.bottom.merge(other.bottom)
        self.stats.merge(other.stats)
        if self.scores is not None:
            if not isinstance(self.scores, list):
                self.scores = [self.scores]
            self.scores.append(other.score_array())
        if self.column_top is not None:
            self.column_top.merge(other.column_top)
            self.column_bottom.merge(other.column_bottom)
            self.column_stats.merge(other.column_stats)

    def update(self, start: int, responses: np.ndarray) -> None:
        """Merge the responses ``(B, P)`` of images ``start ..``."""
        mean = responses.mean(axis=1, dtype=np.float64).astype(np.float32)[:, None]
        self.top.update(mean, start)
        self.bottom.update(mean, start)
        self.stats.update(mean)
        if self.scores is not None:
            self.scores.append(mean[:, 0])
        if self.column_top is not None:
            self.column_top.update(responses, start)
            self.column_bottom.update(responses, start)
            self.column_stats.update(responses)

    def score_array(self) -> np.ndarray | None:
        """The stored area means as one ``(N,)`` array."""
        if self.scores is None:
            return None
        if isinstance(self.scores, list):
            self.scores = (
                np.concatenate(self.scores) if self.scores else np.empty(0, dtype=np.float32)
            )
        return self.scores


@dataclass
class RankResult:
    """The result of :func:`rank`: one :class:`EncoderRanking` per (area, subject)."""

    areas: tuple[Area, ...]
    subjects: tuple[Any, ...]
    n_images: int
    k: int
    rankings: dict[tuple[str, Any], EncoderRanking] = field(default_factory=dict)

    def __getitem__(self, key: tuple[str, Any]) -> EncoderRanking:
        if key not in self.rankings:
            raise InvalidParameterError(
                f"(area, subject)={key!r} was not ranked; ranked: {sorted(self.rankings, key=str)}"
            )
        return self.rankings[key]

    def scores(self, area: str, subject: Any) -> np.ndarray:
        """The area mean of every image for one subject, ``(N,)``.

        Raises
        ------
        InvalidParameterError
            For an unknown area or subject, or when scores were not stored.
        """
        scores = self[(area, subject)].score_array()
        if scores is None:
            raise InvalidParameterError(
                f"area={area!r}: scores were not stored; rank with store_scores=True"
            )
        return scores

    def rows(self) -> list[dict[str, Any]]:
        """One table row per (area, subject, which, rank): the top/bottom-k images."""
        rows = []
        for (area, subject), r in self.rankings.items():
            for which, top in (("top", r.top), ("bottom", r.bottom)):
                for i, (index, value) in enumerate(
                    zip(top.indices[:, 0], top.values[:, 0], strict=False)
                ):
                    rows.append(
                        {
                            "area": area,
                            "subject": subject,
                            "which": which,
                            "rank": i + 1,
                            "image": int(index),
                            "response": float(value),
                            "area_mean": float(r.stats.mean[0]),
                            "area_sd": float(np.sqrt(r.stats.variance()[0])),
                        }
                    )
        return rows

    def to_hdf5(self, path: str | Path) -> Path:
        """Write everything (top/bottom-k, statistics, scores, per-column results) to HDF5."""
        from berg_insilico.tables import write_hdf5

        groups = {}
        for (area, subject), r in self.rankings.items():
            data = {
                "top_indices": r.top.indices[:, 0],
                "top_values": r.top.values[:, 0],
                "bottom_indices": r.bottom.indices[:, 0],
                "bottom_values": r.bottom.values[:, 0],
                "count": np.int64(r.stats.count),
                "mean": r.stats.mean[0],
                "var": r.stats.variance()[0],
            }
            if r.score_array() is not None:
                data["scores"] = r.score_array()
            if r.column_top is not None:
                data |= {
                    "columns": np.array(r.columns, dtype=object),
                    "column_top_indices": r.column_top.indices,
                    "column_top_values": r.column_top.values,
                    "column_bottom_indices": r.column_bottom.indices,
                    "column_bottom_values": r.column_bottom.values,
                    "column_mean": r.column_stats.mean,
                    "column_var": r.column_stats.variance(),
                }
            groups[f"{area}/subject-{subject}"] = data
        attrs = {
            "areas": json.dumps([json.loads(a.key()) for a in self.areas]),
            "subjects": json.dumps(list(self.subjects), default=str),
            "n_images": self.n_images,
            "k": self.k,
        }
        return write_hdf5(path, groups, attrs)


def _fingerprint(areas, subjects, k, per_column, store_scores, block_size, size) -> str:
    text = json.dumps(
        [
            [a.key() for a in areas],
            [str(s) for s in subjects],
            k,
            per_column,
            store_scores,
            block_size,
            size,
        ],
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _save_checkpoint(path: Path, fingerprint: str, done: int, result: RankResult) -> None:
    """Write the state to *path* atomically (a temporary file, fsync, rename)."""
    arrays: dict[str, np.ndarray] = {
        "fingerprint": np.array(fingerprint),
        "done": np.array(done, np.int64),
    }
    for i, r in enumerate(result.rankings.values()):
        parts = {"top": r.top, "bottom": r.bottom, "stats": r.stats}
        if r.column_top is not None:
            parts |= {"ctop": r.column_top, "cbottom": r.column_bottom, "cstats": r.column_stats}
        for name, part in parts.items():
            for key, value in part.state().items():
                arrays[f"{i}/{name}/{key}"] = value
        if r.scores is not None:
            arrays[f"{i}/scores"] = r.score_array()
            r.scores = [r.scores]
    from berg_core.atomic import atomic_outputs

    with atomic_outputs([path], force=True) as (part,):
        with open(part, "wb") as stream_:
            np.savez(stream_, **arrays)


def _load_checkpoint(path: Path, fingerprint: str, result: RankResult) -> int:
    """Restore the state from *path*; return the number of images already done."""
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise InvalidParameterError(f"checkpoint={str(path)!r} is not readable: {exc}") from None
    if str(state.get("fingerprint")) != fingerprint:
        raise InvalidParameterError(
            f"checkpoint={str(path)!r} was written by a run with other areas, subjects, k, "
            f"per_column, store_scores, block_size or images; delete it or give another path"
        )
    for i, r in enumerate(result.rankings.values()):
        part = {key[len(f"{i}/") :]: v for key, v in state.items() if key.startswith(f"{i}/")}

        def sub(name: str, part: dict = part) -> dict[str, np.ndarray]:
            return {k.split("/", 1)[1]: v for k, v in part.items() if k.startswith(name + "/")}

        r.top = TopK.from_state(result.k, True, sub("top"))
        r.bottom = TopK.from_state(result.k, False, sub("bottom"))
        r.stats = RunningStats.from_state(sub("stats"))
        if r.column_top is not None:
            r.column_top = TopK.from_state(result.k, True, sub("ctop"))
            r.column_bottom = TopK.from_state(result.k, False, sub("cbottom"))
            r.column_stats = RunningStats.from_state(sub("cstats"))
        if r.scores is not None:
            r.scores = [np.array(part["scores"], dtype=np.float32)]
    return int(state["done"])


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidParameterError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def rank(
    berg: BERG,
    areas: Any,
    images: Any,
    *,
    subjects: Sequence[Any] | None = None,
    k: int = 10,
    per_column: bool = False,
    store_scores: bool = True,
    block_size: int = 256,
    dataset: str | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 10,
    device: str = "auto",
    show_progress: bool = True,
    stop_after: int | None = None,
    client: Any = None,
    shard_size: int | None = None,
) -> RankResult:
    """Stream *images* through every (area, subject) encoder and rank them, in bounded memory.

    Memory holds one block of images and its responses, the k best and worst images of each
    area (and column), running statistics, and with ``store_scores`` one float per image and
    encoder: never the responses of every image.

    Parameters
    ----------
    berg : berg_core.BERG
    areas : Area, dict or list of them
        What to rank (:class:`berg_insilico.Area`).
    images : array, HDF5 file, folder, list of files or iterable
        See :func:`berg_insilico.images.open_images`.
    subjects : list, optional
        The subjects of every area (``None``: a model without subjects).
    k : int
        How many top and bottom images to keep.
    per_column : bool
        Also keep top/bottom-k and statistics of every column (output position).
    store_scores : bool
        Keep every image's area mean (what :func:`berg_insilico.relational` needs).
    block_size : int
        Images read and encoded at a time (also the checkpoint granularity).
    dataset : str, optional
        The images dataset of an HDF5 file (NSD: ``imgBrick``).
    checkpoint : path, optional
        A file to save the state to, atomically, every *checkpoint_every* blocks and at the end;
        if it exists, the run resumes from it (the result is identical to an uninterrupted run).
    checkpoint_every : int
        Blocks between checkpoints.
    device : str
        Passed to ``get_encoding_model``.
    show_progress : bool
        A progress bar.
    stop_after : int, optional
        Stop after this many blocks (after checkpointing): to split a long run into jobs.
    client : distributed.Client, optional
        Rank on this Dask cluster (needs ``pip install "berg-insilico[cluster]"``): shards of
        *shard_size* images are ranked on the workers and merged in order here; the result
        equals the single-process one (:mod:`berg_insilico.ranking_cluster`). *images* must be
        re-readable (not a one-pass iterable); checkpoints hold every shard merged so far.
    shard_size : int, optional
        Images per cluster task, a multiple of *block_size* (default ``8 * block_size``).

    Returns
    -------
    RankResult

    Raises
    ------
    InvalidParameterError
        For a bad parameter, a checkpoint from a different run, ``client`` without
        berg-distributed installed, or a one-pass iterable with ``client``.
    """
    areas = as_areas(areas)
    subjects = tuple(subjects) if subjects is not None else (None,)
    if not subjects:
        raise InvalidParameterError("subjects=[]: give at least one subject (or None)")
    k = _positive(k, "k")
    block_size = _positive(block_size, "block_size")
    checkpoint_every = _positive(checkpoint_every, "checkpoint_every")
    if stop_after is not None:
        stop_after = _positive(stop_after, "stop_after")
    if shard_size is not None:
        shard_size = _positive(shard_size, "shard_size")
        if shard_size % block_size:
            raise InvalidParameterError(
                f"shard_size must be a multiple of block_size={block_size} (shards of whole "
                f"blocks), got {shard_size}"
            )
    if client is not None:
        from berg_insilico.ranking_cluster import require_cluster

        require_cluster()
    collection: ImageCollection = open_images(images, dataset=dataset)
    if client is not None and not collection.rereadable:
        raise InvalidParameterError(
            f"images ({collection.describe()}): a one-pass iterable cannot be split over a "
            f"cluster (client=); give an array, a folder, a list of files, a .npy or HDF5 file"
        )
    result = RankResult(areas=areas, subjects=subjects, n_images=0, k=k)
    with open_encoders(berg, areas, subjects, device) as encoders:
        for encoder in encoders:
            result.rankings[encoder.key] = EncoderRanking.empty(
                encoder, k, per_column=per_column, store_scores=store_scores
            )
        fingerprint = _fingerprint(
            areas, subjects, k, per_column, store_scores, block_size, collection.n
        )
        path = Path(checkpoint) if checkpoint is not None else None
        done = 0
        if path is not None and path.exists():
            done = _load_checkpoint(path, fingerprint, result)

        def save(n: int) -> None:
            if path is not None:
                _save_checkpoint(path, fingerprint, n, result)

        if client is not None:
            done = _rank_on_cluster(
                berg, client, result, collection, done,
                shard_size=shard_size or 8 * block_size, block_size=block_size,
                per_column=per_column, store_scores=store_scores, device=device,
                stop_after=stop_after, show_progress=show_progress, save=save,
                checkpoint_every=checkpoint_every,
            )  # fmt: skip
        else:
            blocks = 0
            for first, responses in stream(
                encoders, collection, block_size=block_size, start=done, show_progress=show_progress
            ):
                for encoder, values in zip(encoders, responses, strict=True):
                    result.rankings[encoder.key].update(first, values)
                done = first + values.shape[0]
                blocks += 1
                if blocks % checkpoint_every == 0:
                    save(done)
                if stop_after is not None and blocks >= stop_after:
                    break
        if path is not None:
            _save_checkpoint(path, fingerprint, done, result)
    result.n_images = done
    for r in result.rankings.values():
        r.score_array()
    return result


def _rank_on_cluster(
    berg: BERG,
    client: Any,
    result: RankResult,
    collection: ImageCollection,
    done: int,
    *,
    shard_size: int,
    block_size: int,
    per_column: bool,
    store_scores: bool,
    device: str,
    stop_after: int | None,
    show_progress: bool,
    save: Callable[[int], None],
    checkpoint_every: int,
) -> int:
    """Rank images ``done ..`` on *client*'s workers into *result*; return the images done."""
    from berg_insilico.ranking_cluster import rank_shards, shard_tasks

    stop = collection.n
    if stop_after is not None:
        stop = min(stop, done + stop_after * block_size)
    tasks = shard_tasks(
        str(berg.berg_dir), result.areas, result.subjects, collection,
        start=done, stop=stop, shard_size=shard_size, block_size=block_size, k=result.k,
        per_column=per_column, store_scores=store_scores, device=device,
    )  # fmt: skip
    state = {"done": done, "blocks": 0}

    def merge(task: Any, parts: dict[tuple[str, Any], list[EncoderRanking]]) -> None:
        for key, blocks in parts.items():
            for part in blocks:
                result.rankings[key].merge(part)
        before = state["blocks"] // checkpoint_every
        state["blocks"] += -(-(task.stop - task.start) // block_size)
        state["done"] = task.stop
        if state["blocks"] // checkpoint_every > before:
            save(task.stop)

    rank_shards(client, tasks, merge, show_progress=show_progress)
    return state["done"]

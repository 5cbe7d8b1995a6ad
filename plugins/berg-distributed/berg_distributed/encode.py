"""Distributed encode: image shards of one model, for one or more subjects, on a Dask cluster.

Each subject is a run of its own, with its result file and its parts folder. The client cuts the
stimuli into shards and submits one task per shard for all the subjects whose part of that shard
is not complete yet (a restart skips the rest): the task reads its images once and computes the
backbone once for all of them (:func:`berg_distributed.worker.run_shard`), writing one part per
subject. One progress bar runs over all tasks; each subject's parts are then assembled into its
file (:mod:`berg_distributed.assemble`). A worker lost mid-task (``kill -9``, a node gone)
costs only its task: the scheduler reruns it on another worker, and since a part exists only
when complete, no partial shard is ever taken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berg_core.errors import InvalidParameterError, describe_value

__all__ = ["DEFAULT_SHARD_SIZE", "EncodeReport", "encode", "encode_subjects", "parts_folder"]

#: Images per shard (task) unless told otherwise: see docs/scaling.md for the overhead figures.
DEFAULT_SHARD_SIZE = 256
#: Version of the run key's recipe: a change invalidates the parts of older runs.
_RUN_VERSION = 1


@dataclass
class EncodeReport:
    """What :func:`encode` did.

    Attributes
    ----------
    out : Path
        The result file.
    shards : int
        Number of shards of the run.
    computed : int
        Shards encoded by this call.
    skipped : int
        Shards found complete from an earlier, interrupted call of the same run.
    tasks : list of dict
        What each task that computed a shard of this subject returned
        (:func:`berg_distributed.worker.run_shard`): rows, subjects, seconds loading the models,
        reading the images, encoding and writing (for all the task's subjects together).
    tasks_s : float
        Seconds from the first submission to the last task's result.
    assemble_s : float
        Seconds assembling the result file.
    """

    out: Path
    shards: int
    computed: int
    skipped: int
    tasks: list[dict[str, Any]] = field(default_factory=list)
    tasks_s: float = 0.0
    assemble_s: float = 0.0


def parts_folder(out: Path) -> Path:
    """The folder of a run's part files: ``<out>.parts`` beside *out*."""
    return out.with_name(out.name + ".parts")


def _run_key(manifest: Mapping[str, Any]) -> str:
    text = json.dumps(manifest, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameterError(f"{name} must be an integer >= 1, got {describe_value(value)}")
    return value


def _check_out(out: str | os.PathLike[str], force: bool, parameter: str = "out") -> Path:
    from berg_core.atomic import check_output_path
    from berg_core.output import HDF5_SUFFIXES

    path = Path(out)
    if not path.name.lower().endswith(HDF5_SUFFIXES):
        raise InvalidParameterError(
            f"{parameter} {path}: a distributed encode writes HDF5; use a name ending in .h5"
        )
    return check_output_path(path, force=force, parameter=parameter)


def _outs(subjects: list[int | str | None], out: Any, force: bool) -> dict[int | str | None, Path]:
    """Each subject's result file from *out*: a mapping, or a path with ``{subject}``."""
    if isinstance(out, Mapping):
        missing = [s for s in subjects if s not in out]
        if missing or len(out) != len(subjects):
            raise InvalidParameterError(
                f"out must map every subject of {subjects} to a file, and nothing else; got "
                f"the subjects {list(out)}"
            )
        paths = {s: _check_out(out[s], force, f"out[{s!r}]") for s in subjects}
    elif isinstance(out, str | os.PathLike) and "{subject}" in os.fspath(out):
        pattern = os.fspath(out)
        paths = {s: _check_out(pattern.format(subject=s), force) for s in subjects}
    else:
        raise InvalidParameterError(
            f"out must be a path containing {{subject}} (one file per subject) or a mapping "
            f"subject -> path, got {describe_value(out)}"
        )
    resolved = [p.resolve() for p in paths.values()]
    if len(set(resolved)) != len(resolved):
        raise InvalidParameterError(f"out names the same file for two subjects: {out}")
    return paths


def encode(
    berg: Any,
    model_id: str,
    subject: int | str | None,
    stimuli: Any,
    *,
    out: str | os.PathLike[str],
    client: Any,
    selection: Mapping[str, Any] | None = None,
    device: str = "auto",
    shard_size: int = DEFAULT_SHARD_SIZE,
    force: bool = False,
    show_progress: bool = True,
    assemble: str = "copy",
    keep_parts: bool = False,
    **options: Any,
) -> EncodeReport:
    """Encode *stimuli* with one model and subject on a Dask cluster into the HDF5 file *out*.

    The file has the layout of ``berg encode --out x.h5`` (:func:`berg_core.output.encode_to_hdf5`)
    and the same numbers (float32 rounding of a different batch split aside). ``berg_dir``, the
    image files and *out*'s folder must be visible to every worker at the same paths. For several
    subjects of one model, :func:`encode_subjects` computes the backbone once per image for all.

    Parameters
    ----------
    berg : BERG or path-like
        A :class:`berg_core.BERG` (its ``berg_dir`` is used) or a ``berg_dir``.
    model_id, subject : str, int or str
        As :meth:`berg_core.BERG.get_encoding_model`.
    stimuli : StimulusRef, str, path-like, numpy.ndarray, list
        A folder, image files, a ``.npy`` file (read memory-mapped on the workers),
        :func:`berg_distributed.hdf5_stimulus`, or an array (its shards are sent to the workers).
    out : path-like
        The ``.h5`` result file.
    client : distributed.Client
        The cluster (:func:`berg_distributed.connect`).
    selection : dict, optional
    device : str
        Device on each worker (``"auto"``: its GPU if it has one).
    shard_size : int
        Images per task.
    force : bool
        Replace *out* if it exists.
    show_progress : bool
        A progress bar over all shards.
    assemble : {"copy", "virtual"}
        How the result is built from the parts (:mod:`berg_distributed.assemble`).
    keep_parts : bool
        Keep the parts folder after a ``"copy"`` assembly (``"virtual"`` always keeps it).
    **options
        Model options (``batch_size`` ...), as :meth:`~berg_core.BERG.get_encoding_model`.

    Returns
    -------
    EncodeReport

    Raises
    ------
    InvalidParameterError
        A bad *shard_size*, *assemble*, *out* (exists without *force*, not ``.h5``), model id,
        subject, selection or option (those raised on a worker reach here with their class).
    StimulusError
        Stimuli that cannot be read.
    """
    out = _check_out(out, force)
    reports = _encode(berg, model_id, {subject: out}, stimuli, client=client,
                      selection=selection, device=device, shard_size=shard_size, force=force,
                      show_progress=show_progress, assemble=assemble, keep_parts=keep_parts,
                      options=options)  # fmt: skip
    return reports[subject]


def encode_subjects(
    berg: Any,
    model_id: str,
    subjects: Sequence[int | str | None],
    stimuli: Any,
    *,
    out: str | os.PathLike[str] | Mapping[Any, str | os.PathLike[str]],
    client: Any,
    selection: Mapping[str, Any] | None = None,
    device: str = "auto",
    shard_size: int = DEFAULT_SHARD_SIZE,
    force: bool = False,
    show_progress: bool = True,
    assemble: str = "copy",
    keep_parts: bool = False,
    **options: Any,
) -> dict[int | str | None, EncodeReport]:
    """Encode *stimuli* with one model for several *subjects*: one task per image shard for all.

    Each subject's file is the one :func:`encode` (and ``berg encode --out``) writes for it, with
    the same numbers; but a task reads its images once and runs the backbone once for all the
    subjects, each of which only applies its readout (the features come from the worker's
    feature cache, :mod:`berg_core.torchkit.cache`, which must be enabled: the default). Each
    subject is a run of its own (its parts folder beside its file): a restart recomputes, per
    shard, only the subjects whose part is missing.

    Parameters
    ----------
    subjects : sequence of int or str
        The subjects, each once.
    out : path-like with ``{subject}``, or mapping
        The ``.h5`` result files: a path whose ``{subject}`` is replaced by each subject
        (``"resp_sub-{subject}.h5"``), or a mapping subject -> path.
    berg, model_id, stimuli, client, selection, device, shard_size, force, show_progress,
    assemble, keep_parts, **options
        As :func:`encode`.

    Returns
    -------
    dict
        Subject -> :class:`EncodeReport` (its file, shards computed and skipped, the tasks that
        computed its shards).

    Raises
    ------
    InvalidParameterError
        No subject or a repeated one, an *out* without ``{subject}`` that is not a mapping of
        exactly the subjects, two subjects with one file, or what :func:`encode` refuses.
    StimulusError
        Stimuli that cannot be read.
    """
    if isinstance(subjects, str | int) or not isinstance(subjects, Sequence):
        raise InvalidParameterError(
            f"subjects must be a list of subjects, got {describe_value(subjects)}"
        )
    subjects = list(subjects)
    if not subjects or len(set(map(repr, subjects))) != len(subjects):
        raise InvalidParameterError(
            f"subjects must name at least one subject, each once, got {subjects}"
        )
    outs = _outs(subjects, out, force)
    return _encode(berg, model_id, outs, stimuli, client=client, selection=selection,
                   device=device, shard_size=shard_size, force=force,
                   show_progress=show_progress, assemble=assemble, keep_parts=keep_parts,
                   options=options)  # fmt: skip


def _encode(
    berg: Any,
    model_id: str,
    outs: dict[int | str | None, Path],
    stimuli: Any,
    *,
    client: Any,
    selection: Mapping[str, Any] | None,
    device: str,
    shard_size: int,
    force: bool,
    show_progress: bool,
    assemble: str,
    keep_parts: bool,
    options: dict[str, Any],
) -> dict[int | str | None, EncodeReport]:
    """The run of :func:`encode_subjects` (and :func:`encode`, one subject): *outs* checked."""
    from berg_distributed.assemble import ASSEMBLY_MODES
    from berg_distributed.assemble import assemble as assemble_parts
    from berg_distributed.stimuli import stimulus_ref
    from berg_distributed.worker import ShardTask, part_is_done, run_shard

    shard_size = _positive(shard_size, "shard_size")
    if assemble not in ASSEMBLY_MODES:
        raise InvalidParameterError(
            f"assemble must be one of {', '.join(ASSEMBLY_MODES)}, got {describe_value(assemble)}"
        )
    berg_dir = os.fspath(Path(getattr(berg, "berg_dir", berg)).resolve())
    # the model's card checks id, subjects and options before any task runs
    from berg_core.api import BERG

    for subject in outs:
        BERG(berg_dir).get_model_metadata(model_id, subject=subject)
    ref = stimulus_ref(stimuli)
    n = ref.n
    plain_selection = json.loads(json.dumps(dict(selection or {}), default=str))
    shards = [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
    runs: dict[Any, str] = {}
    paths: dict[Any, list[Path]] = {}
    for subject, out in outs.items():
        manifest = {
            "version": _RUN_VERSION,
            "model_id": model_id,
            "subject": subject,
            "selection": plain_selection,
            "options": options,
            "device": device,
            "berg_dir": berg_dir,
            "stimulus": ref.digest(),
            "n": n,
            "shard_size": shard_size,
        }
        runs[subject] = _run_key(manifest)
        folder = parts_folder(out).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
        paths[subject] = [folder / f"part-{start:010d}-{stop:010d}.h5" for start, stop in shards]
    tasks = []
    for i, (start, stop) in enumerate(shards):
        todo = [s for s in outs if not part_is_done(paths[s][i], runs[s], start, stop)]
        if todo:
            tasks.append(
                ShardTask(
                    berg_dir=berg_dir,
                    model_id=model_id,
                    subjects=tuple(todo),
                    runs=tuple(runs[s] for s in todo),
                    parts=tuple(os.fspath(paths[s][i]) for s in todo),
                    selection=plain_selection or None,
                    options=dict(options),
                    device=device,
                    stimulus=ref.shard(start, stop),
                    start=start,
                    stop=stop,
                    header=start == 0,
                )
            )
    began = time.perf_counter()
    key = _run_key({"runs": [runs[s] for s in outs]})
    results = _run_tasks(client, run_shard, tasks, key, model_id, show_progress)
    tasks_s = time.perf_counter() - began
    reports = {}
    for subject, out in outs.items():
        began = time.perf_counter()
        starts, stops = [s for s, _ in shards], [e for _, e in shards]
        assemble_parts(list(zip(starts, stops, paths[subject], strict=True)), out, n,
                       sources=ref.sources, force=force, mode=assemble)  # fmt: skip
        if assemble == "copy" and not keep_parts:
            shutil.rmtree(parts_folder(out).resolve(), ignore_errors=True)
        mine = [r for r in results if subject in r["subjects"]]
        reports[subject] = EncodeReport(
            out=out,
            shards=len(shards),
            computed=len(mine),
            skipped=len(shards) - len(mine),
            tasks=mine,
            tasks_s=tasks_s,
            assemble_s=time.perf_counter() - began,
        )
    return reports


def _run_tasks(
    client: Any, function: Any, tasks: list[Any], run: str, label: str, show_progress: bool
) -> list[dict[str, Any]]:
    """Submit *tasks*, wait for all with a progress bar; the first error cancels the rest."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    futures = [
        client.submit(function, task, key=f"berg-encode-{run[:12]}-{task.start}", pure=False)
        for task in tasks
    ]
    results = []
    try:
        with tqdm(
            total=len(futures), desc=f"Encoding {label}", unit="shard", disable=not show_progress
        ) as bar:
            for future in as_completed(futures):
                results.append(future.result())
                bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise
    return sorted(results, key=lambda r: r["start"])

"""Distributed encode: image shards x one (model, subject), on a Dask cluster, into one file.

The client cuts the stimuli into shards, skips the shards whose part file is complete for this
run (a restart), submits the others (each reads its images on the worker and writes its own
part), shows one progress bar over all tasks and assembles the result
(:mod:`berg_distributed.assemble`). A worker lost mid-task (``kill -9``, a node gone) costs only
its task: the scheduler reruns it on another worker, and since a part exists only when complete,
no partial shard is ever taken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berg_core.errors import InvalidParameterError, describe_value

__all__ = ["DEFAULT_SHARD_SIZE", "EncodeReport", "encode", "parts_folder"]

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
        What each computed shard's task returned (:func:`berg_distributed.worker.run_shard`):
        rows, seconds loading the model, reading the images, encoding and writing.
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
    image files and *out*'s folder must be visible to every worker at the same paths.

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
    from berg_core.atomic import check_output_path
    from berg_core.output import HDF5_SUFFIXES
    from berg_distributed.assemble import ASSEMBLY_MODES
    from berg_distributed.assemble import assemble as assemble_parts
    from berg_distributed.stimuli import stimulus_ref
    from berg_distributed.worker import ShardTask, part_is_done, run_shard

    shard_size = _positive(shard_size, "shard_size")
    if assemble not in ASSEMBLY_MODES:
        raise InvalidParameterError(
            f"assemble must be one of {', '.join(ASSEMBLY_MODES)}, got {describe_value(assemble)}"
        )
    out = Path(out)
    if not out.name.lower().endswith(HDF5_SUFFIXES):
        raise InvalidParameterError(
            f"out {out}: a distributed encode writes HDF5; use a name ending in .h5"
        )
    out = check_output_path(out, force=force, parameter="out")
    berg_dir = os.fspath(Path(getattr(berg, "berg_dir", berg)).resolve())
    # the model's card checks id, subject and options before any task runs
    from berg_core.api import BERG

    BERG(berg_dir).get_model_metadata(model_id, subject=subject)
    ref = stimulus_ref(stimuli)
    n = ref.n
    plain_selection = json.loads(json.dumps(dict(selection or {}), default=str))
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
    run = _run_key(manifest)
    folder = parts_folder(out).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    shards = [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
    paths = [folder / f"part-{start:010d}-{stop:010d}.h5" for start, stop in shards]
    todo = [
        (start, stop, path)
        for (start, stop), path in zip(shards, paths, strict=True)
        if not part_is_done(path, run, start, stop)
    ]
    tasks = [
        ShardTask(
            run=run,
            berg_dir=berg_dir,
            model_id=model_id,
            subject=subject,
            selection=plain_selection or None,
            options=dict(options),
            device=device,
            stimulus=ref.shard(start, stop),
            start=start,
            stop=stop,
            part=os.fspath(path),
            header=start == 0,
        )
        for start, stop, path in todo
    ]
    began = time.perf_counter()
    results = _run_tasks(client, run_shard, tasks, run, model_id, show_progress)
    tasks_s = time.perf_counter() - began
    assemble_parts(
        list(zip([s for s, _ in shards], [e for _, e in shards], paths, strict=True)),
        out,
        n,
        sources=ref.sources,
        force=force,
        mode=assemble,
    )
    assemble_s = time.perf_counter() - began - tasks_s
    if assemble == "copy" and not keep_parts:
        shutil.rmtree(folder, ignore_errors=True)
    return EncodeReport(
        out=out,
        shards=len(shards),
        computed=len(tasks),
        skipped=len(shards) - len(tasks),
        tasks=results,
        tasks_s=tasks_s,
        assemble_s=assemble_s,
    )


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

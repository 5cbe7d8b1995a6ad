"""Writing responses to HDF5, streamed batch by batch so memory stays flat for any N."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from berg_core.encoder import EncodingModel
from berg_core.errors import InvalidParameterError
from berg_core.stimulus import Stimulus

__all__ = ["HDF5_SUFFIXES", "encode_to_hdf5", "scatter_columns", "write_responses"]

#: File-name suffixes written as HDF5 (streamed).
HDF5_SUFFIXES = (".h5", ".hdf5")


def encode_to_hdf5(
    model: EncodingModel,
    stimulus: Stimulus,
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    show_progress: bool = True,
) -> Path:
    """Encode *stimulus* with *model* straight into an HDF5 file.

    The file holds one ``float32`` dataset ``(N, columns)`` per output (``lh`` and ``rh``, or
    ``responses``), a dataset ``columns/<output>`` with the index of each column in the model's
    full output space, ``stimulus_sources`` when the images came from files, and attributes
    ``model_id``, ``subject``, ``selection`` (JSON), ``berg_core_version`` and ``plugin``. Rows are
    written as batches are computed; the file is written under a temporary name and renamed when
    complete, so an interrupted run never leaves a partial file under *path*.

    Parameters
    ----------
    model : EncodingModel
    stimulus : Stimulus
    path : path-like
        Output file.
    force : bool
        Overwrite an existing file.
    show_progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        *path*.

    Raises
    ------
    InvalidParameterError
        If *path* exists and *force* is false.
    """
    import h5py

    from berg_core import __version__

    path = Path(path)
    if path.exists() and not force:
        raise InvalidParameterError(f"output file {path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    n = len(stimulus)
    try:
        with h5py.File(partial, "w") as h5:
            datasets = []
            for name, size in zip(model.output_names, model.output_sizes(), strict=True):
                chunk_rows = max(1, min(n, model.batch_size))
                datasets.append(
                    h5.create_dataset(
                        name,
                        shape=(n, size),
                        dtype="float32",
                        chunks=(chunk_rows, max(1, min(size, 16384))) if size else None,
                    )
                )
            for name, index in model.column_indices().items():
                h5.create_dataset(f"columns/{name}", data=np.asarray(index, dtype=np.int64))
            if stimulus.sources is not None:
                h5.create_dataset("stimulus_sources", data=np.array(stimulus.sources, dtype="S"))
            selection = model.request.selection
            attrs: dict[str, Any] = {
                "model_id": model.model_id,
                "subject": "" if model.subject is None else str(model.subject),
                "selection": json.dumps(selection.as_plain_dict() if selection else {}),
                "berg_core_version": __version__,
                "plugin": _plugin_label(model.model_id),
            }
            h5.attrs.update(attrs)
            model._check_open()
            for start, stop, batch in model._iter_rows(stimulus, show_progress):
                for dataset, values in zip(datasets, batch, strict=True):
                    dataset[start:stop] = values
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()
    return path


def _plugin_label(model_id: str) -> str:
    from berg_core.registry import get_registry

    try:
        return get_registry().resolve(model_id)[0].plugin.label
    except Exception:  # a model built outside the registry
        return "?"


def scatter_columns(values: np.ndarray, columns: np.ndarray, size: int) -> np.ndarray:
    """Place selected columns into a full ``(N, size)`` float32 array, NaN elsewhere.

    Parameters
    ----------
    values : numpy.ndarray
        ``(N, n)`` responses.
    columns : numpy.ndarray
        ``(n,)`` index of each column in the full output space (duplicates hold equal values).
    size : int
        Size of the full output space (vertices or voxels).
    """
    full = np.full((values.shape[0], size), np.nan, dtype=np.float32)
    full[:, np.asarray(columns, dtype=np.int64)] = values
    return full


def write_responses(
    model: EncodingModel,
    stimulus: Stimulus,
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    show_progress: bool = True,
    reference: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Encode *stimulus* and write the responses in the format named by *path*'s suffix.

    ``.h5``/``.hdf5`` streams into HDF5 (:func:`encode_to_hdf5`); any suffix in
    ``model.output_writers()`` (``.nii.gz`` for volumetric models, ``.func.gii`` for surface
    models, ...) encodes in memory and hands the arrays to that writer.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    InvalidParameterError
        Unknown suffix (the message lists those this model supports), or an existing file without
        *force*.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(HDF5_SUFFIXES):
        if reference is not None:
            raise InvalidParameterError("a reference image is only used for volume (NIfTI) output")
        return [encode_to_hdf5(model, stimulus, path, force=force, show_progress=show_progress)]
    writers = model.output_writers()
    suffix = next((s for s in sorted(writers, key=len, reverse=True) if name.endswith(s)), None)
    if suffix is None:
        allowed = ", ".join([*HDF5_SUFFIXES, *writers])
        raise InvalidParameterError(
            f"output file {path}: {model.model_id} writes files ending in {allowed}"
        )
    writer = writers[suffix]
    existing = [str(p) for p in writer.targets(path) if Path(p).exists()]
    if existing and not force:
        raise InvalidParameterError(
            f"output file(s) {', '.join(existing)} exist; pass --force to overwrite them"
        )
    responses = model.encode(stimulus, show_progress=show_progress)
    if not isinstance(responses, tuple):
        responses = (responses,)
    path.parent.mkdir(parents=True, exist_ok=True)
    return [Path(p) for p in writer.write(responses, path, reference=reference)]

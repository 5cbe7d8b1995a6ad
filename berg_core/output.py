"""Writing responses to files: HDF5 streamed batch by batch, brain-native formats via plugins.

Every file is written whole or not at all (:func:`berg_core.atomic.atomic_outputs`): under a
unique temporary name in the target's folder, flushed to disk, then renamed to its final name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from berg_core.atomic import atomic_outputs, check_output_path
from berg_core.encoder import EncodingModel
from berg_core.errors import InvalidParameterError, describe_value
from berg_core.stimulus import Stimulus

__all__ = [
    "HDF5_SUFFIXES",
    "create_response_datasets",
    "encode_to_hdf5",
    "scatter_columns",
    "write_coords",
    "write_header",
    "write_metadata",
    "write_responses",
    "write_sources",
]

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

    The file holds one ``float32`` dataset ``(N, *shape)`` per output (``lh`` and ``rh``, or
    ``responses``) with an attribute ``dims`` (the names of its axes, ``"image"`` first), a
    dataset ``coords/<output>/<dim>`` with the coordinate of every position along each dim
    (numbers, or UTF-8 strings such as channel names; attribute ``unit`` when the card gives
    one), a dataset ``coords/<output>/<name>`` with attribute ``dims`` (the names of its leading
    axes) for each aux coordinate (:meth:`~berg_core.EncodingModel.aux_coords`, THINGS's
    ``voxel_xyz``), for one-dim outputs a dataset ``columns/<output>`` with the index of each
    column in the model's full output space, ``stimulus_sources`` when the images came from files,
    and attributes ``model_id``, ``subject``, ``selection`` (JSON), ``berg_core_version`` and
    ``plugin``. Rows are written as batches are computed, into a temporary file renamed to *path*
    when complete (:func:`atomic_outputs`): an interrupted run never leaves a partial file under
    *path*, and concurrent writers to the same *path* each write their own file (with *force*,
    the last rename wins; without it, the second one fails and its file is removed).

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
        If *path* exists and *force* is false, or is not a valid output path
        (:func:`check_output_path`).
    """
    import h5py

    path = check_output_path(path, force=force)
    model._check_open()
    n = len(stimulus)
    with atomic_outputs([path], force=force) as (part,), h5py.File(part, "w") as h5:
        datasets = create_response_datasets(h5, model.dims(), model.shapes(), n, model.batch_size)
        write_header(h5, model, stimulus.sources)
        for start, stop, batch in model.iter_rows(stimulus, show_progress=show_progress):
            for dataset, values in zip(datasets, batch, strict=True):
                dataset[start:stop] = values
    return path


def create_response_datasets(
    h5: Any,
    dims: dict[str, tuple[str, ...]],
    shapes: Sequence[tuple[int, ...]],
    n: int,
    batch_size: int,
) -> list[Any]:
    """Create the ``float32`` response datasets ``(n, *shape)`` of :func:`encode_to_hdf5`.

    One dataset per output, named as the output, with attribute ``dims`` and chunks of about
    *batch_size* rows. Shared with writers that assemble the file from parts
    (berg-distributed), so every writer gives the same layout.

    Returns
    -------
    list of h5py.Dataset
        In the order of *dims*.
    """
    chunk_rows = max(1, min(n, batch_size))
    datasets = []
    for (name, names), shape in zip(dims.items(), shapes, strict=True):
        dataset = h5.create_dataset(
            name, shape=(n, *shape), dtype="float32", chunks=_chunks(chunk_rows, tuple(shape))
        )
        dataset.attrs["dims"] = list(names)
        datasets.append(dataset)
    return datasets


def write_header(h5: Any, model: EncodingModel, sources: Sequence[str] | None) -> None:
    """Write everything of :func:`encode_to_hdf5` but the responses: coords, columns, attrs.

    Parameters
    ----------
    h5 : h5py.File
        Open for writing.
    model : EncodingModel
    sources : sequence of str or None
        The stimulus file names (``stimulus_sources``), if the images came from files.
    """
    from berg_core import __version__

    for name, coords in model.coords().items():
        units = {dim.name: dim.unit for dim in model.card.output(name).dims}
        for dim, values in coords.items():
            write_coords(h5, f"coords/{name}/{dim}", values, unit=units.get(dim, ""))
    for name, entries in model.aux_coords().items():  # named unlike the output's dims
        for key, (dims, values) in entries.items():
            write_coords(h5, f"coords/{name}/{key}", values).attrs["dims"] = list(dims)
    for name, columns in model.columns().items():  # one-dim outputs, as before dims existed
        h5.create_dataset(f"columns/{name}", data=columns)
    if sources is not None:
        write_sources(h5, sources)
    attrs: dict[str, Any] = {
        "model_id": model.model_id,
        "subject": "" if model.subject is None else str(model.subject),
        "selection": json.dumps(model.request.plain_selection()),
        "berg_core_version": __version__,
        "plugin": _plugin_label(model.model_id),
    }
    h5.attrs.update(attrs)


def _chunks(rows: int, shape: tuple[int, ...]) -> tuple[int, ...] | bool | None:
    """HDF5 chunks of about a batch of rows, at most 16,384 values wide (auto for wide n-d)."""
    if 0 in shape:
        return None
    if len(shape) == 1:
        return (rows, min(shape[0], 16384))
    return (rows, *shape) if int(np.prod(shape)) <= 65536 else True


def write_coords(h5: Any, name: str, values: np.ndarray, *, unit: str = "") -> Any:
    """Store coordinates (one dim's, or an aux coordinate's of any shape).

    Numbers as they are, names as UTF-8 strings (same shape). A non-empty *unit* (``"ms"``)
    becomes the dataset's ``unit`` attribute. Returns the dataset.
    """
    import h5py

    values = np.asarray(values)
    if values.dtype.kind in "US" or values.dtype == object:
        text = np.array([str(v) for v in values.ravel().tolist()], dtype=object)
        dataset = h5.create_dataset(
            name, data=text.reshape(values.shape), dtype=h5py.string_dtype("utf-8")
        )
    else:
        dataset = h5.create_dataset(name, data=values)
    if unit:
        dataset.attrs["unit"] = unit
    return dataset


def _path_bytes(text: str) -> bytes:
    """The bytes of a path string (``os.fsencode``; lone surrogates kept with surrogatepass)."""
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def write_sources(h5: Any, sources: Sequence[str]) -> None:
    """Store the stimulus file names in an open HDF5 file, losslessly.

    ``stimulus_sources`` holds one UTF-8 variable-length string per stimulus. A name whose bytes
    are not valid UTF-8 (``os.fsdecode`` gave lone surrogates) is written there with each invalid
    byte as ``\\xNN``, and the file then also holds ``stimulus_sources_bytes``: the exact bytes of
    every name, as variable-length ``uint8`` arrays.
    """
    import h5py

    raw = [_path_bytes(s) for s in sources]
    text = [b.decode("utf-8", "backslashreplace") for b in raw]
    h5.create_dataset(
        "stimulus_sources", data=np.array(text, dtype=object), dtype=h5py.string_dtype("utf-8")
    )
    if any(t.encode("utf-8") != b for t, b in zip(text, raw, strict=True)):
        exact = np.empty(len(raw), dtype=object)
        exact[:] = [np.frombuffer(b, dtype=np.uint8) for b in raw]
        h5.create_dataset(
            "stimulus_sources_bytes", data=exact, dtype=h5py.vlen_dtype(np.dtype(np.uint8))
        )


#: File-name suffixes :func:`write_metadata` writes.
METADATA_SUFFIXES = (".h5", ".hdf5", ".json")


def write_metadata(
    metadata: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    parameter: str = "path",
) -> Path:
    """Save a metadata dict as HDF5 (``.h5``/``.hdf5``) or JSON (``.json``), whole or not at all.

    HDF5: one group per dict, one dataset per value (a ``/`` in a key becomes ``_``), strings as
    UTF-8 variable-length strings (characters that cannot be encoded, such as lone surrogates,
    written as ``\\uXXXX`` escapes). JSON: arrays become lists, other objects their ``str``.

    Parameters
    ----------
    metadata : dict
    path : path-like
    force : bool
        Replace an existing file.
    parameter : str
        How error messages name *path* (``"--out"`` on the command line).

    Raises
    ------
    InvalidParameterError
        Another suffix, a path that cannot be written (:func:`check_output_path`), an existing
        file without *force*, or a value the format cannot hold (the message names its key).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in METADATA_SUFFIXES:
        raise InvalidParameterError(f"{parameter} {path}: use a .h5 or .json file name")
    check_output_path(path, force=force, parameter=parameter)
    with atomic_outputs([path], force=force) as (part,):
        if suffix == ".json":
            try:
                text = json.dumps(metadata, default=_jsonable, indent=1)
            except (TypeError, ValueError) as exc:
                raise InvalidParameterError(
                    f"{parameter} {path}: the metadata cannot be written as JSON ({exc})"
                ) from None
            part.write_text(text, encoding="utf-8")
        else:
            import h5py

            with h5py.File(part, "w") as h5:
                _write_group(h5, metadata, f"{parameter} {path}")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _text(value: Any) -> str:
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _write_group(group: Any, data: dict[str, Any], where: str) -> None:
    import h5py

    for key, value in data.items():
        name = str(key).replace("/", "_") or "_"
        if isinstance(value, dict):
            _write_group(group.create_group(name), value, where)
            continue
        array = np.asarray(value)
        try:
            if array.dtype.kind in "OUS":
                texts = np.array([_text(v) for v in array.ravel().tolist()], dtype=object)
                group.create_dataset(
                    name, data=texts.reshape(array.shape), dtype=h5py.string_dtype("utf-8")
                )
            else:
                group.create_dataset(name, data=array)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(
                f"{where}: metadata entry {group.name.rstrip('/')}/{name} "
                f"({describe_value(array)}) cannot be stored in HDF5 ({exc}); use a .json file"
            ) from None


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
    models, ...) encodes in memory and hands the arrays to that writer, with *force* (writers
    write through :func:`atomic_outputs`). The target files are checked before encoding starts.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    InvalidParameterError
        Unknown suffix (the message lists those this model supports), an existing file without
        *force*, or a path that cannot be written (:func:`check_output_path`).
    """
    path = check_output_path(path, force=True)
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
    targets = [check_output_path(p, force=True) for p in writer.targets(path)]
    existing = [str(p) for p in targets if os.path.lexists(p)]
    if existing and not force:
        raise InvalidParameterError(
            f"output file(s) {', '.join(existing)} exist; pass --force to overwrite them"
        )
    responses = model.encode(stimulus, show_progress=show_progress)
    if not isinstance(responses, tuple):
        responses = (responses,)
    return [Path(p) for p in writer.write(responses, path, reference=reference, force=force)]

"""One HDF5 file from the part files of a run, with the layout of ``berg encode --out x.h5``.

Two ways (measured in benchmarks/scaling.py, justified in docs/scaling.md):

* ``"copy"`` (default): the rows of every part are copied into one self-contained file, written
  whole or not at all (:func:`berg_core.atomic.atomic_outputs`); the parts are deleted after.
  The file is the same as a single-process one: same datasets, chunks, dims, coords and attrs.
* ``"virtual"``: the response datasets are HDF5 virtual datasets mapping the parts, which stay
  in the run's parts folder beside the file (referenced by relative path): no response byte is
  copied, but the file is only readable with its parts folder next to it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from berg_core.errors import InvalidParameterError

__all__ = ["ASSEMBLY_MODES", "assemble"]

#: The ways :func:`assemble` builds the result file.
ASSEMBLY_MODES = ("copy", "virtual")
_ROWS_PER_COPY = 4096  # rows copied at a time, at most, from a part


def _outputs(h5: Any) -> list[str]:
    """The response datasets of a part: the root-level datasets that carry ``dims``."""
    import h5py

    return [k for k, v in h5.items() if isinstance(v, h5py.Dataset) and "dims" in v.attrs]


def assemble(
    parts: Sequence[tuple[int, int, Path]],
    out: Path,
    n: int,
    *,
    sources: Sequence[str] | None,
    force: bool,
    mode: str = "copy",
) -> Path:
    """Write *out* from *parts* ``(start, stop, path)`` covering rows ``0:n`` in order.

    The first part holds the header (coords, columns, attrs), which is copied; the run's
    bookkeeping attributes are not.

    Raises
    ------
    InvalidParameterError
        An unknown *mode*, or *out* exists without *force*.
    """
    import h5py

    from berg_core.atomic import atomic_outputs
    from berg_core.output import create_response_datasets, write_sources
    from berg_distributed.worker import BATCH_ATTR, RUN_ATTR

    if mode not in ASSEMBLY_MODES:
        raise InvalidParameterError(
            f"assemble must be one of {', '.join(ASSEMBLY_MODES)}, got {mode!r}"
        )
    first = parts[0][2]
    with atomic_outputs([out], force=force) as (tmp,), h5py.File(tmp, "w") as dst:
        with h5py.File(first, "r") as head:
            names = _outputs(head)
            dims = {name: tuple(head[name].attrs["dims"]) for name in names}
            shapes = [head[name].shape[1:] for name in names]
            dtypes = [head[name].dtype for name in names]
            batch_size = int(head.attrs[BATCH_ATTR])
            if mode == "copy":
                datasets = create_response_datasets(dst, dims, shapes, n, batch_size)
            else:
                datasets = []
                for name, shape, dtype in zip(names, shapes, dtypes, strict=True):
                    layout = h5py.VirtualLayout(shape=(n, *shape), dtype=dtype)
                    for start, stop, path in parts:
                        rel = os.path.relpath(path, out.parent)
                        source = h5py.VirtualSource(rel, name, shape=(stop - start, *shape))
                        layout[start:stop] = source
                    dst.create_virtual_dataset(name, layout, fillvalue=float("nan"))
                    dst[name].attrs["dims"] = list(dims[name])
            for key, value in head.items():
                if key not in names:
                    head.copy(value, dst, key)
            if sources is not None:
                write_sources(dst, sources)
            dst.attrs.update(
                {k: v for k, v in head.attrs.items() if k not in (RUN_ATTR, BATCH_ATTR)}
            )
        for start, stop, path in parts if mode == "copy" else ():
            with h5py.File(path, "r") as src:
                for name, dataset in zip(names, datasets, strict=True):
                    for row in range(0, stop - start, _ROWS_PER_COPY):
                        end = min(row + _ROWS_PER_COPY, stop - start)
                        dataset[start + row : start + end] = src[name][row:end]
    return out

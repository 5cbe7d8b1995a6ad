"""CSV and HDF5 writers of results (written atomically through berg_core.atomic)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_csv", "write_hdf5"]


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write *rows* (dicts with the same keys) as CSV; return the path."""
    from berg_core.atomic import atomic_outputs

    path = Path(path)
    with atomic_outputs([path], force=True) as (part,):
        with open(part, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]) if rows else [])
            writer.writeheader()
            writer.writerows(rows)
    return path


def write_hdf5(
    path: str | Path, groups: Mapping[str, Mapping[str, Any]], attrs: Mapping[str, Any]
) -> Path:
    """Write *groups* (group path -> name -> array) and root *attrs* to HDF5; return the path."""
    import h5py

    from berg_core.atomic import atomic_outputs

    path = Path(path)
    with atomic_outputs([path], force=True) as (part,):
        with h5py.File(part, "w") as file:
            for key, value in attrs.items():
                file.attrs[key] = value
            for group, data in groups.items():
                g = file.require_group(group)
                for name, value in data.items():
                    value = np.asarray(value)
                    if value.dtype == object:
                        g.create_dataset(name, data=value.astype(str).astype(h5py.string_dtype()))
                    else:
                        g.create_dataset(name, data=value)
    return path

"""Reading the per-subject arrays of a model from berg_dir, checked before use (numpy only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from berg_core import ModelLoadError
from berg_core.checks import Location, require_array, require_mapping
from berg_core.safe_npy import load_pickled_npy


def read_arrays(
    berg_dir: Path, relative: str, shapes: Mapping[str, Sequence[int | None]]
) -> dict[str, np.ndarray]:
    """The float arrays *shapes* names, from the pickled dict at ``berg_dir / relative``.

    Raises
    ------
    ModelLoadError
        The file is missing or unsafe, or an array is missing or has the wrong dtype or shape
        (the message names the file and the key).
    """
    path = Path(berg_dir) / relative
    if not path.is_file():
        raise ModelLoadError(
            f"missing model file {path} (berg_dir = {berg_dir}); put {relative} under berg_dir"
        )
    data: Any = load_pickled_npy(path)  # never np.load(..., allow_pickle=True): files run code
    where = Location(path, "weights")
    require_mapping(data, where, tuple(shapes))
    return {
        key: np.asarray(require_array(data[key], where[key], kind="floating", shape=shape))
        for key, shape in shapes.items()
    }

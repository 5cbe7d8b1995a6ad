"""Stimuli as references the workers read themselves: :mod:`berg_core.sources` under this plugin's
names.

Only an in-memory array has to travel from the client, and then only each shard's slice
(:meth:`~berg_core.sources.ImageSource.shard`). Every reference has a digest
(:meth:`~berg_core.sources.ImageSource.digest`: names, sizes and modification times of files;
HDF5 dataset shape and dtype; the bytes of an array) that keys a run, so a restarted run knows
its finished shards.
"""

from __future__ import annotations

import os
from typing import Any

from berg_core.errors import StimulusError
from berg_core.sources import ImageSource, open_source

__all__ = ["StimulusRef", "hdf5_stimulus", "stimulus_ref"]

#: Where the images of a run are, read shard by shard on the workers.
StimulusRef = ImageSource


def hdf5_stimulus(path: str | os.PathLike[str], dataset: str, layout: str = "auto") -> ImageSource:
    """Images in an HDF5 dataset ``(N, 3, H, W)`` or ``(N, H, W, 3)``, read slice by slice on
    the workers.

    Raises
    ------
    StimulusError
        A missing file, a file that is not HDF5, or a dataset that is not 4-D numbers with 3
        channels.
    InvalidParameterError
        A dataset that is not in the file (the message lists those that are).
    """
    return open_source(path, dataset, layout=layout)


def stimulus_ref(stimulus: Any) -> ImageSource:
    """A reference for what :func:`berg_distributed.encode` accepts
    (:func:`berg_core.sources.open_source`).

    Folders, image files, ``.npy`` files and HDF5 datasets (``"file.h5:DATASET"``) are read on
    the workers; arrays and PIL images are read here and their shards sent.

    Raises
    ------
    StimulusError
        What :func:`~berg_core.sources.open_source` refuses, or a one-pass iterable (a run needs
        its length and re-reads shards on restart).
    """
    ref = open_source(stimulus)
    if not ref.rereadable:
        raise StimulusError(
            f"stimulus ({ref.describe()}) is a one-pass iterable; a distributed run reads shards "
            f"by index: give files, a .npy or HDF5 file, or an array"
        )
    return ref

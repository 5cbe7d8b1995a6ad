"""berg on a Dask cluster: encode image shards on workers, assemble one HDF5 file.

``berg encode ... --cluster local[:N] | tcp://host:8786 | slurm[:CONFIG]`` and, in Python,
:func:`encode` (one subject) and :func:`encode_subjects` (several, the backbone once
per image). Importing this package imports no dask; :func:`connect` and :func:`encode` do.
See docs/scaling.md.
"""

from __future__ import annotations

from berg_distributed.cluster import ClusterError, connect, parse_cluster
from berg_distributed.encode import EncodeReport, encode, encode_subjects
from berg_distributed.stimuli import StimulusRef, hdf5_stimulus

#: Modules other plugins may import (tests/test_layers.py): berg-train's ``--cluster`` uses
#: ``cluster`` and ``training``, berg-insilico's ranking on a cluster ``cluster`` and ``worker``.
PUBLIC_MODULES = ("cluster", "training", "worker")

__all__ = [
    "ClusterError",
    "EncodeReport",
    "StimulusRef",
    "connect",
    "encode",
    "encode_subjects",
    "hdf5_stimulus",
    "parse_cluster",
]

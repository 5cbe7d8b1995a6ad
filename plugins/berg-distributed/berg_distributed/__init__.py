"""berg on a Dask cluster: encode image shards on workers, assemble one HDF5 file.

``berg encode ... --cluster local[:N] | tcp://host:8786 | slurm[:CONFIG]`` and, in Python,
:func:`encode`. Importing this package imports no dask; :func:`connect` and :func:`encode` do.
See docs/scaling.md.
"""

from __future__ import annotations

from berg_distributed.cluster import ClusterError, connect, parse_cluster
from berg_distributed.encode import EncodeReport, encode
from berg_distributed.stimuli import StimulusRef, hdf5_stimulus

__all__ = [
    "ClusterError",
    "EncodeReport",
    "StimulusRef",
    "connect",
    "encode",
    "hdf5_stimulus",
    "parse_cluster",
]

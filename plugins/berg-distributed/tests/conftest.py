"""One LocalCluster of processes (2 workers, 1 thread each) for the whole test session: the
workers start, and import torch, once for the encode and the training tests.

The workers compute with one thread (Dask's nanny sets ``OMP_NUM_THREADS=1`` and the like), so
the test process does too (:func:`one_thread`): its single-process baselines and the client's
own arithmetic (reducing PCA blocks, the eigendecomposition) then split their float32 sums as the
workers do, and files can be compared byte for byte. With other thread counts BLAS splits sums
differently: the numbers agree within float32 rounding, not in every bit (docs/scaling.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Run each test module with one BLAS and one torch thread, as the workers do."""
    from threadpoolctl import threadpool_limits

    try:
        import torch
    except ImportError:  # encode-only environments
        torch = None
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


@pytest.fixture(scope="session")
def cluster_client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=50,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        yield client

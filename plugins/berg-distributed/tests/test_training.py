"""Distributed training on a LocalCluster of processes (2 workers, 1 thread each): the weights and
metadata files equal the single-process run's byte for byte, on 1 and 2 workers; a worker killed
mid-training costs only its task; a restarted run recomputes only what is missing."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("berg_train")
from berg_distributed.training import DaskRunner
from distributed import WorkerPlugin

EEG_K, NSD_K = 8, 6


def tiny_backbone() -> Any:
    """A seeded 1-layer conv net (576 features), the NSD runs' backbone."""
    from berg_train import Backbone
    from berg_train.backbones import imagenet_transform

    def build() -> Any:
        import torch
        from torch import nn

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            return nn.Sequential(
                nn.Conv2d(3, 16, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(6), nn.Flatten()
            )

    return Backbone(
        name="tiny", build=build, nodes=None, transform=lambda: imagenet_transform(64, 72),
        input_size=64, identity="tiny-conv-v1",
    )  # fmt: skip


class StallingImages:
    """An image source that, in the first process to load while *marker*/STALL exists, writes
    that process's id to *marker*/stalled.pid and waits there (until it is killed)."""

    def __init__(self, images: Any, marker: Path) -> None:
        self.images, self.marker = images, Path(marker)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, indices: Any) -> Any:
        if (self.marker / "STALL").exists():
            try:
                fd = os.open(self.marker / "stalled.pid", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                while True:
                    time.sleep(0.05)
        return self.images.load(indices)


#: The task functions a stalled phase wraps, by module: PCA blocks and regression chunks.
STALLED_PHASES = {
    "pca": ("berg_train.pca", ("gram_block", "components_block", "row_moments_block",
                               "row_covariance_block", "row_scores_block")),
    "regression": ("berg_train.engine", ("fit_regression_chunk",)),
}  # fmt: skip


def claim_stall(marker: Path, phase: str) -> None:
    """Stall (until killed) in the first process to claim *marker*/STALL-*phase*: write its
    process id to *marker*/*phase*.pid and wait."""
    if (marker / f"STALL-{phase}").exists():
        try:
            fd = os.open(marker / f"{phase}.pid", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        while True:
            time.sleep(0.05)


class StallPhases(WorkerPlugin):
    """Worker plugin: the task functions of :data:`STALLED_PHASES` wrapped on every worker
    (restarted ones too), so that a task of a phase stalls while its STALL file is there. A task
    names its function by module and name, so the worker runs the wrapper."""

    name = "berg-test-stall-phases"

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def setup(self, worker: Any) -> None:
        import functools
        import importlib

        for phase, (module_name, names) in STALLED_PHASES.items():
            module = importlib.import_module(module_name)
            for name in names:
                original = getattr(module, name)

                @functools.wraps(original)
                def wrapper(*args: Any, _f: Any = original, _p: str = phase, **kw: Any) -> Any:
                    claim_stall(self.marker, _p)
                    return _f(*args, **kw)

                setattr(module, name, wrapper)


@pytest.fixture(scope="module")
def client(cluster_client: Any) -> Any:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return cluster_client


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from berg_train.simulate import simulate_nsd

    return simulate_nsd(
        tmp_path_factory.mktemp("nsd"), backbone=tiny_backbone(), n_train=48, n_test=8, n_val=4,
        sessions=2, image_size=32, visual_vertices=300, seed=1, device="cpu",
        show_progress=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def eeg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from berg_train.simulate_eeg2 import simulate_things_eeg2

    return simulate_things_eeg2(
        tmp_path_factory.mktemp("eeg2") / "data", n_train=40, n_test=8, test_repeats=4, seed=4,
        show_progress=False,
    )  # fmt: skip


def nsd_config(work: Path) -> Any:
    from berg_train import TrainConfig

    return TrainConfig(
        backbone=tiny_backbone(), n_components=NSD_K, device="cpu", batch_size=8,
        chunk_size=40_000, work_dir=work, show_progress=False,
    )  # fmt: skip


def train_nsd(nsd: Any, out: Path, runner: Any = None, images: Any = None) -> Any:
    from berg_train import NSDDataset, train

    dataset = NSDDataset(nsd.root, 1)
    if images is not None:
        dataset.images = images(dataset.images)
    return train(dataset, out / "berg", nsd_config(out / "work"), runner=runner)


# memory_gb: regression chunks of <= 16 channels and PCA blocks of 4,096 columns
EEG_OPTIONS = dict(model="alexnet_untrained", n_components=EEG_K, device="cpu", batch_size=8,
                   memory_gb=0.004, show_progress=False)  # fmt: skip


def train_eeg(eeg: Any, out: Path, runner: Any = None) -> Any:
    from berg_train.things_eeg2 import train_things_eeg2

    return train_things_eeg2(
        eeg.root, eeg.root / "image_set", 1, out / "berg", work_dir=out / "work", runner=runner,
        **EEG_OPTIONS,
    )  # fmt: skip


def same_files(a: Any, b: Any) -> None:
    """Byte-identical weights and metadata (compared by digest: pytest's diff of two long byte
    strings would take minutes)."""
    for name in ("weights_path", "metadata_path"):
        first, second = getattr(a, name), getattr(b, name)
        assert _digest(first) == _digest(second), f"{first} and {second} differ"


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def nsd_single(nsd: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return train_nsd(nsd, tmp_path_factory.mktemp("nsd_single"))


@pytest.fixture(scope="module")
def eeg_single(eeg: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return train_eeg(eeg, tmp_path_factory.mktemp("eeg_single"))


def one_worker(client: Any) -> list[str]:
    return sorted(client.scheduler_info()["workers"])[:1]


@pytest.mark.parametrize("workers", [1, 2])
def test_eeg2_same_files_as_single_process(client, eeg, eeg_single, tmp_path, workers) -> None:
    runner = DaskRunner(client, workers=one_worker(client) if workers == 1 else None, shard_size=8)
    result = train_eeg(eeg, tmp_path, runner)
    same_files(eeg_single, result)
    assert np.array_equal(result.test_predictions, eeg_single.test_predictions)
    # the work was cut into tasks: several feature shards, PCA blocks and regression chunks
    sub = runner.submitted
    assert sub["extract_shard"] == 6  # 48 images in shards of 8 (the batch size)
    assert sub["gram_block"] == sub["components_block"] >= 2
    per_repetition = len(list((tmp_path / "work").glob("regression-*/rep-1-*.npz")))
    assert per_repetition >= 4  # 63 channels in chunks of <= 16
    assert sub["fit_channel_chunk"] == 4 * per_repetition  # every chunk of the 4 repetitions
    parts = sorted((tmp_path / "work").glob("features-*.parts/part-*.h5"))
    assert len(parts) == 6


@pytest.mark.parametrize("workers", [1, 2])
def test_nsd_same_files_as_single_process(client, nsd, nsd_single, tmp_path, workers) -> None:
    runner = DaskRunner(client, workers=one_worker(client) if workers == 1 else None, shard_size=8)
    result = train_nsd(nsd, tmp_path, runner)
    same_files(nsd_single, result)
    for output, ev in nsd_single.evaluation.items():
        assert np.array_equal(ev["correlation"], result.evaluation[output]["correlation"])
    assert runner.submitted["extract_shard"] == 8  # 60 images in shards of 8
    assert runner.submitted["fit_regression_chunk"] == 2 * 5  # 163,842 vertices per hemisphere


def test_restart_recomputes_only_what_is_missing(client, nsd, nsd_single, tmp_path) -> None:
    train_nsd(nsd, tmp_path, DaskRunner(client, shard_size=8))
    work = tmp_path / "work"
    parts = sorted(work.glob("features-*.parts/part-*.h5"))
    chunks = sorted(work.glob("regression-*/*.npz"))
    assert len(parts) == 8 and len(chunks) == 10
    # an interrupted run: the model files, the features' virtual file, the PCA, two feature
    # shards and three regression chunks not written; a stray file where a shard would be
    (tmp_path / "berg").rename(tmp_path / "berg-first")
    for path in [*work.glob("features-*.h5"), *work.glob("pca-*.npz"), parts[2], parts[5],
                 chunks[0], chunks[4], chunks[9]]:  # fmt: skip
        path.unlink()
    parts[5].write_bytes(b"not an HDF5 file")
    inodes = {p: p.stat().st_ino for p in [*parts, *chunks] if p.exists()}
    runner = DaskRunner(client, shard_size=8)
    again = train_nsd(nsd, tmp_path, runner)
    assert runner.submitted["extract_shard"] == 2
    assert runner.submitted["fit_regression_chunk"] == 3
    kept = [p for p in inodes if p not in (parts[5],)]
    assert all(p.stat().st_ino == inodes[p] for p in kept)  # never rewritten
    same_files(nsd_single, again)


def test_a_worker_killed_mid_training_costs_only_its_task(client, nsd, nsd_single, tmp_path):
    marker = tmp_path / "marker"
    marker.mkdir()
    (marker / "STALL").write_text("")
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            runner = DaskRunner(client, shard_size=8)
            stalling = lambda i: StallingImages(i, marker)  # noqa: E731
            result["trained"] = train_nsd(nsd, tmp_path, runner, images=stalling)
        except BaseException as exc:  # shown by the assertion below
            result["error"] = exc

    run = threading.Thread(target=target)
    run.start()
    pid_file = marker / "stalled.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), "no worker stalled"
    pid = int(pid_file.read_text())
    assert pid in client.run(os.getpid).values()  # a worker process, not this one
    os.kill(pid, signal.SIGKILL)
    run.join(120)
    assert not run.is_alive()
    assert "error" not in result, result
    same_files(nsd_single, result["trained"])
    assert not list((tmp_path / "work").rglob("*.partial*"))


def wait_for_pid(pid_file: Path, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), f"no worker stalled ({pid_file.name})"
    return int(pid_file.read_text())


def test_workers_killed_in_a_pca_block_and_a_regression_chunk(client, nsd, nsd_single, tmp_path):
    marker = tmp_path / "marker"
    marker.mkdir()
    for phase in STALLED_PHASES:
        (marker / f"STALL-{phase}").write_text("")
    client.register_plugin(StallPhases(marker))
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["trained"] = train_nsd(nsd, tmp_path, DaskRunner(client, shard_size=8))
        except BaseException as exc:  # shown by the assertion below
            result["error"] = exc

    run = threading.Thread(target=target)
    run.start()
    try:
        for phase in STALLED_PHASES:  # the PCA first, then the regression
            pid = wait_for_pid(marker / f"{phase}.pid", 90)
            assert pid in client.run(os.getpid).values()  # a worker process, not this one
            assert "trained" not in result and "error" not in result
            os.kill(pid, signal.SIGKILL)
        run.join(120)
    finally:
        client.unregister_worker_plugin(StallPhases.name)
    assert not run.is_alive()
    assert "error" not in result, result
    same_files(nsd_single, result["trained"])
    assert not list((tmp_path / "work").rglob("*.partial*"))

"""Ranking on a Dask cluster (``rank(..., client=)``) equals the single-process ranking.

One LocalCluster of processes (2 workers, 1 thread each) for the module; the workers register
the simulated plugin (tests/simulated.py) themselves. The simulated encoder computes in float64
per image and rounds to float32, so its numbers do not depend on thread counts or batches; the
merge repeats the single-process arithmetic (RunningStats.merge of one block == update), so
everything is compared for equality, bit for bit.
"""

from __future__ import annotations

import builtins
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("berg_distributed")
pytest.importorskip("distributed")

import berg_insilico.plugin
import h5py
import simulated
from berg_insilico import Area, rank
from distributed import Client, LocalCluster, WorkerPlugin

from berg_core import BERG, InvalidParameterError
from berg_core.check import isolated_registry
from berg_core.cli import main
from berg_core.testing import only_plugin

HERE = Path(__file__).resolve().parent
AREAS = [Area(name, "sim-insilico", {"area": [name]}) for name in ("A", "B")]


class SimulatedOnWorkers(WorkerPlugin):
    """Register tests/simulated.py as the only plugin in every worker."""

    name = "berg-insilico-simulated"

    def setup(self, worker: Any) -> None:
        sys.path.insert(0, str(HERE))
        import simulated

        from berg_core import registry

        os.environ["BERG_LOAD_PLUGINS"] = "simulated"
        registry.reset({"simulated": simulated})


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=50,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        client.register_plugin(SimulatedOnWorkers())
        yield client


@pytest.fixture
def berg(tmp_path: Path) -> Iterator[BERG]:
    with only_plugin(simulated, "simulated"):
        yield BERG(tmp_path)


def assert_same(a: Any, b: Any) -> None:
    assert a.n_images == b.n_images
    assert list(a.rankings) == list(b.rankings)
    for key, x in a.rankings.items():
        y = b.rankings[key]
        for name in ("top", "bottom", "column_top", "column_bottom"):
            p, q = getattr(x, name), getattr(y, name)
            if p is None:
                assert q is None
                continue
            np.testing.assert_array_equal(p.indices, q.indices, err_msg=f"{key} {name}")
            assert p.values.tobytes() == q.values.tobytes(), (key, name)
        for name in ("stats", "column_stats"):
            p, q = getattr(x, name), getattr(y, name)
            if p is None:
                continue
            assert p.count == q.count
            assert p.mean.tobytes() == q.mean.tobytes(), (key, name)
            assert p.m2.tobytes() == q.m2.tobytes(), (key, name)
        if x.scores is None:
            assert y.scores is None
        else:
            assert x.score_array().tobytes() == y.score_array().tobytes(), key


def test_cluster_rank_equals_single_process(berg: BERG, client: Any) -> None:
    images, _ = simulated.make_images(61, seed=3)  # 61: the last block and shard are short
    kw = dict(subjects=[1, 2], k=5, block_size=8, per_column=True, show_progress=False)
    single = rank(berg, AREAS, images, **kw)
    assert single.n_images == 61
    on_cluster = rank(berg, AREAS, images, client=client, shard_size=16, **kw)
    assert_same(single, on_cluster)
    # and the numbers are the model's: area A of subject 2, recomputed independently
    expected = simulated.responses(images, 2)[:, 0].mean(axis=1, dtype=np.float64)
    np.testing.assert_array_equal(on_cluster.scores("A", 2), expected.astype(np.float32))
    order = np.argsort(-expected.astype(np.float32), kind="stable")[:5]
    np.testing.assert_array_equal(on_cluster[("A", 2)].top.indices[:, 0], order)


def test_cluster_rank_resumes_a_checkpoint(berg: BERG, client: Any, tmp_path: Path) -> None:
    images, _ = simulated.make_images(40, seed=4)
    kw = dict(subjects=[1], k=3, block_size=5, show_progress=False)
    whole = rank(berg, AREAS, images, **kw)
    state = tmp_path / "rank.state"
    first = rank(berg, AREAS, images, checkpoint=state, stop_after=3, **kw)  # single process
    assert first.n_images == 15
    rest = rank(berg, AREAS, images, checkpoint=state, client=client, shard_size=10, **kw)
    assert_same(whole, rest)


def test_one_pass_iterable_is_refused(berg: BERG, client: Any) -> None:
    images, _ = simulated.make_images(6, seed=5)
    with pytest.raises(InvalidParameterError, match="one-pass iterable cannot be split"):
        rank(berg, AREAS, iter(list(images)), client=client, show_progress=False)


def test_shard_size_must_be_whole_blocks(berg: BERG) -> None:
    images, _ = simulated.make_images(6, seed=5)
    with pytest.raises(
        InvalidParameterError, match="shard_size must be a multiple of block_size=4"
    ):
        rank(berg, AREAS, images, client=object(), block_size=4, shard_size=6)


def test_missing_berg_distributed_names_the_install_line(
    berg: BERG, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_distributed(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "berg_distributed":
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    images, _ = simulated.make_images(6, seed=5)
    with pytest.raises(
        InvalidParameterError, match=r'client: .*pip install "berg-insilico\[cluster\]"'
    ):
        rank(berg, AREAS, images, client=object(), show_progress=False)


def test_cli_rank_on_a_running_scheduler(
    client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, _ = simulated.make_images(30, seed=6)
    np.save(tmp_path / "images.npy", images)
    common = ["--berg-dir", str(tmp_path), "insilico", "rank", "--area", "A", "sim-insilico"]
    common += ['area=["A"]', "--subjects", "1", "--images", str(tmp_path / "images.npy")]
    common += ["--k", "4", "--block-size", "5", "--no-grids", "--quiet"]
    address = client.scheduler.address
    with isolated_registry(modules={"sim": simulated, "insilico": berg_insilico.plugin}):
        assert main([*common, "--out", str(tmp_path / "one")]) == 0
        cluster = ["--cluster", address, "--shard-size", "10"]
        assert main([*common, *cluster, "--out", str(tmp_path / "many")]) == 0
        assert main([*common, "--cluster", "local:0", "--out", str(tmp_path / "x")]) == 2
    assert "--cluster 'local:0': local:N needs N" in capsys.readouterr().err
    with (
        h5py.File(tmp_path / "one" / "rank.h5") as a,
        h5py.File(tmp_path / "many" / "rank.h5") as b,
    ):
        for name in ("top_indices", "top_values", "bottom_indices", "scores", "mean", "var"):
            left, right = a["A/subject-1"][name][()], b["A/subject-1"][name][()]
            assert left.tobytes() == right.tobytes(), name

"""``--cluster`` values, unreachable schedulers, SLURM configs, berg-core without this package."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from berg_distributed.cluster import (
    ClusterError,
    ClusterSpec,
    connect,
    parse_cluster,
    read_slurm_config,
    slurm_cluster,
)

from berg_core.cli import main
from berg_core.errors import InvalidParameterError


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        ("local", ClusterSpec("local")),
        ("local:3", ClusterSpec("local", workers=3)),
        ("tcp://node01:8786", ClusterSpec("scheduler", address="tcp://node01:8786")),
        ("tls://10.0.0.1:8786", ClusterSpec("scheduler", address="tls://10.0.0.1:8786")),
        ("slurm", ClusterSpec("slurm")),
        ("slurm:cfg.yaml", ClusterSpec("slurm", config=Path("cfg.yaml"))),
    ],
)
def test_parse_cluster(value: str, spec: ClusterSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BERG_SLURM_CONFIG", raising=False)
    assert parse_cluster(value) == spec


def test_slurm_config_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERG_SLURM_CONFIG", "/etc/berg/slurm.yaml")
    assert parse_cluster("slurm") == ClusterSpec("slurm", config=Path("/etc/berg/slurm.yaml"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("loca:2", "--cluster must be one of local, local:N .*got 'loca:2'"),
        ("local:0", "--cluster 'local:0': local:N needs N, the number of workers, an integer >= 1"),
        ("local:two", "local:N needs N"),
        ("tcp://", "a scheduler address needs a host"),
        ("slurm:", "give slurm or slurm:CONFIG.yaml"),
        ("", "--cluster must be one of"),
        ("8786", "got '8786'"),
    ],
)
def test_bad_values_are_named(value: str, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        parse_cluster(value)


def test_cli_bad_value_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["encode", "toy-synthetic-linear", "--subject", "1", "--stimulus", str(tmp_path),
            "--out", str(tmp_path / "r.h5"), "--cluster", "locall"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--cluster must be one of" in err and "'locall'" in err
    assert not (tmp_path / "r.h5").exists()


def test_shard_size_needs_a_cluster(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["encode", "toy-synthetic-linear", "--subject", "1", "--stimulus", str(tmp_path),
            "--out", str(tmp_path / "r.h5"), "--shard-size", "8"]  # fmt: skip
    assert main(argv) == 2
    assert "--shard-size is the size of a --cluster task; give --cluster too" in (
        capsys.readouterr().err
    )
    assert main([*argv[:-2], "--assemble", "virtual"]) == 2
    assert "--assemble builds a --cluster run's file; give --cluster too" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse's own refusal, before anything runs
        main([*argv[:-2], "--assemble", "zarr", "--cluster", "local"])
    assert exit_.value.code == 2
    assert "--assemble: invalid choice: 'zarr' (choose from" in capsys.readouterr().err
    assert not (tmp_path / "r.h5").exists()


def test_cli_without_berg_distributed(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "berg_distributed" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    argv = ["encode", "toy-synthetic-linear", "--subject", "1", "--stimulus", str(tmp_path),
            "--out", str(tmp_path / "r.h5"), "--cluster", "local:2"]  # fmt: skip
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "berg: error: --cluster needs berg-distributed: pip install berg-distributed\n"
    )


def test_unreachable_scheduler_times_out_with_a_named_error() -> None:
    began = time.monotonic()
    with pytest.raises(ClusterError, match=r"--cluster tcp://127\.0\.0\.1:9: no Dask scheduler "
                       r"answered within 1 s") as info:  # fmt: skip
        with connect("tcp://127.0.0.1:9", timeout=1):
            pass
    assert "BERG_CLUSTER_TIMEOUT" in str(info.value)
    assert time.monotonic() - began < 20  # the timeout holds (connection retries included)


def test_cli_unreachable_scheduler_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from berg_testplugin.layout import write_berg_dir

    monkeypatch.setenv("BERG_CLUSTER_TIMEOUT", "1")
    write_berg_dir(tmp_path / "bd")
    (tmp_path / "img.png").write_bytes(b"")
    argv = ["--berg-dir", str(tmp_path / "bd"), "encode", "toy-synthetic-linear", "--subject",
            "1", "--stimulus", str(tmp_path), "--out", str(tmp_path / "r.h5"), "--cluster",
            "tcp://127.0.0.1:9"]  # fmt: skip
    assert main(argv) == 1
    assert "no Dask scheduler answered within 1 s" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-2", "soon", "inf"])
def test_bad_timeout(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERG_CLUSTER_TIMEOUT", value)
    with pytest.raises(InvalidParameterError, match=rf"\$BERG_CLUSTER_TIMEOUT must be a positive "
                       rf"number of seconds, got '{value}'"):  # fmt: skip
        with connect("tcp://127.0.0.1:9"):
            pass


def test_slurm_config_file(tmp_path: Path) -> None:
    pytest.importorskip("dask_jobqueue")
    config = tmp_path / "slurm.yaml"
    config.write_text(
        "cores: 8\nprocesses: 1\nmemory: 32GB\nqueue: gpu\nwalltime: '02:00:00'\n"
        "job_extra_directives: ['--gres=gpu:1']\njobs: 4\n"
    )
    cluster, jobs = slurm_cluster(config)
    with cluster:
        script = cluster.job_script()
    assert jobs == 4
    assert "#SBATCH -p gpu" in script and "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH --cpus-per-task=8" in script and "#SBATCH -t 02:00:00" in script


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "must be a mapping of SLURMCluster arguments"),
        ("cores: [\n", "not valid YAML/JSON"),
        ("cores: 2\njobs: 0\n", "jobs must be an integer >= 1, got 0"),
    ],
)
def test_bad_slurm_config(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "slurm.yaml"
    config.write_text(text)
    with pytest.raises(InvalidParameterError, match=message):
        read_slurm_config(config)


def test_slurm_config_missing(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match=r"slurm:.*nope\.yaml: cannot read"):
        read_slurm_config(tmp_path / "nope.yaml")


def test_slurm_refuses_unknown_arguments(tmp_path: Path) -> None:
    pytest.importorskip("dask_jobqueue")
    config = tmp_path / "slurm.yaml"
    config.write_text("cores: 2\nmemory: 4GB\nflux_capacitor: 1\n")
    with pytest.raises(InvalidParameterError, match="SLURMCluster refused the config"):
        slurm_cluster(config)


def test_training_without_berg_train(monkeypatch: pytest.MonkeyPatch) -> None:
    from berg_distributed import training

    real = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "berg_train" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(training.MissingTrainError) as info:
        training.train_nsd("nsd", 1, "berg_dir", client=None)
    assert str(info.value) == (
        'train_nsd needs berg-train, which is not installed: pip install "berg-distributed[train]"'
        " (or pip install berg-train)"
    )
    assert isinstance(info.value, ImportError)


def test_berg_train_cluster_without_berg_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse
    import sys

    cli = pytest.importorskip("berg_train.cli")  # dev-install.sh installs it: CI runs this
    monkeypatch.setitem(sys.modules, "berg_distributed.training", None)  # import -> ImportError
    args = argparse.Namespace(cluster="local:2", quiet=True)
    with pytest.raises(InvalidParameterError) as info, cli._runner(args):
        pass
    assert str(info.value) == (
        "--cluster local:2: distributed training needs berg-distributed (pip install "
        "berg-distributed)"
    )

"""Distributed encode on a LocalCluster of processes: same file as single-process, lost workers,
restarts, errors. One cluster (2 workers, 1 thread each, conftest.py) for the whole session."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import berg_distributed as bd
import h5py
import numpy as np
import pytest
from berg_distributed.encode import parts_folder
from berg_distributed.worker import executions
from distributed import WorkerPlugin
from PIL import Image

from berg_core import BERG
from berg_core.check import isolated_registry
from berg_core.errors import InvalidParameterError, StimulusError
from berg_core.output import encode_to_hdf5
from berg_core.stimulus import as_stimulus

pytest.importorskip("berg_testplugin")  # installed by scripts/dev-install.sh (CI runs these)
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import feature_plugin  # noqa: E402
import slow_plugin  # noqa: E402
from berg_testplugin.layout import (  # noqa: E402
    LINEAR_ID,
    TIMECOURSE_ID,
    WEIGHTS_FILE,
    write_berg_dir,
)

N_IMAGES = 36  # 5 shards of 8 (the last one 4): shards end on batch boundaries (batch_size 4)
SHARD = 8
BATCH = 4


class SlowPluginOnWorkers(WorkerPlugin):
    """Worker plugin: the test-only ``toy-slow-linear`` and ``toy-feature-readout`` registered in
    every worker (restarted ones too), beside the installed test plugin."""

    name = "berg-test-slow-plugin"

    def setup(self, worker: Any) -> None:
        sys.path.insert(0, str(HERE))
        import feature_plugin
        import slow_plugin

        from berg_core import registry

        os.environ["BERG_LOAD_PLUGINS"] = "berg-testplugin"
        registry.reset({"slow": slow_plugin, "feature": feature_plugin})


@pytest.fixture(scope="module")
def berg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_berg_dir(tmp_path_factory.mktemp("berg_dir"))


@pytest.fixture(scope="module")
def client(cluster_client: Any) -> Iterator[Any]:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with isolated_registry("berg-testplugin", {"slow": slow_plugin, "feature": feature_plugin}):
        cluster_client.register_plugin(SlowPluginOnWorkers())
        yield cluster_client


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (N_IMAGES, 3, 12, 10), dtype=np.uint8)


def single(
    berg_dir: Path, model_id: str, stimulus: Any, out: Path, subject: int = 1, **kwargs: Any
) -> Path:
    """``berg encode --out x.h5`` in this process: the file the distributed run must equal."""
    selection = kwargs.pop("selection", None)
    model = BERG(berg_dir).get_encoding_model(model_id, subject, selection, "cpu", **kwargs)
    with model:
        return encode_to_hdf5(model, as_stimulus(stimulus), out, show_progress=False)


def tree(path: Path) -> dict[str, Any]:
    """Every group, dataset (values, dtype, shape, chunks) and attribute of an HDF5 file."""
    found: dict[str, Any] = {"/": {k: _plain(v) for k, v in h5py.File(path).attrs.items()}}
    with h5py.File(path) as h5:

        def visit(name: str, obj: Any) -> None:
            attrs = {k: _plain(v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                found[name] = (obj[()].tolist(), obj.dtype.str, obj.shape, obj.chunks, attrs)
            else:
                found[name] = attrs

        h5.visititems(visit)
    return found


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def assert_same_file(single_path: Path, distributed_path: Path) -> None:
    a, b = tree(single_path), tree(distributed_path)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key] == b[key], key


def distributed_run(berg_dir: Path, client: Any, model_id: str, stimulus: Any, out: Path, **kw):
    kw.setdefault("batch_size", BATCH)
    return bd.encode(
        berg_dir, model_id, 1, stimulus, out=out, client=client, shard_size=SHARD,
        show_progress=False, device="cpu", **kw,
    )  # fmt: skip


def write_pngs(folder: Path, images: np.ndarray) -> Path:
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(np.moveaxis(image, 0, -1)).save(folder / f"img{i:03d}.png")
    return folder


@pytest.mark.parametrize(
    ("model_id", "selection", "kind"),
    [
        (LINEAR_ID, None, "array"),
        (LINEAR_ID, {"roi": "FFA-2"}, "folder"),  # no lh vertex: an empty output
        (TIMECOURSE_ID, None, "npy"),
        (TIMECOURSE_ID, None, "hdf5"),
    ],
)
def test_same_file_as_single_process(
    berg_dir: Path,
    client: Any,
    images: np.ndarray,
    tmp_path: Path,
    model_id: str,
    selection: Any,
    kind: str,
) -> None:
    if kind == "folder":
        stimulus: Any = write_pngs(tmp_path / "imgs", images)
        reference: Any = stimulus
    elif kind == "npy":
        np.save(tmp_path / "imgs.npy", images)
        stimulus, reference = tmp_path / "imgs.npy", images
    elif kind == "hdf5":
        with h5py.File(tmp_path / "imgs.h5", "w") as h5:
            h5["pixels"] = images
        stimulus, reference = bd.hdf5_stimulus(tmp_path / "imgs.h5", "pixels"), images
    else:
        stimulus = reference = images
    kw = {"selection": selection} if selection else {}
    expected = single(berg_dir, model_id, reference, tmp_path / "single.h5", batch_size=BATCH, **kw)
    report = distributed_run(berg_dir, client, model_id, stimulus, tmp_path / "d.h5", **kw)
    assert (report.shards, report.computed, report.skipped) == (5, 5, 0)
    assert [(t["start"], t["stop"]) for t in report.tasks] == [(s, min(s + 8, 36)) for s in
                                                               range(0, 36, 8)]  # fmt: skip
    # each worker loaded the model at most once, whatever the number of shards it ran
    assert sum(t["load_s"] > 0 for t in report.tasks) <= 2
    assert_same_file(expected, tmp_path / "d.h5")
    assert not parts_folder(tmp_path / "d.h5").exists()  # copy assembly removes the parts


def test_numbers_against_the_weights(berg_dir: Path, client: Any, images, tmp_path: Path) -> None:
    # independent of single-process berg: mean RGB / 255 @ coef + intercept, rounded to float32
    distributed_run(berg_dir, client, LINEAR_ID, images, tmp_path / "d.h5")
    weights = np.load(berg_dir / WEIGHTS_FILE.format(subject=1), allow_pickle=True).item()
    features = images.astype(np.float64).mean(axis=(2, 3)) / 255.0
    with h5py.File(tmp_path / "d.h5") as h5:
        for hemi in ("lh", "rh"):
            exact = features @ weights[f"{hemi}_coef"] + weights[f"{hemi}_intercept"]
            got = h5[hemi][()]
            assert got.dtype == np.float32 and got.shape == exact.shape
            # float64 sums of 3 products differ by a few float64 ulps; rounding to float32 then
            # adds at most half a float32 ulp: bound 1 float32 ulp of |exact|
            assert np.all(np.abs(got - exact) <= np.spacing(np.abs(exact).astype(np.float32)))


def cache_counts() -> tuple[int, int]:
    """This process's feature cache: (hits, misses)."""
    from berg_core.torchkit.cache import feature_cache

    return feature_cache().hits, feature_cache().misses


def test_subjects_share_one_backbone_pass(berg_dir, client, images, tmp_path: Path) -> None:
    subjects = [1, 2, 3]
    expected = {s: single(berg_dir, feature_plugin.FEATURE_ID, images, tmp_path / f"s{s}.h5", s,
                          batch_size=BATCH) for s in subjects}  # fmt: skip
    before = client.run(cache_counts)
    reports = bd.encode_subjects(
        berg_dir, feature_plugin.FEATURE_ID, subjects, images, out=tmp_path / "d{subject}.h5",
        client=client, shard_size=SHARD, show_progress=False, device="cpu", batch_size=BATCH,
        keep_parts=True,
    )  # fmt: skip
    after = client.run(cache_counts)
    for s in subjects:
        assert reports[s].out == tmp_path / f"d{s}.h5"
        assert (reports[s].shards, reports[s].computed, reports[s].skipped) == (5, 5, 0)
        assert_same_file(expected[s], tmp_path / f"d{s}.h5")
    # one task per shard for the 3 subjects, each task reading its images once
    tasks = reports[1].tasks
    assert [(t["start"], t["subjects"]) for t in tasks] == [(i, subjects) for i in range(0, 36, 8)]
    # the backbone ran once per batch (9 of 4 images): misses; the 2 other subjects were served
    hits = sum(after[w][0] - before.get(w, (0, 0))[0] for w in after)
    misses = sum(after[w][1] - before.get(w, (0, 0))[1] for w in after)
    assert (misses, hits) == (9, 2 * 9)
    # a restart where subject 2 lost one part: one task, for subject 2 only
    for s in subjects:
        (tmp_path / f"d{s}.h5").unlink()
    lost = sorted(parts_folder(tmp_path / "d2.h5").glob("part-*.h5"))[3]
    lost.unlink()
    again = bd.encode_subjects(
        berg_dir, feature_plugin.FEATURE_ID, subjects, images, out=tmp_path / "d{subject}.h5",
        client=client, shard_size=SHARD, show_progress=False, device="cpu", batch_size=BATCH,
    )  # fmt: skip
    assert [(t["start"], t["subjects"]) for t in again[2].tasks] == [(24, [2])]
    assert (again[1].computed, again[2].computed, again[3].computed) == (0, 1, 0)
    for s in subjects:
        assert_same_file(expected[s], tmp_path / f"d{s}.h5")


def test_bad_subjects_and_outs_are_named(berg_dir, client, images, tmp_path: Path) -> None:
    def run(subjects: Any, out: Any) -> Any:
        return bd.encode_subjects(berg_dir, LINEAR_ID, subjects, images, out=out, client=client)

    with pytest.raises(InvalidParameterError, match=r"a path containing \{subject\}.*got"):
        run([1, 2], tmp_path / "one.h5")
    with pytest.raises(InvalidParameterError, match=r"each once, got \[1, 1\]"):
        run([1, 1], tmp_path / "r{subject}.h5")
    with pytest.raises(InvalidParameterError, match=r"subjects must be a list .*got 1"):
        run(1, tmp_path / "r{subject}.h5")
    with pytest.raises(InvalidParameterError, match=r"map every subject of \[1, 2\]"):
        run([1, 2], {1: tmp_path / "a.h5"})
    with pytest.raises(InvalidParameterError, match="the same file for two subjects"):
        run([1, 2], {1: tmp_path / "a.h5", 2: tmp_path / "a.h5"})
    with pytest.raises(InvalidParameterError, match=r"subject"):
        run([1, 9], tmp_path / "r{subject}.h5")  # no subject 9: the card says so
    assert not list(tmp_path.glob("r*.h5"))


def test_virtual_assembly_reads_the_same(berg_dir, client, images, tmp_path: Path) -> None:
    expected = single(berg_dir, LINEAR_ID, images, tmp_path / "s.h5", batch_size=BATCH)
    distributed_run(berg_dir, client, LINEAR_ID, images, tmp_path / "v.h5", assemble="virtual")
    with h5py.File(expected) as a, h5py.File(tmp_path / "v.h5") as b:
        assert b["lh"].is_virtual and sorted(a) == sorted(b)
        for name in ("lh", "rh"):
            assert np.array_equal(a[name][()], b[name][()])
            assert list(a[name].attrs["dims"]) == list(b[name].attrs["dims"])
    assert len(list(parts_folder(tmp_path / "v.h5").glob("part-*.h5"))) == 5


def executed(client: Any) -> int:
    return sum(client.run(executions).values())


def test_restart_skips_finished_shards(berg_dir, client, images, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    first = distributed_run(berg_dir, client, LINEAR_ID, images, out, keep_parts=True)
    reference = tree(out)
    parts = sorted(parts_folder(out).glob("part-*.h5"))
    assert first.computed == 5 and len(parts) == 5
    # an interrupted run: the result never written, two shards lost, one left half-written by a
    # writer that was not berg (a part only exists complete, but a stray file must not count)
    out.unlink()
    parts[1].unlink()
    parts[3].unlink()
    parts[4].write_bytes(b"not an HDF5 file")
    before = executed(client)
    again = distributed_run(berg_dir, client, LINEAR_ID, images, out)
    assert (again.computed, again.skipped) == (3, 2)
    assert executed(client) - before == 3  # the tasks that ran, counted on the workers
    assert [t["start"] for t in again.tasks] == [8, 24, 32]
    assert tree(out) == reference


def test_other_stimuli_recompute_every_shard(berg_dir, client, images, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    distributed_run(berg_dir, client, LINEAR_ID, images, out, keep_parts=True)
    out.unlink()
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1  # one pixel: another run, whose parts are not these
    report = distributed_run(berg_dir, client, LINEAR_ID, changed, out)
    assert (report.computed, report.skipped) == (5, 0)


def test_a_worker_killed_mid_task_costs_only_its_task(berg_dir, client, images, tmp_path) -> None:
    expected = single(berg_dir, slow_plugin.SLOW_ID, images, tmp_path / "s.h5", batch_size=BATCH)
    (berg_dir / "STALL").write_text("")
    pid_file = berg_dir / "stalled.pid"
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["report"] = distributed_run(
                berg_dir, client, slow_plugin.SLOW_ID, images, tmp_path / "k.h5"
            )
        except BaseException as exc:  # shown by the assertion below
            result["error"] = exc

    run = threading.Thread(target=target)
    run.start()
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), "no worker stalled"
    pid = int(pid_file.read_text())
    assert pid in client.run(os.getpid).values()  # a worker process, not this one
    os.kill(pid, signal.SIGKILL)
    run.join(60)
    assert not run.is_alive()
    pid_file.unlink()
    (berg_dir / "STALLED").unlink()
    assert "error" not in result, result
    assert result["report"].computed == 5
    assert_same_file(expected, tmp_path / "k.h5")
    assert pid not in client.run(os.getpid).values()  # the nanny started a new worker


def test_errors_on_a_worker_reach_the_caller(berg_dir, client, images, tmp_path: Path) -> None:
    folder = write_pngs(tmp_path / "imgs", images[:12])
    stimulus = as_stimulus(folder)  # headers read: fine; pixels of one file broken after
    broken = Path(stimulus.sources[9])
    broken.write_bytes(broken.read_bytes()[:60])
    with pytest.raises(StimulusError, match=r"img009\.png"):
        distributed_run(berg_dir, client, LINEAR_ID, folder, tmp_path / "e.h5")
    assert not (tmp_path / "e.h5").exists()
    with pytest.raises(InvalidParameterError, match="roi"):
        distributed_run(
            berg_dir, client, LINEAR_ID, images, tmp_path / "e.h5", selection={"roi": "V9"}
        )
    with pytest.raises(InvalidParameterError, match="shard_size must be an integer >= 1, got 0"):
        bd.encode(berg_dir, LINEAR_ID, 1, images, out=tmp_path / "e.h5", client=client,
                  shard_size=0)  # fmt: skip
    with pytest.raises(InvalidParameterError, match=r"e\.nii\.gz.*\.h5"):
        distributed_run(berg_dir, client, LINEAR_ID, images, tmp_path / "e.nii.gz")
    with pytest.raises(InvalidParameterError, match="assemble must be one of copy, virtual"):
        distributed_run(berg_dir, client, LINEAR_ID, images, tmp_path / "e.h5", assemble="zarr")


def test_cli_encode_on_the_cluster(berg_dir, client, images, tmp_path, capsys) -> None:
    from berg_core.cli import main

    np.save(tmp_path / "imgs.npy", images)
    expected = single(berg_dir, LINEAR_ID, images, tmp_path / "s.h5", batch_size=BATCH)
    address = client.scheduler.address
    argv = ["--berg-dir", str(berg_dir), "encode", LINEAR_ID, "--subject", "1", "--stimulus",
            str(tmp_path / "imgs.npy"), "--out", str(tmp_path / "c.h5"), "--cluster", address,
            "--shard-size", "8", "--batch-size", "4", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "5 shards of <= 8 images (5 encoded, 0 already done)" in capsys.readouterr().out
    assert_same_file(expected, tmp_path / "c.h5")
    # --assemble virtual: the same numbers, mapped from the parts, which stay beside the file
    virtual = [*argv[:-10], str(tmp_path / "v.h5"), *argv[-9:], "--assemble", "virtual"]
    assert main(virtual) == 0
    said = capsys.readouterr().out
    assert f"maps the parts in {tmp_path / 'v.h5.parts'}: move or copy the two together" in said
    with h5py.File(expected) as a, h5py.File(tmp_path / "v.h5") as b:
        assert b["lh"].is_virtual and np.array_equal(a["lh"][()], b["lh"][()])
    assert len(list(parts_folder(tmp_path / "v.h5").glob("part-*.h5"))) == 5

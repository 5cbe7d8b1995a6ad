"""Benchmark: berg-distributed on a LocalCluster against single-process ``berg encode``, same run.

Writes a full-size berg_dir for ``fmri-nsd_fsaverage-alexnet_untrained`` subject 1 (random
weights in the reference layout, 163,842 vertices per hemisphere; ``--components`` PCA
components) and a random ``uint8`` stimulus ``(N, 3, 256, 256)`` as a ``.npy`` file, then measures:

1. **per-image costs** in one process: reading the images (``.npy`` memory-mapped, PNG files),
   the backbone alone (torchvision AlexNet up to the readout's layers), the whole encode
   (backbone + readout) and writing the responses to HDF5 (327,684 float32 per image);
2. **throughput**: single-process ``encode_to_hdf5`` (the baseline, in this process), then
   ``berg_distributed.encode`` with 1 and 2 workers, and the ratios against the baseline;
3. **per-task overhead** with 1 worker for each shard size: the share of the run's wall time not
   spent inside tasks reading and encoding (scheduling, serialisation, the client's bookkeeping),
   the model load (once per worker, torch import included) as a share, and the size of a
   pickled task (the assembly is timed apart, in 4);
4. **assembly**: copying the parts into one file against HDF5 virtual datasets;
5. **training** (``--train``, or ``--only-train``): ``berg train nsd`` of a simulated NSD subject
   (berg-train's ``simulate_nsd``, every fsaverage vertex, the ``alexnet_untrained`` backbone)
   single-process (the baseline, ``SerialRunner``) against ``DaskRunner`` on 1 and 2 workers,
   with the ratios and each step's time; the weights files must be byte-identical;
6. **several subjects** (``--subjects S``, or ``--only-subjects S``): ``S`` calls of
   ``berg_distributed.encode``, one per subject (the baseline: each reads the images and runs the
   backbone again, feature cache off), against one ``encode_subjects`` call (images read and
   backbone run once per image, the other subjects served by the worker's feature cache), on one
   warm worker; the per-image cost of each extra subject; the files must be identical.

Every process runs torch with one thread (``OMP_NUM_THREADS=1``), so 2 workers use 2 cores where
the baseline uses 1, and without the feature cache (``BERG_FEATURE_CACHE_BYTES=0``), since every
round encodes the same images. Results go into docs/scaling.md.

Usage::

    python benchmarks/scaling.py             # 256 images, 50 components, shards 16, 64, 256
    python benchmarks/scaling.py --full      # 2048 images, 250 components, shards 16 ... 1024
    python benchmarks/scaling.py --only-train          # training: 160 trials, 50 components
    python benchmarks/scaling.py --only-train --full   # training: 1,000 trials, 250 components
    python benchmarks/scaling.py --only-subjects 3     # 3 subjects: 64 images, 50 components
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: one thread per process
# no feature cache: the rounds encode the same images again, which the cache would serve
os.environ.setdefault("BERG_FEATURE_CACHE_BYTES", "0")

import argparse
import pickle
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from encode_nsd import FOLDER, MODEL_ID, write_data

N_OUT = 2 * 163_842  # float32 responses per image (both hemispheres)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def per_image_costs(workdir: Path, berg_dir: Path, stimulus: np.ndarray) -> dict[str, float]:
    """Seconds per image of reading, backbone, encode and HDF5 writing, in this process."""
    import h5py
    import torch
    from berg_distributed.stimuli import stimulus_ref
    from PIL import Image

    from berg_core import BERG
    from berg_core.output import encode_to_hdf5
    from berg_core.stimulus import as_stimulus

    n = len(stimulus)
    costs: dict[str, float] = {}
    ref = stimulus_ref(workdir / "stimulus.npy")
    began = time.perf_counter()
    ref.read(0, n).batch(0, n)
    costs["read .npy"] = (time.perf_counter() - began) / n
    folder = workdir / "png"
    folder.mkdir(exist_ok=True)
    m = min(n, 64)
    for i in range(m):
        Image.fromarray(np.moveaxis(stimulus[i], 0, -1)).save(folder / f"{i:05d}.png")
    began = time.perf_counter()
    stimulus_ref(folder).read(0, m).batch(0, m)
    costs["read PNG (256 x 256)"] = (time.perf_counter() - began) / m

    berg = BERG(berg_dir)
    began = time.perf_counter()
    model = berg.get_encoding_model(MODEL_ID, 1, device="cpu")
    costs["model load (once per worker)"] = time.perf_counter() - began
    with model:
        import torchvision

        net = torchvision.models.alexnet(weights=None).eval()
        batch = torch.rand(min(n, 64), 3, 224, 224)
        with torch.inference_mode():
            net(batch[:2])
            began = time.perf_counter()
            net(batch)
        costs["backbone (AlexNet forward)"] = (time.perf_counter() - began) / len(batch)
        model.encode(as_stimulus(stimulus[:2]), show_progress=False)  # warm, as the workers
        out = workdir / "single.h5"
        began = time.perf_counter()
        encode_to_hdf5(model, as_stimulus(stimulus), out, force=True, show_progress=False)
        costs["encode + write (single process)"] = (time.perf_counter() - began) / n
    rows = np.random.default_rng(0).standard_normal((64, N_OUT // 2), dtype=np.float32)
    with h5py.File(workdir / "write.h5", "w") as h5:
        datasets = [h5.create_dataset(k, (n, N_OUT // 2), "float32", chunks=(min(n, 64), 16384))
                    for k in ("lh", "rh")]  # fmt: skip
        began = time.perf_counter()
        for start in range(0, n, 64):
            stop = min(start + 64, n)
            for dataset in datasets:
                dataset[start:stop] = rows[: stop - start]
    costs["write HDF5 rows (1.31 MB)"] = (time.perf_counter() - began) / n
    (workdir / "write.h5").unlink()
    return costs


def run_distributed(
    client: Any, berg_dir: Path, workdir: Path, out: Path, shard_size: int, **kwargs: Any
) -> tuple[float, Any]:
    import berg_distributed as bd

    began = time.perf_counter()
    report = bd.encode(berg_dir, MODEL_ID, 1, workdir / "stimulus.npy", out=out, client=client,
                       shard_size=shard_size, device="cpu", force=True, show_progress=False,
                       **kwargs)  # fmt: skip
    return time.perf_counter() - began, report


def task_bytes(berg_dir: Path, workdir: Path) -> int:
    """Size of one pickled task (what the scheduler ships per shard) for a ``.npy`` stimulus."""
    from berg_distributed.stimuli import stimulus_ref
    from berg_distributed.worker import ShardTask

    task = ShardTask(berg_dir=str(berg_dir), model_id=MODEL_ID, subjects=(1,), runs=("0" * 32,),
                     parts=(str(workdir / "o.h5.parts" / "part-0-1024.h5"),), selection=None,
                     stimulus=stimulus_ref(workdir / "stimulus.npy"), start=0,
                     stop=1024)  # fmt: skip
    return len(pickle.dumps(task))


def cluster(workers: int) -> Any:
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                        dashboard_address=":0", silence_logs=50)  # fmt: skip


def training_case(workdir: Path, n_train: int, components: int, shard: int) -> None:
    """``berg train nsd`` of a simulated subject: single process, then 1 and 2 workers."""
    from berg_distributed.training import DaskRunner
    from berg_train import NSDDataset, TrainConfig, train
    from berg_train.simulate import simulate_nsd
    from distributed import Client

    n_test, n_val = max(8, n_train // 10), max(4, n_train // 20)
    print(f"\n## training: simulated NSD subject, {n_train} training / {n_test} test / {n_val} "
          f"validation images, every fsaverage vertex, {components} components, alexnet_untrained "
          f"backbone, feature shards of {shard}")  # fmt: skip
    sim = simulate_nsd(workdir / "nsd", n_train=n_train, n_test=n_test, n_val=n_val, sessions=2,
                       image_size=64, seed=0, device="cpu", show_progress=False)  # fmt: skip

    def run(name: str, runner: Any) -> tuple[float, Any]:
        out = workdir / f"train-{name.replace(' ', '_')}"
        config = TrainConfig(backbone="alexnet_untrained", n_components=components, device="cpu",
                             work_dir=out / "work", show_progress=False)  # fmt: skip
        began = time.perf_counter()
        result = train(NSDDataset(sim.root, 1), out / "berg", config, runner=runner)
        return time.perf_counter() - began, result

    runs: dict[str, tuple[float, Any]] = {"single process (baseline)": run("single", None)}
    for workers in (1, 2):
        with cluster(workers) as local, Client(local) as client:
            client.run(lambda: bool(__import__("torch")))  # warm: torch imported on every worker
            runs[f"{workers} worker(s)"] = run(f"{workers}w", DaskRunner(client, shard_size=shard))
    base_s, base = runs["single process (baseline)"]
    steps = list(base.timings)
    print(f"{'':<28} {'wall s':>7} {'ratio':>6}  " + "  ".join(f"{k:>10}" for k in steps))
    for name, (seconds, result) in runs.items():
        same = result.weights_path.read_bytes() == base.weights_path.read_bytes()
        assert same, f"{name}: weights differ from the single-process run"
        cells = "  ".join(f"{result.timings.get(k, float('nan')):10.1f}" for k in steps)
        print(f"{name:<28} {seconds:7.1f} {base_s / seconds:6.2f}  {cells}")
    print("ratio: single-process wall time / this run's (above 1: faster); weights byte-identical")


def _clear_feature_cache() -> int:
    """Empty this process's feature cache; return the entries it held."""
    from berg_core.torchkit.cache import feature_cache

    cache = feature_cache()
    held = len(cache)
    cache.clear()
    return held


def subjects_case(workdir: Path, n: int, components: int, subjects: int, shard: int) -> None:
    """``subjects`` calls of ``encode`` (one per subject) against one ``encode_subjects`` call."""
    import berg_distributed as bd
    import h5py
    from distributed import Client

    print(f"\n## {subjects} subjects, {n} images, {components} components, shard size {shard}, "
          f"1 warm worker per way")  # fmt: skip
    write_data(workdir, n, components)
    berg_dir = workdir / "berg_dir"
    for folder, name in (("encoding_models_weights", "weights"), ("metadata", "metadata")):
        first = berg_dir / FOLDER / folder / f"{name}_subject-01.npy"
        for subject in range(2, subjects + 1):  # the same arrays: the same readout cost
            shutil.copyfile(first, first.with_name(f"{name}_subject-{subject:02d}.npy"))
    stimulus = workdir / "stimulus.npy"
    todo = list(range(1, subjects + 1))
    kw = dict(client=None, shard_size=shard, device="cpu", force=True, show_progress=False)
    times = {}
    # a worker's environment is this process's when it starts: the cache per way
    for way, cache in (("per subject", "0"), ("shared", str(2**30))):
        os.environ["BERG_FEATURE_CACHE_BYTES"] = cache
        with cluster(1) as local, Client(local) as client:
            kw["client"] = client
            bd.encode_subjects(berg_dir, MODEL_ID, todo, stimulus, out=workdir / "w{subject}.h5",
                               **kw)  # fmt: skip  # warm: every subject's model loaded
            client.run(_clear_feature_cache)  # the warm-up's features: not to be served again
            began = time.perf_counter()
            if way == "per subject":
                for subject in todo:
                    bd.encode(berg_dir, MODEL_ID, subject, stimulus,
                              out=workdir / f"p{subject}.h5", **kw)  # fmt: skip
            else:
                bd.encode_subjects(berg_dir, MODEL_ID, todo, stimulus,
                                   out=workdir / "s{subject}.h5", **kw)  # fmt: skip
            times[way] = time.perf_counter() - began
    os.environ["BERG_FEATURE_CACHE_BYTES"] = "0"
    for subject in todo:
        with h5py.File(workdir / f"p{subject}.h5") as a, h5py.File(workdir / f"s{subject}.h5") as b:
            assert all(np.array_equal(a[k][()], b[k][()]) for k in ("lh", "rh")), subject
    base = times["per subject"]
    print(f"{subjects} encode calls (baseline)    {base:7.2f} s  {base / n / subjects * 1e3:7.2f} "
          f"ms per image and subject")  # fmt: skip
    shared = times["shared"]
    print(f"1 encode_subjects call        {shared:7.2f} s  {shared / n / subjects * 1e3:7.2f} "
          f"ms per image and subject  x{base / shared:.2f}")  # fmt: skip
    print("files identical to the per-subject runs")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="2048 images, 250 components")
    parser.add_argument("--images", type=int, help="number of images (256; --full 2048)")
    parser.add_argument("--components", type=int, help="PCA components (50; --full 250)")
    parser.add_argument("--shards", help="comma-separated shard sizes (16,64,256; --full ...1024)")
    parser.add_argument("--shard", type=int, default=64, help="shard size of the throughput runs")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved throughput rounds (2)")
    parser.add_argument("--train", action="store_true", help="also the training case")
    parser.add_argument("--only-train", action="store_true", help="only the training case")
    parser.add_argument("--train-images", type=int, help="training trials (160; --full 1000)")
    parser.add_argument("--subjects", type=int, help="also the several-subjects case, S subjects")
    parser.add_argument("--only-subjects", type=int, help="only the several-subjects case")
    args = parser.parse_args(argv)
    subjects = args.only_subjects or args.subjects
    if subjects:
        sub_n = args.images or (256 if args.full else 64)
        sub_k = args.components or (250 if args.full else 50)
        print(f"# {_cpu()}, {os.cpu_count()} CPUs")
        with tempfile.TemporaryDirectory(prefix="berg-scaling-subjects-") as tmp:
            subjects_case(Path(tmp), sub_n, sub_k, subjects, min(args.shard, sub_n))
        if args.only_subjects:
            return 0
    if args.train or args.only_train:
        train_n = args.train_images or (1000 if args.full else 160)
        train_k = args.components or (250 if args.full else 50)
        print(f"# {_cpu()}, {os.cpu_count()} CPUs")
        with tempfile.TemporaryDirectory(prefix="berg-scaling-train-") as tmp:
            training_case(Path(tmp), train_n, train_k, args.shard)
        if args.only_train:
            return 0
    n = args.images or (2048 if args.full else 256)
    components = args.components or (250 if args.full else 50)
    default = "16,64,256,1024" if args.full else "16,64,256"
    shards = [int(s) for s in (args.shards or default).split(",") if int(s) <= n]

    from berg_distributed.assemble import assemble
    from distributed import Client

    print(f"# {_cpu()}, {os.cpu_count()} CPUs; {n} images, {components} components")
    with tempfile.TemporaryDirectory(prefix="berg-scaling-") as tmp:
        workdir = Path(tmp)
        write_data(workdir, n, components)
        berg_dir = workdir / "berg_dir"
        stimulus = np.load(workdir / "stimulus.npy")

        print("\n## per-image costs (one process, one thread)")
        costs = per_image_costs(workdir, berg_dir, stimulus)
        for name, seconds in costs.items():
            if "load" in name:
                print(f"{name:<36} {seconds:9.2f} s")
            else:
                print(f"{name:<36} {seconds * 1e3:9.2f} ms/img")
        per_image = costs["encode + write (single process)"]  # warm: the model was loaded before

        print(f"\n## throughput, warm (models loaded), shard size {args.shard}, vs single process")
        print(f"best of {args.repeat} interleaved rounds (the least disturbed run of each)")
        from berg_core import BERG
        from berg_core.output import encode_to_hdf5
        from berg_core.stimulus import as_stimulus

        rates: dict[str, list[float]] = {"single process (baseline)": [], "1 worker": [],
                                         "2 workers": []}  # fmt: skip
        with (
            BERG(berg_dir).get_encoding_model(MODEL_ID, 1, device="cpu") as model,
            cluster(1) as one,
            Client(one) as client_1,
            cluster(2) as two,
            Client(two) as client_2,
        ):
            model.encode(as_stimulus(stimulus[:2]), show_progress=False)  # warm
            clients = {"1 worker": client_1, "2 workers": client_2}
            for client in clients.values():  # loads the model on every worker
                run_distributed(client, berg_dir, workdir, workdir / "d.h5", args.shard)
            for _ in range(args.repeat):
                began = time.perf_counter()
                encode_to_hdf5(model, as_stimulus(stimulus), workdir / "s.h5", force=True,
                               show_progress=False)  # fmt: skip
                rates["single process (baseline)"].append(n / (time.perf_counter() - began))
                for name, client in clients.items():
                    seconds, _ = run_distributed(
                        client, berg_dir, workdir, workdir / "d.h5", args.shard
                    )
                    rates[name].append(n / seconds)
        baseline = max(rates["single process (baseline)"])
        for name, values in rates.items():
            print(f"{name:<28} {max(values):8.1f} img/s  x{max(values) / baseline:.2f}")

        print("\n## per-task overhead, 1 fresh worker per run (model load counted once)")
        print("shard  tasks  wall s  in-task s  overhead  load share")
        for size in shards:
            # a fresh worker process per shard size: torch import and model load counted again
            with cluster(1) as local, Client(local) as client:
                _, report = run_distributed(
                    client, berg_dir, workdir, workdir / "o.h5", size, keep_parts=True
                )
            work = sum(t["read_s"] + t["encode_s"] for t in report.tasks)
            load = sum(t["load_s"] for t in report.tasks)
            wall = report.tasks_s  # submission to the last result, assembly apart
            overhead = (wall - work - load) / wall
            print(f"{size:5d}  {report.shards:5d}  {wall:6.2f}  {work:9.2f}  "
                  f"{overhead:8.1%}  {load / wall:10.1%}")  # fmt: skip
            if size != shards[-1]:
                shutil.rmtree(workdir / "o.h5.parts")
        print(f"one pickled task: {task_bytes(berg_dir, workdir)} bytes (.npy stimulus)")

        print(f"\n## assembly of {shards[-1]}-image parts into one file: copy vs virtual")
        parts = sorted((workdir / "o.h5.parts").glob("part-*.h5"))
        spans = [(int(p.stem.split("-")[1]), int(p.stem.split("-")[2]), p) for p in parts]
        for mode in ("copy", "virtual"):
            began = time.perf_counter()
            assemble(spans, workdir / f"a-{mode}.h5", n, sources=None, force=True, mode=mode)
            took = time.perf_counter() - began
            print(f"{mode:<8} {took:7.3f} s  {took / n * 1e3:7.3f} ms/img  "
                  f"{took / n / per_image:6.1%} of encode + write")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

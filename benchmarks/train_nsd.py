"""Benchmark: ``berg train nsd`` against the reference recipe on the same simulated NSD subject.

The subject is written by :func:`berg_train.simulate.simulate_nsd` in NSD's real formats:
``nsd_stimuli.hdf5`` with ``imgBrick`` in chunks of one 425 x 425 x 3 image (as the published
file), fsaverage betas of all 163,842 vertices per hemisphere in MGH files, ``nsd_expdesign.mat``.
Each pipeline runs in its own fresh subprocess (peak memory is that process's ``VmHWM``):

* ``berg`` - :func:`berg_train.train` (stimuli read in index order and prefetched, features
  streamed to HDF5, out-of-core scaler + exact PCA, OLS per vertex chunk, files written);
* ``reference`` - the reference recipe: the same backbone (untrained AlexNet, its 8 nodes,
  through torchvision's ``create_feature_extractor`` and the weights' transform, batches of 32
  under ``torch.no_grad``), stimuli read one image at a time with ``imgBrick[id]`` (the fast way
  to read this file; ``imgBrick[list_of_ids]`` is ~70x slower), every session's betas read whole
  and z-scored per vertex with ``scipy.stats.zscore``, repeats averaged, then scikit-learn
  ``StandardScaler`` -> ``PCA(k, svd_solver="full")`` -> ``LinearRegression`` per hemisphere,
  and Pearson r per vertex on the test images. It writes no files.

Both use the same partition (train: non-shared images; test: shared images seen 3 times) and the
same number of components ``k``. The parent prints wall time and peak memory of each, their
ratios, and the agreement of the held-out correlations per vertex (see the README of berg-train
for the bound).

Usage::

    python benchmarks/train_nsd.py             # 300 training images, 3 sessions (a few minutes)
    python benchmarks/train_nsd.py --full      # 1,500 training images, 6 sessions
    python benchmarks/train_nsd.py --data DIR  # keep (and reuse) the simulated subject in DIR
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STIMULI = "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
EXPDESIGN = "nsddata/experiments/nsd/nsd_expdesign.mat"
BETAS = "nsddata_betas/ppdata/subj01/fsaverage/betas_fithrf_GLMdenoise_RR"
MODEL_ID = "fmri-nsd_fsaverage-alexnet_untrained"


def _peak_mb() -> float:
    """This process's peak resident memory (``VmHWM``), MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _components(n_train: int) -> int:
    """PCA components: the reference's 250, fewer for small training sets (half the images)."""
    return int(min(250, n_train // 2))


# -- pipelines ---------------------------------------------------------------------------------
def run_berg(root: Path, out: Path, k: int, threads: int, memory_gb: float) -> dict:
    import torch

    torch.set_num_threads(threads)
    from berg_train import NSDDataset, TrainConfig, train

    started = time.perf_counter()
    dataset = NSDDataset(root, 1)
    config = TrainConfig(
        n_components=k,
        device="cpu",
        show_progress=False,
        work_dir=out / "berg_work",
        memory_gb=memory_gb,
    )
    result = train(dataset, out / "berg_dir", config)
    seconds = time.perf_counter() - started
    r = np.concatenate([result.evaluation[h]["correlation"] for h in ("lh", "rh")])
    np.save(out / "berg_r.npy", r)
    return {"seconds": seconds, "peak_mb": _peak_mb(), "timings": result.timings}


def run_reference(root: Path, out: Path, k: int, threads: int, memory_gb: float) -> dict:
    import h5py
    import nibabel as nib
    import torch
    import torchvision
    from berg_nsd.cards import SPECS
    from berg_nsd.model import build_backbone
    from scipy.io import loadmat
    from scipy.stats import zscore
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler
    from torchvision.models.feature_extraction import create_feature_extractor

    torch.set_num_threads(threads)
    started = time.perf_counter()
    design = loadmat(root / EXPDESIGN)
    master = design["masterordering"].ravel().astype(int) - 1
    subjectim = design["subjectim"].astype(int) - 1
    shared = design["sharedix"].ravel().astype(int) - 1
    sessions = sorted((root / BETAS).glob("lh.betas_session*.mgh"))
    n_trials = sum(nib.load(p).shape[-1] for p in sessions)
    trial_ids = subjectim[0, master[:n_trials]]
    train_ids = np.unique(trial_ids[~np.isin(trial_ids, shared)])
    ids, counts = np.unique(trial_ids[np.isin(trial_ids, shared)], return_counts=True)
    test_ids = ids[counts == 3]

    spec = SPECS[MODEL_ID]
    extractor = create_feature_extractor(build_backbone(spec), return_nodes=list(spec.nodes))
    extractor.eval()
    transform = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms()

    def features(image_ids: np.ndarray) -> np.ndarray:
        rows = []
        with h5py.File(root / STIMULI, "r") as h5:
            brick = h5["imgBrick"]
            for start in range(0, image_ids.size, 32):
                batch = np.stack([brick[int(i)] for i in image_ids[start : start + 32]])
                x = transform(torch.from_numpy(batch.transpose(0, 3, 1, 2).copy()))
                with torch.no_grad():
                    outs = extractor(x)
                rows.append(torch.cat([torch.flatten(v, 1) for v in outs.values()], 1).numpy())
        return np.concatenate(rows)

    train_x, test_x = features(train_ids), features(test_ids)
    scaler = StandardScaler().fit(train_x)
    pca = PCA(n_components=k, svd_solver="full", random_state=20200220)
    pca.fit(scaler.transform(train_x))
    z_train = pca.transform(scaler.transform(train_x)).astype(np.float32)
    z_test = pca.transform(scaler.transform(test_x)).astype(np.float32)
    del train_x, test_x
    r_all = []
    for hemi in ("lh", "rh"):
        betas = np.concatenate(
            [
                zscore(
                    nib.load(root / BETAS / f"{hemi}.betas_session{s:02d}.mgh").get_fdata(
                        dtype=np.float32
                    )[:, 0, 0, :],
                    axis=1,
                    nan_policy="omit",
                ).astype(np.float32)
                for s in range(1, len(sessions) + 1)
            ],
            axis=1,
        ).T  # (trials, vertices)
        y_train = np.nan_to_num(np.stack([betas[trial_ids == i].mean(0) for i in train_ids]))
        y_test = np.nan_to_num(np.stack([betas[trial_ids == i].mean(0) for i in test_ids]))
        del betas
        predicted = LinearRegression().fit(z_train, y_train).predict(z_test)
        p = predicted - predicted.mean(0)
        m = y_test - y_test.mean(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (p * m).sum(0) / np.sqrt((p * p).sum(0) * (m * m).sum(0))
        r_all.append(np.clip(np.nan_to_num(r), 0.0, 1.0))
    seconds = time.perf_counter() - started
    np.save(out / "reference_r.npy", np.concatenate(r_all))
    return {"seconds": seconds, "peak_mb": _peak_mb(), "n_train": int(train_ids.size)}


# -- parent ------------------------------------------------------------------------------------
def _spawn(name: str, root: Path, out: Path, k: int, threads: int, memory_gb: float) -> dict:
    command = [sys.executable, __file__, "--run", name, str(root), str(out), str(k), str(threads)]
    command.append(str(memory_gb))
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{name} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="1,500 training images, 6 sessions")
    parser.add_argument("--data", type=Path, help="simulated subject folder (kept, reused)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds (1)")
    parser.add_argument(
        "--memory-gb", type=float, default=2.0, help="berg's --memory-gb working budget (2)"
    )
    parser.add_argument("--run", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        name, root, out, k, threads, memory_gb = args.run
        run = run_berg if name == "berg" else run_reference
        print(json.dumps(run(Path(root), Path(out), int(k), int(threads), float(memory_gb))))
        return 0

    n_train, sessions = (1500, 6) if args.full else (300, 3)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "nsd"
        if not (root / STIMULI).is_file():
            from berg_train.simulate import simulate_nsd

            started = time.perf_counter()
            simulate_nsd(
                root, n_train=n_train, n_test=50, n_val=10, sessions=sessions, image_size=425,
                visual_vertices=2000, seed=1, device="cpu", show_progress=False,
            )  # fmt: skip
            print(f"simulated subject written in {time.perf_counter() - started:.0f} s: {root}")
        k = _components(n_train)
        print(f"NSD subject: {n_train} training images of 425 x 425, {sessions} sessions, k = {k}")
        runs: dict[str, list[dict]] = {"reference": [], "berg": []}
        for round_ in range(args.repeat):
            for name in runs:
                out = Path(tmp) / f"{name}-{round_}"
                out.mkdir()
                runs[name].append(_spawn(name, root, out, k, args.threads, args.memory_gb))
                r = runs[name][-1]
                print(f"{name:>10}: {r['seconds']:6.1f} s, peak {r['peak_mb']:6.0f} MiB "
                      f"{r.get('timings', '')}", flush=True)  # fmt: skip
        best = {name: min(r["seconds"] for r in rs) for name, rs in runs.items()}
        peak = {name: float(np.median([r["peak_mb"] for r in rs])) for name, rs in runs.items()}
        r_berg = np.load(Path(tmp) / "berg-0" / "berg_r.npy")
        r_ref = np.load(Path(tmp) / "reference-0" / "reference_r.npy")
        truth = np.load(root / "simulation_truth.npz")
        visual = np.concatenate([truth["lh_columns"], truth["rh_columns"] + 163_842])
        diff = np.abs(r_berg - r_ref)
        print(
            f"berg / reference: speed x{best['reference'] / best['berg']:.2f}, "
            f"peak memory x{peak['berg'] / peak['reference']:.2f}"
        )
        print(
            f"held-out r per vertex: visual vertices mean {r_berg[visual].mean():.4f} (berg) vs "
            f"{r_ref[visual].mean():.4f} (reference), max |difference| "
            f"{diff[visual].max():.1e}; all vertices max |difference| {diff.max():.1e}, "
            f"99.9th percentile {np.quantile(diff, 0.999):.1e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

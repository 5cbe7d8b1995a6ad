"""Benchmark: berg-nsd against a naive reference-style pipeline, in the same run.

Writes a full-size berg_dir for ``fmri-nsd_fsaverage-alexnet_untrained`` subject 1 into a
temporary folder (random float32 weights in the reference layout: 250 PCA components, D = 205,672
features, 163,842 vertices per hemisphere; about 0.55 GB) and a random uint8 stimulus, then runs
each pipeline in its own fresh subprocess so that their peak memory cannot mix:

* ``berg`` - ``BERG(berg_dir).get_encoding_model(...)`` + ``BERG.encode`` (batched
  preprocessing, channels-last backbone, torch float32 readout, preallocated outputs);
* ``berg-hdf5`` - the same model streamed to an HDF5 file with ``encode_to_hdf5`` (what
  ``berg encode`` does), so responses never accumulate in memory;
* ``naive`` - what the reference toolkit does: ``np.load(allow_pickle=True)``, scikit-learn
  ``StandardScaler``/``PCA``/``LinearRegression`` objects, the transform applied to the whole
  stimulus at once, batches of 100 through ``create_feature_extractor`` under ``torch.no_grad``,
  outputs grown with ``np.append``.

Each subprocess reports the time to load the model, the time to encode, and its peak resident
memory (``ru_maxrss``, which includes the Python interpreter, torch, the stimulus, the weights and
the outputs). The parent checks that the pipelines agree (to float32 precision) on a subsample of
the responses and prints throughput and peak-memory ratios.

Usage::

    python benchmarks/encode_nsd.py                    # 500 images, CPU
    python benchmarks/encode_nsd.py --images 200 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import (
    compare_pipelines,
    current_rss_mb,
    ensure_data,
    peak_rss_mb,
    report,
    run_child,
    synthetic_readout,
    synthetic_regression,
)

MODEL_ID = "fmri-nsd_fsaverage-alexnet_untrained"
FOLDER = "encoding_models/modality-fmri/train_dataset-nsd_fsaverage/model-alexnet_untrained"
N_VERTICES = 163_842
FEATURE_DIM = 205_672
NODES = [
    "features.2",
    "features.5",
    "features.7",
    "features.9",
    "features.12",
    "classifier.2",
    "classifier.5",
    "classifier.6",
]
COMPARED = np.arange(0, N_VERTICES, 97)  # columns compared between pipelines


# -- data -------------------------------------------------------------------------------------
def write_data(workdir: Path, n_images: int, components: int, seed: int = 0) -> None:
    """Write the berg_dir (weights + metadata of subject 1) and the stimulus into *workdir*."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    weights = synthetic_readout(rng, FEATURE_DIM, components, n_samples=9000)
    for hemisphere in ("lh", "rh"):
        weights[f"{hemisphere}_reg_param"] = synthetic_regression(rng, N_VERTICES, components)
    path = workdir / "berg_dir" / FOLDER / "encoding_models_weights" / "weights_subject-01.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, weights, allow_pickle=True)
    del weights
    rois = {"V1v": np.arange(0, 710, dtype=np.int64), "FBA-2": np.zeros(0, dtype=np.int64)}
    metadata = {
        "fmri": {
            "lh_ncsnr": np.ones(N_VERTICES, f32),
            "rh_ncsnr": np.ones(N_VERTICES, f32),
            "lh_fsaverage_rois": rois,
            "rh_fsaverage_rois": rois,
        },
        "encoding_models": {"train_img_num": np.arange(9000)},
    }
    meta_path = workdir / "berg_dir" / FOLDER / "metadata" / "metadata_subject-01.npy"
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(meta_path, metadata, allow_pickle=True)
    stimulus = rng.integers(0, 256, (n_images, 3, 256, 256), dtype=np.uint8)
    np.save(workdir / "stimulus.npy", stimulus)


# -- pipelines (each runs in its own subprocess) ----------------------------------------------
def run_berg(workdir: Path, device: str, batch_size: int | None, hdf5: bool) -> dict:
    from berg_core import BERG

    stimulus = np.load(workdir / "stimulus.npy")
    baseline = current_rss_mb()
    berg = BERG(workdir / "berg_dir")
    start = time.perf_counter()
    model = berg.get_encoding_model(MODEL_ID, subject=1, device=device)
    if batch_size:
        model.batch_size = batch_size
    loaded = time.perf_counter()
    load_peak = peak_rss_mb()
    if hdf5:
        import h5py

        from berg_core.output import encode_to_hdf5
        from berg_core.stimulus import as_stimulus

        out = workdir / "berg.h5"
        encode_to_hdf5(model, as_stimulus(stimulus), out, force=True, show_progress=False)
        done = time.perf_counter()
        peak = peak_rss_mb()  # before reading anything back
        with h5py.File(out, "r") as h5:  # read back only the compared columns
            lh, rh = (h5[name][:, COMPARED] for name in ("lh", "rh"))
        timings = {"start": start, "loaded": loaded, "done": done}
        result = _report(workdir, "berg-hdf5", lh, rh, baseline=baseline, load_peak=load_peak,
                         **timings)  # fmt: skip
        result["peak_rss_mb"] = peak
        return result
    lh, rh = berg.encode(model, stimulus, show_progress=False)
    done = time.perf_counter()
    timings = {"start": start, "loaded": loaded, "done": done}
    return _report(workdir, "berg", lh, rh, baseline=baseline, load_peak=load_peak, **timings)


def run_naive(workdir: Path, device: str) -> dict:
    import torch
    import torchvision
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler
    from torchvision.models.feature_extraction import create_feature_extractor

    stimulus = np.load(workdir / "stimulus.npy")
    baseline = current_rss_mb()
    start = time.perf_counter()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    torch.manual_seed(20200220)
    backbone = torchvision.models.alexnet(weights=None)
    extractor = create_feature_extractor(backbone, return_nodes=NODES).to(dev).eval()
    transform = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms()
    path = workdir / "berg_dir" / FOLDER / "encoding_models_weights" / "weights_subject-01.npy"
    weights = np.load(path, allow_pickle=True).item()
    scaler = StandardScaler()
    for key, value in weights["scaler_param"].items():
        setattr(scaler, key, value)
    pca = PCA(n_components=weights["pca_param"]["n_components_"], random_state=20200220)
    for key, value in weights["pca_param"].items():
        setattr(pca, key, value)
    regressions = []
    for hemisphere in ("lh", "rh"):
        reg = LinearRegression()
        params = weights[f"{hemisphere}_reg_param"]
        vertices = np.arange(N_VERTICES)
        reg.coef_ = params["coef_"][vertices]
        reg.intercept_ = params["intercept_"][vertices]
        reg.n_features_in_ = params["n_features_in_"]
        regressions.append(reg)
    del weights
    loaded = time.perf_counter()
    load_peak = peak_rss_mb()
    images = transform(torch.from_numpy(stimulus))
    lh = rh = None
    for first in range(0, len(images), 100):
        with torch.no_grad():
            outputs = extractor(images[first : first + 100].to(dev))
        features = torch.hstack([torch.flatten(v, start_dim=1) for v in outputs.values()])
        features = features.cpu().numpy()
        projected = pca.transform(scaler.transform(features)).astype(np.float32)
        lh_batch = regressions[0].predict(projected).astype(np.float32)
        rh_batch = regressions[1].predict(projected).astype(np.float32)
        lh = lh_batch if lh is None else np.append(lh, lh_batch, 0)
        rh = rh_batch if rh is None else np.append(rh, rh_batch, 0)
    done = time.perf_counter()
    return _report(
        workdir,
        "naive",
        lh,
        rh,
        baseline=baseline,
        load_peak=load_peak,
        start=start,
        loaded=loaded,
        done=done,
    )


def _report(workdir: Path, name: str, lh: np.ndarray, rh: np.ndarray, **timings: float) -> dict:
    return report(workdir, name, {"lh": lh, "rh": rh}, COMPARED, **timings)


# -- driver -----------------------------------------------------------------------------------
def _child(args: argparse.Namespace) -> int:
    # Both pipelines need torch and torchvision: run_child imports them before any clock.
    if args.run == "naive":
        return run_child(lambda: run_naive(args.workdir, args.device), args.threads)
    hdf5 = args.run == "berg-hdf5"
    return run_child(
        lambda: run_berg(args.workdir, args.device, args.batch_size, hdf5), args.threads
    )


def _child_args(args: argparse.Namespace) -> list[str]:
    extra = ["--device", args.device]
    if args.batch_size:
        extra += ["--batch-size", str(args.batch_size)]
    if args.threads:
        extra += ["--threads", str(args.threads)]
    return extra


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500, help="number of images (500)")
    parser.add_argument("--components", type=int, default=250, help="PCA components (250)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (cpu)")
    parser.add_argument("--batch-size", type=int, help="berg's batch size (default: berg's)")
    parser.add_argument("--threads", type=int, help="torch threads in every pipeline")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument(
        "--pipelines",
        default="naive,berg,berg-hdf5",
        help="comma-separated subset of naive,berg,berg-hdf5",
    )
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the data in this folder")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--run", choices=["naive", "berg", "berg-hdf5"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        return _child(args)

    pipelines = args.pipelines.split(",")
    with tempfile.TemporaryDirectory(prefix="berg-bench-") as tmp:
        if args.workdir is None:
            args.workdir = Path(tmp)
        args.workdir.mkdir(parents=True, exist_ok=True)
        ensure_data(
            args.workdir,
            args.images,
            lambda: write_data(args.workdir, args.images, args.components),
            f"{args.images} images and a full-size berg_dir",
        )
        size = sum(p.stat().st_size for p in (args.workdir / "berg_dir").rglob("*.npy"))
        print(
            f"berg_dir {size / 1e9:.2f} GB, {args.images} images 3x256x256 uint8, device "
            f"{args.device}, {os.cpu_count()} CPU cores; each pipeline in its own process, "
            f"{args.repeat} interleaved rounds"
        )
        results = compare_pipelines(
            __file__, args.workdir, pipelines, _child_args(args), ("lh", "rh"), args.repeat
        )
        if args.json:
            args.json.write_text(json.dumps({"args": vars(args), "results": results}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

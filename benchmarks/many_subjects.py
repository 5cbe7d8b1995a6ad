"""Benchmark: the reference paper's in-silico loop (8 NSD subjects x 3 ROIs, one image set).

The published script loads one model per subject x ROI and encodes the same images with each.
This benchmark runs that user code unchanged with berg, and a reference-style pipeline doing the
same loop the way the reference toolkit does (a fresh seeded AlexNet per model,
``np.load(allow_pickle=True)``, scikit-learn objects, the whole stimulus transformed at once,
batches of 100, ``np.append``), each pipeline in its own fresh process so that peak memory
cannot mix:

* ``naive`` - the reference-style loop;
* ``berg`` - ``get_encoding_model(..., selection={"roi": roi})`` + ``BERG.encode`` per model:
  the backbone is built once (``torchkit.shared_backbone``) and its features of the image set
  come from the process's content-keyed feature cache after the first model;
* ``berg-nocache`` - the same with ``BERG_FEATURE_CACHE_BYTES=0`` (shared backbone only).

It writes reference-layout berg_dirs for 8 subjects with random float32 weights (full feature
size D = 205,672 and 163,842 vertices per hemisphere; ``--components`` PCA components, 50 by
default to keep the files small: 0.11 GB per subject, 0.55 GB with ``--full``'s 250) and random
256 x 256 uint8 images, then prints each pipeline's throughput (model-images per second over the
whole loop, loading included), peak RSS, their ratios against ``naive`` and the largest
difference of all responses.

Usage::

    python benchmarks/many_subjects.py             # 100 images, 50 components, 1 round, CPU
    python benchmarks/many_subjects.py --full      # 500 images, 250 components, 3 rounds
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from encode_nsd import FEATURE_DIM, FOLDER, MODEL_ID, N_VERTICES, NODES
from harness import (
    compare_pipelines,
    current_rss_mb,
    report,
    run_child,
    synthetic_readout,
    synthetic_regression,
)

SUBJECTS = tuple(range(1, 9))
ROIS = ("V1v", "FFA-1", "PPA")
EVERY_COLUMN = np.array([2**62])  # report(): keep all columns (ROI outputs are small)


def _path(workdir: Path, kind: str, subject: int) -> Path:
    folder = "encoding_models_weights" if kind == "weights" else "metadata"
    return workdir / "berg_dir" / FOLDER / folder / f"{kind}_subject-{subject:02d}.npy"


def write_data(workdir: Path, n_images: int, components: int, seed: int = 0) -> None:
    """Write 8 subjects' weights and metadata (reference layout) and the stimulus."""
    rng = np.random.default_rng(seed)
    for subject in SUBJECTS:
        weights = synthetic_readout(rng, FEATURE_DIM, components, n_samples=9000)
        for hemisphere in ("lh", "rh"):
            weights[f"{hemisphere}_reg_param"] = synthetic_regression(rng, N_VERTICES, components)
        path = _path(workdir, "weights", subject)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, weights, allow_pickle=True)
        del weights
        tables = {
            h: {roi: np.sort(rng.choice(N_VERTICES, 400 + 300 * i, replace=False))
                for i, roi in enumerate(ROIS)}
            for h in ("lh", "rh")
        }  # fmt: skip
        metadata = {
            "fmri": {
                "lh_ncsnr": np.ones(N_VERTICES, np.float32),
                "rh_ncsnr": np.ones(N_VERTICES, np.float32),
                "lh_fsaverage_rois": tables["lh"],
                "rh_fsaverage_rois": tables["rh"],
            },
            "encoding_models": {"train_img_num": np.arange(9000)},
        }
        meta = _path(workdir, "metadata", subject)
        meta.parent.mkdir(parents=True, exist_ok=True)
        np.save(meta, metadata, allow_pickle=True)
    stimulus = rng.integers(0, 256, (n_images, 3, 256, 256), dtype=np.uint8)
    np.save(workdir / "stimulus.npy", stimulus)


# -- pipelines (each runs in its own subprocess) ----------------------------------------------
def run_berg(workdir: Path, device: str, name: str) -> dict:
    from berg_core import BERG

    images = np.load(workdir / "stimulus.npy")
    baseline = current_rss_mb()
    berg = BERG(workdir / "berg_dir")
    start = time.perf_counter()
    results = {}
    # The paper's loop, as a user writes it: one model per subject x ROI, never closed.
    for subject in SUBJECTS:
        for roi in ROIS:
            model = berg.get_encoding_model(
                MODEL_ID, subject=subject, selection={"roi": roi}, device=device
            )
            results[subject, roi] = berg.encode(model, images, show_progress=False)
    done = time.perf_counter()
    return _report(workdir, name, results, baseline, start, done)


def run_naive(workdir: Path, device: str) -> dict:
    import torch
    import torchvision
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler
    from torchvision.models.feature_extraction import create_feature_extractor

    images = np.load(workdir / "stimulus.npy")
    baseline = current_rss_mb()
    start = time.perf_counter()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    results = {}
    for subject in SUBJECTS:
        for roi in ROIS:
            torch.manual_seed(20200220)
            backbone = torchvision.models.alexnet(weights=None)
            extractor = create_feature_extractor(backbone, return_nodes=NODES).to(dev).eval()
            transform = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms()
            metadata = np.load(_path(workdir, "metadata", subject), allow_pickle=True).item()
            weights = np.load(_path(workdir, "weights", subject), allow_pickle=True).item()
            scaler = StandardScaler()
            for key, value in weights["scaler_param"].items():
                setattr(scaler, key, value)
            pca = PCA(n_components=weights["pca_param"]["n_components_"], random_state=20200220)
            for key, value in weights["pca_param"].items():
                setattr(pca, key, value)
            regressions = []
            for hemisphere in ("lh", "rh"):
                vertices = metadata["fmri"][f"{hemisphere}_fsaverage_rois"][roi]
                reg = LinearRegression()
                params = weights[f"{hemisphere}_reg_param"]
                reg.coef_ = params["coef_"][vertices]
                reg.intercept_ = params["intercept_"][vertices]
                reg.n_features_in_ = params["n_features_in_"]
                regressions.append(reg)
            del weights
            x = transform(torch.from_numpy(images))
            lh = rh = None
            for first in range(0, len(x), 100):
                with torch.no_grad():
                    outputs = extractor(x[first : first + 100].to(dev))
                features = torch.hstack([torch.flatten(v, start_dim=1) for v in outputs.values()])
                projected = pca.transform(scaler.transform(features.cpu().numpy()))
                projected = projected.astype(np.float32)
                lh_batch = regressions[0].predict(projected).astype(np.float32)
                rh_batch = regressions[1].predict(projected).astype(np.float32)
                lh = lh_batch if lh is None else np.append(lh, lh_batch, 0)
                rh = rh_batch if rh is None else np.append(rh, rh_batch, 0)
            results[subject, roi] = (lh, rh)
    done = time.perf_counter()
    return _report(workdir, "naive", results, baseline, start, done)


def _report(workdir: Path, name: str, results: dict, baseline: float, start: float,
            done: float) -> dict:  # fmt: skip
    """All models' responses side by side; throughput counts model-images over the whole loop."""
    keys = [(s, r) for s in SUBJECTS for r in ROIS]
    outputs = {h: np.hstack([results[k][i] for k in keys]) for i, h in enumerate(("lh", "rh"))}
    timings = {"start": start, "loaded": start, "done": done}  # loading is part of the loop
    result = report(workdir, name, outputs, EVERY_COLUMN, baseline=baseline, load_peak=baseline,
                    **timings)  # fmt: skip
    result["images"] *= len(keys)
    return result


# -- driver -----------------------------------------------------------------------------------
def _child(args: argparse.Namespace) -> int:
    if args.run == "naive":
        return run_child(lambda: run_naive(args.workdir, args.device), args.threads)
    return run_child(lambda: run_berg(args.workdir, args.device, args.run), args.threads)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--images", type=int, help="number of images (100; --full 500)")
    parser.add_argument("--components", type=int, help="PCA components (50; --full 250)")
    parser.add_argument("--repeat", type=int, help="interleaved rounds (1; --full 3)")
    parser.add_argument("--full", action="store_true", help="500 images, 250 components, 3 rounds")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (cpu)")
    parser.add_argument("--threads", type=int, help="torch threads in every pipeline")
    parser.add_argument(
        "--pipelines", default="naive,berg,berg-nocache", help="subset of naive,berg,berg-nocache"
    )
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the data in this folder")
    parser.add_argument("--run", choices=["naive", "berg", "berg-nocache"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        if args.run == "berg-nocache":
            os.environ["BERG_FEATURE_CACHE_BYTES"] = "0"
        return _child(args)
    images = args.images or (500 if args.full else 100)
    components = args.components or (250 if args.full else 50)
    repeat = args.repeat or (3 if args.full else 1)
    with tempfile.TemporaryDirectory(prefix="berg-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        marker = workdir / f"written-{images}-{components}"
        if not marker.is_file():
            start = time.perf_counter()
            write_data(workdir, images, components)
            marker.touch()
            took = time.perf_counter() - start
            print(f"wrote 8 subjects' files and {images} images in {took:.1f} s")
        size = sum(p.stat().st_size for p in (workdir / "berg_dir").rglob("*.npy"))
        print(
            f"8 subjects x {len(ROIS)} ROIs ({', '.join(ROIS)}), berg_dir {size / 1e9:.2f} GB "
            f"({components} components), {images} images 3x256x256 uint8, device {args.device}, "
            f"{os.cpu_count()} CPU cores; each pipeline in its own process, {repeat} round(s)"
        )
        extra = ["--device", args.device] + (
            ["--threads", str(args.threads)] if args.threads else []
        )
        compare_pipelines(__file__, workdir, args.pipelines.split(","), extra, ("lh", "rh"), repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())

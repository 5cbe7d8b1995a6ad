"""Benchmark: berg-things-eeg2 against a reference-style pipeline, in the same run.

Writes a berg_dir for ``eeg-things_eeg_2-alexnet_untrained`` subject 1 into a temporary folder
(generation B weights in the reference layout: one StandardScaler, one PCA and one regression per
repetition, D = 205,672 AlexNet features, 63 channels x 140 times; random float32 values) and a
random uint8 stimulus, then runs each pipeline in its own fresh subprocess so that their peak
memory cannot mix:

* ``berg`` - ``BERG(berg_dir).get_encoding_model(...)`` + ``BERG.encode`` (safe loader, batched
  preprocessing, torch float32 readout with the scaler shared by the repetitions);
* ``naive`` - what the reference toolkit does: ``np.load(allow_pickle=True)`` on the file this
  benchmark wrote, scikit-learn ``StandardScaler``, one ``PCA`` and one ``LinearRegression`` per
  repetition, batches of 100 through ``create_feature_extractor``, each repetition transformed
  separately, outputs grown with ``np.append``.

The parent checks that the pipelines agree on a subsample of the responses and prints throughput
and peak-memory ratios (:mod:`harness`).

Usage::

    python benchmarks/encode_eeg.py                    # 200 images, 100 components, CPU
    python benchmarks/encode_eeg.py --full             # 500 images, 250 components (as released)
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

MODEL_ID = "eeg-things_eeg_2-alexnet_untrained"
FOLDER = "encoding_models/modality-eeg/train_dataset-things_eeg_2/model-alexnet_untrained"
WEIGHTS = FOLDER + "/encoding_models_weights/weights_subject-01.npy"
REPETITIONS = ("rep-1", "rep-2", "rep-3", "rep-4")
N_CHANNELS, N_TIMES = 63, 140
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
COMPARED = np.arange(0, len(REPETITIONS) * N_CHANNELS * N_TIMES, 97)  # flattened columns


# -- data -------------------------------------------------------------------------------------
def write_data(workdir: Path, n_images: int, components: int, seed: int = 0) -> None:
    """Write the berg_dir (weights + metadata of subject 1) and the stimulus into *workdir*."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "berg-things-eeg2"))
    from berg_things_eeg2.fixture import make_metadata

    rng = np.random.default_rng(seed)
    weights = synthetic_readout(rng, FEATURE_DIM, components, n_samples=16540)
    pca = {}
    for rep in REPETITIONS:  # one PCA per repetition (generation B)
        pca[rep] = synthetic_readout(rng, FEATURE_DIM, components, 16540)["pca_param"]
    weights["pca_param"] = pca
    weights["reg_param"] = {
        r: synthetic_regression(rng, N_CHANNELS * N_TIMES, components) for r in REPETITIONS
    }
    path = workdir / "berg_dir" / WEIGHTS
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, weights, allow_pickle=True)
    del weights, pca
    meta_path = workdir / "berg_dir" / FOLDER / "metadata" / "metadata_subject-01.npy"
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(meta_path, make_metadata(1), allow_pickle=True)
    stimulus = rng.integers(0, 256, (n_images, 3, 256, 256), dtype=np.uint8)
    np.save(workdir / "stimulus.npy", stimulus)


# -- pipelines (each runs in its own subprocess) ----------------------------------------------
def run_berg(workdir: Path, device: str, batch_size: int | None) -> dict:
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
    responses = berg.encode(model, stimulus, show_progress=False)
    done = time.perf_counter()
    flat = responses.reshape(len(responses), -1)
    return report(
        workdir,
        "berg",
        {"responses": flat},
        COMPARED,
        baseline=baseline,
        load_peak=load_peak,
        start=start,
        loaded=loaded,
        done=done,
    )


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
    weights = np.load(workdir / "berg_dir" / WEIGHTS, allow_pickle=True).item()
    scaler = StandardScaler()
    for key, value in weights["scaler_param"].items():
        setattr(scaler, key, value)
    models = []
    for rep in REPETITIONS:
        pca = PCA(n_components=weights["pca_param"][rep]["n_components_"])
        for key, value in weights["pca_param"][rep].items():
            setattr(pca, key, value)
        reg = LinearRegression()
        for key, value in weights["reg_param"][rep].items():
            setattr(reg, key, value)
        models.append((pca, reg))
    del weights
    loaded = time.perf_counter()
    load_peak = peak_rss_mb()
    images = transform(torch.from_numpy(stimulus))
    responses = None
    for first in range(0, len(images), 100):
        with torch.no_grad():
            outputs = extractor(images[first : first + 100].to(dev))
        features = torch.hstack([torch.flatten(v, start_dim=1) for v in outputs.values()])
        scaled = scaler.transform(features.cpu().numpy())
        batch = np.stack(
            [
                reg.predict(pca.transform(scaled)).reshape(-1, N_CHANNELS, N_TIMES)
                for pca, reg in models
            ],
            axis=1,
        ).astype(np.float32)
        responses = batch if responses is None else np.append(responses, batch, 0)
    done = time.perf_counter()
    flat = responses.reshape(len(responses), -1)
    return report(
        workdir,
        "naive",
        {"responses": flat},
        COMPARED,
        baseline=baseline,
        load_peak=load_peak,
        start=start,
        loaded=loaded,
        done=done,
    )


# -- driver -----------------------------------------------------------------------------------
def _child(args: argparse.Namespace) -> int:
    # Both pipelines need torch and torchvision: run_child imports them before any clock.
    if args.run == "naive":
        return run_child(lambda: run_naive(args.workdir, args.device), args.threads)
    return run_child(lambda: run_berg(args.workdir, args.device, args.batch_size), args.threads)


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
    parser.add_argument("--images", type=int, help="number of images (200; --full: 500)")
    parser.add_argument("--components", type=int, help="PCA components (100; --full: 250)")
    parser.add_argument("--full", action="store_true", help="the released sizes")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (cpu)")
    parser.add_argument("--batch-size", type=int, help="berg's batch size (default: berg's)")
    parser.add_argument("--threads", type=int, help="torch threads in every pipeline")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved rounds (2)")
    parser.add_argument(
        "--pipelines", default="naive,berg", help="comma-separated subset of naive,berg"
    )
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the data in this folder")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--run", choices=["naive", "berg"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        return _child(args)
    args.images = args.images or (500 if args.full else 200)
    args.components = args.components or (250 if args.full else 100)

    with tempfile.TemporaryDirectory(prefix="berg-bench-") as tmp:
        if args.workdir is None:
            args.workdir = Path(tmp)
        args.workdir.mkdir(parents=True, exist_ok=True)
        ensure_data(
            args.workdir,
            args.images,
            lambda: write_data(args.workdir, args.images, args.components),
            f"{args.images} images and the berg_dir",
        )
        size = sum(p.stat().st_size for p in (args.workdir / "berg_dir").rglob("*.npy"))
        print(
            f"berg_dir {size / 1e9:.2f} GB ({args.components} PCA components per repetition), "
            f"{args.images} images 3x256x256 uint8, device {args.device}, {os.cpu_count()} CPU "
            f"cores; each pipeline in its own process, {args.repeat} interleaved rounds"
        )
        results = compare_pipelines(
            __file__,
            args.workdir,
            args.pipelines.split(","),
            _child_args(args),
            ("responses",),
            args.repeat,
        )
        if args.json:
            args.json.write_text(json.dumps({"args": vars(args), "results": results}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

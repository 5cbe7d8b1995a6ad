"""Benchmark: berg-things against a naive reference-style pipeline, in the same run.

Writes a full-size berg_dir for ``fmri-things_fmri_1-vit_b_32`` subject 1 into a temporary folder
(random float32 weights in the reference layout: 250 PCA components, D = 460,800 features,
211,339 voxels; about 0.67 GB), random ViT-B/32 weights where torchvision's cache expects
``vit_b_32-d86f8d99.pth``, and a random uint8 stimulus. Each pipeline runs in its own fresh
subprocess so that peak memory cannot mix (see :mod:`harness`):

* ``berg`` - ``BERG(berg_dir).get_encoding_model(...)`` + ``BERG.encode``;
* ``berg-hdf5`` - the same model streamed to HDF5 (what ``berg encode`` does);
* ``naive`` - what the reference toolkit does: ``np.load(allow_pickle=True)``, scikit-learn
  objects, the transform applied to the whole stimulus at once, forward hooks on the 12 encoder
  blocks, batches of 100, outputs grown with ``np.append``.

Usage::

    python benchmarks/encode_things.py                 # 300 images, CPU
    python benchmarks/encode_things.py --images 100 --repeat 1
"""

from __future__ import annotations

import argparse
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

MODEL_ID = "fmri-things_fmri_1-vit_b_32"
FOLDER = "encoding_models/modality-fmri/train_dataset-things_fmri_1/model-vit_b_32"
N_VOXELS = 211_339
FEATURE_DIM = 12 * 50 * 768
COMPARED = np.arange(0, N_VOXELS, 97)


def write_data(workdir: Path, n_images: int, components: int, seed: int = 0) -> None:
    """Write the berg_dir, the ViT-B/32 cache file and the stimulus into *workdir*."""
    import torch
    import torchvision

    rng = np.random.default_rng(seed)
    weights = synthetic_readout(rng, FEATURE_DIM, components, n_samples=8640)
    weights["reg_param"] = synthetic_regression(rng, N_VOXELS, components)
    path = workdir / "berg_dir" / FOLDER / "encoding_models_weights" / "weights_sub-01.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, weights, allow_pickle=True)
    del weights
    metadata = {
        "fmri": {
            "voxel_coords": np.stack(np.unravel_index(np.arange(N_VOXELS), (72, 91, 76)), 1),
            "n_voxels": N_VOXELS,
            "subject_id": 1,
        },
        "encoding_model": {"correlation_results": np.zeros(N_VOXELS, np.float32)},
        "prf": {},
        "roi": {"V1": np.arange(0, 900, dtype=np.int64)},
    }
    meta_path = workdir / "berg_dir" / FOLDER / "metadata" / "metadata_sub-01.npy"
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(meta_path, metadata, allow_pickle=True)
    vit = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    cache = workdir / "torch_home" / "hub" / "checkpoints" / Path(vit.url).name
    cache.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.save(torchvision.models.vit_b_32(weights=None).state_dict(), cache)
    stimulus = rng.integers(0, 256, (n_images, 3, 256, 256), dtype=np.uint8)
    np.save(workdir / "stimulus.npy", stimulus)


def run_berg(workdir: Path, device: str, hdf5: bool) -> dict:
    from berg_core import BERG

    stimulus = np.load(workdir / "stimulus.npy")
    baseline = current_rss_mb()
    start = time.perf_counter()
    model = BERG(workdir / "berg_dir").get_encoding_model(MODEL_ID, subject=1, device=device)
    loaded = time.perf_counter()
    load_peak = peak_rss_mb()
    name = "berg-hdf5" if hdf5 else "berg"
    if hdf5:
        import h5py

        from berg_core.output import encode_to_hdf5
        from berg_core.stimulus import as_stimulus

        out = workdir / "berg.h5"
        encode_to_hdf5(model, as_stimulus(stimulus), out, force=True, show_progress=False)
        done = time.perf_counter()
        peak = peak_rss_mb()
        with h5py.File(out, "r") as h5:
            responses = h5["responses"][:, COMPARED]
    else:
        responses = BERG(workdir / "berg_dir").encode(model, stimulus, show_progress=False)
        done = time.perf_counter()
        peak = peak_rss_mb()
    result = report(
        workdir, name, {"responses": responses}, COMPARED, baseline=baseline,
        load_peak=load_peak, start=start, loaded=loaded, done=done,
    )  # fmt: skip
    if hdf5:
        result["peak_rss_mb"] = peak  # before reading the compared columns back
    return result


def run_naive(workdir: Path, device: str) -> dict:
    import torch
    import torchvision
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import StandardScaler

    stimulus = np.load(workdir / "stimulus.npy")
    baseline = current_rss_mb()
    start = time.perf_counter()
    dev = torch.device(
        "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    )
    vit = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    model = torchvision.models.vit_b_32(weights=vit).to(dev).eval()
    captured: list = []
    for block in model.encoder.layers:
        block.register_forward_hook(lambda _m, _i, out: captured.append(out))
    transform = vit.transforms()
    path = workdir / "berg_dir" / FOLDER / "encoding_models_weights" / "weights_sub-01.npy"
    weights = np.load(path, allow_pickle=True).item()
    scaler = StandardScaler()
    for key, value in weights["scaler_param"].items():
        setattr(scaler, key, value)
    pca = PCA(n_components=weights["pca_param"]["n_components_"], random_state=20200220)
    for key, value in weights["pca_param"].items():
        setattr(pca, key, value)
    regression = LinearRegression()
    regression.coef_ = weights["reg_param"]["coef_"].astype(np.float32)
    regression.intercept_ = weights["reg_param"]["intercept_"].astype(np.float32)
    regression.n_features_in_ = weights["reg_param"]["n_features_in_"]
    del weights
    loaded = time.perf_counter()
    load_peak = peak_rss_mb()
    images = transform(torch.from_numpy(stimulus))
    responses = None
    for first in range(0, len(images), 100):
        captured.clear()
        with torch.no_grad():
            model(images[first : first + 100].to(dev))
        features = torch.cat([out.flatten(1, 2) for out in captured], dim=-1).cpu().numpy()
        batch = regression.predict(pca.transform(scaler.transform(features)).astype(np.float32))
        responses = batch if responses is None else np.append(responses, batch, 0)
    done = time.perf_counter()
    return report(
        workdir, "naive", {"responses": responses}, COMPARED, baseline=baseline,
        load_peak=load_peak, start=start, loaded=loaded, done=done,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300, help="number of images (300)")
    parser.add_argument("--components", type=int, default=250, help="PCA components (250)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (cpu)")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved rounds (2)")
    parser.add_argument("--pipelines", default="naive,berg,berg-hdf5")
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the data in this folder")
    parser.add_argument("--run", choices=["naive", "berg", "berg-hdf5"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        os.environ["TORCH_HOME"] = str(args.workdir / "torch_home")
        if args.run == "naive":
            return run_child(lambda: run_naive(args.workdir, args.device))
        return run_child(lambda: run_berg(args.workdir, args.device, args.run == "berg-hdf5"))

    with tempfile.TemporaryDirectory(prefix="berg-bench-things-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        ensure_data(workdir, args.images, lambda: write_data(workdir, args.images, args.components))
        print(
            f"{args.images} images 3x256x256 uint8, {N_VOXELS} voxels, {args.components} "
            f"components, device {args.device}, {os.cpu_count()} CPU cores; each pipeline in its "
            f"own process, {args.repeat} interleaved rounds"
        )
        compare_pipelines(
            __file__, workdir, args.pipelines.split(","), ["--device", args.device],
            ("responses",), args.repeat,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

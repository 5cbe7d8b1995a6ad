"""Benchmark: FactorTopy training, current readout against 0.1's, with and without token cache.

Writes a synthetic subject in the Algonauts 2023 layout into a work folder (smooth random PNG
images, responses of ``--vertices`` fsaverage vertices per hemisphere, FreeSurfer-format
icospheres of 163,842 vertices), then trains the same encoder once per cache mode, each in its
own fresh subprocess so that their peak memory cannot mix:

* ``ram`` - the backbone runs once per image; tokens (float16) stay in RAM;
* ``disk`` - the same, tokens in an HDF5 file in the checkpoint folder;
* ``none`` - no cache: the backbone runs on every training (and validation) step.

Each subprocess reports the setup time (building the backbone, running it over every image to fill
the cache, channel statistics), the time of each epoch (training steps plus the validation pass),
training images per second (training images / epoch time, so validation is included), its peak
resident memory (``ru_maxrss``: interpreter, torch, backbone, cache, data) and, on CUDA, its peak
GPU memory. The parent prints them with the ratios against ``none``, and checks that every mode
reached the same validation R² (float16 tokens against float32 ones).

Each cache mode runs with each ``--readouts``: ``current`` (:meth:`FactorTopy.readout`: one
``embedding_bag`` gather over all layers, readout by elementwise product and sum) and
``reference`` (:func:`reference_readout`, berg-factortopy 0.1's: ``grid_sample`` per layer on a
grid repeated for every image, then ``einsum("bdv,vd->bv")``), and the parent prints the
``current / reference`` training throughput. By default only the RAM cache runs (the setting
whose speed the readout decides); ``--modes ram disk none`` adds the cache comparison.

The backbone is a built-in with random weights (``pretrained: false``: nothing is downloaded),
whose cost equals the pretrained network's.

Usage::

    python benchmarks/factortopy_train.py                          # ViT-B/16, CPU
    python benchmarks/factortopy_train.py --full                   # 10,000 vertices/hemisphere
    python benchmarks/factortopy_train.py --modes ram disk none --readouts current
    python benchmarks/factortopy_train.py --backbone vit_b_32 --vertices 20000 --device cuda

How much the cache saves depends on what dominates a training step: the backbone's forward pass
(which the cache removes) or FactorTopy's own work, which grows with the number of vertices (one
bilinear sample per layer and vertex, forward and backward). With few vertices the backbone
dominates; with tens of thousands of vertices on a CPU the FactorTopy head does.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from harness import current_rss_mb, peak_rss_mb, print_result, spawn

MODES = ("ram", "disk", "none")
READOUTS = ("reference", "current")


def reference_readout(maps: Any, globals_: Any, selection: Any, weight: Any, bias: Any) -> Any:
    """berg-factortopy 0.1's readout: ``grid_sample`` per layer, then an einsum (the baseline)."""
    import torch
    from torch.nn import functional

    batch = globals_.shape[0]
    vertices = selection.location.shape[0]
    grid = selection.location.view(1, vertices, 1, 2).expand(batch, vertices, 1, 2)
    local = None
    for index, fmap in enumerate(maps):
        sampled = functional.grid_sample(
            fmap, grid, mode="bilinear", padding_mode="border", align_corners=False
        ).squeeze(3)  # (B, D, V)
        term = sampled * selection.layer[:, index]
        local = term if local is None else local + term
    global_ = globals_ @ selection.layer.T  # (B, D, V)
    mixed = torch.lerp(local, global_, selection.scale)
    return torch.einsum("bdv,vd->bv", mixed, weight) + bias


def write_subject(workdir: Path, images: int, size: int, vertices: int, seed: int = 0) -> None:
    """A synthetic Algonauts 2023 subject ``workdir/subj01`` and spheres ``workdir/surf``."""
    from berg_factortopy.sphere import icosphere, write_sphere
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = workdir / "subj01"
    if (root / "done").exists():
        return
    sphere, faces = icosphere(7)
    for hemi in ("lh", "rh"):
        write_sphere(workdir / "surf" / f"{hemi}.sphere", sphere, faces)
    folder = root / "training_split" / "training_images"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(low).resize((size, size), Image.BICUBIC)
        image.save(folder / f"train-{i + 1:04d}_nsd-{i:05d}.png")
    (root / "training_split" / "training_fmri").mkdir(parents=True, exist_ok=True)
    (root / "roi_masks").mkdir(parents=True, exist_ok=True)
    cap = np.flatnonzero(sphere[:, 2] > 0.3)
    for hemi in ("lh", "rh"):
        mask = np.zeros(len(sphere), dtype=np.int64)
        mask[rng.choice(cap, vertices, replace=False)] = 1
        np.save(root / "roi_masks" / f"{hemi}.all-vertices_fsaverage_space.npy", mask)
        responses = rng.normal(size=(images, vertices)).astype(np.float32)
        np.save(root / "training_split" / "training_fmri" / f"{hemi}_training_fmri.npy", responses)
    (root / "done").write_text("")


def run_child(args: argparse.Namespace) -> None:
    """Train once with cache mode ``args.run`` and print the measurements."""
    import torch
    from berg_factortopy.config import TrainConfig
    from berg_factortopy.data import TrainingData
    from berg_factortopy.network import FactorTopy
    from berg_factortopy.train import train

    if args.readout == "reference":
        FactorTopy.readout = staticmethod(reference_readout)  # type: ignore[method-assign]
    workdir = Path(args.workdir)
    data = TrainingData.from_algonauts(workdir / "subj01")
    config = TrainConfig(
        backbone=args.backbone,
        backbone_kwargs={"pretrained": False},
        epochs=args.epochs,
        batch_size=args.batch_size,
        cache=args.run,
        cache_dtype="float16",
        device=args.device,
        threads=args.threads,
    )
    out = Path(tempfile.mkdtemp(dir=workdir, prefix=f"ckpt-{args.run}-"))
    baseline = current_rss_mb()
    started = time.perf_counter()
    result = train(data, workdir / "surf", out / "ckpt", config, show_progress=False)
    total = time.perf_counter() - started
    epochs = [h["seconds"] for h in result.history]
    n_train = json.loads((out / "ckpt" / "config.json").read_text())["data"]["n_train"]
    cuda = torch.cuda.is_available() and config.device != "cpu"
    print_result(
        {
            "mode": args.run,
            "readout": args.readout,
            "n_train": n_train,
            "n_val": len(result.val_indices),
            "vertices": data.n_vertices,
            "setup_s": total - sum(epochs),
            "epoch_s": epochs,
            "images_per_s": n_train / float(np.mean(epochs)),
            "total_s": total,
            "val_r2_mean": result.val_r2_mean,
            "baseline_rss_mb": baseline,
            "peak_rss_mb": peak_rss_mb(),
            "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "torch_threads": torch.get_num_threads(),
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=96, help="training + validation images")
    parser.add_argument("--image-size", type=int, default=425, help="side of the PNG images")
    parser.add_argument("--vertices", type=int, default=1000, help="vertices per hemisphere")
    parser.add_argument("--backbone", default="vit_b_16", help="built-in backbone")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode (best is kept)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["ram"])
    parser.add_argument("--readouts", nargs="+", choices=READOUTS, default=list(READOUTS))
    parser.add_argument(
        "--full", action="store_true", help="a bigger problem: 256 images, 10,000 vertices/hemi"
    )
    parser.add_argument("--workdir", help="keep the synthetic data here (default: temporary)")
    parser.add_argument("--run", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--readout", choices=READOUTS, default="current", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        run_child(args)
        return
    if args.full:
        args.images, args.vertices = max(args.images, 256), max(args.vertices, 10_000)
    with tempfile.TemporaryDirectory(prefix="factortopy-bench-") as temporary:
        workdir = Path(args.workdir or temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        write_subject(workdir, args.images, args.image_size, args.vertices)
        child = [
            "--workdir", str(workdir), "--backbone", args.backbone, "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--device", args.device,
        ]  # fmt: skip
        if args.threads:
            child += ["--threads", str(args.threads)]
        keys = [(mode, readout) for mode in args.modes for readout in args.readouts]
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in keys}
        for _ in range(args.repeat):
            for mode, readout in keys:
                runs[(mode, readout)].append(
                    spawn(__file__, ["--run", mode, "--readout", readout, *child])
                )
        best = {key: max(r, key=lambda x: x["images_per_s"]) for key, r in runs.items()}
        first = next(iter(best.values()))
        print(
            f"{args.backbone} on {args.device}: {first['n_train']} training + {first['n_val']} "
            f"validation images of {args.image_size} px, {first['vertices']} vertices, "
            f"{args.epochs} epochs, batch {args.batch_size}, {first['torch_threads']} threads"
        )
        for (mode, readout), r in best.items():
            gpu = f", GPU peak {r['cuda_peak_mb']:.0f} MiB" if r["cuda_peak_mb"] else ""
            print(
                f"{mode:>5} {readout:>9}: {r['images_per_s']:7.1f} training img/s (epochs "
                f"{', '.join(f'{s:.1f}' for s in r['epoch_s'])} s; setup incl. caching "
                f"{r['setup_s']:.1f} s; total {r['total_s']:.1f} s)  peak RSS "
                f"{r['peak_rss_mb']:.0f} MiB ({r['baseline_rss_mb']:.0f} before training){gpu}  "
                f"val R² {r['val_r2_mean']:+.4f}"
            )
        for mode in args.modes:
            if {"current", "reference"} <= set(args.readouts):
                new, old = best[(mode, "current")], best[(mode, "reference")]
                print(
                    f"{mode}: current / reference readout: training throughput "
                    f"x{new['images_per_s'] / old['images_per_s']:.2f}, end to end "
                    f"x{old['total_s'] / new['total_s']:.2f}, val R² difference "
                    f"{new['val_r2_mean'] - old['val_r2_mean']:+.1e}"
                )
        if "none" in args.modes:
            for readout in args.readouts:
                base = best[("none", readout)]
                for mode in args.modes:
                    if mode == "none":
                        continue
                    r = best[(mode, readout)]
                    print(
                        f"{mode} / none ({readout} readout): training throughput "
                        f"x{r['images_per_s'] / base['images_per_s']:.1f}, end to end "
                        f"x{base['total_s'] / r['total_s']:.2f}, peak RSS "
                        f"x{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}"
                    )
        spread = max(abs(r["val_r2_mean"] - first["val_r2_mean"]) for r in best.values())
        print(f"max difference of mean validation R² between runs: {spread:.1e}")


if __name__ == "__main__":
    sys.exit(main())

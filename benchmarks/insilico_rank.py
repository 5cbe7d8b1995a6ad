"""Benchmark: ``berg_insilico.rank`` against the hand-written loop, for 1 and for 8 subjects.

The task: rank N images by an area's mean response (NSD ROI ``V1v``, both hemispheres) for one
subject and for 8 subjects, and keep each subject's top-k images. Each pipeline runs in its own
fresh process (peak memory cannot mix):

* ``hand-S`` - what a user writes by hand: load every image (``np.load``), then for each of the
  S subjects ``get_encoding_model(..., selection={"roi": "V1v"})`` + ``BERG.encode`` of all
  images, keep every response, then average over vertices and ``np.argsort``. It gets berg's
  content-keyed feature cache like any berg user (by default at most 1 GiB: AlexNet's features
  are 0.8 MB per image, so the cache serves subjects 2-8 while N is below about 1,300 images and
  stops helping above);
* ``rank-S`` - ``berg_insilico.rank`` streaming the memory-mapped ``.npy`` in blocks of 256
  images through the S encoders in turn (block-major: the backbone runs once per block, every
  subject reuses its features from the cache), keeping top/bottom-k, running statistics and one
  float per image and subject;
* ``lean-S`` - the same with ``BERG_FEATURE_CACHE_BYTES`` bounded to one block's features
  (256 MiB: ranking reuses a block's features across encoders and never needs them again), as
  docs/insilico.md recommends; the cache no longer grows to its 1 GiB default.

It writes reference-layout berg_dirs of ``fmri-nsd_fsaverage-alexnet_untrained`` for 8 subjects
(random float32 weights; full feature size D = 205,672 and 163,842 vertices per hemisphere,
``--components`` PCA components, 20 by default to keep the files small) and N random
``3 x 128 x 128`` uint8 images, then prints each pipeline's throughput (images per second, model
loading included), peak RSS (the baseline printed is after the imports only: the hand loop
loads the images after it), the ratios ``rank-S / hand-S`` and ``lean-S / hand-S``, whether the
top-k images are the same, and the largest difference of the per-image scores.

Usage::

    python benchmarks/insilico_rank.py           # 1,000 images, 1 round, CPU
    python benchmarks/insilico_rank.py --full    # 20,000 images, 1 round
    python benchmarks/insilico_rank.py --subjects 8 --pipelines hand,lean
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from encode_nsd import MODEL_ID
from harness import compare_pipelines, current_rss_mb, report, run_child
from many_subjects import write_data as write_subjects

SUBJECTS = tuple(range(1, 9))
ROI = "V1v"
K = 25
LEAN_CACHE_BYTES = 256 * 2**20  # >= one block of 256 AlexNet feature vectors (0.8 MB each)
EVERY_COLUMN = np.array([2**62])  # report(): keep every column


def write_data(workdir: Path, n_images: int, components: int, size: int) -> None:
    """8 subjects' files (``many_subjects.write_data``) and N ``(3, size, size)`` images."""
    write_subjects(workdir, 1, components)
    rng = np.random.default_rng(1)
    stimulus = np.lib.format.open_memmap(
        workdir / "images.npy", "w+", np.uint8, (n_images, 3, size, size)
    )
    for first in range(0, n_images, 1000):  # written in blocks: --full does not need the RAM
        stop = min(first + 1000, n_images)
        stimulus[first:stop] = rng.integers(0, 256, (stop - first, 3, size, size), np.uint8)
    stimulus.flush()
    del stimulus


# -- pipelines (each runs in its own subprocess) ----------------------------------------------
def run_hand(workdir: Path, n_subjects: int, device: str) -> dict:
    """Encode everything, keep every response, then sort."""
    from berg_core import BERG

    baseline = current_rss_mb()
    start = time.perf_counter()
    images = np.load(workdir / "images.npy")
    berg = BERG(workdir / "berg_dir")
    responses = {}
    for subject in SUBJECTS[:n_subjects]:
        model = berg.get_encoding_model(MODEL_ID, subject, {"roi": ROI}, device)
        responses[subject] = berg.encode(model, images, show_progress=False)
    scores = np.stack(
        [
            np.concatenate(responses[s], axis=1).mean(axis=1, dtype=np.float64).astype(np.float32)
            for s in SUBJECTS[:n_subjects]
        ],
        axis=1,
    )
    top = np.argsort(-scores, axis=0, kind="stable")[:K]
    done = time.perf_counter()
    return _report(workdir, f"hand-{n_subjects}", scores, top, baseline, start, done)


def run_rank(workdir: Path, n_subjects: int, device: str) -> dict:
    """``berg_insilico.rank`` over the memory-mapped images."""
    import berg_insilico as bi

    from berg_core import BERG

    baseline = current_rss_mb()
    start = time.perf_counter()
    images = np.load(workdir / "images.npy", mmap_mode="r")
    result = bi.rank(
        BERG(workdir / "berg_dir"),
        bi.Area("V1", MODEL_ID, {"roi": ROI}),
        images,
        subjects=SUBJECTS[:n_subjects],
        k=K,
        block_size=256,
        device=device,
        show_progress=False,
    )
    done = time.perf_counter()
    scores = np.stack([result.scores("V1", s) for s in SUBJECTS[:n_subjects]], axis=1)
    top = np.stack([result[("V1", s)].top.indices[:, 0] for s in SUBJECTS[:n_subjects]], axis=1)
    name = f"{'lean' if os.environ.get('BERG_FEATURE_CACHE_BYTES') else 'rank'}-{n_subjects}"
    return _report(workdir, name, scores, top, baseline, start, done)


def _report(workdir, name, scores, top, baseline, start, done) -> dict:
    np.save(workdir / f"{name}_top.npy", top)
    timings = {"start": start, "loaded": start, "done": done}  # loading is part of the task
    return report(workdir, name, {"scores": scores}, EVERY_COLUMN, baseline=baseline,
                  load_peak=baseline, **timings)  # fmt: skip


# -- driver -----------------------------------------------------------------------------------
def _child(args: argparse.Namespace) -> int:
    kind, n_subjects = args.run.split("-")
    if kind == "lean":  # before berg's feature cache is first used
        os.environ["BERG_FEATURE_CACHE_BYTES"] = str(LEAN_CACHE_BYTES)
    runner = run_hand if kind == "hand" else run_rank
    pipeline = partial(runner, args.workdir, int(n_subjects), args.device)
    return run_child(pipeline, args.threads, preload=("torch",))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--images", type=int, help="number of images (1,000; --full 20,000)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (128)")
    parser.add_argument("--components", type=int, default=20, help="PCA components (20)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds (1)")
    parser.add_argument("--full", action="store_true", help="20,000 images")
    parser.add_argument("--subjects", default="1,8", help="subject counts to run (1,8)")
    parser.add_argument("--pipelines", default="hand,rank,lean", help="of hand,rank,lean")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (cpu)")
    parser.add_argument("--threads", type=int, help="torch threads in every pipeline")
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the data in this folder")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        return _child(args)
    images = args.images or (20_000 if args.full else 1_000)
    with tempfile.TemporaryDirectory(prefix="berg-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        marker = workdir / f"written-{images}-{args.components}-{args.size}"
        if not marker.is_file():
            began = time.perf_counter()
            write_data(workdir, images, args.components, args.size)
            marker.touch()
            took = time.perf_counter() - began
            print(f"wrote 8 subjects' files and {images} images in {took:.1f} s")
        print(
            f"rank {images} images 3x{args.size}x{args.size} uint8 by ROI {ROI} (top {K}), "
            f"{args.components} PCA components, device {args.device}, {os.cpu_count()} CPU "
            f"cores; each pipeline in its own process, {args.repeat} round(s)"
        )
        extra = ["--device", args.device] + (
            ["--threads", str(args.threads)] if args.threads else []
        )
        for count in (int(c) for c in args.subjects.split(",")):
            print(f"-- {count} subject(s)")
            names = [f"{kind}-{count}" for kind in args.pipelines.split(",")]
            compare_pipelines(
                __file__, workdir, names, extra, ("scores",), args.repeat, baseline_name=names[0]
            )
            tops = [np.load(workdir / f"{n}_top.npy") for n in names]
            same = all(np.array_equal(tops[0], t) for t in tops[1:])
            print(f"top-{K} images of every subject identical in {', '.join(names)}: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

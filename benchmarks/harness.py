"""Shared machinery of the encoding benchmarks: run pipelines in fresh processes, compare them.

A benchmark script defines its pipelines as functions that load a model, encode a stimulus and
return :func:`report`; :func:`compare_pipelines` runs each one in its own subprocess (so peak
memory cannot mix), repeats the rounds interleaved, prints throughput and peak memory of each and
their ratios against the baseline pipeline, and checks that the pipelines agree.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def current_rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux; else the peak)."""
    try:
        with open("/proc/self/statm") as stream:
            pages = int(stream.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def status_mb(field: str) -> float:
    """A field of ``/proc/self/status`` in MiB (``VmHWM``, ``RssAnon`` ...); NaN off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return float("nan")


def ensure_data(
    workdir: Path, n_images: int, write: Callable[[], None], what: str = "the data"
) -> None:
    """Call *write* unless *workdir* already holds a ``stimulus.npy`` of *n_images* images.

    The encoding benchmarks keep their generated berg_dir and images in ``--workdir`` so that a
    rerun with the same sizes does not write them again; the time spent writing is printed.
    """
    import time

    stimulus_file = workdir / "stimulus.npy"
    if stimulus_file.is_file() and np.load(stimulus_file, mmap_mode="r").shape[0] == n_images:
        return
    started = time.perf_counter()
    write()
    print(f"wrote {what} in {time.perf_counter() - started:.1f} s")


def synthetic_readout(
    rng: np.random.Generator, feature_dim: int, components: int, n_samples: int
) -> dict[str, dict[str, Any]]:
    """Random ``scaler_param`` and ``pca_param`` dicts with the reference toolkit's keys."""
    f32 = np.float32
    scale = rng.uniform(0.5, 2.0, feature_dim).astype(f32)
    return {
        "scaler_param": {
            "scale_": scale,
            "mean_": rng.uniform(0.0, 0.1, feature_dim).astype(f32),
            "var_": scale**2,
            "n_features_in_": feature_dim,
            "n_samples_seen_": n_samples,
        },
        "pca_param": {
            "components_": rng.standard_normal((components, feature_dim), dtype=f32)
            / np.sqrt(f32(feature_dim)),
            "explained_variance_": np.linspace(100, 1, components, dtype=f32),
            "explained_variance_ratio_": np.linspace(0.1, 0.001, components, dtype=f32),
            "singular_values_": np.linspace(900, 90, components, dtype=f32),
            "mean_": rng.standard_normal(feature_dim, dtype=f32) * f32(0.01),
            "n_components_": components,
            "n_samples_": n_samples,
            "noise_variance_": f32(0.5),
            "n_features_in_": feature_dim,
        },
    }


def synthetic_regression(rng: np.random.Generator, rows: int, components: int) -> dict[str, Any]:
    """A random ``*_reg_param`` dict (``coef_`` ``(rows, k)``, ``intercept_``)."""
    f32 = np.float32
    return {
        "coef_": rng.standard_normal((rows, components), dtype=f32) / np.sqrt(f32(components)),
        "intercept_": rng.standard_normal(rows, dtype=f32) * f32(0.1),
        "n_features_in_": components,
    }


def report(
    workdir: Path,
    name: str,
    outputs: Mapping[str, np.ndarray],
    compared: np.ndarray,
    *,
    baseline: float,
    load_peak: float,
    start: float,
    loaded: float,
    done: float,
) -> dict[str, Any]:
    """Measure a finished pipeline and save the *compared* columns of its outputs for checking."""
    peak = peak_rss_mb()
    images = 0
    for output, values in outputs.items():
        if values.shape[1] > compared.max():
            values = values[:, compared]
        np.save(workdir / f"{name}_{output}.npy", values)
        images = int(values.shape[0])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "pipeline": name,
        "images": images,
        "load_s": loaded - start,
        "encode_s": done - loaded,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "baseline_rss_mb": baseline,
        "load_peak_rss_mb": load_peak,
        "peak_rss_mb": peak,
    }


def spawn(script: str, child_args: list[str]) -> dict[str, Any]:
    """Run ``script --run ...`` in a fresh interpreter and return the dict it printed."""
    proc = subprocess.run(
        [sys.executable, script, *child_args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"pipeline {child_args} failed (exit {proc.returncode})")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def print_result(result: Mapping[str, Any]) -> None:
    """Emit a child's result for :func:`spawn`."""
    print("RESULT " + json.dumps(dict(result)))


def run_child(
    pipeline: Callable[[], dict[str, Any]],
    threads: int | None = None,
    preload: tuple[str, ...] = ("torch", "torchvision"),
) -> int:
    """Run one pipeline in this child process and print its result for :func:`spawn`.

    *preload* is imported first, before any clock or memory baseline the pipeline takes; torch
    runs on *threads* threads if given, and the result records how many it used.
    """
    for name in preload:
        importlib.import_module(name)
    import torch

    if threads:
        torch.set_num_threads(threads)
    result = pipeline()
    result["torch_threads"] = torch.get_num_threads()
    print_result(result)
    return 0


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best throughput (the least disturbed run) and median peak memory over repeated runs."""
    best = min(runs, key=lambda r: r["encode_s"])
    return {
        "images": best["images"],
        "encode_s": best["encode_s"],
        "load_s": best["load_s"],
        "images_per_s": best["images"] / best["encode_s"],
        "images_per_s_with_load": best["images"] / (best["encode_s"] + best["load_s"]),
        "peak_rss_mb": float(np.median([r["peak_rss_mb"] for r in runs])),
        "above_baseline_mb": float(
            np.median([r["peak_rss_mb"] - r["baseline_rss_mb"] for r in runs])
        ),
        "baseline_rss_mb": float(np.median([r["baseline_rss_mb"] for r in runs])),
        "load_peak_rss_mb": float(np.median([r["load_peak_rss_mb"] for r in runs])),
        "encode_s_all": [round(r["encode_s"], 2) for r in runs],
        "torch_threads": best.get("torch_threads"),
    }


def compare_pipelines(
    script: str,
    workdir: Path,
    pipelines: list[str],
    child_args: list[str],
    outputs: tuple[str, ...],
    repeat: int,
    baseline_name: str = "naive",
) -> dict[str, dict[str, Any]]:
    """Run every pipeline *repeat* times, interleaved, and print results and ratios."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in pipelines}
    for _ in range(repeat):
        for name in pipelines:
            runs[name].append(
                spawn(script, ["--run", name, "--workdir", str(workdir), *child_args])
            )
    results = {name: summary(r) for name, r in runs.items()}
    for name, r in results.items():
        print(
            f"{name:>10}: {r['images_per_s']:6.1f} img/s (encode {r['encode_s']:.2f} s, runs "
            f"{r['encode_s_all']}; with load {r['images_per_s_with_load']:.1f} img/s)  "
            f"peak RSS {r['peak_rss_mb']:.0f} MiB = {r['baseline_rss_mb']:.0f} after imports "
            f"and stimulus + {r['above_baseline_mb']:.0f} (after load "
            f"{r['load_peak_rss_mb']:.0f})  threads {r['torch_threads']}"
        )
    if baseline_name not in results:
        return results
    base = results[baseline_name]
    reference = {o: np.load(workdir / f"{baseline_name}_{o}.npy") for o in outputs}
    scale = max(float(np.abs(v).max()) for v in reference.values())
    for name, r in results.items():
        if name == baseline_name:
            continue
        diff = max(
            float(np.abs(np.load(workdir / f"{name}_{o}.npy") - reference[o]).max())
            for o in outputs
        )
        speed = r["images_per_s"] / base["images_per_s"]
        speed_load = r["images_per_s_with_load"] / base["images_per_s_with_load"]
        memory = r["peak_rss_mb"] / base["peak_rss_mb"]
        own = r["above_baseline_mb"] / base["above_baseline_mb"]
        print(
            f"{name} / {baseline_name}: throughput x{speed:.2f} (x{speed_load:.2f} with load), "
            f"peak memory x{memory:.2f} (x{own:.2f} above the import baseline); "
            f"max |difference| {diff:.1e} for responses up to {scale:.2f}"
        )
    return results

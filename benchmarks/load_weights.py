"""Benchmark: loading a reference-layout weights file, old loader against the memory-mapped one.

Writes a weights file in the layout of the NSD fsaverage models with ``np.save(path, dict)``
(random float32: PCA ``components_`` (250, 205,672), two regressions with ``coef_``
(163,842, 250), scaler and PCA vectors; about 0.55 GB) into a temporary folder, then loads it in
a fresh subprocess per run, so that peak memories cannot mix:

* ``numpy`` - ``np.load(path, allow_pickle=True).item()`` (unsafe: runs whatever the pickle
  names; the reference toolkit's way);
* ``old`` - the allow-list ``pickle.Unpickler`` berg used before (an inline copy below): safe,
  but every array is read, and the pickle memo keeps each payload's ``bytes`` alive to the end;
* ``new`` - :func:`berg_core.safe_npy.load_pickled_npy`: the restricted pickle machine, large
  arrays memory-mapped read-only;
* ``new+readout`` - ``new``, then ``LinearReadout.from_params`` on the CPU with 700 rows per
  hemisphere (skipped without torch).

Each run loads the file, then takes a 700-row selection of ``lh_reg_param['coef_']`` as a new
array with :func:`berg_core.safe_npy.read_rows` (what the readout does for an ROI selection; for
the in-memory arrays of ``numpy`` and ``old`` that is a plain ``coef_[rows]``), and reports the
load time, the selection time, its peak resident memory (``ru_maxrss``: the interpreter, numpy,
and every page of the file it touched; ``VmHWM`` of ``/proc/self/status`` agrees) and that peak
above the resident memory it had before loading, and its private memory after the selection
(``RssAnon``: resident memory that is not pages of files; the shared, clean page-cache pages of a
memory-mapped file the kernel can drop at any time are ``RssFile``). Linux carries ``ru_maxrss``
over fork and exec, so the file is written by a subprocess too and this parent stays small.

The file was just written, so it is in the page cache for every run: the times compare the
loaders, not the disk. With ``--cold`` (Linux), the file's pages are dropped from the page cache
before each run (``posix_fadvise(DONTNEED)``), and each run also reports how much of the file it
brought into the page cache (``cached MB``, counted with ``mincore``).

Usage::

    python benchmarks/load_weights.py                # 3 runs of each, median time, max memory
    python benchmarks/load_weights.py --repeat 1 --keep /tmp/w.npy
    python benchmarks/load_weights.py --cold         # read from disk, not the page cache
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from harness import current_rss_mb, peak_rss_mb, status_mb

N_VERTICES = 163_842
FEATURE_DIM = 205_672
N_COMPONENTS = 250
N_ROWS = 700
RUNS = ("numpy", "old", "new", "new+readout")


# -- the old loader, as berg had it before the pickle machine (baseline) ------------------------

_NUMPY_CORES = ("numpy.core", "numpy._core")
_OLD_ALLOWED_GLOBALS = frozenset(
    [(f"{core}.multiarray", "_reconstruct") for core in _NUMPY_CORES]
    + [(f"{core}.multiarray", "scalar") for core in _NUMPY_CORES]
    + [(f"{core}.numeric", "_frombuffer") for core in _NUMPY_CORES]
    + [
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("builtins", "range"),
        ("collections", "OrderedDict"),
    ]
)


class _OldRestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _OLD_ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module.startswith("numpy") and name.endswith("DType") and "dtypes" in module:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent references in a berg data file")


def _old_load(path: Path) -> Any:
    with open(path, "rb") as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(stream)
        else:
            np.lib.format.read_array_header_2_0(stream)
        obj = _OldRestrictedUnpickler(stream).load()
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
        return obj.item()
    return obj


# -- the file ----------------------------------------------------------------------------------


def write_weights(path: Path, seed: int = 0) -> int:
    """Write a reference-layout weights file of random float32; its size in bytes."""
    rng = np.random.default_rng(seed)

    def vector(n: int) -> np.ndarray:
        return rng.standard_normal(n, dtype=np.float32)

    def regression() -> dict[str, Any]:
        return {
            "coef_": rng.standard_normal((N_VERTICES, N_COMPONENTS), dtype=np.float32),
            "intercept_": vector(N_VERTICES),
            "n_features_in_": N_COMPONENTS,
        }

    weights = {
        "scaler_param": {
            "scale_": np.abs(vector(FEATURE_DIM)) + 0.5,
            "mean_": vector(FEATURE_DIM),
            "var_": np.abs(vector(FEATURE_DIM)),
            "n_features_in_": FEATURE_DIM,
            "n_samples_seen_": 9_000,
        },
        "pca_param": {
            "components_": rng.standard_normal((N_COMPONENTS, FEATURE_DIM), dtype=np.float32),
            "explained_variance_": vector(N_COMPONENTS),
            "explained_variance_ratio_": vector(N_COMPONENTS),
            "singular_values_": vector(N_COMPONENTS),
            "mean_": vector(FEATURE_DIM),
            "n_components_": N_COMPONENTS,
            "n_samples_": 9_000,
            "noise_variance_": np.float32(0.0),
            "n_features_in_": FEATURE_DIM,
        },
        "lh_reg_param": regression(),
        "rh_reg_param": regression(),
    }
    np.save(path, weights)  # type: ignore[arg-type]  # exactly what the reference does
    return path.stat().st_size


# -- one run (in its own subprocess) -----------------------------------------------------------


def _evict(path: Path) -> None:
    """Drop *path*'s pages from the page cache (clean pages; no privileges needed)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


def _cached_mb(path: Path) -> float:
    """How much of *path* is in the page cache (``mincore``); NaN where that is unavailable."""
    import ctypes
    import mmap

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        page = os.sysconf("SC_PAGE_SIZE")
        size = path.stat().st_size
        with open(path, "rb") as stream, mmap.mmap(stream.fileno(), size, prot=mmap.PROT_READ) as m:
            view = np.frombuffer(m, dtype=np.uint8)
            pages = (ctypes.c_ubyte * ((size + page - 1) // page))()
            failed = libc.mincore(ctypes.c_void_p(view.ctypes.data), ctypes.c_size_t(size), pages)
            del view
        if failed:
            return float("nan")
        return int(np.frombuffer(pages, dtype=np.uint8).__and__(1).sum()) * page / 2**20
    except (OSError, AttributeError, ValueError):
        return float("nan")


def _child(run: str, path: Path, cold: bool) -> dict[str, float]:
    rows = np.sort(np.random.default_rng(1).choice(N_VERTICES, N_ROWS, replace=False))
    from berg_core.safe_npy import read_rows

    if run.startswith("new"):
        from berg_core.safe_npy import load_pickled_npy
    if run == "new+readout":
        import torch

        from berg_core.torchkit.readout import LinearReadout
    if cold:
        _evict(path)
    before = current_rss_mb()
    start = time.perf_counter()
    if run == "numpy":
        weights = np.load(path, allow_pickle=True).item()
    elif run == "old":
        weights = _old_load(path)
    else:
        weights = load_pickled_npy(path)
    loaded = time.perf_counter()
    selection = np.ascontiguousarray(read_rows(weights["lh_reg_param"]["coef_"], rows))
    selected = time.perf_counter()
    assert selection.shape == (N_ROWS, N_COMPONENTS)
    result = {
        "load_s": loaded - start,
        "select_s": selected - loaded,
        "rss_before_mb": before,
        "peak_rss_mb": peak_rss_mb(),
        "hwm_mb": status_mb("VmHWM"),
        "anon_mb": status_mb("RssAnon"),
        "cached_mb": _cached_mb(path) if cold else float("nan"),
    }
    if run == "new+readout":
        readout = LinearReadout.from_params(
            weights["scaler_param"],
            weights["pca_param"],
            {"lh": (weights["lh_reg_param"], rows), "rh": (weights["rh_reg_param"], rows)},
            torch.device("cpu"),
        )
        del weights
        result["readout_s"] = time.perf_counter() - selected
        result["peak_rss_mb"] = peak_rss_mb()
        result["hwm_mb"] = status_mb("VmHWM")
        result["anon_mb"] = status_mb("RssAnon")
        assert readout.output_sizes() == (N_ROWS, N_ROWS)
    return result


def _spawn(run: str, path: Path, cold: bool = False) -> dict[str, float]:
    command = [sys.executable, __file__, "--run", run, "--file", str(path)]
    if cold:
        command.append("--cold")
    if run == "write":
        subprocess.run(command, check=True)
        return {}
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Write the file, load it each way in fresh subprocesses, print a table and ratios."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each loader (default 3)")
    parser.add_argument("--keep", type=Path, help="write the weights file here and keep it")
    parser.add_argument("--cold", action="store_true", help="drop the file from the page cache")
    parser.add_argument("--run", choices=(*RUNS, "write"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run == "write":
        write_weights(args.file)
        return 0
    if args.run:
        print(json.dumps(_child(args.run, args.file, args.cold)))
        return 0

    runs = RUNS if importlib.util.find_spec("torch") else RUNS[:-1]  # no import: see above
    with tempfile.TemporaryDirectory() as folder:
        path = args.keep or Path(folder) / "weights_subject-01.npy"
        _spawn("write", path)  # not here: this process's peak memory would reach the children
        print(f"weights file: {path.stat().st_size / 1e9:.3f} GB ({path})")
        results: dict[str, list[dict[str, float]]] = {run: [] for run in runs}
        for _ in range(args.repeat):
            for run in runs:  # interleaved, so that no loader always runs first
                results[run].append(_spawn(run, path, args.cold))

    summary = {}
    print(
        f"\n{'loader':<12} {'load s':>8} {'select s':>9} {'start MB':>9} {'peak RSS MB':>12} "
        f"{'VmHWM MB':>9} {'above start':>12} {'private MB':>11} {'cached MB':>10}"
    )
    for run, samples in results.items():
        load = statistics.median(sample["load_s"] for sample in samples)
        select = statistics.median(sample["select_s"] for sample in samples)
        peak = max(sample["peak_rss_mb"] for sample in samples)
        hwm = max(sample["hwm_mb"] for sample in samples)
        start_mb = statistics.median(sample["rss_before_mb"] for sample in samples)
        cached = max(sample["cached_mb"] for sample in samples)
        private = max(sample["anon_mb"] for sample in samples)
        above = max(sample["peak_rss_mb"] - sample["rss_before_mb"] for sample in samples)
        summary[run] = (load, peak, above)
        print(
            f"{run:<12} {load:>8.3f} {select:>9.4f} {start_mb:>9.0f} {peak:>12.0f} {hwm:>9.0f} "
            f"{above:>12.0f} {private:>11.0f} {cached:>10.0f}"
        )
    new, old = summary["new"], summary["old"]
    print(
        f"\nnew/old: load time x{new[0] / old[0]:.4f}, peak RSS x{new[1] / old[1]:.3f}, "
        f"RSS above start x{new[2] / old[2]:.4f}"
    )
    numpy_ = summary["numpy"]
    print(
        f"new/np.load: load time x{new[0] / numpy_[0]:.4f}, peak RSS x{new[1] / numpy_[1]:.3f}, "
        f"RSS above start x{new[2] / numpy_[2]:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

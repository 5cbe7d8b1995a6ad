"""Time and peak memory of berg-train's regression fit versus vertices and samples, next to
scikit-learn's on the same data.

The fit is the engine's step 3: a design of ``n`` samples x 250 PCA components and ``n`` x ``V``
float32 targets read from an HDF5 file, solved chunk by chunk (16,384 columns) by
:class:`berg_train.regression.OLSSolver` or :class:`~berg_train.regression.RidgeCVSolver`
(13 penalties, 5-fold CV per column). scikit-learn gets the same data, read whole into memory:
``LinearRegression`` for OLS and ``RidgeCV(alphas, alpha_per_target=True)`` (efficient
leave-one-out CV) for ridge; its ridge runs are skipped where they would need more memory than
``--sklearn-max-gb`` (estimated as 5 float64 copies of the targets).

A last sweep times the out-of-core scaler + exact PCA on 9,000 images (the NSD training set size)
at two feature counts, to show its memory does not grow with D.

Every measurement runs in its own subprocess; peak memory is that process's maximum resident set
size (``VmHWM``, which includes the ~160 MB of the interpreter and libraries).

Usage::

    python benchmarks/train_scaling.py          # 10k-327,684 vertices; 1k-8k samples
    python benchmarks/train_scaling.py --quick         # small sizes, a smoke test
    python benchmarks/train_scaling.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import peak_rss_mb, status_mb

K = 250
CHUNK = 16_384
ALPHAS = tuple(float(a) for a in np.logspace(0, 12, 13))


def _peak_mb() -> float:
    """This process's peak resident memory in MB.

    ``VmHWM`` of ``/proc/self/status`` on Linux: unlike ``ru_maxrss``, it is not inherited from
    the parent that forked the worker (Linux carries the pre-exec high-water mark into
    ``ru_maxrss``).
    """
    peak = status_mb("VmHWM")
    return peak if peak == peak else peak_rss_mb()  # NaN off Linux


def _design(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.geomspace(300.0, 3.0, K)  # PCA-like decaying component scales
    return rng.normal(size=(n, K)) * scales


def _write_targets(path: Path, n: int, vertices: int, seed: int = 1) -> None:
    """Targets = a sparse linear signal in the design + noise, float32, chunked by columns."""
    import h5py

    rng = np.random.default_rng(seed)
    design = _design(n)
    with h5py.File(path, "w") as h5:
        data = h5.create_dataset(
            "targets", shape=(n, vertices), dtype="float32", chunks=(n, min(vertices, 4096))
        )
        for start in range(0, vertices, CHUNK):
            stop = min(vertices, start + CHUNK)
            weights = rng.normal(size=(K, stop - start)) * (rng.random((K, 1)) < 0.05) / 300
            block = design @ weights + rng.normal(size=(n, stop - start))
            data[:, start:stop] = block.astype(np.float32)


def _worker(kind: str, path: str, n: int, vertices: int) -> dict[str, float]:
    import h5py
    from berg_train.regression import make_solver
    from sklearn.linear_model import LinearRegression, RidgeCV

    design = _design(n)
    started = time.perf_counter()  # includes reading the targets from the file
    checksum = 0.0
    if kind.startswith("berg"):
        solver = make_solver("ols" if kind == "berg-ols" else "ridge", design, alphas=ALPHAS)
        with h5py.File(path, "r") as h5:
            data = h5["targets"]
            for start in range(0, vertices, CHUNK):
                stop = min(vertices, start + CHUNK)
                fit = solver.fit(data[:, start:stop])
                checksum += float(np.abs(fit.coef).sum())
    else:
        with h5py.File(path, "r") as h5:
            targets = h5["targets"][:, :vertices]
        if kind == "sklearn-ols":
            model = LinearRegression().fit(design.astype(np.float32), targets)
        else:
            model = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(design, targets)
        checksum = float(np.abs(model.coef_).sum())
    seconds = time.perf_counter() - started
    peak_mb = _peak_mb()
    return {"seconds": seconds, "peak_mb": peak_mb, "checksum": checksum}


def _pca_worker(path: str, n: int, dim: int) -> dict[str, float]:
    """Out-of-core scaler + PCA(250) of n x dim float32 features stored in HDF5."""
    import h5py
    from berg_train.pca import fit_scaler_pca

    base_mb = _peak_mb()
    started = time.perf_counter()
    with h5py.File(path, "r", rdcc_nbytes=0) as h5:
        result = fit_scaler_pca(
            h5["features"], n, K, memory_bytes=2e9, chunk_cols=4096, show_progress=False
        )
    seconds = time.perf_counter() - started
    peak_mb = _peak_mb()
    return {
        "seconds": seconds,
        "peak_mb": peak_mb,
        "base_mb": base_mb,
        "checksum": float(result.pca_param["explained_variance_ratio_"].sum()),
    }


def _write_features(path: Path, n: int, dim: int, seed: int = 2) -> None:
    import h5py

    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(300, 4096)).astype(np.float32)
    with h5py.File(path, "w") as h5:
        data = h5.create_dataset("features", (n, dim), "float32", chunks=(64, 4096))
        for r0 in range(0, n, 512):
            r1 = min(n, r0 + 512)
            latent = (rng.normal(size=(r1 - r0, 300)) * np.geomspace(10, 0.1, 300)).astype(
                np.float32
            )
            for c0 in range(0, dim, 4096):
                c1 = min(dim, c0 + 4096)
                block = latent @ basis[:, : c1 - c0]
                block += rng.standard_normal(block.shape, dtype=np.float32)
                data[r0:r1, c0:c1] = np.maximum(block, 0)  # ReLU-like, as network features


def _pca_sweep(quick: bool) -> list[dict]:
    """PCA on 9,000 images (the NSD training set) x D features: memory is flat in D."""
    n, dims = (1_000, [4_096, 8_192]) if quick else (9_000, [8_192, 32_768])
    rows = []
    print(f"\nscaler + exact PCA({K}) out of core, n = {n} (Gram matrix {n * n * 8 / 1e9:.2f} GB)")
    with tempfile.TemporaryDirectory() as tmp:
        for dim in dims:
            path = Path(tmp) / f"f_{dim}.h5"
            _write_features(path, n, dim)
            command = [sys.executable, __file__, "--pca-worker", str(path), str(n), str(dim)]
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"  D = {dim}: failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"  D = {dim:>7}: {r['seconds']:7.1f} s, peak {r['peak_mb']:6.0f} MB "
                f"(interpreter and libraries {r['base_mb']:.0f} MB)",
                flush=True,
            )
            rows.append({"sweep": "pca", "n": n, "features": dim, **r})
    return rows


def _measure(kind: str, path: Path, n: int, vertices: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", kind, str(path), str(n), str(vertices)]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _row(label: str, n: int, vertices: int, results: dict[str, dict]) -> str:
    def cell(kind: str) -> str:
        r = results.get(kind)
        if r is None:
            return f"{'skipped':>17}"
        if "error" in r:
            return f"{'error':>17}"
        return f"{r['seconds']:7.1f} s {r['peak_mb']:6.0f} MB"

    def ratio(ours: str, theirs: str) -> str:
        a, b = results.get(ours), results.get(theirs)
        if not a or not b or "error" in a or "error" in b:
            return f"{'-':>11}"
        return f"{b['seconds'] / a['seconds']:4.1f}x {b['peak_mb'] / a['peak_mb']:4.1f}x"

    return (
        f"{label:<9}{n:>7}{vertices:>9}  {cell('berg-ols')}  {cell('sklearn-ols')}  "
        f"{ratio('berg-ols', 'sklearn-ols')}  {cell('berg-ridge')}  {cell('sklearn-ridge')}  "
        f"{ratio('berg-ridge', 'sklearn-ridge')}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--pca-worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--pca-only", action="store_true", help="only the PCA measurement")
    parser.add_argument("--no-pca", action="store_true", help="skip the PCA measurement")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--samples", type=int, default=1000, help="n for the vertex sweep")
    parser.add_argument("--sklearn-max-gb", type=float, default=6.0)
    parser.add_argument("--no-ridge", action="store_true", help="OLS only")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    if args.worker:
        kind, path, n, vertices = args.worker
        print(json.dumps(_worker(kind, path, int(n), int(vertices))))
        return 0
    if args.pca_worker:
        path, n, dim = args.pca_worker
        print(json.dumps(_pca_worker(path, int(n), int(dim))))
        return 0
    if args.pca_only:
        rows = _pca_sweep(args.quick)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1))
        return 0
    if args.quick:
        vertex_sweep, sample_sweep, n_v, v_s = [5_000, 20_000], [600, 1200], 600, 5_000
    else:
        vertex_sweep = [10_000, 40_000, 160_000, 327_684]
        sample_sweep = [1_000, 2_000, 4_000, 8_000]
        n_v, v_s = args.samples, 10_000
    kinds = ["berg-ols", "sklearn-ols"] + ([] if args.no_ridge else ["berg-ridge", "sklearn-ridge"])
    all_results = []
    header = (
        f"{'sweep':<9}{'n':>7}{'vertices':>9}  {'berg OLS':>17}  {'sklearn OLS':>17}  "
        f"{'skl/berg t, mem':>11}  {'berg ridge-CV':>17}  {'sklearn RidgeCV':>17}  "
        f"{'skl/berg t, mem':>11}"
    )
    print(f"k = {K} components, chunks of {CHUNK} columns, {len(ALPHAS)} ridge penalties, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        plans = [
            ("vertices", n_v, v, Path(tmp) / f"v_{n_v}.h5", max(vertex_sweep)) for v in vertex_sweep
        ]
        plans += [("samples", n, v_s, Path(tmp) / f"s_{n}.h5", v_s) for n in sample_sweep]
        for sweep, n, vertices, path, width in plans:
            if not path.exists():
                _write_targets(path, n, width)
            results = {}
            for kind in kinds:
                if kind == "sklearn-ridge" and n * vertices * 8 * 5 / 1e9 > args.sklearn_max_gb:
                    continue
                results[kind] = _measure(kind, path, n, vertices)
            print(_row(sweep, n, vertices, results), flush=True)
            all_results.append({"sweep": sweep, "n": n, "vertices": vertices, **results})
    if not args.no_pca:
        all_results += _pca_sweep(args.quick)
    if args.out:
        args.out.write_text(json.dumps(all_results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

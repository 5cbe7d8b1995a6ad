"""Benchmark: the chunk width of the pure readout's standardise-and-project step.

:func:`berg_core.torchkit.readout.project` standardises ``CHUNK_COLUMNS`` feature columns at a
time and accumulates each chunk's PCA product. This times it in one process for several chunk
widths against the baseline of one whole-width chunk (one standardising pass into a ``(B, D)``
buffer, one product), interleaved round by round, and prints the CPU time (``process_time``:
all threads, less disturbed by other processes than wall time) and the wall time of each, as a
ratio against the baseline. Every width gives the same ``Z`` up to float32 rounding (checked).

Usage::

    python benchmarks/readout_chunks.py                # NSD's D = 205,672, k = 250, 50 images
    python benchmarks/readout_chunks.py --threads 1
    python benchmarks/readout_chunks.py --full         # MEG/TVSD's D = 460,800, 100 images
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    import torch

    import berg_core.torchkit.readout as readout

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50, help="batch rows B (50)")
    parser.add_argument("--features", type=int, default=205_672, help="feature columns D")
    parser.add_argument("--components", type=int, default=250, help="PCA components k (250)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds (7)")
    parser.add_argument(
        "--widths", default="16384,65536,131072", help="chunk widths to compare with one chunk"
    )
    parser.add_argument("--full", action="store_true", help="D = 460,800 and 100 images")
    args = parser.parse_args(argv)
    if args.full:
        args.features, args.images = 460_800, 100
    torch.set_num_threads(args.threads)
    n, dim, k = args.images, args.features, args.components
    gen = torch.Generator().manual_seed(0)
    features = torch.relu(torch.randn(n, dim, generator=gen))
    mean = torch.rand(dim, generator=gen) * 0.1
    scale = torch.rand(dim, generator=gen) * 1.5 + 0.5
    pca_mean = torch.randn(dim, generator=gen) * 0.01
    components = torch.randn(k, dim, generator=gen) / dim**0.5
    widths = {"one chunk": dim, **{f"{int(w):,}": int(w) for w in args.widths.split(",")}}
    cpu: dict[str, list[float]] = {name: [] for name in widths}
    wall: dict[str, list[float]] = {name: [] for name in widths}
    results: dict[str, torch.Tensor] = {}
    saved = readout.CHUNK_COLUMNS
    try:
        with torch.inference_mode():
            for _ in range(args.repeat):
                for name, width in widths.items():
                    readout.CHUNK_COLUMNS = width
                    start_cpu, start = time.process_time(), time.perf_counter()
                    (z,) = readout.project(features, mean, scale, [(pca_mean, components)])
                    wall[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
                    results[name] = z
    finally:
        readout.CHUNK_COLUMNS = saved
    print(
        f"B = {n}, D = {dim:,}, k = {k}, {args.threads} torch threads, best of {args.repeat} "
        "interleaved rounds"
    )
    base_cpu, base_wall = min(cpu["one chunk"]), min(wall["one chunk"])
    base = results["one chunk"].double()
    for name in widths:
        diff = float((results[name].double() - base).abs().max() / base.abs().max())
        print(
            f"{name:>10} columns: CPU {min(cpu[name]):.3f} s (x{min(cpu[name]) / base_cpu:.2f}), "
            f"wall {min(wall[name]):.3f} s (x{min(wall[name]) / base_wall:.2f}); max relative "
            f"difference from one chunk {diff:.1e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

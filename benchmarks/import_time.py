"""Benchmark: ``import berg_core`` plus ``BERG().list_models()`` in a fresh interpreter.

Each measurement is a new Python process (the cost is paid once per process, by every ``berg``
command and every script) that times, with ``time.perf_counter`` and ``time.process_time``,

* ``berg``: ``import berg_core`` and ``BERG().list_models()`` (entry points scanned, every
  plugin's registration module imported, cards validated);
* ``floor``: importing only the libraries that path cannot avoid (numpy, pydantic, pluggy),

and the parent prints the medians, the ratio ``berg / floor`` and the goal (0.3 s). Bytecode
caching is on (``PYTHONDONTWRITEBYTECODE`` is cleared, ``.pyc`` files go to a temporary
``PYTHONPYCACHEPREFIX``) and one warm-up run per case fills it, as for an installed package; a
process that compiles every module from source (``PYTHONDONTWRITEBYTECODE=1``) spends about
0.25 s more in ``compile`` alone. Then one ``python -X importtime`` run lists the modules with the
largest cumulative import times.

Usage::

    python benchmarks/import_time.py              # 7 runs per case
    python benchmarks/import_time.py --full       # 31 runs per case
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

GOAL_S = 0.3
CASES = {
    "berg": "import berg_core\nfrom berg_core import BERG\nBERG().list_models()",
    "floor": "import numpy, pydantic, pluggy",
}
_TIMER = """
import json, time
t0, c0 = time.perf_counter(), time.process_time()
{code}
print(json.dumps({{"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}}))
"""


def measure(code: str, env: dict[str, str]) -> dict[str, float]:
    """Wall and CPU seconds of *code* in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _TIMER.format(code=code)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def top_importers(code: str, env: dict[str, str], count: int) -> list[tuple[int, int, str]]:
    """``(cumulative us, self us, module)`` of the *count* slowest top-level-ish imports."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, name = line.split(":", 1)[1].split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 2:
            rows.append((int(cumulative), int(own), name.rstrip()))
    return sorted(rows, reverse=True)[:count]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="processes per case")
    parser.add_argument("--top", type=int, default=15, help="importers to list")
    parser.add_argument("--full", action="store_true", help="31 runs per case")
    args = parser.parse_args(argv)
    runs = 31 if args.full else args.runs
    with tempfile.TemporaryDirectory(prefix="berg-pyc-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        env.setdefault("OMP_NUM_THREADS", "1")
        for code in CASES.values():
            measure(code, env)  # warm-up: writes the bytecode cache
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in CASES}
        for _ in range(runs):  # interleaved, so that load changes hit both cases alike
            for name, code in CASES.items():
                samples[name].append(measure(code, env))
        medians = {
            name: {key: statistics.median(s[key] for s in rows) for key in ("wall", "cpu")}
            for name, rows in samples.items()
        }
        for name, m in medians.items():
            print(f"{name:>5}: wall {m['wall']:.3f} s, CPU {m['cpu']:.3f} s (median of {runs})")
        berg, floor = medians["berg"], medians["floor"]
        print(
            f"berg / floor: wall x{berg['wall'] / floor['wall']:.2f}, CPU "
            f"x{berg['cpu'] / floor['cpu']:.2f}; berg beyond the floor: wall "
            f"{berg['wall'] - floor['wall']:.3f} s; goal {GOAL_S} s: "
            f"{'met' if berg['wall'] <= GOAL_S else 'not met'} (wall)"
        )
        print(f"largest cumulative imports of `berg` (-X importtime, top {args.top}):")
        for cumulative, own, name in top_importers(CASES["berg"], env, args.top):
            print(f"  {cumulative / 1000:8.1f} ms  (self {own / 1000:6.1f} ms)  {name.strip()}")


if __name__ == "__main__":
    sys.exit(main())

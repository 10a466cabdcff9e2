"""Benchmark of :mod:`pdeforge.solvers.ordering`: wall time and tour length of each method.

Features mimic PDEForge's: the lowest Fourier modes of a random field, i.e. independent
normal coordinates with standard deviation decaying as (1 + k)^-1, k = 0..p-1.  The
quality column is tour_length(ordered) / tour_length(random permutation) (lower is better).

Run ``python -m bench.ordering`` (a few seconds on one core); it prints a markdown table and
writes ``bench/results/ordering.json``.  :func:`ordering_timings` returns the rows for
other benchmarks.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from pdeforge.solvers.ordering import order_systems, tour_length

RESULTS = Path(__file__).resolve().parent / "results" / "ordering.json"

# (method, N, options)
DEFAULT_CASES: tuple[tuple[str, int, dict], ...] = (
    ("greedy", 1_000, {}),
    ("greedy", 10_000, {}),
    ("greedy", 10_000, {"dtype": "float32"}),
    ("hilbert", 10_000, {}),
    ("hilbert", 100_000, {}),
    ("hilbert", 100_000, {"dtype": "float32"}),
)


def fourier_like_features(n: int, p: int, *, seed: int = 0) -> np.ndarray:
    """(n, p) normal features with standard deviation (1 + k)^-1 in coordinate k."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, p)) / (1.0 + np.arange(p))


def ordering_timings(cases=DEFAULT_CASES, *, p: int = 100, seed: int = 0) -> list[dict]:
    """Time ``order_systems`` for each (method, N, options) case; one dict per case."""
    rows = []
    for method, n, options in cases:
        X = fourier_like_features(n, p, seed=seed)
        t0 = time.perf_counter()
        perm = order_systems(X, method=method, **options)
        seconds = time.perf_counter() - t0
        random_perm = np.random.default_rng(seed + 1).permutation(n)
        rows.append(
            {
                "method": method,
                "options": dict(options),
                "N": n,
                "p": p,
                "seconds": round(seconds, 4),
                "tour_ratio": round(tour_length(X, perm) / tour_length(X, random_perm), 4),
            }
        )
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| method | options | N | p | seconds | tour / random tour |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "-"
        lines.append(f"| {r['method']} | {opts} | {r['N']} | {r['p']} | {r['seconds']:.3f} | {r['tour_ratio']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    rows = ordering_timings()
    print(markdown_table(rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }
    RESULTS.write_text(json.dumps({"benchmark": "ordering", "meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()

"""The ``mg`` engine's escalation choices, measured interleaved on the same samples.

    python -m bench.mg_policy            # contrast 1e3 / 1e6 at 128²-512² and 32³-96³
    python -m bench.mg_policy --quick    # smoke run (64², 16³)

For each row (thresholded Darcy, the sorted sequence of six samples as the engine sees it)
every configuration sets up and solves every sample, in alternating order, twice; the
better of the two runs is divided by the time of one product with A measured right before
and after it.  The table gives, per configuration, the iteration counts and the median
cost per sample in products with A, and the median of the per-sample cost ratios to the
configuration the engine escalates to (2-D: classical AMG below level 0, ``coarse="auto"``,
from the first sample on 256^2 and larger grids, with cluster deflation from 512^2 on, once
the structured counts pass 30 on smaller ones; 3-D: cluster deflation once they pass 20, with the
structured cycle below 96^3 cells and classical AMG below level 0 from there on).  The rows of
thresholds of a smoother GRF (alpha 3: smooth interfaces) show the 2-D island test: an operator with
at most ``MAX_ISLANDS_2D`` small islands (the first sample's count is shown) keeps the structured
cycle, which is then the target the others are divided by.  With classical
AMG below it, the 2-D level 0 smooths with one red-black sweep per side (``ALGEBRAIC_NU``); the
row "two sweeps" measures the former default against it.  Interleaving and
per-sample ratios make the comparison robust to the drift of a busy machine, which moves
whole rows of ``bench.multigrid`` by +-20 %.  Markdown to stdout, JSON to
``bench/results/mg_policy.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.multigrid import sorted_sequence
from pdeforge.solvers.threads import single_threaded_blas

single_threaded_blas()

RTOL = 1e-8
SAMPLES = 6
REPEATS = 2
#: name -> (coarse option of Multigrid, cluster deflation, sweeps per side on level 0 (None: the default))
CONFIGS = {2: {"classical AMG below level 0": ("algebraic", False, None), "structured": ("structured", False, None),
               "classical AMG + deflation": ("algebraic", True, None), "structured + deflation": ("structured", True, None),
               "classical AMG below level 0, two sweeps": ("algebraic", False, 2)},
           3: {"structured + deflation": ("structured", True, None), "classical AMG + deflation": ("auto", True, None),
               "structured": ("structured", False, None)}}
#: (coefficient, n, dim, GRF smoothness alpha: None for FNO's 2); the alpha = 3 rows have smooth interfaces
ROWS = [("threshold1e3", 128, 2, None), ("threshold1e3", 256, 2, None), ("threshold1e3", 512, 2, None),
        ("threshold1e6", 256, 2, None), ("threshold1e3", 256, 2, 3.0), ("threshold1e3", 512, 2, 3.0),
        ("threshold1e3", 32, 3, None), ("threshold1e3", 48, 3, None), ("threshold1e3", 64, 3, None),
        ("threshold1e6", 64, 3, None), ("threshold1e3", 80, 3, None), ("threshold1e3", 96, 3, None)]
QUICK_ROWS = [("threshold1e3", 64, 2, None), ("threshold1e3", 64, 2, 3.0), ("threshold1e3", 16, 3, None)]


def escalation_target(dim: int, cells: int, islanded: bool = True) -> str:
    """The configuration of CONFIGS the ``mg`` engine escalates to on this grid (2-D: for an operator
    with more than ``MAX_ISLANDS_2D`` small islands; without them ``coarse="auto"`` keeps the structured cycle)."""
    from pdeforge.solvers.engines.mg import ALGEBRAIC_CELLS_3D, DEFLATE_CELLS_2D

    if dim == 3 and cells < ALGEBRAIC_CELLS_3D:
        return "structured + deflation"
    if dim == 2 and not islanded:
        return "structured"
    if dim == 2 and cells < DEFLATE_CELLS_2D:
        return "classical AMG below level 0"
    return "classical AMG + deflation"


def spmv_seconds(A, b, count: int = 20) -> float:
    t0 = time.perf_counter()
    for _ in range(count):
        A @ b
    return (time.perf_counter() - t0) / count


def measure_row(kind: str, n: int, dim: int, alpha: float | None, samples: int) -> dict:
    """Per configuration: iterations and set-up + solve cost (products with A) of each sample."""
    from pdeforge.solvers.multigrid import Multigrid, mg_cg

    family, spec, order = sorted_sequence(kind, n, dim, samples, alpha=alpha)
    # the engine's rule decides from the operator (2-D: its small islands); the first sample stands for the row
    first = Multigrid((n,) * dim).setup(family.assemble(spec, family.sample(spec, 0, order[0]))[0])
    configs = CONFIGS[dim]
    preconditioners = {name: Multigrid((n,) * dim, coarse=coarse, nu=nu) for name, (coarse, _, nu) in configs.items()}
    out = {name: {"iterations": [], "cost": []} for name in configs}
    for s, index in enumerate(order):
        A, b = family.assemble(spec, family.sample(spec, 0, index))
        names = list(configs) if s % 2 == 0 else list(configs)[::-1]
        for name in names:
            M, deflate = preconditioners[name], configs[name][1]
            best, its = np.inf, None
            for _ in range(REPEATS):
                before = spmv_seconds(A, b)
                t0 = time.perf_counter()
                M.setup(A, deflate=deflate)
                x, info, res = mg_cg(A, b, rtol=RTOL, M=M, maxiter=1000, full_output=True)
                elapsed = time.perf_counter() - t0
                best = min(best, elapsed / (0.5 * (before + spmv_seconds(A, b))))
                its = res.iterations if info == 0 or info == -2 else f"{res.iterations} (info {info})"
            out[name]["iterations"].append(its)
            out[name]["cost"].append(best)
    target = escalation_target(dim, n**dim, first.use_algebraic)
    for name, r in out.items():
        r["median_cost"] = float(np.median(r["cost"]))
        r["ratio_to_target"] = float(np.median(np.array(r["cost"]) / np.array(out[target]["cost"])))
    return {"kind": kind, "grid": f"{n}^{dim}", "alpha": alpha, "islands": first.islands, "escalation_target": target,
            "configs": out}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run")
    ap.add_argument("--out", default="bench/results/mg_policy.json")
    args = ap.parse_args(argv)
    rows, samples = (QUICK_ROWS, 3) if args.quick else (ROWS, SAMPLES)
    t_start = time.perf_counter()
    results = []
    for kind, n, dim, alpha in rows:
        results.append(measure_row(kind, n, dim, alpha, samples))
        print(f"# {kind} {n}^{dim} alpha {alpha or 2} done", flush=True)
    print(f"\n## mg escalation choices (interleaved, best of {REPEATS}, {samples} samples; "
          "cost = set-up + solve in products with A)\n")
    print("| coefficient | GRF alpha | grid | configuration | iterations | cost per sample (median) | x escalation target |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        alpha = f"{r['alpha'] or 2:g}" + ("" if r["islands"] is None else f" ({r['islands']} small islands)")
        for name, c in r["configs"].items():
            mark = " (escalation target)" if name == r["escalation_target"] else ""
            print(f"| {r['kind']} | {alpha} | {r['grid']} | {name}{mark} | {' '.join(map(str, c['iterations']))} | "
                  f"{c['median_cost']:.0f} | {c['ratio_to_target']:.2f} |")
    elapsed = time.perf_counter() - t_start
    print(f"\ntotal {elapsed:.0f} s")
    out = {"rows": results, "seconds": elapsed, "rtol": RTOL, "samples": samples, "repeats": REPEATS}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"JSON written to {args.out}")
    return out


if __name__ == "__main__":
    main()

"""SKR benchmark: GMRES vs GCRO-DR recycling (unsorted / sorted) vs direct, like Table 1 of SKR.

    python -m bench.skr              # 64^2 and 128^2, rtol 1e-5 and 1e-8 (minutes on 2 cores)
    python -m bench.skr --large      # adds 256^2
    python -m bench.skr --quick      # a smoke run (a few seconds)

For every family x grid x rtol x preconditioner: median solve seconds per sample
and mean iterations of ``gmres`` (restarted GMRES(40), each system independent,
x0 = 0: SKR's baseline), ``skr`` unsorted (GCRO-DR(40, 20), recycle space carried
across the samples in index order), ``skr`` sorted (the same after greedy
nearest-neighbour ordering of the samples' features) and ``direct`` (SuperLU with
the tuned ordering); ratios are gmres / method.  Solve seconds include the
per-system preconditioner set-up and the recycle-space update, not sampling or
assembly (reported separately).  Systems that miss the tolerance within
``--maxiter`` iterations count as not converged (n/c) and are not re-solved.

Prints markdown and writes JSON to ``bench/results/skr.json``.  BLAS runs
single-threaded (dataset generation parallelises over samples, not within one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from pdeforge.solvers.families import get_family
from pdeforge.solvers.fields import CoefficientSpec, GRFSpec
from pdeforge.solvers.generate import generate
from pdeforge.solvers.options import SolverOptions
from pdeforge.solvers.threads import single_threaded_blas

single_threaded_blas()

CASES = {
    # SKR's Darcy set: lognormal a = exp(GRF(alpha=2.5, tau=7)), f = 1
    "darcy_logn": ("darcy", dict(coefficient=CoefficientSpec(kind="lognormal", grf=GRFSpec(alpha=2.5, tau=7.0)))),
    # FNO's Darcy set: a = 12 / 3 thresholded GRF(alpha=2, tau=3), f = 1
    "darcy_thresh": ("darcy", dict(coefficient=CoefficientSpec(kind="threshold"))),
    # impedance Helmholtz, k = 10, 25 % medium contrast (complex symmetric indefinite)
    "helmholtz": ("helmholtz", dict(k_min=10.0, k_max=10.0)),
    # upwind advection-diffusion, nu = 0.01, max face speed 1 (non-symmetric)
    "advection_diffusion": ("advection_diffusion", dict(nu_min=0.01, nu_max=0.01)),
}
METHODS = (("gmres", "gmres", "none"), ("skr_unsorted", "skr", "none"),
           ("skr_sorted", "skr", "greedy"), ("direct", "direct", "none"))


def run_method(family, spec, indices, engine, ordering, rtol, precond, maxiter, seed=0):
    opts = SolverOptions(engine=engine, rtol=rtol, preconditioner=precond, ordering=ordering,
                         maxiter=maxiter, fallback=False)
    t0 = time.perf_counter()
    res = generate(family, spec, indices, seed=seed, options=opts)
    wall = time.perf_counter() - t0
    recs = res.records
    ok = [r for r in recs if r.converged]
    return {
        "samples": len(recs),
        "converged": len(ok),
        "median_seconds": float(np.median([r.solve_seconds for r in recs])),
        "median_total_seconds": float(np.median([r.seconds for r in recs])),
        "mean_iterations": float(np.mean([r.iterations for r in recs])),
        "mean_matvecs": float(np.mean([r.matvecs for r in recs])),
        "max_residual": float(max(r.residual for r in recs)),
        "ordering_seconds": res.ordering_seconds,
        "wall_seconds": wall,
    }


def fmt_time(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def cell(row: dict, base: dict | None) -> str:
    if row["converged"] < row["samples"]:
        return f"n/c ({row['converged']}/{row['samples']}; {fmt_time(row['median_seconds'])})"
    text = f"{fmt_time(row['median_seconds'])} / {row['mean_iterations']:.0f}"
    if base is not None and base["converged"] == base["samples"] and row["mean_iterations"] > 0:
        text += f" / {base['median_seconds'] / row['median_seconds']:.2f}x t, "
        text += f"{base['mean_iterations'] / row['mean_iterations']:.2f}x it"
    elif base is not None and row["mean_iterations"] == 0 and base["converged"] == base["samples"]:
        text += f" / {base['median_seconds'] / row['median_seconds']:.2f}x t"
    return text


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--large", action="store_true", help="also run 256^2")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--families", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--preconditioners", nargs="*", default=["none", "jacobi", "ilu"])
    ap.add_argument("--rtols", nargs="*", type=float, default=[1e-5, 1e-8])
    ap.add_argument("--maxiter", type=int, default=3000)
    ap.add_argument("--sizes", nargs="*", type=int, help="grid sizes n (default 64 128; --large adds 256)")
    ap.add_argument("--out", default="bench/results/skr.json")
    args = ap.parse_args(argv)

    sizes = args.sizes or ([32] if args.quick else [64, 128] + ([256] if args.large else []))
    seq_n = {n: 6 if n <= 32 else 16 if n <= 64 else 10 if n <= 128 else 5 for n in sizes}
    indep_n = {n: 2 if n <= 32 else 4 if n <= 64 else 3 if n <= 128 else 2 for n in sizes}
    rows = []
    t_start = time.perf_counter()
    for case in args.families:
        fam_name, params = CASES[case]
        family = get_family(fam_name)
        for n in sizes:
            spec = family.spec(n=n, **params)
            for rtol in args.rtols:
                for precond in args.preconditioners:
                    results = {}
                    for label, engine, ordering in METHODS:
                        if engine == "direct" and precond != args.preconditioners[0]:
                            results[label] = rows[-1]["methods"]["direct"]  # independent of the preconditioner
                            continue
                        count = seq_n[n] if engine == "skr" else indep_n[n]
                        results[label] = run_method(family, spec, range(count), engine, ordering, rtol,
                                                    precond, args.maxiter)
                    rows.append({"case": case, "n": n, "unknowns": spec.unknowns, "rtol": rtol,
                                 "preconditioner": precond, "methods": results})
                    print(f"# {case} {n}^2 rtol={rtol:g} {precond}: "
                          + ", ".join(f"{k}={fmt_time(v['median_seconds'])}/{v['mean_iterations']:.0f}it"
                                      f"{'' if v['converged'] == v['samples'] else ' n/c'}"
                                      for k, v in results.items()), flush=True)
    elapsed = time.perf_counter() - t_start

    print("\n## SKR benchmark: median solve time per sample / mean iterations / speed-up vs gmres (time, iterations)\n")
    print("| case | grid | rtol | precond | gmres | skr unsorted | skr sorted | direct |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["methods"]
        base = m["gmres"]
        print(f"| {r['case']} | {r['n']}^2 | {r['rtol']:g} | {r['preconditioner']} | {cell(base, None)} | "
              f"{cell(m['skr_unsorted'], base)} | {cell(m['skr_sorted'], base)} | {cell(m['direct'], base)} |")

    from bench.ordering import DEFAULT_CASES, markdown_table, ordering_timings

    order_rows = ordering_timings(DEFAULT_CASES[:1] if args.quick else DEFAULT_CASES)
    print("\n## Ordering cost (features resembling low Fourier modes)\n")
    print(markdown_table(order_rows))
    print(f"\nTotal benchmark time {elapsed:.0f} s (+ ordering).")

    out = {"rows": rows, "ordering": order_rows, "seconds": elapsed,
           "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                       "cores": os.cpu_count(), "numpy": np.__version__},
           "argv": argv if argv is not None else []}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"JSON written to {args.out}")
    return out


if __name__ == "__main__":
    main()

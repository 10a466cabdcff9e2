"""Engine benchmark: our engines and ``auto`` vs the best alternative a user could run today.

    python -m bench.engines            # 2-D 64², 128², 256²; 3-D 32³, 48³ (under 15 min on 2 cores)
    python -m bench.engines --large    # adds 2-D 512² and 3-D 64³
    python -m bench.engines --quick    # smoke run

For each family x size at rtol 1e-8: median seconds per sample (solve only: set-ups
included, sampling/assembly excluded), mean iterations and peak resident memory of

* ``gmres``  -- restarted GMRES(40) + Jacobi, x0 = 0, each system independent (SKR's baseline);
* ``skr``    -- SKR as published: sorted, GCRO-DR(40, 20) recycling, Jacobi;
* ``best alternative`` -- the faster of a fresh sparse direct solve per sample (tuned
  SuperLU; CHOLMOD for SPD) and fresh PyAMG per sample (SA + CG for SPD, RS + GMRES
  otherwise), i.e. what a user would run today without any reuse;
* our engines: ``direct`` (symbolic analysis reused), ``direct_mixed``, ``amg``
  (hierarchy reused), ``factorize_once`` (fixed operator, block solves) and ``auto``
  (the engine its pilot picks; the pilot's cost is reported as a share of a 1000-sample job).

Ratios are best-alternative / ours (> 1: we are faster).  Each method runs in a forked
process so its peak RSS (``ru_maxrss``) is its own; the parent's RSS at fork is reported.
Prints markdown and writes JSON to ``bench/results/engines.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

from bench.isolation import in_process
from pdeforge.solvers.engines import refusal
from pdeforge.solvers.threads import single_threaded_blas

single_threaded_blas()

ALL_ROWS = [  # (family, params, n, dim)
    ("darcy", {}, 64, 2), ("darcy", {}, 128, 2), ("darcy", {}, 256, 2),
    ("darcy", {}, 32, 3), ("darcy", {}, 48, 3),
    ("poisson", {}, 64, 2), ("poisson", {}, 128, 2), ("poisson", {}, 256, 2),
    ("poisson", {}, 32, 3), ("poisson", {}, 48, 3),
    ("advection_diffusion", {}, 64, 2), ("advection_diffusion", {}, 128, 2), ("advection_diffusion", {}, 256, 2),
    ("helmholtz", {"k_min": 20.0, "k_max": 20.0}, 64, 2), ("helmholtz", {"k_min": 20.0, "k_max": 20.0}, 128, 2),
]
LARGE_ROWS = [("darcy", {}, 512, 2), ("darcy", {}, 64, 3), ("poisson", {}, 64, 3)]
QUICK_ROWS = [("darcy", {}, 32, 2), ("poisson", {}, 16, 3)]


def samples_for(n: int, dim: int) -> int:
    unknowns = n**dim
    return 8 if unknowns <= 20_000 else 6 if unknowns <= 70_000 else 4


# ----------------------------------------------------------------------------- methods
def _systems(family, spec, count, seed=0):
    for i in range(count):
        yield family.assemble(spec, family.sample(spec, seed, i))


def fresh_direct(family, spec, count):
    """A fresh factorization per sample: CHOLMOD for SPD (if installed), tuned SuperLU otherwise."""
    from pdeforge.solvers.engines.direct import HAVE_CHOLMOD
    from pdeforge.solvers.krylov import factorize

    spd = family.capabilities(spec).spd
    best = None
    for backend in (["cholmod", "superlu"] if spd and HAVE_CHOLMOD else ["superlu"]):
        times = []
        for A, b in _systems(family, spec, count):
            t0 = time.perf_counter()
            if backend == "cholmod":
                from sksparse.cholmod import cholesky

                x = cholesky(A.tocsc())(b)
            else:
                x = factorize(A).solve(b)
            times.append(time.perf_counter() - t0)
            _check(A, b, x)
        if best is None or np.median(times) < np.median(best[0]):
            best = (times, backend)
    return best[0], [0] * len(best[0]), {"backend": best[1]}


def fresh_amg(family, spec, count):
    """A fresh PyAMG hierarchy per sample: SA + CG (SPD) or RS + GMRES(40)."""
    import pyamg
    import scipy.sparse.linalg as spla

    from pdeforge.solvers.krylov import gmres

    spd = family.capabilities(spec).spd
    times, its = [], []
    for A, b in _systems(family, spec, count):
        t0 = time.perf_counter()
        ml = (pyamg.smoothed_aggregation_solver if spd else pyamg.ruge_stuben_solver)(A)
        M = ml.aspreconditioner()
        if spd:
            k = [0]
            x, _ = spla.cg(A, b, rtol=1e-8, M=M, maxiter=1000, callback=lambda _x: k.__setitem__(0, k[0] + 1))
            its.append(k[0])
        else:
            x, _, res = gmres(A, b, rtol=1e-8, M=M, m=40, maxiter=1000, full_output=True)
            its.append(res.iterations)
        times.append(time.perf_counter() - t0)
        _check(A, b, x)
    return times, its, {}


def engine_run(engine, family, spec, count, **opts):
    from pdeforge.solvers.generate import generate
    from pdeforge.solvers.options import SolverOptions

    options = SolverOptions(engine=engine, rtol=1e-8, fallback=False, **opts)
    res = generate(family, spec, range(count), seed=0, options=options)
    bad = [r for r in res.records if not r.converged]
    extra = {"counters": res.meta["counters"], "engine": res.meta["engine"].get("chosen"),
             "unconverged": len(bad)}
    if engine == "auto":
        extra["pilot_seconds"] = res.meta["engine"]["pilot_seconds"]
        extra["reason"] = res.meta["engine"]["reason"]
    return [r.solve_seconds for r in res.records], [r.iterations for r in res.records], extra


def _check(A, b, x):
    rel = np.linalg.norm(b - A @ x) / np.linalg.norm(b)
    if not rel <= 1e-8 * 1.0001:
        raise RuntimeError(f"residual {rel:.2e} > 1e-8")


#: the alternatives a user would run, by the engine whose requirements they share
ALTERNATIVE_OF = {"fresh_direct": "direct", "fresh_amg": "amg"}


def applicable(method: str, family, spec) -> str | None:
    """None if the method applies (the engines' own rule, pdeforge.solvers.engines.refusal), else why not;
    plus this benchmark's size cut-offs where a method would only burn minutes."""
    why = refusal(ALTERNATIVE_OF.get(method, method), family.capabilities(spec))
    if why is not None:
        return why
    if method in ("direct", "direct_mixed", "fresh_direct") and spec.dim == 3 and spec.n > 40:  # 32^3 is measured
        return "fill: >10x AMG at 32^3"
    if method in ("gmres", "skr") and spec.n**spec.dim > 70_000:
        return "thousands of iterations"
    return None


METHODS = {
    "gmres": lambda f, s, c: engine_run("gmres", f, s, min(c, 2), preconditioner="jacobi", ordering="none",
                                        maxiter=3000),
    "skr": lambda f, s, c: engine_run("skr", f, s, c, preconditioner="jacobi", ordering="greedy", maxiter=3000),
    "fresh_direct": lambda f, s, c: fresh_direct(f, s, min(c, 3)),
    "fresh_amg": lambda f, s, c: fresh_amg(f, s, min(c, 4)),
    "direct": lambda f, s, c: engine_run("direct", f, s, c),
    "direct_mixed": lambda f, s, c: engine_run("direct_mixed", f, s, c),
    "amg": lambda f, s, c: engine_run("amg", f, s, c),
    "mg": lambda f, s, c: engine_run("mg", f, s, c),
    # one factorization per worker serves every shard: 100 right-hand sides show its steady cost
    "factorize_once": lambda f, s, c: engine_run("factorize_once", f, s, 100),
    "spectral": lambda f, s, c: engine_run("spectral", f, s, 100),
    "auto": lambda f, s, c: engine_run("auto", f, s, c),
}


def _child(conn, method, family_name, params, n, dim, count):
    from pdeforge.solvers.families import get_family

    family = get_family(family_name)
    spec = family.spec(n=n, dim=dim, **params)
    try:
        times, its, extra = METHODS[method](family, spec, count)
        steady = times[1:] if method in ("skr", "direct", "direct_mixed", "amg", "mg", "factorize_once", "spectral", "auto") \
            and len(times) > 2 else times
        conn.send({"median_seconds": float(np.median(steady)), "mean_iterations": float(np.mean(its)),
                   "samples": len(times), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   **extra})
    except Exception as exc:  # reported in the table, never silently dropped
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    conn.close()


def run_method(method, family_name, params, n, dim, count, timeout=300):
    return in_process(_child, method, family_name, params, n, dim, count, timeout=timeout)


def fmt(row: dict | None) -> str:
    if row is None:
        return "–"
    if "skipped" in row:
        return f"n/a ({row['skipped']})"
    if "error" in row:
        return f"error: {row['error'][:60]}"
    t = row["median_seconds"]
    s = f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"
    if row.get("unconverged"):
        s += f" ({row['unconverged']} n/c)"
    return f"{s} / {row['mean_iterations']:.0f} it / {row['peak_rss_mb']:.0f} MB"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--large", action="store_true", help="add 2-D 512^2 and 3-D 64^3")
    ap.add_argument("--quick", action="store_true", help="smoke run")
    ap.add_argument("--out", default="bench/results/engines.json")
    args = ap.parse_args(argv)
    rows_spec = QUICK_ROWS if args.quick else ALL_ROWS + (LARGE_ROWS if args.large else [])
    from pdeforge.solvers.families import get_family

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows, t_start = [], time.perf_counter()
    for family_name, params, n, dim in rows_spec:
        family = get_family(family_name)
        spec = family.spec(n=n, dim=dim, **params)
        count = samples_for(n, dim)
        results = {}
        for method in METHODS:
            why = applicable(method, family, spec)
            results[method] = {"skipped": why} if why else run_method(method, family_name, params, n, dim, count)
        alts = [results[m] for m in ("fresh_direct", "fresh_amg") if "median_seconds" in results[m]]
        best_alt = min(alts, key=lambda r: r["median_seconds"]) if alts else None
        ours = {m: results[m] for m in ("direct", "direct_mixed", "amg", "mg", "factorize_once", "spectral", "auto")}
        ratios = {m: best_alt["median_seconds"] / r["median_seconds"]
                  for m, r in ours.items() if best_alt and "median_seconds" in r}
        auto = results["auto"]
        pilot_share = (auto["pilot_seconds"] / (1000 * auto["median_seconds"])
                       if "pilot_seconds" in auto else None)
        grid = f"{n}^{dim}"
        rows.append({"family": family_name, "grid": grid, "unknowns": n**dim, "samples": count, "methods": results,
                     "best_alternative": best_alt and ("fresh_direct" if best_alt is results["fresh_direct"]
                                                       else "fresh_amg"),
                     "ratios": ratios, "pilot_share_of_1000": pilot_share})
        print(f"# {family_name} {grid}: " + ", ".join(f"{m}={fmt(r)}" for m, r in results.items()), flush=True)
    elapsed = time.perf_counter() - t_start

    print("\n## Engines at rtol 1e-8: median s/sample / mean iterations / peak RSS; "
          "ratio = best alternative / ours\n")
    print("| family | grid | gmres | skr (SKR) | best alternative | direct | direct_mixed | amg | mg | "
          "factorize_once | spectral | auto (choice) | ratio auto | pilot / 1000 samples |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["methods"]
        alt = r["best_alternative"]
        alt_txt = f"{fmt(m[alt])} ({alt.removeprefix('fresh_')})" if alt else "–"
        auto = m["auto"]
        ratio = r["ratios"].get("auto")
        share = r["pilot_share_of_1000"]
        print(f"| {r['family']} | {r['grid']} | {fmt(m['gmres'])} | {fmt(m['skr'])} | {alt_txt} | "
              f"{fmt(m['direct'])} | {fmt(m['direct_mixed'])} | {fmt(m['amg'])} | {fmt(m['mg'])} | "
              f"{fmt(m['factorize_once'])} | "
              f"{fmt(m['spectral'])} | "
              f"{fmt(auto)} ({auto.get('engine', '?')}) | "
              f"{'%.2fx' % ratio if ratio else '–'} | {'%.2f %%' % (100 * share) if share is not None else '–'} |")
    print("\n## Speed-ups of each engine (best alternative / engine; skr and gmres: vs gmres)\n")
    print("| family | grid | direct | direct_mixed | amg | mg | factorize_once | spectral | auto | skr vs gmres | "
          "auto vs gmres |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m, q = r["methods"], r["ratios"]
        g = m["gmres"].get("median_seconds")
        skr_g = g / m["skr"]["median_seconds"] if g and "median_seconds" in m["skr"] else None
        fo_g = g / m["auto"]["median_seconds"] if g and "median_seconds" in m["auto"] else None
        cells = [f"{q[k]:.2f}x" if k in q else "–"
                 for k in ("direct", "direct_mixed", "amg", "mg", "factorize_once", "spectral", "auto")]
        print(f"| {r['family']} | {r['grid']} | " + " | ".join(cells)
              + f" | {'%.2fx' % skr_g if skr_g else '–'} | {'%.1fx' % fo_g if fo_g else '–'} |")
    print(f"\nparent RSS at fork: {base_rss:.0f} MB; total {elapsed:.0f} s")
    out = {"rows": rows, "seconds": elapsed, "parent_rss_mb": base_rss, "cores": os.cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print(f"JSON written to {args.out}")
    return out


if __name__ == "__main__":
    main()

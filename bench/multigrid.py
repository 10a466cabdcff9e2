"""Structured multigrid (engine ``mg``) against PyAMG, on Darcy with the coefficients users use.

    python -m bench.multigrid            # 128², 256², 32³, 48³ x {lognormal, threshold 4 / 1e3 / 1e6}
    python -m bench.multigrid --large    # adds 512² and 64³
    python -m bench.multigrid --quick    # smoke run
    python -m bench.multigrid --advection --no-darcy --no-growth   # advection-diffusion rows only

Per row, at rtol 1e-8, medians over the samples after a warm-up sample (the sorted
sequence of ``samples_for`` samples, seed 0, greedy ordering as ``pdeforge.solvers.generate``):

* ``mg``        -- :class:`pdeforge.solvers.engines.mg.MgEngine` over the sequence: set-up ms
  (Galerkin values, coarsest inverse), solve ms, iterations, total ms per sample;
* ``100 SpMV``  -- the time of 100 products ``A @ b`` (SciPy CSR), measured in the mg
  process right before each solve, and the ratio total / (100 SpMV); beside it the product's
  time per stored non-zero (``ns/nnz``) and mg's total per cell and CG iteration
  (``ns/(cell it)``).  The reference repeats one matrix, which stays in cache up to 256^2 and
  48^3 (4-10 MB of CSR) but not at 512^2 and 64^3 (17-23 MB): on the contrast-1e3 rows
  0.54-0.72 against 0.78-1.56 ns per non-zero (five runs), while mg, whose working set (operator
  blocks, transfers, coarse levels, Krylov vectors) is about three times the matrix, costs
  25-63 ns per cell and CG iteration on every row -- so at contrast 1e3 the ratio to 100 SpMV
  is highest where the reference is cache-resident (256^2, 48^3), not where the counts are
  highest (512^2, 64^3).  The reference stays the CSR product users hold (and PyAMG uses):
  SciPy's DIA product of the same operator, the kernel mg's smoother runs on its red-black
  blocks, takes 0.43-0.59x its time (128^2-512^2, 48^3-64^3), so against 100 DIA products
  every ratio would be about twice as high;
* ``fresh SA``  -- a new PyAMG smoothed-aggregation hierarchy per sample + CG (what a
  user runs today);
* ``amg``       -- :class:`pdeforge.solvers.engines.amg.AmgEngine` over the same sorted sequence
  (hierarchy reused, Galerkin products recomputed).

The mg process imports PyAMG's kernels before the first sample (a one-time cost of 45 ms
that the first escalated set-up would otherwise carry into a per-sample figure).
Ratios ``x fresh SA`` and ``x amg`` are their total / mg total (> 1: mg faster).  Each
method runs in a forked process; ``mg`` follows the engine's rule: structured cycles
until the median count of the last three solves exceeds 30 (2-D) or 20 (3-D), then (from
the next system on) cluster deflation in 3-D (from 96^3 cells on with classical AMG
below the first agglomeration), classical AMG below the first agglomeration where the
coefficients jump and have small islands in 2-D (a 3-D escalation happens on the first
sample, the warm-up outside the medians; 2-D grids from 256^2 on apply the jump test
from the first sample, a 128^2 escalation may come later and is in them; 512^2 also deflates
from the first sample).
A second table gives the mean iteration counts as n doubles (2-D 64..512, 3-D 16..64;
samples 0..k-1 of each grid, ``--growth-samples k``, default 4: single samples of one grid
differ by up to 2x, e.g. 16-46 at 512^2 contrast 1e6) of mg with the structured coarse
levels only (``coarse="structured"``; with cluster deflation: the engine's escalated 3-D
path), of mg with ``coarse="auto"`` (classical AMG below the first agglomeration for
high-jump operators: the engine's 2-D path at 256^2; with deflation its path from 512^2),
each without and with cluster deflation, and of
fresh SA and fresh classical (Ruge--Stueben) AMG of the whole operator (the literature's
operator-dependent interpolation on every level), for the GRF fields and for threshold
fields of a band-limited GRF (``band`` = half the smallest n: the identical continuum field
on every grid, so its interfaces are the same curves resolved ever finer -- whereas the GRF
at each n gains finer modes, and rougher interfaces, as n grows) and of a smoother GRF drawn at
each n (``alpha`` = ``SMOOTH_ALPHA``, 3, in place of FNO's 2).  Why the geometry matters: a GRF
of covariance (-Laplacian + tau^2)^(-alpha) on R^d is Hoelder continuous with exponent
H = alpha - d/2 (below 1), and the level sets of such a field have dimension d - H; the
interface a grid of n cells resolves then grows like n^(1-H).  FNO's alpha = 2 gives H = 1/2 in
3-D -- a fractal interface whose area grows like sqrt(n) (the ``interface`` column: n^0.5) --
and the borderline H = 1 in 2-D (logarithmic growth, n^0.1); alpha = 3 and the band-limited
field have smooth interfaces that converge.  An iteration count bounded as n doubles is a
property of a method on problems with a limit; on the FNO 3-D thresholds the counts of every
method follow the interface area.
Contrast 1e6 is counted to rtol 1e-6 there: beyond 64^2, 1e-8 lies below the float64 floor of ||b - A x|| (a direct
solve misses it too).  Prints markdown and writes JSON to ``bench/results/multigrid.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bench.isolation import in_process
from pdeforge.solvers.threads import single_threaded_blas

single_threaded_blas()

RTOL = 1e-8
KINDS = ("lognormal", "threshold4", "threshold1e3", "threshold1e6")
ROWS = [(128, 2), (256, 2), (32, 3), (48, 3)]
LARGE_ROWS = [(512, 2), (64, 3)]
QUICK_ROWS = [(64, 2), (16, 3)]
ADVECTION_KINDS = ("advection1", "advection10", "advection100")
ADVECTION_SIZES = (64, 128, 256)
GROWTH = {2: (64, 128, 256, 512), 3: (16, 32, 48, 64)}
QUICK_GROWTH = {2: (32, 64, 128), 3: (8, 16, 32)}
METHODS = ("mg", "fresh_sa", "amg")
#: growth table: (key, coarse option of Multigrid, cluster deflation)
GROWTH_VARIANTS = (("mg_V", "structured", False), ("mg_V_deflated", "structured", True),
                   ("mg", "auto", False), ("mg_deflated", "auto", True))
#: contrast 1e6 beyond 64^2: rtol 1e-8 is below the float64 floor of the true residual
GROWTH_RTOL = {"threshold1e6": 1e-6}
#: growth table: samples per grid (single samples of one grid differ by up to 2x; means compare grids)
GROWTH_SAMPLES = 4
#: growth table: threshold fields of a GRF this smooth, drawn at each n, have interfaces that
#: converge as n grows (Hoelder exponent alpha - d/2 > 1 in 2-D and 3-D), unlike FNO's alpha = 2
SMOOTH_ALPHA = 3.0


def samples_for(n: int, dim: int) -> int:
    return 6 if n**dim <= 300_000 else 4


def coefficient(kind: str, n: int, dim: int, band: int | None = None, alpha: float | None = None):
    """``lognormal``: std(log a) = 1 (GRF rescaled); ``thresholdC``: contrast C (4 is FNO's 12/3).

    ``band``: threshold fields of the band-limited GRF (modes ``max_j |k_j| < band``), the
    identical continuum field on every grid with ``n >= 2 band``; ``alpha``: threshold fields of a
    GRF with that smoothness exponent in place of FNO's 2, drawn at each n."""
    from pdeforge.solvers.fields import CoefficientSpec, GRFSpec, pointwise_std

    if kind == "lognormal":
        grf = GRFSpec()
        unit = GRFSpec(sigma=grf.amplitude(dim) / pointwise_std(grf, (n,) * dim))
        return CoefficientSpec(kind="lognormal", grf=unit, scale=1.0)
    contrast = float(kind.removeprefix("threshold"))
    grf = GRFSpec(band=band) if alpha is None else GRFSpec(band=band, alpha=alpha)
    if contrast == 4:
        return CoefficientSpec(kind="threshold", high=12.0, low=3.0, grf=grf)
    return CoefficientSpec(kind="threshold", high=contrast, low=1.0, grf=grf)


def sorted_sequence(kind, n, dim, count, seed=0, band=None, alpha=None):
    """The family, spec and the sample indices in the order ``pdeforge.solvers.generate`` solves them."""
    from pdeforge.solvers.families import get_family
    from pdeforge.solvers.ordering import order_systems

    if kind.startswith("advection"):  # advection_diffusion with max face speed V (nu = 0.01)
        family = get_family("advection_diffusion")
        spec = family.spec(n=n, dim=dim, velocity=float(kind.removeprefix("advection")))
    else:
        family = get_family("darcy")
        spec = family.spec(n=n, dim=dim, coefficient=coefficient(kind, n, dim, band, alpha))
    indices = np.arange(count)
    order = order_systems(family.features(spec, seed, indices), method="greedy")
    return family, spec, [int(i) for i in indices[order]]


# ----------------------------------------------------------------------------- methods
def true_residual(A, b, x) -> float:
    """||b - A x|| / ||b||, recomputed (the stopping tests of the methods differ; this one decides)."""
    return float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


def direct_residual(A, b) -> float:
    """True residual of a sparse direct solve: the float64 floor a method can be held to."""
    from pdeforge.solvers.engines.direct import HAVE_CHOLMOD

    if HAVE_CHOLMOD and abs(A - A.T).max() == 0:  # CHOLMOD for SPD only (advection-diffusion is not)
        from sksparse.cholmod import cholesky

        return true_residual(A, b, cholesky(A.tocsc())(b))
    import scipy.sparse.linalg as spla

    return true_residual(A, b, spla.spsolve(A.tocsc(), b))


def run_engine(engine_cls, kind, n, dim, count, spmv=False):
    from pdeforge.solvers.options import SolverOptions

    family, spec, order = sorted_sequence(kind, n, dim, count)
    engine = engine_cls(SolverOptions(engine="auto", rtol=RTOL), family, spec)
    rows = []
    for i in order:
        A, b = family.assemble(spec, family.sample(spec, 0, i))
        t_spmv = None
        if spmv:
            t0 = time.perf_counter()
            for _ in range(100):
                A @ b
            t_spmv = time.perf_counter() - t0
        x, rec = engine.solve(A, b)
        rows.append({"setup": rec.setup_seconds, "solve": rec.seconds - rec.setup_seconds,
                     "total": rec.seconds, "iterations": rec.iterations, "spmv100": t_spmv, "nnz": A.nnz,
                     "cells": A.shape[0],
                     "residual": true_residual(A, b, x)})
    return rows, dict(engine.counters)


def run_mg(kind, n, dim, count):
    # PyAMG's compiled kernels are imported by the first escalated set-up (45 ms, once per
    # process): import them here, like the warm-up sample, so that no per-sample figure carries it
    import importlib

    importlib.import_module("pyamg.amg_core")

    from pdeforge.solvers.engines.mg import MgEngine
    from pdeforge.solvers.multigrid import grid_hierarchy

    grid_hierarchy.cache_clear()
    t0 = time.perf_counter()
    grid_hierarchy((n,) * dim)
    pattern = time.perf_counter() - t0
    rows, counters = run_engine(MgEngine, kind, n, dim, count, spmv=True)
    extra = {"counters": counters, "pattern_build_ms": 1e3 * pattern}
    missed = [k for k, r in enumerate(rows) if not r["residual"] <= RTOL * 1.0001]
    if missed:  # is rtol attainable at all? the residual of a direct solve of the same systems
        family, spec, order = sorted_sequence(kind, n, dim, count)
        extra["direct_residual"] = max(direct_residual(*family.assemble(spec, family.sample(spec, 0, order[k])))
                                       for k in missed)
    return rows, extra


def run_amg(kind, n, dim, count):
    from pdeforge.solvers.engines.amg import AmgEngine

    rows, counters = run_engine(AmgEngine, kind, n, dim, count)
    return rows, {"counters": counters}


def run_fresh_sa(kind, n, dim, count):
    """A new PyAMG hierarchy per sample: SA + CG (Darcy), RS + GMRES(40) (advection--diffusion)."""
    import pyamg
    import scipy.sparse.linalg as spla

    from pdeforge.solvers.krylov import gmres

    family, spec, order = sorted_sequence(kind, n, dim, count)
    rows = []
    for i in order:
        A, b = family.assemble(spec, family.sample(spec, 0, i))
        t0 = time.perf_counter()
        if kind.startswith("advection"):
            ml = pyamg.ruge_stuben_solver(A)
            t1 = time.perf_counter()
            x, _, res = gmres(A, b, rtol=RTOL, M=ml.aspreconditioner(), m=40, maxiter=2000, full_output=True)
            t2 = time.perf_counter()
            rows.append({"setup": t1 - t0, "solve": t2 - t1, "total": t2 - t0, "iterations": res.iterations,
                         "residual": true_residual(A, b, x)})
            continue
        ml = pyamg.smoothed_aggregation_solver(A)
        t1 = time.perf_counter()
        its = [0]
        x, info = spla.cg(A, b, rtol=RTOL, M=ml.aspreconditioner(), maxiter=2000,
                          callback=lambda _x: its.__setitem__(0, its[0] + 1))
        t2 = time.perf_counter()
        rows.append({"setup": t1 - t0, "solve": t2 - t1, "total": t2 - t0, "iterations": its[0],
                     "residual": true_residual(A, b, x)})
    return rows, {}


RUNNERS = {"mg": run_mg, "fresh_sa": run_fresh_sa, "amg": run_amg}


def _child(conn, method, kind, n, dim, count):
    try:
        rows, extra = RUNNERS[method](kind, n, dim, count)
        steady = rows[1:] if len(rows) > 2 else rows  # the first sample is the warm-up
        med = {k: float(np.median([r[k] for r in steady])) for k in ("setup", "solve", "total", "iterations")}
        if rows[0].get("spmv100") is not None:
            med["spmv100"] = float(np.median([r["spmv100"] for r in steady]))
            med["ratio_spmv"] = float(np.median([r["total"] / r["spmv100"] for r in steady]))
            # the memory-hierarchy view: the reference product per stored non-zero, mg per cell and iteration
            med["spmv_ns_nnz"] = float(np.median([1e9 * r["spmv100"] / (100 * r["nnz"]) for r in steady]))
            med["mg_ns_cell_it"] = float(np.median([1e9 * r["total"] / (r["cells"] * max(r["iterations"], 1))
                                                    for r in steady]))
        res = [r["residual"] for r in rows]
        conn.send({**med, "samples": len(rows), "iterations_all": [r["iterations"] for r in rows],
                   "max_residual": max(res), "unconverged": sum(not r <= RTOL * 1.0001 for r in res), **extra})
    except Exception as exc:  # reported in the table, never silently dropped
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    conn.close()


def forked(target, *args, timeout=900):
    return in_process(target, *args, timeout=timeout)


# ----------------------------------------------------------------------------- growth check
def _growth_child(conn, kind, dim, sizes, geometry, samples):
    import pyamg
    import scipy.sparse.linalg as spla

    from pdeforge.solvers.multigrid import mg_cg

    rtol = GROWTH_RTOL.get(kind, RTOL)
    out = {"rtol": rtol, **{key: {} for key, *_ in GROWTH_VARIANTS}, "fresh_sa": {}, "fresh_rs": {}}
    if kind.startswith("threshold"):
        out["interface"] = {}
    try:
        for n in sizes:
            family, spec, _ = sorted_sequence(kind, n, dim, 1, **geometry)
            for key in out:
                if key != "rtol":
                    out[key][n] = []
            for index in range(samples):
                sample = family.sample(spec, 0, index)
                A, b = family.assemble(spec, sample)
                if "interface" in out:
                    out["interface"][n].append(interface_measure(sample.fields["a"]))
                for key, coarse, deflate in GROWTH_VARIANTS:
                    x, info, res = mg_cg(A, b, rtol=rtol, maxiter=1000, full_output=True, deflate=deflate,
                                         coarse=coarse)
                    out[key][n].append(res.iterations if info == 0 else f"{res.iterations} (info {info})")
                for key, build in (("fresh_sa", pyamg.smoothed_aggregation_solver),
                                   ("fresh_rs", pyamg.ruge_stuben_solver)):
                    ml = build(A)
                    its = [0]
                    _, info = spla.cg(A, b, rtol=rtol, M=ml.aspreconditioner(), maxiter=1000,
                                      callback=lambda _x: its.__setitem__(0, its[0] + 1))
                    out[key][n].append(its[0] if info == 0 else f"{its[0]} (info {info})")
        conn.send(out)
    except Exception as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}", **out})
    conn.close()


def interface_measure(a: np.ndarray) -> float:
    """Faces between the two values of a threshold field per ``n^(d-1)``: the interface length (2-D)
    or area (3-D) in units of the unit square / cube, as a staircase (a fixed smooth interface gives
    the same figure on every grid)."""
    high = a > np.sqrt(a.min() * a.max())
    return float(sum(np.count_nonzero(np.diff(high, axis=axis)) for axis in range(a.ndim)) / a.shape[0] ** (a.ndim - 1))


def _mean(counts: list) -> float | None:
    """Mean over one grid's samples (iteration counts or interface measures); None if one did not converge."""
    return float(np.mean(counts)) if counts and all(isinstance(v, (int, float)) for v in counts) else None


def _counts(counts) -> str:
    """Per grid: the mean count over the samples (n/c where one did not converge)."""
    if not counts:
        return "–"
    means = [_mean(v) for v in counts.values()]
    return " ".join("n/c" if m is None else f"{m:.1f}" for m in means)


def growth_ratio(counts: dict, exponent: bool = False) -> str:
    """Mean count at the largest grid over the mean count at the smallest (``exponent``: also the
    power of n it grows with, ``log ratio / log(n_max / n_min)``)."""
    means = [_mean(v) for v in counts.values()]
    if not means:
        return "–"
    if None in (means[0], means[-1]):
        return "n/c"
    ratio = means[-1] / means[0]
    if not exponent:
        return f"{ratio:.2f}"
    sizes = [int(n) for n in counts]  # JSON keys are strings after a round trip
    return f"{ratio:.2f} (n^{np.log(ratio) / np.log(sizes[-1] / sizes[0]):.2f})"


# ----------------------------------------------------------------------------- main
def fmt_ms(s):
    return f"{1e3 * s:.1f}"


def nc(r: dict) -> str:
    """Marks samples whose true residual missed rtol (with the direct solve's residual where measured)."""
    if not r.get("unconverged"):
        return ""
    floor = f", direct {r['direct_residual']:.1e}" if "direct_residual" in r else ""
    return f" [{r['unconverged']}/{r['samples']} > rtol: max {r['max_residual']:.1e}{floor}]"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--large", action="store_true", help="add 512^2 and 64^3")
    ap.add_argument("--quick", action="store_true", help="smoke run")
    ap.add_argument("--no-growth", action="store_true", help="skip the iteration-growth table")
    ap.add_argument("--no-darcy", action="store_true", help="skip the Darcy rows")
    ap.add_argument("--no-band", action="store_true", help="growth table: skip the band-limited threshold rows")
    ap.add_argument("--no-smooth", action="store_true",
                    help=f"growth table: skip the threshold rows of the smoother GRF (alpha = {SMOOTH_ALPHA:g})")
    ap.add_argument("--growth-samples", type=int, default=GROWTH_SAMPLES,
                    help=f"growth table: samples per grid (default {GROWTH_SAMPLES})")
    ap.add_argument("--advection", action="store_true",
                    help="add advection-diffusion rows (max face speed 1, 10, 100; nu = 0.01) at 64^2..256^2")
    ap.add_argument("--out", default="bench/results/multigrid.json")
    args = ap.parse_args(argv)
    sizes = QUICK_ROWS if args.quick else ROWS + (LARGE_ROWS if args.large else [])
    growth_sizes = QUICK_GROWTH if args.quick else GROWTH
    t_start = time.perf_counter()
    rows = []
    cases = [] if args.no_darcy else [(kind, n, dim) for n, dim in sizes for kind in KINDS]
    if args.advection:
        cases += [(kind, n, 2) for kind in ADVECTION_KINDS for n in ADVECTION_SIZES[: 2 if args.quick else 3]]
    for kind, n, dim in cases:
        count = 3 if args.quick else samples_for(n, dim)
        res = {m: forked(_child, m, kind, n, dim, count) for m in METHODS}
        row = {"kind": kind, "grid": f"{n}^{dim}", "n": n, "dim": dim, "samples": count, "methods": res}
        mg = res["mg"]
        for other in ("fresh_sa", "amg"):
            if "total" in mg and "total" in res[other]:
                row[f"x_{other}"] = res[other]["total"] / mg["total"]
        rows.append(row)
        print(f"# {kind} {n}^{dim}: " + ", ".join(
            f"{m}={r.get('error') or '%.1f ms / %.0f it' % (1e3 * r['total'], r['iterations'])}"
            for m, r in res.items()), flush=True)

    growth = []
    if not args.no_growth:
        for dim, gs in growth_sizes.items():
            for kind in KINDS:
                geometries = [{}]
                if kind.startswith("threshold") and kind != "threshold4":
                    geometries += ([] if args.no_band else [{"band": gs[0] // 2}]) + (
                        [] if args.no_smooth else [{"alpha": SMOOTH_ALPHA}])
                for geometry in geometries:
                    g = forked(_growth_child, kind, dim, gs, geometry, 2 if args.quick else args.growth_samples)
                    growth.append({"kind": kind, "dim": dim, "band": geometry.get("band"),
                                   "alpha": geometry.get("alpha"), **g})
                    print(f"# growth {kind} {dim}-D {geometry}: {g}", flush=True)
    elapsed = time.perf_counter() - t_start

    print("\n## mg vs PyAMG, rtol 1e-8 (medians after a warm-up sample; ms per sample)\n")
    print("Darcy: fresh PyAMG = SA + CG; advectionV (advection_diffusion, max face speed V, nu = 0.01): "
          "fresh PyAMG = RS + GMRES(40), amg = RS + GMRES with hierarchy reuse, mg = FGMRES(40).\n")
    print("[k/S > rtol: ...]: k of S samples ended with a true residual above rtol (max shown); 'direct': the "
          "true residual of a sparse direct solve of the worst such system (the float64 floor).\n")
    print("ns/nnz: the 100 SpMV per stored non-zero; ns/(cell it): mg total per cell and CG iteration.\n")
    print("| coefficient | grid | mg set-up | mg solve | mg it | mg total | 100 SpMV | total / 100 SpMV | "
          "ns/nnz | ns/(cell it) | fresh PyAMG total (it) | amg total (it) | x fresh PyAMG | x amg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["methods"]
        mg = m["mg"]
        if "error" in mg:
            print(f"| {r['kind']} | {r['grid']} | error: {mg['error'][:80]} |")
            continue

        def other(key):
            o = m[key]
            if "error" in o:
                return f"error: {o['error'][:40]}"
            return f"{fmt_ms(o['total'])} ({o['iterations']:.0f}){nc(o)}"

        print(f"| {r['kind']} | {r['grid']} | {fmt_ms(mg['setup'])} | {fmt_ms(mg['solve'])} | "
              f"{mg['iterations']:.0f}{nc(mg)} | {fmt_ms(mg['total'])} | {fmt_ms(mg['spmv100'])} | "
              f"{mg['ratio_spmv']:.2f} | {mg['spmv_ns_nnz']:.2f} | {mg['mg_ns_cell_it']:.0f} | "
              f"{other('fresh_sa')} | {other('amg')} | "
              + " | ".join(f"{r[k]:.1f}x" if k in r else "–" for k in ("x_fresh_sa", "x_amg")) + " |")
    if growth:
        print("\n## Iterations as n doubles (mean over samples 0..k-1 per grid; ratio: the largest grid's mean "
              "over the smallest's; n/c: not converged)\n")
        print("V: structured coarse levels only (the engine before escalating); V+defl: with cluster deflation "
              "(the engine's escalated 3-D path); auto: classical AMG below the first agglomeration when the face "
              "coefficients jump by >= 100 (in 2-D with more than two islands below 64 cells), otherwise identical to V "
              "(the engine's escalated 2-D path); "
              "+defl: cluster deflation (auto+defl: the engine's escalated path on 3-D grids from 96^3 cells); "
              "fresh SA / RS: PyAMG smoothed aggregation / classical Ruge-Stueben AMG of the whole operator "
              "(operator-dependent interpolation on every level) + CG.\n")
        print("interface: the mean interface measure of the threshold fields (faces between the two values "
              "per n^(d-1): length or area in units of the unit square / cube) -- how much interface each "
              "grid's problems hold; its ratio with the power of n it grows like.\n")
        print("| coefficient | dim | geometry | rtol | interface | ratio | V | ratio | V+defl | ratio | auto | ratio | "
              "auto+defl | ratio | fresh SA | ratio | fresh RS | ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for g in growth:
            geo = (f"band {g['band']}: one field" if g.get("band") else
                   f"GRF alpha={g['alpha']:g} at each n" if g.get("alpha") else "GRF at each n")
            err = f" error: {g['error']}" if "error" in g else ""
            cells = " | ".join(f"{_counts(g.get(key))} | {growth_ratio(g.get(key) or {}, key == 'interface')}"
                               for key in ("interface", "mg_V", "mg_V_deflated", "mg", "mg_deflated", "fresh_sa",
                                           "fresh_rs"))
            print(f"| {g['kind']} | {g['dim']} | {geo} | {g.get('rtol', RTOL):g} | {cells}{err} |")
    print(f"\ntotal {elapsed:.0f} s on {os.cpu_count()} cores (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})")
    out = {"rows": rows, "growth": growth, "seconds": elapsed, "cores": os.cpu_count(), "rtol": RTOL}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print(f"JSON written to {args.out}")
    return out


if __name__ == "__main__":
    main()

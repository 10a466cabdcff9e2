r"""Samples -> ordered systems -> verified solutions, without any I/O.

:func:`generate` draws samples ``indices`` of a family (each a pure function of
(seed, index)), optionally orders them so neighbours are similar, solves them in
sequence with an engine from ``ENGINES`` and returns inputs ``x``, solutions ``y``
and one :class:`SampleRecord` per sample.  The stored residual is always
recomputed here, :math:`\|b - Ay\|/\|b\|`, independently of what the solver
reports; a Krylov solve that misses the tolerance is re-solved with the direct
engine and the record says so.

Engines (:mod:`solvers.engines`; a fresh engine instance lives for one sequence, so
state such as a recycled subspace, a symbolic factorization or an AMG hierarchy
flows from one system to the next): ``skr``, ``gmres``, ``direct``,
``direct_mixed``, ``factorize_once``, ``amg`` and ``auto`` (a time-boxed pilot on
the first samples picks the fastest; the decision is in ``meta["engine"]``).
Fixed-operator families with a block engine (``factorize_once``) assemble all
right-hand sides first and solve them as one block.

References: Wang et al., "Accelerating Data Generation for Neural Operators via
Krylov Subspace Recycling", ICLR 2024.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .families import FamilySpec, PDEFamily, get_family
from .engines import ENGINES, DirectEngine, pilot
from .krylov import SolveResult
from .options import SolverOptions
from .ordering import order_systems

@dataclass(frozen=True)
class SampleRecord:
    """What happened to one sample; ``residual`` is the recomputed true relative residual."""

    index: int
    engine: str
    converged: bool
    residual: float
    iterations: int
    matvecs: int
    precond_applies: int
    seconds: float
    solve_seconds: float = 0.0
    fallback: bool = False
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class GenerationResult:
    """Arrays in solve order: ``x`` (S, C, *grid), ``y`` (S, *grid), ``indices`` (S,)."""

    indices: np.ndarray
    x: np.ndarray
    y: np.ndarray
    records: list[SampleRecord]
    scalars: dict[str, np.ndarray]
    input_names: list[str]
    ordering_seconds: float = 0.0
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


def true_residual(A, b, y) -> float:
    """||b - A y|| / ||b|| (0 for b = 0 and y = 0)."""
    nb = float(np.linalg.norm(b))
    r = float(np.linalg.norm(b - A @ y))
    return r / nb if nb > 0 else r


def order_indices(family: PDEFamily, spec: FamilySpec, seed: int, indices: Sequence[int],
                  method: str) -> np.ndarray:
    """``indices`` reordered so that consecutive samples are similar (features only, no fields)."""
    indices = np.asarray(indices, dtype=np.int64)
    if method == "none" or len(indices) < 3:
        return indices
    feats = family.features(spec, seed, indices)
    if feats.shape[1] == 0:
        return indices
    return indices[order_systems(feats, method=method)]


def generate(
    family: str | PDEFamily,
    spec: FamilySpec,
    indices: Sequence[int],
    *,
    seed: int,
    options: SolverOptions | None = None,
    on_sample: Callable[[SampleRecord], None] | None = None,
) -> GenerationResult:
    """Solve samples ``indices`` of ``family`` with ``options.engine`` (see module docstring).

    ``on_sample(record)`` is called after every sample (progress, cooperative
    cancellation: an exception raised there aborts the sequence).
    """
    fam = get_family(family) if isinstance(family, str) else family
    options = options or SolverOptions()
    t0 = time.perf_counter()
    order = order_indices(fam, spec, seed, indices, options.ordering)
    ordering_seconds = time.perf_counter() - t0
    decision = None
    if options.engine == "auto":
        decision = pilot(fam, spec, seed, order, options)
        options = dataclasses.replace(options, engine=decision["chosen"])
    engine = ENGINES[options.engine](options, fam, spec)

    S = len(order)
    names = fam.input_names(spec)
    x = np.empty((S, len(names), *spec.shape))
    y = np.empty((S, *spec.shape), dtype=fam.dtype(spec))
    scalars = {name: np.empty(S) for name in fam.scalar_names(spec)}
    records = []

    def finish(pos, index, sample, A, b, sol, res, prep_seconds, solve_seconds):
        t = time.perf_counter()
        record = _verified_record(int(index), options, engine.name, A, b, sol, res)
        if not record.converged and options.fallback and engine.name not in ("direct", "factorize_once"):
            sol, dres = DirectEngine(options, fam, spec).solve(A, b)
            record = _fallback_record(record, A, b, sol, dres, options)
        solve_seconds += time.perf_counter() - t
        record = _with_seconds(record, prep_seconds + solve_seconds, solve_seconds)
        x[pos] = fam.inputs(spec, sample)
        y[pos] = sol.reshape(spec.shape)
        for name in scalars:
            scalars[name][pos] = sample.scalars[name]
        records.append(record)
        if on_sample is not None:
            on_sample(record)

    if engine.block and not fam.operator_varies(spec) and S:
        # fixed operator: assemble every right-hand side, one block solve
        t_start = time.perf_counter()
        samples = [fam.sample(spec, seed, int(i)) for i in order]
        systems = [fam.assemble(spec, smp) for smp in samples]
        A = systems[0][0]
        t_block = time.perf_counter()
        X, results = engine.solve_block(A, np.column_stack([b for _, b in systems]))
        share, prep = (time.perf_counter() - t_block) / S, (t_block - t_start) / S
        for pos, (index, smp, (_, b), res) in enumerate(zip(order, samples, systems, results)):
            finish(pos, index, smp, A, b, X[:, pos], res, prep, share)
    else:
        for pos, index in enumerate(order):
            t1 = time.perf_counter()
            sample = fam.sample(spec, seed, int(index))
            A, b = fam.assemble(spec, sample)
            t2 = time.perf_counter()
            sol, res = engine.solve(A, b)
            finish(pos, index, sample, A, b, sol, res, t2 - t1, time.perf_counter() - t2)
    meta = {"family": fam.name, "engine": decision or {"requested": options.engine, "chosen": options.engine},
            "counters": dict(engine.counters)}
    return GenerationResult(order, x, y, records, scalars, names, ordering_seconds, meta)


def _verified_record(index, options, engine, A, b, sol, res: SolveResult) -> SampleRecord:
    rel = true_residual(A, b, sol)
    tol = max(options.rtol, options.atol / max(float(np.linalg.norm(b)), 1e-300))
    ok = bool(np.isfinite(rel) and rel <= tol)
    msg = res.message if ok else f"{res.message}; true residual {rel:.3e} > tolerance {tol:.1e}"
    return SampleRecord(index, engine, ok, rel, res.iterations, res.matvecs, res.precond_applies, 0.0,
                        message=msg)


def _fallback_record(first: SampleRecord, A, b, sol, dres: SolveResult, options) -> SampleRecord:
    second = _verified_record(first.index, options, "direct", A, b, sol, dres)
    return SampleRecord(first.index, "direct", second.converged, second.residual, first.iterations,
                        first.matvecs + dres.matvecs, first.precond_applies, 0.0, fallback=True,
                        message=f"{first.engine} did not converge ({first.message}); re-solved with direct")


def _with_seconds(record: SampleRecord, seconds: float, solve_seconds: float) -> SampleRecord:
    return dataclasses.replace(record, seconds=seconds, solve_seconds=solve_seconds)

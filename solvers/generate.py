r"""Samples -> ordered systems -> verified solutions, without any I/O.

:func:`generate` draws samples ``indices`` of a family (each a pure function of
(seed, index)), optionally orders them so neighbours are similar, solves them in
sequence with an engine from ``ENGINES`` and returns inputs ``x``, solutions ``y``
and one :class:`SampleRecord` per sample.  The stored residual is always
recomputed here, :math:`\|b - Ay\|/\|b\|`, independently of what the solver
reports; a Krylov solve that misses the tolerance is re-solved with the direct
engine and the record says so.

Engines (:mod:`pdeforge.solvers.engines`; a fresh engine instance lives for one sequence, so
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

from .engines import ENGINES, DirectEngine, Engine, EngineDecision, FactorCache, pilot
from .families import FamilySpec, PDEFamily, Sample, get_family
from .krylov import SolveResult
from .options import SolverOptions
from .ordering import order_samples
from .residual import meets_tolerance


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


@dataclass
class _Solved:
    """One solved system before verification: sample, system, solution and timings."""

    index: int
    sample: Sample
    A: object
    b: np.ndarray
    x: np.ndarray
    result: SolveResult
    prep_seconds: float
    solve_seconds: float


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


def generate(
    family: str | PDEFamily,
    spec: FamilySpec,
    indices: Sequence[int],
    *,
    seed: int,
    options: SolverOptions | None = None,
    on_sample: Callable[[SampleRecord], None] | None = None,
    cache: FactorCache | None = None,
) -> GenerationResult:
    """Solve samples ``indices`` of ``family`` with ``options.engine`` (see module docstring).

    ``on_sample(record)`` is called after every sample (progress, cooperative
    cancellation: an exception raised there aborts the sequence).  ``cache`` holds
    factorizations of fixed operators across calls (a worker process owns one).
    """
    fam = get_family(family) if isinstance(family, str) else family
    options = options or SolverOptions()
    t0 = time.perf_counter()
    order, _ = order_samples(fam, spec, seed, indices, options.ordering)
    ordering_seconds = time.perf_counter() - t0
    decision = EngineDecision.fixed(options.engine)
    if options.engine == "auto":
        decision = pilot(fam, spec, seed, order, options)
        options = dataclasses.replace(options, engine=decision.chosen)
    engine = ENGINES[options.engine](options, fam, spec, cache=cache)
    out = _Collector(fam, spec, len(order), options, engine, on_sample)
    if engine.block and not fam.capabilities(spec).operator_varies and len(order):
        _solve_block(fam, spec, seed, order, engine, out)
    else:
        for pos, index in enumerate(order):
            t1 = time.perf_counter()
            sample = fam.sample(spec, seed, int(index))
            A, b = fam.assemble(spec, sample)
            t2 = time.perf_counter()
            x, res = engine.solve(A, b)
            out.add(pos, _Solved(int(index), sample, A, b, x, res, t2 - t1, time.perf_counter() - t2))
    meta = {"family": fam.name, "engine": decision.as_dict(), "counters": dict(engine.counters)}
    return GenerationResult(order, out.x, out.y, out.records, out.scalars, out.names, ordering_seconds, meta)


def _solve_block(fam, spec, seed, order, engine: Engine, out: _Collector) -> None:
    """Fixed operator and a block engine: assemble every right-hand side, one block solve."""
    t_start = time.perf_counter()
    samples = [fam.sample(spec, seed, int(i)) for i in order]
    systems = [fam.assemble(spec, smp) for smp in samples]
    A = systems[0][0]
    t_block = time.perf_counter()
    X, results = engine.solve_block(A, np.column_stack([b for _, b in systems]))
    S = len(order)
    share, prep = (time.perf_counter() - t_block) / S, (t_block - t_start) / S
    for pos, (index, smp, (_, b), res) in enumerate(zip(order, samples, systems, results)):
        out.add(pos, _Solved(int(index), smp, A, b, X[:, pos], res, prep, share))


class _Collector:
    """Verifies each solved sample (true residual, direct fallback) and stores it in solve order."""

    def __init__(self, fam: PDEFamily, spec: FamilySpec, count: int, options: SolverOptions, engine: Engine,
                 on_sample: Callable[[SampleRecord], None] | None) -> None:
        self.fam, self.spec, self.options, self.engine, self.on_sample = fam, spec, options, engine, on_sample
        self.names = fam.input_names(spec)
        self.x = np.empty((count, len(self.names), *spec.shape))
        self.y = np.empty((count, *spec.shape), dtype=fam.dtype(spec))
        self.scalars = {name: np.empty(count) for name in fam.scalar_names(spec)}
        self.records: list[SampleRecord] = []

    def add(self, pos: int, solved: _Solved) -> None:
        t = time.perf_counter()
        x, record = self._verify(solved)
        solve_seconds = solved.solve_seconds + time.perf_counter() - t
        record = dataclasses.replace(record, seconds=solved.prep_seconds + solve_seconds,
                                     solve_seconds=solve_seconds)
        self.x[pos] = self.fam.inputs(self.spec, solved.sample)
        self.y[pos] = x.reshape(self.spec.shape)
        for name in self.scalars:
            self.scalars[name][pos] = solved.sample.scalars[name]
        self.records.append(record)
        if self.on_sample is not None:
            self.on_sample(record)

    def _verify(self, s: _Solved) -> tuple[np.ndarray, SampleRecord]:
        """The true residual decides; an unconverged iterative solve is re-solved directly."""
        record = _verified_record(s.index, self.options, self.engine.name, s.A, s.b, s.x, s.result)
        if record.converged or not self.options.fallback or self.engine.exact:
            return s.x, record
        x, dres = DirectEngine(self.options, self.fam, self.spec).solve(s.A, s.b)
        return x, _fallback_record(record, s.A, s.b, x, dres, self.options)


def _verified_record(index, options, engine, A, b, sol, res: SolveResult) -> SampleRecord:
    ok, rel = meets_tolerance(A, b, sol, options.rtol, options.atol)
    msg = res.message if ok else f"{res.message}; true residual {rel:.3e} misses rtol {options.rtol:.1e}"
    return SampleRecord(index, engine, ok, rel, res.iterations, res.matvecs, res.precond_applies, 0.0,
                        message=msg)


def _fallback_record(first: SampleRecord, A, b, sol, dres: SolveResult, options) -> SampleRecord:
    second = _verified_record(first.index, options, "direct", A, b, sol, dres)
    return SampleRecord(first.index, "direct", second.converged, second.residual, first.iterations,
                        first.matvecs + dres.matvecs, first.precond_applies, 0.0, fallback=True,
                        message=f"{first.engine} did not converge ({first.message}); re-solved with direct")

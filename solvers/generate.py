r"""Samples -> ordered systems -> verified solutions, without any I/O.

:func:`generate` draws samples ``indices`` of a family (each a pure function of
(seed, index)), optionally orders them so neighbours are similar, solves them in
sequence with an engine from ``ENGINES`` and returns inputs ``x``, solutions ``y``
and one :class:`SampleRecord` per sample.  :func:`solve_sequence` is the same loop
handing every solved sample to a *sink* as it is produced (the dataset writer streams
them to disk, so memory stays bounded by one sample).

Precision.  With ``precision="float32"`` every sample's inputs are rounded to float32
*before* the system is assembled (:meth:`~pdeforge.solvers.families.Sample.rounded`),
so the stored inputs are exactly the inputs of the system that was solved; the system
is solved in float64, and the record holds two true residuals
:math:`\|b - Ay\|/\|b\|`, recomputed here whatever the solver reports: ``residual`` of
the float64 solution and ``residual_stored`` of the solution rounded to the storage
precision.  A solve that misses the tolerance is re-solved with the direct engine and
the record says so.

Engines (:mod:`pdeforge.solvers.engines`; a fresh engine instance lives for one sequence, so
state such as a recycled subspace, a symbolic factorization or an AMG hierarchy
flows from one system to the next): ``skr``, ``gmres``, ``direct``,
``direct_mixed``, ``factorize_once``, ``amg``, ``spectral`` and ``auto`` (a time-boxed
pilot on the first samples picks the fastest; the decision is in ``meta["engine"]``).
Fixed-operator families with a block engine (``factorize_once``, ``spectral``) assemble
all right-hand sides first and solve them as one block.

References: Wang et al., "Accelerating Data Generation for Neural Operators via
Krylov Subspace Recycling", ICLR 2024.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from .engines import ENGINES, DirectEngine, Engine, EngineDecision, FactorCache, pilot
from .families import FamilySpec, PDEFamily, Sample, get_family
from .krylov import SolveResult
from .options import SolverOptions
from .ordering import order_samples
from .residual import meets_tolerance, tolerance, true_residual
from .timestepping import integrate


@dataclass(frozen=True)
class SampleRecord:
    """What happened to one sample.

    ``residual`` is the recomputed true relative residual of the float64 solution;
    ``residual_stored`` that of the solution rounded to the storage precision (None
    without one).
    """

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
    residual_stored: float | None = None
    #: trajectories: implicit steps taken, estimated relative time error, distinct step matrices
    steps: int = 0
    time_error_estimate: float | None = None
    operators: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SolvedSample:
    """One verified sample, handed to a sink: its inputs (as solved) and its solution."""

    position: int
    sample: Sample
    inputs: np.ndarray  # (C_in, *grid): the channels of x
    y: np.ndarray | None  # (C_out, *grid): the float64 (complex128) solution; None for trajectories
    record: SampleRecord


class Sink(Protocol):
    """Receives the solved samples of a sequence in solve order; a trajectory's frames arrive first,
    one by one (``add_frame``), as the integrator reaches them."""

    def add(self, solved: SolvedSample) -> None: ...

    def add_frame(self, position: int, k: int, frame: np.ndarray) -> None: ...


@dataclass
class GenerationResult:
    """Arrays in solve order: ``x`` (S, C_in, *grid), ``y`` (S, C_out, *grid) -- trajectories
    (S, T, C_out, *grid) --, ``indices`` (S,), ``scalars`` {name: (S,)}, ``extras`` {name: (S, *shape)}."""

    indices: np.ndarray
    x: np.ndarray
    y: np.ndarray
    records: list[SampleRecord]
    scalars: dict[str, np.ndarray]
    input_names: list[str]
    ordering_seconds: float = 0.0
    meta: dict = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    output_names: list[str] = field(default_factory=lambda: ["u"])


class ArraySink:
    """Collects a sequence in memory (what :func:`generate` returns)."""

    def __init__(self, fam: PDEFamily, spec: FamilySpec, count: int) -> None:
        self.input_names, self.output_names = fam.input_names(spec), fam.output_names(spec)
        self.x = np.empty((count, len(self.input_names), *spec.shape))
        frames = () if spec.time is None else (spec.time.frames,)
        self.y = np.empty((count, *frames, len(self.output_names), *spec.shape), dtype=fam.dtype(spec))
        self.scalars = {name: np.empty(count) for name in fam.scalar_names(spec)}
        self.extras = {e.name: np.empty((count, *e.shape)) for e in fam.extra_inputs(spec)}
        self.records: list[SampleRecord] = []

    def add_frame(self, position: int, k: int, frame: np.ndarray) -> None:
        self.y[position, k] = frame

    def add(self, solved: SolvedSample) -> None:
        pos, s = solved.position, solved.sample
        self.x[pos] = solved.inputs
        if solved.y is not None:
            self.y[pos] = solved.y
        for name in self.scalars:
            self.scalars[name][pos] = s.scalars[name]
        for name in self.extras:
            self.extras[name][pos] = s.extras[name]
        self.records.append(solved.record)


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
    precision: str | None = None,
) -> GenerationResult:
    """Solve samples ``indices`` of ``family`` with ``options.engine`` (see module docstring).

    ``on_sample(record)`` is called after every sample (progress, cooperative
    cancellation: an exception raised there aborts the sequence).  ``cache`` holds
    factorizations of fixed operators across calls (a worker process owns one).
    ``precision`` (``"float32"``/``"float64"``) rounds the inputs before assembly.
    """
    fam = get_family(family) if isinstance(family, str) else family
    options = options or SolverOptions()
    t0 = time.perf_counter()
    order, _ = order_samples(fam, spec, seed, indices, options.ordering)
    ordering_seconds = time.perf_counter() - t0
    sink = ArraySink(fam, spec, len(order))
    meta = solve_sequence(fam, spec, seed, order, options, sink, on_sample=on_sample, cache=cache,
                          precision=precision)
    return GenerationResult(order, sink.x, sink.y, sink.records, sink.scalars, sink.input_names, ordering_seconds,
                            meta, sink.extras, sink.output_names)


def solve_sequence(fam: PDEFamily, spec: FamilySpec, seed: int, order: Sequence[int], options: SolverOptions,
                   sink: Sink, *, on_sample: Callable[[SampleRecord], None] | None = None,
                   cache: FactorCache | None = None, precision: str | None = None,
                   initial_guess: Callable[[int], np.ndarray | None] | None = None) -> dict:
    """Solve samples ``order`` in that order, handing each to ``sink``; returns ``meta``
    (the engine decision and the engine's set-up counters).  ``initial_guess(pos)`` (steady
    systems, iterative engines) starts the solve of the sample at position ``pos`` from the
    returned vector -- e.g. the interpolated solution of the same sample on a coarser grid."""
    order = np.asarray(order, dtype=np.int64)
    decision = EngineDecision.fixed(options.engine)
    if options.engine == "auto":
        decision = pilot(fam, spec, seed, order, options)
        options = dataclasses.replace(options, engine=decision.chosen)
    engine = ENGINES[options.engine](options, fam, spec, cache=cache)
    verifier = _Verifier(fam, spec, options, engine, sink, on_sample, precision)

    def draw(index) -> Sample:
        sample = fam.sample(spec, seed, int(index))
        return sample if precision is None else sample.rounded(precision)

    caps = fam.capabilities(spec)
    if caps.time_dependent:
        stepper = _Trajectories(fam, spec, engine, options, sink, on_sample, cache, fixed=not caps.operator_varies)
        if caps.linear_system:
            for pos, index in enumerate(order):
                stepper.run(pos, draw(index))
        else:  # own steppers advance a batch of neighbouring trajectories together
            size = fam.batch_size(spec)
            for start in range(0, len(order), size):
                positions = list(range(start, min(start + size, len(order))))
                stepper.run_batch(positions, [draw(order[pos]) for pos in positions])
    elif engine.block and not caps.operator_varies and len(order):
        _solve_block(fam, spec, order, draw, engine, verifier)
    else:
        guess = initial_guess if initial_guess is not None and not engine.exact else (lambda pos: None)
        for pos, index in enumerate(order):
            t1 = time.perf_counter()
            sample = draw(index)
            A, b = fam.assemble(spec, sample)
            x0 = guess(pos)
            t2 = time.perf_counter()
            x, res = engine.solve(A, b, x0)
            verifier.add(pos, sample, A, b, x, res, t2 - t1, time.perf_counter() - t2)
    return {"family": fam.name, "engine": decision.as_dict(), "counters": dict(engine.counters)}


class _Trajectories:
    """Integrates the samples of a transient spec, one trajectory each, streaming frames to the sink.

    Families with a linear system are stepped by :func:`~pdeforge.solvers.timestepping.integrate`,
    each step solved by the engine from the predictor (warm start) and verified by its true
    residual (falling back to a direct solve, whose factorization is then kept for the
    trajectory); families without one step themselves (``family.integrate``).
    """

    def __init__(self, fam, spec, engine: Engine, options: SolverOptions, sink: Sink, on_sample, cache,
                 *, fixed: bool) -> None:
        self.fam, self.spec, self.engine, self.options, self.sink, self.on_sample = \
            fam, spec, engine, options, sink, on_sample
        # a fixed operator (the capabilities say so): assembled once, its step matrices shared by every
        # trajectory (and by the worker's factorization, through the cache)
        self.fixed, self.L = fixed, None
        self.memo = (cache.memo if cache is not None else {}) if fixed else None
        self.direct: Engine | None = None

    def _solve(self, M, rhs, x0):
        o = self.options
        x, res = self.engine.solve(M, rhs, x0)
        # every engine's record carries ||rhs - M x|| recomputed from M, rhs and the returned x (not
        # a solver's recurrence): one product per step verifies it; the tolerance rule is ours
        ok, rel = _step_check(rhs, res, o)
        info = {"iterations": res.iterations, "matvecs": res.matvecs, "precond_applies": res.precond_applies,
                "residual": rel, "converged": ok, "fallback": False}
        if not ok and o.fallback and not self.engine.exact:
            if self.direct is None:
                self.direct = DirectEngine(o, self.fam, self.spec)
            x, dres = self.direct.solve(M, rhs)
            ok, rel = meets_tolerance(M, rhs, x, o.rtol, o.atol)
            info.update(residual=rel, converged=ok, fallback=True, matvecs=info["matvecs"] + dres.matvecs)
        return x, info

    def run(self, pos: int, sample: Sample) -> None:
        fam, spec = self.fam, self.spec
        t0 = time.perf_counter()
        shape = (len(fam.output_names(spec)), *spec.shape)

        def on_frame(k: int, u: np.ndarray) -> None:
            self.sink.add_frame(pos, k, np.asarray(u).reshape(shape))

        L, b = fam.assemble(spec, sample)
        if self.fixed:
            self.L = L = self.L if self.L is not None else L
        rec = integrate(L, fam.initial_state(spec, sample), fam.explicit(spec, sample, b), spec.time,
                        self._solve, on_frame, memo=self.memo, warm_start=not self.engine.exact)
        self._record(pos, sample, rec, time.perf_counter() - t0)

    def run_batch(self, positions: list[int], samples: list[Sample]) -> None:
        """A family's own stepper over several trajectories at once (each record gets an equal share of
        the time)."""
        t0 = time.perf_counter()

        def on_frame(k: int, u: np.ndarray) -> None:
            for j, pos in enumerate(positions):
                self.sink.add_frame(pos, k, u[j])

        records = self.fam.integrate_batch(self.spec, samples, on_frame, self.options)
        share = (time.perf_counter() - t0) / len(samples)
        for pos, sample, rec in zip(positions, samples, records):
            self._record(pos, sample, rec, share)

    def _record(self, pos: int, sample: Sample, rec, seconds: float) -> None:
        fam, spec = self.fam, self.spec
        engine = "direct" if rec.fallbacks == rec.steps and rec.steps else self.engine.name
        message = (f"{rec.steps} steps ({spec.time.scheme}, dt={spec.time.dt:g}), max step residual "
                   f"{rec.residual_max:.2e}, {rec.operators} step matrices, time error ~{rec.time_error_estimate:.1e}"
                   + (f", {rec.fallbacks} steps re-solved directly" if rec.fallbacks else "")
                   + "".join(f"; {m}" for m in rec.messages))
        record = SampleRecord(sample.index, engine, rec.converged, rec.residual_max, rec.iterations, rec.matvecs,
                              rec.precond_applies, seconds, seconds, fallback=rec.fallbacks > 0, message=message,
                              steps=rec.steps, time_error_estimate=rec.time_error_estimate, operators=rec.operators)
        self.sink.add(SolvedSample(pos, sample, fam.inputs(spec, sample), None, record))
        if self.on_sample is not None:
            self.on_sample(record)


def _step_check(rhs: np.ndarray, res: SolveResult, options: SolverOptions) -> tuple[bool, float]:
    """(meets the tolerance, relative residual) of a step from its recomputed residual norm."""
    b_norm = float(np.linalg.norm(rhs))
    r_norm = res.residual_norm
    ok = bool(np.isfinite(r_norm) and r_norm <= tolerance(b_norm, options.rtol, options.atol))
    return ok, r_norm / b_norm if b_norm > 0 else r_norm


def _solve_block(fam, spec, order, draw, engine: Engine, verifier: _Verifier) -> None:
    """Fixed operator and a block engine: assemble every right-hand side, one block solve."""
    t_start = time.perf_counter()
    samples = [draw(i) for i in order]
    systems = [fam.assemble(spec, smp) for smp in samples]
    A = systems[0][0]
    t_block = time.perf_counter()
    X, results = engine.solve_block(A, np.column_stack([b for _, b in systems]))
    S = len(order)
    share, prep = (time.perf_counter() - t_block) / S, (t_block - t_start) / S
    for pos, (smp, (_, b), res) in enumerate(zip(samples, systems, results)):
        verifier.add(pos, smp, A, b, X[:, pos], res, prep, share)


class _Verifier:
    """Verifies each solved sample (true residual, direct fallback) and hands it to the sink."""

    def __init__(self, fam: PDEFamily, spec: FamilySpec, options: SolverOptions, engine: Engine, sink: Sink,
                 on_sample: Callable[[SampleRecord], None] | None, precision: str | None) -> None:
        self.fam, self.spec, self.options, self.engine, self.sink = fam, spec, options, engine, sink
        self.on_sample, self.precision = on_sample, precision

    def add(self, pos: int, sample: Sample, A, b, x, result: SolveResult, prep_seconds: float,
            solve_seconds: float) -> None:
        t = time.perf_counter()
        x, record = self._verify(sample.index, A, b, x, result)
        solve_seconds += time.perf_counter() - t
        stored = None if self.precision is None else true_residual(A, b, _rounded(x, self.precision))
        record = dataclasses.replace(record, seconds=prep_seconds + solve_seconds, solve_seconds=solve_seconds,
                                     residual_stored=stored)
        y = x.reshape(1, *self.spec.shape)
        self.sink.add(SolvedSample(pos, sample, self.fam.inputs(self.spec, sample), y, record))
        if self.on_sample is not None:
            self.on_sample(record)

    def _verify(self, index: int, A, b, x, result: SolveResult) -> tuple[np.ndarray, SampleRecord]:
        """The true residual decides; an unconverged iterative solve is re-solved directly."""
        record = _verified_record(index, self.options, self.engine.name, A, b, x, result)
        if record.converged or not self.options.fallback or self.engine.exact:
            return x, record
        x, dres = DirectEngine(self.options, self.fam, self.spec).solve(A, b)
        return x, _fallback_record(record, A, b, x, dres, self.options)


def _rounded(x: np.ndarray, precision: str) -> np.ndarray:
    """``x`` rounded to the storage precision (complex: both parts), back in double precision."""
    low = np.result_type(np.dtype(precision), np.complex64) if np.iscomplexobj(x) else np.dtype(precision)
    return x.astype(low).astype(x.dtype)


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

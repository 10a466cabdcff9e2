r"""Samples -> ordered systems -> verified solutions, without any I/O.

:func:`generate` draws samples ``indices`` of a family (each a pure function of
(seed, index)), optionally orders them so neighbours are similar, solves them in
sequence with an engine from ``ENGINES`` and returns inputs ``x``, solutions ``y``
and one :class:`SampleRecord` per sample.  The stored residual is always
recomputed here, :math:`\|b - Ay\|/\|b\|`, independently of what the solver
reports; a Krylov solve that misses the tolerance is re-solved with the direct
engine and the record says so.

Engines (a fresh engine instance lives for one sequence, so state such as a
recycled subspace flows from one system to the next):

* ``skr`` -- GCRO-DR with the recycle space carried across the sequence (SKR);
* ``gmres`` -- restarted GMRES(m), every system independent (SKR's baseline);
* ``direct`` -- sparse LU (SuperLU, tuned ordering); a factorisation is reused
  while the operator object is unchanged (fixed-operator families).

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
from .krylov import RecycleSpace, SolveResult, factorize, gcrodr, gmres, make_preconditioner
from .options import SolverOptions
from .ordering import order_systems
from .registry import Registry

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
# Engines
# ---------------------------------------------------------------------------


class Engine:
    """Solves a sequence of systems; one instance per sequence."""

    name: str

    def __init__(self, options: SolverOptions) -> None:
        self.options = options

    def solve(self, A, b) -> tuple[np.ndarray, SolveResult]:
        raise NotImplementedError


class _PreconditionedEngine(Engine):
    """Builds the preconditioner per operator; reuses it while ``A`` is the same object."""

    def __init__(self, options: SolverOptions) -> None:
        super().__init__(options)
        self._A = None
        self._M = None

    def preconditioner(self, A):
        if A is not self._A:
            self._A, self._M = A, make_preconditioner(self.options.preconditioner, A)
        return self._M


class SkrEngine(_PreconditionedEngine):
    name = "skr"

    def __init__(self, options: SolverOptions) -> None:
        super().__init__(options)
        self.recycle = RecycleSpace()

    def solve(self, A, b):
        o = self.options
        x, _, res = gcrodr(A, b, rtol=o.rtol, atol=o.atol, maxiter=o.maxiter, M=self.preconditioner(A),
                           m=o.restart, k=o.recycle, recycle=self.recycle, full_output=True)
        return x, res


class GmresEngine(_PreconditionedEngine):
    name = "gmres"

    def solve(self, A, b):
        o = self.options
        x, _, res = gmres(A, b, rtol=o.rtol, atol=o.atol, maxiter=o.maxiter, M=self.preconditioner(A),
                          m=o.restart, full_output=True)
        return x, res


class DirectEngine(Engine):
    name = "direct"

    def __init__(self, options: SolverOptions) -> None:
        super().__init__(options)
        self._A = None
        self._lu = None

    def solve(self, A, b):
        t0 = time.perf_counter()
        reused = A is self._A
        if not reused:
            self._A, self._lu = A, factorize(A)
        x = self._lu.solve(b)
        rel = float(np.linalg.norm(b - A @ x) / max(np.linalg.norm(b), 1e-300))
        msg = "reused factorization" if reused else "factorized"
        res = SolveResult(method="direct", info=0, converged=True, iterations=0, cycles=0, matvecs=1,
                          precond_applies=0, residual=rel, residual_norm=rel * float(np.linalg.norm(b)),
                          seconds=time.perf_counter() - t0, setup_seconds=0.0 if reused else self._lu.factor_seconds,
                          message=msg)
        return x, res


ENGINES: Registry[type[Engine]] = Registry("engine")
for _engine in (SkrEngine, GmresEngine, DirectEngine):
    ENGINES.register(_engine.name, _engine)


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
    engine = ENGINES[options.engine](options)
    t0 = time.perf_counter()
    order = order_indices(fam, spec, seed, indices, options.ordering)
    ordering_seconds = time.perf_counter() - t0

    S = len(order)
    names = fam.input_names(spec)
    x = np.empty((S, len(names), *spec.shape))
    y = np.empty((S, *spec.shape), dtype=fam.dtype(spec))
    scalars = {name: np.empty(S) for name in fam.scalar_names(spec)}
    records = []
    for pos, index in enumerate(order):
        t1 = time.perf_counter()
        sample = fam.sample(spec, seed, int(index))
        A, b = fam.assemble(spec, sample)
        t2 = time.perf_counter()
        sol, res = engine.solve(A, b)
        record = _verified_record(int(index), options, engine.name, A, b, sol, res)
        if not record.converged and options.fallback and engine.name != "direct":
            sol, dres = DirectEngine(options).solve(A, b)
            record = _fallback_record(record, A, b, sol, dres, options)
        t3 = time.perf_counter()
        record = _with_seconds(record, t3 - t1, t3 - t2)
        x[pos] = fam.inputs(spec, sample)
        y[pos] = sol.reshape(spec.shape)
        for name in scalars:
            scalars[name][pos] = sample.scalars[name]
        records.append(record)
        if on_sample is not None:
            on_sample(record)
    return GenerationResult(order, x, y, records, scalars, names, ordering_seconds,
                            {"family": fam.name, "engine": options.engine})


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

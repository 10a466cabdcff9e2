"""The engine interface: solve a *sequence* of systems, carrying reusable state between them."""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections import Counter
from typing import ClassVar

import numpy as np

from ..capabilities import LINEAR_SYSTEM, Capabilities, Requirement
from ..krylov import SolveResult
from ..options import SolverOptions
from ..residual import residual_norms, relative
from .registry import check_engine


def grown(iterations: int, reference: int | None, growth: float) -> bool:
    """Refresh rule for reused set-ups: iterations exceed ``growth`` x (and 3 more than) the
    count right after the last fresh set-up."""
    return reference is not None and iterations > max(growth * reference, reference + 3)


class PilotAborted(Exception):
    """Raised inside a solve when a pilot run exceeds its time budget."""


class Engine(ABC):
    """Solves the systems of one ordered sequence (a shard); one instance per sequence.

    ``requires`` states what the engine needs of a family's systems (see
    :mod:`pdeforge.solvers.capabilities`); constructing an engine for a family spec that lacks
    one raises ``ValueError`` with the reason (:func:`pdeforge.solvers.engines.registry.refusal`).
    ``caps`` holds the spec's capabilities (``None`` when built without a family).

    ``counters`` counts the expensive set-ups an engine performs or avoids
    (factorizations, symbolic analyses, AMG hierarchy builds and Galerkin rebuilds,
    preconditioner builds and reuses), so reuse is provable by counts.
    ``deadline`` (a ``time.perf_counter()`` value) makes iterative engines raise
    :class:`PilotAborted` once passed (used by the ``auto`` pilot).
    """

    name: ClassVar[str]
    requires: ClassVar[tuple[Requirement, ...]] = (LINEAR_SYSTEM,)
    #: engines that can solve all right-hand sides of a fixed operator as one block
    block: ClassVar[bool] = False
    #: engines whose solution is exact up to rounding (no iterative fallback needed)
    exact: ClassVar[bool] = False

    def __init__(self, options: SolverOptions, family=None, spec=None, *, cache: FactorCache | None = None) -> None:
        self.options, self.family, self.spec = options, family, spec
        self.caps: Capabilities | None = None
        if family is not None and spec is not None:
            check_engine(self.name, family, spec)
            self.caps = family.capabilities(spec)
        self.cache = cache if cache is not None else FactorCache()
        self.counters: Counter = Counter()
        self.deadline: float | None = None

    @abstractmethod
    def solve(self, A, b, x0=None) -> tuple[np.ndarray, SolveResult]:
        """Solve one system of the sequence; returns the solution and its record.  ``x0``: an
        initial guess (iterative engines start from it; exact ones ignore it)."""

    def solve_block(self, A, B) -> tuple[np.ndarray, list[SolveResult]]:
        """Solve ``A X = B`` for the columns of ``B`` (default: one by one)."""
        pairs = [self.solve(A, B[:, j]) for j in range(B.shape[1])]
        return np.column_stack([p[0] for p in pairs]), [p[1] for p in pairs]

    # ----- helpers ---------------------------------------------------------------------------
    def callback(self):
        """A Krylov callback enforcing ``deadline`` (None when there is none)."""
        if self.deadline is None:
            return None
        deadline = self.deadline

        def check(*_):
            if time.perf_counter() > deadline:
                raise PilotAborted
        return check

    @property
    def spd(self) -> bool:
        """The family declares its operator SPD (False when unknown)."""
        return self.caps is not None and self.caps.spd


class FactorCache:
    """Factorizations of fixed operators, keyed by the matrix object; owned by whoever creates it.

    A worker process keeps one for its lifetime (``factorize_once``: one factorization per
    process, whatever the number of shards); a bare engine gets a private one.  At most
    ``size`` entries, oldest evicted first.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._items: dict[int, tuple[object, object]] = {}
        #: matrices derived from fixed operators (time-step matrices), shared by all their trajectories
        self.memo: dict = {}

    def get(self, A):
        entry = self._items.get(id(A))
        return entry[1] if entry is not None and entry[0] is A else None

    def put(self, A, factor) -> None:
        if len(self._items) >= self.size:
            self._items.pop(next(iter(self._items)))
        self._items[id(A)] = (A, factor)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def residual_result(method: str, A, b, x, t0: float, *, iterations: int = 0, matvecs: int = 1,
                    precond_applies: int = 0, setup: float = 0.0, message: str = "",
                    converged: bool = True) -> SolveResult:
    """A :class:`SolveResult` for a solve done outside :mod:`pdeforge.solvers.krylov` (true residual included)."""
    r_norm, b_norm = residual_norms(A, b, x)
    rel = relative(r_norm, b_norm)
    ok = bool(np.isfinite(rel))
    info = 0 if ok and converged else (-1 if not ok else max(iterations, 1))
    return SolveResult(method=method, info=info, converged=ok and converged, iterations=iterations, cycles=0,
                       matvecs=matvecs, precond_applies=precond_applies, residual=rel, residual_norm=r_norm,
                       seconds=time.perf_counter() - t0, setup_seconds=setup, message=message)


class BlockSolves:
    """Mixin for engines whose natural unit is a block of right-hand sides (one A, many b)."""

    block = True

    def solve(self, A, b, x0=None):
        X, results = self.solve_block(A, b[:, None])
        return X[:, 0], results[0]


def block_results(method: str, A, B, X, seconds: float, message: str) -> list[SolveResult]:
    """Per-column records of a block solve; each carries an equal share of its ``seconds``."""
    share = seconds / B.shape[1]
    out = []
    for j in range(B.shape[1]):
        res = residual_result(method, A, B[:, j], X[:, j], time.perf_counter(), message=message)
        out.append(dataclasses.replace(res, seconds=share + res.seconds))
    return out

"""The engine interface: solve a *sequence* of systems, carrying reusable state between them."""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections import Counter

import numpy as np

from ..families import FamilySpec, PDEFamily
from ..krylov import SolveResult
from ..options import SolverOptions


def grown(iterations: int, reference: int | None, growth: float) -> bool:
    """Refresh rule for reused set-ups: iterations exceed ``growth`` x (and 3 more than) the
    count right after the last fresh set-up."""
    return reference is not None and iterations > max(growth * reference, reference + 3)


class PilotAborted(Exception):
    """Raised inside a solve when a pilot run exceeds its time budget."""


class Engine(ABC):
    """Solves the systems of one ordered sequence (a shard); one instance per sequence.

    ``counters`` counts the expensive set-ups an engine performs or avoids
    (factorizations, symbolic analyses, AMG hierarchy builds and Galerkin rebuilds,
    preconditioner builds and reuses), so reuse is provable by counts.
    ``deadline`` (a ``time.perf_counter()`` value) makes iterative engines raise
    :class:`PilotAborted` once passed (used by the ``auto`` pilot).
    """

    name: str
    #: engines that can solve all right-hand sides of a fixed operator as one block
    block: bool = False

    def __init__(self, options: SolverOptions, family: PDEFamily | None = None,
                 spec: FamilySpec | None = None) -> None:
        self.options, self.family, self.spec = options, family, spec
        self.counters: Counter = Counter()
        self.deadline: float | None = None

    @abstractmethod
    def solve(self, A, b) -> tuple[np.ndarray, SolveResult]:
        """Solve one system of the sequence; returns the solution and its record."""

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
        return self.family is not None and self.family.symmetry.startswith("real symmetric positive definite")


def residual_result(method: str, A, b, x, t0: float, *, iterations: int = 0, matvecs: int = 1,
                    precond_applies: int = 0, setup: float = 0.0, message: str = "",
                    converged: bool = True) -> SolveResult:
    """A :class:`SolveResult` for a solve done outside :mod:`solvers.krylov` (true residual included)."""
    b_norm = float(np.linalg.norm(b))
    r_norm = float(np.linalg.norm(b - A @ x))
    rel = r_norm / b_norm if b_norm else r_norm
    ok = bool(np.isfinite(rel))
    info = 0 if ok and converged else (-1 if not ok else max(iterations, 1))
    return SolveResult(method=method, info=info, converged=ok and converged, iterations=iterations, cycles=0,
                       matvecs=matvecs, precond_applies=precond_applies, residual=rel, residual_norm=r_norm,
                       seconds=time.perf_counter() - t0, setup_seconds=setup, message=message)


class BlockSolves:
    """Mixin for engines whose natural unit is a block of right-hand sides (one A, many b)."""

    block = True

    def solve(self, A, b):
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

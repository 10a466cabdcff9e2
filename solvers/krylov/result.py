"""Frozen per-solve record shared by every solver in :mod:`pdeforge.solvers.krylov`.

Non-convergence is data: a solver always returns its best iterate together with
a :class:`SolveResult` saying what happened, instead of raising or warning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SolveResult:
    """What one call of a solver did.

    Attributes
    ----------
    method : str
        ``"gcrodr"``, ``"gmres"`` or ``"direct"``.
    info : int
        0 converged; > 0 iteration limit reached (the value is the number of
        iterations done); < 0 breakdown (see ``message``).
    converged : bool
        True only when the *true* residual meets the tolerance.
    iterations : int
        Arnoldi steps, summed over all cycles (0 for a direct solve).
    cycles : int
        Restart cycles run.
    matvecs : int
        Every application of ``A``: Arnoldi steps, the ``k`` products needed to
        rebuild ``C = A U`` for a new operator, and true-residual checks.
    precond_applies : int
        Applications of ``M^{-1}``.
    residual : float
        True relative residual ``||b - A x|| / ||b||`` recomputed at the end
        (0 for ``b = 0``).
    residual_norm : float
        True absolute residual ``||b - A x||``.
    seconds : float
        Wall time of the whole call.
    setup_seconds : float
        Part of ``seconds`` spent rebuilding the recycled space (or, for a
        direct solve, factorising).
    message : str
        Human-readable outcome.
    """

    method: str
    info: int
    converged: bool
    iterations: int = 0
    cycles: int = 0
    matvecs: int = 0
    precond_applies: int = 0
    residual: float = float("nan")
    residual_norm: float = float("nan")
    seconds: float = 0.0
    setup_seconds: float = 0.0
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain JSON-serialisable ``dict``."""
        return dataclasses.asdict(self)

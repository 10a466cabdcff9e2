"""Krylov engines: ``skr`` (GCRO-DR, recycle space carried along the sequence) and ``gmres``.

Preconditioners: Jacobi is rebuilt per system (it costs nothing).  A strong
preconditioner (``ilu``, ``amg``) is built on one system and *reused* for its
neighbours in the sorted sequence while the iteration count stays within
``REUSE_GROWTH`` of the count right after the build; then it is rebuilt.  With
the same M object the recycled W = M^{-1} U stays valid, so SKR only recomputes
C = A W for a new matrix.
"""

from __future__ import annotations

from ..krylov import RecycleSpace, gcrodr, gmres, make_preconditioner
from .base import Engine, grown
from .registry import register

REUSE_GROWTH = 1.5
REUSABLE = ("ilu", "amg")


class PreconditionedEngine(Engine):
    """Builds (or, with ``reuse``, reuses: see module docstring) the preconditioner for each system."""

    reuse = False

    def __init__(self, options, family=None, spec=None, **kwargs) -> None:
        super().__init__(options, family, spec, **kwargs)
        self._A = self._M = None
        self._ref_iterations: int | None = None
        self._stale = False

    def preconditioner(self, A):
        name = self.options.preconditioner
        if A is self._A:
            return self._M
        reuse = self.reuse and name in REUSABLE and self._M is not None and not self._stale
        if reuse:
            self.counters["preconditioner_reuses"] += 1
        else:
            self._M = make_preconditioner(name, A)
            self._ref_iterations, self._stale = None, False
            if self._M is not None:
                self.counters["preconditioner_builds"] += 1
        self._A = A
        return self._M

    def observe(self, iterations: int) -> None:
        """Refresh policy: rebuild once iterations exceed REUSE_GROWTH x those after the last build."""
        if self._ref_iterations is None:
            self._ref_iterations = iterations
        elif grown(iterations, self._ref_iterations, REUSE_GROWTH):
            self._stale = True


@register
class SkrEngine(PreconditionedEngine):
    name = "skr"
    reuse = True

    def __init__(self, options, family=None, spec=None, **kwargs) -> None:
        super().__init__(options, family, spec, **kwargs)
        self.recycle = RecycleSpace()

    def solve(self, A, b, x0=None):
        o = self.options
        x, _, res = gcrodr(A, b, x0, rtol=o.rtol, atol=o.atol, maxiter=o.maxiter, M=self.preconditioner(A),
                           m=o.restart, k=o.recycle, recycle=self.recycle, callback=self.callback(),
                           full_output=True)
        self.observe(res.iterations)
        return x, res


@register
class GmresEngine(PreconditionedEngine):
    """SKR's baseline: every system independent (fresh preconditioner, x0 = 0)."""

    name = "gmres"

    def solve(self, A, b, x0=None):
        o = self.options
        x, _, res = gmres(A, b, x0, rtol=o.rtol, atol=o.atol, maxiter=o.maxiter, M=self.preconditioner(A),
                          m=o.restart, callback=self.callback(), full_output=True)
        self.observe(res.iterations)
        return x, res

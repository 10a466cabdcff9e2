r"""``amg``: algebraic multigrid (PyAMG) as preconditioner, its hierarchy reused along the sequence.

SPD families: smoothed aggregation + CG; non-symmetric M-matrices (advection--diffusion):
classical Ruge--Stüben + GMRES (one builder: :func:`pdeforge.solvers.krylov.amg_hierarchy`).
Needs a definite operator (SPD or M-matrix): not indefinite Helmholtz.

Reuse: the first system gets a full set-up (strength, aggregation, smoothed
prolongators :math:`P_\ell`, Galerkin products).  A neighbour in the sorted chunk
keeps the transfer operators :math:`P_\ell, R_\ell` and only recomputes the Galerkin
coarse operators :math:`A_{\ell+1} = R_\ell A_\ell P_\ell` and the coarse solve -- a
small fraction of the set-up (measured 3 vs 31 ms at 128², 12 vs 65 ms at 32³) at
about one extra iteration.  When the iterations grow beyond ``REBUILD_GROWTH``
times those after the last full set-up, the next system gets a full set-up again.
"""

from __future__ import annotations

import time

import scipy.sparse.linalg as spla

from ..capabilities import DEFINITE, LINEAR_SYSTEM
from ..krylov import amg_hierarchy, gmres
from ..residual import meets_tolerance
from .base import Engine, grown, residual_result
from .registry import register

REBUILD_GROWTH = 1.5
SMOOTHER = ("gauss_seidel", {"sweep": "symmetric"})


def _galerkin_rebuild(ml, A):
    """A new hierarchy for ``A`` with the transfer operators of ``ml`` (Galerkin products only)."""
    from pyamg.multilevel import MultilevelSolver
    from pyamg.relaxation.smoothing import change_smoothers

    levels = []
    for i, old in enumerate(ml.levels):
        lvl = MultilevelSolver.Level()
        lvl.A = A
        if i < len(ml.levels) - 1:
            lvl.P, lvl.R = old.P, old.R
            A = (old.R @ A @ old.P).tocsr()
        levels.append(lvl)
    new = MultilevelSolver(levels, coarse_solver="pinv")
    change_smoothers(new, SMOOTHER, SMOOTHER)
    return new


@register
class AmgEngine(Engine):
    name = "amg"
    requires = (LINEAR_SYSTEM, DEFINITE)

    def __init__(self, options, family=None, spec=None, **kwargs) -> None:
        super().__init__(options, family, spec, **kwargs)
        self._A = self._ml = None
        self._ref_iterations: int | None = None
        self._rebuild = True

    def _hierarchy(self, A):
        if A is self._A:
            return self._ml
        if self._rebuild or self._ml is None:
            symmetric = None if self.caps is None else self.caps.symmetric
            self._ml = amg_hierarchy(A, symmetric=symmetric, presmoother=SMOOTHER, postsmoother=SMOOTHER)
            self._ref_iterations, self._rebuild = None, False
            self.counters["hierarchy_builds"] += 1
        else:
            self._ml = _galerkin_rebuild(self._ml, A)
            self.counters["galerkin_rebuilds"] += 1
        self._A = A
        return self._ml

    def solve(self, A, b, x0=None):
        t0 = time.perf_counter()
        ml = self._hierarchy(A)
        setup = time.perf_counter() - t0
        M = ml.aspreconditioner(cycle="V")
        o = self.options
        if self.spd:
            count = [0]
            deadline = self.callback()

            def step(_xk):
                count[0] += 1
                if deadline is not None:
                    deadline()

            # SciPy's cg stops at ||r|| <= max(rtol ||b||, atol): atol is absolute, as ours
            x, info = spla.cg(A, b, x0=x0, rtol=o.rtol, atol=o.atol, maxiter=o.maxiter, M=M, callback=step)
            # cg's info judges its recursive residual: the record says what the true residual says
            its, converged = count[0], info == 0 and meets_tolerance(A, b, x, o.rtol, o.atol)[0]
            res = residual_result(self.name, A, b, x, t0, iterations=its, matvecs=its + 2, precond_applies=its + 1,
                                  setup=setup, converged=converged, message=f"SA-AMG + CG, {its} iterations")
        else:
            x, _, kres = gmres(A, b, x0, rtol=o.rtol, atol=o.atol, maxiter=o.maxiter, M=M, m=o.restart,
                               callback=self.callback(), full_output=True)
            its = kres.iterations
            res = residual_result(self.name, A, b, x, t0, iterations=its, matvecs=kres.matvecs + 1,
                                  precond_applies=kres.precond_applies, setup=setup, converged=kres.converged,
                                  message=f"RS-AMG + GMRES, {its} iterations")
        if self._ref_iterations is None:
            self._ref_iterations = its
        elif grown(its, self._ref_iterations, REBUILD_GROWTH):
            self._rebuild = True
        return x, res

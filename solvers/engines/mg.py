r"""``mg``: structured-grid multigrid (cell agglomeration, over-corrected V-cycle) as preconditioner.

Method (:mod:`pdeforge.solvers.multigrid`).  For a (2d+1)-point cell-centred operator on the
tensor grid ``spec.shape`` (d = 1, 2, 3; any n >= 2, odd n included):

* coarse cells are 2^d agglomerates of fine cells (pairs along each axis, the last
  one a triple for odd n); :math:`P` is the aggregate indicator, :math:`R = P^T`,
  and the Galerkin operator :math:`A_c = P^T A P` is again a (2d+1)-point stencil,
  computed in stencil form by strided sums (O(N), no sparse products);
* smoothing: ``nu = 2`` red-black Gauss--Seidel sweeps before (red first) and after
  (black first) the coarse correction -- a symmetric cycle for symmetric A;
* the coarse correction is over-corrected, :math:`x \mathrel{+}= \beta_\ell P e_c`:
  :math:`\beta = 1.9` for diffusion (piecewise-constant interpolation under-estimates
  the coarse correction; with :math:`\beta = 1` the count grows with every level),
  fading linearly to 1 per level as the operator becomes advection-dominated
  (skewness :math:`\sum|a_{ij}-a_{ji}| / \sum|a_{ij}+a_{ji}|` from 0.5 to 0.9) or as a
  mass term (``I/dt``) dominates the coarse operator (interior diagonal excess from
  0 to 0.2), where the Galerkin correction is already nearly exact;
* the coarsest grid (<= 64 cells) is solved exactly (dense inverse);
* high contrast, coarse levels: when the face coefficients of a symmetric operator jump
  by >= 100 between consecutive faces (thresholded fields of contrast >= 1e3), the
  structured hierarchy stops after the first agglomeration and classical
  (Ruge--Stueben) AMG of PyAMG, with its operator-dependent interpolation, solves the
  level-1 Galerkin operator approximately (one V-cycle); the aggregate coarse spaces
  below level 1 are what loses h-independence there (2-D threshold 1e3, 64^2..512^2:
  14, 19, 26, 41 -> 11, 14, 14, 20 iterations).  Smooth and low-contrast coefficients
  never switch and keep the structured cycle;
* high contrast, deflation (:mod:`pdeforge.solvers.multigrid.deflation`): the aggregate coarse spaces
  cannot separate clusters of high-coefficient cells that touch only through
  low-coefficient material, so on thresholded fields with contrast >= 1e3 the
  iteration counts grow with n.  Once a symmetric solve needs more than
  ``DEFLATE_AFTER`` iterations, the following systems also deflate the cluster
  indicators (connected components of the high faces; ``Q + (I - QA) M (I - AQ)``,
  two more products with A per iteration) -- e.g. 3-D 48^3, contrast 1e6: 166 -> 27
  iterations; if a deflated solve does not get below ``DEFLATE_KEEP`` times the
  count that switched it on (2-D fields cut only 10-40%), it is dropped again;
* Krylov: CG on symmetric operators, FGMRES(``restart``) otherwise; convergence on
  the true residual ``||b - A x|| <= max(rtol ||b||, atol)``.

Requirements: ``A`` assembled on :func:`~pdeforge.solvers.families.fv.stencil_pattern` of
``spec.shape`` (every real family is) -- another layout of a (2d+1)-point operator is
accepted at the price of a copy, anything else raises ``ValueError``; real, SPD or
an M-matrix (upwind advection--diffusion).  Not for indefinite or complex operators.

Reuse along the sorted sequence.  The grid structure (orderings, aggregates,
patterns, gather indices) depends only on the shape: it is built once per shape
and process (``pattern_builds`` counts the structures this engine requested for a
new shape).  Each new operator only refills values (``setups``; a few SpMV worth);
the same operator object again (e.g. Poisson) is not set up again (``setup_reuses``).
``cycles`` counts V-cycles applied; ``deflations`` the set-ups that deflated
clusters.  ``solve(A, b, x0=...)`` accepts a warm start.

Measured behaviour (bench/multigrid.py, one thread, rtol 1e-8): set-up plus solve
about 1-1.5x the time of 100 products with A on lognormal and FNO-threshold (12/3)
Darcy; iteration counts bounded in n for smooth coefficients, fixed interface
geometries and channels.  On thresholded GRFs with contrast >= 1e3 the counts of the
all-structured cycle grow with n -- the interface gets rougher as the zero level set of
the GRF resolves finer scales -- as they do for PyAMG smoothed aggregation.  With the
algebraic coarse levels and cluster deflation the growth from the smallest to the
largest grid is 1.6x in 2-D (64^2..512^2: contrast 1e3 11, 12, 14, 18; 1e6 10, 11, 11, 16
to rtol 1e-6) and 2.0x in 3-D (16^3..64^3: 10, 13, 19, 20 and 9, 11, 17, 18), against
2.9x/4.6x and 4.9x/14x before: still above the 1.5x aimed at.  In 3-D the exact
two-grid method of the finest 2^3 agglomeration itself grows; only an
operator-dependent interpolation on the finest level (full Ruge--Stueben AMG: 6, 10, 12
iterations at 16^3..48^3, contrast 1e6, at several times the set-up cost) removes it.
With contrast 1e6 and n >= 128 (2-D), rtol 1e-8 can lie below the float64 floor of
||b - A x|| for any solver (reported as ``info = -2`` with the floor in the message,
never raised; the growth table counts contrast 1e6 to rtol 1e-6).

References: :mod:`pdeforge.solvers.multigrid.hierarchy` (additive correction, aggregation AMG,
over-correction) and Trottenberg, Oosterlee and Schüller, "Multigrid", Academic Press, 2001
(red-black Gauss--Seidel, cell-centred transfers).
"""

from __future__ import annotations

import time

from ..capabilities import DEFINITE, TENSOR_STENCIL
from ..multigrid import Multigrid, infer_shape, mg_cg, mg_gmres
from .base import Engine, residual_result
from .registry import register

#: a symmetric solve needing more iterations than this switches cluster deflation on
#: (healthy counts are 8-12; high-contrast fields 17-300)
DEFLATE_AFTER = 20
#: deflation is dropped again for the rest of the sequence unless it cuts the iterations
#: below this fraction of those that switched it on: a deflated iteration costs ~1.4 plain ones
#: plus the cluster set-up, so it pays only for a cut of about 2x (measured: 3-D contrast 1e6
#: 0.12-0.26, 3-D 1e3 at 48^3/64^3 0.41-0.48 pay; 2-D 0.6-0.9 and 32^3 1e3 0.53 do not)
DEFLATE_KEEP = 0.5


@register
class MgEngine(Engine):
    name = "mg"
    requires = (TENSOR_STENCIL, DEFINITE)

    def __init__(self, options, family=None, spec=None, **kwargs) -> None:
        super().__init__(options, family, spec, **kwargs)
        self._M: Multigrid | None = None
        self._A = None
        self._deflate = False
        self._A_deflated = False
        self._trigger: int | None = None  # iterations of the solve that switched deflation on

    def _preconditioner(self, A) -> Multigrid:
        shape = tuple(self.spec.shape) if self.spec is not None else infer_shape(A)
        if self._M is None or self._M.shape != shape:
            self._M, self._A = Multigrid(shape), None
            self.counters["pattern_builds"] += 1
        if A is self._A and self._A_deflated == self._deflate:
            self.counters["setup_reuses"] += 1
        else:
            self._M.setup(A, deflate=self._deflate)
            self._A, self._A_deflated = A, self._deflate
            self.counters["setups"] += 1
            if self._M.deflation is not None:
                self.counters["deflations"] += 1
        return self._M

    def solve(self, A, b, x0=None):
        t0 = time.perf_counter()
        M = self._preconditioner(A)
        setup = time.perf_counter() - t0
        o = self.options
        if M.symmetric:
            x, _, kres = mg_cg(A, b, x0, rtol=o.rtol, atol=o.atol, maxiter=o.maxiter, M=M,
                               callback=self.callback(), full_output=True)
            krylov = "CG"
        else:
            x, _, kres = mg_gmres(A, b, x0, rtol=o.rtol, atol=o.atol, maxiter=o.maxiter, M=M, m=o.restart,
                                  callback=self.callback(), full_output=True)
            krylov = f"FGMRES({o.restart})"
        self.counters["cycles"] += kres.precond_applies
        its = kres.iterations
        if M.symmetric and self._trigger is None and its > DEFLATE_AFTER:
            self._deflate, self._trigger = True, its  # from the next system on (see the module docstring)
        elif self._deflate and M.deflation is not None and its > DEFLATE_KEEP * self._trigger:
            self._deflate = False  # it does not pay here: plain cycles for the rest of the sequence
            self.counters["deflation_dropped"] += 1
        deflated = f", {M.deflation.k} clusters deflated" if M.symmetric and M.deflation is not None else ""
        algebraic = ", classical AMG below level 1" if M.use_algebraic else ""
        message = f"structured MG (beta={M.beta:.2f}, nu={M.nu}{algebraic}{deflated}) + {krylov}, {its} iterations"
        if not kres.converged:
            message += f": {kres.message}"
        return x, residual_result(self.name, A, b, x, t0, iterations=its, matvecs=kres.matvecs + 1,
                                  precond_applies=kres.precond_applies, setup=setup,
                                  converged=kres.converged, message=message)

"""Direct engines: ``direct`` (best available sparse factorization, symbolic analysis reused),
``direct_mixed`` (float32 factorization + float64 iterative refinement) and
``factorize_once`` (fixed operator: one factorization per worker process -- its
:class:`~pdeforge.solvers.engines.base.FactorCache` -- and block solves).

* SPD families use CHOLMOD (scikit-sparse, optional extra ``pdeforge[cholmod]``) with one
  symbolic analysis for the whole sequence -- every sample of a family has the same
  sparsity pattern -- and a numeric ``cholesky_inplace`` per sample; without CHOLMOD, or
  for non-SPD matrices, SuperLU with the tuned ordering (:func:`pdeforge.solvers.krylov.factorize`).
* Mixed precision: ``x_0 = LU_32^{-1} b``, ``x_{j+1} = x_j + LU_32^{-1}(b - A x_j)`` with the
  residual in float64, until ``||b - A x|| <= rtol ||b||``; it converges like
  ``(kappa eps_32)^j`` and falls back to a float64 factorization if it stalls.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..capabilities import FIXED_OPERATOR, LINEAR_SYSTEM
from ..krylov import factorize
from ..residual import STAGNATION_FACTOR, tolerance
from .base import BlockSolves, Engine, block_results, residual_result
from .registry import register

try:  # optional: CHOLMOD from SuiteSparse
    from sksparse.cholmod import analyze as _cholmod_analyze

    HAVE_CHOLMOD = True
except ImportError:  # pragma: no cover - depends on the system library
    HAVE_CHOLMOD = False


#: a simplicial factor (up-looking, no supernodes) where its triangular solves pay: measured with one
#: BLAS thread, its solves take half the time of a supernodal factor's at every size (128^2 0.60 vs
#: 1.52 ms, 512^2 23 vs 43 ms, 32^3 7.4 vs 15.5 ms) and it also factorizes faster in 2-D up to 256^2
#: (128^2 18 vs 31 ms, 256^2 139 vs 170 ms); supernodal factorizes faster in 3-D and at 512^2
SIMPLICIAL_2D_UNKNOWNS = 256**2


def cholmod_mode(caps, unknowns: int | None) -> str:
    """``simplicial`` for trajectories (a hundred solves per factorization and more) and 2-D grids up
    to 256^2, ``supernodal`` otherwise (CHOLMOD's choice for large or 3-D factors)."""
    if caps is None:
        return "supernodal"
    small_2d = caps.dims <= 2 and unknowns is not None and unknowns <= SIMPLICIAL_2D_UNKNOWNS
    return "simplicial" if caps.time_dependent or small_2d else "supernodal"


class _Cholmod:
    """CHOLMOD factor with the symbolic analysis reused while the sparsity pattern is unchanged."""

    def __init__(self, counters, mode: str = "supernodal") -> None:
        self.counters, self.mode = counters, mode
        self._factor = None
        self._pattern = None

    def factor(self, A, *, independent: bool = False):
        """The numeric factor of ``A``: refactorized in place (the previous factor is gone), or with
        ``independent`` a new factor object (the symbolic analysis still reused) that stays valid."""
        # A is symmetric: its CSR arrays are those of a CSC matrix equal to A (no copy)
        csc = sp.csc_matrix((A.data, A.indices, A.indptr), shape=A.shape)
        same = self._pattern is not None and (
            (A.indices is self._pattern[0] and A.indptr is self._pattern[1])
            or (np.array_equal(A.indptr, self._pattern[1]) and np.array_equal(A.indices, self._pattern[0])))
        if not same:
            self._factor = _cholmod_analyze(csc, mode=self.mode)
            self._pattern = (A.indices, A.indptr)
            self.counters["symbolic_analyses"] += 1
        self.counters["factorizations"] += 1
        if independent:
            return self._factor.cholesky(csc)
        self._factor.cholesky_inplace(csc)
        return self._factor


def _solve_with(factor, b):
    return factor(b) if callable(factor) else factor.solve(b)


@register
class DirectEngine(Engine):
    name = "direct"
    exact = True

    def __init__(self, options, family=None, spec=None, **kwargs) -> None:
        super().__init__(options, family, spec, **kwargs)
        self._A = self._factor = None
        self._cholmod = _Cholmod(self.counters, cholmod_mode(self.caps, None if self.spec is None else self.spec.unknowns)) if HAVE_CHOLMOD else None

    def _factorize(self, A, *, independent: bool = False):
        if self._cholmod is not None and self.spd and A.dtype == np.float64:
            self.backend = "cholmod"
            return self._cholmod.factor(A, independent=independent)
        self.backend = "superlu"
        self.counters["factorizations"] += 1
        return factorize(A)

    def solve(self, A, b, x0=None):
        t0 = time.perf_counter()
        reused = A is self._A
        if not reused:
            self._A, self._factor = A, self._factorize(A)
        x = _solve_with(self._factor, b)
        msg = f"{self.backend}: " + ("reused factorization" if reused else "factorized")
        return x, residual_result(self.name, A, b, x, t0, message=msg)


@register
class DirectMixedEngine(Engine):
    name = "direct_mixed"
    max_refinements = 10

    def __init__(self, options, family=None, spec=None, **kwargs) -> None:
        super().__init__(options, family, spec, **kwargs)
        self._A = self._lu = None

    def solve(self, A, b, x0=None):
        t0 = time.perf_counter()
        if A is not self._A:
            self._A, self._lu = A, factorize(A, single=True)
            self.counters["factorizations"] += 1
        low = self._lu.dtype
        b_norm = float(np.linalg.norm(b))
        tol = tolerance(b_norm, self.options.rtol, self.options.atol)
        x = self._lu.solve(b.astype(low)).astype(np.result_type(A.dtype, b.dtype, np.float64))
        steps, matvecs, last = 0, 0, np.inf
        while True:
            r = b - A @ x
            matvecs += 1
            r_norm = float(np.linalg.norm(r))
            if r_norm <= tol or steps >= self.max_refinements or r_norm > STAGNATION_FACTOR * last:
                break
            x = x + self._lu.solve(r.astype(low))
            steps += 1
            last = r_norm
        if r_norm > tol:  # refinement stalled (kappa * eps_32 too large): exact float64 factorization
            self.counters["fallbacks_to_double"] += 1
            x = factorize(A).solve(b)
            return x, residual_result(self.name, A, b, x, t0, iterations=steps, matvecs=matvecs + 1,
                                      message="float32 refinement stalled; float64 factorization")
        return x, residual_result(self.name, A, b, x, t0, iterations=steps, matvecs=matvecs,
                                  message=f"float32 factorization + {steps} refinement steps")


@register
class FactorizeOnceEngine(BlockSolves, DirectEngine):
    """For fixed-operator families: one factorization per :class:`FactorCache` (a worker process
    owns one for its lifetime), block solves."""

    name = "factorize_once"
    requires = (LINEAR_SYSTEM, FIXED_OPERATOR)

    def _cached(self, A):
        factor = self.cache.get(A)
        if factor is not None:
            self.counters["factorization_reuses"] += 1
            return factor
        factor = self._factorize(A, independent=True)  # cached factors must not be refactorized in place
        self.cache.put(A, factor)
        return factor

    def solve_block(self, A, B):
        t0 = time.perf_counter()
        X = _solve_with(self._cached(A), B).reshape(B.shape)
        return X, block_results(self.name, A, B, X, time.perf_counter() - t0,
                                "block solve with the worker's factorization")

r"""Classical (Ruge--Stueben) AMG below the first agglomeration, with a lean V-cycle.

For high-contrast operators the structured hierarchy keeps only level 0 (and its
2^d agglomeration).  Level 1 is reduced exactly to its red cells: with the red cells as
the coarse points and the *ideal* interpolation :math:`P = [I; -A_{bb}^{-1} A_{br}]`
(black cells interpolated by solving their own rows, which only couple to red cells),
the Galerkin operator :math:`P^T A_1 P` is the red Schur complement
:math:`S_r = A_{rr} - A_{rb} A_{bb}^{-1} A_{br}` (9 points in 2-D, 19 in 3-D; an M-matrix
when :math:`A_1` is one), filled per sample from a pattern built once per grid
(:func:`.grid.red_schur_pattern`), and a two-grid method with an exact solve of
:math:`S_r` would be exact.  :math:`S_r` is coarsened by PyAMG's Ruge--Stueben set-up
(classical strength, RS splitting, *direct* interpolation: measured on thresholded Darcy
128^2..48^3, contrast 1e3/1e6, the same CG iteration counts as classical interpolation
(+-1) at 15-30% less set-up), whose compiled kernels are called directly
(:func:`ruge_stuben_levels`).  Before, Ruge--Stueben coarsened :math:`A_1` itself; its
first splitting was nearly the red-black one (16384 -> 8191 cells at 256^2) with
direct interpolation, i.e. an approximation of this exact step at the cost of a strength
graph, a splitting and two sparse products on the largest algebraic level.  Measured
(interleaved, six samples of the sorted sequence, contrast 1e3; set-up + solve): the same
counts within +-2 (contrast 1e6: up to 5 fewer), 0.85x the cost per sample at 256^2, 0.94x
at 128^2, 0.97x at 512^2, 0.92x at 256^2 contrast 1e6, and with cluster deflation in 3-D
0.89x at 48^3 and 0.95x at 80^3; the set-up at 256^2 fell from 64 to 49 products with A.

The cycle is written here rather than called through ``MultilevelSolver.solve``:
one forward Gauss--Seidel sweep before and one backward sweep after the coarse
correction on every level (a symmetric cycle; PyAMG's default is a symmetric sweep on
both sides), no residual norms, the coarsest level by a dense pseudo-inverse, and work
arrays allocated once per hierarchy (products through SciPy's compiled ``csr_matvec``
into them).  Per outer CG iteration on thresholded Darcy this cut the cost of the whole
preconditioner from 12-13.5 to 8 (2-D) and from 8.6 to 6.5 (3-D) products with the
finest operator at the same iteration counts (bench/multigrid.py); the preallocated work
arrays cut the cycle below level 0 from 5.1 to 2.8 products at 256^2 (fresh ``np.zeros``
arrays per level and cycle pay for their pages on first write), the whole
preconditioner from 12.3 to 7.5.  Level 1 itself is smoothed by
:class:`~.hierarchy.Multigrid` with its red-black half-sweeps, which are exactly the forward
and backward Gauss--Seidel sweeps in this ordering: PyAMG's Gauss--Seidel kernel on it cost
2.3 of the 9.2 products with A per CG iteration at 256^2 (a forward sweep 1.2-1.3x a CSR
product of the same 5-point matrix, 1.9-2.7x on the 9-point levels below); measured
(interleaved, six samples, contrast 1e3, identical counts) 0.93x (256^2) and 0.89x (512^2)
the cost per sample, 0.96x at 256^2 contrast 1e6 and 0.98x at 80^3 with deflation.  After its
pre-smoothing sweep (ending on black) the black residual is zero and the red one is the
right-hand side of the reduced system, so the correction is one V-cycle for
:math:`S_r e = r_r` added to the red cells (:meth:`AlgebraicCoarse.correct`); the first
post-smoothing half-sweep recomputes the black cells, the second half of :math:`P e`.

Measured and not adopted (256^2 and 512^2, contrast 1e3, set-up + solve in products with
A; Ruge--Stueben then coarsened :math:`A_1` itself): the transfers of the previous sample of the sorted sequence with only the Galerkin
products recomputed (iterations 14-19 -> 29-62: thresholded interfaces move between
neighbours); strength threshold 0.5 (1.10x the cost) and a coarsest level of 400 or 1500
unknowns (1.07x, 2.25x); two Gauss--Seidel sweeps per level, on every level or only the
first (1.09x, 1.19x); two V-cycles per application (fewer iterations, 22 -> 18, but
1.05x the cost); the set-up on raw arrays (SciPy's and PyAMG's kernels called directly for the
transposes and Galerkin products, the strength graph's diagonal and zeros removed by one mask,
no intermediate sparse objects): the same hierarchy, 0.98-1.02x the cost per sample.  In 3-D,
where the red Schur complement has 19 points, the strength threshold 0.5 (BoomerAMG's advice
for 3-D) instead of 0.25 (classical AMG + deflation against structured + deflation, four
samples interleaved): the same counts within +-1, 1.20x instead of 1.25x at 48^3 and 1.04x
instead of 0.99x at 64^3 -- no consistent gain.  Other splittings and interpolations of PyAMG's ``ruge_stuben_solver`` (256^2,
six samples interleaved, set-up through PyAMG's Python layer): classical interpolation the same
counts, 1.17x; RS with the second pass 1-3 fewer iterations at operator complexity 2.4-2.5
instead of 2.2, 1.22x; CLJP the same counts as the second pass at complexity 3.4, 1.84x; PMIS
(direct or classical interpolation, complexity 1.9) 40-66 iterations instead of 15-24, 2.5x.
Jacobi smoothing on the levels below the hierarchy's level 0 (products only, no sequential
sweep; interleaved, six samples): damped by 0.8, 0-3 more iterations, 1.02x (256^2) and 1.04x
(512^2); l1-Jacobi 3-8 more, 1.11-1.23x.  The levels below the hierarchy's level 0 renumbered
by colour (PyAMG's MIS vertex colouring; the sequential sweep then has no dependence between
consecutive rows): 0-1 more iterations and 1.07x (256^2), 1.10x (512^2) -- the colouring and
the permuted copies cost more set-up than the sweeps save.

Reference: J. W. Ruge and K. Stueben, "Algebraic multigrid", in Multigrid Methods, SIAM, 1987.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .kernels import csr_add as _add_product


#: PyAMG's coarsest grid (solved by a dense pseudo-inverse)
COARSE_SIZE = 64


#: classical strength threshold (PyAMG's ``ruge_stuben_solver`` default)
THETA = 0.25
#: at most this many levels (PyAMG's default)
MAX_LEVELS = 30


def ruge_stuben_levels(A: sp.csr_matrix) -> tuple[list, list, list]:
    """Operators, prolongations and restrictions of PyAMG's ``ruge_stuben_solver(A, interpolation="direct")``.

    The same compiled kernels (classical strength |a_ij| >= theta max_k |a_ik|, RS
    splitting, direct interpolation) and Galerkin products :math:`A_{l+1} = R A_l P`,
    ``R = P^T``, with PyAMG's defaults (theta 0.25, no second splitting pass), called
    directly: PyAMG's Python layer around them (scaling the strength values that only
    their pattern is used of, removing the diagonal by a sparse product, format checks)
    cost 20-40% of the set-up (measured 47-56 -> 31-44 ms for the 256^2 first coarse level
    of a 512^2 Darcy operator, 5.2 -> 3.2 ms at 64^2).  The test suite checks the result
    against PyAMG's hierarchy, level by level.
    """
    from pyamg import amg_core

    As, Ps, Rs = [A], [], []
    while len(As) < MAX_LEVELS and As[-1].shape[0] > COARSE_SIZE:
        A = As[-1]
        n = A.shape[0]
        Sp, Sj, Sx = np.empty_like(A.indptr), np.empty_like(A.indices), np.empty_like(A.data)
        amg_core.classical_strength_of_connection_abs(n, THETA, A.indptr, A.indices, A.data, Sp, Sj, Sx)
        C = sp.csr_matrix((Sx[:Sp[-1]], Sj[:Sp[-1]], Sp), shape=(n, n))  # values: A's own, diagonal included
        C.eliminate_zeros()
        C.sort_indices()  # PyAMG's strength and splitting see sorted rows (the splitting's ties depend on it)
        S = C.copy()
        S.setdiag(0.0)
        S.eliminate_zeros()
        T = S.T.tocsr()
        splitting = np.empty(n, dtype=S.indptr.dtype)
        amg_core.rs_cf_splitting(n, S.indptr, S.indices, T.indptr, T.indices,
                                 np.zeros(n, dtype=S.indptr.dtype), splitting)
        nc = int(splitting.sum())
        if nc in (0, n):
            break
        P_indptr = np.empty_like(A.indptr)
        amg_core.rs_direct_interpolation_pass1(n, C.indptr, C.indices, splitting, P_indptr)
        nnz = int(P_indptr[-1])
        P_indices, P_data = np.empty(nnz, dtype=P_indptr.dtype), np.empty(nnz)
        amg_core.rs_direct_interpolation_pass2(n, A.indptr, A.indices, A.data, C.indptr, C.indices, C.data,
                                               splitting, P_indptr, P_indices, P_data)
        P = sp.csr_matrix((P_data, P_indices, P_indptr), shape=(n, nc))
        R = P.T.tocsr()
        Ps.append(P), Rs.append(R), As.append((R @ A @ P).tocsr())
    return As, Ps, Rs


class AlgebraicCoarse:
    """Ruge--Stueben hierarchy of one SPD operator and its V-cycle from zero (:meth:`cycle`).

    Attributes: ``levels`` (number of levels, the operator itself included),
    ``operator_complexity`` (sum of the levels' non-zeros over those of the operator).
    """

    def __init__(self, A: sp.csr_matrix) -> None:
        from pyamg import amg_core

        self._gauss_seidel = amg_core.gauss_seidel
        self._A, self._P, self._R = ruge_stuben_levels(A)
        self._coarse_pinv = np.linalg.pinv(self._A[-1].toarray())
        self.levels = len(self._A)
        self.operator_complexity = sum(M.nnz for M in self._A) / self._A[0].nnz
        # work arrays per level: solution, right-hand side (levels > 0), residual
        sizes = [M.shape[0] for M in self._A]
        self._x = [np.empty(m) for m in sizes]
        self._b = [None] + [np.empty(m) for m in sizes[1:]]
        self._r = [np.empty(m) for m in sizes]

    def cycle(self, b: np.ndarray) -> np.ndarray:
        """One V-cycle from ``x = 0`` for ``A_0 x = b`` (returns a work array, valid until the next cycle)."""
        return self._cycle(0, b)

    def correct(self, r: np.ndarray, x: np.ndarray) -> None:
        """``x += e`` with ``e`` one V-cycle from zero for ``A_0 e = r``."""
        x += self._cycle(0, r)

    def _cycle(self, level: int, b: np.ndarray) -> np.ndarray:
        x = self._x[level]
        if level == self.levels - 1:
            return np.dot(self._coarse_pinv, b, out=x)
        A, P, R = self._A[level], self._P[level], self._R[level]
        n = A.shape[0]
        x.fill(0.0)
        self._gauss_seidel(A.indptr, A.indices, A.data, x, b, 0, n, 1)
        r = self._r[level]
        np.negative(b, out=r)
        _add_product(A, x, r)  # r = A x - b
        bc = self._b[level + 1]
        bc.fill(0.0)
        _add_product(R, r, bc)
        np.negative(bc, out=bc)  # b_c = R (b - A x)
        ec = self._cycle(level + 1, bc)
        _add_product(P, ec, x)
        self._gauss_seidel(A.indptr, A.indices, A.data, x, b, n - 1, -1, -1)
        return x

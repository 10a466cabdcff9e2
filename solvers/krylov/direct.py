r"""Sparse direct solves (SuperLU) with a tuned column ordering; the reference engine.

``factorize(A)`` computes ``P_r A P_c = L U`` once; ``Factorization.solve(B)``
then solves for one right-hand side or a block of them. Dense input and sparse
systems with ``n <= DENSE_MAX_N`` use a dense LAPACK LU (``getrf``), which is as
fast there as any sparse ordering.

Ordering
--------
``ordering="auto"`` uses ``MMD_AT_PLUS_A`` (minimum degree on ``A + A^T``) for
structurally symmetric matrices -- the 5-point/9-point PDE operators this project
assembles -- with SuperLU's ``SymmetricMode`` and a small diagonal pivot threshold
(``diag_pivot_thresh=0.01``: the diagonal is kept as pivot unless it is 100x
smaller than the column maximum, so the symmetric ordering is not destroyed by
row swaps), and ``COLAMD`` otherwise. Any of ``COLAMD``, ``MMD_AT_PLUS_A``,
``MMD_ATA``, ``NATURAL`` can be forced (with SuperLU's default partial pivoting).

Measured factorisation times (``splu``, one core, OMP/OpenBLAS threads = 1,
median of 5 runs at 64^2 and 3 at 128^2 on a shared machine; last column: true
relative residual of one solve at 128^2)::

                 ordering        64^2 factor  nnz(L+U)   128^2 factor  nnz(L+U)   residual
    SPD          COLAMD             12.5 ms    247 818       56.8 ms  1 331 812   2.5e-15
    (variable    MMD_ATA            11.3 ms    236 962       49.5 ms  1 309 066   2.5e-15
    coefficient) NATURAL            24.0 ms    524 594      319.7 ms  4 194 738   9.0e-15
                 MMD_AT_PLUS_A       6.0 ms    130 800       41.8 ms    672 394   2.2e-15
                 auto (+Symmetric)   5.7 ms    126 532       42.4 ms    664 094   2.2e-15
    upwind       COLAMD              7.9 ms    247 818       57.5 ms  1 331 812   1.8e-15
    advection-   MMD_ATA             8.0 ms    236 962       45.0 ms  1 309 066   1.8e-15
    diffusion    NATURAL            23.8 ms    524 594      335.2 ms  4 194 738   6.9e-15
                 MMD_AT_PLUS_A       6.1 ms    130 800       40.6 ms    672 394   2.0e-15
                 auto (+Symmetric)   5.8 ms    126 532       40.3 ms    664 094   1.9e-15
    complex      COLAMD             14.2 ms    247 818       87.0 ms  1 331 812   2.2e-15
    symmetric    MMD_ATA            14.4 ms    236 962       80.5 ms  1 309 066   2.1e-15
    Helmholtz    NATURAL            44.7 ms    524 594      688.3 ms  4 194 738   5.5e-15
                 MMD_AT_PLUS_A       9.4 ms    130 800       75.4 ms    672 394   1.9e-15
                 auto (+Symmetric)   7.9 ms    126 532       73.5 ms    664 094   1.9e-15

``MMD_AT_PLUS_A`` halves the fill of ``COLAMD``/``MMD_ATA`` on these operators;
``SymmetricMode`` trims it slightly more (``diag_pivot_thresh`` 0, 0.01 and 0.1
gave the same fill and accuracy), also for the numerically nonsymmetric and
complex matrices. Dense LU vs SuperLU (factor + solve, 5-point operators): 0.05
vs 0.07 ms at n = 64, 0.16 vs 0.14 ms at n = 144, 0.58 vs 0.24 ms at n = 256,
hence :data:`DENSE_MAX_N` = 128. A dense ``ndarray`` input always takes the
dense path.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from ..residual import relative
from .operators import as_matvec
from .result import SolveResult

__all__ = ["COLUMN_ORDERINGS", "DENSE_MAX_N", "Factorization", "factorize", "direct_solve"]

#: SuperLU column orderings (``permc_spec``); ``auto`` picks one (see module docstring)
COLUMN_ORDERINGS = ("auto", "COLAMD", "MMD_AT_PLUS_A", "MMD_ATA", "NATURAL")
DENSE_MAX_N = 128  # sparse systems up to this size use dense LU (measured crossover)


class Factorization:
    """A factorised matrix: ``solve(B)`` returns ``A^{-1} B`` for ``B`` of shape (n,) or (n, r).

    Attributes: ``n``, ``dtype``, ``ordering`` (``"dense"`` for the dense path),
    ``factor_seconds``, ``nnz_factors`` (``nnz(L) + nnz(U)``; ``n^2`` when dense).
    """

    def __init__(self, solve, n, dtype, ordering, factor_seconds, nnz_factors):
        self._solve = solve
        self.n = n
        self.dtype = np.dtype(dtype)
        self.ordering = ordering
        self.factor_seconds = factor_seconds
        self.nnz_factors = nnz_factors

    def solve(self, B) -> np.ndarray:
        """``A^{-1} B``; a real factor applied to complex ``B`` solves real and imaginary parts."""
        B = np.asarray(B)
        if B.shape[0] != self.n or B.ndim > 2:
            raise ValueError(f"B has shape {B.shape}; expected ({self.n},) or ({self.n}, r)")
        if np.iscomplexobj(B) and self.dtype.kind != "c":
            # one call on the stacked real block [Re B, Im B]
            cols = 1 if B.ndim == 1 else B.shape[1]
            Y = self._solve(np.column_stack((B.real.reshape(self.n, cols), B.imag.reshape(self.n, cols))))
            X = Y[:, :cols] + 1j * Y[:, cols:]
            return X[:, 0] if B.ndim == 1 else X
        return self._solve(np.asarray(B, dtype=np.result_type(B.dtype, self.dtype)))

    def __repr__(self) -> str:
        return (f"Factorization(n={self.n}, dtype={self.dtype}, ordering={self.ordering!r}, "
                f"factor_seconds={self.factor_seconds:.3g})")


def _structurally_symmetric(A: sp.csc_matrix) -> bool:
    """Whether the sparsity pattern of ``A`` equals that of ``A^T``."""
    P = A.copy()
    P.data = np.ones_like(P.data, dtype=np.int8)
    return (P != P.T).nnz == 0


def factorize(A, *, ordering: str = "auto", single: bool = False) -> Factorization:
    """LU-factorise ``A`` (sparse or dense) once for repeated solves.

    ``ordering``: ``"auto"`` (see module docstring) or a SuperLU ``permc_spec``
    name; unknown names raise ``ValueError`` listing the valid ones.  ``single``
    factorises in float32 / complex64 (for mixed-precision refinement; ``solve``
    then expects right-hand sides of that dtype).
    """
    if ordering not in COLUMN_ORDERINGS:
        raise ValueError(f"unknown ordering {ordering!r}; valid names: {', '.join(COLUMN_ORDERINGS)}")
    if not (sp.issparse(A) or isinstance(A, np.ndarray)):
        raise TypeError(f"factorize needs an explicit sparse or dense matrix, got {type(A).__name__}")
    n = A.shape[0]
    if A.ndim != 2 or A.shape[1] != n:
        raise ValueError(f"A must be square, got shape {A.shape}")
    t0 = time.perf_counter()
    if not sp.issparse(A) or n <= DENSE_MAX_N:
        dense = A.toarray() if sp.issparse(A) else np.array(A)
        dense = dense.astype(np.result_type(dense.dtype, np.float64), copy=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sla.LinAlgWarning)  # reported below instead
            lu_piv = sla.lu_factor(dense, check_finite=False)
        if not np.all(np.diag(lu_piv[0])):
            raise sla.LinAlgError("matrix is exactly singular (zero pivot in dense LU)")
        return Factorization(lambda B: sla.lu_solve(lu_piv, B, check_finite=False), n, dense.dtype,
                             "dense", time.perf_counter() - t0, n * n)
    A = sp.csc_matrix(A)
    if single:
        A = A.astype(np.complex64 if np.iscomplexobj(A) else np.float32)
    else:
        A = A.astype(np.result_type(A.dtype, np.float64), copy=False)
    options = {}
    if ordering == "auto":
        if _structurally_symmetric(A):
            ordering = "MMD_AT_PLUS_A"
            options = dict(diag_pivot_thresh=0.01, options=dict(SymmetricMode=True))
        else:
            ordering = "COLAMD"
    lu = splu(A, permc_spec=ordering, **options)
    return Factorization(lu.solve, n, A.dtype, ordering, time.perf_counter() - t0, lu.nnz)


def direct_solve(A, b, *, ordering: str = "auto", full_output: bool = False):
    """Solve ``A x = b`` by LU; returns ``(x, info)`` or ``(x, info, SolveResult)``.

    ``info`` is 0, or -1 when ``A`` is (numerically) singular, in which case
    ``x = 0``. The record has ``iterations=0`` and ``matvecs=1`` (the true
    residual check); ``setup_seconds`` is the factorisation time.
    """
    t0 = time.perf_counter()
    matvec, n, _ = as_matvec(A)
    b = np.asarray(b)
    b_norm = float(np.linalg.norm(b))
    setup, info, message = 0.0, 0, "solved by LU"
    try:
        F = factorize(A, ordering=ordering)
        setup = F.factor_seconds
        x = F.solve(b)
        message = f"solved by LU ({F.ordering})"
    except (RuntimeError, sla.LinAlgError) as exc:  # SuperLU: "Factor is exactly singular"
        x = np.zeros(b.shape, np.result_type(b.dtype, A.dtype, np.float64))
        info, message = -1, f"breakdown: {exc}"
    r_norm = float(np.linalg.norm(b - matvec(x)))
    if not np.isfinite(r_norm) and info == 0:
        info, message = -1, "breakdown: non-finite solution (singular or badly scaled A)"
    result = SolveResult(
        method="direct", info=info, converged=info == 0, iterations=0, cycles=0, matvecs=1,
        precond_applies=0, residual=relative(r_norm, b_norm), residual_norm=r_norm,
        seconds=time.perf_counter() - t0, setup_seconds=setup, message=message,
    )
    return (x, info, result) if full_output else (x, info)

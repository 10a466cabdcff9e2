"""Preconditioners ``M^{-1} ~ A^{-1}``, built by name through :data:`PRECONDITIONERS`.

Every factory has the signature ``factory(A, **options) -> Preconditioner | None``
and :func:`make_preconditioner` looks it up by name (an unknown name raises
``ValueError`` listing the valid ones). A :class:`Preconditioner` is built from one
matrix and keeps no link to the systems it is later used with, so a single object
can precondition a whole sequence of nearby systems (the usual setting for
recycling: build ``M`` once from the first or a mean operator).

The solvers apply ``M`` on the right, ``A M^{-1} y = b, x = M^{-1} y``, so the
true residual of ``x`` is what they minimise.

Names
-----
``"none"``   no preconditioner (the factory returns ``None``).
``"jacobi"`` ``M = diag(A)``.
``"ilu"``    incomplete LU, SuperLU ``spilu`` on CSC; options ``drop_tol``,
             ``fill_factor`` and ``permc_spec``. Defaults ``drop_tol=3e-4``,
             ``fill_factor=10``, ``permc_spec="MMD_AT_PLUS_A"`` -- see below.
``"amg"``    one algebraic-multigrid V-cycle (PyAMG, imported lazily): smoothed
             aggregation for real symmetric and all complex matrices (Ruge-Stuben
             has no complex kernels), Ruge-Stuben for real nonsymmetric ones.

ILU defaults (measured)
-----------------------
2-D variable-coefficient 5-point operator ``-div(a grad u)``, 128^2 unknowns,
``a = exp(0.5 sin(2 pi x) cos(2 pi y))``, Dirichlet; :func:`gmres` (m = 40,
right-preconditioned, x0 = 0) to ``rtol=1e-8`` on one core (OMP/OpenBLAS threads
= 1); time = factorisation + solve, median of 3 runs on a shared 2-core machine
(+-20 % noise)::

                  total seconds / GMRES iterations for fill_factor =
    permc_spec     drop_tol      1            2            5           10
    COLAMD         1e-2     0.744 / 595  0.408 / 320  0.299 / 256  0.075 / 30
                   3e-3     0.705 / 595  0.400 / 321  0.387 / 255  0.205 / 50
                   1e-3     0.672 / 594  0.417 / 390  0.465 / 259  0.366 / 133
                   3e-4     0.604 / 594  0.551 / 398  0.416 / 239  0.480 / 199
                   1e-4     0.708 / 594  0.562 / 403  0.478 / 247  0.624 / 200
    MMD_AT_PLUS_A  1e-2     0.491 / 555  0.274 / 229  0.092 / 28   0.087 / 28
                   3e-3     0.453 / 557  0.274 / 232  0.099 / 42   0.064 / 15
                   1e-3     0.537 / 554  0.288 / 234  0.131 / 48   0.081 / 9
                   3e-4     0.530 / 557  0.248 / 233  0.082 / 56   0.042 / 6
                   1e-4     0.469 / 557  0.296 / 233  0.159 / 75   0.059 / 4

Factorisation itself takes 0.015-0.07 s throughout; the solve dominates. SuperLU
caps the fill at ``fill_factor * nnz(A)``, so small factors are crippled
(555-595 iterations at 1). The fill ordering matters most: ``MMD_AT_PLUS_A`` (minimum
degree on ``A + A^T``, natural for structurally symmetric PDE stencils) needs half
the fill of ``COLAMD`` (complete LU: 0.67M vs 1.33M nonzeros, 8x nnz(A)), so at
``fill_factor=10`` its ILU is nearly complete. Hence the defaults
``permc_spec="MMD_AT_PLUS_A", drop_tol=3e-4, fill_factor=10``. On 128^2 upwind
advection-diffusion they take 0.050 s / 4 iterations (best: 0.041 s at
``drop_tol=1e-2, fill_factor=5``), on a complex Helmholtz matrix 0.10 s / 4
(best 0.065 s at fill 20; COLAMD at fill 10: 3.0 s / 387). On larger
grids the complete factor outgrows ``10 nnz(A)`` and the ILU becomes genuinely
incomplete.

A real factor applied to a complex vector is applied to its real and imaginary
parts (SuperLU and PyAMG reject mixed dtypes), so real preconditioners work for
complex systems.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, spilu

from ..registry import Registry

__all__ = ["PRECONDITIONERS", "Preconditioner", "amg_hierarchy", "make_preconditioner"]


class Preconditioner:
    """``v -> M^{-1} v`` for a fixed approximate inverse, reusable across systems.

    Parameters
    ----------
    name : str
        Registry name (``"jacobi"``, ``"ilu"``, ...).
    solve : callable
        ``v -> M^{-1} v`` on vectors of ``dtype`` (a real ``solve`` with
        ``block=True`` must also accept an ``(n, 2)`` array of columns).
    shape, dtype
        Shape and dtype of ``M``.
    setup_seconds : float
        Construction time (factorisation, AMG hierarchy, ...).
    real_only : bool
        ``solve`` rejects complex input; complex vectors are split into real and
        imaginary parts (one 2-column call when ``block``, else two calls).

    ``applies`` counts the applications made through :meth:`apply`.
    """

    def __init__(
        self,
        name: str,
        solve: Callable[[np.ndarray], np.ndarray],
        shape: tuple[int, int],
        dtype,
        *,
        setup_seconds: float = 0.0,
        real_only: bool = False,
        block: bool = False,
        diagonal: np.ndarray | None = None,
    ) -> None:
        self.name = name
        #: for a diagonal M: the vector d with M^{-1} v = d * v (lets solvers apply M^{-1} to blocks)
        self.diagonal = diagonal
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.setup_seconds = setup_seconds
        self.applies = 0
        self._solve = solve
        self._split = real_only and not np.issubdtype(self.dtype, np.complexfloating)
        self._block = block

    def apply(self, v: np.ndarray) -> np.ndarray:
        """Return ``M^{-1} v``."""
        self.applies += 1
        if self._split and np.iscomplexobj(v):
            if self._block:
                y = self._solve(np.column_stack((v.real, v.imag)))
                return y[:, 0] + 1j * y[:, 1]
            return self._solve(np.ascontiguousarray(v.real)) + 1j * self._solve(np.ascontiguousarray(v.imag))
        return self._solve(v)

    __call__ = apply

    def as_linear_operator(self) -> LinearOperator:
        """``M^{-1}`` as a SciPy ``LinearOperator`` (e.g. for ``scipy.sparse.linalg.gmres``)."""
        return LinearOperator(self.shape, matvec=self.apply, dtype=self.dtype)

    def __repr__(self) -> str:
        return f"Preconditioner({self.name!r}, shape={self.shape}, dtype={self.dtype}, applies={self.applies})"


PRECONDITIONERS: Registry[Callable[..., Preconditioner | None]] = Registry("preconditioner")


def make_preconditioner(name: str, A, **options) -> Preconditioner | None:
    """Build the preconditioner registered as ``name`` for ``A`` (``None`` for ``"none"``)."""
    return PRECONDITIONERS[name](A, **options)


@PRECONDITIONERS.register("none")
def _none(A, **options) -> None:
    """No preconditioning."""
    if options:
        raise TypeError(f"preconditioner 'none' takes no options, got {sorted(options)}")
    return None


@PRECONDITIONERS.register("jacobi")
def jacobi(A) -> Preconditioner:
    """Point Jacobi, ``M^{-1} v = v / diag(A)``."""
    t0 = time.perf_counter()
    d = A.diagonal() if sp.issparse(A) else np.diag(np.asarray(A))
    zero = np.flatnonzero(d == 0)
    if zero.size:
        raise ValueError(f"jacobi: A has {zero.size} zero diagonal entries (first at index {zero[0]})")
    inv_d = 1.0 / d
    return Preconditioner(
        "jacobi", inv_d.__mul__, A.shape, inv_d.dtype, setup_seconds=time.perf_counter() - t0,
        diagonal=inv_d,
    )


@PRECONDITIONERS.register("ilu")
def ilu(A, *, drop_tol: float = 3e-4, fill_factor: float = 10.0,
        permc_spec: str = "MMD_AT_PLUS_A") -> Preconditioner:
    """Incomplete LU ``P_r A P_c ~ L U`` by SuperLU ``spilu`` (threshold dropping, ILUTP)."""
    t0 = time.perf_counter()
    A = sp.csc_matrix(A)
    A = A.astype(np.result_type(A.dtype, np.float64), copy=False)
    try:
        factor = spilu(A, drop_tol=drop_tol, fill_factor=fill_factor, permc_spec=permc_spec)
    except RuntimeError as exc:  # e.g. "Factor is exactly singular" for strongly indefinite A
        raise RuntimeError(f"ilu(drop_tol={drop_tol}, fill_factor={fill_factor}, permc_spec="
                           f"{permc_spec!r}) failed: {exc}; try a smaller drop_tol") from exc
    return Preconditioner(
        "ilu", factor.solve, A.shape, A.dtype,
        setup_seconds=time.perf_counter() - t0, real_only=True, block=True,
    )


def _is_symmetric(A, rtol: float = 1e-12) -> bool:
    """``A == A^T`` to ``rtol`` relative to ``max |a_ij|`` (plain transpose, not conjugate)."""
    A = sp.csr_matrix(A)
    scale = abs(A).max() if A.nnz else 0.0
    diff = A - A.T
    return diff.nnz == 0 or abs(diff).max() <= rtol * scale


def amg_hierarchy(A, *, symmetric: bool | None = None, **amg_options):
    """The one PyAMG hierarchy builder (used by the ``amg`` preconditioner and engine).

    Smoothed aggregation for symmetric (plain transpose) and all complex matrices --
    Ruge-Stuben has no complex kernels -- and classical Ruge-Stuben for real
    non-symmetric ones.  ``symmetric=None`` tests ``A == A^T`` numerically; a caller that
    knows (a family's declared capabilities) says so.  Extra options go to PyAMG.
    """
    import pyamg  # optional dependency, imported only when AMG is asked for

    A = sp.csr_matrix(A)
    if symmetric is None:
        symmetric = _is_symmetric(A)
    if np.iscomplexobj(A.data):
        amg_options.setdefault("symmetry", "symmetric" if symmetric else "nonsymmetric")
        return pyamg.smoothed_aggregation_solver(A, **amg_options)
    if symmetric:
        return pyamg.smoothed_aggregation_solver(A, **amg_options)
    return pyamg.ruge_stuben_solver(A, **amg_options)


@PRECONDITIONERS.register("amg")
def amg(A, *, cycle: str = "V", **amg_options) -> Preconditioner:
    """One algebraic-multigrid ``cycle`` (PyAMG, :func:`amg_hierarchy`); extra options go to PyAMG."""
    t0 = time.perf_counter()
    ml = amg_hierarchy(A, **amg_options)
    op = ml.aspreconditioner(cycle=cycle)
    return Preconditioner(
        "amg", op.matvec, A.shape, A.dtype, setup_seconds=time.perf_counter() - t0, real_only=True
    )

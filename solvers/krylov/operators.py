"""Input normalisation for the Krylov solvers.

:func:`normalize_system` turns ``A`` (SciPy sparse matrix/array, dense ``ndarray`` or
``LinearOperator``), ``b`` and ``M`` (``None``, a callable ``v -> M^{-1} v``, a
``LinearOperator``, a matrix approximating ``A^{-1}`` or a
:class:`~pdeforge.solvers.krylov.preconditioners.Preconditioner`) into plain, fast
callables plus the working dtype: ``complex128`` if any of ``A``, ``b`` or ``M``
is complex, else ``float64``. :class:`Counted` wraps a callable and counts its
applications, which is how every solver reports ``matvecs`` and
``precond_applies``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from .preconditioners import Preconditioner

Apply = Callable[[np.ndarray], np.ndarray]


class Counted:
    """``v -> fn(v)`` that counts how often it was applied (``.count``)."""

    __slots__ = ("fn", "count")

    def __init__(self, fn: Apply) -> None:
        self.fn = fn
        self.count = 0

    def __call__(self, v: np.ndarray) -> np.ndarray:
        self.count += 1
        return self.fn(v)


@dataclass(frozen=True)
class LinearSystem:
    """``A x = b`` reduced to callables: ``matvec(v) = A v``, ``psolve(v) = M^{-1} v``."""

    matvec: Apply
    psolve: Apply | None
    b: np.ndarray
    n: int
    dtype: np.dtype


def resolve_dtype(*dtypes) -> np.dtype:
    """``complex128`` if any given dtype is complex, else ``float64`` (``None`` ignored)."""
    complex_ = any(d is not None and np.issubdtype(np.dtype(d), np.complexfloating) for d in dtypes)
    return np.dtype(np.complex128 if complex_ else np.float64)


def as_matvec(A) -> tuple[Apply, int, np.dtype]:
    """``(v -> A v, n, dtype)`` for a square sparse matrix, ndarray or LinearOperator."""
    if sp.issparse(A):
        if A.format not in ("csr", "csc", "bsr", "dia"):
            A = A.tocsr()
        fn, shape, dtype = A.__matmul__, A.shape, A.dtype
    elif isinstance(A, np.ndarray):
        if A.ndim != 2:
            raise ValueError(f"A must be 2-D, got shape {A.shape}")
        fn, shape, dtype = A.dot, A.shape, A.dtype
    else:
        op = aslinearoperator(A)
        fn, shape, dtype = op.matvec, op.shape, op.dtype
    if shape[0] != shape[1]:
        raise ValueError(f"A must be square, got shape {shape}")
    return fn, shape[0], dtype


def as_psolve(M, n: int) -> tuple[Apply | None, np.dtype | None]:
    """``(v -> M^{-1} v, dtype)`` for any accepted form of ``M``; ``(None, None)`` for none.

    A bare callable carries no dtype: it is assumed to map the working dtype to
    itself (wrap a complex callable in a ``LinearOperator`` with ``dtype=complex``).
    """
    if M is None:
        return None, None
    if isinstance(M, Preconditioner):
        fn, shape, dtype = M.apply, M.shape, M.dtype
    elif isinstance(M, LinearOperator):
        fn, shape, dtype = M.matvec, M.shape, M.dtype
    elif sp.issparse(M) or isinstance(M, np.ndarray):
        fn, n_m, dtype = as_matvec(M)
        shape = (n_m, n_m)
    elif callable(M):
        return (lambda v: np.reshape(M(v), -1)), None
    else:
        raise TypeError(
            "M must be None, a callable v -> M^{-1} v, a LinearOperator, a matrix "
            f"or a Preconditioner; got {type(M).__name__}"
        )
    if tuple(shape) != (n, n):
        raise ValueError(f"M has shape {tuple(shape)} but A has shape {(n, n)}")
    return fn, dtype


def normalize_system(A, b, M=None) -> LinearSystem:
    """Normalise ``A``, ``b`` and ``M`` (see module docstring) into a :class:`LinearSystem`."""
    matvec, n, a_dtype = as_matvec(A)
    b = np.asarray(b)
    if b.ndim == 2 and b.shape[1] == 1:
        b = b[:, 0]
    if b.shape != (n,):
        raise ValueError(f"b has shape {b.shape} but A has shape {(n, n)}")
    psolve, m_dtype = as_psolve(M, n)
    dtype = resolve_dtype(a_dtype, b.dtype, m_dtype)
    return LinearSystem(matvec, psolve, np.ascontiguousarray(b, dtype=dtype), n, dtype)

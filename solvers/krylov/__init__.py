"""Krylov solvers with subspace recycling, preconditioners and a direct baseline.

``x, info = gcrodr(A, b, M=..., m=40, k=20, recycle=space)`` solves one system of
a sequence, carrying the recycled subspace in the caller-owned
:class:`RecycleSpace`; :func:`gmres` is the restarted GMRES(m) baseline and
:func:`direct_solve` / :func:`factorize` the SuperLU reference. Every solver can
return a frozen :class:`SolveResult` (``full_output=True``).
"""

from .direct import Factorization, direct_solve, factorize
from .gcrodr import DEFAULT_MAXITER, RecycleSpace, gcrodr
from .gmres import gmres
from .preconditioners import PRECONDITIONERS, Preconditioner, amg_hierarchy, make_preconditioner
from .result import SolveResult

__all__ = [
    "DEFAULT_MAXITER",
    "PRECONDITIONERS",
    "Factorization",
    "Preconditioner",
    "RecycleSpace",
    "SolveResult",
    "direct_solve",
    "factorize",
    "gcrodr",
    "gmres",
    "amg_hierarchy",
    "make_preconditioner",
]

"""Restarted GMRES(m) with right preconditioning: the SKR paper's baseline.

``A M^{-1} y = b``, ``x = M^{-1} y``; each cycle runs ``m`` Arnoldi steps from the
current residual and minimises ``||beta e_1 - Hbar_m y||`` with progressive Givens
rotations, storing ``Z_j = M^{-1} v_j`` (FGMRES-style) so ``x += Z_m y`` needs no
further preconditioner applications. It is the :mod:`~pdeforge.solvers.krylov.gcrodr`
cycle engine with recycle dimension ``k = 0``, so counts and result records are
directly comparable.

References
----------
Y. Saad and M. H. Schultz, "GMRES: a generalized minimal residual algorithm for
solving nonsymmetric linear systems", SIAM J. Sci. Stat. Comput. 7(3), 1986.

Y. Saad, "A flexible inner-outer preconditioned GMRES algorithm", SIAM J. Sci.
Comput. 14(2), 1993.
"""

from __future__ import annotations

from .gcrodr import _krylov_solve

__all__ = ["gmres"]


def gmres(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, M=None, m=40, callback=None,
          full_output=False):
    """Solve ``A x = b`` by restarted, right-preconditioned GMRES(m).

    Same parameters, stopping test (true residual ``<= max(rtol ||b||, atol)``) and
    return values as :func:`~pdeforge.solvers.krylov.gcrodr.gcrodr`, without recycling;
    ``maxiter`` counts Arnoldi iterations over all cycles (default 10 000).
    """
    x, info, result = _krylov_solve("gmres", A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter, M=M,
                                    m=m, k=0, recycle=None, callback=callback)
    return (x, info, result) if full_output else (x, info)

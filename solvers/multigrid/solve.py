r"""Krylov drivers around the structured multigrid: :func:`mg_cg` (SPD) and :func:`mg_gmres`.

:func:`mg_cg` runs preconditioned CG entirely in the red-black order of the
finest level, so the operator and the cycle share one layout and no permutation
is paid per iteration.  The
recurrence residual is only a candidate: convergence is declared on the *true*
residual :math:`\|b - Ax\| \le \max(\text{rtol}\,\|b\|, \text{atol})`; if the
recurrence claims convergence and the true residual disagrees, CG restarts from
the true residual.

References
----------
Y. Notay, "Flexible conjugate gradients", SIAM J. Sci. Comput. 22(4), 1444-1460, 2000.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from scipy.linalg.blas import daxpy as _axpy

from ..krylov import SolveResult, gmres
from .hierarchy import Multigrid, infer_shape

#: give up after this many disagreements between recurrence and true residual
MAX_TRUE_RESIDUAL_RESTARTS = 5


def _finish(method, A, b, x, info, converged, its, starts, cycles, matvecs, t0, setup, message):
    b_norm = float(np.linalg.norm(b))
    r_norm = float(np.linalg.norm(b - A @ x))
    result = SolveResult(method=method, info=info, converged=converged, iterations=its, cycles=starts,
                         matvecs=matvecs + 1, precond_applies=cycles,
                         residual=r_norm / b_norm if b_norm else 0.0, residual_norm=r_norm,
                         seconds=time.perf_counter() - t0, setup_seconds=setup, message=message)
    return result


def _preconditioner(A, M, shape, options, deflate=False) -> tuple[Multigrid, float]:
    t0 = time.perf_counter()
    if M is None:
        M = Multigrid(infer_shape(A) if shape is None else shape, **options).setup(A, deflate=deflate)
    elif not isinstance(M, Multigrid):
        raise TypeError(f"M must be a Multigrid set up for A (or None), got {type(M).__name__}")
    return M, time.perf_counter() - t0


def mg_cg(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, M=None, shape=None, callback=None,
          full_output=False, deflate=False, **options):
    """Solve the SPD system ``A x = b`` by multigrid-preconditioned CG.

    The direction update uses the Polak--Ribière form
    ``beta = z_new^T (r_new - r_old) / z_old^T r_old`` (flexible CG; one extra dot
    product, and robust if rounding makes the cycle slightly non-symmetric).  The product of
    a new direction is ``A p = A z + beta A p_old`` with ``A z`` from the cycle, whose last red
    half-sweep leaves ``(A z)_r = r_r``: half a product (not with the grid form of deflation).

    Parameters
    ----------
    A : sparse matrix of a (2d+1)-point operator on the grid ``shape`` (CSR in the
        :func:`~pdeforge.solvers.families.fv.stencil_pattern` layout is read without copies).
    b, x0 : right-hand side and initial guess (default zero), natural (C) order.
    rtol, atol : stop when ``||b - A x|| <= max(rtol ||b||, atol)`` (true residual).
    maxiter : CG iterations (default 1000).
    M : a :class:`Multigrid` already set up for ``A`` (reuse); built when None.  If it
        carries a cluster deflation (``M.setup(A, deflate=True)``), CG starts from
        ``x0 + Q r0`` and the preconditioner is ``Q + (I - QA) M`` (A-DEF2: one product
        with the thin ``(A Z)^T`` per iteration; see :mod:`.deflation`).
    shape : the grid; inferred from ``A`` when None.
    callback : ``callback(residual_norm)`` after every iteration (may raise to abort).
    full_output : also return the :class:`~pdeforge.solvers.krylov.SolveResult`.
    deflate : when ``M`` is built here, with cluster deflation.
    **options : passed to :class:`Multigrid` when it is built here (``beta``, ``nu``, ``cycle``, ``coarse``).

    Returns
    -------
    ``(x, info)`` or ``(x, info, result)``: info 0 converged, > 0 iteration limit
    (iterations done), < 0 breakdown (recurrence and true residual disagree).
    """
    t0 = time.perf_counter()
    M, setup = _preconditioner(A, M, shape, options, deflate)
    maxiter = 1000 if maxiter is None else int(maxiter)
    b = np.asarray(b, dtype=np.float64).ravel()
    perm = M.grid.levels[0].perm
    b_rb = b[perm]
    b_norm = float(np.linalg.norm(b_rb))
    tol = max(rtol * b_norm, atol)
    matvec = M.levels[0].matvec  # A v in red-black order (into out= when given)
    q = np.empty_like(b_rb)  # work arrays for A p and the preconditioned residual, reused every iteration
    cycles0 = M.applications
    matvecs = 0
    D = M.deflation
    if x0 is None:
        x = np.zeros_like(b_rb)
        r = b_rb.copy()
    else:
        x = np.asarray(x0, dtype=np.float64).ravel()[perm]
        r = b_rb - matvec(x)
        matvecs += 1
    z = np.empty_like(b_rb)
    split = D is not None and D.split
    if D is not None:
        D.start(x, r)  # Z^T r = 0 from here on (see the deflation module)
    if split:  # CG on split vectors v + Z v_c (see the deflation module): x = x + Z x_c
        zr, xc = np.empty(D.k), np.zeros(D.k)

    def precondition():
        """z = M r, or the A-DEF2 direction (into z); split: z = M r and its cluster part c is returned."""
        if D is None:
            M.apply_rb(r, z)
        elif not split:
            D.adef2(M.apply_rb, r, z)
        else:
            M.apply_rb(r, z)
            return D.coarse_part(D.restrict(r, zr), z)
        return None

    # A z from the cycle: its last red half-sweep solves the red rows, (A M r)_r = r_r, so the product
    # of a new direction p = z + beta p_old is A z + beta A p_old for half a product; not with the grid
    # form of deflation, which changes z after the cycle
    from_cycle = (D is None or split) and M.single is None  # a float32 cycle solves the red rows to float32 only
    L0 = M.levels[0]
    w = np.empty_like(b_rb) if from_cycle else None

    def first_product():
        """q = A p for p = z (a fresh direction)."""
        if from_cycle:
            L0.matvec_after_cycle(z, r, q)
        else:
            matvec(z, q)
        if split:
            D.add_AZ(c, q)

    def settle():
        """Adds the cluster part of x to the grid vector (x += Z x_c)."""
        if split:
            D.expand(x, xc)
            xc.fill(0.0)

    restarts = 0

    def done(info, converged, its, message):
        settle()
        out = np.empty_like(x)
        out[perm] = x
        res = _finish("mg_cg", A, b, out, info, converged, its, restarts + 1, M.applications - cycles0,
                      matvecs, t0, setup, message)
        return (out, info, res) if full_output else (out, info)

    r_norm = float(np.linalg.norm(r))
    if r_norm <= tol:
        return done(0, True, 0, "converged: initial residual within tolerance")
    its = 0
    while True:
        # (re)start: steepest-descent direction from the current residual
        c = precondition()
        first_product()
        matvecs += 1
        p = z.copy()
        rz = r @ z
        if split:
            pc = c.copy()
            rz += zr @ c
        while its < maxiter:
            if not split:
                pq = p @ q
            else:  # q = A (p + Z p_c);  Z^T q = (A Z)^T p + E p_c
                Ztq = D.Zt_A(p, pc)
                pq = p @ q + pc @ Ztq
            if not pq > 0 or not np.isfinite(pq):
                return done(-1, False, its, f"breakdown: p^T A p = {pq:.3e} (A or M not SPD?)")
            alpha = rz / pq
            _axpy(p, x, a=alpha)  # x += alpha p, r -= alpha q: in place, no temporaries
            _axpy(q, r, a=-alpha)
            if split:
                xc += alpha * pc
            its += 1
            r_norm = float(np.linalg.norm(r))
            if callback is not None:
                callback(r_norm)
            if r_norm <= tol:
                break
            c = precondition()
            # flexible (Polak--Ribiere) update: beta = z_new^T (r_new - r_old) / (z_old^T r_old)
            zq, rz_old, rz = z @ q, rz, r @ z
            if split:
                zq += c @ Ztq
                rz += zr @ c
            beta = -alpha * zq / rz_old
            if from_cycle:  # A (z + beta p) = A z + beta A p, A z from the cycle (+ A Z c)
                L0.matvec_after_cycle(z, r, w)
                if split:
                    D.add_AZ(c, w)
                _axpy(q, w, a=beta)
                q, w = w, q
            _axpy(p, z, a=beta)  # z + beta p is the new direction: one pass, then swap the buffers
            p, z = z, p
            if split:
                pc = c + beta * pc
            if not from_cycle:
                matvec(p, q)
                if split:
                    D.add_AZ(pc, q)
            matvecs += 1
        else:
            return done(its, False, its, f"not converged in {its} iterations (||r|| = {r_norm:.3e})")
        settle()
        r = b_rb - matvec(x)  # the true residual decides
        matvecs += 1
        r_norm = float(np.linalg.norm(r))
        if r_norm <= tol:
            return done(0, True, its, f"converged in {its} iterations")
        restarts += 1
        if D is not None:
            D.start(x, r)
        if restarts > MAX_TRUE_RESIDUAL_RESTARTS:
            out = np.empty_like(x)
            out[perm] = x
            floor = np.finfo(np.float64).eps * float(np.linalg.norm(abs(A) @ np.abs(out)))
            return done(-2, False, its, f"true residual {r_norm:.3e} stagnates above tolerance {tol:.3e} "
                                        f"(rounding floor of ||b - A x|| ~ eps || |A| |x| || = {floor:.1e})")


def mg_gmres(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, M=None, shape=None, m=40, callback=None,
             full_output=False, **options):
    """Solve a non-symmetric ``A x = b`` (e.g. an upwind M-matrix) by multigrid-preconditioned FGMRES(m).

    Same parameters and returns as :func:`mg_cg` (``maxiter`` counts Arnoldi steps),
    using :func:`pdeforge.solvers.krylov.gmres` (right preconditioning, flexible storage of
    ``M^{-1} v_j``, true-residual stopping test).
    """
    t0 = time.perf_counter()
    M, setup = _preconditioner(A, M, shape, options)
    cycles0 = M.applications
    x, info, res = gmres(A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter, M=M, m=m, callback=callback,
                         full_output=True)
    res = dataclasses.replace(res, method="mg_gmres", cycles=M.applications - cycles0,
                              seconds=time.perf_counter() - t0, setup_seconds=setup)
    return (x, info, res) if full_output else (x, info)

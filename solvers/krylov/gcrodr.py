r"""GCRO-DR: restarted GMRES with deflated restarting and subspace recycling.

For a sequence of systems ``A_i x_i = b_i`` GCRO-DR carries a ``k``-dimensional
subspace from one solve to the next. With right preconditioning ``A M^{-1} y = b``,
``x = M^{-1} y`` the recycled state is

.. math::  C = A M^{-1} U = A W,\qquad C^H C = I_k,\qquad W = M^{-1} U,

and each cycle runs ``s = m - k`` Arnoldi steps with the projected operator
``(I - C C^H) A M^{-1}``:

.. math::  (I - C C^H) A M^{-1} V_s = V_{s+1} \bar H_s,\qquad
           B_s = C^H A M^{-1} V_s,

so that ``A M^{-1} [\tilde U, V_s] = [C, V_{s+1}] G`` with
``G = [[D, B_s], [0, \bar H_s]]`` and ``\tilde U = U D`` (unit columns). Because the
residual is kept orthogonal to ``C``, the least-squares problem
``min ||beta e_{k+1} - G y||`` decouples into the GMRES problem
``min ||beta e_1 - \bar H_s y_V||`` (progressive Givens rotations) and the update
``x += Z_s y_V - W B_s y_V`` with ``Z_s = M^{-1} V_s`` stored FGMRES-style.

At the end of every cycle the recycled space is replaced by the ``k`` harmonic
Ritz vectors of smallest magnitude from ``[\tilde U, V_s]``: solve
``G^H G z = theta G^H ([C, V_{s+1}]^H [\tilde U, V_s]) z``, set ``P`` = selected
``z``, ``G P = Q R`` and ``U = [\tilde U, V_s] P R^{-1}``, ``C = [C, V_{s+1}] Q``.
Real problems stay in real arithmetic (complex-conjugate pairs are replaced by
their real and imaginary parts). The very first cycle (``k = 0``) is GMRES(m).

Implementation notes: ``C`` and ``V`` are rows of one C-contiguous array, so each
Arnoldi step projects against ``[C, V_j]`` with one gemv each way (block classical
Gram-Schmidt, repeated once when ``||w||`` drops below ``||w||/sqrt(2)``: DGKS,
"twice is enough"). Convergence is declared only on the true residual
``||b - A x||``; if the recurrence claims convergence but the true residual
disagrees, the solve restarts from the true residual, and stops with ``info = -2``
when that no longer helps.

References
----------
M. L. Parks, E. de Sturler, G. Mackey, D. D. Johnson and S. Maiti, "Recycling
Krylov subspaces for sequences of linear systems", SIAM J. Sci. Comput. 28(5),
1651-1674, 2006.

H. Wang, Z. Hao, J. Wang, Z. Geng, Z. Wang, B. Li and F. Wu, "Accelerating data
generation for neural operators via Krylov subspace recycling" (SKR), ICLR 2024.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import scipy.linalg as sla

from ..residual import STAGNATION_FACTOR, relative, tolerance
from .operators import Counted, normalize_system
from .result import SolveResult

__all__ = ["DEFAULT_MAXITER", "RecycleSpace", "gcrodr"]

_EPS = np.finfo(np.float64).eps
#: Arnoldi breakdown: h_{j+1,j} (or a pivot of the rotated Hessenberg matrix) below this
#: multiple of eps times the column's scale means the Krylov space is (numerically) invariant
_HAPPY_BREAKDOWN = 16 * _EPS
#: iteration limit per system when the caller gives none
DEFAULT_MAXITER = 10_000
# Selective reorthogonalisation: a second Gram-Schmidt pass only when one pass lost more
# than 99 % of ||w|| (the orthogonality lost in a single CGS pass is ~ eps / 0.01).  The
# DGKS value 1/sqrt(2) triggered on ~every step of both GMRES and GCRO-DR here (darcy
# 128^2, Jacobi) and doubled their orthogonalisation cost without changing a single
# iteration count; PETSc's default GMRES does no refinement at all.
_REORTH = 1e-2
_RANK_RTOL = 1e-10  # relative threshold on diag(R) when orthonormalising recycle bases


class RecycleSpace:
    r"""Recycled Krylov subspace carried from one solve to the next; owned by the caller.

    Pass the same object to successive :func:`gcrodr` calls; each call reads it
    and replaces its contents. ``RecycleSpace()`` is empty ("no recycled vectors
    yet").

    Attributes (``n x dim`` column views; ``None`` when empty)
    ----------------------------------------------------------
    U : y-space (preconditioned) recycle vectors, unnormalised.
    W : ``M^{-1} U``, the same space in x-space (``U`` itself when ``M`` is None).
    C : ``A W`` with orthonormal columns.
    A, M : the operator objects ``C`` and ``W`` are valid for. The next solve
        reuses ``C`` only if it gets *these very objects* (``is``); otherwise it
        rebuilds ``C = A W`` (``k`` products with ``A``), and ``W = M^{-1} U``
        too (``k`` applications of ``M^{-1}``) if ``M`` is a different object.
        Do not modify a matrix in place between solves without calling
        :meth:`clear`.
    last_result : the :class:`SolveResult` of the latest solve that used it.

    ``dim`` is the solver's ``k`` (``k +- 1`` for real problems, where a
    complex-conjugate pair of harmonic Ritz vectors is never split; fewer when the
    Krylov space was smaller). A solve with a smaller ``k`` uses the first ``k``
    columns, which still satisfy ``C = A W``, ``C^H C = I``.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget all recycled vectors."""
        # rows of C-contiguous (dim, n) arrays, so that [C; V] products are single BLAS calls
        self._U: np.ndarray | None = None
        self._W: np.ndarray | None = None
        self._C: np.ndarray | None = None
        self.A = None
        self.M = None
        self.last_result: SolveResult | None = None

    @property
    def dim(self) -> int:
        """Number of recycled vectors ``k``."""
        return 0 if self._U is None else self._U.shape[0]

    @property
    def n(self) -> int | None:
        """Length of the recycled vectors (``None`` when empty)."""
        return None if self._U is None else self._U.shape[1]

    U = property(lambda self: None if self._U is None else self._U.T)
    W = property(lambda self: None if self._W is None else self._W.T)
    C = property(lambda self: None if self._C is None else self._C.T)

    def _store(self, U, W, C, A, M) -> None:
        if U is None or U.shape[0] == 0:
            self._U = self._W = self._C = None
            self.A = self.M = None
        else:
            self._U, self._W, self._C, self.A, self.M = U, W, C, A, M

    def __repr__(self) -> str:
        return f"RecycleSpace(dim={self.dim}, n={self.n})"


def _dotc(Q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``conj(Q) @ w`` for rows ``Q``: inner products with a vector (gemv) or the columns of
    a block (gemm); conjugates ``w``, not the large ``Q``, to avoid copying the basis."""
    if np.iscomplexobj(Q):
        return (Q @ w.conj()).conj()
    return Q @ w


def _orthonormal_rows(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pivoted thin QR of the columns ``Y^T = Q R`` (rows in, rows out), rank-truncated.

    Returns ``(Q_rows, R, piv)`` with ``Y[piv]^T = Q R`` on the kept ``rank`` columns.
    """
    Q, R, piv = sla.qr(Y.T, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    rank = int(np.count_nonzero(diag > _RANK_RTOL * diag[0])) if diag.size and diag[0] > 0 else 0
    return np.ascontiguousarray(Q[:, :rank].T), R[:rank, :rank], piv[:rank]


def _rebuild(U, W, matvec, psolve):
    """GCRO-DR step 0 (new operator): ``A M^{-1} U = Q R``; ``C = Q``, ``U, W <- U R^{-1}, W R^{-1}``.

    ``W = M^{-1} U`` is recomputed only when not given (``M`` changed).
    """
    if W is None:
        W = U if psolve is None else np.array([psolve(u) for u in U], dtype=U.dtype)
    AW = np.array([matvec(w) for w in W], dtype=U.dtype)
    C, R, piv = _orthonormal_rows(AW)
    # rows of U R^{-1} are R^{-T} U^T (plain transpose, also for complex): one gemm each
    Rinv_T = sla.solve_triangular(R, np.eye(R.shape[0], dtype=R.dtype)).T
    U_new = Rinv_T @ U[piv]
    W_new = U_new if psolve is None else Rinv_T @ W[piv]
    return U_new, W_new, C


def _givens(a: complex, b: float) -> tuple[float, complex, complex]:
    """``(c, s, rho)`` with ``[[c, s], [-conj(s), c]] [a, b]^T = [rho, 0]^T`` (``b`` real >= 0)."""
    if b == 0.0:
        return 1.0, 0.0, a
    if a == 0:
        return 0.0, 1.0, b
    abs_a = abs(a)
    norm = np.hypot(abs_a, b)
    phase = a / abs_a
    return abs_a / norm, phase * b / norm, phase * norm


def _arnoldi_cycle(basis, kc, s_max, beta, tol, matvec, psolve, Z, callback):
    """Up to ``s_max`` Arnoldi steps of ``(I - C C^H) A M^{-1}`` from ``v_1 = basis[kc]``.

    ``basis`` rows ``0..kc-1`` hold ``C``; ``v_j`` are written after them. Returns
    ``(s, H, B, y, status)`` with ``H = Hbar_s`` (unrotated), ``B = C^H A M^{-1} V_s``,
    ``y`` the GMRES coefficients and status ``"converged" | "happy" | "limit" | "nonfinite"``.
    """
    dtype = basis.dtype
    H = np.zeros((s_max + 1, s_max), dtype)
    B = np.zeros((kc, s_max), dtype)
    R = np.zeros((s_max, s_max), dtype)  # H rotated to upper-triangular form
    cs = np.zeros(s_max)
    sn = np.zeros(s_max, dtype)
    g = np.zeros(s_max + 1, dtype)
    g[0] = beta
    status = "limit"
    for j in range(s_max):
        p = kc + j
        # Arnoldi step: z_j = M^{-1} v_j (kept for the x update), w = A z_j
        if psolve is None:
            z = basis[p]
        else:
            z = Z[j]
            z[:] = psolve(basis[p])
        w = matvec(z)
        if w.dtype != dtype or np.may_share_memory(w, z) or not w.flags.writeable:
            w = np.array(w, dtype=dtype)  # never orthogonalise in place of the caller's data
        w_norm = np.linalg.norm(w)
        # GCRO-DR step: project out [C, V_j] by block classical Gram-Schmidt (one gemv
        # each way), repeated once when cancellation is detected (CGS2 / DGKS)
        Q = basis[: p + 1]
        h = _dotc(Q, w)
        w -= h @ Q
        h_norm = np.linalg.norm(w)
        if h_norm < _REORTH * w_norm:
            h2 = _dotc(Q, w)
            w -= h2 @ Q
            h += h2
            h_norm = np.linalg.norm(w)
        if not (np.isfinite(h_norm) and np.all(np.isfinite(h))):
            return j, H, B, None, "nonfinite"
        B[:, j] = h[:kc]
        H[: j + 1, j] = h[kc:]
        H[j + 1, j] = h_norm
        happy = h_norm <= _HAPPY_BREAKDOWN * w_norm
        if happy:
            basis[p + 1] = 0.0
        else:
            np.multiply(w, 1.0 / h_norm, out=basis[p + 1])
        # GMRES step: apply the previous Givens rotations to column j, then a new one
        col = H[: j + 2, j].copy()
        for i in range(j):
            t = cs[i] * col[i] + sn[i] * col[i + 1]
            col[i + 1] = -np.conj(sn[i]) * col[i] + cs[i] * col[i + 1]
            col[i] = t
        cs[j], sn[j], col[j] = _givens(col[j], h_norm)
        R[: j + 1, j] = col[: j + 1]
        g[j + 1] = -np.conj(sn[j]) * g[j]
        g[j] = cs[j] * g[j]
        resid = abs(g[j + 1])
        if callback is not None:
            callback(resid)
        if resid <= tol:
            status = "converged"
            break
        if happy:
            status = "happy"
            break
    s = j + 1
    H, B = H[: s + 1, :s], B[:, :s]
    if happy or np.abs(np.diag(R[:s, :s])).min() <= _HAPPY_BREAKDOWN * np.abs(H).max():
        # (near-)invariant subspace: the rotated system may be singular and the Givens
        # residual meaningless, so minimise ||beta e_1 - Hbar y|| by least squares
        status = "happy"
        rhs = np.zeros(s + 1, dtype)
        rhs[0] = beta
        y = np.linalg.lstsq(H, rhs, rcond=None)[0]
    else:
        y = sla.solve_triangular(R[:s, :s], g[:s])
    if not np.all(np.isfinite(y)):
        return s, H, B, None, "nonfinite"
    return s, H, B, y, status


def _select_harmonic_ritz(theta, Z, k, k_max, real):
    """Eigenvectors of the ``k`` smallest ``|theta|`` (non-finite last), as columns ``P``.

    For real problems a complex-conjugate pair contributes its real and imaginary
    parts; a pair split at position ``k`` is completed (one more) if ``k + 1 <=
    k_max``, else dropped (one fewer).
    """
    key = np.where(np.isfinite(theta), np.abs(theta), np.inf)
    order = np.argsort(key, kind="stable")
    if not real:
        return Z[:, order[: min(k, k_max)]]
    cols, used = [], np.zeros(theta.size, bool)
    for i in order:
        if len(cols) >= k:
            break
        if used[i]:
            continue
        if np.isfinite(theta[i]) and theta[i].imag != 0.0:
            # LAPACK ggev stores a conjugate pair in consecutive columns, positive imaginary part first
            partner = i + 1 if theta[i].imag > 0 else i - 1
            used[[i, partner]] = True
            cols += [Z[:, i].real, Z[:, i].imag]
        else:
            used[i] = True
            cols.append(Z[:, i].real)
    if len(cols) > k_max:  # only a pair completed at position k can overshoot
        cols = cols[:-2]
    return np.array(cols).T


def _harmonic_ritz_update(basis, kc, s, H, B, U, W, Z, k, m, real, wmap=None):
    """GCRO-DR step: replace ``(U, W, C)`` by the harmonic Ritz space of the cycle.

    ``G = [[D, B], [0, Hbar]]``; solve ``G^H G z = theta G^H (What^H Vhat) z`` with
    ``What = [C, V_{s+1}]``, ``Vhat = [U D, V_s]``; then ``G P = Q R``,
    ``U = Vhat P R^{-1}``, ``W = [W D, Z_s] P R^{-1}``, ``C = What Q``.
    Returns the new ``(U, W, C)`` as row arrays.
    """
    dtype = basis.dtype
    d = 1.0 / np.linalg.norm(U, axis=1) if kc else np.zeros(0)
    G = np.zeros((kc + s + 1, kc + s), dtype)
    G[:kc, :kc] = np.diag(d)
    G[:kc, kc:] = B
    G[kc:, kc:] = H
    # What^H Vhat = [[C^H U D, 0], [V_{s+1}^H U D, I]]  (C^H V = 0)
    WV = np.zeros_like(G)
    if kc:
        WV[:, :kc] = _dotc(basis[: kc + s + 1], U.T) * d
    WV[kc:, kc:] = np.eye(s + 1, s)
    GH = G.conj().T
    with np.errstate(divide="ignore", invalid="ignore"):  # infinite theta are sorted last
        theta, Zv = sla.eig(GH @ G, GH @ WV)
    k_max = min(m - 1, kc + s)
    P = _select_harmonic_ritz(theta, Zv, k, k_max, real)
    if P.shape[1] == 0:
        return None, None, np.zeros((0, basis.shape[1]), dtype)
    P = np.linalg.qr(P.astype(dtype, copy=False))[0]  # same span, well-conditioned basis
    # thin QR  G P = Q R (rank-revealing); T = P R^{-1}
    Q, R, piv = _orthonormal_rows((G @ P).T)  # rows of Q, i.e. Q^T
    T = sla.solve_triangular(R, P[:, piv].T, trans="T").T
    Tu, Tv = T[:kc] * d[:, None], T[kc:]  # fold D into the U-block
    # C_new = What Q and the V-part of U_new = Vhat T in ONE pass over the basis
    kn = Q.shape[0]
    coef = np.zeros((2 * kn, kc + s + 1), dtype)
    coef[:kn] = Q
    coef[kn:, kc : kc + s] = Tv.T
    both = coef @ basis[: kc + s + 1]
    C_new, U_new = both[:kn], both[kn:]
    if kc:
        U_new += Tu.T @ U
    if Z is None:
        W_new = U_new
    elif wmap is not None:
        W_new = wmap(U_new)  # cheap (diagonal) M: W = M^{-1} U directly
    else:
        W_new = Tv.T @ Z[:s]
        if kc:
            W_new += Tu.T @ W
    return U_new, W_new, C_new


def _check_options(rtol, atol, maxiter, m, k):
    if not (isinstance(m, Integral) and m >= 1):
        raise ValueError(f"m (restart length) must be an integer >= 1, got {m!r}")
    if not (isinstance(k, Integral) and 0 <= k < m):
        raise ValueError(f"k must satisfy 0 <= k < m (recycle dimension k={k!r}, restart length m={m!r})")
    if not (isinstance(maxiter, Integral) and maxiter >= 1):
        raise ValueError(f"maxiter must be an integer >= 1 or None, got {maxiter!r}")
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol and atol must be >= 0, got rtol={rtol!r}, atol={atol!r}")


class _Operators:
    """``A``, ``b`` and ``M`` normalised (:func:`normalize_system`), with counted applications.

    ``wmap`` maps a block of recycle rows ``U`` to ``W = M^{-1} U`` in one product when ``M``
    is diagonal (Jacobi); ``None`` otherwise.
    """

    def __init__(self, A, b, M) -> None:
        system = normalize_system(A, b, M)
        self.n, self.dtype, self.b = system.n, system.dtype, system.b
        self.matvec = Counted(system.matvec)
        self.psolve = None if system.psolve is None else Counted(system.psolve)
        self.wmap = None
        if self.psolve is not None and getattr(M, "diagonal", None) is not None:
            psolve, d = self.psolve, M.diagonal

            def diagonal_block_inverse(U_rows):  # W = M^{-1} U for all k rows at once
                psolve.count += U_rows.shape[0]
                return U_rows * d

            self.wmap = diagonal_block_inverse

    def initial_guess(self, x0) -> np.ndarray:
        if x0 is not None and np.iscomplexobj(x0) and self.dtype.kind != "c":
            raise ValueError("x0 is complex but A, b and M are real")
        x = np.zeros(self.n, self.dtype) if x0 is None else np.array(x0, dtype=self.dtype).reshape(-1)
        if x.shape != (self.n,):
            raise ValueError(f"x0 has {x.size} entries but the system has n={self.n}")
        return x


def _check_space(space: RecycleSpace, ops: _Operators) -> None:
    if space.dim:
        if space.n != ops.n:
            raise ValueError(f"recycle space has vectors of length {space.n} but the system has n={ops.n}; "
                             "use a new RecycleSpace() or call recycle.clear()")
        if np.iscomplexobj(space._U) and ops.dtype.kind != "c":
            raise ValueError("recycle space is complex but the system is real; call recycle.clear()")


def _load_recycled(space: RecycleSpace, k: int, A, M, ops: _Operators, basis: np.ndarray):
    """GCRO-DR step 0: up to ``k`` recycled vectors into ``basis[:kc]`` (= C).

    ``C`` is reused when ``space`` was built for these very ``A`` and ``M``; for a new
    ``A`` it is rebuilt, ``C = A W`` (``W = M^{-1} U`` stays valid while ``M`` is the same).
    Returns ``(kc, U, W, setup_seconds)``.
    """
    kc = min(space.dim, k)
    if not kc:
        return 0, None, None, 0.0
    psolve = ops.psolve
    U = space._U[:kc].astype(ops.dtype, copy=False)
    setup = 0.0
    if space.A is A and space.M is M:
        C = space._C[:kc]
        W = U if psolve is None else space._W[:kc].astype(ops.dtype, copy=False)
    else:
        t0 = time.perf_counter()
        W = space._W[:kc].astype(ops.dtype, copy=False) if space.M is M and psolve is not None else None
        U, W, C = _rebuild(U, W, ops.matvec, psolve)
        kc = C.shape[0]
        setup = time.perf_counter() - t0
    basis[:kc] = C
    return kc, U, W, setup


def _krylov_solve(method, A, b, x0, *, rtol, atol, maxiter, M, m, k, recycle, callback):
    """Shared cycle engine of :func:`gcrodr` (``k >= 0``) and :func:`gmres` (``k = 0``)."""
    t_start = time.perf_counter()
    maxiter = DEFAULT_MAXITER if maxiter is None else maxiter
    _check_options(rtol, atol, maxiter, m, k)
    ops = _Operators(A, b, M)
    space = RecycleSpace() if recycle is None else recycle
    _check_space(space, ops)
    x = ops.initial_guess(x0)
    b = ops.b
    b_norm = float(np.linalg.norm(b))

    def finish(info, converged, r_norm, message, iterations=0, cycles=0, setup=0.0):
        result = SolveResult(
            method=method, info=info, converged=converged, iterations=iterations, cycles=cycles,
            matvecs=ops.matvec.count, precond_applies=0 if ops.psolve is None else ops.psolve.count,
            residual=relative(r_norm, b_norm), residual_norm=r_norm,
            seconds=time.perf_counter() - t_start, setup_seconds=setup, message=message,
        )
        if recycle is not None:
            recycle.last_result = result
        return x, info, result

    if b_norm == 0.0:
        x[:] = 0.0
        return finish(0, True, 0.0, "b = 0: returned x = 0")
    basis = np.empty((m + 1, ops.n), ops.dtype)  # rows: C (kc), then V (s + 1)
    Z = None if ops.psolve is None else np.empty((m, ops.n), ops.dtype)
    kc, U, W, setup = _load_recycled(space, k, A, M, ops, basis)
    state = _CycleState(x=x, r=b.copy() if x0 is None else b - ops.matvec(x), kc=kc, U=U, W=W)
    info, converged, r_norm, message = _cycles(state, ops, basis, Z, tolerance(b_norm, rtol, atol),
                                              maxiter, m, k, callback)
    if converged:
        message = f"converged in {state.iterations} iterations ({state.cycles} cycles)"
    if recycle is not None and info != -1:
        recycle._store(state.U, state.W, basis[: state.kc].copy(), A, M)
    return finish(info, converged, r_norm, message, state.iterations, state.cycles, setup)


@dataclass
class _CycleState:
    """The iterate, its residual and the recycled space between GCRO-DR cycles."""

    x: np.ndarray
    r: np.ndarray
    kc: int
    U: np.ndarray | None
    W: np.ndarray | None
    iterations: int = 0
    cycles: int = 0


def _cycles(st: _CycleState, ops: _Operators, basis, Z, tol: float, maxiter: int, m: int, k: int,
            callback) -> tuple[int, bool, float, str]:
    """GCRO-DR steps 1-4 until the true residual meets ``tol``; returns ``(info, converged,
    ||b - A x||, message)``.  Convergence is only ever declared on the true residual."""
    b, matvec = ops.b, ops.matvec
    real = ops.dtype.kind != "c"
    last_failed_check = None
    while True:
        # GCRO-DR step 1: x += W C^H r, r -= C C^H r  (r orthogonal to range(C))
        if st.kc:
            c = _dotc(basis[: st.kc], st.r)
            st.x += c @ st.W
            st.r -= c @ basis[: st.kc]
        beta = float(np.linalg.norm(st.r))
        if not np.isfinite(beta):
            return -1, False, float(np.linalg.norm(b - matvec(st.x))), \
                "breakdown: non-finite residual (check A, b and M)"
        if beta <= tol or st.iterations >= maxiter:
            # never trust the recurrence: check the true residual (one matvec)
            r_true = b - matvec(st.x)
            r_norm = float(np.linalg.norm(r_true))
            if r_norm <= tol:
                return 0, True, r_norm, ""
            if st.iterations >= maxiter:
                return st.iterations, False, r_norm, f"iteration limit maxiter={maxiter} reached"
            if last_failed_check is not None and r_norm > STAGNATION_FACTOR * last_failed_check:
                return -2, False, r_norm, \
                    "stagnation: true residual no longer decreases (attainable accuracy reached)"
            # loss of accuracy: restart from the true residual
            last_failed_check, st.r = r_norm, r_true
            continue

        # GCRO-DR step 2: Arnoldi cycle with (I - C C^H) A M^{-1} from v_1 = r / beta
        kc = st.kc
        s_max = min(m - kc, maxiter - st.iterations)
        np.multiply(st.r, 1.0 / beta, out=basis[kc])
        s, H, B, y, status = _arnoldi_cycle(basis, kc, s_max, beta, tol, matvec, ops.psolve, Z, callback)
        st.iterations += s
        st.cycles += 1
        if status == "nonfinite":
            return -1, False, float(np.linalg.norm(b - matvec(st.x))), \
                f"breakdown: non-finite value in Arnoldi step {st.iterations} (check A and M)"

        # GCRO-DR step 3: x += Z_s y - W (B y);  r = V_{s+1} (beta e_1 - Hbar y)
        st.x += y @ (basis[kc : kc + s] if Z is None else Z[:s])
        if kc:
            st.x -= (B @ y) @ st.W
        coef = -(H @ y)
        coef[0] += beta
        st.r = coef @ basis[kc : kc + s + 1]
        if status == "happy" and np.linalg.norm(coef) > max(tol, np.sqrt(_EPS) * beta):
            # the Krylov space is invariant yet the residual is not reduced: singular operator
            return -1, False, float(np.linalg.norm(b - matvec(st.x))), \
                "breakdown: invariant Krylov subspace without convergence (A M^{-1} singular?)"

        # GCRO-DR step 4: harmonic Ritz update of the recycled space (every cycle)
        if k:
            st.U, st.W, C = _harmonic_ritz_update(basis, kc, s, H, B, st.U, st.W, Z, k, m, real, ops.wmap)
            st.kc = C.shape[0]
            basis[: st.kc] = C


def gcrodr(A, b, x0=None, *, rtol=1e-8, atol=0.0, maxiter=None, M=None, m=40, k=20,
           recycle=None, callback=None, full_output=False):
    r"""Solve ``A x = b`` by GCRO-DR(m, k) with right preconditioning and recycling.

    Stops when ``||b - A x|| <= max(rtol ||b||, atol)`` holds for the *true*
    residual.

    Parameters
    ----------
    A : sparse matrix, ndarray or LinearOperator, shape (n, n)
    b : array, shape (n,)
    x0 : array, optional
        Initial guess (default zero).
    rtol, atol : float
        Relative and absolute tolerances.
    maxiter : int, optional
        Maximum total Arnoldi iterations over all cycles (default 10 000).
    M : None, callable, LinearOperator, matrix or Preconditioner
        ``M^{-1}``, applied on the right: ``A M^{-1} y = b``, ``x = M^{-1} y``.
    m : int
        Cycle length (Krylov + recycled dimension per cycle).
    k : int
        Recycle dimension, ``0 <= k < m``; ``k = 0`` is GMRES(m).
    recycle : RecycleSpace, optional
        State carried between solves; read at the start, replaced at the end.
        Without it the space is only recycled across the cycles of this solve.
    callback : callable, optional
        ``callback(residual_norm)`` after every Arnoldi iteration (the absolute
        residual norm of the GMRES recurrence).
    full_output : bool
        Also return the :class:`SolveResult`.

    Returns
    -------
    x : ndarray
    info : int
        0 converged; > 0 iteration limit reached (= iterations done); -1 breakdown
        (non-finite values, or an invariant subspace without convergence); -2
        stagnation (the true residual stopped decreasing above the tolerance).
    result : SolveResult
        Only with ``full_output=True`` (also stored as ``recycle.last_result``).

    References
    ----------
    Parks et al., SIAM J. Sci. Comput. 28(5), 2006; Wang et al. (SKR), ICLR 2024.
    """
    x, info, result = _krylov_solve("gcrodr", A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter, M=M,
                                    m=m, k=k, recycle=recycle, callback=callback)
    return (x, info, result) if full_output else (x, info)

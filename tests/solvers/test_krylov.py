"""Tests for pdeforge.solvers.krylov: GCRO-DR, GMRES baseline, preconditioners, recycle state.

The case catalogue (SPD, nonsymmetric, indefinite, complex symmetric) is built
here on a 32^2 grid; recycling is proven with operation counts, never timings.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from pdeforge.solvers.krylov import (
    PRECONDITIONERS,
    Preconditioner,
    RecycleSpace,
    SolveResult,
    gcrodr,
    gmres,
    make_preconditioner,
)
from tests.helpers import assert_solved, true_relative_residual

N = 32
RTOL = 1e-8


# --------------------------------------------------------------------------- case catalogue
def laplacian_2d(n_side: int, a=lambda x, y: np.ones_like(x)) -> sp.csr_matrix:
    """``-div(a grad u)`` on the unit square, 5-point, Dirichlet, ``h = 1/(n+1)``; ``a`` on faces."""
    h = 1.0 / (n_side + 1)
    nodes = np.arange(1, n_side + 1) * h
    faces = (np.arange(n_side + 1) + 0.5) * h
    ax = a(*np.meshgrid(faces, nodes, indexing="ij"))  # (n+1, n): faces between x-neighbours
    ay = a(*np.meshgrid(nodes, faces, indexing="ij"))  # (n, n+1)
    idx = np.arange(n_side * n_side).reshape(n_side, n_side)
    diag = ax[:-1] + ax[1:] + ay[:, :-1] + ay[:, 1:]
    west, south = -ax[1:-1], -ay[:, 1:-1]
    rows = np.concatenate([idx.ravel(), idx[1:].ravel(), idx[:-1].ravel(), idx[:, 1:].ravel(), idx[:, :-1].ravel()])
    cols = np.concatenate([idx.ravel(), idx[:-1].ravel(), idx[1:].ravel(), idx[:, :-1].ravel(), idx[:, 1:].ravel()])
    vals = np.concatenate([diag.ravel(), west.ravel(), west.ravel(), south.ravel(), south.ravel()])
    return sp.csr_matrix((vals / h**2, (rows, cols)), shape=(n_side**2, n_side**2))


def spd_matrix(n_side=N, amp=0.5):
    """Variable coefficient ``a = exp(amp sin(2 pi x) cos(2 pi y))``: SPD."""
    return laplacian_2d(n_side, lambda x, y: np.exp(amp * np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y)))


def upwind_matrix(n_side=N, peclet=50.0):
    """``-Laplace u + peclet (1, 1/2) . grad u``, first-order upwind: nonsymmetric."""
    h = 1.0 / (n_side + 1)
    D = sp.diags([-np.ones(n_side - 1), np.ones(n_side)], [-1, 0]) / h
    eye = sp.identity(n_side)
    return (laplacian_2d(n_side) + peclet * (sp.kron(D, eye) + 0.5 * sp.kron(eye, D))).tocsr()


def indefinite_matrix(n_side=N, amp=0.0):
    """(Perturbed) Laplacian minus a shift between its 4th and 5th eigenvalues: 4 negative ones."""
    h = 1.0 / (n_side + 1)
    s = np.sin(np.arange(1, n_side + 1) * np.pi * h / 2) ** 2
    eig = np.sort((4 / h**2 * (s[:, None] + s[None, :])).ravel())
    shift = 0.5 * (eig[3] + eig[4])
    return (spd_matrix(n_side, amp) - shift * sp.identity(n_side**2)).tocsr()


def helmholtz_matrix(n_side=N, sigma=0.1):
    """``-Laplace u - kappa^2 (1 + i damp) u`` with damping growing towards the boundary
    (an absorbing layer): complex symmetric, non-Hermitian, indefinite real part."""
    h = 1.0 / (n_side + 1)
    kappa = np.pi / (8 * h)
    x = np.arange(1, n_side + 1) * h
    X, Y = np.meshgrid(x, x, indexing="ij")
    dist = np.minimum.reduce([X, 1 - X, Y, 1 - Y])
    damp = sigma + 5 * np.clip(0.15 - dist, 0, None) / 0.15
    return (laplacian_2d(n_side) - sp.diags((kappa**2 * (1 + 1j * damp)).ravel())).tocsr()


def rhs(n, complex_=False, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.standard_normal(n)
    return b + 1j * rng.standard_normal(n) if complex_ else b


CASES = {
    "spd": spd_matrix,
    "upwind": upwind_matrix,
    "indefinite": indefinite_matrix,
    "helmholtz": helmholtz_matrix,
}


def make_case(name):
    A = CASES[name]()
    return A, rhs(A.shape[0], np.iscomplexobj(A.data))


class CountingOperator(spla.LinearOperator):
    """``A`` as a LinearOperator counting its products (the instrumented operator)."""

    def __init__(self, A):
        super().__init__(A.dtype, A.shape)
        self.A, self.count = A, 0

    def _matvec(self, v):
        self.count += 1
        return self.A @ v


# --------------------------------------------------------------------------- correctness
@pytest.mark.parametrize("precond", ["none", "jacobi", "ilu"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("solver", [gcrodr, gmres])
def test_solves_catalogue(solver, case, precond):
    A, b = make_case(case)
    M = make_preconditioner(precond, A)
    x, info, res = solver(A, b, rtol=RTOL, M=M, full_output=True)
    assert info == 0 and res.converged, res.message
    assert_solved(A, b, x, RTOL)
    assert res.method == solver.__name__
    assert res.residual == pytest.approx(true_relative_residual(A, b, x), rel=1e-6)
    assert res.residual <= RTOL
    if M is None:
        assert res.precond_applies == 0
    elif solver is gmres or precond != "jacobi":
        assert res.precond_applies == res.iterations
    else:  # diagonal M: GCRO-DR also maps the k recycled vectors, W = M^{-1} U, per cycle
        assert res.iterations < res.precond_applies <= res.iterations + 21 * res.cycles


def test_right_preconditioning_meets_true_residual():
    """A poor (Jacobi) right preconditioner still yields the *true* residual below rtol,
    and x is updated from stored Z = M^{-1} V: one M^{-1} per Arnoldi step, no extra."""
    A, b = make_case("upwind")
    M = make_preconditioner("jacobi", A)
    x, info, res = gcrodr(A, b, M=M, m=20, k=5, full_output=True)
    assert info == 0
    assert true_relative_residual(A, b, x) <= RTOL
    assert M.applies == res.iterations  # one M^{-1} v per Arnoldi step
    # plus, per cycle, W = M^{-1} U for the (at most k + 1) new recycled vectors in one block
    assert res.iterations < res.precond_applies <= res.iterations + 6 * res.cycles
    assert res.matvecs == res.iterations + 1  # + the final true-residual check


@pytest.mark.parametrize("solver", [gcrodr, gmres])
def test_operator_forms(solver):
    A, b = make_case("spd")
    op = CountingOperator(A)
    x1, _ = solver(op, b)
    x2, _ = solver(A.toarray(), b)
    assert_solved(A, b, x1, RTOL)
    assert_solved(A, b, x2, RTOL)


def test_complex_system_with_real_preconditioner():
    A, b = make_case("helmholtz")
    A_real = A.real.tocsr()
    for name in ["jacobi", "ilu"]:
        M = make_preconditioner(name, A_real)
        assert M.dtype.kind == "f"
        v = rhs(A.shape[0], complex_=True, seed=3)
        assert np.allclose(M(v), M(v.real) + 1j * M(v.imag))
        x, info = gcrodr(A, b, M=M)
        assert info == 0
        assert_solved(A, b, x, RTOL)


def test_x0_is_used():
    A, b = make_case("spd")
    x_ref = spla.spsolve(A.tocsc(), b)
    x0 = x_ref + 1e-4 * rhs(A.shape[0], seed=1)
    _, _, cold = gcrodr(A, b, full_output=True)
    x, info, warm = gcrodr(A, b, x0=x0, full_output=True)
    assert info == 0
    assert_solved(A, b, x, RTOL)
    assert warm.iterations < cold.iterations
    assert warm.matvecs == warm.iterations + 2  # r0 = b - A x0, and the final check


def test_zero_rhs_returns_zero():
    A, b = make_case("spd")
    x, info, res = gcrodr(A, np.zeros_like(b), x0=b, full_output=True)
    assert info == 0 and res.converged
    assert not np.any(x) and res.residual == 0.0 and res.iterations == 0


def test_maxiter_reports_true_residual():
    A, b = make_case("spd")
    x, info, res = gcrodr(A, b, maxiter=15, m=10, k=4, full_output=True)
    assert info == 15 == res.iterations and not res.converged
    assert res.residual == pytest.approx(true_relative_residual(A, b, x), rel=1e-10)
    assert res.residual > RTOL
    assert "maxiter" in res.message


def test_atol_and_callback():
    A, b = make_case("upwind")
    norms = []
    x, info, res = gmres(A, b, rtol=0.0, atol=1e-3 * np.linalg.norm(b), callback=norms.append,
                         full_output=True)
    assert info == 0 and len(norms) == res.iterations
    assert np.linalg.norm(b - A @ x) <= 1e-3 * np.linalg.norm(b)
    assert np.all(np.diff(norms) <= 1e-12 * norms[0])  # GMRES residuals never increase within a cycle


def test_nonfinite_is_breakdown():
    A, b = make_case("spd")
    A = A.copy()
    A.data[7] = np.nan
    x, info, res = gcrodr(A, b, full_output=True)
    assert info < 0 and not res.converged
    assert "non-finite" in res.message


def test_unreachable_tolerance_is_not_converged():
    """rtol below the attainable accuracy: restarts from the true residual, then stops
    with info != 0 -- never a false "converged"."""
    A, b = make_case("spd")
    x, info, res = gcrodr(A, b, rtol=1e-16, maxiter=2000, full_output=True)
    assert info != 0 and not res.converged
    assert res.residual == pytest.approx(true_relative_residual(A, b, x), rel=1e-6)
    assert res.residual > 1e-16


@pytest.mark.parametrize("solver", [gcrodr, gmres])
def test_singular_inconsistent_system_is_breakdown(solver):
    """diag(0, 1, ..., 9) x = 1: the Krylov space becomes invariant without convergence."""
    A, b = np.diag(np.arange(10.0)), np.ones(10)
    x, info, res = solver(A, b, m=30, full_output=True)
    assert info == -1 and not res.converged
    assert res.residual == pytest.approx(np.sqrt(0.1))  # least-squares solution: only e_0 left
    x, info = solver(A, np.arange(10.0), m=30)  # consistent right-hand side
    assert info == 0 and np.allclose(A @ x, np.arange(10.0))


def test_result_record():
    A, b = make_case("spd")
    _, _, res = gmres(A, b, full_output=True)
    assert isinstance(res, SolveResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.info = 3
    d = res.as_dict()
    assert d["method"] == "gmres" and d["iterations"] == res.iterations and d["seconds"] >= 0
    assert len(gmres(A, b)) == 2


# --------------------------------------------------------------------------- recycling, by counts
PERTURBED = {
    "spd": (spd_matrix, dict(amp=0.52)),
    "indefinite": (indefinite_matrix, dict(amp=0.02)),
    "helmholtz": (helmholtz_matrix, dict(sigma=0.12)),
}


@pytest.mark.parametrize("case", list(PERTURBED))
def test_carried_space_needs_fewer_matvecs(case):
    """Solve A1, then a slightly perturbed A2 with the carried RecycleSpace: fewer
    products with A2 (counted by an instrumented operator) than a cold solve."""
    builder, perturbation = PERTURBED[case]
    A1, A2 = builder(), builder(**perturbation)
    b = rhs(A1.shape[0], np.iscomplexobj(A1.data))
    space = RecycleSpace()
    gcrodr(A1, b, recycle=space)
    assert space.dim == 20
    op_cold, op_carried = CountingOperator(A2), CountingOperator(A2)
    x_cold, _, cold = gcrodr(op_cold, b, full_output=True)
    x, info, carried = gcrodr(op_carried, b, recycle=space, full_output=True)
    assert info == 0
    assert_solved(A2, b, x, RTOL)
    assert carried.matvecs == op_carried.count and cold.matvecs == op_cold.count
    assert carried.matvecs < cold.matvecs
    assert space.last_result is carried


def test_gcrodr_needs_fewer_iterations_than_gmres():
    A, b = make_case("spd")
    _, _, rec = gcrodr(A, b, m=40, k=20, full_output=True)
    _, _, base = gmres(A, b, m=40, full_output=True)
    assert rec.iterations < base.iterations
    assert rec.converged and base.converged


def test_same_operator_skips_recompute():
    """With the very same A and M objects, C and W are reused: no k extra products.
    A copy of A (same values, different object) pays k matvecs; a new M object also
    k applications of M^{-1}."""
    A1, A2 = spd_matrix(), spd_matrix(amp=0.52)
    b = rhs(A1.shape[0])
    M = make_preconditioner("ilu", A1)  # one preconditioner object for the whole sequence
    space = RecycleSpace()
    gcrodr(A1, b, M=M, recycle=space)
    k = space.dim
    _, _, first = gcrodr(A2, b, M=M, recycle=space, full_output=True)
    assert first.matvecs == k + first.iterations + 1 and first.setup_seconds > 0
    assert first.precond_applies == first.iterations  # same M object: W = M^{-1} U still valid
    b2 = rhs(A1.shape[0], seed=5)
    x, _, same = gcrodr(A2, b2, M=M, recycle=space, full_output=True)
    assert_solved(A2, b2, x, RTOL)
    assert same.matvecs == same.iterations + 1 and same.setup_seconds == 0.0
    assert same.precond_applies == same.iterations
    k = space.dim
    _, _, copy = gcrodr(A2.copy(), b2, M=M, recycle=space, full_output=True)
    assert copy.matvecs == k + copy.iterations + 1
    M2 = make_preconditioner("ilu", A2)  # a new M: W = M^{-1} U is recomputed as well
    k = space.dim
    _, _, new_m = gcrodr(A2, b2, M=M2, recycle=space, full_output=True)
    assert new_m.matvecs == k + new_m.iterations + 1
    assert new_m.precond_applies == k + new_m.iterations


@pytest.mark.parametrize("case", ["upwind", "helmholtz"])
def test_recycle_space_invariants(case):
    """C = A W, C^H C = I, W = M^{-1} U after a solve (real and complex)."""
    A, b = make_case(case)
    M = make_preconditioner("jacobi", A)
    space = RecycleSpace()
    gcrodr(A, b, M=M, m=30, k=10, recycle=space)
    U, W, C = space.U, space.W, space.C
    assert space.dim == 10 and U.shape == (A.shape[0], 10)
    assert space.A is A and space.M is M
    assert np.allclose(C.conj().T @ C, np.eye(10), atol=1e-10)
    assert np.linalg.norm(A @ W - C) <= 1e-10 * np.linalg.norm(C)
    assert np.allclose(W, np.column_stack([M(u) for u in U.T]))
    if case == "upwind":
        assert U.dtype == np.float64  # real problems stay in real arithmetic
    space.clear()
    assert space.dim == 0 and space.U is None and space.A is None


def test_recycle_without_preconditioner_aliases_w():
    A, b = make_case("spd")
    space = RecycleSpace()
    gcrodr(A, b, recycle=space)
    assert space.W is not None and np.shares_memory(space.W, space.U)


# --------------------------------------------------------------------------- validation
def test_k_must_be_below_m():
    A, b = make_case("spd")
    with pytest.raises(ValueError, match=r"k must satisfy 0 <= k < m"):
        gcrodr(A, b, m=10, k=10)
    with pytest.raises(ValueError, match=r"k must satisfy 0 <= k < m"):
        gcrodr(A, b, m=10, k=-1)
    with pytest.raises(ValueError, match="m"):
        gmres(A, b, m=0)


def test_mismatched_recycle_dimension():
    A, b = make_case("spd")
    space = RecycleSpace()
    gcrodr(A, b, recycle=space)
    small = spd_matrix(24)
    with pytest.raises(ValueError, match="recycle"):
        gcrodr(small, rhs(small.shape[0]), recycle=space)


def test_complex_space_for_real_system_rejected():
    A, b = make_case("helmholtz")
    space = RecycleSpace()
    gcrodr(A, b, recycle=space)
    with pytest.raises(ValueError, match="complex"):
        gcrodr(spd_matrix(), rhs(A.shape[0]), recycle=space)


def test_unknown_preconditioner_lists_names():
    A, _ = make_case("spd")
    with pytest.raises(ValueError) as excinfo:
        make_preconditioner("ilu0", A)
    for name in ["none", "jacobi", "ilu", "amg"]:
        assert name in str(excinfo.value)
    assert list(PRECONDITIONERS) == ["none", "jacobi", "ilu", "amg"]
    assert make_preconditioner("none", A) is None


def test_preconditioner_object():
    A, b = make_case("spd")
    M = make_preconditioner("ilu", A, drop_tol=1e-2, fill_factor=2)
    assert isinstance(M, Preconditioner) and M.name == "ilu" and M.shape == A.shape
    assert M.setup_seconds >= 0 and M.applies == 0
    op = M.as_linear_operator()
    assert np.allclose(op @ b, M.apply(b))
    x, info = gmres(A, b, M=op)  # as a plain LinearOperator
    assert info == 0
    assert_solved(A, b, x, RTOL)


@pytest.mark.parametrize("case", ["spd", "upwind", "helmholtz"])
def test_amg_preconditioner(case):
    A, b = make_case(case)
    M = make_preconditioner("amg", A)
    x, info, res = gcrodr(A, b, M=M, full_output=True)
    assert info == 0
    assert_solved(A, b, x, RTOL)

"""Tests for pdeforge.solvers.krylov.direct: SuperLU factorisations, orderings, dense fallback."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pdeforge.solvers.krylov import SolveResult, direct_solve, factorize
from pdeforge.solvers.krylov.direct import COLUMN_ORDERINGS, DENSE_MAX_N
from tests.helpers import assert_solved
from tests.solvers.test_krylov import CASES, make_case, rhs, spd_matrix, upwind_matrix

TIGHT = 1e-12


@pytest.mark.parametrize("ordering", COLUMN_ORDERINGS)
@pytest.mark.parametrize("case", list(CASES))
def test_orderings_all_correct(case, ordering):
    A, b = make_case(case)
    F = factorize(A, ordering=ordering)
    assert F.n == A.shape[0] > DENSE_MAX_N
    assert F.ordering == ("MMD_AT_PLUS_A" if ordering == "auto" else ordering)
    assert_solved(A, b, F.solve(b), TIGHT)


def test_factorization_reused_for_block_of_rhs():
    A = spd_matrix()
    F = factorize(A)
    B = np.column_stack([rhs(A.shape[0], seed=s) for s in range(4)])
    X = F.solve(B)
    assert X.shape == B.shape
    for j in range(B.shape[1]):
        assert_solved(A, B[:, j], X[:, j], TIGHT)
    assert np.allclose(F.solve(B[:, 2]), X[:, 2], rtol=1e-13, atol=0)
    assert F.factor_seconds > 0 and F.nnz_factors > A.nnz


def test_real_factor_complex_rhs():
    A = upwind_matrix()
    F = factorize(A)
    b = rhs(A.shape[0], complex_=True)
    assert_solved(A, b, F.solve(b), TIGHT)
    B = np.column_stack([b, 2j * b])
    X = F.solve(B)
    assert X.dtype.kind == "c" and np.allclose(X[:, 1], 2j * X[:, 0])


def test_structurally_nonsymmetric_uses_colamd():
    A = upwind_matrix().tolil()
    A[0, 40] = 0.5  # breaks the symmetry of the pattern
    A = A.tocsr()
    F = factorize(A)
    assert F.ordering == "COLAMD"
    b = rhs(A.shape[0])
    assert_solved(A, b, F.solve(b), TIGHT)


@pytest.mark.parametrize("complex_", [False, True])
def test_dense_fallback(complex_):
    A = spd_matrix(8)  # n = 64 <= DENSE_MAX_N
    if complex_:
        A = (A + 1j * sp.identity(64)).tocsr()
    F = factorize(A)
    assert F.ordering == "dense" and F.nnz_factors == 64 * 64
    b = rhs(64, complex_=True, seed=2)
    assert_solved(A, b, F.solve(b), TIGHT)
    B = np.column_stack([b, b.conj()])
    assert_solved(A, B[:, 1], F.solve(B)[:, 1], TIGHT)
    F_dense = factorize(A.toarray())
    assert F_dense.ordering == "dense"


def test_direct_solve_record():
    A, b = make_case("helmholtz")
    x, info, res = direct_solve(A, b, full_output=True)
    assert info == 0 and isinstance(res, SolveResult)
    assert_solved(A, b, x, TIGHT)
    assert (res.method, res.iterations, res.matvecs, res.converged) == ("direct", 0, 1, True)
    assert res.residual <= TIGHT and res.setup_seconds > 0
    assert len(direct_solve(A, b)) == 2


def test_direct_solve_zero_rhs_and_singular():
    A, b = make_case("spd")
    x, info, res = direct_solve(A, np.zeros_like(b), full_output=True)
    assert info == 0 and not np.any(x) and res.residual == 0.0
    S = A.tolil()
    S[5, :] = 0.0
    x, info, res = direct_solve(S.tocsr(), b, full_output=True)
    assert info == -1 and not res.converged and "breakdown" in res.message


def test_unknown_ordering_lists_names():
    A, _ = make_case("spd")
    with pytest.raises(ValueError) as excinfo:
        factorize(A, ordering="AMD")
    for name in COLUMN_ORDERINGS:
        assert name in str(excinfo.value)

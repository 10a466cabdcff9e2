"""Shared invariant checkers for the test-suite."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def true_relative_residual(A, b, x) -> float:
    """||b - A x|| / ||b||, recomputed from scratch."""
    b = np.asarray(b)
    return float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


def assert_solved(A, b, x, rtol: float, *, reference=None, err_factor: float | None = None) -> None:
    """Assert that ``x`` solves ``A x = b`` to ``rtol`` in the true residual.

    With ``reference`` (or always, via a SuperLU solve) also check agreement with a
    direct solution: ||x - x_ref|| / ||x_ref|| <= err_factor * rtol, where the default
    factor allows for the conditioning of discretised PDE operators.
    """
    res = true_relative_residual(A, b, x)
    assert np.isfinite(res) and res <= rtol * (1 + 1e-6), f"true residual {res:.3e} > rtol {rtol:.1e}"
    if reference is None:
        reference = spla.spsolve(sp.csc_matrix(A), b)
    err = np.linalg.norm(x - reference) / np.linalg.norm(reference)
    factor = 1e4 if err_factor is None else err_factor
    assert err <= factor * rtol, f"error vs direct solve {err:.3e} > {factor:g} * rtol"

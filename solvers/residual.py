r"""The one home of the true residual and the tolerance rule.

Every solve in :mod:`solvers` is judged by the *true* residual of the iterate it
returns, recomputed from ``A``, ``b`` and ``x``,

.. math::  \rho(x) = \lVert b - A x\rVert_2 / \lVert b\rVert_2
           \quad(\lVert b - Ax\rVert_2 \text{ when } b = 0),

and it meets the tolerance when :math:`\lVert b - A x\rVert_2 \le
\max(\mathrm{rtol}\,\lVert b\rVert_2,\ \mathrm{atol})` -- SciPy's convention
(``atol`` is absolute).
"""

from __future__ import annotations

import numpy as np

#: a residual check that does not at least halve the residual of the previous check counts
#: as stagnation (GCRO-DR's restart from the true residual, mixed-precision refinement)
STAGNATION_FACTOR = 0.5


def tolerance(b_norm: float, rtol: float, atol: float = 0.0) -> float:
    """The absolute residual bound ``max(rtol * ||b||, atol)``."""
    return max(rtol * b_norm, atol)


def residual_norms(A, b, x) -> tuple[float, float]:
    """``(||b - A x||, ||b||)``, recomputed from scratch."""
    return float(np.linalg.norm(b - A @ x)), float(np.linalg.norm(b))


def true_residual(A, b, x) -> float:
    """``||b - A x|| / ||b||`` (``||b - A x||`` for ``b = 0``)."""
    r_norm, b_norm = residual_norms(A, b, x)
    return r_norm / b_norm if b_norm > 0 else r_norm


def relative(r_norm: float, b_norm: float) -> float:
    """``r_norm / b_norm`` (``r_norm`` itself for ``b = 0``)."""
    return r_norm / b_norm if b_norm > 0 else r_norm


def meets_tolerance(A, b, x, rtol: float, atol: float = 0.0) -> tuple[bool, float]:
    """``(converged, relative residual)`` of ``x`` by the true residual and :func:`tolerance`."""
    r_norm, b_norm = residual_norms(A, b, x)
    ok = bool(np.isfinite(r_norm) and r_norm <= tolerance(b_norm, rtol, atol))
    return ok, relative(r_norm, b_norm)

"""Moving a cell-centred grid function between resolutions (initial guesses across a paired dataset).

:func:`interpolate` is separable linear interpolation between cell centres
:math:`x_j = (j + 1/2)/n`, constant beyond the outermost centres: second-order accurate
inside, first-order in the half cell next to the boundary -- an initial guess, never a
stored value.
"""

from __future__ import annotations

import numpy as np

from .families.fv import cell_centres


def interpolate(u: np.ndarray, n: int) -> np.ndarray:
    """``u`` (cubic grid of m cells per axis, any dtype) on the grid of ``n`` cells per axis."""
    out = np.asarray(u)
    for axis in range(out.ndim):
        m = out.shape[axis]
        if m == n:
            continue
        src, dst = cell_centres(m), cell_centres(n)
        right = np.clip(np.searchsorted(src, dst), 1, m - 1)
        w = np.clip((dst - src[right - 1]) / (src[right] - src[right - 1]), 0.0, 1.0)
        shape = [1] * out.ndim
        shape[axis] = n
        w = w.reshape(shape)
        out = np.take(out, right - 1, axis=axis) * (1 - w) + np.take(out, right, axis=axis) * w
    return out

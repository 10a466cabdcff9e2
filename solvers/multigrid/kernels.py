"""``y += M x`` for CSR arrays through the compiled kernel behind SciPy's CSR products.

Shared by the structured cycle (:mod:`.hierarchy`) and the classical-AMG cycle
(:mod:`.algebraic`): the kernel writes into a preallocated ``y`` and skips SciPy's
Python-level checks; without it (a future SciPy) the public product is used.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

try:
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec
except ImportError:  # pragma: no cover - future SciPy
    _csr_matvec = None


def spmv_add(shape: tuple[int, int], csr: tuple, data: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """``y += M x`` for the CSR structure ``csr = (indptr, indices, ...)`` with values ``data``."""
    if _csr_matvec is not None:
        _csr_matvec(shape[0], shape[1], csr[0], csr[1], data, x, y)
    else:  # pragma: no cover
        y += sp.csr_matrix((data, csr[1], csr[0]), shape=shape) @ x


def csr_add(M: sp.csr_matrix, x: np.ndarray, y: np.ndarray) -> None:
    """``y += M x`` for a CSR matrix ``M``."""
    spmv_add(M.shape, (M.indptr, M.indices), M.data, x, y)

r"""``spectral``: exact fast solver for the constant-coefficient Dirichlet Laplacian.

The cell-centred finite-volume Laplacian with Dirichlet ghost faces (:mod:`pdeforge.solvers.families.fv`)
is diagonalised by the type-II discrete sine transform along every axis: the 1-D
eigenvectors are :math:`\sin(\pi k (i + 1/2)/n)`, :math:`k = 1..n` (odd about both
boundary faces, as the ghost values :math:`u_{-1} = -u_0` require) with eigenvalues
:math:`\lambda_k = (2 - 2\cos(\pi k / n))/h^2`, and the d-dimensional operator is their
Kronecker sum.  Hence :math:`u = S^{-1}\,(S b / \Lambda)` with :math:`S` the orthonormal
DST-II -- O(N log N) per sample, no factorization, block-friendly.

Needs a constant-coefficient Dirichlet Laplacian, A = c L (the capability
``laplacian_scale = c``): ``poisson``, and ``darcy`` with a constant coefficient.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.fft as sfft

from ..capabilities import LAPLACIAN
from .base import BlockSolves, Engine, block_results
from .registry import register


@register
class SpectralEngine(BlockSolves, Engine):
    name = "spectral"
    requires = (LAPLACIAN,)
    exact = True

    def __init__(self, options, family=None, spec=None, **kwargs) -> None:
        super().__init__(options, family, spec, **kwargs)
        if self.caps is None:
            raise ValueError("engine 'spectral' needs the family and spec (the grid and the Laplacian's scale)")
        scale = self.caps.laplacian_scale
        n, d = spec.n, spec.dim
        k = np.arange(1, n + 1)
        lam1 = scale * (2.0 - 2.0 * np.cos(np.pi * k / n)) * n * n
        self.eigenvalues = sum(np.meshgrid(*([lam1] * d), indexing="ij", sparse=True))
        self.shape = spec.shape

    def solve_block(self, A, B):
        t0 = time.perf_counter()
        S = B.shape[1]
        axes = tuple(range(1, len(self.shape) + 1))
        cube = B.T.reshape(S, *self.shape)
        hat = sfft.dstn(cube, type=2, axes=axes, norm="ortho") / self.eigenvalues
        X = sfft.idstn(hat, type=2, axes=axes, norm="ortho").reshape(S, -1).T
        self.counters["transforms"] += S
        X = np.ascontiguousarray(X)
        return X, block_results(self.name, A, B, X, time.perf_counter() - t0,
                                "DST-II diagonalisation of the Dirichlet Laplacian")

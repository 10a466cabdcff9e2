r"""``spectral``: exact fast solver for constant-coefficient operators :math:`A = sI + cL`.

The cell-centred finite-volume Laplacian :math:`L` (:mod:`pdeforge.solvers.families.fv`) is
diagonalised along every axis by a type-II trigonometric transform:

* Dirichlet ghost faces (:math:`u_{-1} = -u_0`): the DST-II, eigenvectors
  :math:`\sin(\pi k (i + 1/2)/n)`, :math:`k = 1..n`;
* zero-flux faces: the DCT-II, eigenvectors :math:`\cos(\pi k (i + 1/2)/n)`, :math:`k = 0..n-1`;

with eigenvalues :math:`\lambda_k = (2 - 2\cos(\pi k / n))/h^2`; the d-dimensional operator
is their Kronecker sum.  Hence :math:`u = T^{-1}\,(T b / (s + c\Lambda))` with :math:`T` the
orthonormal transform -- O(N log N) per right-hand side, no factorization.  ``s`` and ``c``
are read off the matrix itself (and the whole matrix checked against :math:`sI + cL`), so
one engine serves the steady Laplacian (:math:`s = 0`), a constant-coefficient Darcy
operator and the implicit time steps :math:`I + \theta\Delta t\,cL` alike.

Needs the capability ``constant_laplacian`` (``poisson``, ``darcy``/``heat`` with a constant
coefficient, zero-flux reaction--diffusion).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.fft as sfft
import scipy.sparse as sp

from ..capabilities import LAPLACIAN
from ..families.fv import diffusion
from .base import BlockSolves, Engine, block_results
from .registry import register

_MATCH_RTOL = 1e-12


@register
class SpectralEngine(BlockSolves, Engine):
    name = "spectral"
    requires = (LAPLACIAN,)
    exact = True

    def __init__(self, options, family=None, spec=None, **kwargs) -> None:
        super().__init__(options, family, spec, **kwargs)
        if self.caps is None:
            raise ValueError("engine 'spectral' needs the family and spec (the grid and the boundary faces)")
        self.shape, self.dirichlet = spec.shape, self.caps.constant_laplacian == "dirichlet"
        n = spec.n
        k = np.arange(1, n + 1) if self.dirichlet else np.arange(n)
        lam1 = (2.0 - 2.0 * np.cos(np.pi * k / n)) * n * n
        self.laplacian_eigenvalues = sum(np.meshgrid(*([lam1] * spec.dim), indexing="ij", sparse=True))
        self.L = diffusion(np.ones(spec.shape), spec.h, dirichlet=self.dirichlet).tocsr()
        self._A = self._eigenvalues = None

    def _eigenvalues_of(self, A) -> list[np.ndarray]:
        """Eigenvalues s + c_i lambda of each diagonal block of ``A`` (several species stacked), with
        (s, c_i) read off ``A`` and ``A == blockdiag(s I + c_i L)`` checked."""
        if A is self._A:
            return self._eigenvalues
        original, A, L = A, sp.csr_matrix(A), self.L
        N = L.shape[0]
        if A.shape[0] % N:
            raise ValueError(f"engine 'spectral' got a {A.shape[0]}-row matrix for a grid of {N} cells")
        blocks, expected = [], []
        for i in range(A.shape[0] // N):
            o = i * N
            c = A[o, o + 1] / L[0, 1] if N > 1 else A[o, o] / L[0, 0]
            s = A[o, o] - c * L[0, 0]
            if c <= 0 or s < 0:
                raise ValueError("engine 'spectral' got a matrix that is not s I + c L with c > 0, s >= 0")
            blocks.append(s + c * self.laplacian_eigenvalues)
            expected.append((sp.identity(N, format="csr") * s + L * c).tocsr())
        if abs(A - sp.block_diag(expected, format="csr")).max() > _MATCH_RTOL * abs(A).max():
            raise ValueError("engine 'spectral' got a matrix that is not s I + c L (constant coefficients)")
        if any(np.min(np.abs(lam)) == 0 for lam in blocks):
            raise ValueError("engine 'spectral': the operator is singular (zero-flux Laplacian without a shift)")
        self._A, self._eigenvalues = original, blocks
        self.counters["diagonalisations"] += 1
        return blocks

    def solve_block(self, A, B):
        t0 = time.perf_counter()
        blocks = self._eigenvalues_of(A)
        S, N = B.shape[1], self.L.shape[0]
        axes = tuple(range(1, len(self.shape) + 1))
        forward, inverse = (sfft.dstn, sfft.idstn) if self.dirichlet else (sfft.dctn, sfft.idctn)
        X = np.empty(B.shape, dtype=np.result_type(B, np.float64))
        for i, lam in enumerate(blocks):
            cube = B[i * N:(i + 1) * N].T.reshape(S, *self.shape)
            hat = forward(cube, type=2, axes=axes, norm="ortho") / lam
            X[i * N:(i + 1) * N] = inverse(hat, type=2, axes=axes, norm="ortho").reshape(S, -1).T
        self.counters["transforms"] += S
        kind = "DST-II (Dirichlet)" if self.dirichlet else "DCT-II (zero-flux)"
        return X, block_results(self.name, A, B, X, time.perf_counter() - t0, f"{kind} diagonalisation of s I + c L")

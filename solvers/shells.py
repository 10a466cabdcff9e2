r"""Resolution-consistent Gaussian random fields (sampling version 2): one continuum field per sample.

Sample ``i`` of seed ``s`` defines the field

.. math::  g(x) = \operatorname{Re} \sum_{k \in \mathbb Z^d} \sqrt{\lambda_k}\, \xi_k\, e^{2\pi i k\cdot x},
           \qquad \sqrt{\lambda_k} = \sqrt2\,\sigma\,(4\pi^2|k|^2 + \tau^2)^{-\alpha/2},\ \lambda_0 = 0,

whatever the grid: the standard complex normals :math:`\xi_k` are drawn from the one
generator ``default_rng([s, i, stream, 2])`` **shell by shell** -- all :math:`k` with
:math:`\max_j |k_j| = 0`, then 1, 2, ... (lexicographic within a shell) -- so the
coefficients of shells :math:`0..K` are a prefix of the stream and do not depend on how
many shells a grid needs.

A grid of ``n`` cells per axis holds the truncation :math:`g_n` to
:math:`\max_j|k_j| \le K_n = \lfloor (n-1)/2 \rfloor` (every mode it resolves without
aliasing; the Nyquist mode of an even grid is left out, as its cosine and sine cannot be
told apart at cell centres) and stores the **point values of** :math:`g_n` **at the cell
centres** :math:`x_j = (j + 1/2)/n` (a half-cell phase :math:`e^{\pi i k/n}` per axis; the
finite-volume schemes treat a cell value as its centre value, second-order accurate like a
cell average).  So the field at ``n`` is exactly the Fourier truncation of the field at
``2n``, evaluated at the coarse centres.  With a ``band`` :math:`B` only
:math:`\max_j|k_j| < B` are kept: every grid with :math:`n \ge 2B` holds the identical
function.  Vertex grids (a stream function) and periodic grids evaluate the same
:math:`g_n` at :math:`x_j = j/n`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

#: shells 0..K of the low-pass block used as ordering features (per dimension)
FEATURE_SHELLS = {1: 8, 2: 4, 3: 2}
#: where a grid-independent pointwise scale is needed, the field truncated to these shells stands for g
REFERENCE_SHELLS = {1: 4096, 2: 256, 3: 48}
#: the ``part`` of :func:`pdeforge.solvers.fields.sample_rng` that holds the shell-ordered draws
PART = 2
#: where the field is evaluated: cell centres, vertices (n + 1 points, x = j/n), periodic points (n, x = j/n)
LOCATIONS = ("cells", "vertices", "periodic")


def shells(n: int, band: int | None = None) -> int:
    """K: the largest shell a grid of ``n`` cells holds (and ``band - 1`` at most)."""
    K = (n - 1) // 2
    return K if band is None else min(K, band - 1)


@lru_cache(maxsize=16)
def draw_order(dim: int, K: int) -> np.ndarray:
    """Flat (lexicographic, C-order) positions in the cube {-K..K}^dim of the 1st, 2nd, ... draw."""
    a = np.abs(np.arange(-K, K + 1)).astype(np.int16)
    shell = a
    for _ in range(dim - 1):
        shell = np.maximum.outer(shell, a)
    order = np.argsort(shell.ravel(), kind="stable")  # shell by shell, lexicographic within a shell
    order.setflags(write=False)
    return order


def normals(rng: np.random.Generator, dim: int, K: int) -> np.ndarray:
    r""":math:`\xi_k` on the cube {-K..K}^dim (C-order), from the first (2K+1)^dim draws of ``rng``."""
    M = (2 * K + 1) ** dim
    z = rng.standard_normal(2 * M).view(np.complex128)  # (re, im) pairs: a prefix for fewer shells
    cube = np.empty(M, np.complex128)
    cube[draw_order(dim, K)] = z
    return cube.reshape((2 * K + 1,) * dim)


@lru_cache(maxsize=32)
def root_spectrum(dim: int, K: int, alpha: float, tau: float, sigma: float) -> np.ndarray:
    r""":math:`\sqrt{\lambda_k}` on the cube {-K..K}^dim (read-only)."""
    k = np.arange(-K, K + 1, dtype=float)
    k2 = sum(np.meshgrid(*([k * k] * dim), indexing="ij", sparse=True))
    root = math.sqrt(2.0) * sigma * (4 * math.pi**2 * k2 + tau**2) ** (-alpha / 2)
    root[(K,) * dim] = 0.0
    root.setflags(write=False)
    return root


def evaluate(coefficients: np.ndarray, n: int, at: str = "cells") -> np.ndarray:
    r"""Real part of :math:`\sum_k c_k e^{2\pi i k\cdot x}` (``c`` on the cube {-K..K}^d, K < n/2) at the
    points of a grid of ``n`` cells: ``at`` = ``cells`` ((j + 1/2)/n), ``vertices`` (j/n, j = 0..n) or
    ``periodic`` (j/n, j < n)."""
    dim, K = coefficients.ndim, (coefficients.shape[0] - 1) // 2
    if 2 * K >= n:
        raise ValueError(f"{2 * K + 1} modes per axis do not fit a grid of n={n}")
    k = np.arange(-K, K + 1)
    c = coefficients
    if at == "cells":
        phase = np.exp(1j * np.pi * k / n)
        for axis in range(dim):
            c = c * phase.reshape([-1 if a == axis else 1 for a in range(dim)])
    full = np.zeros((n,) * dim, np.complex128)
    full[np.ix_(*([k % n] * dim))] = c
    g = np.fft.ifftn(full, norm="forward").real
    if at == "vertices":
        g = np.pad(g, [(0, 1)] * dim, mode="wrap")
    return np.ascontiguousarray(g)


def field(rng: np.random.Generator, dim: int, n: int, root: np.ndarray, at: str = "cells") -> np.ndarray:
    """The realisation of ``rng`` on a grid of ``n`` cells, given sqrt(lambda) on its cube."""
    K = (root.shape[0] - 1) // 2
    return evaluate(root * normals(rng, dim, K), n, at)


def low_features(rng: np.random.Generator, dim: int, root: np.ndarray) -> np.ndarray:
    r"""The exact Fourier coefficients :math:`\hat g_k = \sqrt{\lambda_k}(\xi_k + \bar\xi_{-k})/2` of
    :math:`g` for :math:`k > 0` (lexicographically) in the cube of ``root``, as
    :math:`\sqrt2(\operatorname{Re}, \operatorname{Im})`: feature distances are low-pass L2 distances."""
    K = (root.shape[0] - 1) // 2
    xi = normals(rng, dim, K).ravel()
    M = xi.size
    pos = np.arange((M + 1) // 2, M)  # k > 0: after the centre in C-order; -k sits at M - 1 - pos
    ghat = root.ravel()[pos] * (xi[pos] + np.conj(xi[M - 1 - pos])) / 2
    return math.sqrt(2.0) * np.concatenate([ghat.real, ghat.imag])

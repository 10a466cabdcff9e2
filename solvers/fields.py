r"""Gaussian random fields, coefficient maps, Chebyshev series and ordering features.

Gaussian random field (FNO convention). On the periodic grid with ``n`` points per
axis of the unit cell, with integer wave vectors :math:`k`,

.. math::  g(x) = \operatorname{Re} \sum_k \sqrt{\lambda_k}\, \xi_k\, e^{2\pi i k\cdot x},
           \qquad \sqrt{\lambda_k} = \sqrt2\,\sigma\,(4\pi^2|k|^2 + \tau^2)^{-\alpha/2},
           \quad \lambda_0 = 0,

with :math:`\xi_k` i.i.d. standard complex normal (real and imaginary parts
N(0, 1)) and :math:`\sigma = \tau^{\alpha - d/2}` by default, i.e. covariance
:math:`\propto (-\Delta + \tau^2)^{-\alpha}` (Li et al., FNO, 2021).

Reproducibility: sample ``i`` of a dataset with seed ``s`` uses only the generators
``default_rng([s, i, stream, part])``, so it is a pure function of ``(s, i)`` whatever
process computes it and in whatever order.

Two **sampling versions** map those draws to a grid.  Version 2 (the default, see
:mod:`pdeforge.solvers.shells`) draws the Fourier coefficients shell by shell, so sample
``i`` is one continuum field and the grid of ``n`` cells holds its truncation, evaluated
at the cell centres: the same instance at every resolution.  Version 1 (pdeforge 0.1)
draws a fresh spectrum per grid, the FFT grid's points standing for the cells, with only
the low block shared between grids; it stays available so that older datasets can be
regenerated bit for bit.  In version 1 the low-frequency block
:math:`|k_j| \le K` is drawn from its own generator (``part = 0``) and the rest of
the spectrum from another (``part = 1``); the ordering features -- the exact
Fourier coefficients of ``g`` on the low block -- therefore cost O(K^d) per sample
and never materialise a field.  By Parseval, the Euclidean distance between two
samples' features equals the :math:`L^2` distance of their low-pass parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.polynomial import chebyshev as cheb

from . import shells
from .params import param, validate

#: Low-mode cut-off K per dimension (part of the sampling definition: do not change).
LOW_MODES = {1: 8, 2: 4, 3: 2}
#: sampling versions (see the module docstring); new datasets use the last
SAMPLING_VERSIONS = (1, 2)
SAMPLING = SAMPLING_VERSIONS[-1]


def sample_rng(seed: int, index: int, stream: int, part: int = 0) -> np.random.Generator:
    """The generator for (dataset seed, sample index, named stream, part)."""
    return np.random.default_rng([int(seed), int(index), int(stream), int(part)])


@dataclass(frozen=True)
class GRFSpec:
    """Gaussian random field with covariance sigma^2 (-Laplacian + tau^2)^(-alpha)."""

    alpha: float = param(2.0, gt=0.5, le=10.0, doc="smoothness exponent (must exceed dim/2)")
    tau: float = param(3.0, gt=0.0, le=100.0, doc="inverse length scale")
    sigma: float | None = param(None, gt=0.0, le=1e6, doc="amplitude; default tau**(alpha - dim/2)")
    band: int | None = param(None, ge=1, le=512, doc="keep only Fourier modes with max_j |k_j| < band: every grid "
                                                     "with n >= 2 band holds the identical field (sampling 2)")

    def __post_init__(self) -> None:
        validate(self)

    def amplitude(self, dim: int) -> float:
        return self.sigma if self.sigma is not None else self.tau ** (self.alpha - dim / 2)

    def root(self, dim: int, n: int) -> np.ndarray:
        """sqrt(lambda_k) on the shells a grid of ``n`` cells holds (sampling 2)."""
        return shells.root_spectrum(dim, shells.shells(n, self.band), self.alpha, self.tau, self.amplitude(dim))


def low_mode_count(n: int, dim: int) -> int:
    """Cut-off K used for grid size n (the low block must not alias on the grid)."""
    return min(LOW_MODES[dim], (n - 1) // 2)


@lru_cache(maxsize=32)
def _sqrt_spectrum(shape: tuple[int, ...], alpha: float, tau: float, sigma: float) -> np.ndarray:
    ks = np.meshgrid(*[np.fft.fftfreq(n, 1.0 / n) for n in shape], indexing="ij", sparse=True)
    k2 = sum(k.astype(float) ** 2 for k in ks)
    root = math.sqrt(2.0) * sigma * (4 * math.pi**2 * k2 + tau**2) ** (-alpha / 2)
    root[(0,) * len(shape)] = 0.0
    root.setflags(write=False)
    return root


def sqrt_spectrum(spec: GRFSpec, shape: tuple[int, ...]) -> np.ndarray:
    """sqrt(lambda_k) on the FFT grid of ``shape`` (read-only, cached)."""
    return _sqrt_spectrum(tuple(shape), spec.alpha, spec.tau, spec.amplitude(len(shape)))


def pointwise_std(spec: GRFSpec, shape: tuple[int, ...], sampling: int = SAMPLING) -> float:
    """Pointwise standard deviation of g: Var g = (1/2) sum_k lambda_k E|xi_k|^2 = sum_k lambda_k, over the
    modes of the grid (sampling 1) or of the field itself (sampling 2: the same on every grid; the sum is
    taken to ``shells.REFERENCE_SHELLS``, or to the band)."""
    if sampling == 1:
        return float(np.sqrt(np.sum(sqrt_spectrum(spec, shape) ** 2)))
    dim = len(shape)
    K = shells.REFERENCE_SHELLS[dim] if spec.band is None else spec.band - 1
    return float(np.sqrt(np.sum(spec.root(dim, 2 * K + 1) ** 2)))


def _low_index(shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Open-mesh FFT indices of the low block |k_j| <= K (same K on every axis)."""
    K = min(low_mode_count(n, len(shape)) for n in shape)
    idx = [np.r_[0 : K + 1, n - K : n] for n in shape]
    return np.ix_(*idx)


def _draw_low(rng: np.random.Generator, count: int) -> np.ndarray:
    z = rng.standard_normal((2, count))
    return z[0] + 1j * z[1]


def sample_grf(spec: GRFSpec, shape: tuple[int, ...], seed: int, index: int, stream: int, *,
               sampling: int = SAMPLING, at: str = "cells") -> np.ndarray:
    """One GRF realisation on ``shape`` for (seed, index, stream); float64 array.

    Sampling 2: ``at`` says where ``shape``'s points are -- ``cells`` (n per axis, centres),
    ``vertices`` (n + 1 per axis) or ``periodic`` (n per axis, x = j/n).  Sampling 1 fills
    ``shape`` as one FFT grid whatever ``at`` says (its original definition)."""
    shape = tuple(shape)
    if sampling != 1:
        n = shape[0] - 1 if at == "vertices" else shape[0]
        return shells.field(sample_rng(seed, index, stream, shells.PART), len(shape), n, spec.root(len(shape), n), at)
    z = sample_rng(seed, index, stream, 1).standard_normal((2, *shape))
    xi = z[0] + 1j * z[1]
    low = _low_index(shape)
    block = xi[low].shape
    xi[low] = _draw_low(sample_rng(seed, index, stream, 0), int(np.prod(block))).reshape(block)
    g = np.fft.ifftn(sqrt_spectrum(spec, shape) * xi, norm="forward")
    return np.ascontiguousarray(g.real)


@lru_cache(maxsize=32)
def _feature_layout(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Flat positions (in the low block) of the half-space k > 0 and of their mirrors -k."""
    low = _low_index(shape)
    block = tuple(len(ix.ravel()) for ix in low)
    freqs = [np.fft.fftfreq(n, 1.0 / n)[ix.ravel()].astype(int) for n, ix in zip(shape, low)]
    K = np.stack(np.meshgrid(*freqs, indexing="ij"), axis=-1).reshape(-1, len(shape))
    lookup = {tuple(k): i for i, k in enumerate(K)}
    positive = [i for i, k in enumerate(K) if tuple(k) > (0,) * len(shape)]
    mirror = [lookup[tuple(-K[i])] for i in positive]
    return np.array(positive), np.array(mirror), block


def _feature_root(spec: GRFSpec, shape: tuple[int, ...]) -> np.ndarray:
    """sqrt(lambda) on the feature shells (sampling 2): the same for every grid of at least 10 cells."""
    dim = len(shape)
    K = min(shells.FEATURE_SHELLS[dim], shells.shells(shape[0], spec.band))
    return spec.root(dim, 2 * K + 1)


def grf_features(spec: GRFSpec, shape: tuple[int, ...], seed: int, indices, stream: int, *,
                 sampling: int = SAMPLING) -> np.ndarray:
    r"""Low-mode Fourier coefficients of g for each sample, as real features (N, p).

    :math:`\hat g_k = \sqrt{\lambda_k}(\xi_k + \bar\xi_{-k})/2` for :math:`0 < k` in the
    low block, stored as :math:`\sqrt2(\operatorname{Re}\hat g_k, \operatorname{Im}\hat g_k)`,
    so that feature distances equal low-pass :math:`L^2` distances.
    """
    shape = tuple(shape)
    if sampling != 1:
        root = _feature_root(spec, shape)
        rows = [shells.low_features(sample_rng(seed, i, stream, shells.PART), len(shape), root) for i in indices]
        return np.array(rows).reshape(len(indices), -1)
    pos, mir, block = _feature_layout(shape)
    root = sqrt_spectrum(spec, shape)[_low_index(shape)].ravel()
    count = int(np.prod(block))
    out = np.empty((len(indices), 2 * len(pos)))
    for row, i in enumerate(indices):
        xi = _draw_low(sample_rng(seed, i, stream, 0), count)
        ghat = root[pos] * (xi[pos] + np.conj(xi[mir])) / 2
        out[row, : len(pos)] = ghat.real
        out[row, len(pos) :] = ghat.imag
    return out * math.sqrt(2.0)


def grf_feature_scale(spec: GRFSpec, shape: tuple[int, ...], *, sampling: int = SAMPLING) -> float:
    """RMS norm of :func:`grf_features` rows: sqrt(E||feat||^2) = sqrt(sum_low lambda_k)."""
    if sampling != 1:
        return float(np.sqrt(np.sum(_feature_root(spec, tuple(shape)) ** 2)))
    root = sqrt_spectrum(spec, tuple(shape))[_low_index(tuple(shape))]
    return float(np.sqrt(np.sum(root**2)))


# ---------------------------------------------------------------------------
# Coefficient maps
# ---------------------------------------------------------------------------

COEFFICIENT_KINDS = ("lognormal", "threshold", "constant")


@dataclass(frozen=True)
class CoefficientSpec:
    """A positive coefficient field a(x) built from a GRF g.

    ``lognormal``: a = exp(scale * g); ``threshold``: a = high where g >= 0 else low
    (FNO Darcy: 12 / 3 with alpha = 2, tau = 3); ``constant``: a = value.
    """

    kind: str = param("threshold", choices=COEFFICIENT_KINDS, doc="how a(x) is built from the GRF")
    grf: GRFSpec = param(GRFSpec(), doc="the underlying Gaussian random field")
    scale: float = param(1.0, gt=0.0, le=10.0, doc="lognormal: a = exp(scale * g)")
    high: float = param(12.0, gt=0.0, le=1e6, doc="threshold: value where g >= 0")
    low: float = param(3.0, gt=0.0, le=1e6, doc="threshold: value where g < 0")
    value: float = param(1.0, gt=0.0, le=1e6, doc="constant: a = value")

    def __post_init__(self) -> None:
        validate(self)

    @property
    def random(self) -> bool:
        return self.kind != "constant"

    def from_grf(self, g: np.ndarray) -> np.ndarray:
        if self.kind == "lognormal":
            return np.exp(self.scale * g)
        if self.kind == "threshold":
            return np.where(g >= 0, self.high, self.low)
        return np.full(g.shape, self.value)

    def sample(self, shape: tuple[int, ...], seed: int, index: int, stream: int, *,
               sampling: int = SAMPLING) -> np.ndarray:
        if not self.random:
            return np.full(tuple(shape), self.value)
        return self.from_grf(sample_grf(self.grf, shape, seed, index, stream, sampling=sampling))


# ---------------------------------------------------------------------------
# Chebyshev series (SKR's Poisson set)
# ---------------------------------------------------------------------------


def chebyshev_coefficients(degree: int, dim: int, scale: float, seed: int, index: int, stream: int) -> np.ndarray:
    """Coefficients c_alpha ~ scale * U[-1, 1] of a tensor Chebyshev series, shape (degree+1,)*dim."""
    rng = sample_rng(seed, index, stream, 0)
    return scale * rng.uniform(-1.0, 1.0, size=(degree + 1,) * dim)


def chebyshev_eval(coeffs: np.ndarray, points: np.ndarray) -> np.ndarray:
    r"""Evaluate :math:`\sum_\alpha c_\alpha \prod_j T_{\alpha_j}(2 x_j - 1)` at ``points`` (..., d)."""
    t = 2.0 * np.asarray(points) - 1.0
    val = {1: cheb.chebval, 2: cheb.chebval2d, 3: cheb.chebval3d}[coeffs.ndim]
    args = [t[..., j] for j in range(coeffs.ndim)]
    return val(*args, coeffs) if coeffs.ndim > 1 else val(args[0], coeffs)


def chebyshev_grid(coeffs: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Evaluate the series on the tensor grid ``centres`` (1-D cell centres, same on each axis)."""
    t = 2.0 * centres - 1.0
    grid = {1: cheb.chebval, 2: cheb.chebgrid2d, 3: cheb.chebgrid3d}[coeffs.ndim]
    return grid(*([t] * coeffs.ndim), coeffs)

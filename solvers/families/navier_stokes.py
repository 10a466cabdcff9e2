r"""2-D incompressible Navier--Stokes in vorticity form on the periodic unit torus (FNO's setting),
pseudo-spectral (no linear system).

.. math::  \omega_t + \mathbf u\cdot\nabla\omega = \nu\Delta\omega + f, \qquad
           \mathbf u = (\partial_y\psi, -\partial_x\psi), \quad -\Delta\psi = \omega,

with :math:`f = A(\sin 2\pi(x+y) + \cos 2\pi(x+y))` (FNO: A = 0.1) and the initial vorticity a
GRF, by default FNO's :math:`N(0, 7^{3/2}(-\Delta + 49 I)^{-2.5})` (amplitude as in FNO's
code), at the periodic points :math:`x_j = j/n`.  ν is a spec constant (FNO: 1e-3, 1e-4, 1e-5).

There is **no linear system**: the stream function and the viscous step are diagonal in
Fourier space, so this family has its own stepper (engine ``pseudo_spectral``; the
``spectral`` engine is a Dirichlet sine-transform solve and does not apply).  Discretisation
(:mod:`pdeforge.solvers.families.pseudospectral`): Fourier pseudo-spectral with 2/3
de-aliasing; viscosity implicit (Crank--Nicolson by default, as FNO's generator), advection
and forcing explicit (AB2).  Stored: channel w0 of x; y the vorticity frames (T, 1, n, n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..capabilities import Capabilities, MatrixClass
from ..fields import GRFSpec, grf_feature_scale, grf_features, sample_grf
from ..params import fail, param
from ..shells import REFERENCE_SHELLS
from ..timestepping import TimeSpec
from .base import STREAM_INITIAL, FamilySpec, Sample
from .pseudospectral import SPEED_SIGMAS, FourierGrid, PeriodicFamily, admit_dt, batch_size, integrate_fourier, \
    periodic_points, vorticity_speed_std

#: FNO's initial vorticity: amplitude 7^{3/2}, (-Laplace + 49 I)^{-2.5} (the default amplitude tau^(alpha - 1))
FNO_VORTICITY = GRFSpec(alpha=2.5, tau=7.0)


@dataclass(frozen=True)
class NavierStokesSpec(FamilySpec):
    n: int = param(64, ge=8, le=1024, doc="grid points per axis of the periodic grid")
    dim: int = param(2, choices=(2,), doc="space dimension (2-D only)")
    viscosity: float = param(1e-3, ge=1e-7, le=1.0, doc="kinematic viscosity nu (FNO: 1e-3, 1e-4, 1e-5)")
    initial: GRFSpec = param(FNO_VORTICITY, doc="GRF of the initial vorticity")
    forcing_amplitude: float = param(0.1, ge=0.0, le=1e3, doc="f = A (sin 2 pi (x + y) + cos 2 pi (x + y))")

    def __post_init__(self) -> None:
        super().__post_init__()
        admit_dt(self.time, self.speed_bound(), self.n, fail)

    def speed_bound(self) -> float:
        """U0: SPEED_SIGMAS standard deviations of |u| + |v| of the initial velocity."""
        K = REFERENCE_SHELLS[2] if self.initial.band is None else self.initial.band - 1
        k = np.meshgrid(*[np.arange(-K, K + 1)] * 2, indexing="ij", sparse=True)
        return SPEED_SIGMAS * vorticity_speed_std(self.initial.root(2, 2 * K + 1), k)


@lru_cache(maxsize=8)
def fourier_grid(n: int) -> FourierGrid:
    return FourierGrid(n, 2)


class NavierStokes(PeriodicFamily):
    name = "navier_stokes"
    Spec = NavierStokesSpec
    summary = ("2-D incompressible Navier-Stokes, vorticity form, periodic torus, FNO's forcing and GRF initial "
               "vorticity; pseudo-spectral, no linear system")
    default_time = TimeSpec(t_end=10.0, dt=5e-3, frames=11, scheme="crank_nicolson")

    def capabilities(self, spec: NavierStokesSpec) -> Capabilities:
        return Capabilities(MatrixClass.NONE, 2, operator_varies=False, tensor_stencil=False, time_dependent=True)

    def field_names(self, spec: NavierStokesSpec) -> list[str]:
        return ["w0"]

    def output_names(self, spec: NavierStokesSpec) -> list[str]:
        return ["w"]

    def sample(self, spec: NavierStokesSpec, seed: int, index: int) -> Sample:
        w0 = sample_grf(spec.initial, spec.shape, seed, index, STREAM_INITIAL, sampling=spec.sampling, at="periodic")
        return Sample(index, {"w0": w0})

    def features(self, spec: NavierStokesSpec, seed: int, indices) -> np.ndarray:
        feats = grf_features(spec.initial, spec.shape, seed, indices, STREAM_INITIAL, sampling=spec.sampling)
        return feats / grf_feature_scale(spec.initial, spec.shape, sampling=spec.sampling)

    def forcing(self, spec: NavierStokesSpec) -> np.ndarray | None:
        if spec.forcing_amplitude == 0:
            return None
        x = periodic_points(spec.n)
        s = 2 * math.pi * (x[:, None] + x[None, :])
        return (spec.forcing_amplitude * (np.sin(s) + np.cos(s)))[None]

    def batch_size(self, spec: NavierStokesSpec) -> int:
        return batch_size(1, spec.unknowns)

    def integrate_batch(self, spec: NavierStokesSpec, samples, on_frame, options):
        grid = fourier_grid(spec.n)
        inv_k2 = np.zeros(grid.half)
        np.divide(1.0, grid.laplacian_symbol(), out=inv_k2, where=grid.k2 > 0)

        def nonlinear(wh, w):  # -(u . grad) w with u = (psi_y, -psi_x), psi_hat = w_hat / |2 pi k|^2
            psi = wh[:, 0] * inv_k2
            u, v = grid.inverse(grid.derivative(psi, 1)), -grid.inverse(grid.derivative(psi, 0))
            wx, wy = grid.inverse(grid.derivative(wh[:, 0], 0)), grid.inverse(grid.derivative(wh[:, 0], 1))
            speed = np.abs(u).max(axis=(1, 2)) + np.abs(v).max(axis=(1, 2))
            return -grid.forward(u * wx + v * wy)[:, None], speed

        u0 = np.stack([self.initial_state(spec, s) for s in samples])
        return integrate_fourier(grid, u0, spec.viscosity, nonlinear, self.forcing(spec), spec.time, options.rtol,
                                 on_frame)

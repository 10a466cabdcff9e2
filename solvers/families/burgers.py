r"""Viscous Burgers on the periodic unit torus, pseudo-spectral (no linear system).

* ``dim = 1`` (the FNO / PDEBench setting): :math:`u_t + (u^2/2)_x = \nu u_{xx}`;
* ``dim = 2`` (vector): :math:`\mathbf u_t + (\mathbf u\cdot\nabla)\mathbf u = \nu\Delta\mathbf u`,
  :math:`\mathbf u = (u, v)`.

Initial condition: every component a GRF (its own stream), by default FNO's
:math:`N(0, 625(-\Delta + 25 I)^{-2})`, evaluated at the periodic points :math:`x_j = j/n`
(sampling 2: the same continuum instance at every resolution).  Viscosity: fixed
(``nu_min == nu_max``) or log-uniform in [nu_min, nu_max] per sample (then a scalar of the
sample and a constant channel of ``x``).

Discretisation: Fourier pseudo-spectral with 2/3 de-aliasing, viscosity implicit and the
nonlinear term explicit (:mod:`pdeforge.solvers.families.pseudospectral`): IMEX Euler, CN--AB2
or SBDF2 by the spec's scheme.  Stability: ``time.dt`` is refused above the CFL bound
(advection explicit); viscosity needs no bound.  Stored: channels u0 (v0) of x; y the frames
of u (v), (T, C, *grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..capabilities import Capabilities, MatrixClass
from ..fields import GRFSpec, grf_feature_scale, grf_features, pointwise_std, sample_grf
from ..params import fail, param
from ..timestepping import TimeSpec
from .base import STREAM_INITIAL, STREAM_INITIAL_2, FamilySpec, Sample, stack_features, uniform_scalar
from .pseudospectral import SPEED_SIGMAS, FourierGrid, PeriodicFamily, admit_dt, batch_size, integrate_fourier

#: FNO's Burgers initial condition: N(0, 625 (-Laplace + 25 I)^-2)
FNO_BURGERS_INITIAL = GRFSpec(alpha=2.0, tau=5.0, sigma=25.0)
_STREAMS = (STREAM_INITIAL, STREAM_INITIAL_2)


@dataclass(frozen=True)
class BurgersSpec(FamilySpec):
    n: int = param(1024, ge=8, le=8192, doc="grid points per axis of the periodic grid (dim 2: at most 1024)")
    dim: int = param(1, choices=(1, 2), doc="1: u_t + (u^2/2)_x = nu u_xx; 2: the vector equation for (u, v)")
    nu_min: float = param(0.1, ge=1e-5, le=10.0, doc="smallest viscosity nu")
    nu_max: float = param(0.1, ge=1e-5, le=10.0, doc="largest viscosity nu (log-uniform in [nu_min, nu_max])")
    initial: GRFSpec = param(FNO_BURGERS_INITIAL, doc="GRF of each velocity component at t = 0")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim == 2 and self.n > 1024:
            fail("n", self.n, "8 <= n <= 1024 for dim=2")
        if self.nu_max < self.nu_min:
            fail("nu_max", self.nu_max, f"nu_max >= nu_min = {self.nu_min:g}")
        speed = SPEED_SIGMAS * self.dim * pointwise_std(self.initial, self.shape, self.sampling)
        admit_dt(self.time, speed, self.n, fail)

    @property
    def species(self) -> list[str]:
        return ["u", "v"][: self.dim]


@lru_cache(maxsize=8)
def fourier_grid(n: int, dim: int) -> FourierGrid:
    return FourierGrid(n, dim)


class Burgers(PeriodicFamily):
    name = "burgers"
    Spec = BurgersSpec
    summary = ("u_t + u.grad(u) = nu Laplace(u) on the periodic torus (1-D scalar, 2-D vector), u0 a GRF; "
               "pseudo-spectral, no linear system")
    default_time = TimeSpec(t_end=1.0, dt=1e-4, frames=11, scheme="crank_nicolson")

    def capabilities(self, spec: BurgersSpec) -> Capabilities:
        return Capabilities(MatrixClass.NONE, spec.dim, operator_varies=spec.nu_max > spec.nu_min,
                            tensor_stencil=False, time_dependent=True)

    def field_names(self, spec: BurgersSpec) -> list[str]:
        return [f"{c}0" for c in spec.species]

    def output_names(self, spec: BurgersSpec) -> list[str]:
        return spec.species

    def scalar_names(self, spec: BurgersSpec) -> list[str]:
        return ["nu"]

    def varying_scalars(self, spec: BurgersSpec) -> list[str]:
        return ["nu"] if spec.nu_max > spec.nu_min else []

    def sample(self, spec: BurgersSpec, seed: int, index: int) -> Sample:
        fields = {f"{c}0": sample_grf(spec.initial, spec.shape, seed, index, stream, sampling=spec.sampling,
                                      at="periodic") for c, stream in zip(spec.species, _STREAMS)}
        return Sample(index, fields, {"nu": uniform_scalar(spec.nu_min, spec.nu_max, seed, index, 0, log=True)})

    def features(self, spec: BurgersSpec, seed: int, indices) -> np.ndarray:
        scale = grf_feature_scale(spec.initial, spec.shape, sampling=spec.sampling)
        blocks = [(grf_features(spec.initial, spec.shape, seed, indices, stream, sampling=spec.sampling), scale)
                  for stream in _STREAMS[: spec.dim]]
        if spec.nu_max > spec.nu_min:
            nus = np.array([[uniform_scalar(spec.nu_min, spec.nu_max, seed, i, 0, log=True)] for i in indices])
            blocks.append((np.log(nus / spec.nu_min) / np.log(spec.nu_max / spec.nu_min), np.sqrt(1 / 3)))
        return stack_features(blocks, len(indices))

    def batch_size(self, spec: BurgersSpec) -> int:
        return batch_size(spec.dim, spec.unknowns)

    def integrate_batch(self, spec: BurgersSpec, samples, on_frame, options):
        grid = fourier_grid(spec.n, spec.dim)
        axes = tuple(range(1, spec.dim + 1))
        if spec.dim == 1:
            def nonlinear(uh, u):  # -(u^2 / 2)_x
                return -grid.derivative(grid.forward(0.5 * u * u), 0), np.abs(u[:, 0]).max(axis=1)
        else:
            def nonlinear(uh, u):  # -(u . grad) u_c for c = u, v
                du = [[grid.inverse(grid.derivative(uh[:, c], a)) for a in range(2)] for c in range(2)]
                adv = np.stack([u[:, 0] * du[c][0] + u[:, 1] * du[c][1] for c in range(2)], axis=1)
                return -grid.forward(adv), np.abs(u[:, 0]).max(axis=axes) + np.abs(u[:, 1]).max(axis=axes)
        u0 = np.stack([self.initial_state(spec, s) for s in samples])
        nu = np.array([s.scalars["nu"] for s in samples])
        return integrate_fourier(grid, u0, nu, nonlinear, None, spec.time, options.rtol, on_frame)

r"""Advection–diffusion: :math:`-\nu\Delta u + v\cdot\nabla u = f` in :math:`(0,1)^2`, u = 0 on the boundary.

Velocity: :math:`v = \nabla^\perp\psi = (\partial_y\psi, -\partial_x\psi)` with ψ a
GRF sampled at the cell vertices.  Face normal velocities are differences of ψ
along each face, :math:`v_f = \pm(\psi_{end} - \psi_{start})/h`, so the discrete
divergence of every cell is exactly zero; v is scaled so that
:math:`\max_f |v_f|` = ``velocity`` -- on the grid itself (sampling 1), or on the fixed
64 x 64 reference grid (sampling 2: one scale per sample, so ψ is the same function at every
resolution; the largest face speed of another grid differs from ``velocity`` by the
resolution's error).  Viscosity: fixed (``nu_min == nu_max``) or
log-uniform in [nu_min, nu_max] per sample.

Discretisation: cell-centred finite volumes, central diffusion (harmonic means are
trivial here) and first-order upwind advection in conservative form
:math:`\nabla\cdot(vu)` (equal to :math:`v\cdot\nabla u` as div v = 0); boundary
inflow carries u = 0.  Matrix: real, **non-symmetric**, an M-matrix for any Péclet
number (upwinding).  The operator varies between samples.  2-D only.
Transient (a ``time`` block in the spec): :math:`u_t + v\cdot\nabla u - \nu\Delta u = f` from
:math:`u_0` = ``initial_scale`` x a GRF, the same operator stepped implicitly
(:mod:`pdeforge.solvers.timestepping`; one step matrix per trajectory); channel ``u0`` is
added to x and y holds the frames (T, 1, n, n).

Inputs stored in a dataset: the scaled stream function ψ at the vertices (``inputs/psi``,
(n+1, n+1): the face velocities, hence A, follow from it exactly), ``f`` if random,
scalar ``nu`` (also a constant channel when it varies); channels ``vx``, ``vy`` are the
cell averages of the face velocities (model features, derived from ψ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..capabilities import Capabilities, MatrixClass
from ..fields import GRFSpec, grf_feature_scale, grf_features, sample_grf
from ..params import fail, param
from .base import (OPTIONAL_TIME, STREAM_FORCING, STREAM_INITIAL, STREAM_VELOCITY, ExtraInput, FamilySpec,
                   PDEFamily, Sample, stack_features, uniform_scalar)
from .forcing import ForcingSpec
from .fv import diffusion, upwind_advection


@dataclass(frozen=True)
class AdvectionDiffusionSpec(FamilySpec):
    nu_min: float = param(0.01, gt=0.0, le=100.0, doc="smallest viscosity nu")
    nu_max: float = param(0.01, gt=0.0, le=100.0, doc="largest viscosity nu (log-uniform in [nu_min, nu_max])")
    stream: GRFSpec = param(GRFSpec(), doc="GRF of the stream function psi")
    velocity: float = param(1.0, gt=0.0, le=1e4, doc="maximal face speed max|v_f| (sampling 2: on the 64 x 64 reference grid)")
    forcing: ForcingSpec = param(ForcingSpec(), doc="source f(x): constant or grf")
    initial: GRFSpec = param(GRFSpec(alpha=2.5, tau=7.0), doc="transient (time block): GRF of u0")
    initial_scale: float = param(1.0, gt=0.0, le=1e6, doc="transient (time block): u0 = initial_scale * GRF")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim != 2:
            fail("dim", self.dim, "2 (advection_diffusion is two-dimensional)")
        if self.nu_max < self.nu_min:
            fail("nu_max", self.nu_max, f"nu_max >= nu_min = {self.nu_min:g}")
        self.forcing.require("forcing", ("constant", "grf"))


#: sampling 2: the grid (cells per axis) on which psi is scaled to max face speed = velocity
VELOCITY_GRID = 64


def face_velocities(psi: np.ndarray, h: float) -> list[np.ndarray]:
    """Discretely divergence-free face velocities from vertex values psi (n+1, n+1)."""
    v0 = (psi[:, 1:] - psi[:, :-1]) / h   # faces normal to axis 0: (n+1, n)
    v1 = -(psi[1:, :] - psi[:-1, :]) / h  # faces normal to axis 1: (n, n+1)
    return [v0, v1]


class AdvectionDiffusion(PDEFamily):
    name = "advection_diffusion"
    Spec = AdvectionDiffusionSpec
    summary = "-nu Laplace(u) + v.grad(u) = f, v = curl(psi) with psi a GRF (divergence free), upwind; non-symmetric"

    time_dependence = OPTIONAL_TIME

    def capabilities(self, spec: AdvectionDiffusionSpec) -> Capabilities:
        return Capabilities(MatrixClass.NONSYMMETRIC, spec.dim, operator_varies=True, m_matrix=True,
                            time_dependent=spec.time is not None)

    def field_names(self, spec: AdvectionDiffusionSpec) -> list[str]:
        return [*(["u0"] if spec.time is not None else []), *(["f"] if spec.forcing.random else [])]

    def derived_names(self, spec: AdvectionDiffusionSpec) -> list[str]:
        return ["vx", "vy"]

    def derived(self, spec: AdvectionDiffusionSpec, sample: Sample) -> dict[str, np.ndarray]:
        v0, v1 = face_velocities(sample.extras["psi"], spec.h)
        return {"vx": 0.5 * (v0[:-1] + v0[1:]), "vy": 0.5 * (v1[:, :-1] + v1[:, 1:])}

    def scalar_names(self, spec: AdvectionDiffusionSpec) -> list[str]:
        return ["nu"]

    def varying_scalars(self, spec: AdvectionDiffusionSpec) -> list[str]:
        return ["nu"] if spec.nu_max > spec.nu_min else []

    def extra_inputs(self, spec: AdvectionDiffusionSpec) -> list[ExtraInput]:
        return [ExtraInput("psi", self._psi_shape(spec), ("vertex_x", "vertex_y"),
                           "stream function at the cell vertices (scaled: max face speed = velocity)")]

    def boundary_conditions(self, spec: AdvectionDiffusionSpec) -> str:
        return ("u = 0 on every boundary face (Dirichlet, ghost value at distance h/2); the advective flux "
                "carries u = 0 in through inflow faces and the cell value out through outflow faces")

    def _psi_shape(self, spec: AdvectionDiffusionSpec) -> tuple[int, int]:
        return (spec.n + 1, spec.n + 1)

    def sample(self, spec: AdvectionDiffusionSpec, seed: int, index: int) -> Sample:
        psi = sample_grf(spec.stream, self._psi_shape(spec), seed, index, STREAM_VELOCITY, sampling=spec.sampling,
                         at="vertices")
        reference = psi if spec.sampling == 1 else \
            sample_grf(spec.stream, (VELOCITY_GRID + 1,) * 2, seed, index, STREAM_VELOCITY, at="vertices")
        v0, v1 = face_velocities(reference, 1.0 / (reference.shape[0] - 1))
        psi = psi * (spec.velocity / max(np.abs(v0).max(), np.abs(v1).max(), 1e-300))
        fields = {"f": spec.forcing.sample(spec.shape, seed, index, STREAM_FORCING, sampling=spec.sampling)} if spec.forcing.random else {}
        if spec.time is not None:
            fields["u0"] = spec.initial_scale * sample_grf(spec.initial, spec.shape, seed, index, STREAM_INITIAL, sampling=spec.sampling)
        nu = uniform_scalar(spec.nu_min, spec.nu_max, seed, index, 0, log=True)
        return Sample(index, fields, {"nu": nu}, {"psi": psi})

    def features(self, spec: AdvectionDiffusionSpec, seed: int, indices) -> np.ndarray:
        shape = self._psi_shape(spec)
        blocks = [(grf_features(spec.stream, shape, seed, indices, STREAM_VELOCITY, sampling=spec.sampling),
                   grf_feature_scale(spec.stream, shape, sampling=spec.sampling))]
        if spec.nu_max > spec.nu_min:
            nus = np.array([[uniform_scalar(spec.nu_min, spec.nu_max, seed, i, 0, log=True)] for i in indices])
            span = np.log(spec.nu_max / spec.nu_min)
            blocks.append((np.log(nus / spec.nu_min) / span, np.sqrt(1 / 3)))
        blocks.append(spec.forcing.features(spec.shape, seed, indices, STREAM_FORCING, sampling=spec.sampling))
        if spec.time is not None:
            blocks.append((grf_features(spec.initial, spec.shape, seed, indices, STREAM_INITIAL, sampling=spec.sampling),
                           grf_feature_scale(spec.initial, spec.shape, sampling=spec.sampling)))
        return stack_features(blocks, len(indices))

    def assemble(self, spec: AdvectionDiffusionSpec, sample: Sample):
        st = diffusion(np.ones(spec.shape), spec.h).scaled(sample.scalars["nu"])
        st = st + upwind_advection(face_velocities(sample.extras["psi"], spec.h), spec.h)
        f = sample.fields["f"] if spec.forcing.random else spec.forcing.fixed(spec.shape)
        return st.tocsr(), np.asarray(f, dtype=np.float64).ravel()

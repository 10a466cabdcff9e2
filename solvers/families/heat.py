r"""Heat equation: :math:`u_t = \nabla\cdot(a\nabla u) + f` in :math:`(0,1)^d`, :math:`u = 0` on the
boundary, :math:`u(\cdot, 0) = u_0`.

Parameters: the conductivity a(x) as in ``darcy`` (:class:`~pdeforge.solvers.fields.CoefficientSpec`:
``lognormal``, ``threshold``, ``constant``); u_0 = ``initial_scale`` x a GRF (its own stream;
it need not vanish on the boundary -- the Dirichlet faces act from the first step on); f
constant (default 0) or a GRF.

Discretisation: in space the ``darcy`` finite-volume operator
:math:`L = -\nabla\cdot(a\nabla\,\cdot)` (harmonic-mean faces, Dirichlet ghost value at h/2;
SPD M-matrix); in time the scheme of the spec's ``time`` block
(:mod:`pdeforge.solvers.timestepping`: backward Euler, Crank--Nicolson, BDF2) for
:math:`u_t = -Lu + f`.  Every implicit step solves :math:`(sI + \theta\Delta t L)u^{n+1} = r`
with the same matrix for the whole trajectory (and, with a constant a, for every sample:
then the DST diagonalises it).  2-D and 3-D.

Stored: channels ``a``, ``u0`` (and ``f`` if random) of x; y the frames of u, (T, 1, *grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..capabilities import Capabilities, MatrixClass
from ..fields import CoefficientSpec, GRFSpec, grf_feature_scale, grf_features, sample_grf
from ..params import param
from ..timestepping import TimeSpec
from .base import STREAM_INITIAL, TRANSIENT, Sample, stack_features
from .darcy import Darcy, DarcySpec
from .forcing import ForcingSpec


@dataclass(frozen=True)
class HeatSpec(DarcySpec):
    coefficient: CoefficientSpec = param(CoefficientSpec(kind="lognormal"), doc="conductivity a(x)")
    forcing: ForcingSpec = param(ForcingSpec(value=0.0), doc="source f(x): constant (default 0) or grf")
    initial: GRFSpec = param(GRFSpec(alpha=2.5, tau=7.0), doc="GRF of the initial condition u0")
    initial_scale: float = param(1.0, gt=0.0, le=1e6, doc="u0 = initial_scale * GRF")


class Heat(Darcy):
    name = "heat"
    Spec = HeatSpec
    summary = "u_t = div(a grad u) + f, u = 0 on the boundary, u(0) = u0 a GRF; a lognormal/threshold/constant"
    time_dependence = TRANSIENT
    default_time = TimeSpec(t_end=0.1, dt=1e-3, frames=11, scheme="crank_nicolson")

    def capabilities(self, spec: HeatSpec) -> Capabilities:
        return Capabilities(MatrixClass.SPD, spec.dim, operator_varies=spec.coefficient.random, m_matrix=True,
                            constant_laplacian=None if spec.coefficient.random else "dirichlet", time_dependent=True)

    def field_names(self, spec: HeatSpec) -> list[str]:
        return ["a", "u0", *(["f"] if spec.forcing.random else [])]

    def sample(self, spec: HeatSpec, seed: int, index: int) -> Sample:
        sample = super().sample(spec, seed, index)
        sample.fields["u0"] = spec.initial_scale * sample_grf(spec.initial, spec.shape, seed, index, STREAM_INITIAL, sampling=spec.sampling)
        return sample

    def features(self, spec: HeatSpec, seed: int, indices) -> np.ndarray:
        blocks = [(super().features(spec, seed, indices), 1.0),
                  (grf_features(spec.initial, spec.shape, seed, indices, STREAM_INITIAL, sampling=spec.sampling),
                   grf_feature_scale(spec.initial, spec.shape, sampling=spec.sampling))]
        return stack_features(blocks, len(indices))

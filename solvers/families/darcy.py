r"""Darcy flow: :math:`-\nabla\cdot(a\nabla u) = f` in :math:`(0,1)^d`, :math:`u = 0` on the boundary.

Discretisation: cell-centred finite volumes, n cells per axis, two-point fluxes with
harmonic-mean face coefficients :math:`a_f = 2a_Pa_E/(a_P+a_E)`, Dirichlet faces via
a ghost value at distance h/2 (see :mod:`pdeforge.solvers.families.fv`).  Second-order
accurate for smooth a; for a ≡ 1, f ≡ 1 in 2-D, u(1/2, 1/2) → 0.0736713532814.

Parameters: a(x) from :class:`~pdeforge.solvers.fields.CoefficientSpec` (``lognormal``
exp(scale g), ``threshold`` high/low -- FNO uses 12/3 with alpha = 2, tau = 3 --
or ``constant``); f constant (default 1) or a GRF.  SKR's Darcy set is
lognormal with alpha = 2.5, tau = 7, f = 1.

Matrix: real symmetric positive definite (an M-matrix).  The operator varies
between samples unless the coefficient is ``constant``.  2-D and 3-D.
Inputs stored in a dataset: channel ``a`` (and ``f`` if it is random).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..capabilities import Capabilities, MatrixClass
from ..params import param
from ..fields import CoefficientSpec, grf_feature_scale, grf_features
from .base import (DIRICHLET_ZERO, STREAM_COEFFICIENT, STREAM_FORCING, FamilySpec, PDEFamily, Sample,
                   stack_features)
from .forcing import ForcingSpec
from .fv import diffusion


@dataclass(frozen=True)
class DarcySpec(FamilySpec):
    coefficient: CoefficientSpec = param(CoefficientSpec(), doc="permeability a(x)")
    forcing: ForcingSpec = param(ForcingSpec(), doc="source f(x): constant or grf")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.forcing.require("forcing", ("constant", "grf"))
        if self.coefficient.random and self.coefficient.grf.alpha <= self.dim / 2:
            raise ValueError(
                f"coefficient.grf.alpha={self.coefficient.grf.alpha!r} is out of range for "
                f"dim={self.dim}; allowed: alpha > {self.dim / 2:g}")


class Darcy(PDEFamily):
    name = "darcy"
    Spec = DarcySpec
    summary = "-div(a grad u) = f, u = 0 on the boundary; random permeability a (lognormal/threshold GRF)"
    def capabilities(self, spec: DarcySpec) -> Capabilities:
        return Capabilities(MatrixClass.SPD, spec.dim, operator_varies=spec.coefficient.random, m_matrix=True,
                            constant_laplacian=None if spec.coefficient.random else "dirichlet")

    def field_names(self, spec: DarcySpec) -> list[str]:
        return ["a", "f"] if spec.forcing.random else ["a"]

    def boundary_conditions(self, spec: DarcySpec) -> str:
        return DIRICHLET_ZERO

    def sample(self, spec: DarcySpec, seed: int, index: int) -> Sample:
        fields = {"a": spec.coefficient.sample(spec.shape, seed, index, STREAM_COEFFICIENT, sampling=spec.sampling)}
        if spec.forcing.random:
            fields["f"] = spec.forcing.sample(spec.shape, seed, index, STREAM_FORCING, sampling=spec.sampling)
        return Sample(index, fields)

    def features(self, spec: DarcySpec, seed: int, indices) -> np.ndarray:
        blocks = []
        if spec.coefficient.random:
            grf = spec.coefficient.grf
            blocks.append((grf_features(grf, spec.shape, seed, indices, STREAM_COEFFICIENT, sampling=spec.sampling),
                           grf_feature_scale(grf, spec.shape, sampling=spec.sampling)))
        blocks.append(spec.forcing.features(spec.shape, seed, indices, STREAM_FORCING, sampling=spec.sampling))
        return stack_features(blocks, len(indices))

    def assemble(self, spec: DarcySpec, sample: Sample):
        A = diffusion(sample.fields["a"], spec.h).tocsr()
        f = sample.fields["f"] if spec.forcing.random else spec.forcing.fixed(spec.shape)
        return A, np.asarray(f, dtype=np.float64).ravel()

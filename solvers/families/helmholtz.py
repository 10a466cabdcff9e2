r"""Helmholtz: :math:`-\Delta u - k^2(1 + c(x))\,u = f` in :math:`(0,1)^d`.

Medium: :math:`c = \text{contrast}\cdot\tanh(g/\operatorname{std} g)` with g a GRF, so
:math:`|c| < \text{contrast} \le 0.9` and :math:`1 + c > 0`.  Wavenumber: fixed
(``k_min == k_max``) or k ~ U[k_min, k_max] per sample.  Resolution is enforced:
:math:`k_{max}\sqrt{1+\text{contrast}} \le 2\pi n / 6` (at least 6 cells per
wavelength).  Source f: a Gaussian bump at the centre (default), constant or a GRF.

Boundary conditions and matrix class:

* ``dirichlet``: u = 0 (ghost flux :math:`2u_P/h^2`); real **symmetric indefinite**
  (singular if k^2(1+c) hits an eigenvalue of the discrete Laplacian);
* ``impedance`` (default): first-order absorbing condition :math:`\partial_n u = i k u`,
  adding :math:`-ik/h` to the diagonal per boundary face; **complex symmetric**
  (non-Hermitian) and indefinite.

Discretisation: cell-centred finite volumes (:mod:`.fv`).  The operator varies
between samples (medium and, if sampled, k; fixed when contrast = 0 and k_min =
k_max).  2-D and 3-D.
Inputs stored in a dataset: channel ``c`` (and ``f`` if random); scalar ``k`` (also a
constant channel when it varies between samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..capabilities import Capabilities, MatrixClass
from ..fields import GRFSpec, grf_feature_scale, grf_features, pointwise_std, sample_grf
from ..params import fail, param
from .base import (DIRICHLET_ZERO, STREAM_FORCING, STREAM_MEDIUM, FamilySpec, PDEFamily, Sample, stack_features,
                   uniform_scalar)
from .forcing import ForcingSpec
from .fv import boundary_layer, diffusion

MIN_CELLS_PER_WAVELENGTH = 6


@dataclass(frozen=True)
class HelmholtzSpec(FamilySpec):
    k_min: float = param(20.0, gt=0.0, le=1e4, doc="smallest wavenumber k")
    k_max: float = param(20.0, gt=0.0, le=1e4, doc="largest wavenumber k (k ~ U[k_min, k_max])")
    medium: GRFSpec = param(GRFSpec(), doc="GRF behind the medium perturbation c(x)")
    contrast: float = param(0.25, ge=0.0, le=0.9, doc="bound on |c(x)|")
    boundary: str = param("impedance", choices=("impedance", "dirichlet"), doc="boundary condition")
    forcing: ForcingSpec = param(ForcingSpec(kind="gaussian"), doc="source f(x): gaussian, constant or grf")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.forcing.require("forcing", ("gaussian", "constant", "grf"))
        if self.k_max < self.k_min:
            fail("k_max", self.k_max, f"k_max >= k_min = {self.k_min:g}")
        limit = 2 * math.pi * self.n / (MIN_CELLS_PER_WAVELENGTH * math.sqrt(1 + self.contrast))
        if self.k_max > limit:
            fail("k_max", self.k_max, f"k_max <= {limit:.4g} (at least {MIN_CELLS_PER_WAVELENGTH} "
                 f"cells per wavelength at n={self.n}, contrast={self.contrast:g})")


class Helmholtz(PDEFamily):
    name = "helmholtz"
    Spec = HelmholtzSpec
    summary = "-Laplace(u) - k^2 (1 + c(x)) u = f; random medium c, optional random k; impedance or Dirichlet"
    def capabilities(self, spec: HelmholtzSpec) -> Capabilities:
        matrix = MatrixClass.COMPLEX_SYMMETRIC if spec.boundary == "impedance" else MatrixClass.SYMMETRIC_INDEFINITE
        return Capabilities(matrix, spec.dim, operator_varies=spec.contrast > 0 or spec.k_max > spec.k_min)

    def field_names(self, spec: HelmholtzSpec) -> list[str]:
        return ["c", "f"] if spec.forcing.random else ["c"]

    def scalar_names(self, spec: HelmholtzSpec) -> list[str]:
        return ["k"]

    def varying_scalars(self, spec: HelmholtzSpec) -> list[str]:
        return ["k"] if spec.k_max > spec.k_min else []

    def boundary_conditions(self, spec: HelmholtzSpec) -> str:
        if spec.boundary == "impedance":
            return ("first-order absorbing (impedance) condition du/dn = i k u on every boundary face "
                    "(one-sided, -i k / h per boundary face on the diagonal)")
        return DIRICHLET_ZERO

    def sample(self, spec: HelmholtzSpec, seed: int, index: int) -> Sample:
        g = sample_grf(spec.medium, spec.shape, seed, index, STREAM_MEDIUM, sampling=spec.sampling)
        c = spec.contrast * np.tanh(g / pointwise_std(spec.medium, spec.shape, spec.sampling))
        fields = {"c": c}
        if spec.forcing.random:
            fields["f"] = spec.forcing.sample(spec.shape, seed, index, STREAM_FORCING, sampling=spec.sampling)
        k = uniform_scalar(spec.k_min, spec.k_max, seed, index, 0)
        return Sample(index, fields, {"k": k})

    def features(self, spec: HelmholtzSpec, seed: int, indices) -> np.ndarray:
        blocks = []
        if spec.contrast > 0:
            blocks.append((grf_features(spec.medium, spec.shape, seed, indices, STREAM_MEDIUM, sampling=spec.sampling),
                           grf_feature_scale(spec.medium, spec.shape, sampling=spec.sampling)))
        if spec.k_max > spec.k_min:
            ks = np.array([[uniform_scalar(spec.k_min, spec.k_max, seed, i, 0)] for i in indices])
            blocks.append(((ks - spec.k_min) / (spec.k_max - spec.k_min), math.sqrt(1 / 3)))
        blocks.append(spec.forcing.features(spec.shape, seed, indices, STREAM_FORCING, sampling=spec.sampling))
        return stack_features(blocks, len(indices))

    def assemble(self, spec: HelmholtzSpec, sample: Sample):
        k = sample.scalars["k"]
        impedance = spec.boundary == "impedance"
        st = diffusion(np.ones(spec.shape), spec.h, dirichlet=not impedance)
        if impedance:
            st = st.scaled(1.0 + 0j)
            for axis in range(spec.dim):
                for side in (0, 1):
                    st.diag[boundary_layer(spec.dim, axis, side)] -= 1j * k / spec.h
        st.diag -= k * k * (1.0 + sample.fields["c"])
        f = sample.fields["f"] if spec.forcing.random else spec.forcing.fixed(spec.shape)
        return st.tocsr(), np.asarray(f).ravel().astype(self.dtype(spec))

r"""Poisson: :math:`-\Delta u = f` in :math:`(0,1)^d`, :math:`u = g` on the boundary.

f is random: a GRF (``grf``) or a truncated tensor Chebyshev series with
coefficients ~ U[-1, 1] (``chebyshev``, as in SKR's Poisson set).  The Dirichlet
data g are zero or, with ``boundary="chebyshev"``, the trace of another random
Chebyshev series of degree ``boundary_degree``: its values at the boundary face
centres are what the system uses (stored exactly as ``inputs/boundary``, shape
(2d, n, ..., n), faces ordered (axis 0 low, axis 0 high, axis 1 low, ...)); the same
series at the cell centres is channel ``g`` of ``x`` (a smooth extension, as a model
feature).

Discretisation: the cell-centred finite-volume Laplacian of :mod:`.fv` (a ≡ 1),
Dirichlet data entering b through the ghost-cell flux :math:`2 g_f / h^2`.

Matrix: real symmetric positive definite and **the same for every sample**; only b
varies (so one factorisation serves the whole dataset).  2-D and 3-D.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..capabilities import Capabilities, MatrixClass
from ..fields import chebyshev_coefficients, chebyshev_eval, chebyshev_grid
from ..params import param
from .base import (DIRICHLET_ZERO, FACE_DIMS, STREAM_BOUNDARY, STREAM_FORCING, ExtraInput, FamilySpec, PDEFamily,
                   Sample, stack_features)
from .forcing import ForcingSpec
from .fv import boundary_faces, cell_centres, diffusion, dirichlet_rhs


@dataclass(frozen=True)
class PoissonSpec(FamilySpec):
    forcing: ForcingSpec = param(ForcingSpec(kind="chebyshev"), doc="source f(x): grf or chebyshev")
    boundary: str = param("zero", choices=("zero", "chebyshev"), doc="Dirichlet data g")
    boundary_degree: int = param(5, ge=0, le=12, doc="chebyshev boundary data: degree per axis")
    boundary_scale: float = param(1.0, gt=0.0, le=1e6, doc="chebyshev boundary data: coefficient scale")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.forcing.require("forcing", ("grf", "chebyshev"))


@lru_cache(maxsize=8)
def laplacian(shape: tuple[int, ...]):
    """The (fixed) Dirichlet Laplacian on ``shape``; cached so every sample shares one matrix object."""
    A = diffusion(np.ones(shape), 1.0 / shape[0]).tocsr()
    A.data.setflags(write=False)
    return A


class Poisson(PDEFamily):
    name = "poisson"
    Spec = PoissonSpec
    summary = "-Laplace(u) = f, u = g on the boundary; random f (GRF/Chebyshev) and optional random g; fixed operator"
    def capabilities(self, spec: PoissonSpec) -> Capabilities:
        return Capabilities(MatrixClass.SPD, spec.dim, operator_varies=False, m_matrix=True, constant_laplacian="dirichlet")

    def field_names(self, spec: PoissonSpec) -> list[str]:
        return ["f", "g"] if spec.boundary == "chebyshev" else ["f"]

    def extra_inputs(self, spec: PoissonSpec) -> list[ExtraInput]:
        if spec.boundary != "chebyshev":
            return []
        return [ExtraInput("boundary", (2 * spec.dim, *(spec.n,) * (spec.dim - 1)),
                           ("boundary_face", *FACE_DIMS[: spec.dim - 1]),
                           "Dirichlet data g at the boundary face centres")]

    def boundary_conditions(self, spec: PoissonSpec) -> str:
        if spec.boundary == "chebyshev":
            return ("u = g on every boundary face (Dirichlet, through a ghost value at distance h/2); g at the "
                    "face centres is inputs/boundary")
        return DIRICHLET_ZERO

    def _boundary_coefficients(self, spec: PoissonSpec, seed: int, index: int) -> np.ndarray:
        return chebyshev_coefficients(spec.boundary_degree, spec.dim, spec.boundary_scale,
                                      seed, index, STREAM_BOUNDARY)

    def sample(self, spec: PoissonSpec, seed: int, index: int) -> Sample:
        sample = Sample(index, {"f": spec.forcing.sample(spec.shape, seed, index, STREAM_FORCING, sampling=spec.sampling)})
        if spec.boundary == "chebyshev":
            coeffs = self._boundary_coefficients(spec, seed, index)
            sample.fields["g"] = chebyshev_grid(coeffs, cell_centres(spec.n))
            sample.extras["boundary"] = boundary_faces(spec.n, spec.dim, lambda pts: chebyshev_eval(coeffs, pts))
        return sample

    def features(self, spec: PoissonSpec, seed: int, indices) -> np.ndarray:
        blocks = [spec.forcing.features(spec.shape, seed, indices, STREAM_FORCING, sampling=spec.sampling)]
        if spec.boundary == "chebyshev":
            rows = np.array([self._boundary_coefficients(spec, seed, i).ravel() / spec.boundary_scale
                             for i in indices]).reshape(len(indices), -1)
            blocks.append((rows, float(np.sqrt(rows.shape[1] / 3.0))))
        return stack_features(blocks, len(indices))

    def assemble(self, spec: PoissonSpec, sample: Sample):
        b = sample.fields["f"].astype(np.float64).copy()
        if spec.boundary == "chebyshev":
            b += dirichlet_rhs(np.ones(spec.shape), spec.h, sample.extras["boundary"])
        return laplacian(spec.shape), b.ravel()

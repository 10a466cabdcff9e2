r"""Reaction--diffusion in :math:`(0,1)^d` with zero-flux boundaries, stepped IMEX (diffusion implicit,
reaction explicit):

* ``allen_cahn``: :math:`u_t = D\Delta u + r(u - u^3)`, :math:`u_0 = \tanh(g)` (g a GRF);
* ``fisher_kpp``: :math:`u_t = D\Delta u + r\,u(1 - u)`, :math:`u_0 = (1 + \tanh g)/2`;
* ``gray_scott`` (two species): :math:`u_t = D_u\Delta u - uv^2 + F(1 - u)`,
  :math:`v_t = D_v\Delta v + uv^2 - (F + k)v`, from :math:`v_0` = a sum of ``seeds`` Gaussian
  spots of height 1/2 and width ``seed_width`` at uniformly random centres (a pure function of
  (seed, index)), :math:`u_0 = 1 - v_0`.  The Well's Gray--Scott set lives on
  :math:`[-1,1]^2` with :math:`D_u = 2\cdot 10^{-5}`, :math:`D_v = 10^{-5}`; on the unit square the
  same dynamics need a quarter of both, the defaults here (with its "spots" regime F = 0.03,
  k = 0.062; gliders 0.014/0.054, bubbles 0.098/0.057, maze 0.029/0.057, worms 0.058/0.065,
  spirals 0.018/0.051).

Discretisation: cell-centred finite volumes, :math:`L = -\Delta` with zero-flux boundary faces
(the ``diffusion`` stencil without boundary flux), per species :math:`D_i L`; the state is
the species stacked, :math:`L = \mathrm{blockdiag}(D_u L, D_v L)`.  Time: the spec's scheme on
:math:`u_t = -Lu + R(u)` (:mod:`pdeforge.solvers.timestepping`), the step matrix
:math:`sI + c\,\mathrm{blockdiag}(D_i L)` is the same for every step *and every sample* (D, r, F,
k are spec constants): one factorization -- or the DCT (``spectral``) -- serves the job.

Stability of the explicit reaction: ``time.dt`` must not exceed :math:`1/\rho`, :math:`\rho` the
largest spectral radius of the reaction Jacobian over the invariant region (u in [-1,1],
[0,1], or (u, v) in [0,1]^2): 1/(2r), 1/r, and for Gray--Scott a bound computed from F and k.

Stored: channels u0 (and v0) of x; y the frames (T, species, *grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from ..capabilities import Capabilities, MatrixClass
from ..fields import GRFSpec, grf_feature_scale, grf_features, sample_grf, sample_rng
from ..params import fail, param
from ..timestepping import TimeSpec
from .base import STREAM_INITIAL, TRANSIENT, FamilySpec, PDEFamily, Sample, stack_features
from .fv import cell_centres, diffusion

KINDS = ("allen_cahn", "fisher_kpp", "gray_scott")
ZERO_FLUX = "zero flux (homogeneous Neumann) through every boundary face, for every species"


def gray_scott_rate_bound(F: float, k: float) -> float:
    """max over (u, v) in [0, 1]^2 of the spectral radius of the Gray--Scott reaction Jacobian."""
    u, v = np.meshgrid(np.linspace(0, 1, 101), np.linspace(0, 1, 101), indexing="ij")
    J = np.empty((*u.shape, 2, 2))
    J[..., 0, 0], J[..., 0, 1] = -v * v - F, -2 * u * v
    J[..., 1, 0], J[..., 1, 1] = v * v, 2 * u * v - (F + k)
    return float(np.abs(np.linalg.eigvals(J)).max())


@dataclass(frozen=True)
class ReactionDiffusionSpec(FamilySpec):
    kind: str = param("allen_cahn", choices=KINDS, doc="reaction: allen_cahn, fisher_kpp or gray_scott")
    diffusivity: float = param(1e-3, gt=0.0, le=1e3, doc="allen_cahn / fisher_kpp: D")
    rate: float = param(1.0, gt=0.0, le=1e4, doc="allen_cahn / fisher_kpp: reaction rate r")
    initial: GRFSpec = param(GRFSpec(alpha=2.5, tau=7.0), doc="allen_cahn / fisher_kpp: GRF g behind u0")
    initial_scale: float = param(1.0, gt=0.0, le=1e6, doc="allen_cahn / fisher_kpp: u0 built from scale * g")
    du: float = param(5e-6, gt=0.0, le=1e3, doc="gray_scott: diffusivity of u")
    dv: float = param(2.5e-6, gt=0.0, le=1e3, doc="gray_scott: diffusivity of v")
    feed: float = param(0.03, gt=0.0, le=1.0, doc="gray_scott: feed rate F")
    kill: float = param(0.062, gt=0.0, le=1.0, doc="gray_scott: kill rate k")
    seeds: int = param(12, ge=1, le=1000, doc="gray_scott: Gaussian spots of v0")
    seed_width: float = param(0.03, gt=0.0, le=0.5, doc="gray_scott: standard deviation of a spot")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.time is not None:
            bound = 1.0 / self.reaction_rate_bound()
            if self.time.dt > bound:
                fail("time.dt", self.time.dt, f"time.dt <= {bound:.4g} (explicit reaction: dt times the largest "
                                              f"rate of the reaction Jacobian must stay <= 1 for {self.kind})")

    def reaction_rate_bound(self) -> float:
        if self.kind == "allen_cahn":
            return 2.0 * self.rate
        if self.kind == "fisher_kpp":
            return self.rate
        return gray_scott_rate_bound(self.feed, self.kill)

    @property
    def species(self) -> list[str]:
        return ["u", "v"] if self.kind == "gray_scott" else ["u"]


class ReactionDiffusion(PDEFamily):
    name = "reaction_diffusion"
    Spec = ReactionDiffusionSpec
    summary = ("u_t = D Laplace(u) + R(u), zero flux; Allen-Cahn, Fisher-KPP or Gray-Scott (two species); "
               "IMEX: diffusion implicit, reaction explicit")
    time_dependence = TRANSIENT
    default_time = TimeSpec(t_end=10.0, dt=0.05, frames=21, scheme="bdf2")

    def capabilities(self, spec: ReactionDiffusionSpec) -> Capabilities:
        return Capabilities(MatrixClass.SPD, spec.dim, operator_varies=False, m_matrix=True,
                            constant_laplacian="neumann", tensor_stencil=len(spec.species) == 1,
                            time_dependent=True)

    def field_names(self, spec: ReactionDiffusionSpec) -> list[str]:
        return [f"{s}0" for s in spec.species]

    def output_names(self, spec: ReactionDiffusionSpec) -> list[str]:
        return spec.species

    def boundary_conditions(self, spec: ReactionDiffusionSpec) -> str:
        return ZERO_FLUX

    def sample(self, spec: ReactionDiffusionSpec, seed: int, index: int) -> Sample:
        if spec.kind == "gray_scott":
            v0 = self._spots(spec, seed, index)
            return Sample(index, {"u0": 1.0 - v0, "v0": v0})
        g = spec.initial_scale * sample_grf(spec.initial, spec.shape, seed, index, STREAM_INITIAL, sampling=spec.sampling)
        u0 = np.tanh(g) if spec.kind == "allen_cahn" else 0.5 * (1.0 + np.tanh(g))
        return Sample(index, {"u0": u0})

    def _spots(self, spec: ReactionDiffusionSpec, seed: int, index: int) -> np.ndarray:
        centres = sample_rng(seed, index, STREAM_INITIAL).uniform(size=(spec.seeds, spec.dim))
        x = np.meshgrid(*[cell_centres(spec.n)] * spec.dim, indexing="ij", sparse=True)
        v = np.zeros(spec.shape)
        for c in centres:
            r2 = sum((xi - ci) ** 2 for xi, ci in zip(x, c))
            v += 0.5 * np.exp(-r2 / (2 * spec.seed_width**2))
        return np.minimum(v, 1.0)

    def features(self, spec: ReactionDiffusionSpec, seed: int, indices) -> np.ndarray:
        if spec.kind == "gray_scott":  # spot centres, sorted so that permuted spots look alike
            rows = [np.sort(sample_rng(seed, i, STREAM_INITIAL).uniform(size=(spec.seeds, spec.dim)), axis=0).ravel()
                    for i in indices]
            return np.array(rows).reshape(len(indices), -1)
        blocks = [(grf_features(spec.initial, spec.shape, seed, indices, STREAM_INITIAL, sampling=spec.sampling),
                   grf_feature_scale(spec.initial, spec.shape, sampling=spec.sampling))]
        return stack_features(blocks, len(indices))

    def assemble(self, spec: ReactionDiffusionSpec, sample: Sample):
        """(L, 0): the stacked diffusion operator blockdiag(D_i (-Laplacian)) with zero-flux faces."""
        ds = (spec.du, spec.dv) if spec.kind == "gray_scott" else (spec.diffusivity,)
        return _operator(spec.shape, ds), np.zeros(len(ds) * int(np.prod(spec.shape)))

    def explicit(self, spec: ReactionDiffusionSpec, sample: Sample, b: np.ndarray):
        if spec.kind == "allen_cahn":
            return lambda u: spec.rate * (u - u**3)
        if spec.kind == "fisher_kpp":
            return lambda u: spec.rate * u * (1.0 - u)
        N, F, k = int(np.prod(spec.shape)), spec.feed, spec.kill

        def gray_scott(state: np.ndarray) -> np.ndarray:
            u, v = state[:N], state[N:]
            uvv = u * v * v
            return np.concatenate([-uvv + F * (1.0 - u), uvv - (F + k) * v])

        return gray_scott


@lru_cache(maxsize=8)
def _operator(shape: tuple[int, ...], ds: tuple[float, ...]):
    """The stacked operator blockdiag(D_i L), cached so every sample shares one (read-only) matrix."""
    L0 = diffusion(np.ones(shape), 1.0 / shape[0], dirichlet=False).tocsr()
    L = sp.block_diag([L0 * d for d in ds], format="csr") if len(ds) > 1 else (L0 * ds[0]).tocsr()
    L.sort_indices()
    L.data.setflags(write=False)
    return L

r"""Right-hand-side (source) fields f(x) shared by the families.

Kinds: ``constant`` (f = value), ``grf`` (f = scale * g, g a GRF), ``chebyshev``
(f = sum_alpha c_alpha prod_j T_{alpha_j}(2 x_j - 1), c_alpha ~ scale * U[-1, 1],
|alpha|_inf <= degree; SKR's Poisson set), ``gaussian`` (a fixed bump
value * exp(-|x - 1/2|^2 / (2 width^2)) at the domain centre).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fields import (
    SAMPLING,
    GRFSpec,
    chebyshev_coefficients,
    chebyshev_grid,
    grf_feature_scale,
    grf_features,
    sample_grf,
)
from ..params import fail, param, validate
from .fv import cell_centres

FORCING_KINDS = ("constant", "grf", "chebyshev", "gaussian")


@dataclass(frozen=True)
class ForcingSpec:
    """A source term f(x); which kinds a family accepts is checked by the family."""

    kind: str = param("constant", choices=FORCING_KINDS, doc="how f(x) is built")
    value: float = param(1.0, ge=-1e6, le=1e6, doc="constant: f = value; gaussian: peak value")
    grf: GRFSpec = param(GRFSpec(), doc="grf: the Gaussian random field")
    scale: float = param(1.0, gt=0.0, le=1e6, doc="grf: f = scale * g; chebyshev: coefficient scale")
    degree: int = param(5, ge=0, le=12, doc="chebyshev: maximal degree per axis")
    width: float = param(0.05, gt=0.0, le=1.0, doc="gaussian: standard deviation of the bump")

    def __post_init__(self) -> None:
        validate(self)

    @property
    def random(self) -> bool:
        return self.kind in ("grf", "chebyshev")

    def require(self, field: str, kinds: tuple[str, ...]) -> None:
        if self.kind not in kinds:
            fail(f"{field}.kind", self.kind, "one of " + ", ".join(repr(k) for k in kinds))

    def sample(self, shape: tuple[int, ...], seed: int, index: int, stream: int, *,
               sampling: int = SAMPLING) -> np.ndarray:
        if self.kind == "grf":
            return self.scale * sample_grf(self.grf, shape, seed, index, stream, sampling=sampling)
        if self.kind == "chebyshev":
            c = chebyshev_coefficients(self.degree, len(shape), self.scale, seed, index, stream)
            return chebyshev_grid(c, cell_centres(shape[0]))
        if self.kind == "gaussian":
            x = np.meshgrid(*[cell_centres(n) for n in shape], indexing="ij", sparse=True)
            r2 = sum((xi - 0.5) ** 2 for xi in x)
            return self.value * np.exp(-r2 / (2 * self.width**2))
        return np.full(tuple(shape), float(self.value))

    def fixed(self, shape: tuple[int, ...]) -> np.ndarray:
        """f for the deterministic kinds (``constant``, ``gaussian``): the same for every sample."""
        if self.random:
            raise ValueError(f"forcing kind {self.kind!r} is random: f is stored per sample")
        return self.sample(shape, 0, 0, 0)

    def features(self, shape: tuple[int, ...], seed: int, indices, stream: int, *,
                 sampling: int = SAMPLING) -> tuple[np.ndarray, float]:
        """(features, RMS scale) for the ordering; empty for deterministic kinds."""
        if self.kind == "grf":
            return (grf_features(self.grf, shape, seed, indices, stream, sampling=sampling),
                    grf_feature_scale(self.grf, shape, sampling=sampling))
        if self.kind == "chebyshev":
            d = len(shape)
            rows = [chebyshev_coefficients(self.degree, d, 1.0, seed, i, stream).ravel() for i in indices]
            feats = np.array(rows).reshape(len(indices), -1)
            return feats, float(np.sqrt(feats.shape[1] / 3.0))  # E c^2 = 1/3 for U[-1, 1]
        return np.zeros((len(indices), 0)), 0.0

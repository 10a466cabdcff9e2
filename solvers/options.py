"""Options for solving a sequence of systems (shared by :mod:`pdeforge.solvers.generate` and job specs)."""

from __future__ import annotations

from dataclasses import dataclass

from .krylov import DEFAULT_MAXITER, PRECONDITIONERS
from .ordering import ORDERINGS
from .params import fail, param, validate

#: the registry's engines plus the ``auto`` pilot (pdeforge.solvers.engines checks that they agree)
ENGINE_NAMES = ("auto", "skr", "gmres", "direct", "direct_mixed", "factorize_once", "amg", "mg", "spectral",
                "pseudo_spectral")


@dataclass(frozen=True)
class SolverOptions:
    """How a sequence of systems is solved."""

    engine: str = param("auto", choices=ENGINE_NAMES, doc="solver engine (auto: a pilot picks the fastest)")
    rtol: float = param(1e-8, ge=1e-14, le=1e-1, doc="relative tolerance on ||b - A x|| / ||b||")
    atol: float = param(0.0, ge=0.0, le=1e300, doc="absolute tolerance on ||b - A x||")
    preconditioner: str = param("jacobi", choices=tuple(PRECONDITIONERS), doc="right preconditioner")
    restart: int = param(40, ge=2, le=500, doc="Krylov subspace size m per cycle")
    recycle: int = param(20, ge=0, le=499, doc="recycled dimension k (GCRO-DR)")
    maxiter: int = param(DEFAULT_MAXITER, ge=1, le=10_000_000, doc="iteration limit per system")
    ordering: str = param("greedy", choices=tuple(ORDERINGS), doc="order of the samples")
    fallback: bool = param(True, doc="re-solve unconverged Krylov solves with the direct engine")

    def __post_init__(self) -> None:
        validate(self)
        if self.recycle >= self.restart:
            fail("recycle", self.recycle, f"0 <= recycle < restart = {self.restart}")

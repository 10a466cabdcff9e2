"""PDE families: one module each, registered by name in ``FAMILIES``.

Each family maps a random parameter sample p_i (fields on the grid, scalars) to a
sparse linear system A(p_i) u_i = b(p_i) on a cell-centred finite-volume grid (transient
families: one per implicit step), except the periodic pseudo-spectral families (``burgers``,
``navier_stokes``), which have no linear system and step themselves.
"""

from ..registry import Registry
from .advection_diffusion import AdvectionDiffusion, AdvectionDiffusionSpec
from .burgers import Burgers, BurgersSpec
from .base import ExtraInput, FamilySpec, PDEFamily, Sample
from .darcy import Darcy, DarcySpec
from .forcing import ForcingSpec
from .heat import Heat, HeatSpec
from .helmholtz import Helmholtz, HelmholtzSpec
from .navier_stokes import NavierStokes, NavierStokesSpec
from .poisson import Poisson, PoissonSpec
from .reaction_diffusion import ReactionDiffusion, ReactionDiffusionSpec

FAMILIES: Registry[PDEFamily] = Registry("family")
for _family in (Darcy(), Poisson(), Helmholtz(), AdvectionDiffusion(), Heat(), ReactionDiffusion(),
                Burgers(), NavierStokes()):
    FAMILIES.register(_family.name, _family)


def get_family(name: str) -> PDEFamily:
    """The family registered as ``name`` (``ValueError`` listing valid names otherwise)."""
    return FAMILIES[name]


__all__ = [
    "FAMILIES", "get_family", "PDEFamily", "FamilySpec", "Sample", "ExtraInput", "ForcingSpec",
    "Darcy", "DarcySpec", "Poisson", "PoissonSpec", "Helmholtz", "HelmholtzSpec",
    "AdvectionDiffusion", "AdvectionDiffusionSpec", "Heat", "HeatSpec", "ReactionDiffusion", "ReactionDiffusionSpec",
    "Burgers", "BurgersSpec", "NavierStokes", "NavierStokesSpec",
]

"""``pseudo_spectral``: the engine of families that step themselves (no linear system per step).

Pseudo-spectral periodic families (``burgers``, ``navier_stokes``) advance in Fourier space,
where the implicit part of every step is diagonal: there is nothing for a sparse engine to
solve.  This engine hands each sample to the family's own ``integrate`` (which verifies
every step's implicit stage and estimates its time error); it applies exactly to the
families whose capabilities say ``MatrixClass.NONE``.
"""

from __future__ import annotations

from ..capabilities import OWN_STEPPER
from .base import Engine
from .registry import register


@register
class OwnStepperEngine(Engine):
    name = "pseudo_spectral"
    requires = (OWN_STEPPER,)
    exact = True

    def solve(self, A, b, x0=None):
        raise TypeError("engine 'pseudo_spectral' steps a family in Fourier space; it has no linear system to solve")

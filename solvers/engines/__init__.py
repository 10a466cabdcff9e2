"""Solver engines (registry ``ENGINES``): how a sequence of systems is solved.

=================  ==================================================================
``skr``            GCRO-DR, recycle space carried along the sorted sequence; strong
                   preconditioners (ilu, amg) reused from a neighbour while they work
``gmres``          restarted GMRES(m), every system independent (SKR's baseline)
``direct``         CHOLMOD with one symbolic analysis (SPD) or tuned SuperLU
``direct_mixed``   float32 factorization + float64 iterative refinement
``factorize_once`` fixed operator: one factorization per worker, block solves
``amg``            PyAMG (SA + CG / RS + GMRES), hierarchy reused via Galerkin rebuilds
``spectral``       constant-coefficient Dirichlet Laplacian: exact DST-II solve, O(N log N)
``auto``           a time-boxed pilot picks the fastest of the applicable engines
=================  ==================================================================

Every engine returns the same per-sample :class:`~solvers.krylov.SolveResult`, and
counts its expensive set-ups in ``engine.counters``.
"""

from ..registry import Registry
from .amg import AmgEngine
from .auto import candidates, choose_engine, run_pilot
from .base import Engine, PilotAborted
from .direct import HAVE_CHOLMOD, DirectEngine, DirectMixedEngine, FactorizeOnceEngine
from .krylov import GmresEngine, SkrEngine
from .spectral import SpectralEngine, laplacian_coefficient

ENGINES: Registry[type[Engine]] = Registry("engine")
for _engine in (SkrEngine, GmresEngine, DirectEngine, DirectMixedEngine, FactorizeOnceEngine, AmgEngine,
                SpectralEngine):
    ENGINES.register(_engine.name, _engine)


def pilot(family, spec, seed, indices, options) -> dict:
    """Run the ``auto`` pilot (see :mod:`solvers.engines.auto`) and return the decision."""
    return run_pilot(family, spec, seed, indices, options, ENGINES)


__all__ = ["ENGINES", "Engine", "PilotAborted", "HAVE_CHOLMOD", "candidates", "choose_engine", "pilot",
           "laplacian_coefficient",
           "SkrEngine", "GmresEngine", "DirectEngine", "DirectMixedEngine", "FactorizeOnceEngine", "AmgEngine",
           "SpectralEngine"]

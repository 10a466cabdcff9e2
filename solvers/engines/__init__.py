"""Solver engines (registry ``ENGINES``): how a sequence of systems is solved.

=================  ==================================================================
``skr``            GCRO-DR, recycle space carried along the sorted sequence; strong
                   preconditioners (ilu, amg) reused from a neighbour while they work
``gmres``          restarted GMRES(m), every system independent (SKR's baseline)
``direct``         CHOLMOD with one symbolic analysis (SPD) or tuned SuperLU
``direct_mixed``   float32 factorization + float64 iterative refinement
``factorize_once`` fixed operator: one factorization per worker, block solves
``amg``            PyAMG (SA + CG / RS + GMRES), hierarchy reused via Galerkin rebuilds
``mg``             structured-grid multigrid (cell agglomeration, face-form Galerkin, red-black
                   Gauss-Seidel, over-corrected V-cycle) + CG / FGMRES; patterns once per grid
``spectral``       constant-coefficient Laplacian s I + c L: exact DST-II / DCT-II solve
``pseudo_spectral`` families with their own Fourier-space stepper (no linear system)
``auto``           a time-boxed pilot picks the fastest of the applicable engines
=================  ==================================================================

Every engine returns the same per-sample :class:`~pdeforge.solvers.krylov.SolveResult`, counts
its expensive set-ups in ``engine.counters`` and states what it needs of a family's
systems (``requires``); :func:`refusal` / :func:`check_engine` decide applicability.
"""

from ..options import ENGINE_NAMES
# engines register on import: this order is the registry's (and the listings') order
from .krylov import GmresEngine, SkrEngine  # isort: skip
from .direct import HAVE_CHOLMOD, DirectEngine, DirectMixedEngine, FactorizeOnceEngine  # isort: skip
from .amg import AmgEngine  # isort: skip
from .mg import MgEngine  # isort: skip
from .spectral import SpectralEngine  # isort: skip
from .stepper import OwnStepperEngine  # isort: skip
from .auto import EngineDecision, candidates, choose_engine, pilot
from .base import Engine, FactorCache, PilotAborted
from .registry import AUTO, ENGINES, applicable_engines, check_engine, refusal

if set(ENGINE_NAMES) != {AUTO, *ENGINES}:  # the spec's choices and the registry must agree
    raise ImportError(f"SolverOptions.engine choices {ENGINE_NAMES} differ from the registry {list(ENGINES)}")


__all__ = ["ENGINES", "AUTO", "EngineDecision", "Engine", "FactorCache", "PilotAborted", "HAVE_CHOLMOD", "candidates", "choose_engine",
           "pilot", "refusal", "applicable_engines", "check_engine",
           "SkrEngine", "GmresEngine", "DirectEngine", "DirectMixedEngine", "FactorizeOnceEngine", "AmgEngine",
           "SpectralEngine", "OwnStepperEngine", "MgEngine"]

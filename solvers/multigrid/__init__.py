r"""Structured-grid multigrid for (2d+1)-point cell-centred operators on tensor grids.

For a matrix ``A`` assembled on the fixed pattern of
:func:`~pdeforge.solvers.families.fv.stencil_pattern` (any family on that pattern: Darcy,
Poisson, implicit heat steps ``I/dt + A``, upwind advection--diffusion), on a grid
``(n,)*d`` with d in 1..3 and any n >= 2:

* :func:`grid_hierarchy` (cached per shape) builds what depends only on the grid:
  red-black orderings, 2^d cell aggregates (pairs, a triple at an odd end),
  transfer and operator patterns, gather indices;
* :class:`Multigrid` fills the values for one operator (:meth:`Multigrid.setup`:
  Galerkin coarse operators in stencil form, O(N), no allocation) and applies an
  over-corrected V-cycle with red-black Gauss--Seidel smoothing;
* :func:`mg_cg` (SPD) and :func:`mg_gmres` (non-symmetric) are the Krylov drivers
  (SciPy style, true-residual stopping test, non-convergence returned as data);
* :func:`cluster_deflation` (``M.setup(A, deflate=True)``) adds the indicators of
  high-coefficient clusters as an exact coarse space for contrasts >= 1e3;
* high-contrast symmetric operators (:func:`face_jump` >= ``ALGEBRAIC_JUMP``; in 2-D with
  small islands, :func:`~.deflation.small_islands`) keep only
  the first agglomeration and hand its Galerkin operator to classical AMG
  (``Multigrid(shape, coarse="auto")``, the default; ``"structured"`` forces the old cycle).

``M = Multigrid(shape); M.setup(A); x, info = mg_cg(A, b, M=M)`` -- keep ``M`` and call
``setup`` again for the next operator of a sequence on the same grid.
"""

from .deflation import ClusterDeflation, cluster_deflation
from .grid import GridHierarchy, grid_hierarchy
from .hierarchy import (ALGEBRAIC_JUMP, BETA, DEFLATE_JUMP_FRACTION, NU, Multigrid, default_beta, face_jump, infer_shape,
                        jump_fraction, pattern_data)
from .solve import mg_cg, mg_gmres

__all__ = ["ALGEBRAIC_JUMP", "BETA", "DEFLATE_JUMP_FRACTION", "NU", "ClusterDeflation", "GridHierarchy", "Multigrid",
           "cluster_deflation", "default_beta", "face_jump", "grid_hierarchy", "infer_shape", "jump_fraction", "mg_cg",
           "mg_gmres", "pattern_data"]

r"""Per-operator values of the hierarchy and the multigrid V-cycle (the preconditioner).

(The algebraic coarse levels for high-contrast operators and the K-cycle option are
described after the cycle below.)

:class:`Multigrid` holds, for one grid structure (:func:`.grid.grid_hierarchy`), the
values of every level for the current operator: the stacked stencil, red-black
diagonal and off-diagonal blocks, Galerkin coarse operators and the inverse of
the coarsest operator.  :meth:`Multigrid.setup` refills them for a new operator
on the same grid (the structure is reused; only values are computed, into the
level arrays allocated once); :meth:`Multigrid.apply_rb` / :meth:`Multigrid.__call__`
apply one cycle.  A :class:`Multigrid` owns work arrays: one per thread.

Cycle at level :math:`\ell` for :math:`A_\ell x = b` from :math:`x = 0`:

1. pre-smoothing: ``nu`` forward red-black Gauss--Seidel sweeps (red, then black;
   the first red half-sweep from zero is a diagonal scaling);
2. residual: after a sweep ending on black the black residual is zero, so only
   :math:`r_r = b_r - D_r x_r - A_{rb} x_b` is formed and restricted,
   :math:`b_c = P_r^T r_r` (:math:`P` the aggregate indicator, :math:`R = P^T`);
3. over-corrected coarse-grid correction :math:`x \mathrel{+}= \beta_\ell P e_c` with
   :math:`e_c` one cycle of level :math:`\ell+1` for :math:`A_c e_c = b_c` (the exact
   solution on the coarsest level; on level 0, *two* cycles of level 1,
   :math:`e_c = Bb_c + B(b_c - A_1 B b_c)`, see below).  :math:`\beta_\ell > 1` compensates the energy
   that piecewise-constant interpolation loses on diffusion (Hutchinson--Raithby's
   additive correction; Braess's scaled aggregation cycle); it fades to 1 where a
   mass term dominates or, level by level, as advection outweighs diffusion on the modes
   the coarse level corrects (:func:`default_beta`).  Only the red cells are
   corrected: the first post-smoothing half-sweep recomputes the black ones from them;
4. post-smoothing: ``nu`` backward sweeps (black, then red), so that with a
   symmetric :math:`A` the cycle is a symmetric operator and preconditions CG.

Two cycles of level 1 per cycle of level 0 (``level1_cycles``, default ``LEVEL1_CYCLES`` = 2;
structured path only).  Level 1 holds 1/2^d of the cells, so its second cycle adds about
1/2^d of a level-0 cycle's work (plus one product with :math:`A_1`), and it solves level 0's
coarse problem much more accurately: the operator :math:`2B - BA_1B` is fixed and linear,
symmetric, and positive definite when the spectrum of :math:`BA_1` lies in (0, 2) (measured
0.02-1.22 on level 1 of thresholded and lognormal Darcy in 2-D and 3-D; the test suite checks
it).  Measured (interleaved, four to six samples of the sorted sequence, best of three, time per
sample against one level-1 cycle): lognormal 9-10 -> 7 iterations, 0.86-0.91x the time
(128^2-512^2, 32^3-64^3; 0.99x at 128^2); FNO threshold 12/3 0.91-0.99x; contrast 1e3 with cluster deflation
in 3-D 0.95x (64^3), 0.98x (48^3), 1.02x (32^3), and 2-D 128^2 structured 1.00x (fewer
iterations, e.g. 19-26 -> 14-20).  Two cycles on every coarse level (a W-cycle) cost more:
0.92-0.99x instead of 0.90-0.94x on lognormal 256^2 and 48^3, 1.02-1.05x on 48^3 contrast 1e3
with deflation.  On the algebraic path level 1's correction is the classical-AMG cycle, and
two of them measured 1.05-1.15x (see :mod:`.algebraic`), so it keeps one.  The second cycle
also bounds the 3-D iteration counts on one thresholded field refined (band-limited GRF,
contrast 1e3, structured + deflation, four samples, 16^3..64^3): 10.0, 12.2, 12.8, 12.5
instead of 10.5, 13.8, 15.2, 16.0.

The red-black blocks are multiplied in band form (SciPy's DIA kernel, :mod:`.kernels`;
the products of CG with :math:`A` too, :meth:`_Level.matvec`): measured interleaved on
six samples of the sorted sequence, contrast 1e3, with identical counts, 0.93x the cost
per sample in 2-D (128^2-512^2) and 0.79-0.88x in 3-D (32^3-64^3, with deflation).

High-contrast coefficients (``coarse="auto"``).  When the face coefficients of a
symmetric operator jump by ``ALGEBRAIC_JUMP`` (100) or more between consecutive faces
(:func:`face_jump`: thresholded fields with contrast >= 1e3 give contrast/2; smooth
lognormal fields 1.1-4 in 2-D, up to ~1e3 on coarse 3-D grids), only the first
agglomeration is kept: level 1 is smoothed by one red-black sweep per side and reduced
exactly to its red cells (the Schur complement, :func:`red_schur`), which is handed to
classical (Ruge--Stueben) AMG of PyAMG, whose operator-dependent interpolation follows the
coefficient; one of its V-cycles (:mod:`.algebraic`: one Gauss--Seidel sweep each way) is
level 1's coarse correction; in 2-D level 0 then smooths with one
sweep per side (``ALGEBRAIC_NU``: the classical-AMG correction leaves less to smooth; 2-6 more
iterations but 0.91-1.00x the cost at 256^2-512^2).  Measured (bench/multigrid.py, sample 0, CG iterations): the
exact two-grid method of the 2^d agglomeration is nearly n-independent in 2-D
(contrast 1e6: 9, 15, 12 at 64^2..256^2) while the three-grid one is not (17, 22, 34),
so the coarse spaces below level 1 are what fails; the 2-D threshold-1e3 counts
64^2..512^2 go from 14, 19, 26, 41 (V) to 12, 16, 15, 22 (19 with cluster deflation).
In 3-D even the exact two-grid method of the finest agglomeration grows (contrast
1e6: 15, 33, 89 at 16^3..48^3; 9, 12, 19 with cluster deflation): there the
remaining growth is the piecewise-constant interpolation of level 0 itself.  Classical
AMG of the whole operator (operator-dependent interpolation on every level, at several
times the set-up cost) grows as much on these fields: 7, 10, 13, 14 (3-D 1e3, 16^3..64^3)
and 10, 12, 15, 18 (2-D 1e3, 64^2..512^2), against 11, 13, 19, 19 and 12, 14, 15, 19 here
with deflation.  Thresholds of a GRF drawn at each n are not one problem refined: the
truncated GRF gains finer modes, its zero level set finer features.  On one field refined
(thresholds of a band-limited GRF, the identical continuum field on every grid; contrast
1e3 / 1e6) classical AMG below level 0 needs 16, 15, 16, 19 / 13, 13, 14, 16 iterations at
64^2..512^2 (1.27x / 1.23x), with deflation in 3-D 11, 11, 11, 12 / 9, 9, 9, 10 at
16^3..64^3 (1.09x / 1.11x) -- bounded (with the red Schur reduction: 15, 15, 16, 19 / 13, 12,
13, 17, and 10, 11, 11, 12 / 9, 9, 9, 11 in 3-D) -- where the structured levels grow 1.54-2.12x and
classical AMG of the whole operator 1.56-1.80x.
Easy coefficients never reach the jump test and keep the structured cycle unchanged.

Smooth interfaces (2-D: ``ISLAND_CELLS``, ``MAX_ISLANDS_2D``).  What the aggregates miss on
FNO's thresholds are small islands: face-connected components of the high or of the low cells
with fewer than 64 cells (:func:`.deflation.small_islands`), features that fit inside the
aggregates of the first three agglomerations.  Flipping the islands below 64 cells of three FNO
thresholds at 512^2 (contrast 1e3) brings the structured counts from 31-36 to 16-21, while
classical AMG below level 0 stays at 17-21.  A coefficient with high contrast across smooth
interfaces -- channels, inclusions, thresholds of smoother GRFs (alpha 2.5-3) -- has 0-2 of them,
and there the structured cycle needs fewer iterations than the algebraic levels (9-14 against
14-30 at 256^2-512^2).  So in 2-D ``coarse="auto"`` takes the algebraic levels (and ``deflate="auto"``
deflates) only for a high-jump operator with more than ``MAX_ISLANDS_2D`` (2) small islands (FNO's
thresholds: 7-37 at 256^2-512^2); counting them costs 1-2 ms at 256^2 and 3-5 ms at 512^2 (two
labellings).  Measured, the engine over the sorted sequence interleaved against the jump test
alone (median of four or six samples, four runs): thresholds of an alpha = 3 GRF 0.71-0.72x, alpha = 2.5
0.81-0.85x, channels 0.73-0.78x, insulating inclusions 0.62-0.65x (256^2 and 512^2); FNO's
thresholds the same path and counts.  3-D keeps the jump test alone (its engine path below
96^3 is the structured cycle with deflation anyway).

K-cycle (``cycle="K"``; Notay and Vassilevski).  Every intermediate level's problem
is solved by two flexible-CG steps preconditioned by that level's cycle (and the
correction is not over-corrected).  Measured worse than the over-corrected V-cycle
everywhere: 2-D contrast 1e6, 64^2/128^2/256^2: 18/33/55 (V) against 76/201/758
(K, CG iterations to 1e-8 or the float64 floor); lognormal 64^2: 8 against 12.  With
two-grid rates that already degrade at level 1 two inner Krylov steps cannot recover
an exact coarse solve, and the nonlinear preconditioner costs the outer CG its
short recurrence (FCG(10) 20/43 against 17/26 for V).  Kept as an option for the record.

Float32 smoothing of the finest level (``precision``; "auto": in 3-D, and in 2-D for operators
whose faces jump by less than ``ALGEBRAIC_JUMP``, decided per operator).  Once the blocks
were multiplied in band form the finest level's sweeps became bound by the stream of band
values from the shared cache: a float32 half-block product takes 0.45-0.63x the float64 time
(DIA kernel alone, 256^2-512^2 and 48^3-64^3).  A float32 copy of level 0's bands, inverse
diagonal, restriction weights and work vectors (:meth:`_Level.copy_from`, set up by a cast)
smooths level 0; the correction from level 1 is cast down, the cycle's result up, and the
levels below, every Krylov vector and the true residual stay float64.  The cycle then solves
the red rows only to single precision, so CG forms ``A p`` by a full float64 product
(not :meth:`_Level.matvec_after_cycle`, below).  The cycle is symmetric to single precision
(the flexible CG update absorbs it).  Measured (engine over the sorted sequence, interleaved
against float64 smoothing, best of three, identical counts on every sample): 3-D 0.80x at 96^3
(contrast 1e3, classical AMG + deflation), 0.84x / 0.78x at 64^3 (contrast 1e3 / 1e6), 0.85x
(64^3 lognormal), 0.93x (48^3), 0.90x / 0.93x (32^3 contrast 1e3 / lognormal).  In 2-D
smooth fields gain 3-14 % (0.91x lognormal 512^2, 0.94x FNO threshold 512^2, 0.96x at
128^2-256^2; on a second machine, whose core streams from its shared cache at about 11 GB/s:
0.86-0.90x lognormal and 0.88-0.97x FNO threshold at 512^2, 0.95-0.99x lognormal 256^2, three
interleaved runs each) at identical counts (lognormal sigma 1-3 and contrast 4 at 64^2-512^2,
thresholds of contrast 10-200 at 64^2-256^2, three samples each: every count equal), but
contrast 1e3 on the structured path needs more iterations (128^2: 20 -> 25
and 15 -> 20 on two of six samples, 1.06x the time) and the classical-AMG path, with one sweep
per side on level 0, gains nothing (0.98x at 512^2 with deflation, 1.03x at 256^2, where one
sample needed 27 instead of 23).  The lost iterations are the modes nearly constant on
high-coefficient clusters: their residual after smoothing is a small difference of large values
that single precision cannot resolve -- with cluster deflation (which treats them in float64)
the 2-D counts are identical (128^2 structured: 13, 18, 13, 14, 11, 9 both ways; 256^2 classical
AMG: 17, 18, 16, 21, 17, 15 both ways); in 3-D even undeflated counts barely move (24^3 and
32^3, contrast 1e3, twelve samples: one 22 -> 24, the rest identical).  Deflated 2-D (512^2)
gains nothing measurable (0.98x and 1.08x in two interleaved series): with one sweep per side
level 0 is a small share of the cycle, and the full product costs back the rest.  The
classical-AMG levels in float32 too (identical counts at 256^2 and 512^2, contrast 1e3):
0.96-0.99x, within the noise -- not adopted.  Hence the 2-D rule: float64 where the faces jump
by ``ALGEBRAIC_JUMP`` (100) or more, the algebraic levels' test (thresholds of contrast 200 jump
by 100, and keep their counts in float32 too; contrast 1e3 at 256^2, structured: 21, 17, 20 ->
23, 20, 20), deflated or not (on the second machine deflated 512^2 measured 0.95-0.99x at
contrast 1e3 and 0.98x at 1e6, within its noise).  (An earlier float32 *cycle*, before the band form,
saved only 7-10 % per cycle: CSR sweeps were bound by index loads, not bandwidth.)

Measured and not adopted (thresholded Darcy, contrast 1e3).  An index-free compiled red half-sweep (Numba, 3-D 7-point,
red-black positions computed as ``cell >> 1``, no index arrays): 1.19-1.24x faster than
SciPy's ``csr_matvec`` on the same values at 48^3 and 64^3 and no faster with float32
values -- at most ~15 % per iteration, not worth a second code path and a dependency (SciPy's
DIA kernel, index-free too and now used, takes 0.53-0.70x the CSR kernel's time).
``A p`` in CG from the cycle (its last red half-sweep solves the red rows of ``A z = r``, so
``(A z)_r = r_r`` and ``A p = A z + beta A p_old`` needs only the black half,
:meth:`_Level.matvec_after_cycle`) was measured 0.95-0.97x the time in 2-D (256^2-512^2) but
0.99-1.08x with the grid form of cluster deflation in 3-D (updating ``A z`` by ``(A Z) y``
scatters over 30-50 % of the rows); it is now used wherever the cycle's output is the
direction (no deflation, or deflation on split vectors): re-measured 0.92-0.98x the total per
sample at 256^2, 0.95x at 512^2 (sums over the sorted sequence, two runs), 0.98-1.0x at 128^2,
1.0x on lognormal 48^3; counts unchanged (+-1 at the float64 floor of contrast 1e6).  Coarse
cells split by coefficient class (the high and the low cells of each 2^3 block as separate
coarse unknowns, classical AMG below; a prototype with PyAMG's Gauss--Seidel for both
variants, 32^3 and 48^3, beta 1-1.9): 14-48 iterations, the same as whole blocks within
+-2 -- the slow modes are not aggregates straddling the interfaces.  Operator-dependent
interpolation from level 1 by one Jacobi step on the aggregate indicator (smoothed
aggregation's; same prototype, no deflation): 48^3 33-46 -> 30-41 iterations, 32^3 14-22 ->
10-19, for a 29-30-point level-1 operator (60-100 products with A for the Galerkin product,
140-250 for its classical-AMG set-up) -- what classical AMG of the whole operator gains
(13 iterations at 48^3) comes from its fine-level C/F splitting, at its set-up cost (330-610
products at 48^3).  In 2-D, classical AMG from level 2 instead of level 1 (one more structured
agglomeration, a 4x smaller operator to coarsen; interleaved, six samples, contrast 1e3):
256^2 15-24 -> 16-24 iterations with two sweeps per level (one: 21-33), 0.94-1.01x the cost;
512^2 18-25 -> 17-30, 1.00x -- a tie, not adopted; again with the band-form smoother (before the
red Schur reduction): 0.96-0.98x at 256^2 contrast 1e3 with 1-2 sweeps on the structured levels
(iterations 15-24 -> 16-33), but 1.00-1.13x at 512^2 and 1.07-1.17x at 256^2 contrast 1e6 --
not adopted.  Three sweeps per side on the 3-D level 0 (structured + deflation, band form):
2-4 fewer iterations, 1.04x (48^3), 1.11x (64^3), 1.11x (32^3) the cost.  The over-correction ``BETA`` swept again on
the escalated paths (six samples, contrast 1e3, total CG iterations): 1.9, 2.1 and 2.3 within
2 % of each other (256^2 108 / 107 / 108, 512^2 126 / 125 / 123, 48^3 132 / 132 / 130, 64^3
151 / 146 / 149), 1.5 3-11 % more -- flat, kept.  Red-black SOR instead of Gauss--Seidel
(relaxation factor omega in every half-sweep, the cycle still symmetric; four samples): 3-D
48^3 21-22 iterations at omega = 1 against 19-21 at 1.2-1.4 and 23-24 at 1.6, 64^3 23-25
against 21-23 at 1.3; 2-D 256^2 (classical AMG below) 16-19 against 16-19 at 1.1 and 19-22 at
1.3 -- at most 2 iterations fewer, for one more pass per half-sweep and a black residual that
is no longer zero (so restricted too): not adopted.

References
----------
B. R. Hutchinson and G. D. Raithby, "A multigrid method based on the additive
correction strategy", Numer. Heat Transfer 9, 511-537, 1986.

D. Braess, "Towards algebraic multigrid for elliptic problems of second order",
Computing 55, 379-393, 1995.

Y. Notay, "An aggregation-based algebraic multigrid method", Electron. Trans.
Numer. Anal. 37, 123-146, 2010.

Y. Notay and P. S. Vassilevski, "Recursive Krylov-based multigrid cycles", Numer.
Linear Algebra Appl. 15, 473-487, 2008.

J. W. Ruge and K. Stueben, "Algebraic multigrid", in Multigrid Methods, SIAM, 1987.

M. Khalil and P. Wesseling, "Vertex-centered and cell-centered multigrid for interface
problems", J. Comput. Phys. 98, 1-10, 1992.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..families.fv import stencil_pattern
from .algebraic import AlgebraicCoarse
from .deflation import ClusterDeflation, cluster_deflation, small_islands
from .grid import GridHierarchy, _sl, coarse_stencil, grid_hierarchy, red_schur_pattern
from .kernels import block_add as _block_add
from .kernels import spmv_add as _spmv_add

#: defaults, chosen by measurement (see the benchmark bench/multigrid.py and the engine docstring)
BETA = 1.9
NU = 2
#: cycles of level 1 per coarse correction of level 0 on the structured path (see the module docstring)
LEVEL1_CYCLES = 2
#: sweeps on level 0 when the algebraic coarse levels are used below it, per dimension (default NU):
#: with classical AMG below level 0 the 2-D cycle needs less smoothing (interleaved, three runs,
#: bench/mg_policy.py: one sweep instead of two costs 0.91-1.00x at 256^2-512^2, contrast 1e3 and
#: 1e6, with 2-6 more iterations; 0.98-1.02x at 128^2); not in 3-D (1.10x at 80^3)
ALGEBRAIC_NU = {2: 1}
#: non-symmetric operators: the correction from level l + 1 keeps the share 1 / (1 + 2^(l+1) Pe / PECLET_SCALE)
#: of the over-correction BETA - 1, Pe the finest operator's ratio of convective to diffusive coupling
#: (:func:`default_beta`).  Measured (advection-diffusion, nu = 0.01, max face speed V = 0.1-100, FGMRES(40)
#: to 1e-8): at 64^2-512^2 scales 2 and 4 give the same counts within 2 (0.5-1: up to 30 % more), 8 lets
#: V = 30 at 512^2 need 113 iterations against 31-34; at 1024^2 V = 30 takes 49 (2) against 78 (4) -- so 2
PECLET_SCALE = 2.0


#: precisions of the finest level's smoothing (:class:`Multigrid` ``precision``); "auto": ``AUTO_PRECISION[d]``
PRECISIONS = ("auto", "float64", "float32")
#: measured (see the module docstring): float32 pays at identical counts in 3-D and on 2-D fields
#: without sharp jumps; 2-D operators whose faces jump by ``ALGEBRAIC_JUMP`` or more keep float64
#: (undeflated, such fields lose iterations; deflated, they gain nothing measurable)
AUTO_PRECISION = {1: "float64", 2: "float32", 3: "float32"}

#: cycle options of :class:`Multigrid`: "V" (over-corrected V-cycle) or "K" (K-cycle on every
#: intermediate structured level; measured no better than "V" on high contrast, see the class docstring)
CYCLES = ("V", "K")
#: the K-cycle skips its second Krylov step when the first reduced the residual below this factor
KCYCLE_TOL = 0.25
#: coarse-space options: "structured" (2^d agglomeration down to the dense coarsest grid),
#: "algebraic" (agglomeration once, then classical AMG on the first coarse operator), "auto"
COARSE = ("auto", "structured", "algebraic")
#: "auto" turns to the algebraic coarse levels for a symmetric operator whose face coefficients
#: jump by at least this factor between neighbouring faces (see :func:`face_jump`) -- in 2-D only
#: where the coefficient also has small islands (below)
ALGEBRAIC_JUMP = 100.0
#: 2-D: a high-jump operator keeps the structured cycle (and ``deflate="auto"`` does not deflate it)
#: when its coefficient has at most ``MAX_ISLANDS_2D`` islands of fewer than ``ISLAND_CELLS`` cells
#: (face-connected components of the high or of the low cells, :func:`.deflation.small_islands`):
#: smooth interfaces -- channels, inclusions, thresholds of smooth GRFs -- are what the 2^d
#: aggregates represent, small islands are what they straddle (see the module docstring)
ISLAND_CELLS = 64
MAX_ISLANDS_2D = 2

#: ``deflate="auto"`` deflates an operator when at least this share of its pairs of consecutive faces
#: jump by ``ALGEBRAIC_JUMP`` or more (:func:`jump_fraction`; measured: thresholded fields of contrast
#: >= 1e3 5-24 % at 8^3-96^3, slowly falling with n; lognormal with sigma = 3 0.03-0.7 % from 16^3 on,
#: 0.9-4 % at 8^3-12^3; sigma = 1 none; channels and box inclusions 2-18 %, which have no clusters to
#: deflate or gain nothing from them at the same count)
DEFLATE_JUMP_FRACTION = 0.02

#: the over-correction fades to 1 as the interior diagonal excess of the coarse operator
#: (the share of the diagonal not balanced by its row: a mass or reaction term) reaches MASS_FULL
MASS_FULL = 0.2


def default_beta(skewness: float, mass: float = 0.0, level: int = 0) -> float:
    r"""Over-correction of the correction from level ``level + 1``.

    ``skewness``: of the finest operator; ``mass``: the coarse operator's interior diagonal excess.

    Piecewise-constant interpolation loses about half the energy of diffusion on the smooth
    modes (hence ``BETA``) but represents convection and a mass term exactly.  For the modes
    that level :math:`\ell + 1` corrects (wavelengths about :math:`2^{\ell+1} h`) convection
    outweighs diffusion :math:`2^{\ell+1}\,\mathrm{Pe}` times, with
    :math:`\mathrm{Pe} = 2s/(1-s)` the finest operator's ratio of convective to diffusive coupling
    (skewness :math:`s = \sum|a_{ij}-a_{ji}| / \sum|a_{ij}+a_{ji}|`; upwind: the face Péclet
    number, :math:`s = \mathrm{Pe}/(2+\mathrm{Pe})`; the Galerkin operators' skewness stays within
    0.6-1 times the finest one's, measured, so the finest one stands for all).  So :math:`\beta - 1` keeps the diffusive share
    :math:`1/(1 + 2^{\ell+1}\mathrm{Pe}/\texttt{PECLET\_SCALE})` of ``BETA - 1``, and falls linearly
    to 0 as the coarse operator's interior diagonal excess reaches ``MASS_FULL``; the smaller decides.
    A symmetric operator (s = 0) keeps ``BETA`` on every level.
    """
    if skewness >= 1.0:  # no diffusion at all
        diffusive = 0.0
    else:
        diffusive = 1.0 / (1.0 + 2.0 ** (level + 1) * (2.0 * skewness / (1.0 - skewness)) / PECLET_SCALE)
    t_mass = min(max(mass / MASS_FULL, 0.0), 1.0)
    return 1.0 + (BETA - 1.0) * min(diffusive, 1.0 - t_mass)


def pattern_data(A, shape: tuple[int, ...]) -> np.ndarray:
    """The CSR data of ``A`` in :func:`~pdeforge.solvers.families.fv.stencil_pattern` order.

    ``A`` assembled on the fixed pattern (every family does) is read without a copy;
    another CSR layout of the same operator is mapped onto the pattern.
    ``ValueError`` if ``A`` has non-zeros outside the (2d+1)-point pattern.
    """
    pat = stencil_pattern(tuple(shape))
    N = int(np.prod(shape))
    if A.shape != (N, N):
        raise ValueError(f"A has shape {A.shape} but the grid {tuple(shape)} has {N} unknowns")
    if (sp.issparse(A) and A.format == "csr" and A.nnz == len(pat.indices)
            and (A.indices is pat.indices or (np.array_equal(A.indptr, pat.indptr)
                                              and np.array_equal(A.indices, pat.indices)))):
        return np.asarray(A.data, dtype=np.float64)
    C = sp.csr_matrix(A, dtype=np.float64, copy=True)
    C.sum_duplicates()
    rows = np.repeat(np.arange(N), np.diff(pat.indptr))
    data = np.asarray(C[rows, pat.indices]).ravel()
    outside = abs(C).sum() - np.abs(data).sum()
    if outside > 1e-12 * max(np.abs(data).sum(), 1e-300):
        raise ValueError(f"A has non-zeros outside the {2 * len(shape) + 1}-point stencil pattern of grid "
                         f"{tuple(shape)}; the structured multigrid needs a (2d+1)-point operator")
    return data


def infer_shape(A) -> tuple[int, ...]:
    """The grid ``(n,)*d`` (d = 3, 2, 1 tried in turn) whose stencil pattern has A's number of non-zeros."""
    N = A.shape[0]
    nnz = A.nnz if sp.issparse(A) else int(np.count_nonzero(A))
    for d in (3, 2, 1):
        n = round(N ** (1.0 / d))
        if n**d == N and n >= 2 and nnz == (2 * d + 1) * N - 2 * d * n ** (d - 1):
            return (n,) * d
    raise ValueError(f"cannot infer a tensor grid (n,)*d for a matrix of order {N} with {nnz} stored entries; "
                     "pass shape=")


class _Level:
    """Values and work arrays of one level in red-black order.

    The smoother works on the Jacobi-scaled system: ``bt = D^{-1} b`` and the
    scaled negated blocks ``sA_rb = -D_r^{-1} A_rb``, ``sA_br = -D_b^{-1} A_br``, so a
    red half-sweep is ``x_r = bt_r + sA_rb x_b`` (one copy and one product).  The
    residual is formed scaled, ``s_r = D_r^{-1} r_r``, and ``D_r`` is folded into the
    restriction weights ``Rw`` (``b_c = P_r^T D_r s_r``).  Products with ``A`` use the same
    blocks, ``(A v)_r = D_r (v_r - sA_rb v_b)`` (:meth:`matvec`), so no copy of the whole
    operator in red-black order is gathered per set-up (measured: the same time per product
    as its CSR form, and 2.7-7.4 products with A less per set-up, 256^2-512^2 and 48^3-64^3).
    ``sA_rb`` and ``sA_br`` hold the band form (DIA data, one row per diagonal, gathered with
    the padding zero at the end of ``flat``) where the grid has one (:func:`.grid.band_form`),
    else CSR values.
    """

    __slots__ = ("g", "nr", "nb", "N", "Nc", "S", "diag", "inv", "sA_rb", "sA_br", "ndiag", "Rw",
                 "ones_r", "x", "bt", "s", "bc", "ec", "work", "flat", "take_rb", "take_br", "kv", "kw",
                 "kr", "e2", "r2")

    def __init__(self, g, d: int, Nc: int | None, dtype=np.float64):
        """``dtype`` float32: a smoothing copy of a float64 level (:meth:`copy_from`; no stencil of its own)."""
        self.g, self.N, self.nr, self.Nc = g, g.N, g.n_red, Nc
        self.nb = g.N - g.n_red
        # gather positions of the blocks' values in ``flat``: band form where the grid has one, else CSR
        self.take_rb = g.rb[2] if g.rb_band is None else g.rb_band[1]
        self.take_br = g.br[2] if g.br_band is None else g.br_band[1]
        self.sA_rb, self.sA_br = np.empty(self.take_rb.shape, dtype), np.empty(self.take_br.shape, dtype)
        self.ones_r = np.ones(self.nr, dtype)
        self.x, self.bt, self.s = np.empty(g.N, dtype), np.empty(g.N, dtype), np.empty(self.nr, dtype)
        self.bc = None if Nc is None else np.empty(Nc, dtype)
        self.Rw = None if Nc is None else np.empty(self.nr, dtype)
        self.inv = np.empty(g.N, dtype)
        # the coarse correction in this level's precision (levels below are float64)
        self.ec = None if Nc is None or dtype == np.float64 else np.empty(Nc, dtype)
        self.kv = self.kw = self.kr = None  # K-cycle work arrays, allocated on first use
        self.e2 = self.r2 = None  # work arrays of two cycles per coarse correction, allocated on first use
        if dtype != np.float64:
            self.S = self.flat = self.work = self.diag = self.ndiag = None
            return
        self.S = np.zeros((2 * d + 1, g.N))
        # the scaled stencil, followed by one zero (the padding of the band forms)
        self.flat = np.zeros((2 * d + 1) * g.N + 1)
        self.work = self.flat[:-1].reshape(2 * d + 1, g.N)
        self.diag, self.ndiag = np.empty(g.N), np.empty(g.N)

    def copy_from(self, L: _Level) -> None:
        """The smoother's values of the float64 level ``L``, rounded to this level's precision."""
        for name in ("sA_rb", "sA_br", "inv", "Rw"):
            if getattr(self, name) is not None:
                np.copyto(getattr(self, name), getattr(L, name), casting="same_kind")

    def fill(self) -> None:
        """Red-black values from the stacked stencil ``S``."""
        g, d = self.g, (self.S.shape[0] - 1) // 2
        inv = np.divide(-1.0, self.S[d])                 # -D^{-1}, natural order
        np.multiply(self.S, inv, out=self.work)          # -D^{-1} A, stacked
        # mode="clip" (the positions are valid by construction): with ``out`` the default mode
        # gathers into a temporary buffer and copies it, 1.9x the time (measured, 4 x 131072 of 1.3M)
        np.take(self.flat, self.take_rb, out=self.sA_rb, mode="clip")
        np.take(self.flat, self.take_br, out=self.sA_br, mode="clip")
        np.negative(inv, out=inv)
        np.take(inv, g.perm, out=self.inv, mode="clip")
        np.take(self.S[d], g.perm, out=self.diag, mode="clip")
        np.negative(self.diag, out=self.ndiag)
        if self.Nc is not None:
            np.take(self.diag, g.R_red_take, out=self.Rw, mode="clip")

    def rb_add(self, xb: np.ndarray, yr: np.ndarray) -> None:
        """``y_r += sA_rb x_b`` (band form where the grid has one, else CSR)."""
        _block_add((self.nr, self.nb), self.g.rb, self.g.rb_band, self.sA_rb, xb, yr)

    def br_add(self, xr: np.ndarray, yb: np.ndarray) -> None:
        """``y_b += sA_br x_r`` (band form where the grid has one, else CSR)."""
        _block_add((self.nb, self.nr), self.g.br, self.g.br_band, self.sA_br, xr, yb)

    def matvec(self, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``A v`` in red-black order from the smoother's blocks: ``(A v)_r = D_r (v_r - sA_rb v_b)``, black alike.

        ``out`` (not ``v``) receives the product; a new array when None.
        """
        nr = self.nr
        w = np.empty(self.N) if out is None else out
        wr, wb = w[:nr], w[nr:]
        np.negative(v[:nr], out=wr)  # sA_rb v_b - v_r, times -D_r
        self.rb_add(v[nr:], wr)
        np.multiply(wr, self.ndiag[:nr], out=wr)
        np.negative(v[nr:], out=wb)
        self.br_add(v[:nr], wb)
        np.multiply(wb, self.ndiag[nr:], out=wb)
        return w

    def matvec_after_cycle(self, v: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``A v`` into ``out`` for ``v`` a cycle's result for ``b`` (:meth:`Multigrid.apply_rb`).

        The cycle ends with a red half-sweep, which solves the red rows: ``(A v)_r = b_r`` (to
        rounding), so only the black half is multiplied -- half a product.
        """
        nr = self.nr
        np.copyto(out[:nr], b[:nr])
        wb = out[nr:]
        np.negative(v[nr:], out=wb)
        self.br_add(v[:nr], wb)
        np.multiply(wb, self.ndiag[nr:], out=wb)
        return out

    def csr(self) -> sp.csr_matrix:
        """The operator in red-black order as a new CSR matrix with sorted column indices."""
        g = self.g
        A = sp.csr_matrix((np.take(self.S.ravel(), g.full[2]), g.full[1].copy(), g.full[0].copy()),
                          shape=(self.N, self.N))
        A.sort_indices()
        return A

    def dense(self) -> np.ndarray:
        """The operator as a dense matrix in red-black order (coarsest level)."""
        return self.csr().toarray()


def _face_ratios(L: _Level):
    """Per axis: the ratios between the coefficients of consecutive faces, over the cells having both.

    ``S[a]`` (``lower[a]``) of a cell is minus the coefficient of its face towards ``-e_a`` and
    ``S[2d-a]`` that towards ``+e_a``: their ratio is about 1 for smooth coefficients and the
    contrast itself across a sharp interface.
    """
    d = (L.S.shape[0] - 1) // 2
    S = L.S.reshape(-1, *L.g.shape)
    for a in range(d):
        # the cells inside along axis a have both faces unless a coefficient vanishes: ratios of
        # shifted views, no gathers (0.4x the time of masking every cell at 512^2)
        inner = _sl(d, a, slice(1, -1))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.divide(S[a][inner], S[2 * d - a][inner]).ravel()
        np.abs(r, out=r)
        if r.size and not (r.min() > 0 and r.max() < np.inf):  # a zero face: keep the cells having both
            lo, up = np.abs(L.S[a]), np.abs(L.S[2 * d - a])
            both = (lo > 0) & (up > 0)
            r = lo[both] / up[both]
        yield r


def face_jump(L: _Level) -> float:
    """Largest ratio (either way) between the coefficients of two consecutive faces along an axis (1 without such pairs)."""
    jump = 1.0
    for r in _face_ratios(L):
        if r.size:
            jump = max(jump, float(r.max()), float(1.0 / r.min()))
    return jump


def jump_fraction(L: _Level) -> float:
    """Share of the pairs of consecutive faces whose coefficients differ by ``ALGEBRAIC_JUMP`` or more (either way)."""
    jumps = pairs = 0
    for r in _face_ratios(L):
        jumps += np.count_nonzero((r >= ALGEBRAIC_JUMP) | (r <= 1.0 / ALGEBRAIC_JUMP))
        pairs += r.size
    return jumps / pairs if pairs else 0.0


def _symmetry(L: _Level) -> tuple[bool, float]:
    """Whether the level's operator is symmetric, and its skewness ``sum|a_ij - a_ji| / sum|a_ij + a_ji|``.

    Pairs are compared in the stacked stencil by shifted views, no gathers: ``upper[a]`` of
    cell ``i - e_a`` (slot ``2d - a``) against ``lower[a]`` of cell ``i`` (slot ``a``).
    """
    d = (L.S.shape[0] - 1) // 2
    S = L.S.reshape(-1, *L.g.shape)
    pairs = [(S[2 * d - a][_sl(d, a, slice(None, -1))], S[a][_sl(d, a, slice(1, None))]) for a in range(d)]
    if all(np.array_equal(up, lo) for up, lo in pairs):
        return True, 0.0
    diff = sum(float(np.abs(up - lo).sum()) for up, lo in pairs)
    total = sum(float(np.abs(up + lo).sum()) for up, lo in pairs)
    skewness = diff / max(total, 1e-300)
    return skewness <= 1e-12, skewness


def red_schur(L: _Level) -> sp.csr_matrix:
    """The red Schur complement :math:`S_r = A_{rr} - A_{rb} A_{bb}^{-1} A_{br}` of a level (CSR, red positions).

    Values only: the structure and the gathers are the grid's (:func:`.grid.red_schur_pattern`).
    """
    p = red_schur_pattern(L.g.shape)
    d = (L.S.shape[0] - 1) // 2
    a = L.S.ravel()
    terms = np.take(a, p.left)
    terms *= np.take(a, p.right)
    terms /= np.take(L.S[d], p.pivot)
    values = np.add.reduceat(terms, p.starts)
    np.negative(values, out=values)
    values[p.diagonal] += np.take(a, p.centre)
    return sp.csr_matrix((values, p.indices, p.indptr), shape=(p.n, p.n))


def _algebraic(L: _Level) -> AlgebraicCoarse:
    """Classical AMG (:class:`.algebraic.AlgebraicCoarse`) of a level's red Schur complement.

    The level itself is smoothed by :meth:`Multigrid._cycle`, which adds one V-cycle of this
    hierarchy to the red cells as its coarse correction (see :mod:`.algebraic`).
    """
    return AlgebraicCoarse(red_schur(L))


def _interior_excess(L: _Level) -> float:
    """Share of the diagonal not balanced by the row (mass/reaction term), over rows without boundary faces."""
    d = (L.S.shape[0] - 1) // 2
    w = L.g.interior if L.g.interior.any() else np.ones(L.N)
    diag = float(w @ L.S[d])
    return float(w @ L.S.sum(axis=0)) / diag if diag > 0 else 0.0


class Multigrid:
    """Structured cell-agglomeration multigrid preconditioner for one grid; refill with :meth:`setup`.

    Parameters
    ----------
    shape : grid ``(n,)*d`` (any n >= 2, d in 1..3); the structure is built once per
        shape (cached, see :func:`.grid.grid_hierarchy`).
    beta : over-correction factor of the coarse-grid correction (1 = plain Galerkin);
        None (default): per level, :func:`default_beta` of the operator's skewness, the
        level and the coarse operator's interior diagonal excess (decided at each :meth:`setup`).
    nu : red-black Gauss--Seidel sweeps before and after the coarse correction; None
        (default): ``NU`` (2), except ``ALGEBRAIC_NU[d]`` on level 0 of a 2-D operator
        that uses the algebraic coarse levels (decided at each :meth:`setup`).
    cycle : "V" (default) or "K" (K-cycle on every intermediate level; see the module docstring).
    level1_cycles : cycles of level 1 per coarse correction of level 0 on the structured path
        (``LEVEL1_CYCLES``, 2: the second from the first one's residual; see the module docstring).
    coarse : "structured" (2^d agglomeration down to the dense coarsest grid), "algebraic"
        (one agglomeration, then classical AMG of the level-1 operator), or "auto" (default:
        algebraic for a symmetric operator with :func:`face_jump` >= ``ALGEBRAIC_JUMP``; in 2-D
        only if it also has more than ``MAX_ISLANDS_2D`` small islands).
    precision : arithmetic of the finest level's smoothing: "float64", "float32" (its band values
        and vectors rounded to single precision; the levels below, the coarse correction and every
        Krylov vector stay float64) or "auto" (default: ``AUTO_PRECISION``, float32 in 3-D and
        for 2-D operators whose faces jump by less than ``ALGEBRAIC_JUMP``; decided per set-up).

    Attributes
    ----------
    applications : cycles applied so far.  ``setups`` : operators set up so far.
    symmetric : whether the current operator is symmetric (decided in :meth:`setup`).
    skewness : ``sum|a_ij - a_ji| / sum|a_ij + a_ji|`` over the off-diagonal pairs.
    betas : over-correction of the correction from level ``i + 1`` into level ``i``.
    beta : ``betas[0]`` (the finest correction).
    jump : :func:`face_jump` of the finest operator (None unless ``coarse="auto"``, a 2-D ``deflate="auto"``
        or a 2-D ``precision="auto"``).  ``use_algebraic`` : whether the
    algebraic coarse levels are used; ``algebraic`` : their :class:`.algebraic.AlgebraicCoarse` (else None).
    precision : the finest level's smoothing precision for the current operator ("auto" resolved at each
        set-up); ``single`` : its float32 copy
    of level 0 (None in float64, or where level 0 is the coarsest).
    """

    def __init__(self, shape, *, beta: float | None = None, nu: int | None = None, cycle: str = "V",
                 coarse: str = "auto", level1_cycles: int = LEVEL1_CYCLES, precision: str = "auto") -> None:
        if not ((beta is None or 0 < beta < 2.5) and (nu is None or nu >= 1)):
            raise ValueError(f"beta={beta!r}, nu={nu!r}; allowed: 0 < beta < 2.5 or None, integer nu >= 1 or None")
        if level1_cycles not in (1, 2):
            raise ValueError(f"level1_cycles={level1_cycles!r}; allowed: 1, 2")
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}; allowed: {', '.join(map(repr, PRECISIONS))}")
        self.level1_cycles = int(level1_cycles)
        if cycle not in CYCLES:
            raise ValueError(f"cycle={cycle!r}; allowed: {', '.join(map(repr, CYCLES))}")
        if coarse not in COARSE:
            raise ValueError(f"coarse={coarse!r}; allowed: {', '.join(map(repr, COARSE))}")
        self.cycle_option, self.coarse_option = cycle, coarse
        self.grid: GridHierarchy = grid_hierarchy(tuple(shape))
        self.shape = self.grid.shape
        self.beta_option, self.nu_option = beta, None if nu is None else int(nu)
        #: sweeps before and after the coarse correction on every structured level (see ``nu``)
        self.nu = NU if nu is None else int(nu)
        self.skewness = 0.0
        d = len(self.shape)
        gl = self.grid.levels
        self.levels = [_Level(g, d, gl[i + 1].N if i + 1 < len(gl) else None) for i, g in enumerate(gl)]
        self.precision_option = precision
        #: precision of the finest level's smoothing for the current operator ("auto" resolved by
        #: :meth:`setup`; before the first set-up, what "auto" gives an operator without jumps)
        self.precision = AUTO_PRECISION[d] if precision == "auto" else precision
        #: the finest level's float32 smoothing copy while the current operator uses it, else None
        self.single: _Level | None = None
        self._single_level: _Level | None = None  # allocated on first use, kept for later operators
        self.betas = [BETA if beta is None else float(beta)] * (len(gl) - 1)
        self.symmetric: bool | None = None
        self.jump: float | None = None
        #: 2-D: :func:`.deflation.small_islands` of the finest operator where a high jump asked for it, else None
        self.islands: int | None = None
        self.use_algebraic = False
        #: PyAMG hierarchy for the first coarse operator when the algebraic coarse levels are used, else None
        self.algebraic = None
        #: krylov[c]: the coarse problem of level c is solved by the K-cycle (two FCG steps) rather than one cycle
        self.krylov = [False] * len(gl)
        self.coarse_inverse: np.ndarray | None = None
        self.deflation: ClusterDeflation | None = None
        #: :func:`jump_fraction` of the finest operator (None unless set up with ``deflate="auto"``)
        self.jump_fraction: float | None = None
        self.applications = 0
        self.setups = 0

    # ----- set-up: values only ---------------------------------------------------------------------
    def setup(self, A, *, deflate: bool | str = False, coarse: str | None = None) -> Multigrid:
        """Fill every level for the operator ``A`` (Galerkin coarse operators, coarsest inverse).

        ``deflate``: also build the deflation of high-coefficient clusters
        (:mod:`.deflation`; symmetric operators only), used by :func:`.mg_cg`;
        ``self.deflation`` stays None when the operator has no such clusters.  ``"auto"``:
        deflate when :func:`jump_fraction` of the operator (kept as ``self.jump_fraction``)
        is at least ``DEFLATE_JUMP_FRACTION``; in 2-D, where the faces at thresholded
        interfaces are too small a share (0.3-1.6 % at 256^2-1024^2, falling with n), by
        the test of the algebraic coarse levels: :func:`face_jump` (kept as ``self.jump``) at
        least ``ALGEBRAIC_JUMP`` and more than ``MAX_ISLANDS_2D`` small islands (``self.islands``).
        ``coarse``: change the coarse-space option (see the class) for this and later set-ups.
        """
        if deflate not in (True, False, "auto"):
            raise ValueError(f"deflate={deflate!r}; allowed: True, False, 'auto'")
        if coarse is not None:
            if coarse not in COARSE:
                raise ValueError(f"coarse={coarse!r}; allowed: {', '.join(map(repr, COARSE))}")
            self.coarse_option = coarse
        data = pattern_data(A, self.shape)
        levels = self.levels
        L0 = levels[0]
        # a gather into S (then zeros where no neighbour): 0.55-0.75x the time of scattering the CSR data
        np.take(data, L0.g.gather, out=L0.S, mode="clip")
        L0.S.ravel()[L0.g.absent] = 0.0
        last = len(levels) - 1
        for i, L in enumerate(levels):
            L.fill()
            if i == 0:
                self.symmetric, self.skewness = _symmetry(L)
                self.jump = face_jump(L) if self.coarse_option == "auto" or self._jump_decides_precision else None
                self.islands = None
                self._set_precision(L)
                self.use_algebraic = last >= 1 and (
                    self.coarse_option == "algebraic" or (self.coarse_option == "auto" and self.symmetric
                                                          and self.jump >= ALGEBRAIC_JUMP and self._islanded(L)))
                if self.use_algebraic:
                    last = 1
                default_nu = ALGEBRAIC_NU.get(len(self.shape), NU) if self.use_algebraic else NU
                self.nu = default_nu if self.nu_option is None else self.nu_option
                # the K-cycle accelerates every intermediate level solved by a cycle: below the
                # structured levels (0 < c < last) and the algebraic level 1
                self.krylov = [self.cycle_option == "K" and 0 < c and (c < last or self.use_algebraic)
                               and c <= last for c in range(len(levels))]
            if i == last:
                break
            if i + 1 < len(levels):
                C = levels[i + 1]
                coarse_stencil(L.S.reshape(-1, *L.g.shape), C.S.reshape(-1, *C.g.shape))
                if self.krylov[i + 1]:
                    self.betas[i] = 1.0  # the K-cycle's Krylov step chooses the scaling of the correction
                elif self.beta_option is None:
                    self.betas[i] = default_beta(self.skewness, _interior_excess(C), i)
                else:
                    self.betas[i] = float(self.beta_option)
        if self.use_algebraic:
            self.algebraic, self.coarse_inverse = _algebraic(levels[1]), None
        else:
            M = levels[-1].dense()
            inv = np.linalg.inv(M)
            if not np.all(np.isfinite(inv)):
                raise np.linalg.LinAlgError("the coarsest Galerkin operator is singular")
            self.coarse_inverse, self.algebraic = inv, None
        self.jump_fraction = None
        if deflate == "auto" and len(self.shape) == 2:  # interfaces are too thin a share of 2-D faces
            if self.jump is None:
                self.jump = face_jump(L0)
            deflate = self.symmetric and self.jump >= ALGEBRAIC_JUMP and self._islanded(L0)
        elif deflate == "auto":
            self.jump_fraction = jump_fraction(L0)
            deflate = self.jump_fraction >= DEFLATE_JUMP_FRACTION
        self.deflation = cluster_deflation(L0) if deflate and self.symmetric else None
        self.setups += 1
        return self

    def _islanded(self, L0: _Level) -> bool:
        """Whether a high-jump operator needs the coarse spaces of rough coefficients (algebraic levels,
        2-D deflation): in 2-D where it has more than ``MAX_ISLANDS_2D`` small islands (``self.islands``,
        counted once per set-up), in 1-D and 3-D always."""
        if len(self.shape) != 2:
            return True
        if self.islands is None:
            self.islands = small_islands(L0, ISLAND_CELLS, limit=MAX_ISLANDS_2D)
        return self.islands > MAX_ISLANDS_2D

    @property
    def _jump_decides_precision(self) -> bool:
        """Whether the face jump of each operator decides its smoothing precision ("auto" in 2-D)."""
        return self.precision_option == "auto" and len(self.shape) == 2

    def _set_precision(self, L0: _Level) -> None:
        """Resolve the finest level's smoothing precision for the operator just filled into ``L0``.

        "auto": ``AUTO_PRECISION[d]``, except float64 for 2-D operators whose faces jump by
        ``ALGEBRAIC_JUMP`` or more (``self.jump``).  The float32 copy is allocated on first use.
        """
        d, gl = len(self.shape), self.grid.levels
        precision = AUTO_PRECISION[d] if self.precision_option == "auto" else self.precision_option
        if self._jump_decides_precision and self.jump >= ALGEBRAIC_JUMP:
            precision = "float64"
        if precision == "float32" and len(gl) > 1:
            if self._single_level is None:
                self._single_level = _Level(gl[0], d, gl[1].N, np.float32)
            self._single_level.copy_from(L0)
            self.single = self._single_level
        else:
            self.single = None
        self.precision = "float32" if self.single is not None else "float64"

    @property
    def kcycle(self) -> bool:
        """Whether the current operator is preconditioned by K-cycles."""
        return any(self.krylov)

    @property
    def beta(self) -> float:
        return self.betas[0] if self.betas else 1.0

    # ----- application -------------------------------------------------------------------------------
    def _cycle(self, i: int, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One V-cycle from zero for ``A_i x = b`` (red-black order) into ``out`` (default: level i's work array).

        Level 1 of the algebraic path is smoothed here too, by one red-black sweep per side (forward
        and backward Gauss--Seidel in this ordering); its coarse correction is one V-cycle of the
        classical-AMG hierarchy of its red Schur complement, added to the red cells
        (:meth:`.algebraic.AlgebraicCoarse.correct`).
        """
        single = i == 0 and self.single is not None  # the finest level smoothed in float32
        L = self.single if single else self.levels[i]
        x = L.x if out is None or single else out
        algebraic = self.algebraic if i == 1 else None
        if L.Nc is None and algebraic is None:
            np.dot(self.coarse_inverse, b, out=x)
            return x
        g, nr, Nc = L.g, L.nr, L.Nc
        nu = self.nu if algebraic is None else 1
        bt = L.bt
        np.multiply(b, L.inv, out=bt)
        btr, btb = bt[:nr], bt[nr:]
        xr, xb = x[:nr], x[nr:]
        # 1. pre-smoothing, forward sweeps from zero: red (x_r = D_r^{-1} b_r), black, red, ..., black
        np.copyto(xr, btr)
        for sweep in range(nu):
            if sweep:
                np.copyto(xr, btr)
                L.rb_add(xb, xr)
            np.copyto(xb, btb)
            L.br_add(xr, xb)
        # 2. scaled red residual s_r = D_r^{-1} r_r (the black one is zero)
        s = L.s
        if nu == 1:
            s.fill(0.0)  # x_r = bt_r after the single red half-sweep from zero
        else:
            np.subtract(btr, xr, out=s)
        L.rb_add(xb, s)
        # 3. coarse-grid correction of the red cells (the first post-smoothing half-sweep below
        # overwrites x_b from x_r)
        if algebraic is not None:  # x_r += e, e one classical-AMG cycle for S_r e = r_r = D_r s_r
            np.multiply(s, L.diag[:nr], out=s)
            algebraic.correct(s, xr)
        else:  # over-corrected: x_r += beta P_r e_c, b_c = P_r^T D_r s_r
            bc = L.bc
            bc.fill(0.0)
            _spmv_add((Nc, nr), g.R_red, L.Rw, s, bc)
            if self.krylov[i + 1]:
                ec = self._kcycle(i + 1, bc)
            elif i == 0 and self.level1_cycles == 2 and self.levels[1].Nc is not None and not self.use_algebraic:
                ec = self._two_cycles(1, bc)
            else:
                ec = self._cycle(i + 1, bc)
            beta = self.betas[i]
            if beta != 1.0:
                ec *= beta
            if L.ec is not None:  # into this level's precision
                np.copyto(L.ec, ec, casting="same_kind")
                ec = L.ec
            _spmv_add((nr, Nc), g.P_red, L.ones_r, ec, xr)
        # 4. post-smoothing, backward sweeps: black, red, ...
        for _ in range(nu):
            np.copyto(xb, btb)
            L.br_add(xr, xb)
            np.copyto(xr, btr)
            L.rb_add(xb, xr)
        if single and out is not None:
            np.copyto(out, x)
            return out
        return x

    def _two_cycles(self, c: int, b: np.ndarray) -> np.ndarray:
        """Two cycles of level c for ``A_c e = b``: ``e = B b``, then ``e += B (b - A_c e)`` (level c's array ``e2``).

        A fixed linear operator, ``2B - B A_c B``; symmetric when ``B`` is, and positive definite
        when the spectrum of ``B A_c`` lies in (0, 2) (measured 0.02-1.22 on level 1 of thresholded
        and lognormal Darcy, 2-D and 3-D), so the outer cycle stays an SPD preconditioner.
        """
        L = self.levels[c]
        if L.e2 is None:
            L.e2, L.r2 = np.empty(L.N), np.empty(L.N)
        e, r = self._cycle(c, b, L.e2), L.r2
        L.matvec(e, out=r)
        np.subtract(b, r, out=r)
        e += self._cycle(c, r)
        return e

    def _kcycle(self, c: int, b: np.ndarray) -> np.ndarray:
        """Approximate ``A_c^{-1} b`` by two flexible-CG steps preconditioned by the cycle of level c.

        Notay and Vassilevski's K-cycle: ``v1 = B b``, ``w1 = A v1``; if the first step
        already reduces the residual below ``KCYCLE_TOL`` times ``||b||`` it is returned,
        otherwise ``v2 = B r1`` and the A-orthogonalised combination of ``v1, v2`` minimising
        the A-norm of the error.  Returns level c's array ``kv``.
        """
        L = self.levels[c]
        if L.kv is None:
            L.kv, L.kw, L.kr = np.empty(L.N), np.empty(L.N), np.empty(L.N)
        v1, w1, r = L.kv, L.kw, L.kr
        np.copyto(v1, self._cycle(c, b))
        L.matvec(v1, out=w1)
        rho1 = float(v1 @ w1)
        a1 = float(v1 @ b)
        if not rho1 > 0:  # the cycle is not positive on this vector: plain cycle
            return v1
        t1 = a1 / rho1
        np.multiply(w1, -t1, out=r)
        r += b
        if float(r @ r) <= KCYCLE_TOL**2 * float(b @ b):
            v1 *= t1
            return v1
        v2 = self._cycle(c, r)
        w2 = L.matvec(v2)
        gamma, beta, a2 = float(v2 @ w1), float(v2 @ w2), float(v2 @ r)
        rho2 = beta - gamma * gamma / rho1
        if not rho2 > 1e-14 * beta:
            v1 *= t1
            return v1
        v1 *= t1 - gamma * a2 / (rho1 * rho2)
        v1 += (a2 / rho2) * v2
        return v1

    def apply_rb(self, r: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One cycle for a residual of the finest level in red-black order (``M^{-1} r``, new array or ``out``).

        ``out`` (not ``r``) receives the cycle's iterate directly: no copy, no new array per iteration.
        """
        self.applications += 1
        return self._cycle(0, r, np.empty(self.levels[0].N) if out is None else out)

    def __call__(self, r: np.ndarray) -> np.ndarray:
        """``M^{-1} r`` in natural (C) order: one cycle."""
        perm = self.grid.levels[0].perm
        z = np.empty(len(perm), dtype=np.result_type(r, np.float64))
        z[perm] = self.apply_rb(np.ascontiguousarray(r[perm], dtype=np.float64))
        return z

    def matvec_rb(self, v: np.ndarray) -> np.ndarray:
        """``A v`` for ``v`` in red-black order of the finest level."""
        return self.levels[0].matvec(v)

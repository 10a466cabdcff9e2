r"""``mg``: structured-grid multigrid (cell agglomeration, over-corrected V-cycle) as preconditioner.

Method (:mod:`pdeforge.solvers.multigrid`).  For a (2d+1)-point cell-centred operator on the
tensor grid ``spec.shape`` (d = 1, 2, 3; any n >= 2, odd n included):

* coarse cells are 2^d agglomerates of fine cells (pairs along each axis, the last
  one a triple for odd n); :math:`P` is the aggregate indicator, :math:`R = P^T`,
  and the Galerkin operator :math:`A_c = P^T A P` is again a (2d+1)-point stencil,
  computed in stencil form by strided sums (O(N), no sparse products);
* smoothing: ``nu = 2`` red-black Gauss--Seidel sweeps before (red first) and after
  (black first) the coarse correction -- a symmetric cycle for symmetric A (one each on
  level 0 where a 2-D operator has classical AMG below it, see below); level 0 is smoothed
  in float32 in 3-D and for 2-D operators whose faces jump by less than 100x (identical counts,
  0.78-0.97x the cost; :mod:`pdeforge.solvers.multigrid.hierarchy`), everything else in float64;
* the coarse correction is over-corrected, :math:`x \mathrel{+}= \beta_\ell P e_c`:
  :math:`\beta = 1.9` for diffusion (piecewise-constant interpolation under-estimates
  the coarse correction; with :math:`\beta = 1` the count grows with every level),
  fading to 1 level by level as advection outweighs diffusion on the modes that level
  corrects (:math:`\beta_\ell - 1 = 0.9 / (1 + 2^{\ell}\,\mathrm{Pe})`, Pe the finest operator's ratio
  of convective to diffusive coupling, :math:`2s/(1-s)` for the skewness
  :math:`s = \sum|a_{ij}-a_{ji}| / \sum|a_{ij}+a_{ji}|`) or as a mass term (``I/dt``) dominates
  the coarse operator (interior diagonal excess from 0 to 0.2), where the Galerkin
  correction is already nearly exact.  Advection-diffusion (nu = 0.01, max face speed V,
  64^2 / 128^2 / 256^2 / 512^2, FGMRES(40) iterations to 1e-8): V = 10 13, 17, 24, 36 and
  V = 30 14, 16, 21, 31 -- with 1.9 on every level while the finest faces' skewness stayed
  below 0.5, those diverged from 256^2 on (V = 10: 14, 35, none in 2000, 275); V = 100 15, 18,
  21, 28 (before 15, 18, 19, none); V = 0.1-3 within 1-3 iterations of before (V = 3: 15,
  21, 27, 35 against 14, 19, 26, 32);
* level 0's coarse problem is solved by two cycles of level 1 rather than one (the second
  from the first one's residual; a fixed SPD operator): lognormal 9-10 -> 7 iterations and
  0.86-0.91x the time, 0.95-1.02x with deflation at contrast 1e3
  (:mod:`pdeforge.solvers.multigrid.hierarchy`);
* the coarsest grid (<= 64 cells) is solved exactly (dense inverse);
* high contrast (:mod:`pdeforge.solvers.multigrid` ``coarse=`` and :mod:`~pdeforge.solvers.multigrid.deflation`):
  on thresholded fields with contrast >= 1e3 the aggregate coarse spaces lose
  h-independence -- block aggregates straddle clusters of high-coefficient cells that
  touch only through low-coefficient material.  A sequence starts with the structured
  cycle.  Once the median iteration count of the last three symmetric solves (fewer at
  the start) exceeds ``ESCALATE_AFTER[d]``, the following systems escalate, and the
  choice is the one measured cheapest (set-up plus solve) per dimension:
  in 3-D, deflation of the high-coefficient clusters (connected high cells; A-DEF2,
  ``Q + (I - QA) M`` through the thin ``A Z``) with the structured cycle
  (e.g. 48^3, contrast 1e6: 142 -> 25 iterations), from ``ALGEBRAIC_CELLS_3D`` (96^3)
  cells on together with the classical AMG below level 0 described next, whose counts
  grow less; in 2-D, classical (Ruge--Stueben)
  AMG of PyAMG, with operator-dependent interpolation, on the red Schur complement of the
  level-1 Galerkin operator (level 1 reduced exactly to its red cells, as in 3-D)
  where the face coefficients jump by >= 100 and the coefficient has more than two islands
  below 64 cells (high contrast across smooth interfaces -- channels, inclusions, thresholds of
  smoother GRFs -- keeps the structured cycle: 0.62-0.85x the time, see
  :mod:`~pdeforge.solvers.multigrid.hierarchy`) (one lean V-cycle below level 1, and one
  red-black sweep per side on level 0 instead of two: 0.91-1.00x the cost at 256^2-512^2;
  ``algebraic_setups`` counts them).  Measured interleaved on the same six samples of
  a sorted sequence (set-up + solve, medians of the per-sample ratios), classical
  AMG + deflation against structured + deflation in 3-D: 1.28-1.30 (32^3), 1.16-1.57
  (48^3), 1.09-1.18 (64^3), 0.99-1.05 (80^3) at contrast 1e3, 1.01-1.04 at 64^3 1e6
  (``python -m bench.mg_policy``; five runs at 64^3 and three at 80^3 in the latest
  measurement, earlier runs 0.93-1.08 at 64^3 and 0.93 at 80^3; two later runs, the second with
  the A-DEF2 deflation: 1.21-1.29, 1.17, 1.02-1.03, 1.01-1.06 at 32^3..80^3 and 0.86-0.95 at
  64^3 1e6 -- ties from 64^3 on, the rule kept; with the band-form smoother and the red Schur
  reduction: 1.24, 1.18, 1.11, 0.95 at 32^3..80^3 and 0.96 at 64^3 1e6; with two level-1
  cycles, the column-blocked band and ``A p`` from the cycle: 1.14, 1.14, 1.07, 1.12 at
  32^3..80^3, 0.99 at 64^3 1e6 and 0.98 at 96^3 -- so the switch moved from 80^3 to 96^3); structured against
  classical AMG in 2-D: 0.76-0.81 (128^2), 1.04-1.09 (256^2), 1.14-1.25 (512^2) at 1e3, 0.79 /
  1.26-1.31 at 128^2 / 256^2 1e6 (with the two changes: 0.81, 1.11, 1.52 and 1.31 at 256^2
  1e6) -- so 2-D grids of ``ALGEBRAIC_CELLS_2D`` (256^2) cells and more
  start with ``coarse="auto"`` (its jump and island tests decide per operator from the first sample;
  the count rule would spend the first two or three samples of every sequence -- every
  shard -- on the dearer structured cycle), smaller 2-D grids escalate when the structured count passes 30
  (about the break-even point: set-up ~25 + ~8.5 per iteration against ~70-90 + ~10 per
  iteration), 3-D when it passes 20.  2-D grids of ``DEFLATE_CELLS_2D`` (512^2) cells and more
  also deflate the clusters of operators that pass those tests, from the first sample (as 3-D
  below): with deflated CG on split vectors (:mod:`~pdeforge.solvers.multigrid.deflation`)
  classical AMG + deflation against classical AMG alone, six samples of the sorted sequence
  interleaved, costs 1.05x / 1.06x the median sample at contrast 1e3 / 1e6 but 1.02x / 0.93x
  the sum, because it removes the outliers (counts 24, 21, 27, 20, 18, 19 -> 22, 21, 21, 20,
  17, 19 and 27, 20, 35, 18, 16, 17 -> 19, 20, 18, 18, 15, 17); over eight samples of each
  grid it bounds the mean count (below); at 256^2 it stays off (1.095x the median, 1.08x the
  sum; earlier, without the split form, 1.10-1.21x at 128^2-512^2).
  A 3-D sequence does not wait for the counts when its first operator's faces say it: that
  operator is set up with ``deflate="auto"`` (deflation where at least
  ``DEFLATE_JUMP_FRACTION``, 2 %, of the pairs of consecutive faces jump by >= 100 (in 2-D,
  where interface faces are 0.3-1.6 % of all at 256^2-1024^2, the jump test of the algebraic levels):
  thresholded fields 5-24 %, lognormal sigma <= 3 below 1 % from 16^3 on); if it deflates,
  the whole sequence is at its escalation target without counting an escalation (before,
  every 3-D shard solved its first sample with the structured cycle, e.g. 40-48 instead of
  17-22 iterations at 40^3 contrast 1e3), otherwise the counts decide as above (lognormal
  fields, which deflation does not help, stay undeflated);
  ``escalations`` counts the switch (at most one per sequence, none where a 2-D sequence
  started with ``coarse="auto"`` or a 3-D one deflated from its face jumps; it is kept: comparing
  single samples to undo it misjudged, since counts vary 2x between samples of one
  sequence -- hence also the median -- and contrast-1e6 counts include stagnation at
  the float64 floor);
* Krylov: CG on symmetric operators, FGMRES(``restart``) otherwise; convergence on
  the true residual ``||b - A x|| <= max(rtol ||b||, atol)``.

Requirements: ``A`` assembled on :func:`~pdeforge.solvers.families.fv.stencil_pattern` of
``spec.shape`` (every real family is) -- another layout of a (2d+1)-point operator is
accepted at the price of a copy, anything else raises ``ValueError``; real, SPD or
an M-matrix (upwind advection--diffusion).  Not for indefinite or complex operators.

Reuse along the sorted sequence.  The grid structure (orderings, aggregates,
patterns, gather indices) depends only on the shape: it is built once per shape
and process (``pattern_builds`` counts the structures this engine requested for a
new shape).  Each new operator only refills values (``setups``; a few SpMV worth);
the same operator object again (e.g. Poisson) is not set up again (``setup_reuses``).
``cycles`` counts V-cycles applied; ``deflations`` the set-ups that deflated
clusters; ``escalations`` and ``algebraic_setups`` as above.  ``solve(A, b, x0=...)`` accepts a warm start
(``generate`` does not pass the previous sample's solution: along sorted thresholded sequences
its residual is 1e2-3e3 times ``||b||`` and costs 1-3 iterations more; lognormal 3-8 times, no gain).
Nor does it recycle Krylov subspaces (SKR's idea) between samples: measured on thresholded
Darcy of contrast 1e3 (six samples of the sorted sequence, rtol 1e-8, the engine's paths:
structured + cluster deflation at 32^3 and 48^3, classical AMG below level 0 at 256^2),
deflating each sample's CG with the 4, 8 or 12 Ritz vectors of the smallest Ritz values of the
previous sample's preconditioned operator (A-DEF2 beside the clusters) left every count as it
was (15-20, 21-24 and 15-24 iterations; +-1 on two of 45 solves).  Even the Ritz vectors of
the sample's *own* earlier solve, which no sequence has, save only 1-6 (32^3), 3-8 (48^3) and
1-9 (256^2) iterations, for k = 4-12 more products with A per sample and about 3k vector
passes per iteration: the preconditioned spectrum has no few persistent outliers -- its
slowest modes are local at interfaces that move between neighbours (:mod:`~pdeforge.solvers.multigrid.deflation`).

Speed (``python -m bench.multigrid --large --no-growth``, one thread, rtol 1e-8): set-up plus
solve per sample over the time of 100 CSR products with A, on three 2-core machines (the
reference's cost per stored non-zero ``ns/nnz``, which moves with the machine and with whether the
matrix stays in cache, beside them; the grids: contrast 1e3; ``x amg``: faster than ``amg`` at 1e3):

======================== ========= ========= ========= ========= ========= ========= ========= ========= ========
machine                  ns/nnz    128^2     256^2     512^2     32^3      48^3      64^3      easy rows x amg
======================== ========= ========= ========= ========= ========= ========= ========= ========= ========
EPYC, 32 MiB L3 (latest) 0.59-1.56 1.64      1.68      1.55      1.47      1.69      1.38      0.51-1.03 6.2-9.9
11 GB/s per core         0.8-1.5   1.91      1.92      2.87      1.38      1.88      2.54      0.73-1.23 4.3-9.7
fast cache (four runs)   0.42-0.91 1.33-1.54 1.54-1.57 1.65-2.29 1.29-1.42 1.64-1.81 1.45-2.02 0.55-1.10 5.7-10.6
======================== ========= ========= ========= ========= ========= ========= ========= ========= ========

"easy rows": lognormal and FNO's threshold (12/3), where mg is 2.4-7.1x faster than ``amg``;
contrast 1e6 1.50-4.29x.  A sample at contrast 1e3 costs 134-167 products with A on the engine's
paths (``python -m bench.mg_policy``, 128^2-512^2 and 32^3-80^3; 166-230 at 1e6): 17-25 iterations
of a cycle worth ~5.5-8 products with the CG step, plus a set-up of 25-55.  The ratio follows the
memory system more than the code: at 512^2 and 64^3 level 0's bands and vectors (about 25 MB)
leave the per-core cache, and on a machine that streams from its shared cache at 11 GB/s per core
every half-sweep pays for it (mg 50-106 ns per cell and iteration there, against 36-70 on the
latest and 22-30 on the fast one), while the CSR reference streams its ~20 MB nearly as fast as
at 256^2.  Advection-diffusion (64^2-256^2, speed 1 / 10 / 100): 1.2-1.8x / 3.0-4.9x / 6.3-21x
faster than ``amg``.

Iteration counts are bounded in n wherever the coefficient has a limit as n grows, and FNO's thresholds in 3-D
have none.  A GRF of covariance :math:`(-\Delta + \tau^2)^{-\alpha}` on :math:`\mathbb R^d` is
Hoelder continuous with exponent :math:`H = \alpha - d/2`; for H < 1 its level sets have dimension
d - H, so the interface a grid of n cells resolves grows like :math:`n^{1-H}`.  FNO's alpha = 2
gives H = 1/2 in 3-D -- a fractal interface, area ~ sqrt(n) (measured n^0.53 over 16^3..128^3:
8.3, 12.2, 17.6, 25.2 in units of the unit cube's face) -- and the borderline H = 1 in 2-D
(n^0.08-0.15: 6.6 -> 9.1 over 64^2..1024^2); alpha = 3, or one band-limited field refined, has
smooth interfaces that converge.  ``python -m bench.multigrid --no-darcy`` (467 s; mean counts of
four samples per grid, 64^2..512^2 and 16^3..64^3, contrast 1e3 / 1e6 to rtol 1e-8 / 1e-6):

* converging interfaces -- thresholds of an alpha = 3 GRF drawn at each n: every mg variant
  1.10-1.35x (2-D structured cycle 8.0 -> 10.0 / 6.5 -> 8.2; 3-D structured + deflation, the
  engine's path, 8.2 -> 10.0 / 6.8 -> 8.0), fresh classical AMG 1.46-1.50x, fresh SA 1.33-1.78x;
  one band-limited field: 2-D classical AMG below level 0 + deflation 1.29x / 1.24x, 3-D
  structured + deflation 10.0, 12.2, 12.8, 12.5 (1.25x) / 9.0, 11.0, 12.0, 11.8 (1.31x);
  lognormal 7-7.8 and FNO's contrast 4 7-8 iterations on every grid, 2-D and 3-D;
* FNO's thresholds (alpha = 2) drawn at each n: in 2-D classical AMG below level 0 + deflation
  (the engine's path at 512^2) 14.0, 15.0, 17.0, 20.2 / 12.8, 13.5, 16.0, 18.0 (1.45x / 1.41x;
  the engine's own paths, structured at 64^2, read 11.8 -> 20.2 and 13.8 -> 18.0); in 3-D the
  engine's path (structured + deflation below 96^3) 10.0, 15.0, 19.0, 21.2 (2.12x) / 9.0, 14.0,
  19.2, 22.0 (2.44x), following the interface area (2.13x): 1.15-1.25 iterations per unit of
  area from 16^3 to 96^3 (27 iterations at 96^3, area 22.6, three samples).  Every method follows it
  (classical AMG of the whole operator 1.96x / 2.09x; classical AMG below level 0 + deflation
  1.93x / 2.03x; a K-cycle on the structured levels 13.0 -> 26.3 over 16^3..96^3; nu = 3 or 4
  sweeps lower every count and keep the ratio, 2.24-2.27x; PyAMG smoothed aggregation grows
  faster, 6.2x / 32x): each n is a harder problem, not a finer grid of the same one.

Single samples of one grid differ by up to 2x (16-46 iterations at 512^2 contrast 1e6), hence the
means.  What deflation leaves in 3-D is local to the interfaces (:mod:`~pdeforge.solvers.multigrid.deflation`),
and in 2-D an exact solve of the red Schur complement (the exact two-grid method of the first
agglomeration) still grows 13.8 -> 18.8 over 64^2..512^2 on FNO's fields: the growth sits in level
0's piecewise-constant aggregation at the interfaces, which classical AMG's operator-dependent
interpolation on every level does not escape either.  Measured and not adopted: two V-cycles per
classical-AMG correction with two sweeps on level 0 (9.6 -> 15.5 over 64^2..512^2, 1.61x; 1.04-1.05x
the cost); a K-cycle on the classical-AMG levels (a non-linear preconditioner under plain CG: up to
61 iterations at 512^2 where the V-cycle needs 24).
With contrast 1e6 and n >= 128 (2-D), rtol 1e-8 can lie below the float64 floor of
||b - A x|| for any solver (reported as ``info = -2`` with the floor in the message,
never raised; the growth table counts contrast 1e6 to rtol 1e-6).

References: :mod:`pdeforge.solvers.multigrid.hierarchy` (additive correction, aggregation AMG,
over-correction) and Trottenberg, Oosterlee and Schüller, "Multigrid", Academic Press, 2001
(red-black Gauss--Seidel, cell-centred transfers).
"""

from __future__ import annotations

import time

import numpy as np

from ..capabilities import DEFINITE, TENSOR_STENCIL
from ..multigrid import Multigrid, infer_shape, mg_cg, mg_gmres
from .base import Engine, residual_result
from .registry import register

#: per dimension: when the median count of the last ``ESCALATE_WINDOW`` symmetric solves exceeds
#: this, the rest of the sequence escalates (healthy counts are 8-12; high-contrast fields 13-300):
#: cluster deflation in 3-D, the algebraic coarse levels where the face coefficients jump
#: (``coarse="auto"``) in 1-D and 2-D (see the module docstring for the measurements; a 2-D
#: operator without small islands stays structured there, as ``coarse="auto"`` decides)
ESCALATE_AFTER = {1: 20, 2: 30, 3: 20}
ESCALATE_WINDOW = 3
#: 2-D grids with at least this many cells start with ``coarse="auto"``: the jump and island tests of
#: :class:`Multigrid` send high-jump operators with small islands to classical AMG below level 0 from the first
#: sample on (measured cheaper than the structured cycle there: see the module docstring), easy
#: ones keep the structured cycle; below it a sequence starts structured and escalates by count
ALGEBRAIC_CELLS_2D = 256**2
#: 2-D grids with at least this many cells also deflate high-coefficient clusters where the first
#: operator's faces say so (``deflate="auto"``, as 3-D): at 512^2 the same total time over a sorted
#: sequence (0.93-1.02x) and no outlier counts (35 -> 18); at 256^2 1.08x (see the module docstring)
DEFLATE_CELLS_2D = 512**2
#: 3-D grids with at least this many cells escalate to classical AMG below level 0 as well as
#: deflation (a tie at 96^3: 0.98x; dearer below: 1.12x at 80^3, 1.07x at 64^3, 1.14x at 32^3-48^3;
#: with float32 smoothing in 3-D, python -m bench.mg_policy: 1.04x at 96^3, 1.11x at 80^3, 1.07x at
#: 64^3 (0.90x at contrast 1e6), 1.22-1.23x at 32^3-48^3 -- the crossover is at 96^3 or just above)
ALGEBRAIC_CELLS_3D = 96**3


@register
class MgEngine(Engine):
    name = "mg"
    requires = (TENSOR_STENCIL, DEFINITE)

    def __init__(self, options, family=None, spec=None, **kwargs) -> None:
        super().__init__(options, family, spec, **kwargs)
        self._M: Multigrid | None = None
        self._A = None
        self._deflate: bool | str = False  # "auto" (3-D; 2-D from DEFLATE_CELLS_2D) until the first operator's face jumps decide
        self._coarse = "structured"  # "auto" once escalated
        self._A_config = None  # (deflate, coarse) of the operator set up last
        self._may_escalate = True  # False once escalated, or where the sequence started at its target
        self._recent: list[int] = []  # iteration counts of the last symmetric solves

    def _preconditioner(self, A) -> Multigrid:
        shape = tuple(self.spec.shape) if self.spec is not None else infer_shape(A)
        if self._M is None or self._M.shape != shape:
            self._M, self._A = Multigrid(shape), None
            self.counters["pattern_builds"] += 1
            if len(shape) == 2 and int(np.prod(shape)) >= ALGEBRAIC_CELLS_2D:
                self._coarse, self._may_escalate = "auto", False
                if int(np.prod(shape)) >= DEFLATE_CELLS_2D:
                    self._deflate = "auto"  # the first operator decides (see the module docstring)
            elif len(shape) == 3 and self._may_escalate:
                self._deflate = "auto"  # the first operator decides (see the module docstring)
        config = (self._deflate, self._coarse)
        if A is self._A and self._A_config == config:
            self.counters["setup_reuses"] += 1
        else:
            self._M.setup(A, deflate=self._deflate, coarse=self._coarse)
            if self._deflate == "auto":  # the first operator decides for the sequence (see the module docstring)
                self._deflate = self._M.deflation is not None
                config = (self._deflate, self._coarse)  # what this set-up amounts to
                if self._deflate:  # deflated from its face jumps: the rest of the sequence at its escalation target
                    self._may_escalate = False
                    if len(shape) == 3 and self._M.grid.levels[0].N >= ALGEBRAIC_CELLS_3D:
                        self._coarse = "auto"
            self._A, self._A_config = A, config
            self.counters["setups"] += 1
            if self._M.use_algebraic:
                self.counters["algebraic_setups"] += 1
            if self._M.deflation is not None:
                self.counters["deflations"] += 1
        return self._M

    def solve(self, A, b, x0=None):
        t0 = time.perf_counter()
        M = self._preconditioner(A)
        setup = time.perf_counter() - t0
        o = self.options
        if M.symmetric:
            x, _, kres = mg_cg(A, b, x0, rtol=o.rtol, atol=o.atol, maxiter=o.maxiter, M=M,
                               callback=self.callback(), full_output=True)
            krylov = "CG"
        else:
            x, _, kres = mg_gmres(A, b, x0, rtol=o.rtol, atol=o.atol, maxiter=o.maxiter, M=M, m=o.restart,
                                  callback=self.callback(), full_output=True)
            krylov = f"FGMRES({o.restart})"
        self.counters["cycles"] += kres.precond_applies
        its = kres.iterations
        if M.symmetric and self._may_escalate:
            self._recent = (self._recent + [its])[-ESCALATE_WINDOW:]
            if float(np.median(self._recent)) > ESCALATE_AFTER[len(M.shape)]:
                # from the next system on (see the module docstring)
                self._may_escalate = False
                self.counters["escalations"] += 1
                if len(M.shape) == 3:
                    self._deflate = True
                    if M.grid.levels[0].N >= ALGEBRAIC_CELLS_3D:
                        self._coarse = "auto"
                else:
                    self._coarse = "auto"
        deflated = f", {M.deflation.k} clusters deflated" if M.symmetric and M.deflation is not None else ""
        algebraic = ", classical AMG below level 1" if M.use_algebraic else ""
        single = ", float32 smoothing on level 0" if M.single is not None else ""
        message = (f"structured MG (beta={M.beta:.2f}, nu={M.nu}{single}{algebraic}{deflated}) + {krylov}, "
                   f"{its} iterations")
        if not kres.converged:
            message += f": {kres.message}"
        return x, residual_result(self.name, A, b, x, t0, iterations=its, matvecs=kres.matvecs + 1,
                                  precond_applies=kres.precond_applies, setup=setup,
                                  converged=kres.converged, message=message)

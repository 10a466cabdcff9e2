"""What depends only on the grid: aggregates, red-black orderings, transfer and operator patterns.

Everything here is a pure function of the grid shape, built once and cached
(:func:`grid_hierarchy`); per sample only values are computed
(:mod:`.hierarchy`).  All arrays are read-only.

Level layout.  Unknowns of a level are stored in *red-black order*: the cells with
even index sum (red) first, then the odd ones (black), each in C order.  With a
(2d+1)-point stencil every neighbour of a red cell is black and vice versa, so

.. math::  A = \\begin{pmatrix} D_r & A_{rb} \\\\ A_{br} & D_b \\end{pmatrix}

and a red (black) Gauss--Seidel half-sweep is one product with :math:`A_{rb}`
(:math:`A_{br}`) and a diagonal scaling.  The CSR structures of :math:`A_{rb}`,
:math:`A_{br}` (and of the whole operator in red-black order) are fixed here
together with *gather* indices into the stacked stencil values of the level (see
:class:`LevelGrid`), so a new operator only costs ``np.take``.  The two blocks are
also banded: within a colour the cells keep their C order, so the neighbour along
an axis sits at a constant offset in the other colour's numbering (two offsets
along the last axis when its length is even, by row parity).  Their *band form*
(:func:`band_form`, SciPy's DIA layout with 2d+1 or fewer diagonals) is what the
smoother multiplies with (:mod:`.kernels`).

Aggregation.  Along each axis cells are paired, ``{0,1}, {2,3}, ...``; for odd
``n`` the last aggregate is the triple ``{n-3, n-2, n-1}``.  A coarse cell is the
tensor product of the 1-D aggregates, so the coarse grid is ``n // 2`` per axis and
the coarse operator keeps the (2d+1)-point pattern (see :func:`coarse_stencil`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from ..families.fv import stencil_pattern

#: a level with at most this many unknowns is solved directly (dense factorisation)
COARSE_SIZE = {1: 64, 2: 64, 3: 64}
#: a block is multiplied in band form when its diagonals hold at most this many times its entries
BAND_FILL = 1.5
#: a band whose values and vectors take more than this many bytes is multiplied in column blocks of
#: about ``BAND_BLOCK_BYTES`` each (see :func:`band_blocks`)
BAND_SPLIT_BYTES = 5 * 2**20
BAND_BLOCK_BYTES = 2**20


def _frozen(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _sl(d: int, axis: int, index) -> tuple:
    return tuple(index if b == axis else slice(None) for b in range(d))


def pair_sum(x: np.ndarray, axis: int) -> np.ndarray:
    """Sum over the 1-D aggregates along ``axis``: pairs, the last one a triple for odd length."""
    n, d = x.shape[axis], x.ndim
    m = 2 * (n // 2)
    y = x[_sl(d, axis, slice(0, m, 2))] + x[_sl(d, axis, slice(1, m, 2))]
    if n % 2:
        y[_sl(d, axis, -1)] += x[_sl(d, axis, n - 1)]
    return y


def block_sum(x: np.ndarray, skip: int | None = None) -> np.ndarray:
    """Sum of ``x`` over each coarse cell (tensor product of the 1-D aggregates), axis ``skip`` excepted."""
    for a in range(x.ndim):
        if a != skip:
            x = pair_sum(x, a)
    return x


def coarse_stencil(S: np.ndarray, out: np.ndarray) -> None:
    r"""Galerkin coarse operator :math:`P^T A P` for piecewise-constant :math:`P`, in stencil form.

    ``S`` (2d+1, *shape) stacks the stencil slots in pattern order (``lower[0..d-1]``
    as slots ``0..d-1``, the diagonal as slot ``d``, ``upper[a]`` as slot ``2d-a``;
    absent neighbours hold 0); ``out`` (2d+1, *coarse_shape) receives the coarse one.
    With :math:`P` the aggregate indicator, :math:`(P^TAP)_{IJ} = \sum_{i\in I, j\in J} a_{ij}`:
    the coarse off-diagonal towards :math:`I + e_a` sums the fine ``upper[a]`` over the
    last layer of :math:`I` along ``a``; the coarse diagonal sums the block's diagonal
    and every connection internal to the block.  Exact for non-symmetric stencils.
    """
    d = S.ndim - 1
    diag = block_sum(S[d])
    for a in range(d):
        lower, upper = S[a], S[2 * d - a]
        n = lower.shape[a]
        m = 2 * (n // 2)
        # connections inside the 1-D aggregates along a: (2k -> 2k+1) and back; triple: (n-2 <-> n-1)
        inner = upper[_sl(d, a, slice(0, m, 2))] + lower[_sl(d, a, slice(1, m, 2))]
        if n % 2:
            inner[_sl(d, a, -1)] += upper[_sl(d, a, n - 2)] + lower[_sl(d, a, n - 1)]
        diag += block_sum(inner, skip=a)
        # first and last layer of each aggregate along a
        first = lower[_sl(d, a, slice(0, m, 2))]
        last = upper[_sl(d, a, slice(1, m, 2))]
        if n % 2:
            last = last.copy()
            last[_sl(d, a, -1)] = upper[_sl(d, a, n - 1)]
        out[a] = block_sum(first, skip=a)
        out[2 * d - a] = block_sum(last, skip=a)
    out[d] = diag


def aggregates(n: int) -> np.ndarray:
    """Aggregate of each of the ``n`` cells of an axis: pairs, the last a triple when n is odd."""
    return np.minimum(np.arange(n) // 2, n // 2 - 1)


@dataclass(frozen=True)
class LevelGrid:
    """Structure of one level.

    Values live in a *stacked* stencil array ``S`` of shape (2d+1, N) (slot order of
    :func:`~pdeforge.solvers.families.fv.stencil_pattern`, natural cell order, absent
    neighbours 0); every ``take`` below indexes ``S.ravel()``.  CSR triples are
    ``(indptr, indices, take)``; rows and columns in red-black positions.  CSR structures
    are int32 (SciPy's kernels take them as they are); gather and scatter positions are
    ``intp``: NumPy converts narrower indices on every ``take`` or fancy assignment, which
    measured 2.7-8x slower than the gather itself.
    """

    shape: tuple[int, ...]
    N: int
    n_red: int
    perm: np.ndarray        # red-black position -> natural index
    gather: np.ndarray      # (2d+1, N): position in the pattern-ordered CSR data of each entry of S
    absent: np.ndarray      # flat positions in S without a neighbour (their ``gather`` is 0; S holds 0 there)
    rb: tuple               # A_rb: red rows, black columns (0-based among black)
    br: tuple               # A_br: black rows, red columns
    full: tuple             # the whole operator in red-black order
    interior: np.ndarray    # (N,) 1.0 at the cells without a boundary face, else 0.0
    # transfers to the next coarser level (None on the coarsest): CSR (indptr, indices), values 1
    R_red: tuple | None = None    # coarse x red    (restriction of the red residual)
    P_red: tuple | None = None    # red x coarse    (prolongation, = R_red^T)
    P_black: tuple | None = None  # black x coarse
    R_red_take: np.ndarray | None = None  # R_red's column indices as gather positions (intp)
    pos: np.ndarray | None = None  # natural index -> red-black position (the inverse of perm)
    # band forms of rb and br (see band_form), None where a block is not banded enough
    rb_band: tuple | None = None
    br_band: tuple | None = None


def _offsets(shape):
    d = len(shape)
    strides = [int(np.prod(shape[a + 1:])) for a in range(d)]
    off = np.zeros(2 * d + 1, dtype=np.int64)
    for a in range(d):
        off[a], off[2 * d - a] = -strides[a], strides[a]
    return off


def _block(mask, rows_nat, offsets, col_pos, shift, keep_diag):
    """CSR triple of the rows ``rows_nat`` (natural indices) restricted to their existing slots."""
    N, k = mask.shape
    d = (k - 1) // 2
    m = mask[rows_nat].copy()
    if not keep_diag:
        m[:, d] = False
    counts = m.sum(axis=1)
    indptr = np.r_[0, np.cumsum(counts)].astype(np.int32)
    r, slot = np.nonzero(m)  # row-major: slots ascending = columns ascending
    cell = rows_nat[r]
    cols = col_pos[cell + offsets[slot]] - shift
    return _frozen(indptr, cols.astype(np.int32), (slot * N + cell).astype(np.intp))


def band_form(block: tuple, n_rows: int, n_cols: int, sentinel: int) -> tuple | None:
    """DIA form ``(offsets, take, blocks)`` of the CSR triple ``block`` of an ``n_rows x n_cols`` block.

    ``take[k, j]`` is the gather position of the entry ``(j - offsets[k], j)`` (SciPy's DIA
    layout: values indexed by column) and ``sentinel`` where diagonal ``k`` has no entry in
    column ``j``, so that gathering from the stacked stencil followed by one zero fills the
    band.  None when the band would store more than ``BAND_FILL`` times the block's entries.
    ``blocks``: :func:`band_blocks` (None for a band that fits the cache).
    """
    indptr, indices, take = block
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(indptr))
    offsets, k = np.unique(indices.astype(np.int64) - rows, return_inverse=True)
    if len(offsets) * n_cols > BAND_FILL * max(len(indices), 1):
        return None
    band = np.full((len(offsets), n_cols), sentinel, dtype=np.intp)
    band[k.ravel(), indices] = take
    offsets = offsets.astype(np.int32)
    return _frozen(offsets, band) + (band_blocks(offsets, n_rows, n_cols),)


def band_blocks(offsets: np.ndarray, n_rows: int, n_cols: int) -> tuple | None:
    r"""Column blocks ``(c0, c1, r0, r1, local_offsets)`` of a band too large for the core's cache, else None.

    SciPy's DIA kernel runs diagonal by diagonal, so it streams ``y`` and ``x`` once per
    diagonal: while values and vectors fit the per-core cache that is free, beyond it every
    pass goes to the shared cache or memory.  Columns ``[c0, c1)`` only reach rows
    ``[c0 - max(offsets), c1 - min(offsets))``; a block multiplied on its own is the DIA product
    of that window with offsets shifted by ``r0 - c0``.  Measured (red-black block of level 0,
    one core; 2 MiB L2): 0.56-0.67x the time of the whole-band kernel at 512^2, 1024^2, 64^3 and
    80^3, 0.88x at 56^3, but 1.1-1.3x where the band fits (384^2 and smaller, 48^3 and smaller)
    -- hence blocks only above ``BAND_SPLIT_BYTES``.
    """
    nd = len(offsets)
    if (nd + 2) * n_cols * 8 <= BAND_SPLIT_BYTES:
        return None
    width = max(64, BAND_BLOCK_BYTES // ((nd + 2) * 8))
    lo, hi = int(offsets.min()), int(offsets.max())
    blocks = []
    for c0 in range(0, n_cols, width):
        c1 = min(c0 + width, n_cols)
        r0, r1 = max(0, c0 - hi), min(n_rows, c1 - lo)
        if r1 > r0:
            blocks.append((c0, c1, r0, r1, _frozen((offsets + (r0 - c0)).astype(np.int32))[0]))
    return tuple(blocks)


def _indicator(rows, cols, n_rows, n_cols):
    """CSR (indptr, indices) of the 0/1 matrix with ones at (rows, cols)."""
    M = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_rows, n_cols))
    M.sort_indices()
    return _frozen(M.indptr.astype(np.int32), M.indices.astype(np.int32))


def _rb_order(shape):
    parity = np.indices(shape).sum(axis=0).ravel() % 2
    perm = np.r_[np.flatnonzero(parity == 0), np.flatnonzero(parity == 1)]
    pos = np.empty(len(perm), dtype=np.int64)
    pos[perm] = np.arange(len(perm))
    return perm, pos, int(np.count_nonzero(parity == 0))


def _level(shape: tuple[int, ...], coarse: bool) -> LevelGrid:
    d = len(shape)
    N = int(np.prod(shape))
    mask = stencil_pattern(shape).mask
    perm, pos, n_red = _rb_order(shape)
    off = _offsets(shape)
    row, slot = np.nonzero(mask)
    gather = np.zeros((mask.shape[1], N), dtype=np.intp)
    gather[slot, row] = np.arange(len(row))
    absent = np.flatnonzero(~mask.T.ravel())
    rb = _block(mask, perm[:n_red], off, pos, n_red, False)
    br = _block(mask, perm[n_red:], off, pos, 0, False)
    full = _block(mask, perm, off, pos, 0, True)
    interior = mask.all(axis=1).astype(np.float64)
    _frozen(perm, pos, gather, absent, interior)
    sentinel = mask.shape[1] * N  # one zero after the stacked stencil (see band_form)
    bands = {"rb_band": band_form(rb, n_red, N - n_red, sentinel),
             "br_band": band_form(br, N - n_red, n_red, sentinel)}
    if coarse:
        return LevelGrid(tuple(shape), N, n_red, perm, gather, absent, rb, br, full, interior, pos=pos, **bands)
    cshape = tuple(n // 2 for n in shape)
    _, cpos, _ = _rb_order(cshape)
    idx = np.indices(shape).reshape(d, N)
    agg = cpos[np.ravel_multi_index(tuple(aggregates(n)[i] for n, i in zip(shape, idx)), cshape)]
    Nc = int(np.prod(cshape))
    red, black = perm[:n_red], perm[n_red:]
    P_red = _indicator(np.arange(n_red), agg[red], n_red, Nc)
    R_red = _indicator(agg[red], np.arange(n_red), Nc, n_red)
    P_black = _indicator(np.arange(N - n_red), agg[black], N - n_red, Nc)
    return LevelGrid(tuple(shape), N, n_red, perm, gather, absent, rb, br, full, interior,
                     R_red, P_red, P_black, _frozen(R_red[1].astype(np.intp))[0], pos, **bands)


@dataclass(frozen=True)
class RedSchurPattern:
    r"""Structure of the red Schur complement :math:`S_r = A_{rr} - A_{rb} A_{bb}^{-1} A_{br}` of a level.

    With the stencil :math:`a` of the level, :math:`(S_r)_{ik} = a_{ii}\delta_{ik} - \sum_j a_{ij}
    a_{jk} / a_{jj}` over the black neighbours :math:`j` of the red cell :math:`i` and the red
    neighbours :math:`k` of :math:`j`: a (3^d-ish)-point operator on the red cells (9 points in 2-D,
    19 in 3-D).  Each term is ``S[left] * S[right] / S[d, pivot]`` (flat positions in the stacked
    stencil, ``pivot`` the natural index of :math:`j`); the terms are sorted by entry, entry ``e``
    summing ``terms[starts[e]:starts[e + 1]]``; ``centre`` gathers :math:`a_{ii}` of the red cells,
    added at the data positions ``diagonal``.  CSR rows and columns are red positions.
    """

    n: int
    indptr: np.ndarray
    indices: np.ndarray
    left: np.ndarray
    right: np.ndarray
    pivot: np.ndarray
    starts: np.ndarray
    diagonal: np.ndarray
    centre: np.ndarray


@lru_cache(maxsize=8)
def red_schur_pattern(shape: tuple[int, ...]) -> RedSchurPattern:
    """Build (once per shape; cached) the :class:`RedSchurPattern` of a level of this shape."""
    mask = stencil_pattern(shape).mask
    N, k = mask.shape
    d = (k - 1) // 2
    off = _offsets(shape)
    perm, pos, n_red = _rb_order(shape)
    red = perm[:n_red]
    # first hop: red cell i -> black neighbour j (slot s1 of i); second hop: j -> red k (slot s2 of j)
    first = mask[red].copy()
    first[:, d] = False
    r1, s1 = np.nonzero(first)
    ci = red[r1]
    cj = ci + off[s1]
    second = mask[cj].copy()
    second[:, d] = False
    h, s2 = np.nonzero(second)
    ci, cj, s1 = ci[h], cj[h], s1[h]
    entry = pos[ci] * n_red + pos[cj + off[s2]]
    order = np.argsort(entry, kind="stable")
    entry = entry[order]
    keys, starts = np.unique(entry, return_index=True)
    rows, cols = np.divmod(keys, n_red)
    diagonal = np.searchsorted(keys, np.arange(n_red) * (n_red + 1))
    return RedSchurPattern(n_red, *_frozen(np.searchsorted(rows, np.arange(n_red + 1)).astype(np.int32),
                                           cols.astype(np.int32), (s1 * N + ci)[order].astype(np.intp),
                                           (s2 * N + cj)[order].astype(np.intp), cj[order].astype(np.intp),
                                           starts.astype(np.intp), diagonal.astype(np.intp),
                                           (d * N + red).astype(np.intp)))


@dataclass(frozen=True)
class GridHierarchy:
    """The levels of the grid hierarchy of ``shape`` (finest first); the last level is solved directly."""

    shape: tuple[int, ...]
    levels: tuple[LevelGrid, ...]


def level_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Grid shapes from fine to coarse: halve every axis while the level exceeds the coarse size."""
    d = len(shape)
    shapes = [tuple(shape)]
    while int(np.prod(shapes[-1])) > COARSE_SIZE[d] and min(shapes[-1]) >= 4:
        shapes.append(tuple(n // 2 for n in shapes[-1]))
    return shapes


@lru_cache(maxsize=8)
def grid_hierarchy(shape: tuple[int, ...]) -> GridHierarchy:
    """Build (once per shape; cached) the grid structure of every level."""
    shape = tuple(int(n) for n in shape)
    if not 1 <= len(shape) <= 3 or min(shape) < 2:
        raise ValueError(f"grid shape {shape} is not supported; allowed: 1 to 3 axes of >= 2 cells")
    shapes = level_shapes(shape)
    levels = tuple(_level(s, coarse=(i == len(shapes) - 1)) for i, s in enumerate(shapes))
    return GridHierarchy(shape, levels)

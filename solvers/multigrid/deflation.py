r"""Deflation of high-coefficient clusters: the modes that aggregation coarse spaces miss.

With a coefficient contrast of 10^3 and more (thresholded random fields), the
slowest modes of the multigrid-preconditioned operator are nearly constant on each
*cluster* of cells connected by high-coefficient faces: block aggregates of 4^d,
8^d, ... cells straddle clusters that touch only through low-coefficient material,
so the coarse spaces cannot separate them (the two-grid method stays robust, the
multilevel one does not).  The remedy of Vuik, Segal and Meijerink (1999) is to add
the cluster indicators as an exact coarse space:

.. math::  Z = [\mathbb 1_{K_1}, \dots, \mathbb 1_{K_k}],\quad E = Z^TAZ,\quad Q = Z E^{-1} Z^T,

combined with the multigrid cycle :math:`M` in the "A-DEF2" form of Tang, Nabben, Vuik
and Erlangga (2009),

.. math::  B = Q + (I - QA)\, M,\qquad B r = m + Z E^{-1}\bigl(Z^T r - (AZ)^T m\bigr),\quad m = M r,

from a start with :math:`Z^T r_0 = 0` (:meth:`ClusterDeflation.start`: :math:`x_0 \mathrel{+}= Q r_0`).
In exact arithmetic CG then produces the same iterates as with the symmetric balancing
form :math:`Q + (I - QA) M (I - AQ)`, since :math:`(I - AQ) r_k = r_k` for every residual;
A-DEF2 skips that first projection (one product with the thin :math:`AZ`, one copy and one
scatter per iteration) and keeps :math:`Q r` against the drift of :math:`Z^T r_k`.
Measured (thresholded Darcy, 32^3-80^3, contrast 1e3/1e6): the same iteration counts as
the balancing form, 0.55-0.95 instead of 1.1-1.5 products with A beyond the cycle per
application; whole solves within the noise (0.92-1.04x).

CG on split vectors (:func:`.mg_cg` where :attr:`ClusterDeflation.split`).  The A-DEF2
direction is :math:`z = m + Zc` with :math:`c = E^{-1}(Z^T r - (AZ)^T m)`; CG keeps
:math:`p = p_m + Z p_c` and :math:`x = x_m + Z x_c` in two parts, forms
:math:`Ap = Ap_m + (AZ)p_c` through the thin :math:`AZ` and :math:`Z^TAp = (AZ)^Tp_m + Ep_c`
without a pass over the grid, and scatters :math:`Z x_c` once per solve instead of
:math:`Zc` once per iteration (the same iterates in exact arithmetic; measured: identical
counts).  It pays where :math:`AZ` has few rows: thresholded 2-D fields, 3.6k rows against
30.5k cluster cells at 256^2 and 7.7k against 122k at 512^2 (the scatter was 0.39 of the 0.54 ms
that deflation added to a 4.6 ms cycle at 512^2): 0.975x (256^2) and 0.970x (512^2) the cost of
a deflated solve, six and four samples interleaved.  In 3-D the cluster boundaries are most
of the clusters (39k rows against 55k cells at 48^3) and the split form cost 1.05x, so
``split`` holds where :math:`AZ` has fewer non-zero rows than ``SPLIT_ROWS`` (half) of the
cluster cells.

What deflation leaves (48^3, contrast 1e3: subspace iteration with the deflated cycle, the
six slowest modes, contraction 0.64-0.84 per step) is local: 6-320 cells hold half of a
mode's energy, around small clusters (2-30 cells) and in lobes of the large one, 5-54 % of it
on high cells -- defects of the piecewise-constant interpolation at intricate interfaces, not
modes constant on parts of clusters.  Measured: clusters cut into blocks of 16^3 or 8^3 cells
(1.6-5x the vectors, 48^3 and 64^3) or split where one erosion step disconnects them (3-4x)
give the identical counts; vectors smoothed into the low cells by 1-4 Jacobi steps save 0-2
iterations (32^3: 15-17 -> 15; 48^3: 21-22 -> 19-22) for 1.3-2x the non-zeros of ``Z``.

:math:`AZ` is formed once per operator and kept sparse: a diffusion operator's rows
sum to zero inside a cluster, so :math:`A\mathbb 1_K` lives on the cells next to the
cluster's boundary (entries below ``DROP`` times the row's diagonal are rounding and
dropped).  It is read off the stencil by shifted views -- the faces between cells of
different labels and the rows with a non-zero row sum -- without a product with
:math:`A`, and :math:`E` is summed from its entries.  An application costs one cycle,
one cluster sum :math:`Z^T r`, one product with that thin matrix and one scatter --
instead of the product with :math:`A` of the textbook form.  A cell is *high*
when one of its faces has a coefficient above the geometric mean of the 5th and 95th
percentiles of all face coefficients; clusters are the face-connected components of
the high cells (so at least two cells each); nothing is deflated when those
percentiles differ by less than ``MIN_CONTRAST``.

References
----------
C. Vuik, A. Segal and J. A. Meijerink, "An efficient preconditioned CG method for the
solution of a class of layered problems with extreme contrasts in the coefficients",
J. Comput. Phys. 152, 385-403, 1999.

J. M. Tang, R. Nabben, C. Vuik and Y. A. Erlangga, "Comparison of two-level
preconditioners derived from deflation, domain decomposition and multigrid
methods", J. Sci. Comput. 39, 340-370, 2009.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from .grid import _sl
from .kernels import csr_add

#: no deflation when the 95th and 5th percentiles of the face coefficients differ by less
MIN_CONTRAST = 10.0
#: more clusters than this are not deflated (E would cost more than it saves)
MAX_CLUSTERS = 1000
#: CG keeps the cluster part of its vectors apart where A Z has fewer non-zero rows than this
#: fraction of the clusters' cells (2-D: 0.06-0.12; 3-D: ~0.7; see the module docstring)
SPLIT_ROWS = 0.5


class ClusterDeflation:
    """``Q = Z E^{-1} Z^T`` for the cluster indicators ``Z``, in the red-black order of the finest level.

    ``E``: ``Z^T A Z`` (symmetrised), ``E_inv`` its inverse; :attr:`AZ`: the sparse product ``A Z`` (N x k).  For the
    application the products are kept in the forms that touch only their non-zeros, into
    work arrays allocated once: ``Z^T`` as a k x N CSR, ``A Z`` restricted to its non-zero
    rows ``AZ_rows`` (``AZ_compact``), ``(A Z)^T`` as a k x N CSR ``AZt`` (per application
    0.55-0.95 products with A beyond the cycle, measured at 48^3-64^3).
    """

    def __init__(self, members: np.ndarray, labels: np.ndarray, k: int, AZ_rows: np.ndarray,
                 AZ_compact: sp.csr_matrix, AZt: sp.csr_matrix, E: np.ndarray, N: int) -> None:
        self.members, self.labels, self.k, self.E, self.N = members, labels, k, E, N
        self.E_inv = np.linalg.inv(E)
        #: CG runs on split vectors (:meth:`coarse_part`, :meth:`add_AZ`, :meth:`Zt_A`, :meth:`expand`)
        #: where ``A Z`` has fewer non-zero rows than ``SPLIT_ROWS`` times the clusters' cells
        self.split = len(AZ_rows) < SPLIT_ROWS * len(members)
        # A Z restricted to its non-zero rows (CSR products over all N rows of a thin matrix cost
        # more, in row-loop overhead, than the gather and scatter of these rows: measured at 48^3)
        self.AZ_rows, self.AZ_compact, self.AZt = AZ_rows, AZ_compact, AZt
        by_cluster = np.argsort(labels, kind="stable")  # members ascending within each cluster
        self._Zt = sp.csr_matrix((np.ones(len(members)), members[by_cluster],
                                  np.r_[0, np.cumsum(np.bincount(labels, minlength=k))]), shape=(k, N))
        self._zr, self._w = np.empty(k), np.empty(k)
        self._AZy = np.empty(len(AZ_rows))

    @property
    def AZ(self) -> sp.csr_matrix:
        """``A Z`` as an N x k CSR matrix, duplicates summed (built on demand, for inspection)."""
        C = self.AZ_compact.tocoo()
        return sp.csr_matrix((C.data, (self.AZ_rows[C.row], C.col)), shape=(self.N, self.k))

    def restrict(self, r: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``Z^T r``: the sum of ``r`` over each cluster (into ``out`` when given)."""
        if out is None:
            out = np.zeros(self.k)
        else:
            out.fill(0.0)
        csr_add(self._Zt, r, out)
        return out

    def project(self, r: np.ndarray) -> np.ndarray:
        """``Q r = Z E^{-1} Z^T r``."""
        out = np.zeros(self.N)
        out[self.members] = (self.E_inv @ self.restrict(r))[self.labels]
        return out

    def start(self, x: np.ndarray, r: np.ndarray) -> None:
        """``x += Q r``, ``r -= A Q r`` in place: afterwards ``Z^T r = 0`` (the start of :meth:`adef2`)."""
        y = self.E_inv @ self.restrict(r, self._zr)
        self.expand(x, y)
        self.add_AZ(-y, r)

    def coarse_part(self, zr: np.ndarray, m: np.ndarray) -> np.ndarray:
        """``c = E^{-1}(Z^T r - (A Z)^T m)`` for ``zr = Z^T r``: A-DEF2 applied to ``r`` is ``m + Z c`` (``m = M r``)."""
        w = self._w
        w.fill(0.0)
        csr_add(self.AZt, m, w)
        np.subtract(zr, w, out=w)
        return self.E_inv @ w

    def add_AZ(self, c: np.ndarray, q: np.ndarray) -> None:
        """``q += A Z c`` (through the non-zero rows of ``A Z`` only)."""
        AZc = self._AZy
        AZc.fill(0.0)
        csr_add(self.AZ_compact, c, AZc)
        q[self.AZ_rows] += AZc

    def Zt_A(self, p: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``Z^T A (p + Z c) = (A Z)^T p + E c`` (no pass over the grid)."""
        out = self.E @ c
        csr_add(self.AZt, p, out)
        return out

    def expand(self, x: np.ndarray, c: np.ndarray) -> None:
        """``x += Z c``."""
        x[self.members] += c[self.labels]

    def adef2(self, cycle, r: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``Q r + (I - Q A) M r`` (A-DEF2): the balancing form without its first projection."""
        m = cycle(r, np.empty(self.N) if out is None else out)
        self.expand(m, self.coarse_part(self.restrict(r, self._zr), m))
        return m


#: entries of A Z below this fraction of their row's diagonal are rounding (row sums inside a cluster)
DROP = 1e-12


def _faces(S: np.ndarray, d: int):
    """Per axis ``a``: the coefficients of the faces between cells ``i`` and ``i + e_a`` (grid-shaped views)."""
    return [-S[2 * d - a][_sl(d, a, slice(None, -1))] for a in range(d)]


def _high_cells(S: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The *high* cells (grid-shaped bool), or None when the face coefficients have no contrast.

    A cell is high when one of its faces is strong: a coefficient above the geometric mean of
    the 5th and 95th percentiles of all face coefficients, which must differ by ``MIN_CONTRAST``.
    """
    d = len(shape)
    faces = _faces(S, d)
    step = max(1, sum(f.size for f in faces) // 20_000)
    sample = np.concatenate([f.ravel()[::step] for f in faces])
    lo, hi = np.percentile(sample, [5, 95])
    if not (lo > 0 and hi >= MIN_CONTRAST * lo):
        return None
    cut = np.sqrt(lo * hi)
    high = np.zeros(shape, dtype=bool)
    for a, f in enumerate(faces):
        strong = f > cut
        high[_sl(d, a, slice(None, -1))] |= strong
        high[_sl(d, a, slice(1, None))] |= strong
    return high


def _clusters(S: np.ndarray, shape: tuple[int, ...]):
    """Cluster label of every cell (natural order, -1 outside clusters) and the number of clusters, or None.

    Clusters are the face-connected components of the high cells (:func:`_high_cells`,
    :func:`scipy.ndimage.label`), so each has at least two cells.
    """
    high = _high_cells(S, shape)
    if high is None:
        return None
    comp, k = ndimage.label(high, structure=ndimage.generate_binary_structure(len(shape), 1))
    if k == 0 or k > MAX_CLUSTERS:
        return None
    return comp.ravel().astype(np.intp) - 1, k


def small_islands(level, cells: int, limit: int | None = None) -> int:
    """Face-connected components of the high cells, and of the other cells, with fewer than ``cells`` cells.

    Features that small fit inside the aggregates of the first few agglomerations (``cells`` = 64:
    the 8 x 8 blocks of level 3 in 2-D), which is where piecewise-constant coarse spaces lose
    h-independence at high contrast (see :mod:`.hierarchy`, ``ISLAND_CELLS``).  0 without contrast.
    ``limit``: stop counting once the count exceeds it (the low cells are not labelled when the high
    ones already do).
    """
    shape = level.g.shape
    high = _high_cells(level.S.reshape(-1, *shape), shape)
    if high is None:
        return 0
    structure = ndimage.generate_binary_structure(len(shape), 1)
    comp = np.empty(shape, dtype=np.intp)  # labelled in place: no int32 -> intp copy for bincount
    count = 0
    for phase in (high, ~high):
        k = ndimage.label(phase, structure=structure, output=comp)
        count += int(np.count_nonzero(np.bincount(comp.ravel(), minlength=k + 1)[1:] < cells))
        if limit is not None and count > limit:
            break
    return count


def _thin_AZ(S: np.ndarray, shape: tuple[int, ...], label: np.ndarray):
    r"""Entries ``(row, cluster, value)`` of :math:`A Z` (natural order), sorted by row, from the stencil ``S``.

    :math:`(AZ)_{iK} = \sum_{j\in K} a_{ij}`: for a cell outside ``K`` the couplings to its
    neighbours in ``K`` (one entry per face: a cell with two faces into ``K`` has two); for a
    cell in ``K`` its row sum minus its couplings to cells outside ``K`` (one entry, dropped
    below ``DROP`` times its diagonal: rounding) -- so only faces between different labels
    and rows with a non-zero row sum (boundary faces, mass terms) contribute; no product with A.
    """
    d = len(shape)
    lab = label.reshape(shape)
    flat = S.reshape(2 * d + 1, -1)
    N = lab.size
    ends, couplings, rows, cols, vals = [], [], [], [], []
    for a in range(d):
        lo, hi = _sl(d, a, slice(None, -1)), _sl(d, a, slice(1, None))
        # faces (ia, ia + e_a) between different labels: the flat index j in the slice ``lo``
        # (axis a one shorter) is the cell j + (j // block) * stride
        stride = int(np.prod(shape[a + 1:]))
        ia = np.flatnonzero(lab[lo] != lab[hi])
        ia += (ia // ((shape[a] - 1) * stride)) * stride
        ib = ia + stride
        ka, kb = label[ia], label[ib]
        up, down = flat[2 * d - a][ia], flat[a][ib]  # a_{i, i+e_a}, a_{i+e_a, i}
        ends += [ia, ib]
        couplings += [up, down]
        for i, j_label, v in ((ia, kb, up), (ib, ka, down)):
            into = np.flatnonzero(j_label >= 0)  # row i couples into the neighbour's cluster
            rows.append(i[into]), cols.append(j_label[into]), vals.append(v[into])
    own = flat.sum(axis=0) - np.bincount(np.concatenate(ends), np.concatenate(couplings), minlength=N)
    inside = np.flatnonzero((label >= 0) & (np.abs(own) > DROP * flat[d]))
    rows.append(inside), cols.append(label[inside]), vals.append(own[inside])
    rows = np.concatenate(rows)
    order = np.argsort(rows, kind="stable")  # 2d + 1 ascending runs: a merge
    return rows[order], np.concatenate(cols)[order], np.concatenate(vals)[order]


def cluster_deflation(level) -> ClusterDeflation | None:
    """Clusters of the finest level's operator (a filled ``_Level``), or None when there are none to deflate.

    Everything is computed on the stacked stencil by shifted views (no products with A):
    the clusters from the high faces, then :math:`AZ` (:func:`_thin_AZ`, kept as CSR over its
    non-zero rows) and :math:`E = Z^T A Z` from its entries.
    """
    g, N = level.g, level.N
    shape = g.shape
    S = level.S.reshape(-1, *shape)
    found = _clusters(S, shape)
    if found is None:
        return None
    label, k = found
    rows, cols, vals = _thin_AZ(S, shape, label)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    AZ_rows = g.pos[rows[starts]]  # red-black positions of the non-zero rows
    AZ_compact = sp.csr_matrix((vals, cols, np.r_[starts, len(rows)]), shape=(len(starts), k))
    T = AZ_compact.T.tocsr()
    AZt = sp.csr_matrix((T.data, AZ_rows[T.indices], T.indptr), shape=(k, N))
    # E = Z^T (A Z): the entries of A Z in rows inside clusters (the others go to the extra bin k * k)
    in_rows = label[rows]
    bins = in_rows * k + cols
    bins[in_rows < 0] = k * k
    E = np.bincount(bins, weights=vals, minlength=k * k + 1)[:-1].reshape(k, k)
    label_rb = label[g.perm]
    members = np.flatnonzero(label_rb >= 0)
    return ClusterDeflation(members, label_rb[members], k, AZ_rows, AZ_compact, AZt, 0.5 * (E + E.T), N)

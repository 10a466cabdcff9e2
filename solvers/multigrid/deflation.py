r"""Deflation of high-coefficient clusters: the modes that aggregation coarse spaces miss.

With a coefficient contrast of 10^3 and more (thresholded random fields), the
slowest modes of the multigrid-preconditioned operator are nearly constant on each
*cluster* of cells connected by high-coefficient faces: block aggregates of 4^d,
8^d, ... cells straddle clusters that touch only through low-coefficient material,
so the coarse spaces cannot separate them (the two-grid method stays robust, the
multilevel one does not).  The remedy of Vuik, Segal and Meijerink (1999) is to add
the cluster indicators as an exact coarse space:

.. math::  Z = [\mathbb 1_{K_1}, \dots, \mathbb 1_{K_k}],\quad E = Z^TAZ,\quad Q = Z E^{-1} Z^T,

combined with the multigrid cycle :math:`M` in the symmetric "balancing" form
(Tang, Nabben, Vuik and Erlangga 2009)

.. math::  B = Q + (I - QA)\, M\, (I - AQ)
           = M\,(r - AZ\,y) + Z E^{-1}\bigl(Z^T r - (AZ)^T m\bigr),
           \quad y = E^{-1} Z^T r,\; m = M(r - AZ\,y).

:math:`AZ` is formed once per operator and kept sparse: a diffusion operator's rows
sum to zero inside a cluster, so :math:`A\mathbb 1_K` lives on the cells next to the
cluster's boundary (entries below ``DROP`` times the row's diagonal are rounding and
dropped).  An application therefore costs one cycle, one cluster sum :math:`Z^T r`,
two products with that thin matrix and one scatter -- instead of the two products with
:math:`A` of the textbook form.  Clusters are the connected
components (at least two cells) of the faces whose coefficient exceeds the geometric
mean of the 5th and 95th percentiles of all face coefficients; nothing is deflated
when those percentiles differ by less than ``MIN_CONTRAST``.

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
from scipy.sparse.csgraph import connected_components

#: no deflation when the 95th and 5th percentiles of the face coefficients differ by less
MIN_CONTRAST = 10.0
#: more clusters than this are not deflated (E would cost more than it saves)
MAX_CLUSTERS = 1000


class ClusterDeflation:
    """``Q = Z E^{-1} Z^T`` for the cluster indicators ``Z``, in the red-black order of the finest level.

    ``AZ``: the sparse product ``A Z`` (N x k, CSR); ``E_inv``: ``(Z^T A Z)^{-1}``.
    """

    def __init__(self, members: np.ndarray, labels: np.ndarray, k: int, AZ: sp.csr_matrix,
                 E_inv: np.ndarray, N: int) -> None:
        self.members, self.labels, self.k, self.AZ, self.E_inv, self.N = members, labels, k, AZ, E_inv, N
        self.AZt = AZ.T.tocsr()

    def restrict(self, r: np.ndarray) -> np.ndarray:
        """``Z^T r``: the sum of ``r`` over each cluster."""
        return np.bincount(self.labels, weights=r[self.members], minlength=self.k)

    def project(self, r: np.ndarray) -> np.ndarray:
        """``Q r = Z E^{-1} Z^T r``."""
        out = np.zeros(self.N)
        out[self.members] = (self.E_inv @ self.restrict(r))[self.labels]
        return out

    def balance(self, cycle, r: np.ndarray) -> np.ndarray:
        """``B r = Q r + (I - Q A) M (I - A Q) r`` for the cycle ``M = cycle`` (see the module docstring)."""
        zr = self.restrict(r)
        m = cycle(r - self.AZ @ (self.E_inv @ zr))
        c = self.E_inv @ (zr - self.AZt @ m)
        m[self.members] += c[self.labels]
        return m


#: entries of A Z below this fraction of their row's diagonal are rounding (row sums inside a cluster)
DROP = 1e-12


def cluster_deflation(level) -> ClusterDeflation | None:
    """Clusters of the finest level's operator (a filled ``_Level``), or None when there are none to deflate."""
    g, nr, N = level.g, level.nr, level.N
    t = -level.S.ravel()[g.rb[2]]  # face coefficients: every face couples a red and a black cell
    sample = t[:: max(1, len(t) // 20_000)]
    lo, hi = np.percentile(sample, [5, 95])
    if not (lo > 0 and hi >= MIN_CONTRAST * lo):
        return None
    strong = t > np.sqrt(lo * hi)
    rows = np.repeat(np.arange(nr), np.diff(g.rb[0]))[strong]
    cols = g.rb[1][strong] + nr
    graph = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(N, N))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    keep = sizes >= 2
    k = int(keep.sum())
    if k == 0 or k > MAX_CLUSTERS:
        return None
    new = np.cumsum(keep) - 1
    members = np.flatnonzero(keep[comp])
    labels = new[comp[members]]
    A = sp.csr_matrix((level.A_full, g.full[1], g.full[0]), shape=(N, N))
    Z = sp.csr_matrix((np.ones(len(members)), (members, labels)), shape=(N, k))
    AZ = (A @ Z).tocsr()
    rows_of = np.repeat(np.arange(N), np.diff(AZ.indptr))
    AZ.data[np.abs(AZ.data) <= DROP * level.diag[rows_of]] = 0.0
    AZ.eliminate_zeros()
    E = (Z.T @ AZ).toarray()
    return ClusterDeflation(members, labels, k, AZ, np.linalg.inv(0.5 * (E + E.T)), N)

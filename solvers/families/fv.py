r"""Vectorised cell-centred finite-volume stencils on the unit square / cube.

Grid: ``n`` cells per axis, spacing ``h = 1/n``, cell centres ``(i + 1/2) h``,
unknowns flattened in C order (last axis fastest).  Every operator here is a
(2d+1)-point stencil; :class:`Stencil` holds its coefficients as arrays on the grid
and :func:`stencil_pattern` fixes one CSR sparsity pattern per grid shape, so every
sample of a family has *identical* ``indptr``/``indices`` (symbolic factorisations
and AMG aggregations can be reused) and assembly only fills ``data``.

Fluxes (per unit cell volume, i.e. the equations are divided by ``h^d``):

* diffusion across an interior face with face coefficient :math:`a_f`
  (harmonic mean of the two cells): :math:`a_f (u_P - u_E)/h^2`;
* Dirichlet boundary face (ghost value at distance h/2): :math:`2 a_P (u_P - g)/h^2`;
* first-order upwind advection with face normal velocity w: flux
  :math:`(w^+ u_P + w^- u_E)/h` leaving P and entering E.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp


def cell_centres(n: int) -> np.ndarray:
    """1-D cell-centre coordinates (i + 1/2)/n."""
    return (np.arange(n) + 0.5) / n


@dataclass(frozen=True)
class Pattern:
    """CSR structure of the (2d+1)-point stencil on ``shape``."""

    shape: tuple[int, ...]
    indptr: np.ndarray
    indices: np.ndarray
    mask: np.ndarray  # (N, 2d+1) bool: which stencil slots exist, in CSR column order


@lru_cache(maxsize=16)
def stencil_pattern(shape: tuple[int, ...]) -> Pattern:
    """Slots per row in ascending column order: axis0-, ..., axis(d-1)-, centre, axis(d-1)+, ..., axis0+."""
    d = len(shape)
    N = int(np.prod(shape))
    strides = [int(np.prod(shape[a + 1 :])) for a in range(d)]
    coords = np.indices(shape).reshape(d, N)
    rows = np.arange(N)
    mask = np.ones((N, 2 * d + 1), dtype=bool)
    cols = np.empty((N, 2 * d + 1), dtype=np.int64)
    for a in range(d):
        mask[:, a] = coords[a] > 0
        cols[:, a] = rows - strides[a]
        mask[:, 2 * d - a] = coords[a] < shape[a] - 1
        cols[:, 2 * d - a] = rows + strides[a]
    cols[:, d] = rows
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int32)
    indices = cols[mask].astype(np.int32)
    for arr in (indptr, indices, mask):
        arr.setflags(write=False)
    return Pattern(tuple(shape), indptr, indices, mask)


@dataclass
class Stencil:
    """Coefficients of a (2d+1)-point operator: ``(A u)_P = diag_P u_P + sum_a lower[a]_P u_{P-e_a} + upper[a]_P u_{P+e_a}``.

    ``lower[a]`` is ignored on the first layer along axis ``a`` and ``upper[a]`` on
    the last (those neighbours do not exist).
    """

    diag: np.ndarray
    lower: list[np.ndarray]
    upper: list[np.ndarray]

    @classmethod
    def zeros(cls, shape: tuple[int, ...], dtype=float) -> Stencil:
        z = lambda: np.zeros(shape, dtype=dtype)  # noqa: E731
        return cls(z(), [z() for _ in shape], [z() for _ in shape])

    def __add__(self, other: Stencil) -> Stencil:
        return Stencil(
            self.diag + other.diag,
            [x + y for x, y in zip(self.lower, other.lower)],
            [x + y for x, y in zip(self.upper, other.upper)],
        )

    def scaled(self, c) -> Stencil:
        return Stencil(c * self.diag, [c * x for x in self.lower], [c * x for x in self.upper])

    def tocsr(self) -> sp.csr_matrix:
        shape = self.diag.shape
        d = len(shape)
        pat = stencil_pattern(shape)
        N = self.diag.size
        dtype = np.result_type(self.diag, *self.lower, *self.upper)
        slots = np.empty((N, 2 * d + 1), dtype=dtype)
        for a in range(d):
            slots[:, a] = self.lower[a].ravel()
            slots[:, 2 * d - a] = self.upper[a].ravel()
        slots[:, d] = self.diag.ravel()
        return sp.csr_matrix((slots[pat.mask], pat.indices, pat.indptr), shape=(N, N))


def _face_slices(d: int, axis: int) -> tuple[tuple, tuple]:
    """Slices selecting the cells left (P) and right (E) of the interior faces normal to ``axis``."""
    left = tuple(slice(None, -1) if b == axis else slice(None) for b in range(d))
    right = tuple(slice(1, None) if b == axis else slice(None) for b in range(d))
    return left, right


def boundary_layer(d: int, axis: int, side: int) -> tuple:
    """Index of the layer of cells adjacent to the boundary ``x_axis = side`` (0 or 1)."""
    return tuple((0 if side == 0 else -1) if b == axis else slice(None) for b in range(d))


def diffusion(a: np.ndarray, h: float, *, dirichlet: bool = True) -> Stencil:
    r"""Stencil of :math:`-\nabla\cdot(a\nabla u)`, harmonic-mean face coefficients.

    With ``dirichlet`` every boundary face contributes :math:`2 a_P/h^2` to the
    diagonal (u = 0 there; non-zero data enter the right-hand side through
    :func:`dirichlet_rhs`); otherwise boundary faces carry no diffusive flux.
    Symmetric; positive definite with Dirichlet faces and a > 0.
    """
    d = a.ndim
    st = Stencil.zeros(a.shape)
    inv_h2 = 1.0 / (h * h)
    for axis in range(d):
        left, right = _face_slices(d, axis)
        aP, aE = a[left], a[right]
        T = 2.0 * aP * aE / (aP + aE) * inv_h2
        st.upper[axis][left] = -T
        st.lower[axis][right] = -T
        st.diag[left] += T
        st.diag[right] += T
        if dirichlet:
            for side in (0, 1):
                layer = boundary_layer(d, axis, side)
                st.diag[layer] += 2.0 * a[layer] * inv_h2
    return st


def boundary_face_points(n: int, d: int, axis: int, side: int) -> np.ndarray:
    """Coordinates (n,)*(d-1) + (d,) of the face centres on the boundary x_axis = side."""
    c = cell_centres(n)
    grids = np.meshgrid(*[c] * d, indexing="ij")
    pts = np.stack(grids, axis=-1)[boundary_layer(d, axis, side)].copy()
    pts[..., axis] = float(side)
    return pts


def boundary_faces(n: int, d: int, values) -> np.ndarray:
    """Dirichlet data on every boundary face: ``values(points)`` at the face centres of each
    boundary ``x_axis = side``, stacked as ``(2 d, n, ..., n)`` in the order
    ``(axis 0, side 0), (axis 0, side 1), (axis 1, side 0), ...``."""
    return np.stack([values(boundary_face_points(n, d, axis, side)) for axis in range(d) for side in (0, 1)])


def dirichlet_rhs(a: np.ndarray, h: float, faces: np.ndarray) -> np.ndarray:
    r"""Right-hand-side contribution :math:`2 a_P g_f / h^2` of Dirichlet data g.

    ``faces`` holds g at the boundary face centres as :func:`boundary_faces` stacks them.
    """
    d = a.ndim
    rhs = np.zeros(a.shape)
    for axis in range(d):
        for side in (0, 1):
            layer = boundary_layer(d, axis, side)
            rhs[layer] += 2.0 * a[layer] * faces[2 * axis + side] / (h * h)
    return rhs


def upwind_advection(face_velocity: list[np.ndarray], h: float) -> Stencil:
    r"""Stencil of :math:`\nabla\cdot(v u)` (= :math:`v\cdot\nabla u` for divergence-free v), first-order upwind.

    ``face_velocity[a]`` has shape ``n+1`` along axis ``a`` (all faces normal to
    ``a``, boundary faces included) and ``n`` along the others; positive values
    point towards increasing index.  Boundary inflow carries the Dirichlet value 0,
    outflow leaves with the cell value.
    """
    d = len(face_velocity)
    shape = tuple(face_velocity[0].shape[b] - (1 if b == 0 else 0) for b in range(d))
    st = Stencil.zeros(shape)
    inv_h = 1.0 / h
    for axis, w in enumerate(face_velocity):
        interior = tuple(slice(1, -1) if b == axis else slice(None) for b in range(d))
        wi = w[interior]
        wp, wm = np.maximum(wi, 0.0) * inv_h, np.minimum(wi, 0.0) * inv_h
        left, right = _face_slices(d, axis)
        st.diag[left] += wp
        st.upper[axis][left] += wm
        st.lower[axis][right] -= wp
        st.diag[right] -= wm
        first = boundary_layer(d, axis, 0)
        last = boundary_layer(d, axis, 1)
        st.diag[first] += np.maximum(-w[first], 0.0) * inv_h
        st.diag[last] += np.maximum(w[last], 0.0) * inv_h
    return st

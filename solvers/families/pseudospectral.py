r"""Fourier pseudo-spectral time stepping on the periodic unit torus: the families without a linear system.

Fields live on the periodic grid :math:`x_j = j/n` (``n`` points per axis of :math:`[0,1)^d`)
and are advanced as their real-FFT coefficients :math:`\hat u_k` (``numpy.fft.rfftn``).  Every
family here has the form

.. math::  \hat u_t = -\nu\,|2\pi k|^2\,\hat u + \widehat{N(u)} + \hat f,

the viscous term *implicit* (a diagonal operator: its "solve" is a division) and the
nonlinear term :math:`N` *explicit*, evaluated pseudo-spectrally (derivatives in Fourier
space, products at the grid points) and de-aliased by the 2/3 rule (coefficients with
:math:`|k_j| \ge n/3` on any axis are zeroed in :math:`\widehat{N(u)}`).

Time: the schemes of :mod:`pdeforge.solvers.timestepping` (IMEX Euler; Crank--Nicolson with
Adams--Bashforth 2; SBDF2), run by the same :func:`~pdeforge.solvers.timestepping.integrate`
with :math:`L = \operatorname{diag}(\nu|2\pi k|^2)`: the same step formulas, frames and
step-doubling time-error estimate as the finite-volume families.  There is no linear system
to solve; each implicit stage is still verified by its residual, recomputed after the
division, so a non-finite state is caught at the step where it appears.

Stability: the advection in :math:`N` is explicit.  With :math:`U` the sum over axes of
:math:`\max|u_j|` (the velocity components), the CFL number is
:math:`c = \Delta t\, U\, n`.  A spec is refused when :math:`\Delta t\, U_0\, n` exceeds
:data:`CFL_ADMIT`, :math:`U_0` four pointwise standard deviations of the initial velocity
(an estimate from the spectrum, the same for every sample); every step then measures the
true :math:`c`, and a trajectory whose :math:`c` exceeds :data:`CFL_LIMIT` is marked
unconverged (its record says at which time).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..timestepping import Diagonal, TimeSpec, TrajectoryRecord, integrate
from .base import TRANSIENT, FamilySpec, PDEFamily

#: a spec's dt is refused when dt * U0 * n exceeds this (U0: 4 standard deviations of the initial velocity)
CFL_ADMIT = 0.5
#: a trajectory whose measured CFL number dt * max speed * n exceeds this is marked unconverged
CFL_LIMIT = 1.0
#: the boundary condition and grid of the periodic families, in the words stored in every file
PERIODIC = "periodic on the unit torus [0, 1)^d; grid point j of n at x = j / n on every axis"
#: U0 = this many pointwise standard deviations of the initial velocity
SPEED_SIGMAS = 4.0


def periodic_points(n: int) -> np.ndarray:
    """The grid points x_j = j / n of the periodic unit interval."""
    return np.arange(n) / n


class FourierGrid:
    """Wave numbers, the 2/3 de-aliasing mask and real FFTs on the periodic grid of ``n``^``dim`` points."""

    def __init__(self, n: int, dim: int) -> None:
        self.n, self.dim, self.shape = n, dim, (n,) * dim
        freqs = [np.fft.fftfreq(n, 1.0 / n)] * (dim - 1) + [np.fft.rfftfreq(n, 1.0 / n)]
        self.k = np.meshgrid(*freqs, indexing="ij", sparse=True)  # integer wave numbers per axis
        self.k2 = sum(k * k for k in self.k)  # |k|^2 on the half spectrum
        self.half = self.k2.shape
        keep = np.ones(self.half, dtype=bool)
        for k in self.k:
            keep = keep & (np.abs(k) < n / 3)
        self.keep = keep
        self._axes = tuple(range(-dim, 0))

    def forward(self, u: np.ndarray) -> np.ndarray:
        """rfftn over the last ``dim`` axes."""
        return np.fft.rfftn(u, axes=self._axes)

    def inverse(self, uh: np.ndarray) -> np.ndarray:
        """irfftn over the last ``dim`` axes, back to ``n``^``dim`` real points."""
        return np.fft.irfftn(uh, s=self.shape, axes=self._axes)

    def derivative(self, uh: np.ndarray, axis: int) -> np.ndarray:
        r""":math:`\widehat{\partial_{x_{axis}} u} = 2\pi i k_{axis} \hat u`."""
        return (2j * math.pi) * self.k[axis] * uh

    def laplacian_symbol(self) -> np.ndarray:
        r""":math:`|2\pi k|^2` (the symbol of :math:`-\Delta`) on the half spectrum."""
        return (4 * math.pi**2) * self.k2


#: nonlinear(uh, u) -> (N hat before de-aliasing, (B, C, *half); per trajectory: sum over axes of max |velocity
#: component|, (B,)), for a batch of B trajectories of C fields
Nonlinear = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

#: a batch holds at most this many trajectories, and at most BATCH_VALUES grid values of state (large grids
#: gain nothing from batching, and a small batch stores its frames, i.e. shows it is alive, more often)
BATCH_SIZE, BATCH_VALUES = 32, 1 << 18


def batch_size(fields: int, points: int) -> int:
    """How many trajectories of ``fields`` x ``points`` values one batch advances together."""
    return max(1, min(BATCH_SIZE, BATCH_VALUES // (fields * points)))


def integrate_fourier(grid: FourierGrid, u0: np.ndarray, viscosity, nonlinear: Nonlinear,
                      forcing: np.ndarray | None, time: TimeSpec, rtol: float,
                      on_frame: Callable[[int, np.ndarray], None]) -> list[TrajectoryRecord]:
    r"""Integrate a batch of B trajectories of C periodic fields, ``u0`` (B, C, *grid), by the spec's scheme
    (module docstring), all advanced together as one state; ``viscosity`` a number or one per trajectory;
    ``forcing`` (C, *grid) or None.  ``on_frame(k, u)`` gets frame k as (B, C, *grid) real point values.
    Returns one record per trajectory: its own residuals, CFL numbers and time-error estimate (the batch
    changes no trajectory's arithmetic: each FFT, product and division acts on one trajectory's values)."""
    u0 = np.asarray(u0, dtype=np.float64)
    B, C = u0.shape[:2]
    nu = np.broadcast_to(np.asarray(viscosity, dtype=np.float64), (B,))
    symbol = (nu.reshape(B, 1, *[1] * grid.dim) * grid.laplacian_symbol()) * np.ones((1, C, *[1] * grid.dim))
    L = Diagonal(symbol.ravel())
    f_hat = None if forcing is None else (grid.forward(forcing) * grid.keep).ravel()
    f_hat = None if f_hat is None else np.tile(f_hat, B)
    cfl, cfl_at = np.zeros(B), np.zeros(B)
    residual, converged = np.zeros(B), np.ones(B, dtype=bool)
    steps, stored_run = [0], [False]  # the CFL number is measured on the stored run, not on the estimate's
    scale = time.dt * grid.n

    def explicit(state: np.ndarray) -> np.ndarray:
        uh = state.reshape(B, C, *grid.half)
        n_hat, speed = nonlinear(uh, grid.inverse(uh))
        if stored_run[0]:  # the CFL number of each trajectory at this step
            c = scale * np.asarray(speed)
            worse = c > cfl
            cfl[worse], cfl_at[worse] = c[worse], steps[0] * time.dt
            steps[0] += 1
        out = (n_hat * grid.keep).ravel()
        return out if f_hat is None else out + f_hat

    def solve(M: Diagonal, rhs, x0):
        x = rhs / M.d
        r_norm = np.linalg.norm((rhs - M @ x).reshape(B, -1), axis=1)  # recomputed, per trajectory
        b_norm = np.linalg.norm(rhs.reshape(B, -1), axis=1)
        rel = np.divide(r_norm, b_norm, out=r_norm.copy(), where=b_norm > 0)
        ok = np.isfinite(r_norm) & (r_norm <= rtol * b_norm)
        np.maximum(residual, rel, out=residual, where=np.isfinite(rel))
        residual[~np.isfinite(rel)] = np.inf
        converged[:] &= ok
        return x, {"iterations": 0, "matvecs": 1, "residual": float(rel.max()), "converged": bool(ok.all())}

    # frame 0 is the initial condition itself (not its FFT round trip): the stored inputs
    rec = integrate(L, grid.forward(u0).ravel(), explicit, time, solve,
                    lambda k, s: on_frame(k, u0 if k == 0 else grid.inverse(s.reshape(B, C, *grid.half))),
                    warm_start=False, on_start=lambda: stored_run.__setitem__(0, True), blocks=B)
    out = []
    for b in range(B):
        one = TrajectoryRecord(steps=rec.steps, matvecs=rec.matvecs, residual_max=float(residual[b]),
                               converged=bool(converged[b]), time_error_estimate=rec.block_time_errors[b],
                               operators=rec.operators)
        one.messages.append(f"largest CFL number dt * max speed * n = {cfl[b]:.3g} (at t = {cfl_at[b]:.4g})")
        if cfl[b] > CFL_LIMIT:
            one.converged = False
            one.messages.append(f"CFL number {cfl[b]:.3g} > {CFL_LIMIT} at t = {cfl_at[b]:.4g}: the explicit "
                                "advection may be unstable; reduce time.dt")
        out.append(one)
    return out


class PeriodicFamily(PDEFamily):
    """What the periodic pseudo-spectral families share: the torus, its grid points, no linear system."""

    time_dependence = TRANSIENT

    def boundary_conditions(self, spec: FamilySpec) -> str:
        return PERIODIC

    def grid_type(self, spec: FamilySpec) -> str:
        return PERIODIC

    def coordinates(self, spec: FamilySpec) -> np.ndarray:
        return periodic_points(spec.n)

    def assemble(self, spec: FamilySpec, sample):
        raise TypeError(f"{self.name} has no linear system: it is stepped pseudo-spectrally (engine pseudo_spectral)")


def vorticity_speed_std(root: np.ndarray, k: list[np.ndarray]) -> float:
    r"""Pointwise standard deviation of :math:`|u| + |v|` for the velocity of a 2-D GRF vorticity, from
    :math:`\sqrt{\lambda_k}` on the cube {-K..K}^2 with integer wave vectors ``k`` (open mesh)."""
    k2 = sum(ki * ki for ki in k).astype(float)
    k2[k2 == 0] = np.inf
    # u = psi_y, v = -psi_x with psi_hat = omega_hat / |2 pi k|^2: Var u + Var v = sum lambda_k / |2 pi k|^2,
    # split evenly between the two components by isotropy
    component = float(np.sqrt(np.sum(root**2 / (4 * math.pi**2 * k2)) / 2))
    return 2.0 * component


def admit_dt(time: TimeSpec | None, speed: float, n: int, fail) -> None:
    """Refuse ``time.dt`` when dt * U0 * n > CFL_ADMIT (``fail`` raises the 422 naming the bound)."""
    if time is None or speed <= 0:
        return
    bound = CFL_ADMIT / (speed * n)
    if time.dt > bound:
        fail("time.dt", time.dt, f"time.dt <= {bound:.4g} (explicit advection: dt * U0 * n <= {CFL_ADMIT}, "
                                 f"U0 = {speed:.4g} estimated as {SPEED_SIGMAS:g} standard deviations of the initial "
                                 f"speed, n = {n} points per axis)")

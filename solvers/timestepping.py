r"""Implicit (IMEX) time stepping of :math:`u_t = -L u + g(u)` with one operator per trajectory.

``L`` is the family's spatial operator (assembled once per sample, fixed in time) and
``g`` its explicit part (a forcing, a reaction term).  Schemes (``TimeSpec.scheme``), with
:math:`g^n = g(u^n)`:

* ``backward_euler`` (IMEX Euler, order 1):
  :math:`(I + \Delta t L) u^{n+1} = u^n + \Delta t\, g^n`;
* ``crank_nicolson`` (CN for L, Adams--Bashforth 2 for g; order 2):
  :math:`(I + \tfrac{\Delta t}2 L) u^{n+1} = (I - \tfrac{\Delta t}2 L) u^n + \Delta t(\tfrac32 g^n - \tfrac12 g^{n-1})`
  (the first step uses :math:`g^0`);
* ``bdf2`` (SBDF2, order 2):
  :math:`(\tfrac32 I + \Delta t L) u^{n+1} = 2u^n - \tfrac12 u^{n-1} + \Delta t(2g^n - g^{n-1})`,
  started by one IMEX Euler step (hence two operators).

Every step's matrix is built once per trajectory (:class:`StepMatrices`) and handed to the
engine as the *same object*, so a direct engine factorizes it once, AMG builds one
hierarchy and GCRO-DR recycles along time.  Each step's true residual is recomputed
(:mod:`pdeforge.solvers.residual`); the predictor that estimates the local error also warm-starts
iterative engines.

Time error estimate (Milne's device, no extra solves): a predictor of the same order --
explicit Euler for BE, AB2 for CN, quadratic extrapolation for BDF2 -- gives the local
truncation error :math:`\tau^{n+1} \approx C (u^{n+1} - u_p^{n+1})` with
:math:`C = 1/2, 1/6, 2/11`; the trajectory records
:math:`\sum_n \lVert\tau^n\rVert / \max_n \lVert u^n\rVert`, an upper-bound style estimate of
the relative global time error (a solver residual <= rtol says nothing about it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .params import fail, param, validate

SCHEMES = ("backward_euler", "crank_nicolson", "bdf2")
ORDER = {"backward_euler": 1, "crank_nicolson": 2, "bdf2": 2}
#: Milne constants C: local error ~ C (corrector - predictor), see the module docstring
MILNE = {"backward_euler": 1 / 2, "crank_nicolson": 1 / 6, "bdf2": 2 / 11}
_DIVIDES_RTOL = 1e-9


@dataclass(frozen=True)
class TimeSpec:
    """Time interval, solver step, stored frames and scheme of a trajectory."""

    t_end: float = param(1.0, gt=0.0, le=1e6, doc="final time (frames span [0, t_end])")
    dt: float = param(0.01, gt=0.0, le=1e6, doc="solver time step; must divide the frame interval")
    frames: int = param(11, ge=2, le=100_001, doc="stored frames, equally spaced, t = 0 and t_end included")
    scheme: str = param("crank_nicolson", choices=SCHEMES,
                        doc="backward_euler (order 1), crank_nicolson (CN + AB2, order 2), bdf2 (SBDF2, order 2)")

    def __post_init__(self) -> None:
        validate(self, "time.")
        interval = self.t_end / (self.frames - 1)
        k = round(interval / self.dt)
        if k < 1 or abs(k * self.dt - interval) > _DIVIDES_RTOL * interval:
            fail("time.dt", self.dt, f"dt = {interval:g} / k for an integer k >= 1 (the frame interval "
                                     f"t_end / (frames - 1) = {interval:g})")

    @property
    def steps_per_frame(self) -> int:
        return round(self.t_end / (self.frames - 1) / self.dt)

    @property
    def steps(self) -> int:
        return self.steps_per_frame * (self.frames - 1)

    def frame_times(self) -> np.ndarray:
        return np.linspace(0.0, self.t_end, self.frames)


@dataclass
class TrajectoryRecord:
    """What the time integration of one sample did (every implicit step verified)."""

    steps: int = 0
    iterations: int = 0
    matvecs: int = 0
    precond_applies: int = 0
    residual_max: float = 0.0  # max over steps of the true relative residual of the step's system
    converged: bool = True  # every step met the tolerance
    fallbacks: int = 0  # steps re-solved directly
    time_error_estimate: float = 0.0  # see the module docstring
    operators: int = 0  # distinct step matrices of this trajectory
    messages: list[str] = field(default_factory=list)


class StepMatrices:
    """The step matrices ``shift I + scale L`` of a trajectory, each built once (the same object for
    every step, so engines reuse their set-up); ``memo`` may be shared by all trajectories of a
    fixed operator (then all samples share the objects, and a worker's factorization)."""

    def __init__(self, L, memo: dict | None = None) -> None:
        self.L = L
        self.memo = {} if memo is None else memo

    def get(self, shift: float, scale: float):
        key = (id(self.L), shift, scale)
        entry = self.memo.get(key)
        if entry is None or entry[0] is not self.L:
            M = (sp.identity(self.L.shape[0], dtype=self.L.dtype, format="csr") * shift + self.L * scale).tocsr()
            M.sort_indices()
            entry = self.memo[key] = (self.L, M)
        return entry[1]

    @property
    def count(self) -> int:
        return sum(1 for key in self.memo if key[0] == id(self.L))


#: solve(M, rhs, x0) -> (x, record dict with iterations, matvecs, precond_applies, residual, converged, fallback)
StepSolver = Callable[[object, np.ndarray, np.ndarray], tuple[np.ndarray, dict]]


def integrate(L, u0: np.ndarray, explicit: Callable[[np.ndarray], np.ndarray], time: TimeSpec,
              solve: StepSolver, on_frame: Callable[[int, np.ndarray], None], *,
              memo: dict | None = None) -> TrajectoryRecord:
    """Integrate ``u_t = -L u + explicit(u)`` from ``u0`` with ``time.scheme``; ``on_frame(k, u)`` gets
    frame k (k = 0 is ``u0``) as soon as it is reached.  Returns the trajectory's record."""
    dt, scheme = time.dt, time.scheme
    mats = StepMatrices(L, memo)
    rec = TrajectoryRecord()
    u = np.array(u0, dtype=np.result_type(u0, L.dtype, np.float64)).ravel()
    on_frame(0, u)
    history: list[np.ndarray] = [u]  # u^n, u^{n-1}, ... (newest first, at most 3)
    g_hist: list[np.ndarray] = []
    F_prev = None  # -L u^{n-1} + g^{n-1} (CN's AB2 predictor)
    lte_sum, u_max = 0.0, float(np.linalg.norm(u))
    for n in range(time.steps):
        g = np.asarray(explicit(u), dtype=u.dtype).ravel()
        Lu = L @ u
        F = -Lu + g
        if scheme == "backward_euler" or (scheme == "bdf2" and n == 0):
            M, rhs = mats.get(1.0, dt), u + dt * g
            predictor = u + dt * F
            milne = MILNE["backward_euler"]
        elif scheme == "crank_nicolson":
            g_ab = g if not g_hist else 1.5 * g - 0.5 * g_hist[0]
            M, rhs = mats.get(1.0, 0.5 * dt), u - 0.5 * dt * Lu + dt * g_ab
            predictor = u + dt * (F if F_prev is None else 1.5 * F - 0.5 * F_prev)
            milne = MILNE["crank_nicolson"] if F_prev is not None else None
        else:  # bdf2
            u1 = history[1]
            M, rhs = mats.get(1.5, dt), 2.0 * u - 0.5 * u1 + dt * (2.0 * g - g_hist[0])
            predictor = 2.0 * u - u1 if len(history) < 3 else 3.0 * u - 3.0 * u1 + history[2]
            milne = MILNE["bdf2"] if len(history) >= 3 else None
        new, info = solve(M, rhs, predictor)
        rec.steps += 1
        rec.iterations += info.get("iterations", 0)
        rec.matvecs += info.get("matvecs", 0) + 1  # + the L u product of the step
        rec.precond_applies += info.get("precond_applies", 0)
        rec.residual_max = max(rec.residual_max, info["residual"])
        rec.converged &= bool(info["converged"])
        rec.fallbacks += int(info.get("fallback", False))
        if milne is not None:
            lte_sum += milne * float(np.linalg.norm(new - predictor))
        u_max = max(u_max, float(np.linalg.norm(new)))
        F_prev = F
        g_hist = [g, *g_hist][:2]
        history = [new, *history][:3]
        u = new
        if (n + 1) % time.steps_per_frame == 0:
            on_frame((n + 1) // time.steps_per_frame, u)
    rec.time_error_estimate = lte_sum / u_max if u_max > 0 else 0.0
    rec.operators = mats.count
    return rec


def order_of(scheme: str) -> int:
    """The scheme's order of accuracy in time."""
    return ORDER[scheme]


def convergence_rate(errors: list[float]) -> float:
    """Mean observed order of a sequence of errors, each with half the step of the previous."""
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:]) if a > 0 and b > 0]
    return sum(rates) / len(rates) if rates else float("nan")

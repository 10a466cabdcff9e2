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

Time error estimate: step doubling over the first frame interval (see :func:`integrate`); a
solver residual <= rtol says nothing about the time error, so every trajectory records both.
An explicit predictor of the same order (explicit Euler, AB2, quadratic extrapolation)
warm-starts iterative engines at every step.
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

    steps: int = 0  # steps of the integration (the estimate's doubled steps are not counted here)
    iterations: int = 0  # these and the counts below include the estimate's steps
    matvecs: int = 0
    precond_applies: int = 0
    residual_max: float = 0.0  # max over steps of the true relative residual of the step's system
    converged: bool = True  # every step met the tolerance
    fallbacks: int = 0  # steps re-solved directly
    time_error_estimate: float = 0.0  # see the module docstring
    operators: int = 0  # distinct step matrices of this trajectory
    messages: list[str] = field(default_factory=list)
    #: integrate(..., blocks=B): the estimate of each of the B trajectories stacked in the state
    block_time_errors: list[float] = field(default_factory=list)


class Diagonal:
    """A diagonal operator ``diag(d)`` (Fourier-space viscous terms): products are elementwise, with no
    sparse-matrix machinery and no conversion of a real diagonal for complex vectors."""

    def __init__(self, d: np.ndarray) -> None:
        self.d = np.ascontiguousarray(d)
        self.shape, self.dtype = (self.d.size, self.d.size), self.d.dtype

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        return self.d * x

    def diagonal(self) -> np.ndarray:
        return self.d

    def shifted(self, shift: float, scale: float) -> Diagonal:
        """``shift I + scale diag(d)``."""
        return Diagonal(shift + scale * self.d)


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
            if isinstance(self.L, Diagonal):
                M = self.L.shifted(shift, scale)
            else:
                M = (sp.identity(self.L.shape[0], dtype=self.L.dtype, format="csr") * shift + self.L * scale).tocsr()
                M.sort_indices()
            entry = self.memo[key] = (self.L, M)
        return entry[1]

    @property
    def count(self) -> int:
        return sum(1 for key in self.memo if key[0] == id(self.L))


#: solve(M, rhs, x0) -> (x, record dict with iterations, matvecs, precond_applies, residual, converged, fallback)
StepSolver = Callable[[object, np.ndarray, np.ndarray], tuple[np.ndarray, dict]]


def _steps(L, u0: np.ndarray, explicit, dt: float, scheme: str, count: int, solve: StepSolver,
           mats: StepMatrices, rec: TrajectoryRecord, on_step: Callable[[int, np.ndarray], None],
           warm_start: bool) -> None:
    """``count`` steps of ``scheme`` with step ``dt`` from ``u0``; ``on_step(n, u^n)`` after each."""
    u = u0
    history: list[np.ndarray] = [u]  # u^n, u^{n-1}, u^{n-2} (newest first)
    g_hist: list[np.ndarray] = []
    F_prev = None  # -L u^{n-1} + g^{n-1}: the AB2 extrapolation
    for n in range(count):
        g = np.asarray(explicit(u), dtype=u.dtype).ravel()
        Lu = L @ u if (warm_start or scheme == "crank_nicolson") else None
        F = -Lu + g if warm_start else None
        predictor = None
        if scheme == "backward_euler" or (scheme == "bdf2" and n == 0):
            M, rhs = mats.get(1.0, dt), u + dt * g
            if warm_start:
                predictor = u + dt * F
        elif scheme == "crank_nicolson":
            g_ab = g if not g_hist else 1.5 * g - 0.5 * g_hist[0]
            M, rhs = mats.get(1.0, 0.5 * dt), u - 0.5 * dt * Lu + dt * g_ab
            if warm_start:
                predictor = u + dt * (F if F_prev is None else 1.5 * F - 0.5 * F_prev)
        else:  # bdf2
            u1 = history[1]
            M, rhs = mats.get(1.5, dt), 2.0 * u - 0.5 * u1 + dt * (2.0 * g - g_hist[0])
            if warm_start:
                predictor = 2.0 * u - u1 if len(history) < 3 else 3.0 * u - 3.0 * u1 + history[2]
        # the predictor (an explicit step of the same order) warm-starts iterative engines
        new, info = solve(M, rhs, predictor)
        rec.steps += 1
        rec.iterations += info.get("iterations", 0)
        rec.matvecs += info.get("matvecs", 0) + (Lu is not None)  # + the L u product of the step
        rec.precond_applies += info.get("precond_applies", 0)
        rec.residual_max = max(rec.residual_max, info["residual"])
        rec.converged &= bool(info["converged"])
        rec.fallbacks += int(info.get("fallback", False))
        F_prev = F
        g_hist = [g, *g_hist][:2]
        history = [new, *history][:3]
        u = new
        on_step(n + 1, u)


def integrate(L, u0: np.ndarray, explicit: Callable[[np.ndarray], np.ndarray], time: TimeSpec,
              solve: StepSolver, on_frame: Callable[[int, np.ndarray], None], *,
              memo: dict | None = None, warm_start: bool = True,
              on_start: Callable[[], None] | None = None, blocks: int = 1) -> TrajectoryRecord:
    r"""Integrate ``u_t = -L u + explicit(u)`` from ``u0`` with ``time.scheme``; ``on_frame(k, u)`` gets
    frame k (k = 0 is ``u0``) as soon as it is reached.  Returns the trajectory's record.
    ``warm_start``: hand ``solve`` an explicit predictor as initial guess (iterative engines); else None.
    ``on_start()`` is called after the time-error estimate's steps, before the stored run's first step.
    ``blocks``: the state stacks that many independent trajectories of equal size (a batch); the time
    error is then also estimated for each (``block_time_errors``).

    Time error estimate (step doubling): before the run, the first ``m`` steps (one frame
    interval, two if it holds an odd number of steps) are repeated with step ``2 dt``;
    :math:`\lVert u_{\Delta t} - u_{2\Delta t}\rVert / ((2^p - 1)\lVert u_{\Delta t}\rVert)` at that
    time estimates the relative error of the stored frame there (p the scheme's order).  For
    dissipative problems the first frames carry the largest time error (the initial layer);
    where the error grows with time (advection) it is about ``t / t_m`` times this later.
    The doubled run has its own step matrices (one, two for BDF2): ``operators`` counts both.
    """
    dt, scheme, spf = time.dt, time.scheme, time.steps_per_frame
    mats = StepMatrices(L, memo)
    rec = TrajectoryRecord()
    u0 = np.array(u0, dtype=np.result_type(u0, L.dtype, np.float64)).ravel()
    m = spf if spf % 2 == 0 else 2 * spf
    m = min(m, time.steps - time.steps % 2)
    shadow = TrajectoryRecord()
    coarse: dict[int, np.ndarray] = {}
    if m >= 2:
        _steps(L, u0, explicit, 2 * dt, scheme, m // 2, solve, mats, shadow,
               lambda n, u: coarse.__setitem__(n, u) if n == m // 2 else None, warm_start)
    fine: dict[int, np.ndarray] = {}
    if on_start is not None:
        on_start()
    on_frame(0, u0)

    def on_step(n: int, u: np.ndarray) -> None:
        if n == m:
            fine[m] = u
        if n % spf == 0:
            on_frame(n // spf, u)

    _steps(L, u0, explicit, dt, scheme, time.steps, solve, mats, rec, on_step, warm_start)
    if coarse:
        norm = float(np.linalg.norm(fine[m]))
        diff = float(np.linalg.norm(fine[m] - coarse[m // 2])) / (2 ** ORDER[scheme] - 1)
        rec.time_error_estimate = diff / norm if norm > 0 else diff
        if blocks > 1:
            norms = np.linalg.norm(fine[m].reshape(blocks, -1), axis=1)
            diffs = np.linalg.norm((fine[m] - coarse[m // 2]).reshape(blocks, -1), axis=1) / (2 ** ORDER[scheme] - 1)
            rec.block_time_errors = [float(d / n) if n > 0 else float(d) for d, n in zip(diffs, norms)]
        else:
            rec.block_time_errors = [rec.time_error_estimate]
    rec.residual_max = max(rec.residual_max, shadow.residual_max)  # the estimate's steps are verified too
    rec.converged &= shadow.converged
    rec.iterations += shadow.iterations
    rec.matvecs += shadow.matvecs
    rec.precond_applies += shadow.precond_applies
    rec.fallbacks += shadow.fallbacks
    rec.operators = mats.count
    return rec


def order_of(scheme: str) -> int:
    """The scheme's order of accuracy in time."""
    return ORDER[scheme]


def convergence_rate(errors: list[float]) -> float:
    """Mean observed order of a sequence of errors, each with half the step of the previous."""
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:]) if a > 0 and b > 0]
    return sum(rates) / len(rates) if rates else float("nan")

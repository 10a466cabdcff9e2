"""``auto``: choose the fastest engine for a job from a short, time-boxed pilot.

The pilot solves the first ``PILOT_SAMPLES`` samples of the job (in solve order) with
each applicable candidate, in an order that puts the likely winner first.  A
candidate is aborted (Krylov and AMG solves are interrupted; a factorization is
judged when it returns) as soon as its first sample takes longer than
``FIRST_BUDGET`` times the best first sample so far (one-off set-ups such as an AMG
hierarchy or a symbolic analysis belong there), or a later sample longer than
``BUDGET`` times the best steady-state sample, so losers cost a few winner-samples
each (about 1-2 % of a 1000-sample job in ``bench.engines``).  Below ``FLOOR_SECONDS`` per sample the
pilot stops at the first candidate that gets there (fixed costs would dominate).  The decision (:func:`choose_engine`) is
a pure function of the measurements: the converged candidate with the smallest
steady-state time (the last pilot sample, after one-off set-ups), ties broken by
candidate order.

Candidates: the engines that apply to the spec (:func:`~pdeforge.solvers.engines.registry.refusal`),
likely winner first -- ``spectral``, ``factorize_once``, then ``direct`` / ``amg`` /
``direct_mixed`` (by size), ``skr`` last; ``gmres`` (the baseline) never.  Sparse direct solvers are not tried where
their fill makes them lose and a factorization cannot be interrupted: 3-D grids above
``DIRECT_MAX_3D`` cells per axis, 2-D grids above ``DIRECT_MAX_2D_WITH_AMG`` when AMG
applies (measured: AMG 2.5-3x faster at 256^2) and above ``DIRECT_MAX_2D`` otherwise.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from ..residual import meets_tolerance
from ..timestepping import StepMatrices
from .base import PilotAborted
from .registry import ENGINES, applicable_engines

PILOT_SAMPLES = 2
#: implicit steps of the first trajectory the pilot times (transient specs)
PILOT_STEPS = 3
BUDGET = 1.5
FIRST_BUDGET = 3.0
#: the most a float32 factorization gained over float64 in bench.engines (1.2-1.4x)
MIXED_GAIN = 1.5
#: candidates whose first sample carries a one-off set-up (symbolic analysis, AMG hierarchy)
SETUP_HEAVY = ("direct", "direct_mixed", "factorize_once", "amg")
#: stop the pilot once a candidate solves a sample in under this many seconds: the other
#: candidates' fixed set-up costs alone would then exceed 2 % of a 1000-sample job
FLOOR_SECONDS = 5e-3
DIRECT_MAX_3D = 24
DIRECT_MAX_2D = 512
DIRECT_MAX_2D_WITH_AMG = 192


@dataclass(frozen=True)
class EngineDecision:
    """Which engine solves a job and why (``auto``: the pilot's candidates and timings)."""

    requested: str
    chosen: str
    reason: str
    candidates: list[str] = field(default_factory=list)
    pilot: dict[str, dict] = field(default_factory=dict)
    pilot_samples: int = 0
    pilot_seconds: float = 0.0

    @classmethod
    def fixed(cls, engine: str) -> EngineDecision:
        """The decision for an engine named in the spec."""
        return cls(engine, engine, "requested in the spec")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EngineDecision:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def candidates(family, spec) -> list[str]:
    """Applicable engines, likely winner first (the pilot's policy; applicability is the registry's)."""
    ok = set(applicable_engines(family.capabilities(spec)))
    large = (spec.dim == 3 and spec.n >= 32) or (spec.dim == 2 and spec.n >= 256)
    # sparse direct loses to AMG beyond these sizes (bench.engines); without AMG it is kept
    direct_ok = (spec.dim == 3 and spec.n <= DIRECT_MAX_3D) or (
        spec.dim == 2 and spec.n <= (DIRECT_MAX_2D if "amg" not in ok else DIRECT_MAX_2D_WITH_AMG))
    out = [name for name in ("spectral", "factorize_once") if name in ok]
    directs = [name for name in ("direct", "direct_mixed") if name in ok and direct_ok]
    iterative = [name for name in ("mg", "amg") if name in ok]
    out += (iterative + directs) if large else (directs[:1] + iterative + directs[1:])
    out += [name for name in ("skr", "pseudo_spectral") if name in ok]
    return out


def choose_engine(results: dict[str, dict], order: list[str]) -> tuple[str, str]:
    """The fastest converged, non-aborted candidate by steady-state seconds per sample."""
    ok = [(r["steady_seconds"], order.index(name), name) for name, r in results.items()
          if r["converged"] and not r["aborted"]]
    if not ok:
        return "direct", "no pilot candidate converged in time; falling back to direct"
    ok.sort()
    best, _, name = ok[0]
    others = ", ".join(f"{n} {results[n]['steady_seconds'] * 1e3:.1f} ms" for _, _, n in ok[1:])
    return name, f"fastest in pilot: {name} {best * 1e3:.1f} ms/sample" + (f" (vs {others})" if others else "")


def pilot_systems(family, spec, seed: int, indices) -> list:
    """The systems the pilot times: the first samples' systems; for a transient spec, a few implicit
    steps of the first trajectory (its step matrix, several right-hand sides: set-up then steady)."""
    first = [int(i) for i in list(indices)[:PILOT_SAMPLES]]
    if spec.time is None:
        return [family.assemble(spec, family.sample(spec, seed, i)) for i in first]
    if not family.capabilities(spec).linear_system or not first:
        return []
    sample = family.sample(spec, seed, first[0])
    L, b = family.assemble(spec, sample)
    dt = spec.time.dt
    shift, scale = {"backward_euler": (1.0, dt), "crank_nicolson": (1.0, 0.5 * dt), "bdf2": (1.5, dt)}[spec.time.scheme]
    M = StepMatrices(L).get(shift, scale)
    u0 = family.initial_state(spec, sample).ravel()
    return [(M, (1.0 + 0.1 * j) * u0 + dt * b) for j in range(PILOT_STEPS)]


def pilot(family, spec, seed: int, indices, options) -> EngineDecision:
    """Solve ``indices`` with every candidate (time-boxed); returns the decision."""
    order = candidates(family, spec)
    if len(order) == 1:
        return EngineDecision("auto", order[0], f"the only engine that applies: {order[0]}", order)
    systems = pilot_systems(family, spec, seed, indices)
    results: dict[str, dict] = {}
    best_first = best_steady = np.inf
    t_pilot = time.perf_counter()
    for name in order:
        direct = results.get("direct")
        if name == "direct_mixed" and direct and (
                direct["aborted"] or direct["steady_seconds"] > MIXED_GAIN * best_steady):
            continue  # a float32 factorization saves at most ~MIXED_GAIN over direct: it cannot win
        opts = dataclasses.replace(options, engine=name, ordering="none", fallback=False)
        engine = ENGINES[name](opts, family, spec)
        start = time.perf_counter()
        times, converged, aborted = [], True, False
        for j, (A, b) in enumerate(systems):
            # first sample: one-off set-ups allowed (FIRST_BUDGET x the best first sample);
            # later samples must stay within BUDGET x the best steady-state time
            first_budget = FIRST_BUDGET if name in SETUP_HEAVY else BUDGET
            limit = first_budget * best_first if j == 0 else BUDGET * best_steady
            t0 = time.perf_counter()
            engine.deadline = t0 + limit if np.isfinite(limit) else None
            try:
                x, _ = engine.solve(A, b)
            except PilotAborted:
                aborted = True
                break
            times.append(time.perf_counter() - t0)
            converged &= meets_tolerance(A, b, x, options.rtol, options.atol)[0]
            if times[-1] > limit:
                aborted = True  # a direct factorization cannot be interrupted; it still loses
                break
        total = time.perf_counter() - start
        results[name] = {"seconds": [round(t, 6) for t in times], "steady_seconds": times[-1] if times else np.inf,
                         "converged": converged and bool(times), "aborted": aborted, "total_seconds": round(total, 6)}
        if results[name]["converged"] and not aborted:
            best_first, best_steady = min(best_first, times[0]), min(best_steady, times[-1])
            if best_steady < FLOOR_SECONDS:
                break
    chosen, reason = choose_engine(results, order)
    for r in results.values():
        if not np.isfinite(r["steady_seconds"]):
            r["steady_seconds"] = None
    return EngineDecision("auto", chosen, reason, order, results, len(systems),
                          round(time.perf_counter() - t_pilot, 6))

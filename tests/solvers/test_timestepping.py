"""Trajectories: temporal order against an exact discrete solution, the time-error estimate, every
step verified, agreement between engines, and reuse proven by counting factorizations and hierarchy
builds with instruments around the libraries (not the engines' own counters)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from pdeforge.solvers.engines import direct as direct_module
from pdeforge.solvers.engines import amg as amg_module
from pdeforge.solvers.families import get_family
from pdeforge.solvers.families.fv import cell_centres, diffusion
from pdeforge.solvers.fields import CoefficientSpec
from pdeforge.solvers.generate import generate
from pdeforge.solvers.options import SolverOptions
from pdeforge.solvers.timestepping import TimeSpec, convergence_rate, integrate


def sine_mode(n: int):
    """u0 = sin(pi x) sin(pi y) at the cell centres: an exact eigenvector of the cell-centred Dirichlet
    Laplacian L, with the discrete eigenvalue lambda_h = 2 (2 - 2 cos(pi / n)) n^2."""
    c = cell_centres(n)
    u0 = np.outer(np.sin(np.pi * c), np.sin(np.pi * c))
    lam = 2 * (2 - 2 * np.cos(np.pi / n)) * n * n
    return diffusion(np.ones((n, n)), 1.0 / n).tocsr(), u0.ravel(), lam


def direct_solver(M, rhs, x0):
    x = spla.spsolve(M.tocsc(), rhs)
    return x, {"residual": float(np.linalg.norm(rhs - M @ x) / np.linalg.norm(rhs)), "converged": True}


def frame_errors(scheme: str, dt: float, n: int = 16):
    L, u0, lam = sine_mode(n)
    time = TimeSpec(t_end=0.05, dt=dt, frames=6, scheme=scheme)
    frames = {}
    rec = integrate(L, u0, lambda u: np.zeros_like(u), time, direct_solver, lambda k, u: frames.__setitem__(k, u))
    exact = {k: np.exp(-lam * t) * u0 for k, t in enumerate(time.frame_times())}
    errors = [np.linalg.norm(frames[k] - exact[k]) / np.linalg.norm(exact[k]) for k in range(1, 6)]
    return max(errors), errors[0], rec


@pytest.mark.parametrize("scheme, order", [("backward_euler", 1), ("crank_nicolson", 2), ("bdf2", 2)])
def test_temporal_order_on_an_exact_eigenmode(scheme, order):
    # only the time error remains: u0 is an exact eigenvector of the discrete operator
    errors = [frame_errors(scheme, dt)[0] for dt in (2e-3, 1e-3, 5e-4, 2.5e-4)]
    rate = convergence_rate(errors)
    assert abs(rate - order) < 0.15, (scheme, errors, rate)


@pytest.mark.parametrize("scheme", ["backward_euler", "crank_nicolson", "bdf2"])
def test_the_time_error_estimate_tracks_the_true_error_of_the_first_frame(scheme):
    for dt in (1e-3, 2.5e-4):
        _, first_frame_error, rec = frame_errors(scheme, dt)
        assert 0.5 * first_frame_error <= rec.time_error_estimate <= 2.0 * first_frame_error, \
            (scheme, dt, first_frame_error, rec.time_error_estimate)


def test_time_spec_needs_dt_to_divide_the_frame_interval():
    TimeSpec(t_end=1.0, dt=0.025, frames=11)
    with pytest.raises(ValueError, match=r"time.dt=0.03 is out of range; allowed: dt = 0.1 / k"):
        TimeSpec(t_end=1.0, dt=0.03, frames=11)
    assert TimeSpec(t_end=1.0, dt=0.025, frames=11).steps == 40


def heat(n=16, scheme="crank_nicolson", dt=1e-3, t_end=None, **coefficient):
    fam = get_family("heat")
    coeff = CoefficientSpec(**coefficient) if coefficient else CoefficientSpec(kind="lognormal")
    time = TimeSpec(t_end=t_end or 20 * dt, dt=dt, frames=3, scheme=scheme)
    return fam, fam.spec(n=n, coefficient=coeff, time=time)


@pytest.mark.parametrize("engine", ["amg", "skr", "direct_mixed"])
def test_every_step_meets_the_tolerance_and_frames_agree_with_a_direct_reference(engine):
    fam, spec = heat()
    reference = generate(fam, spec, range(3), seed=2, options=SolverOptions(engine="direct", ordering="none"))
    opts = SolverOptions(engine=engine, ordering="none", rtol=1e-10, fallback=False)
    res = generate(fam, spec, range(3), seed=2, options=opts)
    assert res.y.shape == (3, 3, 1, 16, 16)
    for rec in res.records:
        assert rec.converged and rec.residual <= 1e-10 and rec.steps == 20
    scale = np.abs(reference.y).max()
    assert np.abs(res.y - reference.y).max() <= 1e-7 * scale
    np.testing.assert_array_equal(res.y[:, 0], res.x[:, 1:2])  # frame 0 is the stored u0 channel


class Count:
    """Wraps a library entry point and counts the calls (with a key per call site)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("scheme, per_trajectory", [("crank_nicolson", 2), ("backward_euler", 2), ("bdf2", 4)])
def test_factorizations_per_trajectory_are_bounded_not_per_step(monkeypatch, scheme, per_trajectory):
    # SuperLU path, instrumented: one factorization per step matrix -- the integration's (one; two with
    # BDF2's start-up step) and the step-doubling estimate's -- whatever the number of steps
    monkeypatch.setattr(direct_module, "HAVE_CHOLMOD", False)
    counts = []
    for dt in (2e-3, 1e-3):
        count = Count(direct_module.factorize)
        monkeypatch.setattr(direct_module, "factorize", count)
        fam, spec = heat(scheme=scheme, dt=dt, t_end=0.04)  # 20, then 40 steps
        res = generate(fam, spec, range(3), seed=1, options=SolverOptions(engine="direct", ordering="none"))
        assert all(r.operators == per_trajectory and r.steps == round(0.04 / dt) for r in res.records)
        counts.append(count.calls)
    assert counts == [3 * per_trajectory] * 2


def test_a_fixed_operator_is_factorized_once_for_every_trajectory(monkeypatch):
    monkeypatch.setattr(direct_module, "HAVE_CHOLMOD", False)
    count = Count(direct_module.factorize)
    monkeypatch.setattr(direct_module, "factorize", count)
    fam, spec = heat(kind="constant", value=2.0)
    res = generate(fam, spec, range(4), seed=1, options=SolverOptions(engine="factorize_once", ordering="none"))
    assert count.calls == 2  # CN's step matrix and the estimate's, shared by all four samples
    assert all(r.converged for r in res.records)


def test_one_amg_hierarchy_per_step_matrix(monkeypatch):
    count = Count(amg_module.amg_hierarchy)
    monkeypatch.setattr(amg_module, "amg_hierarchy", count)
    fam, spec = heat(dt=1e-3)
    res = generate(fam, spec, [0], seed=1, options=SolverOptions(engine="amg", ordering="none"))
    assert res.records[0].steps == 20 and count.calls <= 2  # a full set-up, then Galerkin rebuilds at most


def test_recycling_carries_along_the_time_steps():
    # stiff steps (dt = 1e-2 at 32^2: ~60 Jacobi-GMRES iterations each) -- where recycling pays
    fam, spec = heat(n=32, dt=1e-2)
    skr = generate(fam, spec, [0], seed=3, options=SolverOptions(engine="skr", ordering="none"))
    gmres = generate(fam, spec, [0], seed=3, options=SolverOptions(engine="gmres", ordering="none"))
    assert skr.records[0].matvecs < 0.8 * gmres.records[0].matvecs


def test_reaction_diffusion_refuses_a_step_beyond_the_explicit_stability_bound():
    fam = get_family("reaction_diffusion")
    with pytest.raises(ValueError, match=r"time.dt=0.6 is out of range; allowed: time.dt <= 0.5"):
        fam.spec(n=16, kind="allen_cahn", rate=1.0, time=TimeSpec(t_end=6.0, dt=0.6, frames=11))
    fam.spec(n=16, kind="allen_cahn", rate=1.0, time=TimeSpec(t_end=5.0, dt=0.5, frames=11))


def test_gray_scott_stays_in_its_invariant_region_and_solves_with_one_shared_operator(monkeypatch):
    monkeypatch.setattr(direct_module, "HAVE_CHOLMOD", False)
    count = Count(direct_module.factorize)
    monkeypatch.setattr(direct_module, "factorize", count)
    fam = get_family("reaction_diffusion")
    spec = fam.spec(n=24, kind="gray_scott", time=TimeSpec(t_end=200.0, dt=0.5, frames=5, scheme="bdf2"))
    res = generate(fam, spec, range(2), seed=0, options=SolverOptions(engine="factorize_once", ordering="none"))
    assert res.y.shape == (2, 5, 2, 24, 24)
    assert res.y.min() >= -1e-6 and res.y.max() <= 1 + 1e-6
    assert count.calls == 4  # BDF2 + its start-up step, and the estimate's two: for both samples
    spectral = generate(fam, spec, range(2), seed=0, options=SolverOptions(engine="spectral", ordering="none"))
    assert np.abs(spectral.y - res.y).max() < 1e-10

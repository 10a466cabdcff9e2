"""The periodic pseudo-spectral families (burgers, navier_stokes): exact solutions, temporal order,
energy, stability refusals and the CFL monitor, and datasets whose stored inputs reproduce their frames."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

from pdeforge.solvers.families import get_family
from pdeforge.solvers.families.base import Sample
from pdeforge.solvers.fields import GRFSpec
from pdeforge.solvers.families.pseudospectral import CFL_LIMIT, periodic_points
from pdeforge.solvers.generate import generate
from pdeforge.solvers.options import SolverOptions
from pdeforge.solvers.timestepping import TimeSpec, convergence_rate
from pdeforge.workers.spec import parse_spec

OPTS = SolverOptions(engine="pseudo_spectral")


def run(family, spec, sample):
    """The frames (T, C, *grid) and the record of one trajectory."""
    frames = {}
    rec = family.integrate(spec, sample, lambda k, u: frames.__setitem__(k, np.array(u)), OPTS)
    return np.stack([frames[k] for k in sorted(frames)]), rec


# ----------------------------------------------------------------------------- Navier-Stokes
def taylor_green(n):
    """w0 = 4 pi sin(2 pi x) sin(2 pi y): the vorticity of u = (sin 2pi x cos 2pi y, -cos 2pi x sin 2pi y),
    an exact solution with (u . grad) w = 0 that decays as exp(-8 pi^2 nu t)."""
    x = periodic_points(n)
    return 4 * math.pi * np.sin(2 * math.pi * x)[:, None] * np.sin(2 * math.pi * x)[None, :]


@pytest.mark.parametrize("scheme, order", [("backward_euler", 1), ("crank_nicolson", 2), ("bdf2", 2)])
def test_taylor_green_decays_at_the_exact_rate_with_the_schemes_order(scheme, order):
    ns, nu, t_end = get_family("navier_stokes"), 0.05, 0.4
    w0 = taylor_green(16)
    errors = []
    for dt in (0.02, 0.01, 0.005):
        spec = ns.spec(n=16, viscosity=nu, forcing_amplitude=0.0,
                       time=TimeSpec(t_end=t_end, dt=dt, frames=3, scheme=scheme))
        frames, rec = run(ns, spec, Sample(0, {"w0": w0}))
        assert rec.converged and rec.residual_max <= 1e-14
        exact = w0 * math.exp(-8 * math.pi**2 * nu * t_end)
        errors.append(np.abs(frames[-1, 0] - exact).max() / np.abs(exact).max())
    assert convergence_rate(errors) == pytest.approx(order, abs=0.15)
    assert errors[-1] < (3e-2 if order == 1 else 3e-4)  # lambda t = 1.58: BE ~ lambda^2 dt t / 2


def test_unforced_energy_never_grows():
    ns = get_family("navier_stokes")
    spec = ns.spec(n=32, viscosity=1e-3, forcing_amplitude=0.0, time=TimeSpec(t_end=4.0, dt=0.01, frames=41))
    frames, rec = run(ns, spec, ns.sample(spec, 5, 2))
    assert rec.converged
    enstrophy = (frames[:, 0] ** 2).mean(axis=(1, 2))
    w_hat = np.fft.rfft2(frames[:, 0])
    k = np.fft.fftfreq(32, 1 / 32)[:, None] ** 2 + np.fft.rfftfreq(32, 1 / 32)[None, :] ** 2
    weight = np.where(k > 0, 1 / np.where(k > 0, k, 1), 0) * np.where(np.fft.rfftfreq(32, 1 / 32) == 0, 1, 2)
    energy = (np.abs(w_hat) ** 2 * weight).sum(axis=(1, 2))  # ~ sum |u_hat|^2 = sum |w_hat|^2 / |k|^2
    assert np.all(np.diff(energy) <= 1e-12 * energy[0]) and energy[-1] < energy[0]
    assert np.all(np.diff(enstrophy) <= 1e-12 * enstrophy[0])


def test_forced_flow_matches_a_fine_step_reference_and_the_estimate_is_honest():
    ns = get_family("navier_stokes")
    coarse = ns.spec(n=32, time=TimeSpec(t_end=2.0, dt=0.02, frames=5))
    fine = ns.spec(n=32, time=TimeSpec(t_end=2.0, dt=0.0025, frames=5))
    sample = ns.sample(coarse, 0, 1)
    got, rec = run(ns, coarse, sample)
    ref, _ = run(ns, fine, sample)
    err_first = np.linalg.norm(got[1] - ref[1]) / np.linalg.norm(ref[1])
    assert rec.converged and err_first < 1e-3
    # step doubling over the first frame interval estimates the error of that frame within a factor 3
    assert err_first / 3 < rec.time_error_estimate < 3 * err_first


# ----------------------------------------------------------------------------- Burgers
def cole_hopf(x, t, nu, a=3.0):
    """u = -2 nu phi_x / phi with phi = a + exp(-4 pi^2 nu t) cos(2 pi x), a solution of the heat equation."""
    e = math.exp(-4 * math.pi**2 * nu * t)
    return 4 * math.pi * nu * e * np.sin(2 * math.pi * x) / (a + e * np.cos(2 * math.pi * x))


@pytest.mark.parametrize("scheme, order", [("backward_euler", 1), ("crank_nicolson", 2), ("bdf2", 2)])
def test_burgers_agrees_with_cole_hopf_at_the_schemes_order(scheme, order):
    burgers, nu, t_end, n = get_family("burgers"), 0.05, 0.5, 48  # spectrum ~ 0.17^k: n = 48 resolves it to 1e-12
    x = periodic_points(n)
    quiet = GRFSpec(alpha=2.0, tau=5.0, sigma=1.0)  # admits dt = 0.025 (the run's own CFL number is <= 0.4)
    errors = []
    for dt in (0.025, 0.0125, 0.00625):
        spec = burgers.spec(n=n, nu_min=nu, nu_max=nu, initial=quiet,
                            time=TimeSpec(t_end=t_end, dt=dt, frames=3, scheme=scheme))
        frames, rec = run(burgers, spec, Sample(0, {"u0": cole_hopf(x, 0.0, nu)}, {"nu": nu}))
        assert rec.converged
        exact = cole_hopf(x, t_end, nu)
        errors.append(np.abs(frames[-1, 0] - exact).max() / np.abs(exact).max())
    assert convergence_rate(errors) == pytest.approx(order, abs=0.2)
    assert errors[-1] < (1e-2 if order == 1 else 1e-4)


def test_burgers_1d_conserves_the_mean_and_obeys_the_maximum_principle():
    burgers = get_family("burgers")
    spec = burgers.spec(n=256, nu_min=0.01, nu_max=0.01, time=TimeSpec(t_end=0.5, dt=2.5e-4, frames=11))
    frames, rec = run(burgers, spec, burgers.sample(spec, 1, 4))
    assert rec.converged
    u = frames[:, 0]
    assert np.abs(u.mean(axis=1) - u[0].mean()).max() < 1e-13
    assert np.abs(u).max(axis=1)[-1] <= np.abs(u[0]).max() * 1.02  # dealiased spectral: max principle to ~2%


def test_burgers_2d_is_a_vector_equation_with_two_channels():
    burgers = get_family("burgers")
    spec = burgers.spec(n=32, dim=2, time=TimeSpec(t_end=0.05, dt=1e-3, frames=3))
    assert burgers.output_names(spec) == ["u", "v"] and burgers.input_names(spec) == ["u0", "v0"]
    sample = burgers.sample(spec, 0, 0)
    assert not np.allclose(sample.fields["u0"], sample.fields["v0"])
    frames, rec = run(burgers, spec, sample)
    assert frames.shape == (3, 2, 32, 32) and rec.converged and rec.operators == 2  # dt and the estimate's 2 dt
    assert np.array_equal(frames[0], np.stack([sample.fields["u0"], sample.fields["v0"]]))


# ----------------------------------------------------------------------------- stability
def test_a_dt_above_the_cfl_bound_is_refused_naming_the_bound():
    with pytest.raises(ValidationError) as info:
        parse_spec({"family": "burgers", "grid": {"n": 1024}, "time": {"t_end": 1.0, "dt": 1e-3, "frames": 11}})
    text = str(info.value)
    assert "time.dt=0.001" in text and "time.dt <= 0.000" in text and "CFL" not in text.split("allowed")[0][:0]
    with pytest.raises(ValidationError, match=r"time\.dt <= "):
        parse_spec({"family": "navier_stokes", "grid": {"n": 256}, "time": {"t_end": 1.0, "dt": 0.1, "frames": 11}})
    parse_spec({"family": "navier_stokes", "grid": {"n": 64}})  # the defaults are admitted


def test_a_trajectory_that_outruns_its_cfl_number_is_marked_unconverged():
    burgers = get_family("burgers")
    spec = burgers.spec(n=128, nu_min=0.01, nu_max=0.01, time=TimeSpec(t_end=0.1, dt=1e-3, frames=3))
    x = periodic_points(128)
    fast = 20.0 * np.sin(2 * math.pi * x)  # dt * 20 * 128 = 2.56 > CFL_LIMIT
    with np.errstate(over="ignore", invalid="ignore"):  # it blows up, as the flag says
        _, rec = run(burgers, spec, Sample(0, {"u0": fast}, {"nu": 0.01}))
    assert not rec.converged and any(f"> {CFL_LIMIT}" in m for m in rec.messages)


# ----------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("family, params", [
    ("burgers", dict(n=64, dim=1, nu_min=0.01, nu_max=0.1, time=TimeSpec(t_end=0.2, dt=1e-3, frames=5))),
    ("navier_stokes", dict(n=16, time=TimeSpec(t_end=0.5, dt=0.01, frames=3))),
])
def test_stored_inputs_reproduce_the_stored_frames(family, params):
    fam = get_family(family)
    spec = fam.spec(**params)
    res = generate(fam, spec, [3, 0, 2], seed=11, options=SolverOptions(), precision="float32")
    assert res.meta["engine"]["chosen"] == "pseudo_spectral"
    assert res.y.shape == (3, spec.time.frames, len(fam.output_names(spec)), *spec.shape)
    for pos, index in enumerate(res.indices):
        scalars = {k: float(v[pos]) for k, v in res.scalars.items()}
        stored = fam.stored_sample(spec, int(index), res.x[pos], scalars, {})
        frames, rec = run(fam, spec, stored)
        assert np.array_equal(frames, res.y[pos])
        assert res.records[pos].steps == spec.time.steps and res.records[pos].time_error_estimate > 0


@pytest.mark.parametrize("family, params", [
    ("burgers", dict(n=64, dim=1, nu_min=0.01, nu_max=0.1, time=TimeSpec(t_end=0.1, dt=1e-3, frames=3))),
    ("burgers", dict(n=16, dim=2, time=TimeSpec(t_end=0.02, dt=1e-3, frames=3))),
    ("navier_stokes", dict(n=16, time=TimeSpec(t_end=0.2, dt=0.01, frames=3, scheme="bdf2"))),
])
def test_a_batch_gives_each_trajectory_exactly_its_own_frames_and_record(family, params):
    fam = get_family(family)
    spec = fam.spec(**params)
    samples = [fam.sample(spec, 2, i) for i in range(5)]
    batched = {}
    records = fam.integrate_batch(spec, samples, lambda k, u: batched.__setitem__(k, np.array(u)), OPTS)
    assert len(records) == 5 and fam.batch_size(spec) >= 5
    for j, sample in enumerate(samples):
        alone, rec = run(fam, spec, sample)
        assert np.array_equal(np.stack([batched[k][j] for k in sorted(batched)]), alone)
        assert records[j].residual_max == pytest.approx(rec.residual_max, rel=1e-6, abs=1e-18)
        assert records[j].time_error_estimate == pytest.approx(rec.time_error_estimate, rel=1e-9)
        assert records[j].messages == rec.messages and records[j].converged


def test_one_runaway_trajectory_does_not_mark_its_batch_unconverged():
    burgers = get_family("burgers")
    spec = burgers.spec(n=128, nu_min=0.01, nu_max=0.01, time=TimeSpec(t_end=0.1, dt=1e-3, frames=3))
    x = periodic_points(128)
    calm, fast = 0.5 * np.sin(2 * math.pi * x), 20.0 * np.sin(2 * math.pi * x)
    with np.errstate(over="ignore", invalid="ignore"):
        recs = burgers.integrate_batch(spec, [Sample(0, {"u0": calm}, {"nu": 0.01}), Sample(1, {"u0": fast}, {"nu": 0.01})],
                                       lambda k, u: None, OPTS)
    assert recs[0].converged and recs[0].residual_max < 1e-14 and not recs[1].converged

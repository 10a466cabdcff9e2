"""The shard format: every family rebuilt from the file alone, and every claim the file makes checked.

The re-assembly reads nothing but the HDF5 file (the spec from its attributes, the fields
from the channels of ``x``, ``scalars/`` and ``inputs/``) and hands that to the family's
``assemble``; a SuperLU solve of the rebuilt system is the reference."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from pdeforge.workers.dataset import FormatError, read_sample, shard_spec
from pdeforge.workers.standalone import generate_local
from tests.cluster import make_job

RTOL = 1e-10
ROUNDING = {"float32": 2.0**-24, "float64": 2.0**-53}

CASES = {
    "darcy threshold": ("darcy", dict(n=16), {}),
    "darcy lognormal, random f, 3-D": ("darcy", dict(n=8, grid={"n": 8, "dim": 3}),
                                       {"coefficient": {"kind": "lognormal"}, "forcing": {"kind": "grf"}}),
    "poisson chebyshev boundary": ("poisson", dict(n=16), {"boundary": "chebyshev"}),
    "poisson chebyshev boundary 3-D": ("poisson", dict(n=8, grid={"n": 8, "dim": 3}), {"boundary": "chebyshev"}),
    "helmholtz impedance, k varies": ("helmholtz", dict(n=16), {"k_min": 5.0, "k_max": 9.0}),
    "helmholtz impedance, real_imag": ("helmholtz", dict(n=16, output={"complex": "real_imag"}),
                                       {"k_min": 5.0, "k_max": 9.0}),
    "helmholtz dirichlet, random f": ("helmholtz", dict(n=16),
                                      {"boundary": "dirichlet", "k_min": 6.0, "k_max": 6.0,
                                       "forcing": {"kind": "grf"}}),
    "advection_diffusion, nu varies": ("advection_diffusion", dict(n=16),
                                       {"nu_min": 0.01, "nu_max": 0.1, "forcing": {"kind": "grf"}}),
    "darcy float64": ("darcy", dict(n=16, output={"dtype": "float64"}), {"coefficient": {"kind": "lognormal"}}),
}


def build(case: str, tmp_path):
    family, extra, params = CASES[case]
    extra = dict(extra)
    n = extra.pop("n")
    grid = extra.pop("grid", {"n": n})
    output = {"shard_samples": 3, **extra.pop("output", {})}
    job = make_job(family, n=n, samples=6, seed=4, grid=grid, params=params, output=output,
                   solver={"rtol": RTOL, "engine": "direct"}, split={"train": 0.5, "valid": 0.5, "test": 0.0})
    manifest = generate_local(job, tmp_path, workers=1)
    return job, manifest, tmp_path


def stored_system(h5: h5py.File, pos: int):
    """(family, spec, A, b, sample) rebuilt from the file alone."""
    fam, spec = shard_spec(h5)
    scalars = {k: h5["scalars"][k][pos] for k in h5.get("scalars", {})}
    extras = {k: h5["inputs"][k][pos].astype(np.float64) for k in h5.get("inputs", {})}
    sample = fam.stored_sample(spec, int(h5["sample_index"][pos]), h5["x"][pos], scalars, extras)
    A, b = fam.assemble(spec, sample)
    return fam, spec, A, b, sample


def stored_solution(h5: h5py.File, pos: int) -> np.ndarray:
    y = h5["y"][pos]
    if h5.attrs["complex"] == "real_imag" and y.shape[0] == 2:
        return (y[0].astype(np.float64) + 1j * y[1].astype(np.float64)).ravel()
    return y[0].astype(np.complex128 if np.iscomplexobj(y) else np.float64).ravel()


@pytest.mark.parametrize("case", CASES)
def test_every_family_rebuilds_from_the_file_and_every_claim_holds(case, tmp_path):
    job, manifest, root = build(case, tmp_path)
    precision = job.output.dtype
    seen = []
    for entry in (f for f in manifest["files"] if "shard" in f):
        with h5py.File(root / entry["path"], "r") as h5:
            assert f"rtol = {RTOL:g}" in h5.attrs["claims"] and f"rounded to {precision}" in h5.attrs["claims"]
            in_names = json.loads(h5.attrs["input_channels"])
            for pos in range(h5["x"].shape[0]):
                fam, spec, A, b, sample = stored_system(h5, pos)
                seen.append(sample.index)
                # the inputs are the rounded inputs of sample (seed, index): nothing else was solved
                drawn = fam.sample(spec, job.seed, sample.index).rounded(precision)
                np.testing.assert_array_equal(h5["x"][pos], fam.inputs(spec, drawn).astype(precision))
                # derived channels and scalar channels are what the stored inputs say
                for name, value in fam.derived(spec, sample).items():
                    np.testing.assert_array_equal(h5["x"][pos, in_names.index(name)], value.astype(precision))
                for name in fam.varying_scalars(spec):
                    assert np.all(h5["x"][pos, in_names.index(name)] == h5["scalars"][name][pos])
                # y is the rounded float64 solution of the rebuilt system
                y = stored_solution(h5, pos)
                reference = spla.spsolve(sp.csc_matrix(A), b)
                bound = ROUNDING[precision] * np.abs(reference) + 1e3 * RTOL * np.abs(reference).max()
                assert np.all(np.abs(y - reference) <= bound), case
                # both residuals recomputed from the file's arrays
                assert h5["solver/residual"][pos] <= RTOL and h5["solver/converged"][pos]
                stored = np.linalg.norm(b - A @ y) / np.linalg.norm(b)
                assert stored == pytest.approx(h5["solver/residual_stored"][pos], rel=1e-6)
    assert sorted(seen) == list(range(job.samples))


def test_reading_an_old_format_shard_names_the_problem(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as h5:  # format 1: no format_version attribute
        h5.create_dataset("x", data=np.zeros((1, 4, 4)))
        h5.attrs["pdeforge_version"] = "0.1.0"
    with pytest.raises(FormatError, match="format 1 .*0.1.0.* regenerate"):
        read_sample(path, 0)


def test_the_dataset_id_changes_with_the_format_version(monkeypatch):
    from pdeforge.workers import spec as spec_module

    job = make_job()
    first = job.dataset_id
    monkeypatch.setattr(spec_module, "FORMAT_VERSION", 99)
    assert job.dataset_id != first


def arrays_by_index(root, manifest):
    out = {}
    for f in (f for f in manifest["files"] if "shard" in f):
        with h5py.File(root / f["path"], "r") as h5:
            for pos, index in enumerate(h5["sample_index"][:]):
                out[int(index)] = (h5["x"][pos], h5["y"][pos])
    return out


def test_regenerating_a_spec_gives_bit_identical_x_and_y_with_a_pinned_engine(tmp_path):
    job = make_job("darcy", n=16, samples=8, seed=11, solver={"engine": "direct"},
                   params={"coefficient": {"kind": "lognormal"}})
    first = generate_local(job, tmp_path / "a", workers=1)
    again = generate_local(job, tmp_path / "b", workers=2)
    assert "bit-identical" in first["reproducibility"]
    a, b = arrays_by_index(tmp_path / "a", first), arrays_by_index(tmp_path / "b", again)
    assert sorted(a) == sorted(b) == list(range(8))
    for i in a:
        assert np.array_equal(a[i][0], b[i][0]) and np.array_equal(a[i][1], b[i][1])


TRAJECTORY_CASES = {
    "heat lognormal": ("heat", {}, {"t_end": 0.01, "dt": 0.001, "frames": 3, "scheme": "crank_nicolson"}),
    "gray_scott": ("reaction_diffusion", {"kind": "gray_scott"}, {"t_end": 20.0, "dt": 0.5, "frames": 5,
                                                                  "scheme": "bdf2"}),
    "advection_diffusion transient": ("advection_diffusion", {"nu_min": 0.01, "nu_max": 0.05},
                                      {"t_end": 0.1, "dt": 0.01, "frames": 3, "scheme": "backward_euler"}),
}


@pytest.mark.parametrize("case", TRAJECTORY_CASES)
def test_trajectories_rebuild_from_the_file_and_their_claims_hold(case, tmp_path):
    from pdeforge.solvers.timestepping import integrate

    family, params, time = TRAJECTORY_CASES[case]
    job = make_job(family, n=16, samples=4, seed=2, params=params, time=time, output={"shard_samples": 2},
                   solver={"rtol": RTOL, "engine": "auto"})
    manifest = generate_local(job, tmp_path, workers=1)
    assert manifest["time"]["frames"] == time["frames"] and len(manifest["time"]["frame_times"]) == time["frames"]
    for entry in (f for f in manifest["files"] if "shard" in f):
        with h5py.File(tmp_path / entry["path"], "r") as h5:
            assert "time[k] of the time integrator" in h5.attrs["claims"]
            assert [d[0].name for d in h5["y"].dims] == ["/sample_index", "/time", "/channel_out", "/grid_x",
                                                         "/grid_y"]
            np.testing.assert_allclose(h5["time"][:], np.linspace(0, time["t_end"], time["frames"]))
            for pos in range(h5["x"].shape[0]):
                fam, spec, L, b, sample = stored_system(h5, pos)
                u0 = fam.initial_state(spec, sample)
                np.testing.assert_array_equal(h5["y"][pos, 0], u0.astype(np.float32))  # frame 0 is the stored u0
                frames = {}

                def exact_solve(M, rhs, x0):
                    x = spla.spsolve(sp.csc_matrix(M), rhs)
                    return x, {"residual": float(np.linalg.norm(rhs - M @ x) / np.linalg.norm(rhs)), "converged": True}

                integrate(L, u0, fam.explicit(spec, sample, b), spec.time, exact_solve,
                          lambda k, u: frames.__setitem__(k, u))
                stored = h5["y"][pos].astype(np.float64)
                scale = np.abs(stored).max()
                for k in range(time["frames"]):
                    rerun = frames[k].reshape(stored[k].shape)
                    assert np.all(np.abs(stored[k] - rerun) <= 2.0**-24 * np.abs(rerun) + 1e-6 * scale), (case, k)
                assert h5["solver/residual"][pos] <= RTOL and h5["solver/steps"][pos] == spec.time.steps
                assert 0 < h5["solver/time_error_estimate"][pos] < 0.1
                assert np.isnan(h5["solver/residual_stored"][pos])


@pytest.mark.parametrize("family, grid, params, time", [
    ("burgers", {"n": 64, "dim": 1}, {"nu_min": 0.01, "nu_max": 0.1}, {"t_end": 0.2, "dt": 1e-3, "frames": 5}),
    ("burgers", {"n": 16, "dim": 2}, {}, {"t_end": 0.02, "dt": 1e-3, "frames": 3}),
    ("navier_stokes", {"n": 16}, {}, {"t_end": 0.5, "dt": 0.01, "frames": 3}),
])
def test_periodic_trajectories_rebuild_from_the_file(family, grid, params, time, tmp_path):
    """The pseudo-spectral families' files: periodic grid points as axis scales, the grid and boundary
    conditions in words, and frames that the family's own stepper reproduces from the stored inputs."""
    job = make_job(family, samples=3, seed=4, params=params, time=time, grid=grid, output={"shard_samples": 3},
                   split={"train": 1.0, "valid": 0.0, "test": 0.0})
    manifest = generate_local(job, tmp_path, workers=1)
    assert manifest["grid_type"].startswith("periodic") and manifest["engine"]["chosen"] == "pseudo_spectral"
    dims = ["/grid_x", "/grid_y"][: grid.get("dim", 2)]
    for entry in (f for f in manifest["files"] if "shard" in f):
        with h5py.File(tmp_path / entry["path"], "r") as h5:
            assert h5.attrs["grid_type"] == h5.attrs["boundary_conditions"] == manifest["grid_type"]
            assert [d[0].name for d in h5["y"].dims] == ["/sample_index", "/time", "/channel_out", *dims]
            np.testing.assert_array_equal(h5["grid_x"][:], np.arange(grid["n"]) / grid["n"])
            fam, spec = shard_spec(h5)
            for pos in range(h5["x"].shape[0]):
                scalars = {k: h5["scalars"][k][pos] for k in h5.get("scalars", {})}
                sample = fam.stored_sample(spec, int(h5["sample_index"][pos]), h5["x"][pos], scalars, {})
                frames = {}
                fam.integrate(spec, sample, lambda k, u: frames.__setitem__(k, np.array(u)), job.solver_options())
                rerun = np.stack([frames[k] for k in sorted(frames)]).astype(np.float32)
                np.testing.assert_array_equal(h5["y"][pos], rerun)
                assert h5["solver/residual"][pos] <= 1e-14 and h5["solver/engine"][pos] == b"pseudo_spectral"

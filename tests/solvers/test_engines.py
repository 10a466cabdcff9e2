"""Engines: correctness against a direct solve, and reuse proven by counts (never by time)."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from pdeforge.solvers.engines import ENGINES, HAVE_CHOLMOD, FactorCache, candidates, choose_engine
from pdeforge.solvers.engines import direct as direct_module
from pdeforge.solvers.engines.base import grown
from pdeforge.solvers.families import get_family
from pdeforge.solvers.fields import CoefficientSpec
from pdeforge.solvers.generate import generate
from pdeforge.solvers.options import SolverOptions
from tests.helpers import assert_solved


def run(family, params, engine, count=5, seed=0, cache=None, **opts):
    fam = get_family(family)
    spec = fam.spec(**params)
    res = generate(fam, spec, range(count), seed=seed, cache=cache,
                   options=SolverOptions(engine=engine, fallback=False, **opts))
    for pos, rec in enumerate(res.records):
        A, b = fam.assemble(spec, fam.sample(spec, seed, rec.index))
        assert rec.converged
        assert_solved(A, b, res.y[pos].ravel(), 1e-8, reference=spla.spsolve(A.tocsc(), b))
    return res


@pytest.mark.skipif(not HAVE_CHOLMOD, reason="CHOLMOD (libsuitesparse + scikit-sparse) not installed")
def test_direct_reuses_one_symbolic_analysis_for_the_whole_sequence():
    res = run("darcy", dict(n=24), "direct", count=6)
    assert res.meta["counters"] == {"symbolic_analyses": 1, "factorizations": 6}
    assert all(r.message.startswith("cholmod") for r in res.records)


def test_direct_without_cholmod_falls_back_to_superlu(monkeypatch):
    monkeypatch.setattr(direct_module, "HAVE_CHOLMOD", False)
    res = run("darcy", dict(n=24), "direct", count=3)
    assert res.meta["counters"] == {"factorizations": 3}
    assert all(r.message.startswith("superlu") for r in res.records)


def test_direct_uses_superlu_for_non_spd_families():
    res = run("advection_diffusion", dict(n=24), "direct", count=2)
    assert all(r.message.startswith("superlu") for r in res.records)


def test_factorize_once_factors_once_per_cache_and_solves_blocks():
    cache = FactorCache()  # a worker process owns one for its lifetime
    first = run("poisson", dict(n=24, boundary="chebyshev"), "factorize_once", count=6, cache=cache)
    assert first.meta["counters"]["factorizations"] == 1 and len(cache) == 1
    second = run("poisson", dict(n=24, boundary="chebyshev"), "factorize_once", count=4, seed=1, cache=cache)
    assert second.meta["counters"] == {"factorization_reuses": 1}  # the worker's factorization
    third = run("poisson", dict(n=24, boundary="chebyshev"), "factorize_once", count=2)  # a fresh cache
    assert third.meta["counters"]["factorizations"] == 1


def test_direct_mixed_refines_a_float32_factorization_to_the_tolerance():
    res = run("darcy", dict(n=32), "direct_mixed", count=3)
    assert all(r.iterations >= 1 for r in res.records)  # refinement steps
    assert res.meta["counters"] == {"factorizations": 3}
    res = run("helmholtz", dict(n=32, k_min=5.0, k_max=5.0), "direct_mixed", count=2)  # complex64 LU
    assert res.y.dtype == np.complex128


def test_amg_reuses_the_hierarchy_by_galerkin_rebuilds():
    res = run("darcy", dict(n=32), "amg", count=6)
    assert res.meta["counters"] == {"hierarchy_builds": 1, "galerkin_rebuilds": 5}
    its = [r.iterations for r in res.records]
    assert max(its) <= its[0] + 3


def test_amg_rebuilds_when_reuse_stops_working():
    # a hierarchy built for a = 1 is reused for a 1000:1 contrast coefficient: iterations
    # grow, so the next system gets a full set-up
    fam = get_family("darcy")
    flat = fam.spec(n=32, coefficient=CoefficientSpec(kind="constant"))
    rough = fam.spec(n=32, coefficient=CoefficientSpec(kind="threshold", high=1000.0, low=1.0))
    engine = ENGINES["amg"](SolverOptions(engine="amg"), fam, flat)
    A0, b0 = fam.assemble(flat, fam.sample(flat, 0, 0))
    engine.solve(A0, b0)
    for i in range(2):
        A, b = fam.assemble(rough, fam.sample(rough, 0, i))
        x, res = engine.solve(A, b)
        assert res.residual <= 1e-8
    assert engine.counters["hierarchy_builds"] == 2 and engine.counters["galerkin_rebuilds"] == 1


def test_amg_solves_nonsymmetric_advection_diffusion():
    res = run("advection_diffusion", dict(n=24), "amg", count=3)
    assert "RS-AMG" in res.records[0].message


def test_skr_reuses_a_strong_preconditioner_from_a_neighbour():
    res = run("darcy", dict(n=24), "skr", count=6, preconditioner="ilu")
    c = res.meta["counters"]
    assert c["preconditioner_builds"] + c["preconditioner_reuses"] == 6
    assert c["preconditioner_reuses"] >= 1 and c["preconditioner_builds"] < 6


def test_gmres_baseline_never_reuses_its_preconditioner():
    res = run("darcy", dict(n=24), "gmres", count=3, preconditioner="ilu")
    assert res.meta["counters"] == {"preconditioner_builds": 3}


def test_refresh_rule():
    assert not grown(10, None, 1.5)
    assert not grown(13, 10, 1.5) and not grown(15, 10, 1.5) and grown(16, 10, 1.5)
    assert not grown(5, 2, 1.5) and grown(6, 2, 1.5)  # at least 3 more iterations


# ----------------------------------------------------------------------------- auto
def result(steady, converged=True, aborted=False):
    return {"steady_seconds": steady, "converged": converged, "aborted": aborted}


def test_auto_choice_is_a_pure_function_of_the_pilot_measurements():
    order = ["direct", "direct_mixed", "amg", "skr"]
    pilot = {"direct": result(0.010), "direct_mixed": result(0.008), "amg": result(0.009), "skr": result(0.5)}
    assert choose_engine(pilot, order)[0] == "direct_mixed"
    assert choose_engine(pilot, order) == choose_engine(dict(reversed(list(pilot.items()))), order)
    pilot["direct_mixed"] = result(0.001, converged=False)  # missed the tolerance
    pilot["amg"] = result(0.002, aborted=True)  # over its time budget
    name, reason = choose_engine(pilot, order)
    assert name == "direct" and "10.0 ms" in reason
    tie = {"amg": result(0.01), "direct": result(0.01)}
    assert choose_engine(tie, order)[0] == "direct"  # ties: candidate order
    assert choose_engine({"skr": result(1.0, converged=False)}, order)[0] == "direct"


def test_spectral_solves_the_laplacian_exactly_in_blocks():
    res = run("poisson", dict(n=24, boundary="chebyshev"), "spectral", count=5)
    assert res.meta["counters"] == {"transforms": 5, "diagonalisations": 1}  # one operator for every sample
    assert max(r.residual for r in res.records) < 1e-12
    res = run("poisson", dict(n=12, dim=3), "spectral", count=3)
    assert max(r.residual for r in res.records) < 1e-12
    run("darcy", dict(n=16, coefficient=CoefficientSpec(kind="constant", value=2.5)), "spectral", count=2)
    with pytest.raises(ValueError, match="constant-coefficient Laplacian"):
        run("darcy", dict(n=16), "spectral", count=1)


def test_auto_candidates_depend_on_the_family_and_size():
    fam = get_family("poisson")
    assert candidates(fam, fam.spec(n=32))[:2] == ["spectral", "factorize_once"]
    helm = get_family("helmholtz")
    assert "amg" not in candidates(helm, helm.spec(n=32))
    darcy = get_family("darcy")
    assert candidates(darcy, darcy.spec(n=64)) == ["direct", "mg", "amg", "direct_mixed", "skr"]
    assert candidates(darcy, darcy.spec(n=48, dim=3))[0] == "mg"
    assert "direct" not in candidates(darcy, darcy.spec(n=32, dim=3))
    assert candidates(darcy, darcy.spec(n=256)) == ["mg", "amg", "skr"]  # multigrid beats sparse direct there
    assert "direct" in candidates(helm, helm.spec(n=256, k_min=20.0, k_max=20.0))  # no AMG for Helmholtz


def test_auto_records_its_decision_and_pilot():
    res = run("darcy", dict(n=24), "auto", count=4)
    decision = res.meta["engine"]
    assert decision["requested"] == "auto" and decision["chosen"] in decision["candidates"]
    assert set(decision["pilot"]) <= set(decision["candidates"])
    assert decision["chosen"] in decision["reason"]
    assert all(r.engine == decision["chosen"] for r in res.records)


def test_amg_atol_is_absolute_like_scipy_and_the_residual_check():
    # ||b - A x|| <= max(rtol ||b||, atol): with atol = 1e-5 ||b|| the solve may stop there,
    # and the recomputed residual check (pdeforge.solvers.residual) must agree it converged
    fam = get_family("darcy")
    spec = fam.spec(n=32)
    A, b = fam.assemble(spec, fam.sample(spec, 0, 0))
    b_norm = float(np.linalg.norm(b))
    relative = ENGINES["amg"](SolverOptions(engine="amg", rtol=1e-5), fam, spec).solve(A, b)[1]
    loose_opts = SolverOptions(engine="amg", rtol=1e-12, atol=1e-5 * b_norm)
    x, loose = ENGINES["amg"](loose_opts, fam, spec).solve(A, b)
    assert loose.converged and loose.iterations == relative.iterations  # the same criterion
    assert np.linalg.norm(b - A @ x) <= 1e-5 * b_norm
    res = generate(fam, spec, [0], seed=0, options=dataclasses.replace(loose_opts, fallback=False))
    assert res.records[0].converged and not res.records[0].fallback

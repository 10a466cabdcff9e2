"""generate(): fallbacks, ordering, callbacks (every family x engine: tests/test_applicability.py)."""

import numpy as np
import pytest

from pdeforge.solvers.families import get_family
from pdeforge.solvers.generate import generate
from pdeforge.solvers.options import SolverOptions


def test_skr_recycling_saves_matvecs_over_gmres_on_a_sequence():
    fam = get_family("darcy")
    spec = fam.spec(n=32)
    runs = {}
    for engine in ("gmres", "skr"):
        opts = SolverOptions(engine=engine, preconditioner="jacobi", fallback=False)
        runs[engine] = generate(fam, spec, range(6), seed=0, options=opts)
    mv = {e: sum(r.matvecs for r in res.records) for e, res in runs.items()}
    assert mv["skr"] < 0.85 * mv["gmres"], mv
    # later systems profit from the carried space: fewer iterations than the first (cold) solve
    its = [r.iterations for r in runs["skr"].records]
    assert np.mean(its[1:]) < its[0]


def test_unconverged_krylov_solve_falls_back_to_direct_and_says_so():
    fam = get_family("darcy")
    spec = fam.spec(n=24)
    opts = SolverOptions(engine="gmres", maxiter=5, preconditioner="none")
    res = generate(fam, spec, [0, 1], seed=0, options=opts)
    for rec in res.records:
        assert rec.fallback and rec.engine == "direct" and rec.converged
        assert rec.residual <= 1e-8 and "re-solved with direct" in rec.message
        assert rec.iterations == 5


def test_without_fallback_an_unconverged_sample_is_reported_as_such():
    fam = get_family("darcy")
    spec = fam.spec(n=24)
    opts = SolverOptions(engine="skr", maxiter=5, fallback=False)
    res = generate(fam, spec, [0], seed=0, options=opts)
    rec = res.records[0]
    assert not rec.converged and not rec.fallback and rec.residual > 1e-8
    assert "true residual" in rec.message


def test_greedy_ordering_permutes_and_samples_do_not_depend_on_the_batch():
    fam = get_family("darcy")
    spec = fam.spec(n=16)
    opts = SolverOptions(engine="direct", ordering="greedy")
    res = generate(fam, spec, range(10), seed=3, options=opts)
    assert sorted(res.indices.tolist()) == list(range(10)) and res.indices[0] == 0
    single = generate(fam, spec, [int(res.indices[4])], seed=3, options=opts)
    np.testing.assert_allclose(single.y[0], res.y[4], rtol=1e-12)
    np.testing.assert_array_equal(single.x[0], res.x[4])


def test_direct_engine_factorizes_a_fixed_operator_once():
    fam = get_family("poisson")
    spec = fam.spec(n=16)
    res = generate(fam, spec, range(4), seed=0, options=SolverOptions(engine="direct", ordering="none"))
    messages = [r.message.split(": ", 1)[1] for r in res.records]
    assert messages == ["factorized"] + ["reused factorization"] * 3


def test_on_sample_reports_progress_and_can_cancel():
    fam = get_family("darcy")
    spec = fam.spec(n=16)
    seen = []

    class Cancelled(Exception):
        pass

    def on_sample(rec):
        seen.append(rec.index)
        if len(seen) == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        generate(fam, spec, range(5), seed=0, options=SolverOptions(engine="direct", ordering="none"),
                 on_sample=on_sample)
    assert seen == [0, 1]


def test_scalar_parameters_are_returned_per_sample():
    fam = get_family("helmholtz")
    spec = fam.spec(n=16, k_min=4.0, k_max=8.0)
    res = generate(fam, spec, [2, 0], seed=1, options=SolverOptions(engine="direct", ordering="none"))
    assert set(res.scalars) == {"k"}
    for pos, i in enumerate(res.indices):
        assert res.scalars["k"][pos] == fam.sample(spec, 1, int(i)).scalars["k"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(engine="magic"), r"engine='magic' is not allowed; allowed: one of 'auto', 'skr', 'gmres', 'direct', 'direct_mixed', "
     r"'factorize_once', 'amg', 'mg', 'spectral', 'pseudo_spectral'"),
    (dict(rtol=1.0), r"rtol=1.0 is out of range; allowed: 1e-14 <= rtol <= 0.1"),
    (dict(recycle=40, restart=40), r"recycle=40 is out of range; allowed: 0 <= recycle < restart = 40"),
    (dict(preconditioner="sor"), r"preconditioner='sor' is not allowed"),
    (dict(ordering="tsp"), r"ordering='tsp' is not allowed"),
])
def test_invalid_solver_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SolverOptions(**kwargs)

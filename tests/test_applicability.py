"""Which engine applies to which family spec: a hand-written table, checked against the one
applicability rule (``pdeforge.solvers.engines.refusal``), spec validation (the API's 422 text), the
``auto`` pilot's candidates and ``generate`` -- and every applicable pair is actually solved."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla
from pydantic import ValidationError

from pdeforge.solvers.engines import ENGINES, candidates, refusal
from pdeforge.solvers.families import get_family
from pdeforge.solvers.fields import CoefficientSpec
from pdeforge.solvers.generate import generate
from pdeforge.solvers.options import SolverOptions
from tests.helpers import assert_solved
from pdeforge.workers.spec import parse_spec

FIXED = "a fixed operator"
DEFINITE = "an M-matrix"
LAPLACIAN = "a constant-coefficient Laplacian"

#: case -> (family, spec parameters, {engine: why it does not apply}); unlisted engines apply
TABLE = {
    "darcy threshold": ("darcy", dict(n=16), {"factorize_once": FIXED, "spectral": LAPLACIAN}),
    "darcy lognormal 3-D": ("darcy", dict(n=8, dim=3, coefficient={"kind": "lognormal"}),
                            {"factorize_once": FIXED, "spectral": LAPLACIAN}),
    "darcy constant a, random f": ("darcy", dict(n=16, coefficient={"kind": "constant", "value": 2.5},
                                                 forcing={"kind": "grf"}), {}),
    "poisson": ("poisson", dict(n=16, boundary="chebyshev"), {}),
    "poisson 3-D": ("poisson", dict(n=8, dim=3), {}),
    "helmholtz impedance": ("helmholtz", dict(n=16, k_min=5.0, k_max=8.0),
                            {"factorize_once": FIXED, "amg": DEFINITE, "spectral": LAPLACIAN}),
    "helmholtz dirichlet": ("helmholtz", dict(n=16, boundary="dirichlet", k_min=6.0, k_max=6.0),
                            {"factorize_once": FIXED, "amg": DEFINITE, "spectral": LAPLACIAN}),
    "helmholtz homogeneous": ("helmholtz", dict(n=16, contrast=0.0, k_min=6.0, k_max=6.0, forcing={"kind": "grf"}),
                              {"amg": DEFINITE, "spectral": LAPLACIAN}),
    "advection_diffusion": ("advection_diffusion", dict(n=16, nu_min=0.01, nu_max=0.1),
                            {"factorize_once": FIXED, "spectral": LAPLACIAN}),
}
PAIRS = [(case, engine) for case in TABLE for engine in ENGINES]


def family_spec(case):
    name, params, _ = TABLE[case]
    fam = get_family(name)
    params = dict(params)
    for key, cls in (("coefficient", CoefficientSpec),):
        if key in params:
            params[key] = cls(**params[key])
    if "forcing" in params:
        from pdeforge.solvers.families import ForcingSpec
        params["forcing"] = ForcingSpec(**params["forcing"])
    return fam, fam.spec(**params)


def job_spec(case, engine):
    name, params, _ = TABLE[case]
    params = dict(params)
    grid = {"n": params.pop("n"), "dim": params.pop("dim", 2)}
    return {"family": name, "grid": grid, "params": params, "samples": 4, "solver": {"engine": engine}}


def test_the_table_covers_every_engine_and_family():
    assert set(ENGINES) == {"skr", "gmres", "direct", "direct_mixed", "factorize_once", "amg", "spectral"}
    assert {TABLE[c][0] for c in TABLE} == {"darcy", "poisson", "helmholtz", "advection_diffusion"}


@pytest.mark.parametrize("case, engine", PAIRS)
def test_refusal_matches_the_table(case, engine):
    fam, spec = family_spec(case)
    why = refusal(engine, fam.capabilities(spec))
    expected = TABLE[case][2].get(engine)
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why


@pytest.mark.parametrize("case, engine", PAIRS)
def test_spec_validation_matches_the_table(case, engine):
    expected = TABLE[case][2].get(engine)
    if expected is None:
        parse_spec(job_spec(case, engine))
        return
    with pytest.raises(ValidationError) as info:
        parse_spec(job_spec(case, engine))
    text = str(info.value)
    assert f"solver.engine='{engine}' does not apply" in text and expected in text
    allowed = text.split("allowed: ", 1)[1].split(" [type=", 1)[0]
    assert engine not in allowed and "auto" in allowed


@pytest.mark.parametrize("case", TABLE)
def test_auto_candidates_are_applicable_engines(case):
    fam, spec = family_spec(case)
    refused = set(TABLE[case][2])
    cands = candidates(fam, spec)
    assert cands and not refused & set(cands) and "gmres" not in cands


@pytest.mark.parametrize("case, engine", [(c, e) for c, e in PAIRS if e in TABLE[c][2]])
def test_generate_refuses_inapplicable_engines_with_the_reason(case, engine):
    fam, spec = family_spec(case)
    with pytest.raises(ValueError, match=TABLE[case][2][engine]):
        generate(fam, spec, [0], seed=0, options=SolverOptions(engine=engine))


@pytest.mark.parametrize("case, engine", [(c, e) for c, e in PAIRS if e not in TABLE[c][2]]
                         + [(c, "auto") for c in TABLE])
def test_every_applicable_pair_matches_a_direct_solve(case, engine):
    fam, spec = family_spec(case)
    opts = SolverOptions(engine=engine, rtol=1e-8, preconditioner="jacobi", fallback=False)
    res = generate(fam, spec, [0, 3, 5, 1], seed=7, options=opts)
    assert sorted(res.indices.tolist()) == [0, 1, 3, 5]
    assert res.x.shape == (4, len(fam.input_names(spec)), *spec.shape)
    assert res.y.shape == (4, 1, *spec.shape) and res.y.dtype == fam.dtype(spec)
    chosen = res.meta["engine"]["chosen"]
    assert chosen == engine or (engine == "auto" and chosen in candidates(fam, spec))
    for pos, rec in enumerate(res.records):
        assert rec.index == res.indices[pos] and rec.engine == chosen and rec.converged
        A, b = fam.assemble(spec, fam.sample(spec, 7, rec.index))
        y = res.y[pos].ravel()
        assert rec.residual == pytest.approx(np.linalg.norm(b - A @ y) / np.linalg.norm(b), rel=1e-6)
        assert_solved(A, b, y, 1e-8, reference=spla.spsolve(A.tocsc(), b))

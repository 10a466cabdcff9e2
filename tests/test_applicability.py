"""Which engine applies to which family spec: a hand-written table, checked against the one
applicability rule (``pdeforge.solvers.engines.refusal``), spec validation (the API's 422 text), the
``auto`` pilot's candidates and ``generate`` -- and every applicable pair is actually solved."""

import re

import numpy as np
import pytest
import scipy.sparse.linalg as spla
from pydantic import ValidationError

from pdeforge.solvers.engines import ENGINES, candidates, refusal
from pdeforge.solvers.families import ForcingSpec, get_family
from pdeforge.solvers.fields import CoefficientSpec
from pdeforge.solvers.timestepping import TimeSpec
from pdeforge.solvers.generate import generate
from pdeforge.solvers.options import SolverOptions
from tests.helpers import assert_solved
from pdeforge.workers.spec import parse_spec

FIXED = "a fixed operator"
DEFINITE = "an M-matrix"
LAPLACIAN = "a constant-coefficient Laplacian"
STENCIL = "a (2d+1)-point stencil"
OWN = "its own (pseudo-spectral) time stepper"
NOLIN = "a linear system per sample"
#: every engine but pseudo_spectral, refused for a family without a linear system
SPECTRAL_ONLY = {**{e: NOLIN for e in ("skr", "gmres", "direct", "direct_mixed", "factorize_once", "amg")},
                 "mg": STENCIL, "spectral": LAPLACIAN}

#: case -> (family, spec parameters, {engine: why it does not apply}); unlisted engines apply
TABLE = {
    "darcy threshold": ("darcy", dict(n=16), {"factorize_once": FIXED, "spectral": LAPLACIAN, "pseudo_spectral": OWN}),
    "darcy lognormal 3-D": ("darcy", dict(n=8, dim=3, coefficient={"kind": "lognormal"}),
                            {"factorize_once": FIXED, "spectral": LAPLACIAN, "pseudo_spectral": OWN}),
    "darcy constant a, random f": ("darcy", dict(n=16, coefficient={"kind": "constant", "value": 2.5},
                                                 forcing={"kind": "grf"}), {"pseudo_spectral": OWN}),
    "poisson": ("poisson", dict(n=16, boundary="chebyshev"), {"pseudo_spectral": OWN}),
    "poisson 3-D": ("poisson", dict(n=8, dim=3), {"pseudo_spectral": OWN}),
    "helmholtz impedance": ("helmholtz", dict(n=16, k_min=5.0, k_max=8.0),
                            {"factorize_once": FIXED, "amg": DEFINITE, "mg": DEFINITE, "spectral": LAPLACIAN,
                             "pseudo_spectral": OWN}),
    "helmholtz dirichlet": ("helmholtz", dict(n=16, boundary="dirichlet", k_min=6.0, k_max=6.0),
                            {"factorize_once": FIXED, "amg": DEFINITE, "mg": DEFINITE, "spectral": LAPLACIAN,
                             "pseudo_spectral": OWN}),
    "helmholtz homogeneous": ("helmholtz", dict(n=16, contrast=0.0, k_min=6.0, k_max=6.0, forcing={"kind": "grf"}),
                              {"amg": DEFINITE, "mg": DEFINITE, "spectral": LAPLACIAN, "pseudo_spectral": OWN}),
    "advection_diffusion": ("advection_diffusion", dict(n=16, nu_min=0.01, nu_max=0.1),
                            {"factorize_once": FIXED, "spectral": LAPLACIAN, "pseudo_spectral": OWN}),
    "advection_diffusion transient": ("advection_diffusion", dict(n=16, time={"t_end": 0.1, "dt": 0.05, "frames": 3}),
                                      {"factorize_once": FIXED, "spectral": LAPLACIAN, "pseudo_spectral": OWN}),
    "heat lognormal": ("heat", dict(n=16, time={"t_end": 0.01, "dt": 0.005, "frames": 3}),
                       {"factorize_once": FIXED, "spectral": LAPLACIAN, "pseudo_spectral": OWN}),
    "heat constant a": ("heat", dict(n=16, coefficient={"kind": "constant", "value": 2.0},
                                     time={"t_end": 0.01, "dt": 0.005, "frames": 3}), {"pseudo_spectral": OWN}),
    "allen_cahn": ("reaction_diffusion", dict(n=16, time={"t_end": 0.2, "dt": 0.1, "frames": 3}),
                   {"pseudo_spectral": OWN}),
    "gray_scott": ("reaction_diffusion", dict(n=16, kind="gray_scott", time={"t_end": 2.0, "dt": 0.5, "frames": 3}),
                   {"mg": STENCIL, "pseudo_spectral": OWN}),
    "burgers 1-D": ("burgers", dict(n=64, dim=1, nu_min=0.02, nu_max=0.1,
                                    time={"t_end": 0.02, "dt": 1e-3, "frames": 3}), SPECTRAL_ONLY),
    "burgers 2-D": ("burgers", dict(n=16, dim=2, time={"t_end": 0.02, "dt": 1e-3, "frames": 3}), SPECTRAL_ONLY),
    "navier_stokes": ("navier_stokes", dict(n=16, time={"t_end": 0.2, "dt": 0.01, "frames": 3}), SPECTRAL_ONLY),
}
PAIRS = [(case, engine) for case in TABLE for engine in ENGINES]


def family_spec(case):
    name, params, _ = TABLE[case]
    fam = get_family(name)
    params = dict(params)
    for key, cls in (("coefficient", CoefficientSpec), ("forcing", ForcingSpec), ("time", TimeSpec)):
        if key in params:
            params[key] = cls(**params[key])
    return fam, fam.spec(**params)


def job_spec(case, engine):
    name, params, _ = TABLE[case]
    params = dict(params)
    grid = {"n": params.pop("n"), "dim": params.pop("dim", 2)}
    time = params.pop("time", None)
    return {"family": name, "grid": grid, "params": params, "samples": 4, "solver": {"engine": engine},
            **({"time": time} if time else {})}


def test_the_table_covers_every_engine_and_family():
    assert set(ENGINES) == {"skr", "gmres", "direct", "direct_mixed", "factorize_once", "amg", "mg", "spectral",
                            "pseudo_spectral"}
    assert {TABLE[c][0] for c in TABLE} == {"darcy", "poisson", "helmholtz", "advection_diffusion", "heat",
                                            "reaction_diffusion", "burgers", "navier_stokes"}


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
    allowed = text.split("allowed: ", 1)[1].split(" [type=", 1)[0].split(", ")
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
    with pytest.raises(ValueError, match=re.escape(TABLE[case][2][engine])):
        generate(fam, spec, [0], seed=0, options=SolverOptions(engine=engine))


@pytest.mark.parametrize("case, engine", [(c, e) for c, e in PAIRS if e not in TABLE[c][2]]
                         + [(c, "auto") for c in TABLE])
def test_every_applicable_pair_matches_a_direct_solve(case, engine):
    fam, spec = family_spec(case)
    opts = SolverOptions(engine=engine, rtol=1e-8, preconditioner="jacobi", fallback=False)
    res = generate(fam, spec, [0, 3, 5, 1], seed=7, options=opts)
    assert sorted(res.indices.tolist()) == [0, 1, 3, 5]
    assert res.x.shape == (4, len(fam.input_names(spec)), *spec.shape)
    chosen = res.meta["engine"]["chosen"]
    assert chosen == engine or (engine == "auto" and chosen in candidates(fam, spec))
    if spec.time is not None:  # trajectories: every step verified, frames agree with a direct-solve run
        assert res.y.shape == (4, spec.time.frames, len(fam.output_names(spec)), *spec.shape)
        assert all(rec.converged and rec.residual <= 1e-8 for rec in res.records)
        exact = "direct" if fam.capabilities(spec).linear_system else "pseudo_spectral"
        reference = generate(fam, spec, [0, 3, 5, 1], seed=7, options=SolverOptions(engine=exact))
        assert np.abs(res.y - reference.y).max() <= 1e-6 * np.abs(reference.y).max()
        return
    assert res.y.shape == (4, 1, *spec.shape) and res.y.dtype == fam.dtype(spec)
    for pos, rec in enumerate(res.records):
        assert rec.index == res.indices[pos] and rec.engine == chosen and rec.converged
        A, b = fam.assemble(spec, fam.sample(spec, 7, rec.index))
        y = res.y[pos].ravel()
        assert rec.residual == pytest.approx(np.linalg.norm(b - A @ y) / np.linalg.norm(b), rel=1e-6)
        assert_solved(A, b, y, 1e-8, reference=spla.spsolve(A.tocsc(), b))

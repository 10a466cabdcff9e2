"""PDE families: operator structure, discretisation accuracy, determinism, validation."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from pdeforge.solvers.families import FAMILIES, get_family
from pdeforge.solvers.families.advection_diffusion import face_velocities
from pdeforge.solvers.fields import CoefficientSpec, GRFSpec, sample_grf

CASES = [
    ("darcy", dict(n=24)),
    ("darcy", dict(n=24, coefficient=CoefficientSpec(kind="lognormal", grf=GRFSpec(alpha=2.5, tau=7.0)))),
    ("darcy", dict(n=10, dim=3)),
    ("poisson", dict(n=24, boundary="chebyshev")),
    ("poisson", dict(n=10, dim=3)),
    ("helmholtz", dict(n=32, k_min=10.0, k_max=15.0)),
    ("helmholtz", dict(n=32, boundary="dirichlet")),
    ("advection_diffusion", dict(n=24, nu_min=0.005, nu_max=0.05)),
]


def build(name, kwargs, seed=3, index=0):
    fam = get_family(name)
    spec = fam.spec(**kwargs)
    sample = fam.sample(spec, seed, index)
    A, b = fam.assemble(spec, sample)
    return fam, spec, sample, A, b


@pytest.mark.parametrize("name, kwargs", CASES)
def test_system_shapes_dtypes_and_inputs(name, kwargs):
    fam, spec, sample, A, b = build(name, kwargs)
    N = spec.unknowns
    assert A.shape == (N, N) and b.shape == (N,)
    assert A.dtype == fam.dtype(spec) and A.format == "csr"
    assert A.nnz == N * (2 * spec.dim + 1) - 2 * spec.dim * spec.n ** (spec.dim - 1)
    x = fam.inputs(spec, sample)
    assert x.shape == (len(fam.input_names(spec)), *spec.shape)
    assert set(sample.scalars) == set(fam.scalar_names(spec))
    u = spla.spsolve(A.tocsc(), b)
    assert np.linalg.norm(b - A @ u) <= 1e-10 * np.linalg.norm(b)


@pytest.mark.parametrize("name, kwargs", CASES)
def test_same_sparsity_pattern_for_every_sample(name, kwargs):
    *_, A0, _ = build(name, kwargs, index=0)
    *_, A1, _ = build(name, kwargs, index=1)
    np.testing.assert_array_equal(A0.indptr, A1.indptr)
    np.testing.assert_array_equal(A0.indices, A1.indices)
    fam, spec, *_ = build(name, kwargs)
    assert fam.capabilities(spec).operator_varies == (not np.array_equal(A0.data, A1.data))


@pytest.mark.parametrize("name, kwargs", [c for c in CASES if c[0] in ("darcy", "poisson")])
def test_diffusion_families_are_spd(name, kwargs):
    *_, A, _ = build(name, kwargs)
    assert abs(A - A.T).max() == 0
    assert np.linalg.eigvalsh(A.toarray()).min() > 0


def test_poisson_operator_is_one_shared_matrix():
    fam = get_family("poisson")
    spec = fam.spec(n=16)
    A0, b0 = fam.assemble(spec, fam.sample(spec, 0, 0))
    A1, b1 = fam.assemble(spec, fam.sample(spec, 0, 1))
    assert A0 is A1 and not np.allclose(b0, b1)


def test_poisson_boundary_data_are_reproduced_for_harmonic_solution():
    # u = x0 + 2 x1 is harmonic; with f = 0 and g = u on the boundary the FV solution is exact
    from pdeforge.solvers.families.fv import boundary_faces, dirichlet_rhs
    fam = get_family("poisson")
    spec = fam.spec(n=16)
    h = spec.h
    b = dirichlet_rhs(np.ones(spec.shape), h, boundary_faces(spec.n, 2, lambda p: p[..., 0] + 2 * p[..., 1]))
    from pdeforge.solvers.families.poisson import laplacian
    u = spla.spsolve(laplacian(spec.shape).tocsc(), b.ravel()).reshape(spec.shape)
    c = (np.arange(16) + 0.5) * h
    X0, X1 = np.meshgrid(c, c, indexing="ij")
    np.testing.assert_allclose(u, X0 + 2 * X1, atol=1e-12)


def test_helmholtz_matrix_classes():
    *_, Ad, _ = build("helmholtz", dict(n=32, k_min=25.0, k_max=25.0, boundary="dirichlet"))
    assert Ad.dtype == np.float64 and abs(Ad - Ad.T).max() == 0
    ev = np.linalg.eigvalsh(Ad.toarray())
    assert ev.min() < 0 < ev.max(), "Dirichlet Helmholtz must be indefinite"
    *_, Ai, _ = build("helmholtz", dict(n=32))
    assert Ai.dtype == np.complex128 and abs(Ai - Ai.T).max() == 0
    assert abs(Ai - Ai.conj().T).max() > 0, "impedance Helmholtz is complex symmetric, not Hermitian"


def test_helmholtz_medium_is_bounded_and_k_sampled_in_range():
    fam = get_family("helmholtz")
    spec = fam.spec(n=32, k_min=5.0, k_max=9.0, contrast=0.5)
    for i in range(5):
        s = fam.sample(spec, 1, i)
        assert np.abs(s.fields["c"]).max() < 0.5
        assert 5.0 <= s.scalars["k"] <= 9.0


def test_advection_velocity_is_discretely_divergence_free():
    psi = sample_grf(GRFSpec(), (17, 17), 0, 0, 5)
    v0, v1 = face_velocities(psi, 1 / 16)
    div = (v0[1:, :] - v0[:-1, :]) + (v1[:, 1:] - v1[:, :-1])
    assert np.abs(div).max() < 1e-12 * np.abs(v0).max()


def test_advection_diffusion_is_a_nonsymmetric_m_matrix():
    *_, A, _ = build("advection_diffusion", dict(n=24, velocity=5.0))
    assert abs(A - A.T).max() > 0
    D = A.diagonal()
    off = A - np.diag(D)
    assert D.min() > 0 and off.max() <= 0
    # weak diagonal dominance by columns (div-free upwind flux + diffusion)
    assert np.all(np.asarray(A.sum(axis=0)).ravel() >= -1e-9)


def test_darcy_constant_coefficient_centre_value_converges_at_second_order():
    exact = 0.0736713532814
    fam = get_family("darcy")
    errors = []
    for n in (16, 32, 64):
        spec = fam.spec(n=n, coefficient=CoefficientSpec(kind="constant"))
        A, b = fam.assemble(spec, fam.sample(spec, 0, 0))
        u = spla.spsolve(A.tocsc(), b).reshape(n, n)
        errors.append(abs(u[n // 2 - 1 : n // 2 + 1, n // 2 - 1 : n // 2 + 1].mean() - exact))
    rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[-1] < 2e-5
    assert np.all(rates > 1.9), rates


@pytest.mark.parametrize("name, kwargs", CASES)
def test_samples_and_features_are_reproducible_by_seed_and_index(name, kwargs):
    fam = get_family(name)
    spec = fam.spec(**kwargs)
    a = fam.sample(spec, 9, 4)
    b = fam.sample(spec, 9, 4)
    for key in a.fields:
        np.testing.assert_array_equal(a.fields[key], b.fields[key])
    assert a.scalars == b.scalars
    batch = fam.features(spec, 9, [4, 0, 2])
    np.testing.assert_array_equal(batch[0], fam.features(spec, 9, [4])[0])
    np.testing.assert_array_equal(batch[1:], fam.features(spec, 9, [0, 2]))
    assert batch.ndim == 2 and 0 < batch.shape[1] <= 400
    assert not np.allclose(batch[0], batch[1])


def test_features_track_field_distances():
    # nearest neighbour in feature space is among the nearest in coefficient space
    fam = get_family("darcy")
    spec = fam.spec(n=32, coefficient=CoefficientSpec(kind="lognormal", grf=GRFSpec(alpha=2.5, tau=7.0)))
    F = fam.features(spec, 0, range(40))
    G = np.array([np.log(fam.sample(spec, 0, i).fields["a"]).ravel() for i in range(40)])
    dF = np.linalg.norm(F[1:] - F[0], axis=1)
    dG = np.linalg.norm(G[1:] - G[0], axis=1)
    assert np.corrcoef(dF, dG)[0, 1] > 0.8


@pytest.mark.parametrize("name, kwargs, match", [
    ("darcy", dict(n=4), r"n=4 is out of range; allowed: 8 <= n <= 1024"),
    ("darcy", dict(dim=4), r"dim=4 is not allowed; allowed: one of 2, 3"),
    ("darcy", dict(n=300, dim=3), r"n=300 is out of range for dim=3"),
    ("darcy", dict(dim=3, coefficient=CoefficientSpec(grf=GRFSpec(alpha=1.2))), r"alpha=1.2 .*alpha > 1.5"),
    ("poisson", dict(boundary="neumann"), r"boundary='neumann'.*'zero', 'chebyshev'"),
    ("helmholtz", dict(n=32, k_min=10.0, k_max=500.0), r"k_max=500.0 is out of range; allowed: k_max <= 29.97 \(at least 6 cells per wavelength"),
    ("helmholtz", dict(k_min=10.0, k_max=5.0), r"k_max=5.0 .*k_max >= k_min"),
    ("helmholtz", dict(contrast=0.95), r"contrast=0.95 is out of range; allowed: 0 <= contrast <= 0.9"),
    ("advection_diffusion", dict(dim=3), r"dim=3 .*allowed: 2"),
    ("advection_diffusion", dict(nu_min=-1.0), r"nu_min=-1.0 is out of range"),
])
def test_invalid_parameters_raise_value_error_naming_parameter_and_range(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_family(name).spec(**kwargs)


def test_darcy_rejects_unsupported_forcing_kind():
    from pdeforge.solvers.families import ForcingSpec
    with pytest.raises(ValueError, match=r"forcing.kind='chebyshev'.*'constant', 'grf'"):
        get_family("darcy").spec(forcing=ForcingSpec(kind="chebyshev"))


def test_unknown_family_lists_valid_names():
    with pytest.raises(ValueError, match="unknown family 'stokes'; valid names: darcy, poisson, helmholtz, advection_diffusion"):
        FAMILIES["stokes"]

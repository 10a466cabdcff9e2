"""Random fields: FNO-convention GRFs, reproducibility by (seed, index), ordering features.

The Fourier-layout checks below pin sampling version 1 (the FFT grid's points are the cells);
sampling 2 (the default, one continuum field per sample) is covered by
tests/solvers/test_resolution_consistency.py."""

import multiprocessing as mp

import numpy as np
import pytest

from pdeforge.solvers.fields import (
    CoefficientSpec, GRFSpec, chebyshev_eval, chebyshev_grid, grf_feature_scale, grf_features,
    pointwise_std, sample_grf,
)
from pdeforge.solvers.families.fv import cell_centres


def _draw(args):
    spec, shape, seed, index = args
    return sample_grf(spec, shape, seed, index, stream=1)


@pytest.mark.parametrize("shape", [(32, 32), (12, 12, 12)])
@pytest.mark.parametrize("sampling", [1, 2])
def test_sample_is_a_pure_function_of_seed_and_index(shape, sampling):
    spec = GRFSpec(alpha=2.5, tau=7.0)
    forward = [sample_grf(spec, shape, 11, i, 1, sampling=sampling) for i in range(4)]
    backward = [sample_grf(spec, shape, 11, i, 1, sampling=sampling) for i in reversed(range(4))][::-1]
    for a, b in zip(forward, backward):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(forward[0], forward[1])
    assert not np.allclose(forward[0], sample_grf(spec, shape, 12, 0, 1, sampling=sampling))
    assert not np.allclose(forward[0], sample_grf(spec, shape, 11, 0, 2, sampling=sampling))


def test_sample_is_identical_in_another_process():
    spec = GRFSpec()
    args = [(spec, (16, 16), 5, i) for i in (3, 0, 7)]
    with mp.get_context("spawn").Pool(1) as pool:
        remote = pool.map(_draw, args)
    for a, r in zip(args, remote):
        np.testing.assert_array_equal(_draw(a), r)


def test_features_are_the_low_fourier_coefficients_of_the_field():
    spec, shape = GRFSpec(alpha=2.0, tau=3.0), (32, 32)
    feats = grf_features(spec, shape, 3, [0, 5], stream=1, sampling=1)
    for row, i in zip(feats, [0, 5]):
        g = sample_grf(spec, shape, 3, i, 1, sampling=1)
        ghat = np.fft.fftn(g, norm="forward")
        # K = 4 in 2-D: features hold k > 0 of the 9x9 block (FFT order), sqrt(2)*(Re, Im)
        order = [0, 1, 2, 3, 4, -4, -3, -2, -1]
        k = np.array([(0, 1), (1, 0), (4, 4), (4, -4), (-3, 2)])
        pos = {tuple(kk): j for j, kk in enumerate(
            [(a, b) for a in order for b in order if (a, b) > (0, 0)])}
        half = len(pos)
        for kk in k:
            j = pos[tuple(kk)] if tuple(kk) > (0, 0) else pos[tuple(-kk)]
            c = ghat[kk[0] % 32, kk[1] % 32] if tuple(kk) > (0, 0) else np.conj(ghat[kk[0] % 32, kk[1] % 32])
            assert row[j] == pytest.approx(np.sqrt(2) * c.real, abs=1e-12)
            assert row[half + j] == pytest.approx(np.sqrt(2) * c.imag, abs=1e-12)


def test_feature_distance_is_low_pass_l2_distance():
    spec, shape = GRFSpec(), (32, 32)
    f = grf_features(spec, shape, 1, [0, 1], stream=1, sampling=1)
    g0, g1 = (sample_grf(spec, shape, 1, i, 1, sampling=1) for i in (0, 1))
    d = np.fft.fftn(g0 - g1, norm="forward")
    low = np.zeros_like(d, dtype=bool)
    idx = np.r_[0:5, 28:32]
    low[np.ix_(idx, idx)] = True
    assert np.linalg.norm(f[0] - f[1]) == pytest.approx(np.sqrt(np.sum(np.abs(d[low]) ** 2)), rel=1e-10)


@pytest.mark.parametrize("sampling", [1, 2])
def test_pointwise_std_and_feature_scale_match_samples(sampling):
    spec, shape = GRFSpec(alpha=2.0, tau=3.0), (32, 32)
    draws = np.array([sample_grf(spec, shape, 0, i, 1, sampling=sampling) for i in range(300)])
    assert draws.std() == pytest.approx(pointwise_std(spec, shape, sampling), rel=0.1)
    feats = grf_features(spec, shape, 0, range(300), stream=1, sampling=sampling)
    scale = grf_feature_scale(spec, shape, sampling=sampling)
    assert np.sqrt(np.mean(np.sum(feats**2, axis=1))) == pytest.approx(scale, rel=0.1)


def test_fno_default_amplitude():
    assert GRFSpec(alpha=2.0, tau=3.0).amplitude(2) == pytest.approx(3.0)
    assert GRFSpec(alpha=2.5, tau=7.0).amplitude(3) == pytest.approx(7.0)
    assert GRFSpec(alpha=2.0, tau=3.0, sigma=2.0).amplitude(2) == 2.0


def test_coefficient_kinds():
    g = np.array([[-1.0, 0.0], [0.5, 2.0]])
    np.testing.assert_array_equal(CoefficientSpec(kind="threshold").from_grf(g), [[3, 12], [12, 12]])
    np.testing.assert_allclose(CoefficientSpec(kind="lognormal", scale=0.5).from_grf(g), np.exp(0.5 * g))
    np.testing.assert_array_equal(CoefficientSpec(kind="constant", value=2.0).from_grf(g), np.full((2, 2), 2.0))


def test_chebyshev_grid_matches_pointwise_evaluation():
    rng = np.random.default_rng(0)
    c = rng.uniform(-1, 1, (4, 4))
    x = cell_centres(8)
    pts = np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1)
    np.testing.assert_allclose(chebyshev_grid(c, x), chebyshev_eval(c, pts))


@pytest.mark.parametrize("kwargs, name", [
    (dict(alpha=0.1), "alpha"), (dict(tau=-1.0), "tau"), (dict(sigma=0.0), "sigma"), (dict(tau=float("nan")), "tau"),
])
def test_invalid_grf_parameters_name_the_parameter_and_range(kwargs, name):
    with pytest.raises(ValueError, match=rf"{name}=.*allowed: .*{name}"):
        GRFSpec(**kwargs)


def test_invalid_coefficient_kind_lists_choices():
    with pytest.raises(ValueError, match="kind='foo'.*'lognormal', 'threshold', 'constant'"):
        CoefficientSpec(kind="foo")

"""Tests for pdeforge.solvers.ordering: permutations, SKR Algorithm 1, Hilbert curve, validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import pdeforge.solvers.ordering as ordering
from pdeforge.solvers.ordering import ORDERINGS, hilbert_index, order_systems, tour_length

METHODS = list(ORDERINGS)


def brute_force_chain(X: np.ndarray, start: int) -> list[int]:
    """Reference SKR Algorithm 1: explicit distances, ties -> lowest index."""
    chain = [start]
    visited = np.zeros(len(X), dtype=bool)
    visited[start] = True
    while len(chain) < len(X):
        d = np.linalg.norm(X - X[chain[-1]], axis=1)
        d[visited] = np.inf
        j = int(np.argmin(d))
        chain.append(j)
        visited[j] = True
    return chain


def clustered(rng, n=600, p=20, k=12) -> np.ndarray:
    centres = 10.0 * rng.standard_normal((k, p))
    return centres[rng.integers(k, size=n)] + rng.standard_normal((n, p))


def noisy_curve(rng, n=600, p=50) -> np.ndarray:
    """Shuffled points along a smooth 1-D curve in R^p, plus small noise."""
    s = rng.permutation(np.linspace(0.0, 1.0, n))
    freqs = np.arange(1, p + 1)
    phases = rng.uniform(0, 2 * np.pi, p)
    return np.sin(np.pi * s[:, None] * freqs[None, :] / 8 + phases) / freqs + 0.002 * rng.standard_normal((n, p))


def assert_permutation(perm, n):
    assert isinstance(perm, np.ndarray) and perm.dtype == np.int64 and perm.shape == (n,)
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))


# ----------------------------------------------------------------------------- permutations
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [0, 1, 2, 500])
def test_every_method_returns_a_permutation(method, n):
    X = np.random.default_rng(n).standard_normal((n, 8))
    assert_permutation(order_systems(X, method=method), n)


def test_registry_names():
    assert METHODS == ["none", "greedy", "hilbert"]
    np.testing.assert_array_equal(order_systems(np.ones((5, 3)), method="none"), np.arange(5))


@pytest.mark.parametrize("method", METHODS)
def test_duplicate_and_constant_features(method):
    X = np.repeat(np.random.default_rng(1).standard_normal((7, 4)), 9, axis=0)
    assert_permutation(order_systems(X, method=method, **({"bucket": 5} if method == "hilbert" else {})), 63)
    assert_permutation(order_systems(np.zeros((40, 3)), method=method), 40)


# ----------------------------------------------------------------------------- greedy = SKR Algorithm 1
@pytest.mark.parametrize("start", [0, 17, 59])
def test_greedy_reproduces_brute_force_chain(start):
    X = np.random.default_rng(start).standard_normal((60, 6)) + 100.0  # offset: centring matters
    assert order_systems(X, start=start).tolist() == brute_force_chain(X, start)


def test_greedy_compaction_path_matches_brute_force():
    X = np.random.default_rng(5).standard_normal((300, 4))  # > 64 rows: compaction kicks in
    assert order_systems(X, start=3).tolist() == brute_force_chain(X, 3)


def test_greedy_ties_go_to_lowest_index():
    for X in (np.array([[0.0], [1.0], [-1.0]]), np.array([[0.0], [-1.0], [1.0]])):
        assert order_systems(X).tolist() == brute_force_chain(X, 0) == [0, 1, 2]


def test_greedy_float32_close_to_float64():
    rng = np.random.default_rng(2)
    X = clustered(rng)
    L64 = tour_length(X, order_systems(X))
    p32 = order_systems(X, dtype="float32")
    assert_permutation(p32, len(X))
    assert tour_length(X, p32) <= 1.02 * L64


def test_docstring_example():
    assert order_systems(np.array([[0.0], [3.0], [1.0], [2.0]])).tolist() == [0, 2, 3, 1]


# ----------------------------------------------------------------------------- tour quality
@pytest.mark.parametrize("method", ["greedy", "hilbert"])
@pytest.mark.parametrize("data", [clustered, noisy_curve])
def test_beats_random_order(method, data):
    rng = np.random.default_rng(11)
    X = data(rng)
    random_len = tour_length(X, rng.permutation(len(X)))
    ratio = tour_length(X, order_systems(X, method=method, **({"bucket": 64} if method == "hilbert" else {}))) / random_len
    assert ratio < 0.25, ratio  # measured: about 0.06-0.12


def test_hilbert_recovers_a_curve():
    """On a shuffled 1-D curve the ordering should follow the curve: tour << random."""
    rng = np.random.default_rng(3)
    X = noisy_curve(rng, n=2000)
    ratio = tour_length(X, order_systems(X, method="hilbert")) / tour_length(X, rng.permutation(len(X)))
    assert ratio < 0.1, ratio  # measured: about 0.055


def test_orientation_dp_is_optimal():
    """Step 4 (bucket reversal) equals brute force over all 2^n orientations."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((24, 3))
    batches = [np.arange(12).reshape(4, 3), np.arange(12, 24).reshape(2, 6)]
    chains = [row for b in batches for row in b]
    best = min(
        tour_length(X, np.concatenate([c[::-1] if f else c for c, f in zip(chains, flips)]))
        for flips in itertools.product([False, True], repeat=len(chains))
    )
    perm = ordering._orient(X, batches)
    assert_permutation(perm, 24)
    assert tour_length(X, perm) == pytest.approx(best, rel=1e-12)


def test_hilbert_batches_and_remainder(monkeypatch):
    """Many batches of buckets plus a short last bucket give the same order as one batch."""
    X = clustered(np.random.default_rng(6), n=1037)
    one_batch = order_systems(X, method="hilbert", bucket=16)
    monkeypatch.setattr(ordering, "_CHUNK_ENTRIES", 3 * 16 * 16)  # 3 buckets per batch
    many = order_systems(X, method="hilbert", bucket=16)
    assert_permutation(many, 1037)
    np.testing.assert_array_equal(many, one_batch)


def test_hilbert_subsampled_pca_is_deterministic():
    X = clustered(np.random.default_rng(7), n=500)
    a = order_systems(X, method="hilbert", sample=64, seed=1)
    b = order_systems(X, method="hilbert", sample=64, seed=1)
    np.testing.assert_array_equal(a, b)
    assert_permutation(a, 500)


@pytest.mark.parametrize("options", [{"dims": 1}, {"dims": 8, "bits": 7}, {"bucket": 1}, {"dtype": np.float32}])
def test_hilbert_options(options):
    X = clustered(np.random.default_rng(8), n=300)
    assert_permutation(order_systems(X, method="hilbert", **options), 300)


# ----------------------------------------------------------------------------- Hilbert curve
@pytest.mark.parametrize(("d", "bits"), [(1, 4), (2, 3), (3, 2), (2, 5), (4, 2)])
def test_hilbert_index_is_a_bijection_onto_a_continuous_curve(d, bits):
    grid = np.array(list(itertools.product(range(2**bits), repeat=d)))
    h = hilbert_index(grid, bits)
    assert h.dtype == np.uint64
    np.testing.assert_array_equal(np.sort(h), np.arange(2 ** (d * bits)))  # bijection
    path = grid[np.argsort(h)]
    np.testing.assert_array_equal(np.abs(np.diff(path, axis=0)).sum(axis=1), 1)  # neighbours
    np.testing.assert_array_equal(path[0], 0)  # the curve starts at the origin


def test_hilbert_index_largest_order_fits():
    coords = np.array([[0, 0], [2**31 - 1, 2**31 - 1], [2**31 - 1, 0]])
    h = hilbert_index(coords, 31)
    assert h[0] == 0 and h.max() < 2**62 and len(set(h.tolist())) == 3


@pytest.mark.parametrize(
    ("coords", "bits", "match"),
    [
        (np.zeros((3, 2)), 3, "integer"),
        (np.zeros((3, 7), dtype=int), 9, "d \\* bits"),
        (np.full((3, 2), 8), 3, "in \\[0, 7\\]"),
        (np.zeros((3, 2), dtype=int), 0, "bits"),
    ],
)
def test_hilbert_index_validation(coords, bits, match):
    with pytest.raises(ValueError, match=match):
        hilbert_index(coords, bits)


# ----------------------------------------------------------------------------- tour_length
def test_tour_length():
    X = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 0.0]])
    assert tour_length(X, [0, 1, 2]) == pytest.approx(9.0)
    assert tour_length(X, [0, 2, 1]) == pytest.approx(7.0)
    assert tour_length(X, []) == 0.0 and tour_length(X, [1]) == 0.0
    with pytest.raises(ValueError, match="perm"):
        tour_length(X, [0, 3])


# ----------------------------------------------------------------------------- validation
def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match="unknown ordering 'tsp'.*none, greedy, hilbert"):
        order_systems(np.zeros((3, 2)), method="tsp")


@pytest.mark.parametrize(("n", "start"), [(5, -1), (5, 5), (5, 1.0), (5, True), (0, 1), (1, 1)])
def test_invalid_start(n, start):
    with pytest.raises(ValueError, match="start"):
        order_systems(np.zeros((n, 2)), start=start)


@pytest.mark.parametrize(
    ("features", "match"),
    [
        (np.zeros(5), "2-D"),
        (np.zeros((5, 0)), "p >= 1"),
        (np.array([[0.0, np.nan]]), "finite"),
        (np.array([[0.0, np.inf]]), "finite"),
        (np.zeros((3, 2), dtype=complex), "real"),
        (np.array([["a", "b"]]), "real numeric"),
    ],
)
def test_invalid_features(features, match):
    with pytest.raises(ValueError, match=match):
        order_systems(features)


@pytest.mark.parametrize(
    ("method", "options", "match"),
    [
        ("hilbert", {"bucket": 0}, "bucket must be an integer \\[1, 4096\\]"),
        ("hilbert", {"bucket": 5000}, "bucket"),
        ("hilbert", {"bucket": 2.5}, "bucket"),
        ("hilbert", {"dims": 0}, "dims must be an integer \\[1, 4\\]"),
        ("hilbert", {"dims": 5}, "dims"),
        ("hilbert", {"dims": 4, "bits": 16}, "bits must be an integer \\[1, 15\\]"),
        ("hilbert", {"sample": 10}, "sample must be an integer >= 64"),
        ("hilbert", {"seed": -1}, "seed"),
        ("hilbert", {"dtype": np.int32}, "dtype must be float32 or float64"),
        ("greedy", {"dtype": "float16"}, "dtype"),
        ("greedy", {"dtype": None}, "dtype"),
    ],
)
def test_invalid_options(method, options, match):
    with pytest.raises(ValueError, match=match):
        order_systems(np.random.default_rng(0).standard_normal((10, 4)), method=method, **options)


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError):
        order_systems(np.zeros((3, 2)), method="greedy", bucket=4)

"""Structured multigrid (pdeforge.solvers.multigrid, engine ``mg``): solves checked against a direct
solve, bounded iteration counts, reuse proven by counts (never by wall-clock)."""

import time

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from pdeforge.solvers.engines import HAVE_CHOLMOD
from pdeforge.solvers.engines.base import PilotAborted
from pdeforge.solvers.engines.mg import MgEngine
from pdeforge.solvers.families import get_family
from pdeforge.solvers.families.fv import cell_centres, diffusion
from pdeforge.solvers.fields import CoefficientSpec, GRFSpec, pointwise_std
from pdeforge.solvers.multigrid import Multigrid, grid_hierarchy, infer_shape, mg_cg, mg_gmres
from pdeforge.solvers.multigrid.deflation import small_islands
from pdeforge.solvers.multigrid.hierarchy import ALGEBRAIC_JUMP, BETA, MAX_ISLANDS_2D, PECLET_SCALE
from pdeforge.solvers.options import SolverOptions
from tests.helpers import assert_solved

RTOL = 1e-8
darcy = get_family("darcy")
#: the coefficient fields these tests were calibrated on (the iteration bounds hold for the class; the
#: contrast-1e6 and deflation cases sit near their limits for particular realisations)
SAMPLING = 1


def lognormal(std: float, n: int, dim: int) -> CoefficientSpec:
    """a = exp(g) with pointwise std(g) = ``std`` (GRF amplitude rescaled; scale <= 10 is a spec limit)."""
    grf = GRFSpec()
    unit = GRFSpec(sigma=grf.amplitude(dim) / pointwise_std(grf, (n,) * dim, SAMPLING))
    return CoefficientSpec(kind="lognormal", grf=unit, scale=std)


def threshold(contrast: float) -> CoefficientSpec:
    return CoefficientSpec(kind="threshold", high=12.0, low=3.0) if contrast == 4 else \
        CoefficientSpec(kind="threshold", high=contrast, low=1.0)


def darcy_system(n, dim, coefficient, index=0):
    spec = darcy.spec(n=n, dim=dim, coefficient=coefficient, sampling=SAMPLING)
    return darcy.assemble(spec, darcy.sample(spec, 0, index))


def channels(n: int, dim: int, contrast: float = 1e6) -> np.ndarray:
    """Three wavy high-permeability channels, two cells wide, crossing the domain."""
    X = np.meshgrid(*[cell_centres(n)] * dim, indexing="ij")
    a = np.ones((n,) * dim)
    for c in (0.2, 0.45, 0.7):
        a[np.abs(X[0] - c - 0.1 * np.sin(6 * X[-1])) < 1.0 / n] = contrast
    return a


def inclusions(n: int, dim: int, value: float) -> np.ndarray:
    """A 5^d array of square inclusions of coefficient ``value`` in a = 1."""
    X = np.meshgrid(*[cell_centres(n)] * dim, indexing="ij")
    inside = np.ones((n,) * dim, dtype=bool)
    for Xi in X:
        inside &= (np.mod(5 * Xi, 1) > 0.3) & (np.mod(5 * Xi, 1) < 0.7)
    return np.where(inside, value, 1.0)


def solve_and_check(A, b, **kw):
    """mg_cg / mg_gmres to RTOL, checked against a direct solve; returns the record."""
    M = Multigrid(infer_shape(A)).setup(A)
    krylov = mg_cg if M.symmetric else mg_gmres
    x, info, res = krylov(A, b, rtol=RTOL, M=M, full_output=True, **kw)
    assert info == 0 and res.converged, res.message
    assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))
    assert res.precond_applies >= res.iterations > 0
    return res


# ----------------------------------------------------------------------------- correctness
@pytest.mark.parametrize("n, dim", [(128, 2), (24, 3)])
@pytest.mark.parametrize("std", [1.0, 3.0])
def test_darcy_lognormal(n, dim, std):
    solve_and_check(*darcy_system(n, dim, lognormal(std, n, dim)))


@pytest.mark.parametrize("n, dim", [(128, 2), (24, 3)])
@pytest.mark.parametrize("contrast", [4, 1e3, 1e6])
def test_darcy_threshold_contrasts(n, dim, contrast):
    solve_and_check(*darcy_system(n, dim, threshold(contrast)))


def test_darcy_32_cubed():
    A, b = darcy_system(32, 3, CoefficientSpec())
    x, info, res = mg_cg(A, b, rtol=RTOL, full_output=True)
    assert info == 0 and res.iterations <= 12
    if HAVE_CHOLMOD:  # SuperLU needs ~7 s on 32^3
        from sksparse.cholmod import cholesky

        reference = cholesky(A.tocsc())(b)
    else:
        reference = spla.spsolve(A.tocsc(), b)
    assert_solved(A, b, x, RTOL, reference=reference)


@pytest.mark.parametrize("field", ["channels", "high_inclusions", "insulating_inclusions"])
@pytest.mark.parametrize("n, dim", [(128, 2), (24, 3)])
def test_channels_and_inclusions(field, n, dim):
    a = {"channels": lambda: channels(n, dim),
         # 1e4, not 1e6: floating inclusions of 1e6 with f = 1 put ||b - A x|| = 1e-8 ||b|| below the
         # float64 floor (eps ||A|| ||x||), where the direct solve does not reach rtol either
         "high_inclusions": lambda: inclusions(n, dim, 1e4),
         "insulating_inclusions": lambda: inclusions(n, dim, 1e-6)}[field]()
    solve_and_check(diffusion(a, 1.0 / n).tocsr(), np.ones(n**dim))


def test_poisson_fixed_operator():
    fam = get_family("poisson")
    spec = fam.spec(n=128, dim=2)
    solve_and_check(*fam.assemble(spec, fam.sample(spec, 0, 0)))


@pytest.mark.parametrize("n", [200, 257])
def test_one_dimensional(n):
    a = np.exp(np.sin(12 * cell_centres(n)) + np.random.default_rng(n).standard_normal(n))
    solve_and_check(diffusion(a, 1.0 / n).tocsr(), np.ones(n))


@pytest.mark.parametrize("n, dim", [(100, 2), (37, 2), (48, 2), (21, 3), (19, 3)])
def test_non_power_of_two_and_odd_n(n, dim):
    solve_and_check(*darcy_system(n, dim, CoefficientSpec()))


@pytest.mark.parametrize("dim, n", [(2, 96), (3, 20)])
@pytest.mark.parametrize("dt", [1e-2, 1e-3, 1e-4])
def test_heat_step(dim, n, dt):
    A, b = darcy_system(n, dim, lognormal(1.0, n, dim))
    H = (sp.identity(n**dim, format="csr") / dt + A).tocsr()
    res = solve_and_check(H, b)
    assert res.iterations <= 12
    M = Multigrid((n,) * dim).setup(H)
    # the mass term dominates the coarse Galerkin operators: the over-correction fades there
    assert M.betas == sorted(M.betas, reverse=True) and M.betas[0] <= 1.9
    assert dt > 1e-3 or M.betas[-1] < 1.8


@pytest.mark.parametrize("velocity", [1.0, 100.0])
@pytest.mark.parametrize("n", [64, 128])
def test_advection_diffusion_gmres(velocity, n):
    fam = get_family("advection_diffusion")
    spec = fam.spec(n=n, dim=2, velocity=velocity)
    A, b = fam.assemble(spec, fam.sample(spec, 0, 0))
    M = Multigrid((n, n)).setup(A)
    assert not M.symmetric and 0 < M.skewness < 1
    off = (A - sp.diags(A.diagonal())).tocsr()  # skewness as defined: sum|a_ij - a_ji| / sum|a_ij + a_ji|
    assert M.skewness == pytest.approx(abs(off - off.T).sum() / abs(off + off.T).sum(), rel=1e-12)
    # the over-correction keeps the diffusive share 1 / (1 + 2^(l+1) Pe / PECLET_SCALE), Pe = 2s / (1 - s)
    peclet = 2 * M.skewness / (1 - M.skewness)
    assert M.betas == pytest.approx([1 + (BETA - 1) / (1 + 2 ** (level + 1) * peclet / PECLET_SCALE)
                                     for level in range(len(M.betas))], rel=1e-12)
    assert M.betas == sorted(M.betas, reverse=True) and 1 < M.betas[-1] and M.betas[0] < BETA
    assert M.beta < 1.1 if velocity == 100.0 else M.beta > 1.6
    res = solve_and_check(A, b)
    assert res.iterations <= 40


@pytest.mark.parametrize("velocity", [10.0, 30.0, 100.0])
def test_advection_dominated_coarse_levels_are_not_over_corrected(velocity):
    """Regression: with BETA on every level of an operator whose own faces are diffusion-dominated
    (face Peclet < 1 at 256^2 for speed 10) the coarse levels, where convection dominates, were
    over-corrected and two cycles of level 1 amplified it -- FGMRES diverged (speed 10: 35 iterations
    at 128^2, none converged in 2000 at 256^2).  Fading the over-correction per level keeps the counts
    bounded (measured 13-24 at 64^2-256^2) and the solution equal to a direct solve."""
    fam = get_family("advection_diffusion")
    for n in (64, 128, 256):
        spec = fam.spec(n=n, dim=2, velocity=velocity)
        A, b = fam.assemble(spec, fam.sample(spec, 0, 0))
        x, info, res = mg_gmres(A, b, rtol=RTOL, m=40, maxiter=300, full_output=True)
        assert info == 0 and res.iterations <= 30, (n, res.iterations)
        assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))


def test_benchmark_floor_of_a_non_symmetric_row_uses_lu():
    """bench.multigrid's float64 floor (a direct solve's true residual, reported beside rows that miss
    rtol) factors non-symmetric operators by LU: CHOLMOD refused the advection rows and the row was lost."""
    from bench.multigrid import direct_residual

    fam = get_family("advection_diffusion")
    spec = fam.spec(n=32, dim=2, velocity=10.0)
    A, b = fam.assemble(spec, fam.sample(spec, 0, 0))
    assert abs(A - A.T).max() > 0 and direct_residual(A, b) < 1e-12
    A, b = darcy_system(32, 2, lognormal(1.0, 32, 2))
    assert direct_residual(A, b) < 1e-12


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("shape", [(37, 37), (12, 12), (19, 19, 19), (129,)])
def test_coarse_operators_are_galerkin_products(shape):
    """Every coarse level equals P^T A P with P the aggregate indicator (non-symmetric A too)."""
    rng = np.random.default_rng(len(shape))
    n, d = shape[0], len(shape)
    from pdeforge.solvers.families.fv import upwind_advection

    st = diffusion(np.exp(rng.standard_normal(shape)), 1.0 / n)
    if d == 2:
        st = st + upwind_advection([rng.standard_normal((n + 1, n)), rng.standard_normal((n, n + 1))], 1.0 / n)
    A = st.tocsr()
    M = Multigrid(shape).setup(A)
    assert M.symmetric == (d != 2)
    perm = M.grid.levels[0].perm
    Af = A[perm][:, perm]
    v = rng.standard_normal(A.shape[0])  # products with A in red-black order come from the smoother's blocks
    np.testing.assert_allclose(M.matvec_rb(v), Af @ v, rtol=1e-12, atol=1e-12 * np.abs(Af @ v).max())
    np.testing.assert_allclose(M.levels[0].csr().toarray(), Af.toarray(), rtol=0, atol=0)
    for fine, coarse in zip(M.levels[:-1], M.levels[1:]):
        g = fine.g
        P = sp.vstack([sp.csr_matrix((fine.ones_r, g.P_red[1], g.P_red[0]), shape=(fine.nr, fine.Nc)),
                       sp.csr_matrix((np.ones(fine.nb), g.P_black[1], g.P_black[0]), shape=(fine.nb, fine.Nc))])
        Ac = (P.T @ Af @ P).toarray()
        np.testing.assert_allclose(coarse.dense(), Ac, rtol=1e-12, atol=1e-12 * np.abs(Ac).max())
        assert np.all(np.diff(P.tocsr().indptr) == 1)  # one aggregate per fine cell
        Af = sp.csr_matrix(Ac)
    assert M.levels[-1].N <= 64


@pytest.mark.parametrize("shape", [(12, 12), (37, 37), (16, 16, 16), (19, 19, 19), (129,), (64,)])
def test_band_forms_hold_the_red_black_blocks(shape):
    """The red-black blocks are banded (at most 2d+1 diagonals, even and odd n; tiny coarse levels,
    mostly boundary, may keep CSR), and the band form filled by a set-up is the same matrix as the
    CSR block gathered from the same stencil."""
    d = len(shape)
    if d == 1:
        a = np.where(np.random.default_rng(1).random(shape[0]) < 0.5, 1e3, 1.0)
        A = diffusion(a, 1.0 / shape[0]).tocsr()
    else:
        A, _ = darcy_system(shape[0], d, threshold(1e3))
    M = Multigrid(shape, coarse="structured").setup(A)
    assert M.levels[0].g.rb_band is not None and M.levels[0].g.br_band is not None
    for L in M.levels:
        g = L.g
        flat = np.append(L.work.ravel(), 0.0)  # the scaled stencil the set-up gathered from
        for (indptr, indices, take), band, values, rows, cols in ((g.rb, g.rb_band, L.sA_rb, L.nr, L.nb),
                                                                  (g.br, g.br_band, L.sA_br, L.nb, L.nr)):
            if band is None:
                assert L.N <= 64 and len(values) == len(take)
                continue
            assert len(band[0]) <= 2 * d + 1
            csr = sp.csr_matrix((flat[take], indices, indptr), shape=(rows, cols))
            dia = sp.dia_matrix((values, band[0]), shape=(rows, cols))
            assert abs(dia.tocsr() - csr).max() == 0.0


@pytest.mark.parametrize("n, dim, coarse", [(37, 2, "structured"), (64, 2, "auto"), (19, 3, "structured"),
                                           (16, 3, "auto"), (48, 1, "structured")])
def test_product_of_a_cycle_output_needs_only_its_black_half(n, dim, coarse):
    """The cycle ends with a red half-sweep, so for z = M r the red rows of A z are r's: CG forms
    A p from the cycle (half a product) and it equals the full product to rounding -- in float64
    only: a float32 smoother solves the red rows to single precision, so CG multiplies in full."""
    A, _ = darcy_system(n, dim, threshold(1e3)) if dim > 1 else (diffusion(np.where(
        np.random.default_rng(2).random(n) < 0.5, 1e3, 1.0), 1.0 / n).tocsr(), None)
    r = np.random.default_rng(0).standard_normal(A.shape[0])
    for precision in ("float64", "float32"):
        M = Multigrid((n,) * dim, coarse=coarse, precision=precision).setup(A)
        L0 = M.levels[0]
        z = M.apply_rb(r)
        full = L0.matvec(z)
        error = np.linalg.norm(L0.matvec_after_cycle(z, r, np.empty(L0.N)) - full) / np.linalg.norm(full)
        if precision == "float64":
            assert error <= 1e-10
        else:  # mg_cg multiplies in full and reaches a tolerance below single precision
            b = A @ np.ones(A.shape[0])
            x, info = mg_cg(A, b, rtol=1e-10, M=M)
            assert info == 0 and np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b)


@pytest.mark.parametrize("n, dim", [(37, 2), (19, 3), (64, 2)])
def test_band_products_in_column_blocks_equal_the_whole_band(monkeypatch, n, dim):
    """Bands beyond the core's cache are multiplied in column blocks (each a DIA product of its row
    window): forced here on small grids, every block product equals SciPy's DIA product to rounding,
    and the cycle and the CG iterations are those of the unblocked band."""
    from pdeforge.solvers.multigrid import grid as grid_module
    from pdeforge.solvers.multigrid.kernels import block_add

    A, b = darcy_system(n, dim, threshold(1e3))
    whole = Multigrid((n,) * dim, coarse="structured").setup(A)
    grid_hierarchy.cache_clear()
    monkeypatch.setattr(grid_module, "BAND_SPLIT_BYTES", 0)
    monkeypatch.setattr(grid_module, "BAND_BLOCK_BYTES", 2048)
    blocked = Multigrid((n,) * dim, coarse="structured").setup(A)
    grid_hierarchy.cache_clear()
    assert whole.levels[0].g.rb_band[2] is None
    rng = np.random.default_rng(0)
    for L in blocked.levels:
        g = L.g
        for band, values, rows, cols in ((g.rb_band, L.sA_rb, L.nr, L.nb), (g.br_band, L.sA_br, L.nb, L.nr)):
            if band is None:
                continue
            assert band[2] is not None and (len(band[2]) > 1 or cols <= 64)
            x = rng.standard_normal(cols)
            y = np.zeros(rows)
            block_add((rows, cols), None, band, values, x, y)
            reference = sp.dia_matrix((values, band[0]), shape=(rows, cols)) @ x
            np.testing.assert_allclose(y, reference, rtol=0, atol=1e-13 * np.abs(reference).max())
    v = rng.standard_normal(A.shape[0])
    reference = whole.apply_rb(v)
    assert np.abs(blocked.apply_rb(v) - reference).max() <= 1e-13 * np.abs(reference).max()
    (x, info, res), (xw, infow, resw) = (mg_cg(A, b, rtol=RTOL, M=P, full_output=True) for P in (blocked, whole))
    assert info == infow == 0 and res.iterations == resw.iterations
    assert_solved(A, b, x, RTOL, reference=xw)


@pytest.mark.parametrize("n, dim, coarse, deflate", [(64, 2, "algebraic", False), (37, 2, "structured", False),
                                                     (24, 3, "structured", True), (19, 3, "structured", False)])
def test_band_form_cycle_equals_the_csr_cycle(monkeypatch, n, dim, coarse, deflate):
    """The smoother's products in band form change rounding only: the cycle equals the one with CSR
    blocks to 1e-13, and CG takes the same number of iterations to the same solution."""
    from pdeforge.solvers.multigrid import grid as grid_module

    A, b = darcy_system(n, dim, threshold(1e3))
    M = Multigrid((n,) * dim, coarse=coarse).setup(A, deflate=deflate)
    grid_hierarchy.cache_clear()
    monkeypatch.setattr(grid_module, "BAND_FILL", 0.0)
    C = Multigrid((n,) * dim, coarse=coarse).setup(A, deflate=deflate)
    grid_hierarchy.cache_clear()
    assert all(L.g.rb_band is None and L.g.br_band is None for L in C.levels)
    assert M.levels[0].g.rb_band is not None
    v = np.random.default_rng(0).standard_normal(A.shape[0])
    reference = C.apply_rb(v)
    assert np.abs(M.apply_rb(v) - reference).max() <= 1e-13 * np.abs(reference).max()
    (x, info, res), (xc, infoc, resc) = (mg_cg(A, b, rtol=RTOL, M=P, full_output=True) for P in (M, C))
    assert info == infoc == 0 and res.iterations == resc.iterations
    assert_solved(A, b, x, RTOL, reference=xc)


def test_other_layouts_are_read_and_foreign_patterns_refused():
    A, b = darcy_system(40, 2, CoefficientSpec())
    x_ref, _ = mg_cg(A, b, rtol=RTOL)
    B = sp.csr_matrix(A.toarray())  # same operator, layout built from a dense copy
    x, info = mg_cg(B, b, rtol=RTOL, shape=(40, 40))
    assert info == 0 and np.allclose(x, x_ref, rtol=1e-6)
    C = A.tolil()
    C[0, 5] = -1.0  # outside the 5-point pattern
    with pytest.raises(ValueError, match="outside"):
        Multigrid((40, 40)).setup(C.tocsr())


def test_structure_built_once_per_shape_and_shared():
    grid_hierarchy.cache_clear()
    M1, M2 = Multigrid((29, 29)), Multigrid((29, 29))
    assert M1.grid is M2.grid
    assert grid_hierarchy.cache_info().misses == 1
    for arr in (M1.grid.levels[0].perm, M1.grid.levels[0].rb[2]):
        assert not arr.flags.writeable


def test_red_schur_pattern_built_once_per_grid():
    """The algebraic path's Schur-complement pattern is grid structure: built at the first set-up of
    a shape, then only values per operator."""
    from pdeforge.solvers.multigrid.grid import red_schur_pattern

    red_schur_pattern.cache_clear()
    M = Multigrid((32, 32), coarse="algebraic")
    for index in range(3):
        M.setup(darcy_system(32, 2, threshold(1e3), index)[0])
    info = red_schur_pattern.cache_info()
    assert (info.misses, info.hits, M.setups) == (1, 2, 3)
    assert not red_schur_pattern((16, 16)).left.flags.writeable


# ----------------------------------------------------------------------------- iteration bounds
@pytest.mark.parametrize("dim, sizes", [(2, (32, 64, 128)), (3, (8, 16, 32))])
@pytest.mark.parametrize("coefficient", ["threshold", "lognormal"])
def test_iterations_bounded_as_n_doubles(dim, sizes, coefficient):
    counts = []
    for n in sizes:
        c = CoefficientSpec() if coefficient == "threshold" else lognormal(1.0, n, dim)
        A, b = darcy_system(n, dim, c)
        x, info, res = mg_cg(A, b, rtol=RTOL, full_output=True)
        assert info == 0
        counts.append(res.iterations)
    assert max(counts) <= 1.5 * min(counts), counts
    assert max(counts) <= 15, counts


# ----------------------------------------------------------------------------- solver API
def test_non_convergence_is_data_and_x0_is_used():
    A, b = darcy_system(64, 2, threshold(1e3))
    x, info, res = mg_cg(A, b, rtol=RTOL, maxiter=2, full_output=True)
    assert info == 2 and not res.converged and res.iterations == 2
    assert res.residual == pytest.approx(np.linalg.norm(b - A @ x) / np.linalg.norm(b))
    x_full, info, full = mg_cg(A, b, rtol=RTOL, full_output=True)
    assert info == 0
    _, info, warm = mg_cg(A, b, x0=x, rtol=RTOL, full_output=True)
    assert info == 0 and warm.iterations < full.iterations
    _, info, exact = mg_cg(A, b, x0=x_full, rtol=RTOL, full_output=True)
    assert info == 0 and exact.iterations == 0 and exact.precond_applies == 0


def test_stopping_test_is_the_true_residual_and_callback_sees_every_iteration():
    A, b = darcy_system(48, 2, CoefficientSpec())
    seen = []
    x, info, res = mg_cg(A, b, rtol=1e-6, atol=0.0, callback=seen.append, full_output=True)
    assert info == 0 and len(seen) == res.iterations
    assert np.linalg.norm(b - A @ x) <= 1e-6 * np.linalg.norm(b)
    # atol wins when it is the larger bound
    x, info, res2 = mg_cg(A, b, rtol=1e-12, atol=1e-3 * np.linalg.norm(b), full_output=True)
    assert info == 0 and res2.iterations < res.iterations


# ----------------------------------------------------------------------------- engine
def engine_sequence(family, params, count=5, **opts):
    fam = get_family(family)
    spec = fam.spec(**{"sampling": SAMPLING, **params})
    eng = MgEngine(SolverOptions(engine="auto", rtol=RTOL, **opts), fam, spec)
    records = []
    for i in range(count):
        A, b = fam.assemble(spec, fam.sample(spec, 0, i))
        x, rec = eng.solve(A, b)
        assert rec.converged and rec.residual <= RTOL and rec.method == "mg"
        records.append((A, b, x, rec))
    return eng, records


def test_engine_reuses_the_grid_structure_and_sets_up_each_new_operator():
    eng, records = engine_sequence("darcy", dict(n=64, dim=2))
    assert eng.counters["pattern_builds"] == 1
    assert eng.counters["setups"] == 5
    assert eng.counters["cycles"] == sum(r[3].precond_applies for r in records)
    A, b, x, _ = records[-1]
    assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))


def test_engine_fixed_operator_is_set_up_once():
    eng, _ = engine_sequence("poisson", dict(n=32, dim=3))
    assert dict(eng.counters, cycles=0) == {"pattern_builds": 1, "setups": 1, "setup_reuses": 4, "cycles": 0}


def test_engine_non_symmetric_and_warm_start():
    eng, records = engine_sequence("advection_diffusion", dict(n=64, dim=2), count=3)
    assert "FGMRES" in records[0][3].message
    A, b, x, _ = records[-1]
    x2, rec = eng.solve(A, b, x0=x)
    assert rec.converged and rec.iterations == 0
    assert eng.counters["setups"] == 3 and eng.counters["setup_reuses"] == 1  # same A object


def test_engine_deadline_and_unconverged_record():
    fam = get_family("darcy")
    spec = fam.spec(n=64, dim=2)
    A, b = fam.assemble(spec, fam.sample(spec, 0, 0))
    eng = MgEngine(SolverOptions(engine="auto", rtol=RTOL), fam, spec)
    eng.deadline = time.perf_counter() - 1.0
    with pytest.raises(PilotAborted):
        eng.solve(A, b)
    capped = MgEngine(SolverOptions(engine="auto", rtol=RTOL, maxiter=1), fam, spec)
    x, rec = capped.solve(A, b)
    assert not rec.converged and rec.info > 0 and rec.residual > RTOL


def test_engine_refuses_indefinite_and_complex_families():
    fam = get_family("helmholtz")
    with pytest.raises(ValueError, match="engine='mg' does not apply .* an M-matrix"):
        MgEngine(SolverOptions(engine="auto"), fam, fam.spec(n=32, dim=2))


# ----------------------------------------------------------------------------- deflation
def test_cluster_deflation_finds_the_inclusions_and_cuts_iterations():
    n = 40
    a = inclusions(n, 2, 1e4)
    A = diffusion(a, 1.0 / n).tocsr()
    M = Multigrid((n, n)).setup(A, deflate=True)
    assert M.deflation is not None and M.deflation.k == 25  # the 5 x 5 inclusions
    members = np.sort(M.grid.levels[0].perm[M.deflation.members])
    assert np.array_equal(members, np.flatnonzero(a.ravel() > 1))
    assert Multigrid((n, n)).setup(diffusion(np.ones((n, n)), 1.0 / n).tocsr(), deflate=True).deflation is None


def test_jump_fraction_tells_thresholded_from_lognormal_fields_and_decides_auto_deflation():
    """``deflate="auto"``: deflation where at least 2 % of the pairs of consecutive faces jump by >= 100."""
    n = 24
    for coefficient, deflated in ((threshold(1e3), True), (threshold(4), False), (lognormal(3.0, n, 3), False)):
        A, b = darcy_system(n, 3, coefficient)
        M = Multigrid((n,) * 3).setup(A, deflate="auto")
        assert (M.jump_fraction >= 0.02) == deflated and (M.deflation is not None) == deflated
        x, info, res = mg_cg(A, b, rtol=RTOL, M=M, full_output=True)
        assert info == 0
        assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))
    assert Multigrid((n,) * 3).setup(A).jump_fraction is None  # only computed when asked
    with pytest.raises(ValueError, match="deflate"):
        Multigrid((n,) * 3).setup(A, deflate="yes")


@pytest.mark.parametrize("contrast", [1e3, 1e6])
def test_deflation_on_high_contrast_3d(contrast):
    A, b = darcy_system(24, 3, threshold(contrast))
    _, info, plain = mg_cg(A, b, rtol=RTOL, full_output=True)
    x, info, res = mg_cg(A, b, rtol=RTOL, full_output=True, deflate=True)
    assert info == 0 and res.iterations < plain.iterations
    assert res.matvecs <= res.iterations + 2  # the deflated step uses the thin A Z, no product with A
    assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("n, dim, coarse", [(64, 2, "auto"), (64, 2, "structured"), (16, 3, "structured")])
def test_split_deflated_cg_equals_the_adef2_cg(n, dim, coarse, precision):
    """CG on split vectors (v + Z v_c, the cluster part never scattered per iteration) runs the iterates
    of CG with the A-DEF2 preconditioner applied on the grid: the same counts, the same solution;
    2-D deflations take the split form (A Z has few rows), 3-D ones the grid form.  Both with ``A p``
    from the cycle (float64) and from a full product plus ``(A Z) p_c`` (a float32 finest smoothing)."""
    A, b = darcy_system(n, dim, threshold(1e3))
    M = Multigrid((n,) * dim, precision=precision).setup(A, deflate=True, coarse=coarse)
    D = M.deflation
    assert D.split == (dim == 2)
    solutions = {}
    for split in (True, False):
        D.split = split
        cycles0 = M.applications
        x, info, res = mg_cg(A, b, rtol=RTOL, M=M, full_output=True)
        assert info == 0 and M.applications - cycles0 == res.iterations
        assert res.matvecs == res.iterations + 2  # the deflated steps use the thin A Z only
        solutions[split] = (x, res.iterations)
    assert solutions[True][1] == solutions[False][1]
    reference = spla.spsolve(A.tocsc(), b)
    np.testing.assert_allclose(solutions[True][0], solutions[False][0], rtol=0, atol=1e-9 * np.abs(reference).max())
    assert_solved(A, b, solutions[True][0], RTOL, reference=reference)


def test_2d_auto_deflation_follows_the_face_jump_test():
    """``deflate="auto"`` in 2-D: thresholded fields of contrast >= 1e3 (whose interface faces are ~1 %
    of all) are deflated, like the algebraic levels' jump test; lognormal and contrast 4 are not."""
    for coefficient, deflated in ((threshold(1e3), True), (threshold(1e6), True), (threshold(4), False),
                                  (lognormal(3.0, 64, 2), False)):
        A, _ = darcy_system(64, 2, coefficient)
        M = Multigrid((64, 64)).setup(A, deflate="auto")
        assert (M.jump >= 100) == deflated and (M.deflation is not None) == deflated and M.jump_fraction is None


def test_deflated_step_through_thin_AZ_equals_the_textbook_form():
    """A-DEF2, B r = Q r + (I - QA) M r, with the sparse A Z (rounding-level entries dropped) matches the
    form with a product with A; the deflated start leaves Z^T r = 0 (so B r equals the balancing form
    Q r + (I - QA) M (I - AQ) r there); A Z is confined to the cells next to cluster boundaries."""
    n = 40
    A = diffusion(inclusions(n, 2, 1e4), 1.0 / n).tocsr()
    M = Multigrid((n, n)).setup(A, deflate=True)
    D, matvec = M.deflation, M.matvec_rb
    rng = np.random.default_rng(0)
    r = rng.standard_normal(n * n)
    m = M.apply_rb(r)
    textbook = m - D.project(matvec(m)) + D.project(r)
    np.testing.assert_allclose(D.adef2(M.apply_rb, r), textbook, rtol=1e-10, atol=1e-12 * np.abs(textbook).max())
    x, r0 = rng.standard_normal(n * n), r.copy()
    x0 = x.copy()
    D.start(x, r)
    q = D.project(r0)
    np.testing.assert_allclose(x - x0, q, rtol=1e-12, atol=1e-15 * np.abs(x0).max())
    Aq = matvec(q)
    np.testing.assert_allclose(r, r0 - Aq, rtol=1e-10, atol=1e-12 * np.abs(Aq).max())
    assert np.abs(D.restrict(r)).max() <= 1e-10 * np.abs(D.restrict(r0)).max()
    balancing = M.apply_rb(r - matvec(D.project(r)))
    balancing = balancing - D.project(matvec(balancing)) + D.project(r)
    np.testing.assert_allclose(D.adef2(M.apply_rb, r), balancing, rtol=1e-8, atol=1e-9 * np.abs(balancing).max())
    # 25 inclusions of 4 x 4 cells: A 1_K is non-zero on the 12 cells of K's rim and the 16 outside
    # cells touching it, not on the 4 inner cells
    assert D.AZ.shape == (n * n, D.k) and D.AZ.nnz == 25 * (12 + 16)


def test_thin_AZ_read_off_the_stencil_equals_the_sparse_product():
    """A Z and E = Z^T A Z built from the stencil by shifted views equal the sparse products, also with
    a mass term (rows that do not sum to zero) and clusters touching the Dirichlet boundary."""
    n = 12
    A, _ = darcy_system(n, 3, threshold(1e3))
    A = (A + 50.0 * sp.identity(n**3)).tocsr()
    M = Multigrid((n,) * 3).setup(A, deflate=True)
    D = M.deflation
    assert D is not None and D.k >= 2
    perm = M.grid.levels[0].perm
    A_rb = A[perm][:, perm]
    Z = sp.csr_matrix((np.ones(len(D.members)), (D.members, D.labels)), shape=(n**3, D.k))
    np.testing.assert_allclose(D.AZ.toarray(), (A_rb @ Z).toarray(), rtol=0, atol=1e-12 * abs(A).max())
    np.testing.assert_allclose(np.linalg.inv(D.E_inv), (Z.T @ A_rb @ Z).toarray(), rtol=1e-9)
    # the members are the high cells with a high face neighbour (a face above the cut)
    spec = darcy.spec(n=n, dim=3, coefficient=threshold(1e3), sampling=SAMPLING)
    high = darcy.sample(spec, 0, 0).fields["a"] > 1
    paired = np.zeros_like(high)
    for axis in range(3):
        both = np.logical_and(high.take(range(n - 1), axis), high.take(range(1, n), axis))
        paired[tuple(slice(0, n - 1) if b == axis else slice(None) for b in range(3))] |= both
        paired[tuple(slice(1, n) if b == axis else slice(None) for b in range(3))] |= both
    assert np.array_equal(np.sort(perm[D.members]), np.flatnonzero(paired))


def count_rule_only(monkeypatch):
    """Switch off the face-jump start of 3-D sequences, so that only the iteration counts escalate."""
    import pdeforge.solvers.multigrid.hierarchy as hierarchy

    monkeypatch.setattr(hierarchy, "DEFLATE_JUMP_FRACTION", 2.0)


def test_engine_escalates_after_a_slow_solve_3d(monkeypatch):
    """3-D: the structured cycle first; after a slow solve, cluster deflation with the structured cycle."""
    count_rule_only(monkeypatch)
    eng, records = engine_sequence("darcy", dict(n=24, dim=3, coefficient=threshold(1e6)), count=4)
    its = [r[3].iterations for r in records]
    assert its[0] > 20 and "clusters deflated" not in records[0][3].message
    assert eng.counters["escalations"] == 1
    assert eng.counters["deflations"] == 3 and eng.counters["algebraic_setups"] == 0  # from the second system on
    assert all("clusters deflated" in r[3].message and "classical AMG" not in r[3].message for r in records[1:])
    assert max(its[1:]) < 0.7 * its[0]
    for A, b, x, rec in records[1:]:
        assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))
    eng, _ = engine_sequence("darcy", dict(n=24, dim=3), count=3)  # healthy counts: never escalated
    assert eng.counters["escalations"] == eng.counters["deflations"] == eng.counters["algebraic_setups"] == 0


def test_engine_escalates_large_3d_grids_to_algebraic_levels_and_deflation(monkeypatch):
    """From ALGEBRAIC_CELLS_3D cells on, a 3-D escalation adds classical AMG below level 0 to the deflation."""
    import pdeforge.solvers.engines.mg as mg_engine

    count_rule_only(monkeypatch)
    monkeypatch.setattr(mg_engine, "ALGEBRAIC_CELLS_3D", 16**3)
    monkeypatch.setattr(mg_engine, "ESCALATE_AFTER", {**mg_engine.ESCALATE_AFTER, 3: 5})  # 16^3 needs ~14
    eng, records = engine_sequence("darcy", dict(n=16, dim=3, coefficient=threshold(1e6)), count=3)
    assert eng.counters["escalations"] == 1
    assert eng.counters["deflations"] == eng.counters["algebraic_setups"] == 2
    for A, b, x, rec in records[1:]:
        assert "classical AMG" in rec.message and "clusters deflated" in rec.message
        assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))


@pytest.mark.parametrize("contrast", [1e3, 1e6])
def test_engine_deflates_3d_thresholded_fields_from_the_first_sample(contrast):
    """A 3-D sequence whose faces jump like a thresholded field's deflates from its first operator on,
    without an escalation; a rough lognormal one (sigma = 3) and a smooth one are not deflated."""
    eng, records = engine_sequence("darcy", dict(n=24, dim=3, coefficient=threshold(contrast)), count=3)
    assert eng.counters["deflations"] == 3 and eng.counters["escalations"] == 0
    assert all("clusters deflated" in r[3].message for r in records)
    assert max(r[3].iterations for r in records) <= 20  # the structured cycle alone needs ~30-60 here
    A, b, x, _ = records[0]
    assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))
    for coefficient in (lognormal(3.0, 24, 3), lognormal(1.0, 24, 3)):
        eng, records = engine_sequence("darcy", dict(n=24, dim=3, coefficient=coefficient), count=2)
        assert eng.counters["deflations"] == eng.counters["escalations"] == 0 and eng.counters["setups"] == 2


def test_engine_face_jump_start_of_large_3d_grids_adds_the_algebraic_levels(monkeypatch):
    """From ALGEBRAIC_CELLS_3D cells on, the first deflated operator moves the rest of the sequence to
    classical AMG below level 0 with deflation (the escalation target), again without an escalation."""
    import pdeforge.solvers.engines.mg as mg_engine

    monkeypatch.setattr(mg_engine, "ALGEBRAIC_CELLS_3D", 16**3)
    eng, records = engine_sequence("darcy", dict(n=16, dim=3, coefficient=threshold(1e3)), count=3)
    assert eng.counters["deflations"] == 3 and eng.counters["algebraic_setups"] == 2
    assert eng.counters["escalations"] == 0
    assert "classical AMG" not in records[0][3].message
    for A, b, x, rec in records[1:]:
        assert "classical AMG" in rec.message and "clusters deflated" in rec.message
        assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))


def test_engine_escalates_2d_to_algebraic_levels_without_deflation(monkeypatch):
    import pdeforge.solvers.engines.mg as mg_engine

    monkeypatch.setattr(mg_engine, "ESCALATE_AFTER", {**mg_engine.ESCALATE_AFTER, 2: 8})
    eng, records = engine_sequence("darcy", dict(n=64, dim=2, coefficient=threshold(1e3)), count=3)
    assert records[0][3].iterations > 8
    assert eng.counters["escalations"] == 1 and eng.counters["algebraic_setups"] == 2
    assert eng.counters["deflations"] == 0
    for A, b, x, rec in records[1:]:
        assert "classical AMG" in rec.message
        assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))


def test_engine_escalates_on_the_median_of_recent_counts_not_one_outlier(monkeypatch):
    """One slow solve between fast ones does not escalate; two in the window of three do."""
    import pdeforge.solvers.engines.mg as mg_engine

    n = 64
    easy = darcy_system(n, 2, lognormal(1.0, n, 2))
    hard = darcy_system(n, 2, threshold(1e3))
    eng = MgEngine(SolverOptions(engine="auto", rtol=RTOL), darcy, darcy.spec(n=n, dim=2, sampling=SAMPLING))
    counts = [eng.solve(*system)[1].iterations for system in (easy, hard)]
    limit = (counts[0] + counts[1] + 1) // 2  # the hard count alone exceeds it, the median of the two does not
    assert counts[0] < limit < counts[1]
    monkeypatch.setattr(mg_engine, "ESCALATE_AFTER", {**mg_engine.ESCALATE_AFTER, 2: limit})
    eng = MgEngine(SolverOptions(engine="auto", rtol=RTOL), darcy, darcy.spec(n=n, dim=2, sampling=SAMPLING))
    for system in (easy, hard, easy):
        eng.solve(*system)
    assert eng.counters["escalations"] == 0
    eng.solve(*hard)  # window (hard, easy, hard): median above the limit
    assert eng.counters["escalations"] == 1 and eng.counters["algebraic_setups"] == 0
    x, rec = eng.solve(*hard)
    assert eng.counters["algebraic_setups"] == 1 and "classical AMG" in rec.message
    assert_solved(*hard, x, RTOL, reference=spla.spsolve(hard[0].tocsc(), hard[1]))


# ----------------------------------------------------------------------------- high contrast: algebraic coarse levels
@pytest.mark.parametrize("n, dim", [(64, 2), (16, 3)])
@pytest.mark.parametrize("contrast", [1e3, 1e6])
def test_high_contrast_uses_algebraic_coarse_levels_and_solves(n, dim, contrast):
    A, b = darcy_system(n, dim, threshold(contrast))
    M = Multigrid((n,) * dim).setup(A)
    assert M.use_algebraic and M.algebraic is not None and M.jump >= 100
    x, info, res = mg_cg(A, b, rtol=RTOL, M=M, full_output=True)
    assert info == 0 and res.converged, res.message
    assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))
    _, _, old = mg_cg(A, b, rtol=RTOL, coarse="structured", full_output=True)
    assert res.iterations <= old.iterations


def test_level_zero_sweeps_follow_the_coarse_levels():
    """One red-black sweep per side on level 0 where a 2-D operator has classical AMG below it, two
    elsewhere (structured 2-D, 3-D either way); an explicit ``nu`` is kept; each solves to RTOL."""
    hard, easy = darcy_system(64, 2, threshold(1e3)), darcy_system(64, 2, lognormal(1.0, 64, 2))
    M = Multigrid((64, 64))
    for (A, b), algebraic, nu in ((hard, True, 1), (easy, False, 2), (hard, True, 1)):
        M.setup(A)  # the same preconditioner follows each new operator
        assert (M.use_algebraic, M.nu) == (algebraic, nu)
        before = M.applications
        x, info, res = mg_cg(A, b, rtol=RTOL, M=M, full_output=True)
        assert info == 0 and res.precond_applies == M.applications - before >= res.iterations
        assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))
    explicit = Multigrid((64, 64), nu=2).setup(hard[0])
    assert explicit.use_algebraic and explicit.nu == 2
    cube = Multigrid((16,) * 3, coarse="algebraic").setup(darcy_system(16, 3, threshold(1e3))[0])
    assert cube.use_algebraic and cube.nu == 2
    with pytest.raises(ValueError, match="nu"):
        Multigrid((64, 64), nu=0)


@pytest.mark.parametrize("n, dim", [(64, 2), (16, 3)])
def test_algebraic_cycles_are_symmetric_and_keep_level_one_intact(n, dim):
    """The classical-AMG V-cycle of the red Schur complement (forward Gauss-Seidel before, backward
    after) and the level-1 cycle around it are symmetric positive operators, so CG may use them;
    building them leaves level 1's own operator values in their layout."""
    A, b = darcy_system(n, dim, threshold(1e6))
    M = Multigrid((n,) * dim, coarse="algebraic", cycle="K").setup(A)
    alg, L1 = M.algebraic, M.levels[1]
    assert alg.levels >= 2 and alg.operator_complexity >= 1.0
    rng = np.random.default_rng(1)
    for size, cycle in ((L1.nr, alg.cycle), (L1.N, lambda v: M._cycle(1, v))):
        u, v = rng.standard_normal(size), rng.standard_normal(size)
        assert np.isclose(u @ cycle(v), v @ cycle(u), rtol=1e-10)
        assert u @ cycle(u) > 0
    v = rng.standard_normal(L1.N)
    np.testing.assert_allclose(L1.matvec(v), L1.dense() @ v, rtol=1e-12, atol=1e-12 * np.abs(L1.dense()).max())


@pytest.mark.parametrize("n, dim", [(64, 2), (33, 2), (16, 3), (17, 3), (16, 2)])
def test_level_one_reduces_exactly_to_the_red_schur_complement(n, dim):
    """The algebraic path's coarse operator is level 1's Galerkin product with the ideal interpolation
    P = [I; -A_bb^{-1} A_br], the red Schur complement; the level-1 cycle is a forward red-black
    Gauss-Seidel sweep, x_r += one classical-AMG cycle for S_r e = r_r, a backward sweep (checked
    against dense blocks, even and odd n); where S_r is solved exactly (16^2: one level) the cycle is
    the exact solve of level 1."""
    from pdeforge.solvers.multigrid.hierarchy import red_schur

    A, b = darcy_system(n, dim, threshold(1e3))
    M = Multigrid((n,) * dim, coarse="algebraic").setup(A)
    L1, alg = M.levels[1], M.algebraic
    A1, nr = L1.dense(), L1.nr
    dr, db = np.diag(A1)[:nr], np.diag(A1)[nr:]
    Arb, Abr = A1[:nr, nr:], A1[nr:, :nr]
    np.testing.assert_array_equal(A1[:nr, :nr], np.diag(dr))  # red cells couple only to black ones
    np.testing.assert_array_equal(A1[nr:, nr:], np.diag(db))
    P = np.vstack([np.eye(nr), -Abr / db[:, None]])
    S = red_schur(L1).toarray()
    np.testing.assert_allclose(S, P.T @ A1 @ P, rtol=0, atol=1e-12 * np.abs(S).max())
    np.testing.assert_allclose(S, S.T, rtol=0, atol=1e-14 * np.abs(S).max())
    assert (alg.levels == 1) == ((n, dim) == (16, 2))
    rng = np.random.default_rng(3)
    for _ in range(2):
        v = rng.standard_normal(L1.N)
        xr = v[:nr] / dr
        xb = (v[nr:] - Abr @ xr) / db
        xr = xr + alg.cycle(v[:nr] - dr * xr - Arb @ xb)
        xb = (v[nr:] - Abr @ xr) / db
        xr = (v[:nr] - Arb @ xb) / dr
        reference = np.r_[xr, xb]
        ours = M._cycle(1, v)
        assert np.abs(ours - reference).max() <= 1e-12 * np.abs(reference).max()
    if alg.levels == 1:
        np.testing.assert_allclose(A1 @ M._cycle(1, v), v, rtol=1e-8, atol=1e-8 * np.abs(v).max())
    x, info, res = mg_cg(A, b, rtol=RTOL, M=M, full_output=True)
    assert info == 0
    assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))


@pytest.mark.parametrize("n, dim, contrast", [(64, 2, 1e6), (128, 2, 1e3), (24, 3, 1e3)])
def test_lean_ruge_stueben_set_up_equals_pyamgs_hierarchy(n, dim, contrast):
    """Calling PyAMG's kernels directly gives PyAMG's own Ruge-Stueben hierarchy (direct interpolation):
    the same splittings, prolongations and Galerkin operators on every level."""
    import pyamg

    from pdeforge.solvers.multigrid.algebraic import COARSE_SIZE, ruge_stuben_levels
    from pdeforge.solvers.multigrid.hierarchy import red_schur

    A, _ = darcy_system(n, dim, threshold(contrast))
    L1 = Multigrid((n,) * dim, coarse="algebraic").setup(A).levels[1]
    A1 = red_schur(L1)  # the operator the algebraic path coarsens
    ml = pyamg.ruge_stuben_solver(A1, interpolation="direct", max_coarse=COARSE_SIZE)
    As, Ps, Rs = ruge_stuben_levels(A1)
    assert len(As) == len(ml.levels) >= 3
    for i, level in enumerate(ml.levels):
        assert As[i].shape == level.A.shape
        assert abs(As[i] - level.A).max() <= 1e-13 * abs(level.A).max()
        if i < len(Ps):
            assert Ps[i].shape == level.P.shape and abs(Ps[i] - level.P).max() <= 1e-12  # weights O(1)
            assert abs(Rs[i] - Ps[i].T).max() == 0.0


@pytest.mark.parametrize("coefficient", ["lognormal1", "lognormal3", "threshold4"])
def test_easy_coefficients_keep_the_structured_cycle(coefficient):
    """The per-cycle cost for smooth / low-contrast coefficients is unchanged: no algebraic levels (2-D)."""
    n = 64
    c = threshold(4) if coefficient == "threshold4" else lognormal(float(coefficient[-1]), n, 2)
    A, b = darcy_system(n, 2, c)
    M = Multigrid((n, n)).setup(A)
    assert not M.use_algebraic and M.algebraic is None and M.coarse_inverse is not None


def test_small_islands_counts_the_small_components_of_both_phases():
    """Five 3 x 3 high squares and a 2 x 2 low hole in a 20 x 20 high block: six components below 64
    cells, one below 8; ``limit`` stops after the high cells once they exceed it; no contrast, none."""
    n = 64
    a = np.ones((n, n))
    a[30:50, 30:50] = 1e3
    a[38:40, 38:40] = 1.0
    for k in range(5):
        a[4 + 5 * k:7 + 5 * k, 4:7] = 1e3
    L0 = Multigrid((n, n), coarse="structured").setup(diffusion(a, 1.0 / n).tocsr()).levels[0]
    assert small_islands(L0, 64) == 6 and small_islands(L0, 8) == 1
    assert small_islands(L0, 64, limit=2) == 5
    poisson = Multigrid((n, n), coarse="structured").setup(diffusion(np.ones((n, n)), 1.0 / n).tocsr())
    assert small_islands(poisson.levels[0], 64) == 0


def smooth_threshold(n: int, contrast: float = 1e3, index: int = 0):
    """Darcy on a threshold of an alpha = 3 GRF: high contrast across smooth interfaces."""
    coefficient = CoefficientSpec(kind="threshold", high=contrast, low=1.0, grf=GRFSpec(alpha=3.0))
    return darcy_system(n, 2, coefficient, index)


@pytest.mark.parametrize("field", ["channels", "inclusions1e4", "inclusions1e-6", "smooth_threshold"])
def test_2d_auto_keeps_the_structured_cycle_where_the_jumps_have_no_small_islands(field):
    """A 2-D operator whose faces jump by >= ALGEBRAIC_JUMP across smooth interfaces -- no more than
    MAX_ISLANDS_2D islands below 64 cells -- keeps the structured cycle under ``coarse="auto"`` and is
    not deflated under ``deflate="auto"``: the 2^d aggregates represent such interfaces, and the cycle
    needs fewer iterations than classical AMG below level 0 (measured 0.62-0.86x the time at 256^2-512^2)."""
    n = 128
    if field == "smooth_threshold":
        A, b = smooth_threshold(n)
    else:
        a = channels(n, 2) if field == "channels" else inclusions(n, 2, float(field.removeprefix("inclusions")))
        A, b = diffusion(a, 1.0 / n).tocsr(), np.ones(n * n)
    M = Multigrid((n, n)).setup(A, deflate="auto")
    assert M.jump >= ALGEBRAIC_JUMP and M.islands <= MAX_ISLANDS_2D
    assert not M.use_algebraic and M.algebraic is None and M.deflation is None
    x, info, res = mg_cg(A, b, rtol=RTOL, M=M, full_output=True)
    _, info_algebraic, algebraic = mg_cg(A, b, rtol=RTOL, M=Multigrid((n, n), coarse="algebraic").setup(A),
                                         full_output=True)
    assert info == 0 and info_algebraic == 0 and res.iterations < algebraic.iterations, (res, algebraic)
    assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))


def test_2d_engine_chooses_the_coarse_levels_by_the_islands():
    """From 256^2 the engine starts with ``coarse="auto"``: FNO's thresholds (many small islands) get
    classical AMG below level 0, a threshold of a smooth GRF keeps the structured cycle; both to rtol."""
    n = 256
    fno = darcy.spec(n=n, dim=2, coefficient=threshold(1e3), sampling=SAMPLING)
    smooth = darcy.spec(n=n, dim=2, coefficient=CoefficientSpec(kind="threshold", high=1e3, low=1.0,
                                                                grf=GRFSpec(alpha=3.0)), sampling=SAMPLING)
    for spec, algebraic in ((fno, 1), (smooth, 0)):
        engine = MgEngine(SolverOptions(engine="mg", rtol=RTOL), darcy, spec)
        A, b = darcy.assemble(spec, darcy.sample(spec, 0, 0))
        x, record = engine.solve(A, b)
        assert record.converged and np.linalg.norm(b - A @ x) <= RTOL * np.linalg.norm(b)
        assert engine.counters["algebraic_setups"] == algebraic and engine._M.islands is not None
        assert ("classical AMG" in record.message) == bool(algebraic)
        assert (engine._M.islands > MAX_ISLANDS_2D) == bool(algebraic)


@pytest.mark.parametrize("contrast", [1e3, 1e6])
def test_high_contrast_iterations_bounded_2d(contrast):
    counts = []
    for n in (32, 64, 128):
        A, b = darcy_system(n, 2, threshold(contrast))
        _, info, res = mg_cg(A, b, rtol=RTOL, full_output=True)
        assert info == 0
        counts.append(res.iterations)
    assert max(counts) <= 1.5 * min(counts), counts


@pytest.mark.parametrize("contrast", [1e3, 1e6])
def test_high_contrast_iterations_3d_with_deflation(contrast):
    """3-D: algebraic coarse levels + cluster deflation keep 16^3 -> 32^3 within 1.5x (not 8^3 -> 32^3:
    the 2^3 agglomeration of the finest level is itself the limit, see the engine docstring)."""
    counts = []
    for n in (16, 24, 32):
        A, b = darcy_system(n, 3, threshold(contrast))
        _, info, res = mg_cg(A, b, rtol=RTOL, full_output=True, deflate=True)
        assert info == 0
        counts.append(res.iterations)
    assert max(counts) <= 1.5 * min(counts), counts


@pytest.mark.parametrize("contrast", [1e3, 1e6])
def test_engine_escalated_3d_path_iterations(contrast):
    """The engine's escalated 3-D path (structured cycle + cluster deflation; cheaper per sample than
    the algebraic levels above) grows from 16^3 to 32^3 by at most 1.6x (measured 12 -> 17 at 1e3,
    12 -> 19 at 1e6: slightly above the 1.5x aimed at, see the engine docstring)."""
    counts = []
    for n in (16, 24, 32):
        A, b = darcy_system(n, 3, threshold(contrast))
        x, info, res = mg_cg(A, b, rtol=RTOL, full_output=True, deflate=True, coarse="structured")
        assert info == 0 and res.matvecs <= res.iterations + 2
        counts.append(res.iterations)
        if n == 16:
            assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))
    assert max(counts) <= 1.6 * min(counts) and max(counts) <= 20, counts


@pytest.mark.parametrize("dim, sizes, band", [(2, (32, 64, 128), 16), (3, (16, 24, 32), 8)])
@pytest.mark.parametrize("contrast", [1e3, 1e6])
@pytest.mark.parametrize("index", [0, 1])
def test_algebraic_path_iterations_bounded_on_one_refined_threshold_field(dim, sizes, band, contrast, index):
    """The same thresholded coefficient on every grid (a band-limited GRF: its interfaces are the same
    curves resolved ever finer): the escalated path of large grids (classical AMG below level 0;
    3-D with cluster deflation) needs at most 1.5x the smallest grid's count at the largest.
    (Thresholds of the GRF at each n grow for every method, classical AMG of the whole
    operator included: their interfaces gain finer features as n grows -- see the engine docstring.)"""
    coefficient = CoefficientSpec(kind="threshold", high=contrast, low=1.0, grf=GRFSpec(band=band))
    rtol = 1e-6 if contrast == 1e6 and dim == 2 else RTOL  # 2-D 1e6: 1e-8 is below the float64 floor at 128^2
    counts = []
    for n in sizes:
        spec = darcy.spec(n=n, dim=dim, coefficient=coefficient, sampling=2)
        A, b = darcy.assemble(spec, darcy.sample(spec, 0, index))
        x, info, res = mg_cg(A, b, rtol=rtol, full_output=True, coarse="auto", deflate=dim == 3)
        assert info == 0
        counts.append(res.iterations)
        if n == sizes[0]:
            assert_solved(A, b, x, rtol, reference=spla.spsolve(A.tocsc(), b))
    assert counts[-1] <= 1.5 * counts[0] and max(counts) <= 22, counts


def _interface_growth(dim, alpha, sizes, samples=4):
    """Mean interface measure of threshold fields of a GRF (smoothness ``alpha``) drawn at each n, and
    the power of n it grows like between the smallest and the largest grid."""
    from bench.multigrid import interface_measure

    coefficient = CoefficientSpec(kind="threshold", high=1e3, low=1.0, grf=GRFSpec(alpha=alpha))
    means = []
    for n in sizes:
        spec = darcy.spec(n=n, dim=dim, coefficient=coefficient, sampling=SAMPLING)
        means.append(np.mean([interface_measure(darcy.sample(spec, 0, i).fields["a"]) for i in range(samples)]))
    return means, np.log(means[-1] / means[0]) / np.log(sizes[-1] / sizes[0])


def test_fno_thresholds_have_a_fractal_interface_in_3d():
    """Why the counts on FNO's 3-D thresholds grow with n for every method (engine docstring): a GRF of
    covariance (-Laplacian + tau^2)^(-alpha) is Hoelder with H = alpha - d/2, its level sets have
    dimension d - H for H < 1, so the interface a grid resolves grows like n^(1 - H).  FNO's alpha = 2
    gives n^(1/2) in 3-D (measured n^0.53 over 16^3..128^3) and the borderline H = 1 in 2-D (n^0.08-0.15);
    alpha = 3 gives interfaces that converge."""
    means, power = _interface_growth(3, 2.0, (8, 16, 32))
    assert 0.35 <= power <= 0.75 and means[-1] >= 1.8 * means[0], (means, power)
    _, power = _interface_growth(3, 3.0, (8, 16, 32))
    assert power <= 0.25, power
    _, power = _interface_growth(2, 2.0, (32, 64, 128))
    assert power <= 0.2, power


@pytest.mark.parametrize("contrast", [1e3, 1e6])
def test_engine_3d_path_bounded_on_thresholds_with_smooth_interfaces(contrast):
    """Thresholds of a GRF drawn at each n whose interfaces converge (alpha = 3): the engine's 3-D path
    (cluster deflation decided from the first operator's face jumps, structured cycle) keeps the mean
    count over two samples within 1.5x from 12^3 to 32^3 -- the h-independence the FNO fields
    (alpha = 2, a fractal interface) cannot show, see the test above."""
    coefficient = CoefficientSpec(kind="threshold", high=contrast, low=1.0, grf=GRFSpec(alpha=3.0))
    means = []
    for n in (12, 16, 24, 32):
        spec = darcy.spec(n=n, dim=3, coefficient=coefficient, sampling=SAMPLING)
        engine = MgEngine(SolverOptions(engine="mg", rtol=RTOL), darcy, spec)
        counts = []
        for index in range(2):
            A, b = darcy.assemble(spec, darcy.sample(spec, 0, index))
            x, record = engine.solve(A, b)
            assert record.converged
            counts.append(record.iterations)
            if n == 12 and index == 0:
                assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))
        assert engine.counters["deflations"] == 2 and engine.counters["escalations"] == 0
        means.append(np.mean(counts))
    assert means[-1] <= 1.5 * means[0] and max(means) <= 14, means


@pytest.mark.parametrize("n, dim, coefficient", [(24, 2, "lognormal"), (24, 2, 1e6), (12, 3, 1e3), (12, 3, 4)])
def test_two_level_one_cycles_keep_the_cycle_symmetric_positive_definite(n, dim, coefficient):
    """Level 0's coarse correction takes two cycles of level 1 (``e = B b; e += B (b - A_1 e)``): the
    spectrum of B A_1 lies in (0, 2), so ``2B - B A_1 B`` and the whole cycle stay SPD; the cycle equals
    that formula applied with dense matrices; CG needs fewer iterations than with one level-1 cycle."""
    field = lognormal(1.0, n, dim) if coefficient == "lognormal" else threshold(coefficient)
    A, b = darcy_system(n, dim, field)
    M = Multigrid((n,) * dim, coarse="structured").setup(A)
    assert M.level1_cycles == 2 and len(M.levels) >= 3
    L1 = M.levels[1]
    eye = np.eye(L1.N)
    B = np.column_stack([M._cycle(1, eye[:, j]).copy() for j in range(L1.N)])
    A1 = np.column_stack([L1.matvec(eye[:, j]) for j in range(L1.N)])
    lam = np.linalg.eigvals(B @ A1).real
    assert 0 < lam.min() and lam.max() < 2
    v = np.random.default_rng(0).standard_normal(L1.N)
    two = M._two_cycles(1, v)
    assert np.linalg.norm(two - (2 * B @ v - B @ (A1 @ (B @ v)))) <= 1e-10 * np.linalg.norm(two)
    N = M.levels[0].N
    # symmetric to rounding in float64; a float32 finest smoothing (the 3-D default) to single precision
    for precision, tol in (("float64", 1e-12), ("float32", 1e-6)):
        M = Multigrid((n,) * dim, coarse="structured", precision=precision).setup(A)
        C = np.column_stack([M.apply_rb(np.eye(N)[:, j]) for j in range(N)])
        assert np.linalg.norm(C - C.T) <= tol * np.linalg.norm(C)
        assert np.linalg.eigvalsh(0.5 * (C + C.T)).min() > 0
        x, info = mg_cg(A, b, rtol=RTOL, M=M)
        assert info == 0
        assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))
    with pytest.raises(ValueError, match="level1_cycles"):
        Multigrid((8, 8), level1_cycles=3)


@pytest.mark.parametrize("n, dim", [(128, 2), (32, 3)])
def test_two_level_one_cycles_cut_iterations(n, dim):
    """Lognormal Darcy (measured 9-10 -> 7 iterations at 128^2-512^2 and 32^3-64^3, 0.86-0.91x the time)."""
    A, b = darcy_system(n, dim, lognormal(1.0, n, dim))
    counts = {}
    for cycles in (1, 2):
        x, info, res = mg_cg(A, b, rtol=RTOL, full_output=True, level1_cycles=cycles)
        assert info == 0
        counts[cycles] = res.iterations
    assert counts[2] <= counts[1] - 2
    assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))


def test_k_cycle_option_solves():
    """cycle="K" (two flexible-CG steps per intermediate level) is kept as an option; measured no better."""
    A, b = darcy_system(64, 2, threshold(1e3))
    for coarse in ("structured", "algebraic"):
        M = Multigrid((64, 64), cycle="K", coarse=coarse).setup(A)
        assert M.kcycle and M.betas[0] == 1.0
        x, info, res = mg_cg(A, b, rtol=RTOL, M=M, full_output=True)
        assert info == 0
        assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))
    with pytest.raises(ValueError, match="cycle"):
        Multigrid((8, 8), cycle="W")
    with pytest.raises(ValueError, match="coarse"):
        Multigrid((8, 8), coarse="dense")


def test_engine_deflates_the_largest_2d_grids_from_the_first_sample(monkeypatch):
    """2-D grids from DEFLATE_CELLS_2D cells on also deflate clusters where the faces jump (the jump
    test of the algebraic levels), from the first operator, without an escalation; lognormal fields
    (sigma = 3 included) are not deflated."""
    import pdeforge.solvers.engines.mg as mg_engine

    monkeypatch.setattr(mg_engine, "ALGEBRAIC_CELLS_2D", 48**2)
    monkeypatch.setattr(mg_engine, "DEFLATE_CELLS_2D", 48**2)
    eng, records = engine_sequence("darcy", dict(n=48, dim=2, coefficient=threshold(1e6)), count=3)
    assert eng.counters["deflations"] == eng.counters["algebraic_setups"] == 3
    assert eng.counters["escalations"] == 0
    for A, b, x, rec in records:
        assert "classical AMG" in rec.message and "clusters deflated" in rec.message
        assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))
    for coefficient in (lognormal(3.0, 48, 2), threshold(4)):
        eng, records = engine_sequence("darcy", dict(n=48, dim=2, coefficient=coefficient), count=2)
        assert eng.counters["deflations"] == eng.counters["escalations"] == 0
    monkeypatch.setattr(mg_engine, "DEFLATE_CELLS_2D", 49**2)  # below it: the algebraic levels alone
    eng, records = engine_sequence("darcy", dict(n=48, dim=2, coefficient=threshold(1e6)), count=1)
    assert eng.counters["deflations"] == 0 and eng.counters["algebraic_setups"] == 1


def test_engine_starts_large_2d_grids_with_the_jump_test(monkeypatch):
    """2-D grids from ALGEBRAIC_CELLS_2D cells on start with coarse="auto": high-jump operators get
    classical AMG below level 0 from the first sample (no escalation needed), easy ones keep the
    structured cycle; smaller grids start structured."""
    import pdeforge.solvers.engines.mg as mg_engine

    monkeypatch.setattr(mg_engine, "ALGEBRAIC_CELLS_2D", 48**2)
    eng, records = engine_sequence("darcy", dict(n=48, dim=2, coefficient=threshold(1e3)), count=3)
    assert eng.counters["algebraic_setups"] == 3 and eng.counters["escalations"] == 0
    for A, b, x, rec in records:
        assert "classical AMG" in rec.message
        assert_solved(A, b, x, RTOL, reference=spla.spsolve(A.tocsc(), b))
    eng, records = engine_sequence("darcy", dict(n=48, dim=2), count=2)  # smooth lognormal: no jumps
    assert eng.counters["algebraic_setups"] == eng.counters["escalations"] == 0
    assert all("classical AMG" not in rec.message for *_, rec in records)
    eng, records = engine_sequence("darcy", dict(n=40, dim=2, coefficient=threshold(1e3)), count=1)  # below
    assert eng.counters["algebraic_setups"] == 0 and "classical AMG" not in records[0][3].message


@pytest.mark.parametrize("coefficient", ["lognormal", 1e3])
def test_float32_finest_smoothing_keeps_the_counts_in_3d(coefficient):
    """3-D smooths the finest level in float32 by default (its bands and vectors; the coarse levels and
    CG stay float64): the same CG iterations as float64 smoothing (+-1), solutions to rtol 1e-8 against
    a direct solve, the engine's record says so; before a set-up the 1-D default is float64 and no
    float32 copy exists; bad values are refused."""
    n = 24
    field = lognormal(1.0, n, 3) if coefficient == "lognormal" else threshold(coefficient)
    A, b = darcy_system(n, 3, field)
    reference = spla.spsolve(A.tocsc(), b)
    counts = {}
    for precision in ("auto", "float64"):
        M = Multigrid((n,) * 3, precision=precision).setup(A, deflate=coefficient != "lognormal")
        assert M.precision == ("float32" if precision == "auto" else "float64")
        assert (M.single is not None) == (M.precision == "float32")
        x, info, res = mg_cg(A, b, rtol=RTOL, M=M, full_output=True)
        assert info == 0
        assert_solved(A, b, x, RTOL, reference=reference)
        counts[M.precision] = res.iterations
    assert abs(counts["float32"] - counts["float64"]) <= 1
    spec = darcy.spec(n=n, dim=3, coefficient=field, sampling=SAMPLING)
    x, rec = MgEngine(SolverOptions(engine="mg", rtol=RTOL), darcy, spec).solve(A, b)
    assert "float32 smoothing on level 0" in rec.message and rec.residual <= RTOL
    assert Multigrid((16,)).precision == "float64" and Multigrid((16, 16, 16)).single is None  # until set up
    with pytest.raises(ValueError, match="precision"):
        Multigrid((8, 8, 8), precision="float16")


@pytest.mark.parametrize("coefficient", ["lognormal3", "threshold4", "threshold200", 1e3])
def test_float32_finest_smoothing_in_2d_follows_the_face_jumps(coefficient):
    """2-D smooths the finest level in float32 unless its faces jump by ALGEBRAIC_JUMP (100) or more,
    decided per operator: the same counts as float64 smoothing where it does (lognormal sigma = 3,
    FNO's contrast 4, contrast 200: jumps of 100 stay float64), solutions to rtol 1e-8 against a
    direct solve; one Multigrid switches with the operators it is set up for, and the engine's
    record names the float32 smoothing only where it ran."""
    from pdeforge.solvers.multigrid.hierarchy import ALGEBRAIC_JUMP, face_jump

    n = 48
    if coefficient == "lognormal3":
        field = lognormal(3.0, n, 2)
    elif isinstance(coefficient, str):
        field = threshold(float(coefficient.removeprefix("threshold")))
    else:
        field = threshold(coefficient)
    A, b = darcy_system(n, 2, field)
    reference = spla.spsolve(A.tocsc(), b)
    counts = {}
    for precision in ("auto", "float64", "float32"):
        M = Multigrid((n, n), precision=precision).setup(A, coarse="structured")
        x, info, res = mg_cg(A, b, rtol=RTOL, M=M, full_output=True)
        assert info == 0
        assert_solved(A, b, x, RTOL, reference=reference)
        counts[precision] = (M.precision, res.iterations)
    single = face_jump(M.levels[0]) < ALGEBRAIC_JUMP
    assert counts["auto"][0] == ("float32" if single else "float64")
    assert counts["float64"][0] == "float64" and counts["float32"][0] == "float32"
    if single:  # float32 where the rule chooses it: the same counts
        assert counts["auto"][1] == counts["float64"][1] == counts["float32"][1]
    assert coefficient in ("lognormal3", "threshold4") or not single
    spec = darcy.spec(n=n, dim=2, coefficient=field, sampling=SAMPLING)
    x, rec = MgEngine(SolverOptions(engine="mg", rtol=RTOL), darcy, spec).solve(A, b)
    assert ("float32 smoothing on level 0" in rec.message) == single and rec.residual <= RTOL
    # one preconditioner, operators with and without jumps: the precision follows each operator
    smooth, sharp = darcy_system(n, 2, lognormal(1.0, n, 2)), darcy_system(n, 2, threshold(1e3))
    M = Multigrid((n, n))
    for (A, b), expected in ((smooth, "float32"), (sharp, "float64"), (smooth, "float32")):
        M.setup(A, coarse="structured")
        assert M.precision == expected and (M.single is not None) == (expected == "float32")
        x, info = mg_cg(A, b, rtol=RTOL, M=M)
        assert info == 0 and np.linalg.norm(b - A @ x) <= RTOL * np.linalg.norm(b)

"""nimare_jax.stats / nimare_jax.ops.stats against independent computations.

References: scipy.stats (chisquare, chi2_contingency, pearsonr, norm, t,
false_discovery_control), brute-force loops written here, mpmath for far tails, and NiMARE
0.22.1's ALE p/z maps (tests/data/reference). Tolerances are stated per test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import special
from scipy import stats as sps
from test_compilation import count_traces

from nimare_jax import stats
from nimare_jax.ops import stats as ops

RNG_SEED = 20240611
HYP = settings(max_examples=60, deadline=None)


@pytest.fixture
def rng():
    return np.random.default_rng(RNG_SEED)


# ----------------------------------------------------------------------------- chi-square
def test_one_way_equals_two_cell_chisquare(rng):
    n = 40
    counts = rng.integers(0, n + 1, size=200)
    expected = counts.mean()
    ref = [sps.chisquare([c, n - c], f_exp=[expected, n - expected]).statistic for c in counts]
    np.testing.assert_allclose(stats.one_way(counts, n), ref, rtol=1e-12)


@pytest.mark.parametrize("value", [0, 7])
def test_one_way_degenerate_mean_gives_zero(value):
    np.testing.assert_array_equal(stats.one_way(np.full(5, value), 7), np.zeros(5))


def test_two_way_equals_chi2_contingency(rng):
    cells = rng.integers(1, 30, size=(100, 2, 2))
    ref = [sps.chi2_contingency(c, correction=False).statistic for c in cells]
    np.testing.assert_allclose(stats.two_way(cells), ref, rtol=1e-12)


def test_two_way_empty_margin_gives_nimare_value():
    cells = np.array([[[0, 0], [5, 7]], [[3, 0], [4, 0]]])  # empty row; empty column
    np.testing.assert_array_equal(stats.two_way(cells), [2.0, 2.0])


def test_two_way_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(n_voxels, 2, 2\).*\(3, 4\)"):
        stats.two_way(np.ones((3, 4)))


def test_pearson_equals_pearsonr(rng):
    x = rng.normal(size=50)
    y = rng.normal(size=(20, 50)) + 0.5 * x
    ref = [sps.pearsonr(x, row).statistic for row in y]
    np.testing.assert_allclose(stats.pearson(x, y), ref, rtol=1e-12)
    np.testing.assert_allclose(stats.pearson(x[None], y), ref, rtol=1e-12)


def test_pearson_rejects_length_mismatch():
    with pytest.raises(ValueError, match="3 elements.*4"):
        stats.pearson([1, 2, 3], np.ones((2, 4)))


# ----------------------------------------------------------------------------- null_to_p
TAILS = [("upper", False), ("lower", False), ("two", False), ("two", True)]


def _brute_null_to_p(values, null, tail, symmetric):
    out = []
    for v in values:
        if tail == "upper":
            p = np.mean(null >= v)
        elif tail == "lower":
            p = np.mean(null <= v)
        elif symmetric:
            p = np.mean(np.abs(null) >= abs(v))
        else:
            p = 2 * min(np.mean(null >= v), np.mean(null <= v))
        out.append(max(1 / len(null), min(p, 1 - 1 / len(null))))  # NiMARE's order
    return np.array(out)


@HYP
@given(
    values=arrays(np.int64, 16, elements=st.integers(-12, 12)),
    null=arrays(np.int64, 40, elements=st.integers(-10, 10)),
    case=st.sampled_from(TAILS),
)
def test_null_to_p_equals_brute_force(values, null, case):
    tail, symmetric = case
    got = stats.null_to_p(values, null, tail=tail, symmetric=symmetric)
    # integer data make ties common; the counts are exact, so is the result
    np.testing.assert_allclose(got, _brute_null_to_p(values, null, tail, symmetric), rtol=1e-15)


@HYP
@given(
    values=arrays(np.float64, 16, elements=st.floats(-5, 5)),
    null=arrays(np.float64, 40, elements=st.floats(-5, 5)),
)
def test_null_to_p_bounded_and_monotone(values, null):
    p = stats.null_to_p(np.sort(values), null, tail="upper")
    assert np.all((p >= 1 / 40) & (p <= 1 - 1 / 40))
    assert np.all(np.diff(p) <= 0)  # larger statistic, smaller p


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("case", TAILS)
def test_null_to_p_tiny_null_lower_bound_wins(n, case):
    # With n <= 2 null values the bounds [1/n, 1 - 1/n] cross; NiMARE's max(1/n, min(p,
    # 1 - 1/n)) lets the lower bound win: n = 1 gives p = 1 and n = 2 gives 0.5 for every
    # value (the inverted clip gave p = 0, z = 38.5, for n = 1).
    tail, symmetric = case
    null = np.arange(n, dtype=float)
    values = np.array([-3.0, 0.0, 0.5, n + 5.0])
    got = stats.null_to_p(values, null, tail=tail, symmetric=symmetric)
    np.testing.assert_array_equal(got, _brute_null_to_p(values, null, tail, symmetric))
    if n <= 2:
        np.testing.assert_array_equal(got, 1.0 / n)
    assert np.all(got > 0)


def test_null_to_p_returns_float_for_python_scalar():
    p = stats.null_to_p(3.0, [0, 1, 2, 3, 4], tail="upper")
    assert isinstance(p, float)
    assert p == pytest.approx(0.4, rel=1e-15)
    assert isinstance(stats.null_to_p([3.0], [0, 1, 2, 3, 4]), np.ndarray)


def test_null_to_p_rejects_bad_input():
    with pytest.raises(ValueError, match="tail must be one of.*'sideways'"):
        stats.null_to_p(1.0, [0, 1], tail="sideways")
    with pytest.raises(ValueError, match="null_array is empty"):
        stats.null_to_p(1.0, [])


# ----------------------------------------------------------------------------- nullhist_to_p
def _brute_nullhist_to_p(values, weights, step):
    survival = np.array([weights[i:].sum() for i in range(len(weights))]) / weights.sum()
    floor = survival[survival > 0].min()
    out = []
    for v in values:
        if v <= 0:
            out.append(1.0)
            continue
        scaled = v / step
        i = int(np.floor(scaled)) + (1 if scaled - np.floor(scaled) >= 0.5 else 0)
        out.append(max(survival[min(i, len(weights) - 1)], floor))
    return np.array(out)


def test_nullhist_to_p_equals_brute_force(rng):
    bins = np.arange(50) * 0.125  # exact binary step, so half-bins are exact
    weights = rng.integers(0, 20, size=50).astype(float)
    weights[-5:] = 0  # survival reaches 0 before the end: floored
    values = np.r_[-1.0, 0.0, rng.uniform(0, 7, size=60), 2.5 * 0.125, 3.5 * 0.125, 100.0]
    got = stats.nullhist_to_p(values, weights, bins)
    np.testing.assert_allclose(got, _brute_nullhist_to_p(values, weights, 0.125), rtol=1e-13)
    # halves go away from zero (NiMARE's round2), not to even as numpy.round does
    assert got[-3] == pytest.approx(weights[3:].sum() / weights.sum(), rel=1e-13)
    assert got[-2] == pytest.approx(weights[4:].sum() / weights.sum(), rel=1e-13)


def test_nullhist_to_p_voxelwise_histograms(rng):
    bins = np.arange(30) * 0.5
    weights = rng.integers(1, 9, size=(30, 4)).astype(float)
    values = np.array([0.3, 2.0, 7.75, 20.0])
    got = stats.nullhist_to_p(values, weights, bins)
    floor = min(
        (np.cumsum(w[::-1])[::-1] / w.sum()).min() for w in weights.T
    )  # NiMARE's floor is the smallest over all histograms
    ref = [
        max(_brute_nullhist_to_p([v], w, 0.5)[0], floor)
        for v, w in zip(values, weights.T, strict=True)
    ]
    np.testing.assert_allclose(got, ref, rtol=1e-13)


def test_nullhist_to_p_scalar_and_bad_shapes():
    assert isinstance(stats.nullhist_to_p(0.0, np.ones(3), np.arange(3.0)), np.floating)
    with pytest.raises(ValueError, match=r"histogram_weights must have shape \(3,\)"):
        stats.nullhist_to_p([1.0], np.ones(4), np.arange(3.0))


def test_nullhist_to_p_and_p_to_z_reproduce_nimare_ale_maps(reference):
    maps, nulls = reference("ale_laird_maps"), reference("ale_laird_nulls")
    bins = nulls["histogram_bins"]
    weights = nulls["histweights_corr-none_method-approximate"]
    p = stats.nullhist_to_p(maps["stat"].astype(float), weights, bins)
    # same bin for every one of the 228,483 voxels: identical after NiMARE's float32 cast
    np.testing.assert_array_equal(p.astype(np.float32), maps["p"])
    np.testing.assert_array_equal(stats.p_to_z(p, tail="one").astype(np.float32), maps["z"])


# ----------------------------------------------------------------------------- p <-> z
P_GRID = np.r_[np.logspace(-300, -1, 300), 0.2, 0.5, 0.9, 1.0]


@pytest.mark.parametrize("tail", ["one", "two"])
def test_p_to_z_equals_norm_isf(tail):
    half = 2.0 if tail == "two" else 1.0
    ref = np.maximum(sps.norm.isf(P_GRID / half), 0.0)
    # scipy's isf is exact where p is a normal double
    np.testing.assert_allclose(stats.p_to_z(P_GRID, tail=tail), ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("tail", ["one", "two"])
def test_logp_to_z_inverts_scipy_log_ndtr_far_beyond_double_p(tail):
    logp = -np.logspace(-2, 6, 500)  # p down to exp(-1e6)
    with jax.enable_x64(True):
        z = np.asarray(ops.logp_to_z(logp, tail=tail))
    shift = np.log(2.0) if tail == "two" else 0.0
    inside = z > 0
    back = special.log_ndtr(-z[inside]) + shift
    # rtol: a few ulp; atol: the log(2) shift near p = 1 costs an ulp of log(2)
    np.testing.assert_allclose(back, logp[inside], rtol=2e-15, atol=5e-16)
    assert z.max() > 1400  # no clipping at the float64 p floor (z = 38.5)


def test_p_to_z_edge_values():
    # p = 0 is read as the smallest positive double, as in NiMARE
    assert stats.p_to_z(0.0, tail="one") == pytest.approx(sps.norm.isf(np.nextafter(0, 1)))
    assert stats.p_to_z(0.7, tail="one") == 0.0  # unsigned z: p >= 1/2 one-sided gives 0
    assert np.isnan(stats.p_to_z(np.nan))
    assert isinstance(stats.p_to_z(0.05), np.floating)


@pytest.mark.parametrize("tail", ["one", "two"])
def test_z_to_p_equals_norm_sf(tail):
    z = np.linspace(-37, 37, 301)
    ref = sps.norm.sf(z) if tail == "one" else 2 * sps.norm.sf(np.abs(z))
    # through log space: relative error up to |log p| ulp of log p (~1e-13 at p = 1e-300)
    np.testing.assert_allclose(stats.z_to_p(z, tail=tail), np.minimum(ref, 1.0), rtol=5e-13)
    assert stats.z_to_p(60.0) == np.nextafter(0, 1)  # floored, as in NiMARE


@HYP
@given(z=st.floats(0, 30), tail=st.sampled_from(["one", "two"]))
def test_z_p_round_trip(z, tail):
    assert stats.p_to_z(stats.z_to_p(z, tail), tail) == pytest.approx(z, rel=1e-12, abs=1e-9)


def test_bad_tail_rejected():
    with pytest.raises(ValueError, match=r"tail must be one of \['one', 'two'\], got 'upper'"):
        stats.p_to_z(0.5, tail="upper")


# ----------------------------------------------------------------------------- t -> z
@pytest.mark.parametrize("dof", [1, 5, 30, 500])
def test_t_to_z_equals_matched_tail_probability(dof):
    t = np.linspace(-30, 30, 121)
    sf = sps.t.sf(np.abs(t), dof)
    ok = sf > 1e-300
    ref = np.sign(t) * sps.norm.isf(sf)
    np.testing.assert_allclose(stats.t_to_z(t, dof)[ok], ref[ok], rtol=1e-12, atol=1e-14)


# z whose upper tail equals the t tail, computed with mpmath at 50 digits:
#   x = dof / (dof + t**2); log_sf = log(betainc(dof/2, 1/2, 0, x, regularized=True) / 2)
#   z = findroot(lambda z: log(ncdf(-z)) - log_sf, sqrt(-2 * log_sf))
# All have t.sf below the smallest double (NiMARE 0.22 gives 38.157 for the first).
FAR_T_TAIL = [
    (96.0, 500, 38.500920454793403339),
    (1e3, 500, 61.633378490784132909),
    (600.0, 200, 38.693759783857677264),
    (1e10, 10, 20.827063627594705816),
    (1e200, 1, 30.243427079379607649),
]


@pytest.mark.parametrize(("t", "dof", "z_ref"), FAR_T_TAIL)
def test_t_to_z_far_tail_against_mpmath(t, dof, z_ref):
    assert stats.t_to_z(t, dof) == pytest.approx(z_ref, rel=1e-13)
    assert stats.t_to_z(-t, dof) == pytest.approx(-z_ref, rel=1e-13)


def test_t_to_z_broadcasts_dof_and_handles_extremes():
    z = stats.t_to_z([2.0, 2.0, 0.0, np.inf, 1e250], [5, 50, 5, 5, 5])
    assert z[0] == pytest.approx(sps.norm.isf(sps.t.sf(2.0, 5)), rel=1e-12)
    assert z[1] == pytest.approx(sps.norm.isf(sps.t.sf(2.0, 50)), rel=1e-12)
    assert z[2] == 0.0 and z[3] == np.inf and np.isfinite(z[4])


# Grid of the t -> z accuracy tests: t in [-40, 40] by 0.05, 40 dof from 1 to 1,000.
T_GRID = np.linspace(-40.0, 40.0, 1601)
DOF_GRID = np.unique(np.round(np.geomspace(1, 1000, 40)))


def test_ops_t_to_z_accuracy_against_scipy_over_t_and_dof():
    """Jitted float64 ``ops.t_to_z`` against ``norm.isf(t.sf(|t|))`` on the whole grid.

    Relative error of z measured on this grid (and asserted): beyond |z| = 5 1.2e-15 (2e-15);
    for 0.5 <= |z| <= 5 1.7e-14 (3e-14: the continued fraction near its switch point needs
    ~sqrt(dof) terms, whose rounding adds up). Below |z| = 0.5 the reference itself loses
    relative precision (isf of p close to 0.5), so the check there is absolute: 1.9e-15
    (3e-15); relative precision near 0 is checked against closed forms below. The former
    jitted version (``jax.scipy.special.betainc``) measured 3e-12 near 0, 6e-14 beyond
    |z| = 2, and gave ``inf`` wherever ``t.sf`` underflows (|t| > 55 at dof = 1,000).
    """
    t, dof = np.meshgrid(T_GRID, DOF_GRID)
    ref = np.sign(t) * sps.norm.isf(sps.t.sf(np.abs(t), dof))
    with jax.enable_x64(True):
        got = np.asarray(ops.t_to_z(t, dof))
    for low, high, rtol, atol in [(5, np.inf, 2e-15, 0), (0.5, 5, 3e-14, 0), (0, 0.5, 0, 3e-15)]:
        band = (np.abs(ref) >= low) & (np.abs(ref) < high)
        np.testing.assert_allclose(got[band], ref[band], rtol=rtol, atol=atol)
    assert np.all(np.sign(got) == np.sign(t))


@pytest.mark.parametrize("dof", [1, 2])
def test_ops_t_to_z_relative_precision_near_zero_against_closed_forms(dof):
    """Cauchy (dof 1) and dof 2 have closed-form ``P(|T| < t)``: z = sqrt(2) erfinv of it."""
    t = np.concatenate([np.geomspace(1e-12, 1.0, 60), np.linspace(1.0, 40.0, 60)])
    inner = 2 / np.pi * np.arctan(t) if dof == 1 else t / np.sqrt(2.0 + t * t)
    ref = np.sqrt(2.0) * special.erfinv(inner)  # exact in relative terms while inner < 0.99
    ok = inner < 0.99
    with jax.enable_x64(True):
        got = np.asarray(ops.t_to_z(-t, float(dof)))
    np.testing.assert_allclose(-got[ok], ref[ok], rtol=1e-14, atol=0)


def test_ops_log_t_sf_against_scipy_both_signs():
    """``log P(T > t)`` for negative and positive t (scipy's logsf is exact on this grid)."""
    t, dof = np.meshgrid(T_GRID, DOF_GRID)
    ref = sps.t.logsf(t, dof)
    with jax.enable_x64(True):
        got = np.asarray(ops.log_t_sf(t, dof))
        z, log_sf = ops.t_to_z_logp(t, dof)
        z_alone = ops.t_to_z(t, dof)
    np.testing.assert_allclose(got, ref, rtol=5e-13, atol=1e-16)
    np.testing.assert_allclose(np.asarray(log_sf), sps.t.logsf(np.abs(t), dof), rtol=5e-13)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(z_alone))


def test_ops_t_to_z_value_does_not_depend_on_batch():
    """Each element stops its continued fraction on its own: alone or batched, same bits."""
    t = np.array([-1.6, 1.74, 25.0, 0.01])
    dof = np.array([173.0, 1000.0, 3.0, 1.0])
    with jax.enable_x64(True):
        batched = np.asarray(ops.t_to_z(t, dof))
        single = [float(ops.t_to_z(a, b)) for a, b in zip(t, dof, strict=True)]
    np.testing.assert_array_equal(batched, single)


def test_stats_t_to_z_second_call_traces_nothing():
    """NumPy callers (``stats.t_to_z``, e.g. once per transform) reuse the compiled kernel."""
    t, dof = np.linspace(-5, 5, 11), np.full(11, 9.0)
    a = stats.t_to_z(t, dof)  # traces unless an earlier test used these shapes
    with count_traces() as second:
        b = stats.t_to_z(t + 1.0, dof)
    assert not second, second
    np.testing.assert_allclose(b[5], sps.norm.isf(sps.t.sf(1.0, 9)), rtol=1e-14)
    assert a[5] == 0.0


def test_one_t_to_z_behind_every_public_name():
    from nimare_jax import transforms
    from nimare_jax.meta import esma as meta_esma
    from nimare_jax.ops import esma as ops_esma

    assert ops_esma.t_to_z is ops.t_to_z and meta_esma.t_to_z is ops.t_to_z
    assert ops_esma.log_t_sf is ops.log_t_sf and meta_esma.log_t_sf is ops.log_t_sf
    assert transforms.t_to_z is stats.t_to_z
    t = np.array([-3.0, 0.5, 12.0])
    with jax.enable_x64(True):
        np.testing.assert_array_equal(stats.t_to_z(t, 7), np.asarray(ops.t_to_z(t, 7.0)))


# ----------------------------------------------------------------------------- FDR
def _naive_fdr(p, by):
    n = len(p)
    c = np.sum(1.0 / np.arange(1, n + 1)) if by else 1.0
    out = np.empty(n)
    for i in range(n):  # adjusted p_i = min over p_j >= p_i of p_j * n * c / rank_j
        ranks = np.array([np.sum(p <= p[j]) for j in range(n)])
        out[i] = min(1.0, min(p[j] * n * c / ranks[j] for j in range(n) if p[j] >= p[i]))
    return out


@pytest.mark.parametrize("method", ["bh", "by"])
def test_fdr_equals_scipy_and_naive(rng, method):
    p = rng.uniform(size=300) ** 3
    got = stats.fdr(p, method=method)
    np.testing.assert_allclose(got, sps.false_discovery_control(p, method=method), rtol=1e-12)
    np.testing.assert_allclose(got[:40], _naive_fdr(p, method == "by")[:40], rtol=1e-12)


def test_fdr_keeps_relative_precision_for_tiny_p():
    p = np.array([1e-300, 2e-300, 1e-200, 0.5])
    np.testing.assert_allclose(stats.fdr(p), [4e-300, 4e-300, 4e-200 / 3, 0.5], rtol=1e-13)


def test_fdr_nan_counts_as_a_test_but_stays_nan():
    got = stats.fdr([0.01, np.nan, 0.02])
    np.testing.assert_allclose(got[[0, 2]], [0.03, 0.03], rtol=1e-14)
    assert np.isnan(got[1])


@HYP
@given(p=arrays(np.float64, 25, elements=st.floats(1e-30, 1.0)))
def test_fdr_properties(p):
    adj = stats.fdr(p)
    assert np.all(adj >= p * (1 - 1e-12)) and np.all(adj <= 1.0)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-15)  # monotone in p


def test_fdr_rejects_values_outside_unit_interval():
    with pytest.raises(ValueError, match=r"p-values must lie in \[0, 1\]"):
        stats.fdr([0.2, 1.5])
    with pytest.raises(ValueError, match="method must be one of.*'holm'"):
        stats.fdr([0.2], method="holm")


# ----------------------------------------------------------------------------- ops in JAX
def test_ops_float32_under_jit_reach_far_tails():
    logp = jnp.asarray([-1e3, -1e5], dtype=jnp.float32)  # p = exp(-1000) underflows float32
    z = jax.jit(lambda lp: ops.logp_to_z(lp, tail="one"))(logp)
    assert z.dtype == jnp.float32
    np.testing.assert_allclose(z, -special.ndtri_exp(np.array([-1e3, -1e5])), rtol=1e-5)


def test_ops_vmap_equals_loop(rng):
    values = rng.normal(size=(4, 10)).astype(np.float32)
    nulls = rng.normal(size=(4, 64)).astype(np.float32)
    batched = jax.vmap(lambda v, n: ops.null_to_p(v, n, tail="upper"))(values, nulls)
    looped = [ops.null_to_p(v, n, tail="upper") for v, n in zip(values, nulls, strict=True)]
    np.testing.assert_array_equal(batched, np.stack(looped))
    logp = np.log(rng.uniform(size=(3, 20))).astype(np.float32)
    np.testing.assert_array_equal(
        jax.vmap(ops.fdr_logp)(logp), np.stack([ops.fdr_logp(row) for row in logp])
    )


def test_two_way_counts_kernel_matches_cells_wrapper(rng):
    cells = rng.integers(0, 10, size=(50, 2, 2))
    margins = cells.sum(axis=1)
    with jax.enable_x64(True):
        kernel = ops.two_way_counts(cells[:, 0, 0], cells[:, 0, 1], margins[:, 0], margins[:, 1])
    np.testing.assert_array_equal(np.asarray(kernel), stats.two_way(cells))

"""Log-space helpers (NiMARE 0.21+): ``stats.nlogp_*``, ``two_way_counts``, ``transforms.*_nlogp``.

References are SciPy where the p-value is a normal double and closed forms of the tails
(normal asymptotic series, Cauchy, chi-square with even degrees of freedom) where it
underflows.
"""

import numpy as np
import pytest
import scipy.stats as sps
from scipy import special

from nimare_jax import stats, transforms

Z = np.array([-50.0, -37.0, -8.0, -1.96, -0.5, 0.0, 0.3, 1.0, 3.0, 10.0, 38.0, 50.0])


def _log_normal_sf_asymptotic(z):
    """log P(Z > z) for large z: log(phi(z)/z) + log(1 - 1/z^2 + 3/z^4 - 15/z^6 + 105/z^8)."""
    series = 1 - z**-2 + 3 * z**-4 - 15 * z**-6 + 105 * z**-8 - 945 * z**-10
    return -0.5 * z**2 - 0.5 * np.log(2 * np.pi) - np.log(z) + np.log(series)


def test_z_to_nlogp_matches_scipy_and_tail_series():
    two = transforms.z_to_nlogp(Z)
    one = transforms.z_to_nlogp(Z, tail="one")
    np.testing.assert_allclose(
        two, np.minimum(np.log(2) + sps.norm.logsf(np.abs(Z)), 0), rtol=1e-12
    )
    np.testing.assert_allclose(one, sps.norm.logsf(Z), rtol=1e-12, atol=1e-15)
    # z = +-50: p underflows below 1e-300 yet nlogp is finite and exact.
    assert np.all(np.isfinite(two)) and np.all(np.isfinite(one))
    np.testing.assert_allclose(one[-1], _log_normal_sf_asymptotic(50.0), rtol=1e-13)
    np.testing.assert_allclose(two[0], np.log(2) + _log_normal_sf_asymptotic(50.0), rtol=1e-13)
    assert np.all(two <= 0)
    assert transforms.z_to_nlogp(0.0) == 0.0


def test_nlogp_to_z_inverts_z_to_nlogp():
    z_abs = np.abs(Z)
    back_two = transforms.nlogp_to_z(transforms.z_to_nlogp(Z))
    np.testing.assert_allclose(back_two, z_abs, rtol=1e-12, atol=1e-12)
    positive = Z[Z > 0]
    back_one = transforms.nlogp_to_z(transforms.z_to_nlogp(positive, tail="one"), tail="one")
    np.testing.assert_allclose(back_one, positive, rtol=1e-12)
    # Against SciPy where p is a normal double.
    p = np.array([0.5, 0.05, 1e-10, 1e-300])
    np.testing.assert_allclose(transforms.nlogp_to_z(np.log(p)), sps.norm.isf(p / 2), rtol=1e-12)
    np.testing.assert_allclose(
        transforms.nlogp_to_z(np.log(p), tail="one"), sps.norm.isf(p), rtol=1e-12, atol=1e-15
    )
    # Beyond doubles: nlogp = -1e5 is p = 10**-43429.
    deep = transforms.nlogp_to_z(-1e5, tail="one")
    np.testing.assert_allclose(_log_normal_sf_asymptotic(deep), -1e5, rtol=1e-12)
    assert transforms.nlogp_to_z(0.0) == 0.0
    assert transforms.nlogp_to_z(np.log(0.9), tail="one") == 0.0
    assert transforms.nlogp_to_z(-np.inf) == np.inf
    with pytest.raises(ValueError, match="tail"):
        transforms.nlogp_to_z(-1.0, tail="both")


def test_t_to_nlogp_scipy_and_closed_forms():
    t = np.array([-30.0, -2.0, 0.0, 0.7, 2.0, 15.0])
    for dof in (3, 10, 120):
        np.testing.assert_allclose(
            transforms.t_to_nlogp(t, dof),
            np.minimum(np.log(2) + sps.t.logsf(np.abs(t), dof), 0),
            rtol=1e-10,
        )
        np.testing.assert_allclose(
            transforms.t_to_nlogp(t, dof, tail="one"), sps.t.logsf(t, dof), rtol=1e-10, atol=1e-15
        )
    # dof = 1 (Cauchy): P(|T| > t) = 2 arctan(1 / t) / pi, also where SciPy underflows.
    big = np.array([1e10, 1e100, 1e300])
    np.testing.assert_allclose(
        transforms.t_to_nlogp(big, 1), np.log(2 * np.arctan(1 / big) / np.pi), rtol=1e-10
    )
    # dof = 2: P(T > t) = 1 / (s (s + t)), s = sqrt(2 + t^2); far below the smallest double.
    t2 = np.array([1e3, 1e150])
    s = np.sqrt(2 + t2**2)
    np.testing.assert_allclose(
        transforms.t_to_nlogp(t2, 2, tail="one"), -np.log(s) - np.log(s + t2), rtol=1e-10
    )
    assert np.all(np.isfinite(transforms.t_to_nlogp(big, 1)))


def test_chi2_to_nlogp_scipy_and_even_dof_closed_forms():
    x = np.array([0.0, 0.5, 3.841458820694124, 40.0, 700.0, 2500.0, 1e5])
    # dof 1 is the two-sided normal tail at sqrt(x).
    np.testing.assert_allclose(
        transforms.chi2_to_nlogp(x, 1), transforms.z_to_nlogp(np.sqrt(x)), rtol=1e-14
    )
    np.testing.assert_allclose(
        transforms.chi2_to_nlogp(x[:4], 1), sps.chi2.logsf(x[:4], 1), rtol=1e-10
    )
    np.testing.assert_allclose(
        transforms.chi2_to_nlogp(3.841458820694124, 1), np.log(0.05), rtol=1e-9
    )
    # Even dof: sf = exp(-x/2) * sum_{k < dof/2} (x/2)^k / k!, exact in logs at any depth.
    for dof in (2, 4, 6):
        h = x / 2
        terms = np.stack(
            [k * np.log(np.maximum(h, 1e-300)) - special.gammaln(k + 1) for k in range(dof // 2)]
        )
        terms[0] = 0.0
        expected = -h + special.logsumexp(terms, axis=0)
        got = transforms.chi2_to_nlogp(x, dof)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)
    # Odd dof > 1 in the underflow region: against the normal-tail form for dof 3,
    # sf = 2 sf_N(sqrt(x)) + 2 phi(sqrt(x)) sqrt(x) (log-summed).
    xs = np.array([2000.0, 1e4])
    r = np.sqrt(xs)
    log_phi = -xs / 2 - 0.5 * np.log(2 * np.pi)
    expected = np.logaddexp(np.log(2) + _log_normal_sf_asymptotic(r), np.log(2 * r) + log_phi)
    np.testing.assert_allclose(transforms.chi2_to_nlogp(xs, 3), expected, rtol=1e-12)


def test_two_way_counts_closed_form():
    rng = np.random.default_rng(0)
    n1, n2 = 12, 30
    a = rng.integers(0, n1 + 1, 200)
    b = rng.integers(0, n2 + 1, 200)
    chi = stats.two_way_counts(a, b, n1, n2)
    for i in range(200):
        table = np.array([[a[i], b[i]], [n1 - a[i], n2 - b[i]]], float)
        if (table.sum(1) == 0).any():
            assert chi[i] == 2.0
            continue
        expected = sps.chi2_contingency(table, correction=False)[0]
        np.testing.assert_allclose(chi[i], expected, rtol=1e-12)
    np.testing.assert_array_equal(stats.two_way_counts([0, n1], [0, n2], n1, n2), [2.0, 2.0])


def _fdr_reference(p, method):
    """Plain BH/BY on p-values, float64 (small p where no underflow occurs)."""
    n = p.size
    order = np.argsort(p)
    factor = np.arange(1, n + 1) / n
    if method == "by":
        factor = factor / np.sum(1 / np.arange(1, n + 1))
    adj = np.minimum.accumulate((p[order] / factor)[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adj, 1)
    return out


@pytest.mark.parametrize("method", ["bh", "by"])
def test_nlogp_fdr_matches_step_up_and_survives_underflow(method):
    rng = np.random.default_rng(1)
    p = rng.uniform(1e-6, 1, 300)
    p[:5] = [1e-12, 1e-20, 3e-7, 0.5, 1.0]
    np.testing.assert_allclose(
        np.exp(stats.nlogp_fdr(np.log(p), method=method)), _fdr_reference(p, method), rtol=1e-12
    )
    # Tails below the smallest double: shifting every nlogp by -1e4 shifts BH's result by
    # -1e4 exactly (the adjustment is a difference in logs), and nothing becomes -inf.
    deep = np.log(p) - 1e4
    adj_deep = stats.nlogp_fdr(deep, method=method)
    adj = stats.nlogp_fdr(np.log(p), method=method)
    assert np.all(np.isfinite(adj_deep))
    unclipped = adj < 0
    np.testing.assert_allclose(adj_deep[unclipped], adj[unclipped] - 1e4, rtol=1e-12)


def test_nlogp_fdr_nan_counts_as_test_and_stays_nan():
    nlogp = np.log(np.array([0.01, np.nan, 0.02, 0.04]))
    out = stats.nlogp_fdr(nlogp)
    assert np.isnan(out[1])
    # n = 4 (the NaN counts): ranks 1..3 of the evaluated tests.
    np.testing.assert_allclose(np.exp(out[[0, 2, 3]]), [0.04, 0.04, 0.04 * 4 / 3], rtol=1e-12)


def test_nlogp_bonferroni():
    p = np.array([1e-5, 0.01, 0.3, 1.0])
    np.testing.assert_allclose(
        np.exp(stats.nlogp_bonferroni(np.log(p))), np.minimum(p * 4, 1), rtol=1e-12
    )
    np.testing.assert_allclose(stats.nlogp_bonferroni([-2000.0, -0.1]), [-2000 + np.log(2), 0])


def test_nlogp_rejects_p_values():
    with pytest.raises(ValueError, match="natural logarithms"):
        stats.nlogp_fdr([0.01, 0.5])
    with pytest.raises(ValueError, match="natural logarithms"):
        stats.nlogp_bonferroni([0.01])
    with pytest.raises(ValueError, match="method"):
        stats.nlogp_fdr([-1.0], method="holm")

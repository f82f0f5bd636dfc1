"""MKDADensity, KDA and MKDAChi2 against NiMARE 0.22.1's outputs (tests/data/reference)."""

import itertools
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import ndimage
from scipy import stats as sps

from nimare_jax.correct import FDRCorrector, FWECorrector
from nimare_jax.exceptions import DatasetError
from nimare_jax.meta.cbma import KDA, ALEKernel, KDAKernel, MKDAChi2, MKDADensity, MKDAKernel
from nimare_jax.meta.cbma.mkda import (
    bernoulli_sum_null,
    label_permutation_null,
    random_foci_null,
    sum_null,
)
from nimare_jax.ops import chi2
from nimare_jax.ops.permute import BatchedSummary, run_permutations
from nimare_jax.ops.validate import MonteCarloWarning

REFERENCE = Path(__file__).parent / "data" / "reference"
FWE_KEYS = {
    "voxel": "values_level-voxel_corr-fwe_method-montecarlo",
    "size": "values_desc-size_level-cluster_corr-fwe_method-montecarlo",
    "mass": "values_desc-mass_level-cluster_corr-fwe_method-montecarlo",
}


def assert_maps_match(ours, ref, names):
    """Counts exactly; p/z/logp to float32 rounding of NiMARE's float32 maps (|z| <= 8)."""
    for name in names:
        a = np.asarray(ours[name], np.float64)
        b = np.asarray(ref[name], np.float64)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        ok = ~np.isnan(b)
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.fixture(scope="module")
def groups(laird):
    split = json.loads((REFERENCE / "laird_split.json").read_text())
    return laird.slice(split["group1_first8"]), laird.slice(split["group2_remaining9"])


@pytest.fixture(scope="module")
def mkda_fit(laird):
    return MKDADensity(random_state=3).fit(laird)


@pytest.fixture(scope="module")
def chi2_fit(groups):
    return MKDAChi2(random_state=0).fit(*groups)


# ----------------------------------------------------------------------------- density
def test_mkdadensity_equals_nimare(mkda_fit, reference):
    ref = reference("mkdadensity_maps")
    np.testing.assert_array_equal(mkda_fit.get_map("stat", "array"), ref["stat"])
    assert_maps_match(mkda_fit.maps, ref, ("p", "z", "logp"))
    nulls = reference("mkdadensity_fwe_n100_nulls")
    ours = mkda_fit.null_distributions
    np.testing.assert_array_equal(ours["histogram_bins"], nulls["histogram_bins"])
    for key in ("histogram_means", "histweights_corr-none_method-approximate"):
        np.testing.assert_allclose(ours[key], nulls[key], rtol=1e-6, atol=0, err_msg=key)


def test_kda_equals_nimare(laird, reference):
    result = KDA().fit(laird)
    ref = reference("kda_maps")
    np.testing.assert_array_equal(result.get_map("stat", "array"), ref["stat"])
    assert_maps_match(result.maps, ref, ("p", "z", "logp"))
    assert "Wager2007" in result.citations and "[Wager2007]" in result.description


def test_mkdadensity_fwe_null_matches_nimare(mkda_fit, reference):
    fwe = FWECorrector(method="montecarlo", n_iters=100, progress=False).transform(mkda_fit)
    ref_maps = reference("mkdadensity_fwe_n100_maps")
    assert set(ref_maps) <= set(fwe.maps)
    theirs = reference("mkdadensity_fwe_n100_nulls")
    for key in FWE_KEYS.values():
        ours = fwe.null_distributions[key]
        assert ours.shape == (100,)
        # two independent samples of 100 from the same null (fixed seed)
        assert sps.ks_2samp(ours, theirs[key]).pvalue > 1e-3, key
    # voxel-level p is the fraction of null maxima at or above the (integer) density
    stat = fwe.get_map("stat", "array").astype(np.float64)
    null = fwe.null_distributions[FWE_KEYS["voxel"]]
    expected = np.clip((null[None, :] >= stat[::211, None]).mean(1), 0.01, 0.99)
    logp = fwe.get_map("logp_level-voxel_corr-FWE_method-montecarlo", "array")[::211]
    np.testing.assert_allclose(10**-logp, expected, rtol=1e-9)
    assert "[Wager2007]" in fwe.description


@pytest.mark.slow
def test_density_fwe_reproducible_across_batch_sizes(laird):
    sub = laird.slice(laird.ids[:4])
    fit = KDA(random_state=5).fit(sub)
    with pytest.warns(MonteCarloWarning, match="n_iters=6 "):  # too few to reach 0.05
        runs = [
            fit.estimator.correct_fwe_montecarlo(fit, n_iters=6, batch_size=b, progress=False)[1]
            for b in (1, 4)
        ]
    for key in FWE_KEYS.values():
        np.testing.assert_array_equal(runs[0][key], runs[1][key])


def test_montecarlo_null_method_close_to_exact_null(laird):
    sub = laird.slice(laird.ids[:6])
    exact = MKDADensity().fit(sub).null_distributions
    mc = MKDADensity(null_method="montecarlo", n_iters=12, random_state=0).fit(sub)
    hist = mc.null_distributions["histweights_corr-none_method-montecarlo"]
    n_vox = mc.get_map("stat", "array").size
    assert hist.sum() == 12 * n_vox
    assert mc.null_distributions["histweights_level-voxel_corr-fwe_method-montecarlo"].sum() == 12
    # Relocated foci of one experiment rarely overlap, so their spheres cover more of the
    # mask than the observed, clustered foci: the Monte Carlo mean density is higher than the
    # exact null's (0.574). NiMARE 0.22.1 with the same settings gives 0.8455.
    bins = exact["histogram_bins"]
    assert bins @ exact["histweights_corr-none_method-approximate"] == pytest.approx(
        0.574, abs=1e-3
    )
    assert bins @ hist / hist.sum() == pytest.approx(0.8455, rel=0.02)
    # vfwe_only reuses the fit's histogram of maxima: no new iterations
    with pytest.warns(MonteCarloWarning, match="n_iters=12 "):
        maps, nulls, _, _ = mc.estimator.correct_fwe_montecarlo(mc, vfwe_only=True)
    assert nulls == {} and "z_level-voxel_corr-FWE_method-montecarlo" in maps


def test_bernoulli_null_matches_enumeration():
    w = np.array([0.5, 1.5, 1.0, 2.0])
    p = np.array([0.1, 0.3, 0.2, 0.05])
    bins, hist = bernoulli_sum_null(w, p, n_bins=11)  # step 0.5: weights are whole steps
    exact = np.zeros_like(hist)
    for on in itertools.product((0, 1), repeat=4):
        on = np.array(on)
        exact[int(round((w @ on) / 0.5))] += np.prod(np.where(on, p, 1 - p))
    np.testing.assert_allclose(bins, np.arange(bins.size) * 0.5)
    np.testing.assert_allclose(hist, exact, rtol=1e-12, atol=1e-300)
    # equal weights: the Poisson-binomial on 0..n
    bins, hist = bernoulli_sum_null(np.ones(3), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(hist, [1 / 8, 3 / 8, 3 / 8, 1 / 8])
    # sums of integer-valued variables
    np.testing.assert_allclose(
        sum_null(np.array([[0.5, 0.5], [0.25, 0.75]]), 4), [0.125, 0.5, 0.375, 0]
    )


def test_weighted_density(laird):
    sub = laird.slice(laird.ids[:5])
    plain = MKDADensity().fit(sub)
    # equal sample sizes (20 everywhere): weighting changes nothing, bit for bit
    same = MKDADensity(weighting="sample_size").fit(sub)
    for name in ("stat", "p"):
        np.testing.assert_array_equal(same.maps[name], plain.maps[name])
    w = np.array([1.0, 2.0, 3.0, 1.0, 3.0])
    result = MKDADensity(weighting=w).fit(sub)
    ma = MKDAKernel().transform(sub, return_type="array")
    norm = w * 5 / w.sum()
    np.testing.assert_allclose(result.get_map("stat", "array"), norm @ ma, rtol=1e-6)
    nulls = result.null_distributions
    assert nulls["histweights_corr-none_method-approximate"].sum() == pytest.approx(1.0)
    assert nulls["histogram_bins"][-1] >= norm.sum() - 1e-9
    p = result.get_map("p", "array")
    assert p.min() > 0 and p.max() == 1
    assert "weighted" in result.description
    with pytest.raises(DatasetError, match="no weight"):
        MKDADensity(weighting={sub.ids[0]: 1.0}).fit(sub)


# ----------------------------------------------------------------------------- chi2
CHI2_NAMES = [
    f"{kind}_desc-{name}"
    for kind in ("chi2", "p", "z", "logp")
    for name in ("uniformity", "association", "group1", "group2")
] + [f"prob_desc-{name}" for name in ("A", "AgF", "AgU", "group1", "group2", "AgF_prior")]


def test_mkdachi2_equals_nimare(chi2_fit, reference):
    ref = reference("mkdachi2_maps")
    assert set(chi2_fit.maps) == set(ref)
    assert_maps_match(chi2_fit.maps, ref, CHI2_NAMES)
    np.testing.assert_allclose(
        chi2_fit.get_map("chi2_desc-group1", "array"), ref["chi2_desc-group1"], rtol=1e-6
    )
    assert "[Wager2007; Yarkoni2011]" in chi2_fit.description


def test_mkdachi2_logp_is_the_chi2_survival_function(chi2_fit):
    """p and logp from the closed form chi2(1) = Z^2 equal scipy's chi2.logsf (rtol 1e-12)."""
    for name in ("group1", "association"):
        stat = chi2_fit.get_map(f"chi2_desc-{name}", "array").astype(np.float64)
        expected = sps.chi2.logsf(stat, 1)
        got = chi2_fit.get_map(f"logp_desc-{name}", "array")
        np.testing.assert_allclose(got, -expected / np.log(10.0), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(
            chi2_fit.get_map(f"p_desc-{name}", "array"), np.exp(expected), rtol=1e-12
        )


@pytest.mark.slow
def test_mkdachi2_undefined_posterior(chi2_fit, groups, reference):
    ref = reference("mkdachi2_maps")
    empty = np.isnan(ref["prob_desc-FgA"])
    assert empty.sum() > 0
    # default: where no experiment is active the posterior is the prior
    fga = chi2_fit.get_map("prob_desc-FgA", "array")
    np.testing.assert_allclose(fga[empty], 8 / 17)
    np.testing.assert_allclose(chi2_fit.get_map("prob_desc-FgA_prior", "array")[empty], 0.5)
    assert_maps_match(
        {k: np.where(empty, np.nan, chi2_fit.maps[k]) for k in ref},
        ref,
        ("prob_desc-FgA", "prob_desc-FgA_prior"),
    )
    # NiMARE's NaN on request
    nan = MKDAChi2(undefined_posterior="nan").fit(*groups)
    assert_maps_match(nan.maps, ref, ("prob_desc-FgA", "prob_desc-FgA_prior"))
    assert "prob_desc-FgA_prior" not in MKDAChi2(prior=None).fit(*groups).maps


def test_mkdachi2_fdr_equals_nimare(chi2_fit, reference):
    out = FDRCorrector(method="indep").transform(chi2_fit)
    ref = reference("mkdachi2_fdr_maps")
    assert set(ref) <= set(out.maps)
    assert_maps_match(out.maps, ref, sorted(ref))
    assert "Benjamini1995" in out.citations and "[Benjamini1995]" in out.description


@pytest.fixture(scope="module")
def chi2_fwe(chi2_fit):
    return FWECorrector(method="montecarlo", n_iters=24, progress=False).transform(chi2_fit)


def _labelled_by_ndimage(chi, mask_index, shape, thresh):
    """Largest cluster size and mass (float64 sum of float32 ``chi - thresh``) by SciPy."""
    chi = np.asarray(chi, np.float32)
    thresh = np.float32(thresh)
    vol = np.zeros(int(np.prod(shape)), np.float32)
    vol[mask_index] = chi
    vol = vol.reshape(shape)
    labels, k = ndimage.label(vol > thresh)
    if not k:
        return 0, 0.0
    weights = (vol - thresh).astype(np.float64)
    masses = ndimage.sum(weights, labels, range(1, k + 1))
    return np.bincount(labels.ravel())[1:].max(), masses.max()


@pytest.mark.parametrize("label_backend", ["scipy", "jax"])
def test_mkdachi2_label_permutation_summary_is_exact(chi2_fit, label_backend):
    # recompute three iterations with NumPy/SciPy from the same permutations; "scipy"
    # labels on the host between batches, "jax" on the device (float32 mass sums)
    est = chi2_fit.estimator
    pooled = np.asarray(est.pooled_ma_matrix(), np.float64)
    a = est.inputs1_
    n1, n = 8, pooled.shape[0]
    thresh = sps.chi2.isf(0.001, 1)
    null = label_permutation_null(
        jax.numpy.asarray(pooled, "float32"), n1, a.mask_index, a.shape, thresh, 6, label_backend
    )
    assert isinstance(null.summary, BatchedSummary) == (label_backend == "scipy")
    got = run_permutations(
        null.summary, jax.random.key(11), 3, batch_size=2, progress=False, operands=null.operands
    ).samples
    mass_rtol = 1e-6 if label_backend == "scipy" else 1e-4
    for i in range(3):
        key = jax.random.fold_in(jax.random.key(11), i)
        members = np.asarray(jax.random.permutation(key, n))[:n1]
        c1 = pooled[members].sum(0)
        c2 = pooled.sum(0) - c1
        e1, e2 = c1.mean(), c2.mean()
        tot = c1 + c2
        den = tot * (n - tot) * n1 * (n - n1)
        with np.errstate(divide="ignore", invalid="ignore"):
            assoc = np.where(den == 0, 2.0, n * (c1 * (n - n1) - c2 * n1) ** 2 / den)
        maps = {
            "group1": (c1 - e1) ** 2 * n1 / (e1 * (n1 - e1)),
            "group2": (c2 - e2) ** 2 * (n - n1) / (e2 * (n - n1 - e2)),
            "association": assoc,
        }
        for name, chi in maps.items():
            vol = np.zeros(a.shape)
            vol[np.unravel_index(a.mask_index, a.shape)] = chi
            labels, k = ndimage.label(vol > thresh)
            sizes = np.bincount(labels.ravel())[1:]
            masses = ndimage.sum(vol - thresh, labels, np.arange(1, k + 1)) if k else [0.0]
            assert float(got[name]["voxel"][i]) == pytest.approx(chi.max(), rel=1e-5)
            assert int(got[name]["size"][i]) == (sizes.max() if k else 0)
            assert float(got[name]["mass"][i]) == pytest.approx(np.max(masses), rel=1e-4)
            # the same float32 map labelled by SciPy: exact sizes, float64-summed masses
            size, mass = _labelled_by_ndimage(chi, a.mask_index, a.shape, thresh)
            assert int(got[name]["size"][i]) == size
            assert float(got[name]["mass"][i]) == pytest.approx(mass, rel=mass_rtol, abs=0)


@pytest.mark.parametrize(
    "null_method", ["label-permutation", pytest.param("random-foci", marks=pytest.mark.slow)]
)
def test_mkdachi2_host_labelling_equals_the_in_program_callback(chi2_fit, null_method):
    """The host stage gives, iteration by iteration, what the former summary gave (the
    maps labelled by a host callback inside the device program) and what SciPy gives."""
    est = chi2_fit.estimator
    a, b = est.inputs1_, est.inputs2_
    thresh = np.float32(sps.chi2.isf(0.001, 1))
    if null_method == "label-permutation":
        null = label_permutation_null(est.pooled_ma_matrix(), 8, a.mask_index, a.shape, thresh)
        vectorize = "vmap"
    else:
        null = random_foci_null(a, b, thresh)
        vectorize = "map"
    assert isinstance(null.summary, BatchedSummary) and null.summary.on_host
    n_iters = 5  # batches of 2: the last one is padded
    got = run_permutations(
        null.summary,
        jax.random.key(4),
        n_iters,
        batch_size=2,
        progress=False,
        vectorize=vectorize,
        operands=null.operands,
    ).samples
    mask_index = np.asarray(a.mask_index)

    @jax.jit
    def old(key):  # the former summary: the host callback inside the device program
        maps = {name: chi for name, (_, chi) in null.summary.each(key, *null.operands).items()}
        return maps, chi2._maxima(maps, mask_index, a.shape, thresh, 6, "scipy", False)

    for i in range(n_iters):
        maps, before = old(jax.random.fold_in(jax.random.key(4), i))
        for name, chi in maps.items():
            size, mass = _labelled_by_ndimage(chi, mask_index, a.shape, thresh)
            assert got[name]["voxel"][i] == before[name]["voxel"] == np.asarray(chi).max()
            assert got[name]["size"][i] == before[name]["size"] == size
            np.testing.assert_allclose(got[name]["mass"][i], before[name]["mass"], rtol=1e-6)
            np.testing.assert_allclose(got[name]["mass"][i], mass, rtol=1e-6)


def test_mkdachi2_fwe_maps(chi2_fwe, chi2_fit):
    names = [
        f"{kind}_desc-{name}{level}_corr-FWE_method-montecarlo"
        for kind in ("p", "z", "logp")
        for name in ("uniformity", "group1", "group2", "association")
        for level in ("_level-voxel", "Size_level-cluster", "Mass_level-cluster")
    ]
    assert set(names) <= set(chi2_fwe.maps)
    nulls = chi2_fwe.null_distributions
    for stem in ("pAgF", "pFgA", "group1", "group2"):
        assert nulls[f"values_desc-{stem}_level-voxel_corr-fwe_method-montecarlo"].shape == (24,)
        assert f"values_desc-{stem}size_level-cluster_corr-fwe_method-montecarlo" in nulls
    chi = chi2_fit.get_map("chi2_desc-association", "array").astype(np.float64)
    null = nulls["values_desc-pFgA_level-voxel_corr-fwe_method-montecarlo"]
    p = chi2_fwe.get_map("p_desc-association_level-voxel_corr-FWE_method-montecarlo", "array")
    expected = np.clip((null[None, :] >= chi[::97, None] * (1 - 1e-6)).mean(1), 1 / 24, 23 / 24)
    np.testing.assert_allclose(p[::97], expected, rtol=1e-9)
    z = chi2_fwe.get_map("z_desc-uniformity_level-voxel_corr-FWE_method-montecarlo", "array")
    sign = np.sign(chi2_fit.get_map("z_desc-uniformity", "array"))
    assert np.all(np.sign(z) == sign)


def test_mkdachi2_random_foci_null_runs(groups):
    fit = MKDAChi2(fwe_null_method="random-foci", random_state=1).fit(*groups)
    with pytest.warns(MonteCarloWarning, match="n_iters=3 "):
        maps, nulls, text, _ = fit.estimator.correct_fwe_montecarlo(
            fit, n_iters=3, progress=False, vfwe_only=True
        )
    assert nulls["values_desc-pAgF_level-voxel_corr-fwe_method-montecarlo"].shape == (3,)
    assert (
        "relocated" in text and "p_desc-association_level-voxel_corr-FWE_method-montecarlo" in maps
    )


# ----------------------------------------------------------------------------- errors
def test_group_with_one_experiment_is_rejected(groups):
    g1, g2 = groups
    with pytest.raises(DatasetError, match="at least two experiments.*dataset2 has 1"):
        MKDAChi2().fit(g1, g2.slice(g2.ids[:1]))


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: MKDADensity(null_method="exact"), ValueError, "null_method"),
        (lambda: MKDADensity(kernel_transformer=ALEKernel), TypeError, "MKDAKernel"),
        (lambda: MKDADensity(kernel_transformer=KDAKernel), TypeError, "MKDAKernel"),
        (lambda: KDA(kernel_transformer=ALEKernel()), TypeError, "KDAKernel"),
        (lambda: MKDADensity(n_iters=0), ValueError, "n_iters"),
        (lambda: MKDADensity(weighting="height"), ValueError, "weighting"),
        (lambda: MKDAChi2(fwe_null_method="bootstrap"), ValueError, "fwe_null_method"),
        (lambda: MKDAChi2(undefined_posterior="zero"), ValueError, "undefined_posterior"),
        (lambda: MKDAChi2(prior=1.5), ValueError, "prior"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()

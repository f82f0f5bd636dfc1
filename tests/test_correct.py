"""Multiple-comparison correction: closed forms, and the Monte Carlo null vs NiMARE's."""

import inspect
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from nimare_jax.correct import FDRCorrector, FWECorrector
from nimare_jax.meta.cbma import ALE, KDA, SCALE, ALESubtraction, MKDAChi2, MKDADensity
from nimare_jax.meta.fwe import MonteCarloFWE, fwe_map, fwe_null, map_name
from nimare_jax.meta.ibma import PermutedOLS
from nimare_jax.ops import nulls
from nimare_jax.ops import permute as pm
from nimare_jax.ops.validate import MonteCarloWarning

N_ITERS = 500
KEYS = {
    "voxel": "values_level-voxel_corr-fwe_method-montecarlo",
    "size": "values_desc-size_level-cluster_corr-fwe_method-montecarlo",
    "mass": "values_desc-mass_level-cluster_corr-fwe_method-montecarlo",
}


@pytest.fixture(scope="module")
def ale_fit(laird):
    return ALE(random_state=7).fit(laird)


@pytest.fixture(scope="module")
def fwe(ale_fit):
    corr = FWECorrector(method="montecarlo", n_iters=N_ITERS, progress=False)
    return corr.transform(ale_fit)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["voxel", "size", "mass"])
def test_montecarlo_null_matches_nimare_distribution(fwe, reference, which):
    # Two independent samples of 500 from the same null: a two-sample Kolmogorov-Smirnov
    # test at alpha = 0.001 fails by chance once in a thousand seeds (this seed is fixed).
    ours = fwe.null_distributions[KEYS[which]]
    theirs = reference("ale_laird_fwe_n500_nulls")[KEYS[which]]
    assert ours.shape == (N_ITERS,)
    assert sps.ks_2samp(ours, theirs).pvalue > 1e-3


def test_voxel_fwe_p_is_fraction_of_null_maxima_at_or_above(fwe):
    stat = fwe.get_map("stat", "array").astype(np.float64)
    null = fwe.null_distributions[KEYS["voxel"]]
    logp = fwe.get_map("logp_level-voxel_corr-FWE_method-montecarlo", "array")
    expected = np.clip((null[None, :] >= stat[::97, None]).mean(1), 1 / N_ITERS, 1 - 1 / N_ITERS)
    np.testing.assert_allclose(10 ** -logp[::97], expected, rtol=1e-5)


def test_cluster_fwe_p_is_constant_within_clusters_and_matches_null(fwe, ale_fit, laird):
    from scipy import ndimage

    weights = ale_fit.null_distributions["histweights_corr-none_method-approximate"]
    bins = ale_fit.null_distributions["histogram_bins"]
    thr = nulls.histogram_to_threshold(weights, bins, 0.001)
    mask = np.asanyarray(laird.masker.mask_img_.dataobj) > 0
    vol = np.zeros(mask.shape)
    vol[mask] = fwe.get_map("stat", "array")
    labels, n = ndimage.label(vol > thr, ndimage.generate_binary_structure(3, 1))
    assert n > 0
    logp = np.zeros(mask.shape)
    logp[mask] = fwe.get_map("logp_desc-size_level-cluster_corr-FWE_method-montecarlo", "array")
    null = fwe.null_distributions[KEYS["size"]]
    for lab in range(1, n + 1):
        inside = labels == lab
        assert np.ptp(logp[inside]) == 0
        expected = np.clip((null >= inside.sum()).mean(), 1 / N_ITERS, 1 - 1 / N_ITERS)
        assert 10 ** -logp[inside][0] == pytest.approx(expected, rel=1e-5)
    outside = mask & (labels == 0)
    np.testing.assert_allclose(10 ** -logp[outside], 1 - 1 / N_ITERS, rtol=1e-6)


def test_one_iteration_gives_p_one_everywhere_with_a_warning(laird):
    # One null value: NiMARE's bound max(1/n, min(p, 1 - 1/n)) makes every corrected p 1
    # (logp 0, z 0). The inverted clip made it 0 (z = 38.5) at every voxel, even where
    # ALE = 0.
    fit = ALE(random_state=0).fit(laird.slice(laird.ids[:3]))
    with pytest.warns(MonteCarloWarning, match=r"n_iters=1 .*reach 0.05"):
        out = FWECorrector(method="montecarlo", n_iters=1, progress=False).transform(fit)
    levels = ["level-voxel", "desc-size_level-cluster", "desc-mass_level-cluster"]
    for level in levels:
        name = f"{level}_corr-FWE_method-montecarlo"
        np.testing.assert_array_equal(out.get_map(f"logp_{name}", "array"), 0.0)
        np.testing.assert_array_equal(out.get_map(f"z_{name}", "array"), 0.0)


@pytest.mark.slow
def test_montecarlo_fwe_reproducible_with_same_seed_and_other_batch_size(laird):
    sub = laird.slice(laird.ids[:5])
    runs = [
        FWECorrector(method="montecarlo", n_iters=20, batch_size=b, progress=False)
        .transform(ALE(random_state=3).fit(sub))
        .null_distributions
        for b in (1, 5)
    ]
    for key in KEYS.values():
        np.testing.assert_array_equal(runs[0][key], runs[1][key])
    other = FWECorrector(method="montecarlo", n_iters=20, progress=False).transform(
        ALE(random_state=4).fit(sub)
    )
    assert not np.array_equal(other.null_distributions[KEYS["voxel"]], runs[0][KEYS["voxel"]])


def test_bonferroni_closed_form(ale_fit):
    out = FWECorrector(method="bonferroni").transform(ale_fit)
    p = ale_fit.get_map("p", "array").astype(np.float64)
    np.testing.assert_allclose(
        out.get_map("p_corr-FWE_method-bonferroni", "array"), np.minimum(p * p.size, 1), rtol=1e-12
    )


@pytest.mark.parametrize("method", ["indep", "negcorr"])
def test_fdr_matches_scipy(ale_fit, method):
    out = FDRCorrector(method=method).transform(ale_fit)
    p = ale_fit.get_map("p", "array").astype(np.float64)
    ref = sps.false_discovery_control(p, method="bh" if method == "indep" else "by")
    np.testing.assert_allclose(out.get_map(f"p_corr-FDR_method-{method}", "array"), ref, rtol=1e-9)


@pytest.mark.parametrize(
    ("corrector", "suffix"),
    [
        (FWECorrector(method="bonferroni"), "corr-FWE_method-bonferroni"),
        (FDRCorrector(method="indep"), "corr-FDR_method-indep"),
    ],
)
def test_corrected_z_is_two_tailed_with_the_sign_of_z(ale_fit, corrector, suffix):
    # NiMARE 0.22.1 (Corrector._generate_secondary_maps): the corrected z is the two-tailed
    # z of the corrected p, signed like the uncorrected z; no z map without a z map.
    out = corrector.transform(ale_fit)
    p = out.get_map(f"p_{suffix}", "array").astype(np.float64)
    sign = np.sign(ale_fit.get_map("z", "array").astype(np.float64))
    expected = sps.norm.isf(p / 2) * sign
    np.testing.assert_allclose(out.get_map(f"z_{suffix}", "array"), expected, rtol=1e-9, atol=1e-9)
    without_z = ale_fit.copy()
    del without_z.maps["z"]
    assert f"z_{suffix}" not in corrector.transform(without_z).maps


def test_montecarlo_null_method_agrees_with_approximate(laird):
    # The analytic null treats voxels as independent draws from the observed MA histograms;
    # relocated foci overlap less and reach the mask edge more often, so the two thresholds
    # differ by several percent (measured 8% here), never by a factor.
    sub = laird.slice(laird.ids[:6])
    approx = ALE().fit(sub).null_distributions
    mc = ALE(null_method="montecarlo", n_iters=40, random_state=0).fit(sub).null_distributions
    bins = approx["histogram_bins"]
    t_approx = nulls.histogram_to_threshold(
        approx["histweights_corr-none_method-approximate"], bins, 0.001
    )
    t_mc = nulls.histogram_to_threshold(mc["histweights_corr-none_method-montecarlo"], bins, 0.001)
    assert t_mc == pytest.approx(t_approx, rel=0.15)
    n_vox = int((np.asanyarray(sub.masker.mask_img_.dataobj) > 0).sum())
    assert mc["histweights_corr-none_method-montecarlo"].sum() == 40 * n_vox
    assert mc["histweights_level-voxel_corr-fwe_method-montecarlo"].sum() == 40


@pytest.mark.parametrize(
    "kwargs,match",
    [({"method": "holm"}, "method"), ({"voxel_thresh": 0}, "voxel_thresh")],
)
def test_fwe_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FWECorrector(**kwargs)


@pytest.mark.slow
def test_ale_fwe_null_identical_on_one_and_two_devices(tmp_path):
    # A fresh interpreter exposes two CPU devices; the same seed must give the same null.
    import json
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import json, warnings
        from nimare_jax.ops.permute import configure_cpu_devices
        configure_cpu_devices(2)
        warnings.simplefilter("ignore")
        from nimare_jax.correct import FWECorrector
        from nimare_jax.dataset import Dataset
        from nimare_jax.meta.cbma import ALE
        from nimare_jax.spatial import get_resource_path
        d = Dataset(get_resource_path() / "data" / "laird_n20_dataset.json")
        d = d.slice(d.ids[:4])
        res = ALE(random_state=5).fit(d)
        out = {}
        for cores in (1, 2):
            c = FWECorrector(method="montecarlo", n_iters=10, n_cores=cores, batch_size=3,
                             progress=False).transform(res)
            out[cores] = {k: v.tolist() for k, v in c.null_distributions.items()
                          if k.startswith("values_")}
        print(json.dumps(out))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["1"] == out["2"]
    assert len(out["1"]["values_level-voxel_corr-fwe_method-montecarlo"]) == 10


#: Keyword-only options an estimator adds to the protocol (NiMARE's ALESubtraction target).
_EXTRA_OPTIONS = {ALESubtraction: ("target",)}


@pytest.mark.parametrize(
    "estimator", [ALE, MKDADensity, KDA, MKDAChi2, ALESubtraction, SCALE, PermutedOLS]
)
def test_every_correct_fwe_montecarlo_has_the_protocol_signature(estimator):
    protocol = inspect.signature(MonteCarloFWE.correct_fwe_montecarlo).parameters
    params = inspect.signature(estimator.correct_fwe_montecarlo).parameters
    extra = _EXTRA_OPTIONS.get(estimator, ())
    shared = [p for name, p in params.items() if name not in extra]
    assert shared == list(protocol.values())  # names, order, kinds, defaults, annotations
    assert all(params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in extra)
    # NiMARE 0.22.1's FWECorrector / CBMAEstimator defaults
    assert protocol["voxel_thresh"].default == 0.001
    assert protocol["n_cores"].default == 1
    assert protocol["n_iters"].default is None  # each estimator's own, as NiMARE


def test_map_names_are_nimare_names():
    assert (
        fwe_map("z", "cluster", "size") == "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
    )
    assert fwe_map("logp") == "logp_level-voxel_corr-FWE_method-montecarlo"
    assert fwe_null() == "values_level-voxel_corr-fwe_method-montecarlo"
    assert (
        fwe_null("values", "cluster", "pFgAmass")
        == "values_desc-pFgAmass_level-cluster_corr-fwe_method-montecarlo"
    )
    assert (
        fwe_null("summary_stat_thresh")
        == "summary_stat_thresh_level-voxel_corr-fwe_method-montecarlo"
    )
    assert map_name("p", corr="FWE", method="bonferroni") == "p_corr-FWE_method-bonferroni"
    assert map_name("histweights", corr="none", method="approximate") == (
        "histweights_corr-none_method-approximate"
    )


@pytest.fixture(scope="module")
def small_ale(laird):
    return ALE(random_state=5).fit(laird.slice(laird.ids[:4]))


def test_n_cores_all_or_too_many_warns_and_gives_the_same_null(small_ale, monkeypatch):
    # n_cores <= 0 means all cores (NiMARE); more cores than JAX has devices (JAX already
    # running) is reported, never silently ignored, and the draws do not change.
    monkeypatch.setattr(pm, "_WARNED_SHORTFALL", set())
    opts = {"method": "montecarlo", "n_iters": 20, "vfwe_only": True, "progress": False}
    one = FWECorrector(n_cores=1, **opts).transform(small_ale)
    many = pm.jax.device_count() + 3
    with pytest.warns(RuntimeWarning, match=f"n_cores={many} asks for {many} devices"):
        more = FWECorrector(n_cores=many, **opts).transform(small_ale)
    with warnings.catch_warnings():
        if pm._n_cpu_cores() <= pm.jax.device_count():
            warnings.simplefilter("error")  # all cores are devices already: nothing to say
        else:
            warnings.filterwarnings("ignore", "n_cores=0", RuntimeWarning)
        every = FWECorrector(n_cores=0, **opts).transform(small_ale)
    for res in (more, every):
        np.testing.assert_array_equal(
            res.null_distributions[fwe_null()], one.null_distributions[fwe_null()]
        )


def test_fwe_protocol_errors(small_ale):
    with pytest.raises(TypeError, match="n_cores must be an integer"):
        FWECorrector(method="montecarlo", n_iters=10, n_cores=1.5).transform(small_ale)
    with pytest.raises(
        TypeError,
        match=r"'target', which ALE\.correct_fwe_montecarlo does not take\. Accepted keyword "
        r"arguments: voxel_thresh, n_iters, n_cores",
    ):
        FWECorrector(method="montecarlo", n_iters=10, target="all").transform(small_ale)
    with pytest.raises(ValueError, match="connectivity must be"):
        FWECorrector(method="montecarlo", n_iters=10, connectivity=4).transform(small_ale)
    with pytest.raises(ValueError, match="batch_size must be"):
        FWECorrector(method="montecarlo", n_iters=10, batch_size=0).transform(small_ale)

"""Image-based meta-analysis: esma functions, IBMA estimators, NiMARE parity, errors.

Reference data (tests/data/ibma, built by make_ibma_reference.py): the 20-study simulated
set of NiMARE's reference outputs cropped to a 20 x 20 x 10 box (3,559 voxels), NiMARE 0.22.1's
whole-brain reference maps restricted to that box, and NiMARE 0.22.1 run on the crop for the
estimators without shared references. NiMARE's maps are stored as float32, so agreement is
limited to float32 rounding (~6e-8 relative); the issue asks for 1e-4 and we assert 1e-5.
"""

import json
import shutil
import sys
from pathlib import Path

import jax
import nibabel as nib
import numpy as np
import pytest
import scipy.stats as ss
from scipy.special import gammaln

from nimare_jax.correct import FWECorrector
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError, ImageError
from nimare_jax.io.images import get_image_paths, load_images
from nimare_jax.meta import esma, ibma
from nimare_jax.workflows.conperm import conperm_workflow

HERE = Path(__file__).parent / "data" / "ibma"
sys.path.insert(0, str(HERE))
from make_ibma_reference import make_missing  # noqa: E402

TOL = 1e-5  # absolute, on maps of order 1-20 (z, logp) and below (p, est, se, tau2)


@pytest.fixture(scope="module")
def dset():
    return Dataset(HERE / "inputs" / "ibma_sim_dataset.json", mask=HERE / "mask.nii.gz")


@pytest.fixture(scope="module")
def closed_ref():
    with np.load(HERE / "reference_closed_form.npz") as f:
        return {k: f[k].astype(float) for k in f.files}


@pytest.fixture(scope="module")
def nimare_ref():
    with np.load(HERE / "reference_nimare.npz") as f:
        return {k: f[k].astype(float) for k in f.files}


@pytest.fixture(scope="module")
def missing_dset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("missing")
    make_missing(HERE / "inputs", folder)
    return Dataset(folder / "ibma_sim_dataset.json", mask=HERE / "mask.nii.gz")


def _assert_maps(result, ref, prefix, tol=TOL):
    keys = [k.split("__", 1)[1] for k in ref if k.startswith(prefix + "__")]
    assert keys, prefix
    for k in keys:
        got, want = np.asarray(result.maps[k]), ref[f"{prefix}__{k}"]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{prefix} {k}")
        np.testing.assert_allclose(got, want, rtol=0, atol=tol, equal_nan=True, err_msg=k)


# ------------------------------------------------------------------ NiMARE parity
@pytest.mark.parametrize(
    "name, make",
    [
        ("fishers", ibma.Fishers),
        ("stouffers", lambda: ibma.Stouffers(use_sample_size=False)),
        ("weightedleastsquares", ibma.WeightedLeastSquares),
        ("dersimonianlaird", ibma.DerSimonianLaird),
        ("hedges", ibma.Hedges),
        ("permutedols", ibma.PermutedOLS),
    ],
)
def test_closed_form_match_nimare_reference(dset, closed_ref, name, make):
    result = make().fit(dset)
    _assert_maps(result, closed_ref, name)
    assert result.estimator is not None and result.description


@pytest.mark.parametrize(
    "name, make",
    [
        ("vbl_ml", lambda: ibma.VarianceBasedLikelihood(method="ml")),
        ("vbl_reml", lambda: ibma.VarianceBasedLikelihood(method="reml")),
        ("ssbl_ml", lambda: ibma.SampleSizeBasedLikelihood(method="ml")),
        ("ssbl_reml", lambda: ibma.SampleSizeBasedLikelihood(method="reml")),
        ("stouffers_n", lambda: ibma.Stouffers(use_sample_size=True)),
        ("fishers_n", lambda: ibma.Fishers(use_sample_size=True)),
        ("fishers_one", lambda: ibma.Fishers(two_sided=False)),
        ("wls_tau2", lambda: ibma.WeightedLeastSquares(tau2=0.01)),
        ("permutedols_n", lambda: ibma.PermutedOLS(use_sample_size=True)),
        ("permutedols_n_one", lambda: ibma.PermutedOLS(use_sample_size=True, two_sided=False)),
    ],
)
def test_other_estimators_match_nimare(dset, nimare_ref, name, make):
    # PyMARE's bounded search stops at xtol = 1e-6 of its scan cell; we refine to the
    # optimum, so tau2 and sigma2 agree to ~2e-6 (sigma2 ~ 1) and z to ~3e-7.
    tol = 1e-5 if "ssbl" not in name else 5e-5
    _assert_maps(make().fit(dset), nimare_ref, name, tol)


@pytest.mark.parametrize(
    "name, make",
    [
        ("missing_stouffers", ibma.Stouffers),
        ("missing_dersimonianlaird", ibma.DerSimonianLaird),
        ("missing_permutedols", ibma.PermutedOLS),
        ("missing_permutedols_n", lambda: ibma.PermutedOLS(use_sample_size=True)),
    ],
)
def test_missing_voxels_match_nimare_liberal_mask(missing_dset, nimare_ref, name, make):
    _assert_maps(make().fit(missing_dset), nimare_ref, name)


def test_aggressive_mask_matches_nimare_and_warns(missing_dset, nimare_ref):
    with pytest.warns(UserWarning, match="aggressive_mask: 2615 of 3559"):
        result = ibma.Hedges(aggressive_mask=True).fit(missing_dset)
    _assert_maps(result, nimare_ref, "missing_aggr_hedges")


def test_missing_values_are_not_zero_filled(missing_dset, dset):
    # study-01 is zero in x < 10: there each voxel must equal the fit without study-01.
    full = ibma.DerSimonianLaird().fit(missing_dset).maps["est"]
    without = ibma.DerSimonianLaird().fit(dset.slice(dset.ids[1:])).maps["est"]
    mask = np.asarray(nib.load(HERE / "mask.nii.gz").dataobj) > 0
    region = np.zeros(mask.shape, bool)
    region[:10] = True
    region[:, :, :3] = False  # study-02 missing there too
    region[5:15, 5:15] = False  # and study-03
    sel = region[mask]
    np.testing.assert_allclose(full[sel], without[sel], rtol=1e-10)


# ------------------------------------------------------------------ PermutedOLS FWE
def test_permutedols_fwe_null_matches_nimare_statistically(dset, nimare_ref):
    result = ibma.PermutedOLS(random_state=1).fit(dset)
    corrected = FWECorrector(method="montecarlo", n_iters=1000).transform(result)
    null = corrected.null_distributions["values_level-voxel_corr-fwe_method-montecarlo"]
    ref_null = nimare_ref["permutedols_fwe__null"]
    assert null.shape == (1000,)
    # two independent samples of the same max-|z| distribution
    assert ss.ks_2samp(null, ref_null).pvalue > 1e-3
    p = corrected.maps["p_level-voxel_corr-FWE_method-montecarlo"]
    assert p.min() >= 1 / 1001 and p.max() <= 1
    n_sig, n_sig_ref = (p < 0.05).sum(), (nimare_ref["permutedols_fwe__p"] < 0.05).sum()
    assert abs(int(n_sig) - int(n_sig_ref)) <= 0.1 * n_sig_ref + 5
    # independent check of the corrected p from the null
    z = np.abs(corrected.maps["z"])
    i = int(np.argmax(z))
    assert p[i] == pytest.approx(((null >= z[i]).sum() + 1) / 1001)


def test_weighted_permutedols_fwe_null_matches_nimare_statistically(dset, nimare_ref):
    result = ibma.PermutedOLS(use_sample_size=True, random_state=2).fit(dset)
    est = result.estimator
    maps, nulls, text, cites = est.correct_fwe_montecarlo(result, n_iters=1000)
    null = nulls["values_level-voxel_corr-fwe_method-montecarlo"]
    assert ss.ks_2samp(null, nimare_ref["permutedols_n_fwe__null"]).pvalue > 1e-3
    # the null differs from the unweighted one on these unequal sample sizes
    unweighted = ibma.PermutedOLS(random_state=2).fit(dset)
    null_u = unweighted.estimator.correct_fwe_montecarlo(unweighted, n_iters=1000)[1]
    assert not np.allclose(null, null_u["values_level-voxel_corr-fwe_method-montecarlo"])
    assert "Hedges2010" in result.citations and "Winkler2014" in cites


def test_permutedols_null_independent_of_batch_size(dset):
    est = ibma.PermutedOLS(random_state=3)
    result = est.fit(dset)
    a = est.correct_fwe_montecarlo(result, n_iters=50, batch_size=8)[1]
    b = est.correct_fwe_montecarlo(result, n_iters=50, batch_size=64)[1]
    key = "values_level-voxel_corr-fwe_method-montecarlo"
    np.testing.assert_allclose(a[key], b[key], rtol=1e-9)


def test_permutedols_tolerance_stops_early_on_the_same_draws(dset):
    # The FWE protocol's early stopping (Maritz-Jarrett SE of the 95th percentile, checked
    # from 1000 iterations on) ends the run early; the iterations run are those of a run of
    # that length.
    est = ibma.PermutedOLS(random_state=3)
    result = est.fit(dset)
    key = "values_level-voxel_corr-fwe_method-montecarlo"
    null = est.correct_fwe_montecarlo(result, n_iters=5000, tolerance=0.5, progress=False)[1]
    assert 1000 <= null[key].size < 5000
    full = est.correct_fwe_montecarlo(result, n_iters=null[key].size, progress=False)[1]
    np.testing.assert_array_equal(null[key], full[key])
    with pytest.raises(ValueError, match="only voxel-level"):
        est.correct_fwe_montecarlo(result, n_iters=50, vfwe_only=False)


# ------------------------------------------------------------------ esma functions
@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    y = rng.normal(0.3, 1.0, (12, 50))
    v = rng.uniform(0.2, 2.0, (12, 50))
    return y, v


def test_fisher_equals_scipy_combine_pvalues(small):
    z = small[0]
    with jax.enable_x64(True):
        out = esma.fisher(z, two_sided=False)
    want = [ss.combine_pvalues(ss.norm.sf(z[:, j]), method="fisher")[1] for j in range(50)]
    np.testing.assert_allclose(np.asarray(out["p"]), want, rtol=1e-10)


def test_stouffer_weighted_closed_form(small):
    z, w = small[0], np.arange(1, 13.0)
    with jax.enable_x64(True):
        out = esma.stouffer(z, weights=w, two_sided=True)
    cz = (w[:, None] * z).sum(0) / np.sqrt((w**2).sum())
    np.testing.assert_allclose(np.asarray(out["z"]), cz, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(out["p"]), 2 * ss.norm.sf(np.abs(cz)), rtol=1e-9)


def test_dersimonian_laird_against_textbook_formula(small):
    y, v = small
    w = 1 / v
    mu = (w * y).sum(0) / w.sum(0)
    q = (w * (y - mu) ** 2).sum(0)
    tau2 = np.maximum(0, (q - 11) / (w.sum(0) - (w**2).sum(0) / w.sum(0)))
    ws = 1 / (v + tau2)
    est = (ws * y).sum(0) / ws.sum(0)
    se_kh = np.sqrt((ws * (y - est) ** 2).sum(0) / 11 / ws.sum(0))
    with jax.enable_x64(True):
        out = esma.dersimonian_laird(y, v)
    np.testing.assert_allclose(np.asarray(out["tau2"]), tau2, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.asarray(out["est"]), est, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(out["se"]), se_kh, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(out["p"]), 2 * ss.t.sf(np.abs(est / se_kh), 11))


@pytest.mark.slow
def test_likelihood_tau2_is_the_maximum(small):
    y, v = small
    with jax.enable_x64(True):
        out = esma.variance_based_likelihood(y, v, method="reml")
    tau2 = np.asarray(out["tau2"])

    def reml(t, j):
        w = 1 / (v[:, j] + t)
        mu = (w * y[:, j]).sum() / w.sum()
        return 0.5 * (
            np.log(v[:, j] + t).sum() + (w * (y[:, j] - mu) ** 2).sum() + np.log(w.sum())
        )

    for j in range(10):
        grid = np.linspace(0, 5, 20001)
        best = grid[np.argmin([reml(t, j) for t in grid])]
        assert reml(tau2[j], j) <= reml(best, j) + 1e-12


def _cr2_brute_force(y, q):
    """CR2 t and Satterthwaite dof of an intercept-only WLS fit, with explicit matrices."""
    k = y.size
    x = np.ones((k, 1))
    m = np.linalg.inv(x.T @ (q[:, None] * x))  # (X'WX)^-1
    xt = np.sqrt(q)[:, None] * x  # whitened design
    hat = xt @ m @ xt.T
    mu = (m @ x.T @ (q * y)).item()
    u = np.sqrt(q) * (y - mu)
    adjust = 1 / np.sqrt(1 - np.diag(hat))  # singleton clusters: (I - H_jj)^-1/2
    meat = sum((xt[j] * adjust[j] * u[j]) ** 2 for j in range(k))
    t = mu / np.sqrt((m @ meat @ m).item())
    g = np.zeros((k, k))
    for j in range(k):
        b = np.zeros(k)
        b[j] = adjust[j] * (xt[j] @ m).item()
        g[:, j] = (np.eye(k) - hat) @ b
    s = g.T @ g
    return t, np.trace(s) ** 2 / np.trace(s @ s)


def test_weighted_one_sample_t_against_explicit_cr2(small):
    y = small[0].copy()
    y[3, :4] = np.nan  # study 3 missing at voxels 0-3: weights renormalise there
    q = np.linspace(12, 60, 12)
    with jax.enable_x64(True):
        out = {k: np.asarray(v) for k, v in esma.weighted_one_sample_t(y, q).items()}
    for j in range(50):
        ok = np.isfinite(y[:, j])
        t, dof = _cr2_brute_force(y[ok, j], q[ok])
        assert out["t"][j] == pytest.approx(t, rel=1e-10)
        assert out["dof"][j] == pytest.approx(dof, rel=1e-10)
        assert out["p"][j] == pytest.approx(2 * ss.t.sf(abs(t), dof), rel=1e-8)
    assert out["dof"][0] != out["dof"][10]  # fewer studies, fewer dof


def test_weighted_one_sample_t_with_equal_weights_is_the_ordinary_t(small):
    y = small[0]
    with jax.enable_x64(True):
        w = esma.weighted_one_sample_t(y, np.full(12, 25.0))
        o = esma.one_sample_t(y)
    np.testing.assert_allclose(np.asarray(w["t"]), ss.ttest_1samp(y, 0).statistic, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(w["dof"]), 11.0, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(w["z"]), np.asarray(o["z"]), rtol=1e-9)


def test_log_chi2_sf_deep_tail():
    q = np.array([10.0, 300.0, 2000.0, 5000.0])
    k = 20  # even dof: exact finite sum
    x = q / 2
    j = np.arange(k // 2)[:, None]
    # log sum_j x^j / j! computed stably
    terms = j * np.log(x) - gammaln(j + 1)
    exact = -x + np.log(np.exp(terms - terms.max(0)).sum(0)) + terms.max(0)
    with jax.enable_x64(True):
        got = np.asarray(esma.log_chi2_sf(q, k))
    np.testing.assert_allclose(got, exact, rtol=1e-10)


def test_fewer_than_two_valid_studies_gives_nan():
    y = np.array([[1.0, 2.0, np.nan], [0.5, np.nan, np.nan], [0.2, np.nan, 1.0]])
    v = np.ones_like(y)
    with jax.enable_x64(True):
        out = esma.hedges(y, v)
    assert np.isfinite(out["z"][0]) and np.isnan(out["z"][1]) and np.isnan(out["z"][2])


# ------------------------------------------------------------------ images and errors
def test_update_path_and_resolved_paths(dset, tmp_path):
    # NiMARE's update_path changes the dataset in place; copies keep their own base path.
    before = dset.copy()
    moved = dset.copy()
    assert moved.update_path(tmp_path) is moved
    assert get_image_paths(moved, "z")[0] == str(tmp_path / "study-01_z.nii.gz")
    assert get_image_paths(before, "z")[0].startswith(str(HERE))
    assert before.basepath != moved.basepath


def test_resampling_when_affines_differ(dset, tmp_path):
    # Put one study on a 1 mm grid; loading resamples it back onto the mask.
    shutil.copytree(HERE / "inputs", tmp_path / "in")
    f = tmp_path / "in" / "study-05_beta.nii.gz"
    img = nib.load(f)
    aff = img.affine.copy()
    aff[:3, :3] = np.eye(3)
    data = np.asarray(img.dataobj)
    up = np.repeat(np.repeat(np.repeat(data, 2, 0), 2, 1), 2, 2)
    aff[:3, 3] = img.affine[:3, 3] - 0.5
    nib.Nifti1Image(up, aff).to_filename(f)
    moved = Dataset(tmp_path / "in" / "ibma_sim_dataset.json", mask=HERE / "mask.nii.gz")
    got = load_images(moved, "beta")[4]
    want = load_images(dset, "beta")[4]
    inner = np.isfinite(got)
    assert inner.mean() > 0.5
    np.testing.assert_allclose(got[inner], want[inner], rtol=0.2, atol=0.2)


def _dict_dataset(n=3, types=("z", "beta", "varcope")):
    src = json.loads((HERE / "inputs" / "ibma_sim_dataset.json").read_text())
    out = {}
    for sid in list(src)[:n]:
        con = src[sid]["contrasts"]["1"]
        con["images"] = {
            t: str(HERE / "inputs" / p) for t, p in con["images"].items() if t in types
        }
        out[sid] = src[sid]
    return out


def test_error_fewer_than_two_studies(dset):
    with pytest.raises(DatasetError, match="at least 2"):
        ibma.Stouffers().fit(dset.slice(dset.ids[:1]))


def test_error_missing_image_type_names_study():
    src = _dict_dataset()
    del src["study-02"]["contrasts"]["1"]["images"]["varcope"]
    d = Dataset(src, mask=HERE / "mask.nii.gz")
    # NiMARE leaves such studies out; nimare_jax says which
    with pytest.warns(
        UserWarning, match=r"1 experiment\(s\) lack a beta/varcope image.*study-02-1"
    ):
        ibma.DerSimonianLaird().fit(d)
    for s in src.values():
        del s["contrasts"]["1"]["images"]["beta"]
    with pytest.raises(DatasetError, match=r"no 'beta' image: 'study-01-1'"):
        ibma.DerSimonianLaird().fit(Dataset(src, mask=HERE / "mask.nii.gz"))
    with pytest.raises(DatasetError, match="sample_sizes"):
        src2 = _dict_dataset()
        for s in src2.values():
            s["contrasts"]["1"]["metadata"] = {}
        ibma.SampleSizeBasedLikelihood().fit(Dataset(src2, mask=HERE / "mask.nii.gz"))


def test_error_image_that_cannot_be_resampled(tmp_path):
    src = _dict_dataset()
    bad = tmp_path / "bad.nii.gz"
    nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)).to_filename(bad)
    src["study-03"]["contrasts"]["1"]["images"]["z"] = str(bad)
    d = Dataset(src, mask=HERE / "mask.nii.gz")
    with pytest.raises(ImageError, match=r"'study-03-1', image 'z'.*3-D"):
        ibma.Fishers().fit(d)


def test_error_nan_only_image_names_study(tmp_path):
    src = _dict_dataset()
    img = nib.load(HERE / "inputs" / "study-01_z.nii.gz")
    nan = tmp_path / "nan.nii.gz"
    nib.Nifti1Image(np.full(img.shape, np.nan, np.float32), img.affine).to_filename(nan)
    src["study-02"]["contrasts"]["1"]["images"]["z"] = str(nan)
    d = Dataset(src, mask=HERE / "mask.nii.gz")
    with pytest.raises(ImageError, match=r"no voxel with a usable.*'z'.*'study-02-1'"):
        ibma.Stouffers().fit(d, drop_invalid=False)
    # NiMARE's default: the study is left out, with a warning naming it
    with pytest.warns(UserWarning, match=r"'study-02-1'.*left out"):
        est = ibma.Stouffers()
        est.fit(d)
    assert "study-02-1" not in list(est.inputs_["id"])


def test_equal_sample_sizes_rejected():
    src = _dict_dataset()
    for s in src.values():
        s["contrasts"]["1"]["metadata"] = {"sample_sizes": [20]}
    with pytest.raises(DatasetError, match="same sample size"):
        ibma.SampleSizeBasedLikelihood().fit(Dataset(src, mask=HERE / "mask.nii.gz"))


def test_unknown_kwarg_and_bad_options():
    with pytest.raises(TypeError, match="resample__"):
        ibma.Stouffers(resample=True)
    with pytest.raises(ValueError, match="method"):
        ibma.VarianceBasedLikelihood(method="bayes")
    with pytest.raises(ValueError, match="tau2"):
        ibma.WeightedLeastSquares(tau2=-1)


# ------------------------------------------------------------------ zero variance
ZV_STUDIES, ZV_SEED, ZV_ITERS = 6, 11, 300


@pytest.fixture(scope="module")
def zero_variance():
    """6 studies on a 5 x 6 x 7 box; 8 voxels are constant across studies (as identical
    images make them) and voxel 1 has equal magnitudes with mixed signs, so the sign flips
    that align them (2 in 64) leave it without variance too."""
    rng = np.random.default_rng(0)
    mask = nib.Nifti1Image(np.ones((5, 6, 7), np.int8), np.diag([2.0, 2.0, 2.0, 1.0]))
    y = rng.normal(0.4, 1.0, (ZV_STUDIES, 210)).astype(np.float32).astype(float)  # as stored
    constant = np.array([3, 17, 40, 77, 101, 150, 151, 209])
    y[:, constant] = 1.25
    y[:, 1] = 0.75 * np.array([1, -1, 1, 1, -1, 1])
    keep = np.setdiff1d(np.arange(210), constant)
    return y, mask, constant, keep


def _brute_sign_flip_fwe(y, observed_z, seed, n_iters):
    """Max-|z| sign-flip null and FWE p in NumPy/SciPy, over the given voxels; a flip that
    leaves a voxel without variance (all flipped values equal) leaves that voxel out."""
    k = y.shape[0]
    null = []
    with jax.enable_x64(True):
        root = jax.random.key(seed)
        for i in range(n_iters):
            s = np.asarray(jax.random.rademacher(jax.random.fold_in(root, i), (k,), float))
            ys = s[:, None] * y
            sd = ys.std(axis=0, ddof=1)
            t = np.abs(ys.mean(axis=0)[sd > 0] / (sd[sd > 0] / np.sqrt(k)))
            null.append(ss.norm.isf(ss.t.sf(t, k - 1)).max())
    null = np.array(null)
    exceed = (null[None, :] >= np.abs(observed_z)[:, None]).sum(1)
    return null, (exceed + 1.0) / (n_iters + 1.0)


@pytest.mark.slow
def test_zero_variance_voxels_are_nan_and_left_out_of_the_fwe_null(zero_variance):
    y, mask, constant, keep = zero_variance
    with pytest.warns(UserWarning, match=r"PermutedOLS: 8 of 210 voxels .*do not vary"):
        full = ibma.PermutedOLS(random_state=ZV_SEED).fit_arrays({"beta": y}, mask)
    for name in ("t", "z", "p", "logp", "dof"):
        assert np.all(np.isnan(full.maps[name][constant])), name
        assert np.all(np.isfinite(full.maps[name][keep])), name
    fwe = FWECorrector(method="montecarlo", n_iters=ZV_ITERS).transform(full)
    p_full = fwe.maps["p_level-voxel_corr-FWE_method-montecarlo"]
    null_full = fwe.null_distributions["values_level-voxel_corr-fwe_method-montecarlo"]
    assert np.all(np.isnan(p_full[constant])) and np.all(np.isfinite(null_full))
    assert "8 voxels whose values did not vary" in fwe.description

    # the same data without those voxels (a mask without them)
    inside = np.zeros(210, np.int8)
    inside[keep] = 1
    reduced_mask = nib.Nifti1Image(inside.reshape(5, 6, 7), mask.affine)
    reduced = ibma.PermutedOLS(random_state=ZV_SEED).fit_arrays({"beta": y[:, keep]}, reduced_mask)
    fwe_r = FWECorrector(method="montecarlo", n_iters=ZV_ITERS).transform(reduced)
    null_r = fwe_r.null_distributions["values_level-voxel_corr-fwe_method-montecarlo"]
    np.testing.assert_allclose(null_full, null_r, rtol=1e-12)  # column order of the sums
    np.testing.assert_array_equal(
        p_full[keep], fwe_r.maps["p_level-voxel_corr-FWE_method-montecarlo"]
    )

    # independent computation: NumPy t over the kept voxels, SciPy t -> z
    null_np, p_np = _brute_sign_flip_fwe(y[:, keep], full.maps["z"][keep], ZV_SEED, ZV_ITERS)
    np.testing.assert_allclose(null_full, null_np, rtol=1e-9)
    np.testing.assert_array_equal(p_full[keep], p_np)
    assert np.nanmin(p_full) == p_np.min()  # the smallest FWE p is that of the kept voxels


@pytest.mark.slow
def test_weighted_permutedols_zero_variance_matches_removed_voxels(zero_variance):
    y, mask, constant, keep = zero_variance
    n = np.array([12, 30, 18, 25, 40, 15])
    inside = np.zeros(210, np.int8)
    inside[keep] = 1
    reduced_mask = nib.Nifti1Image(inside.reshape(5, 6, 7), mask.affine)
    est = ibma.PermutedOLS(use_sample_size=True, random_state=ZV_SEED)
    with pytest.warns(UserWarning, match="8 of 210 voxels"):
        full = est.fit_arrays({"beta": y}, mask, sample_sizes=n)
    null_full = est.correct_fwe_montecarlo(full, n_iters=ZV_ITERS)[1]
    est_r = ibma.PermutedOLS(use_sample_size=True, random_state=ZV_SEED)
    reduced = est_r.fit_arrays({"beta": y[:, keep]}, reduced_mask, sample_sizes=n)
    null_r = est_r.correct_fwe_montecarlo(reduced, n_iters=ZV_ITERS)[1]
    key = "values_level-voxel_corr-fwe_method-montecarlo"
    assert np.all(np.isnan(full.maps["z"][constant]))
    np.testing.assert_allclose(null_full[key], null_r[key], rtol=1e-12)


@pytest.mark.parametrize(
    "estimator, own",
    [
        (ibma.DerSimonianLaird(), esma.dersimonian_laird),
        (ibma.Hedges(), esma.hedges),
        (
            ibma.VarianceBasedLikelihood(method="reml"),
            lambda y, v: esma.variance_based_likelihood(y, v, method="reml"),
        ),
    ],
)
def test_knapp_hartung_zero_variance_warns_and_leaves_others_unchanged(
    zero_variance, estimator, own
):
    # betas equal across studies: the Knapp-Hartung variance (residual sum of squares) is 0
    y, mask, constant, keep = zero_variance
    v = np.random.default_rng(1).uniform(0.5, 2.0, y.shape).astype(np.float32).astype(float)
    with pytest.warns(UserWarning, match=r"8 of 210 voxels"):
        res = estimator.fit_arrays({"beta": y, "varcope": v}, mask)
    for name in ("z", "p", "logp"):
        assert np.all(np.isnan(res.maps[name][constant])), name
    with jax.enable_x64(True):  # the other voxels, analysed on their own
        alone = np.asarray(own(y[:, keep], v[:, keep])["z"])
    np.testing.assert_allclose(res.maps["z"][keep], alone, rtol=1e-12)


def test_conperm_workflow_leaves_constant_voxels_out(zero_variance, tmp_path):
    # the conperm files of the same data: the FWE maps are finite except at the 8 constant
    # voxels, and the smallest FWE p is that of the data without them
    y, mask, constant, keep = zero_variance
    mask.to_filename(tmp_path / "mask.nii.gz")
    paths = []
    for i, row in enumerate(y.astype(np.float32)):
        paths.append(tmp_path / f"con{i}.nii.gz")
        nib.Nifti1Image(row.reshape(5, 6, 7), mask.affine).to_filename(paths[-1])
    with pytest.warns(UserWarning, match="8 of 210 voxels"):
        res = conperm_workflow(
            paths,
            mask_image=tmp_path / "mask.nii.gz",
            output_dir=tmp_path / "out",
            n_iters=ZV_ITERS,
            random_state=ZV_SEED,
        )
    p = res.maps["p_level-voxel_corr-FWE_method-montecarlo"]
    assert np.all(np.isnan(p[constant])) and np.all(np.isfinite(p[keep]))
    _, p_np = _brute_sign_flip_fwe(y[:, keep], res.maps["z"][keep], ZV_SEED, ZV_ITERS)
    np.testing.assert_array_equal(p[keep], p_np)


def test_negative_varcopes_are_missing_with_a_warning(small):
    # 1 / v of a negative or vanishing varcope is a meaningless or infinite weight: such
    # entries are left out, exactly as if they were missing (NaN)
    y, v = small
    mask = nib.Nifti1Image(np.ones((5, 5, 2), np.int8), np.eye(4))
    bad_v, nan_v = v.copy(), v.copy()
    bad_v[2, :5], bad_v[7, 10] = -0.5, 1e-30
    nan_v[2, :5], nan_v[7, 10] = np.nan, np.nan
    with pytest.warns(UserWarning, match="DerSimonianLaird: 6 varcope values are negative"):
        got = ibma.DerSimonianLaird().fit_arrays({"beta": y, "varcope": bad_v}, mask)
    want = ibma.DerSimonianLaird().fit_arrays({"beta": y, "varcope": nan_v}, mask)
    for name in ("z", "est", "se", "tau2"):
        np.testing.assert_array_equal(got.maps[name], want.maps[name], err_msg=name)


def test_identical_images_are_refused(zero_variance):
    y, mask, _, _ = zero_variance
    same = np.repeat(y[:1], 4, axis=0)
    with pytest.raises(ImageError, match="do not vary across studies at any of the 210"):
        ibma.PermutedOLS().fit_arrays({"beta": same}, mask)

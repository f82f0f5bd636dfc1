"""NiMARE 0.22.1 names, signatures and behaviours that NiMARE scripts (and its tests) rely on.

Each test states the NiMARE behaviour and checks it against an independent computation
(closed form, NumPy, SciPy) rather than against nimare_jax itself.
"""

import json
import math
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.special as sps_special
import scipy.stats as sps
from nilearn.maskers import NiftiLabelsMasker

import nimare_jax.meta
from nimare_jax import exceptions, spatial, transforms, utils
from nimare_jax.correct import FDRCorrector, FWECorrector
from nimare_jax.dataset import Dataset
from nimare_jax.diagnostics import FocusFilter, Jackknife
from nimare_jax.meta import cbma, ibma
from nimare_jax.meta.cbma.kernel import ALEKernel, KDAKernel, MKDAKernel
from nimare_jax.meta.fwe import VoxelLevelOnlyError
from nimare_jax.nimads import Studyset
from nimare_jax.results import DroppedInput, MetaResult
from nimare_jax.workflows import (
    CBMAWorkflow,
    ContrastWorkflow,
    PairwiseCBMAWorkflow,
    conjunction_analysis,
)
from nimare_jax.workflows.cbma import main_effect_map

AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])


def _small_mask():
    data = np.zeros((6, 7, 5), np.int8)
    data[1:5, 1:6, 1:4] = 1
    return nib.Nifti1Image(data, AFFINE)


# ------------------------------------------------------------------ utils / spatial
def test_utils_exports_nimare_names(tmp_path):
    assert utils.DEFAULT_FLOAT_DTYPE is np.float32
    f = tmp_path / "d.json"
    f.write_text('{"a": {"contrasts": {}}}')
    assert utils.load_json(f) == {"a": {"contrasts": {}}}


def test_get_masker_fits_and_keeps_the_voxels():
    mask = _small_mask()
    masker = utils.get_masker(mask)
    assert hasattr(masker, "mask_img_")
    np.testing.assert_array_equal(
        np.asanyarray(masker.mask_img_.dataobj), np.asanyarray(mask.dataobj)
    )
    # transform / inverse_transform follow the C order of the mask's voxels (as unmask does)
    values = np.arange(4 * 5 * 3, dtype=np.float32)
    vol = np.asanyarray(masker.inverse_transform(values).dataobj)
    np.testing.assert_array_equal(vol[np.asanyarray(mask.dataobj) > 0], values)
    assert utils.get_masker(masker) is masker  # a fitted masker is returned as is
    # load_mask of a masker: its binary image, the same object every time
    assert spatial.load_mask(masker) is spatial.load_mask(masker)


def test_template_names():
    t1 = utils.get_template("mni152_2mm", mask=None)
    assert t1.get_data_dtype() == np.float32 and t1.shape == (91, 109, 91)
    # the 1 mm brain mask (MNI152NLin6Asym res-01, as NiMARE's) covers the same brain as the
    # 2 mm one: nearly every 2 mm brain voxel centre falls in it
    one = utils.get_template("mni152_1mm", mask="brain")
    two = utils.get_template("mni152_2mm", mask="brain")
    assert one.header.get_zooms()[:3] == (1.0, 1.0, 1.0) and one.shape == (182, 218, 182)
    ijk2 = np.argwhere(np.asanyarray(two.dataobj) > 0)
    xyz = nib.affines.apply_affine(two.affine, ijk2)
    ijk1 = np.rint(nib.affines.apply_affine(np.linalg.inv(one.affine), xyz)).astype(int)
    inside = np.asanyarray(one.dataobj)[tuple(ijk1.T)] > 0
    assert inside.mean() > 0.97
    with pytest.raises(ValueError, match="T1 image of template space 'mni152_1mm'"):
        utils.get_template("mni152_1mm", mask=None)
    with pytest.raises(ValueError, match="Mask option 'gm'"):
        utils.get_template("mni152_2mm", mask="gm")


def test_invalid_studyset_error_is_a_value_error():
    assert issubclass(exceptions.InvalidStudysetError, ValueError)
    assert issubclass(exceptions.InvalidStudysetError, exceptions.NiMAREJaxError)


# ------------------------------------------------------------------ transforms
def test_z_to_t_is_finite_deep_in_the_tail():
    t = transforms.z_to_t(np.array([-50.0, 50.0]), dof=10)
    assert np.all(np.isfinite(t)) and t[0] < 0 < t[1] and t[0] == -t[1]
    # Far in the tail the t survival function is C t^-dof (1 + O(1/t^2)), with
    # C = Gamma((dof+1)/2) dof^(dof/2-1) / (sqrt(pi) Gamma(dof/2)): match log tails.
    dof = 10.0
    log_c = (
        sps_special.gammaln((dof + 1) / 2)
        + (dof / 2 - 1) * math.log(dof)
        - 0.5 * math.log(math.pi)
        - sps_special.gammaln(dof / 2)
    )
    expected = math.exp((log_c - sps.norm.logsf(50.0)) / dof)
    assert t[1] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("dof", [1, 5, 20, 500])
def test_z_to_t_matches_scipy_where_scipy_works(dof):
    z = np.array([-30.0, -3.0, 0.0, 0.5, 8.0, 20.0, 37.0])
    expected = np.sign(z) * sps.t.isf(sps.norm.sf(np.abs(z)), dof)
    ok = np.isfinite(expected)  # SciPy's isf returns -inf for some tiny p (dof=5, z=37)
    got = transforms.z_to_t(z, dof)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-10)
    np.testing.assert_allclose(sps.t.logsf(got[~ok], dof), sps.norm.logsf(z[~ok]), rtol=1e-9)
    # past p = 1e-280 the log-space branch takes over: its tail matches t.logsf's
    deep = np.array([38.0, 45.0])
    t = transforms.z_to_t(deep, dof)
    finite = np.isfinite(t) & np.isfinite(sps.t.logsf(t, dof))
    np.testing.assert_allclose(
        sps.t.logsf(t[finite], dof), sps.norm.logsf(deep[finite]), rtol=1e-9
    )


# ------------------------------------------------------------------ results
def test_metaresult_takes_nimares_argument_order():
    mask = _small_mask()
    est = object()
    n = int(np.asanyarray(mask.dataobj).sum())
    res = MetaResult(est, None, None, mask, {"z": np.arange(n, dtype=np.float32)})
    assert res.estimator is est and res.corrector is None and res.diagnostics == []
    np.testing.assert_array_equal(res.get_map("z", return_type="array"), np.arange(n))
    # masker: a fitted NiftiMasker of the mask, round-tripping the map
    img = res.get_map("z")
    np.testing.assert_array_equal(np.ravel(res.masker.transform(img)), np.arange(n))


# ------------------------------------------------------------------ import paths
def test_meta_exports_and_module_aliases():
    assert nimare_jax.meta.ale is cbma.ale and nimare_jax.meta.mkda is cbma.mkda
    assert nimare_jax.meta.ALE is cbma.ALE and nimare_jax.meta.KDA is cbma.KDA
    assert cbma.ale.ALESubtraction is cbma.ALESubtraction and cbma.ale.SCALE is cbma.SCALE
    assert nimare_jax.meta.ale.ALEKernel is ALEKernel
    assert nimare_jax.meta.Stouffers is ibma.Stouffers


def test_nimare_caching_options_are_accepted():
    cbma.ALE(generate_description=False, kernel__fwhm=10)
    cbma.MKDADensity(memory=None, memory_level=0)
    ibma.Stouffers(generate_description=False)
    assert ALEKernel(fwhm=10, memory=None, memory_level=0).fwhm == 10
    with pytest.raises(TypeError, match="unexpected keyword"):
        cbma.ALE(not_an_option=1)


# ------------------------------------------------------------------ kernels
def _dataset():
    src = {
        f"s{k}": {
            "contrasts": {
                "c": {
                    "coords": {
                        "space": "MNI",
                        "x": [0.0, 4.0 * k],
                        "y": [4.0, 0.0],
                        "z": [4.0, 8],
                    },
                    "metadata": {"sample_sizes": [20]},
                }
            }
        }
        for k in range(3)
    }
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = -20
    return Dataset(src, mask=nib.Nifti1Image(np.ones((11, 11, 11), np.int8), affine))


@pytest.mark.parametrize("kernel", [MKDAKernel(r=6), KDAKernel(r=6), ALEKernel(fwhm=8)])
def test_kernel_transform_return_types(kernel):
    dset = _dataset()
    arr = kernel.transform(dset, return_type="array")
    imgs = kernel.transform(dset)  # NiMARE's default: images
    assert len(imgs) == 3
    inside = np.asanyarray(dset.masker.mask_img_.dataobj) > 0
    for img, row in zip(imgs, arr, strict=True):
        np.testing.assert_array_equal(np.asanyarray(img.dataobj)[inside], row)
    np.testing.assert_array_equal(kernel.transform(dset, return_type="sparse").toarray(), arr)
    np.testing.assert_allclose(
        kernel.transform(dset, return_type="summary_array"), arr.sum(axis=0), rtol=1e-6
    )
    with pytest.raises(ValueError, match="return_type"):
        kernel.transform(dset, return_type="dataset")


def test_kernel_transform_masker_argument_uses_that_mask():
    dset = _dataset()
    sub = np.zeros((11, 11, 11), np.int8)
    sub[3:8, 3:8, 3:8] = 1
    other = nib.Nifti1Image(sub, dset.masker.mask_img_.affine)
    got = MKDAKernel(r=6).transform(dset, masker=other, return_type="array")
    full = MKDAKernel(r=6).transform(dset, return_type="array")
    # Same grid: the maps in the smaller mask are the full maps at its voxels.
    np.testing.assert_array_equal(got, full[:, sub[np.ones(sub.shape, bool)].astype(bool)])


# ------------------------------------------------------------------ correctors
class _Recorder:
    def correct_fwe_montecarlo(self, result, voxel_thresh=0.123, n_iters=None, n_cores=1):
        self.call = {"voxel_thresh": voxel_thresh, "n_iters": n_iters, "n_cores": n_cores}
        return {}, {}, "", ()


def test_fwe_corrector_parameters_drop_none_and_defer_to_the_estimator():
    assert FWECorrector(
        method="montecarlo", n_iters=5, n_cores=None, voxel_thresh=None
    ).parameters == {"n_iters": 5}
    assert "n_iters" not in FWECorrector(method="montecarlo").parameters
    assert FWECorrector(method="bonferroni").parameters == {}
    est = _Recorder()
    mask = _small_mask()
    res = MetaResult(est, mask=mask, maps={"p": np.full(60, 0.5)})
    FWECorrector(method="montecarlo", voxel_thresh=None, n_iters=20).transform(res)
    assert est.call["voxel_thresh"] == 0.123  # the estimator's default, not None


def test_fdr_corrector_accepts_only_none_extra_options():
    assert FDRCorrector(method="indep", alpha=0.05, voxel_thresh=None).parameters == {}
    with pytest.raises(TypeError, match="voxel_thresh"):
        FDRCorrector(voxel_thresh=0.01)


# ------------------------------------------------------------------ FixedEffectsHedges
def test_fixed_effects_hedges_matches_closed_form():
    rng = np.random.default_rng(3)
    n_studies, n_vox = 6, 40
    t = rng.normal(2.0, 1.5, size=(n_studies, n_vox)).astype(np.float32)
    n = rng.integers(12, 40, size=n_studies).astype(float)
    data = np.zeros((4, 5, 2), np.int8)
    data[:] = 1
    mask = nib.Nifti1Image(data, np.eye(4))
    res = ibma.FixedEffectsHedges().fit_arrays({"t": t}, mask, sample_sizes=n)
    # Independent NumPy: Hedges' g, its variance, inverse-variance weighted mean (Wald).
    nn = n[:, None]
    d = t.astype(np.float64) / np.sqrt(nn)
    h = 1 - 3 / (4 * (nn - 1) - 1)
    g = h * d
    var = (nn - 1) * (1 + nn * d**2) * h**2 / (nn * (nn - 3)) - d**2
    w = 1 / var
    est = (w * g).sum(0) / w.sum(0)
    se = np.sqrt(1 / w.sum(0))
    np.testing.assert_allclose(res.get_map("est", "array"), est, rtol=1e-5)
    np.testing.assert_allclose(res.get_map("se", "array"), se, rtol=1e-5)
    np.testing.assert_allclose(res.get_map("z", "array"), est / se, rtol=1e-4, atol=1e-5)
    assert res.tables["level-estimator"]["tau2"].tolist() == [0]
    with pytest.raises(exceptions.DatasetError, match="more than 3 subjects"):
        ibma.FixedEffectsHedges().fit_arrays({"t": t}, mask, sample_sizes=np.full(6, 3.0))


# ------------------------------------------------------------------ datasets NiMARE accepts
def test_experiments_without_foci_are_left_out_of_cbma_with_a_warning():
    dset = _dataset()
    src = {
        "img": {
            "contrasts": {"c": {"images": {"z": "z.nii.gz"}, "metadata": {"sample_sizes": [9]}}}
        }
    }
    mixed = dset.merge(Dataset(src, mask=dset.masker))
    with pytest.warns(
        UserWarning, match=r"1 experiment\(s\) have no foci and are left out.*img-c"
    ):
        got = ALEKernel(fwhm=8).transform(mixed, return_type="array")
    np.testing.assert_array_equal(got, ALEKernel(fwhm=8).transform(dset, return_type="array"))


def test_json_image_paths_absolute_with_relative_companions(tmp_path):
    src = {
        "s1": {"contrasts": {"c": {"images": {"z": "a/s1_z.nii.gz", "t": "/abs/t.nii"}}}},
        "s2": {"contrasts": {"c": {"images": {"t": "/abs/t2.nii"}}}},
    }
    (tmp_path / "d.json").write_text(json.dumps(src))
    d = Dataset(tmp_path / "d.json")
    # NiMARE's layout: z holds usable paths, z__relative the paths as written
    assert d.images["z"].tolist() == [str(tmp_path / "a/s1_z.nii.gz"), None]
    assert d.images["z__relative"].tolist() == ["a/s1_z.nii.gz", None]
    assert "t__relative" not in d.images.columns  # absolute paths need no companion
    d.update_path(tmp_path / "moved")
    assert d.images["z"].tolist() == [str(tmp_path / "moved/a/s1_z.nii.gz"), None]
    assert d.images["t"].tolist() == ["/abs/t.nii", "/abs/t2.nii"]
    assert d.get_images(imtype=None) == ["z", "t"]


def test_ibma_leaves_out_experiments_without_the_image(tmp_path):
    mask = _small_mask()
    inside = np.asanyarray(mask.dataobj) > 0
    rng = np.random.default_rng(0)
    src, z = {}, []
    for k in range(4):
        vol = np.zeros(mask.shape, np.float32)
        vol[inside] = rng.normal(1.0, 1.0, inside.sum())
        nib.Nifti1Image(vol, AFFINE).to_filename(tmp_path / f"z{k}.nii.gz")
        src[f"s{k}"] = {"contrasts": {"c": {"images": {"z": f"z{k}.nii.gz"}}}}
        z.append(vol[inside])
    src["none"] = {"contrasts": {"c": {"images": {"beta": "b.nii.gz"}}}}
    d = Dataset(src, mask=mask).update_path(tmp_path)
    with pytest.warns(UserWarning, match=r"1 experiment\(s\) lack a z image.*none-c"):
        res = ibma.Stouffers().fit(d)
    expected = np.sum(z, axis=0) / np.sqrt(4)  # Stouffer's combined z of the 4 studies
    np.testing.assert_allclose(res.get_map("z", "array"), expected, rtol=1e-5, atol=1e-6)


def test_kernel_transform_accepts_a_coordinates_table():
    dset = _dataset()
    table = dset.coordinates[["id", "x", "y", "z"]].assign(sample_size=20)
    for kernel in (ALEKernel(), MKDAKernel(r=6)):
        got = kernel.transform(table, dset.masker, return_type="array")
        np.testing.assert_array_equal(got, kernel.transform(dset, return_type="array"))
    with pytest.raises(ValueError, match="masker is required"):
        MKDAKernel().transform(table)


def test_mkda_density_leaves_out_experiments_without_foci():
    dset = _dataset()
    src = {"img": {"contrasts": {"c": {"images": {"z": "z.nii.gz"}}}}}
    mixed = dset.merge(Dataset(src, mask=dset.masker))
    with pytest.warns(UserWarning, match="left out"):
        got = cbma.MKDADensity(kernel__r=6, null_method="approximate").fit(mixed)
    ref = cbma.MKDADensity(kernel__r=6, null_method="approximate").fit(dset)
    np.testing.assert_array_equal(got.get_map("stat", "array"), ref.get_map("stat", "array"))
    assert list(got.estimator.dataset_.ids) == list(dset.ids)


def test_description_alias_and_label_maskers_refused():
    res = MetaResult(None, mask=_small_mask(), description="text")
    assert res.description_ == "text"
    res.description_ = "new"
    assert res.description == "new"
    with pytest.raises(ValueError, match="not region-averaging"):
        spatial.load_mask(NiftiLabelsMasker(_small_mask()))
    # an IBMA estimator takes the masker as given and refuses it when fitting (as NiMARE)
    labels = NiftiLabelsMasker(_small_mask())
    est = ibma.Fishers(mask=labels)
    assert est.masker is labels
    with pytest.raises(ValueError, match="not region-averaging"):
        est.fit_arrays({"z": np.ones((2, 60))}, labels)


def test_coordinates_table_with_voxel_indices_uses_them():
    dset = _dataset()
    # NiMARE: i, j, k of a table take precedence over x, y, z
    table = dset.coordinates[["id", "i", "j", "k"]].assign(sample_size=20)
    got = MKDAKernel(r=6).transform(table, dset.masker, return_type="array")
    np.testing.assert_array_equal(got, MKDAKernel(r=6).transform(dset, return_type="array"))
    moved = table.assign(x=999.0, y=999.0, z=999.0)  # ignored when i, j, k are given
    np.testing.assert_array_equal(
        MKDAKernel(r=6).transform(moved, dset.masker, return_type="array"), got
    )


# ------------------------------------------------------------------ NiMAREBase
def test_kernel_set_params_equals_a_kernel_built_with_them():
    dset = _dataset()
    kern = ALEKernel(sample_size=20)
    assert kern.get_params() == {
        "fwhm": None,
        "sample_size": 20,
        "memory": None,
        "memory_level": 0,
    }
    assert kern.set_params(sample_size=None, fwhm=10) is kern
    np.testing.assert_array_equal(
        kern.transform(dset, return_type="array"),
        ALEKernel(fwhm=10).transform(dset, return_type="array"),
    )
    with pytest.raises(ValueError, match="no parameter 'radius'"):
        MKDAKernel().set_params(radius=3)


def test_estimator_params_are_nested_like_sklearn(tmp_path):
    est = cbma.MKDADensity(kernel__r=6)
    params = est.get_params()
    assert params["kernel_transformer__r"] == 6 and params["null_method"] == "approximate"
    assert "kernel_transformer__r" not in est.get_params(deep=False)
    est.set_params(kernel_transformer__r=8, n_iters=10)
    assert est.kernel_transformer.r == 8 and est.n_iters == 10
    # save / load: a pickled copy, whose fit equals the original's
    est.save(tmp_path / "est.pkl.gz")
    back = cbma.MKDADensity.load(tmp_path / "est.pkl.gz")
    dset = _dataset()
    np.testing.assert_array_equal(
        np.asarray(back.fit(dset).maps["stat"]), np.asarray(est.fit(dset).maps["stat"])
    )
    with pytest.raises(TypeError, match="not a ALE"):
        cbma.ALE.load(tmp_path / "est.pkl.gz")
    assert "groupby" not in ibma.Stouffers().get_params()


# ------------------------------------------------------------------ inputs_ / masker
def _groups(n=4):
    def src(offset):
        return {
            f"s{offset + k}": {
                "contrasts": {
                    "c": {
                        "coords": {
                            "space": "MNI",
                            "x": [4.0 * ((k + offset) % 3) - 4.0, 8.0],
                            "y": [0.0, -4.0 * (k % 2)],
                            "z": [4.0, 0.0],
                        },
                        "metadata": {"sample_sizes": [20 + k]},
                    }
                }
            }
            for k in range(n)
        }

    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = -20
    mask = nib.Nifti1Image(np.ones((11, 11, 11), np.int8), affine)
    return Dataset(src(0), mask=mask), Dataset(src(10), mask=mask)


def test_cbma_inputs_read_as_nimares_dictionary():
    dset = _dataset()
    est = cbma.MKDADensity()
    est.fit(dset)
    assert list(est.inputs_) == ["id", "coordinates"]
    np.testing.assert_array_equal(est.inputs_["id"], dset.ids)
    coords = est.inputs_["coordinates"]
    # one row per focus, grouped by experiment in ids order, and the voxel indices used
    assert len(coords) == len(dset.coordinates) == est.inputs_.ijk.shape[0]
    np.testing.assert_array_equal(coords[["i", "j", "k"]].to_numpy(), est.inputs_.ijk)
    assert est.inputs_.get("ma_maps") is None
    assert est.masker is dset.masker
    d1, d2 = _groups()
    pair = cbma.MKDAChi2()
    pair.fit(d1, d2)
    assert sorted(pair.inputs_) == ["coordinates1", "coordinates2", "id1", "id2"]
    np.testing.assert_array_equal(pair.inputs_["id2"], d2.ids)
    assert set(pair.inputs_["coordinates1"]["id"]) == set(d1.ids)
    assert pair.masker is d1.masker


def test_density_weight_vec_is_the_weights():
    est = cbma.MKDADensity(weighting="sample_size")
    est.fit(_dataset())
    np.testing.assert_array_equal(est.weight_vec_, est.weights_)


# ------------------------------------------------------------------ MetaResult.save
def test_metaresult_save_load_and_dropped_inputs(tmp_path):
    rng = np.random.default_rng(0)
    mask = _small_mask()
    n_vox = int(np.asanyarray(mask.dataobj).sum())
    est = ibma.Stouffers()
    res = est.fit_arrays({"z": rng.normal(size=(5, n_vox))}, mask)
    full, lean = tmp_path / "full.pkl.gz", tmp_path / "lean.pkl.gz"
    res.save(full)
    res.save(lean, with_inputs=False)
    back = MetaResult.load(full)
    for name in res.maps:
        np.testing.assert_array_equal(np.asarray(back.maps[name]), np.asarray(res.maps[name]))
    np.testing.assert_array_equal(back.estimator.inputs_["z_maps"], est.inputs_["z_maps"])
    thin = MetaResult.load(lean)
    assert set(thin.estimator.inputs_) == set(est.inputs_)
    assert isinstance(thin.estimator.inputs_["z_maps"], DroppedInput)
    assert isinstance(est.inputs_["z_maps"], np.ndarray)  # the caller's copy is untouched
    np.testing.assert_array_equal(thin.estimator.inputs_["id"], est.inputs_["id"])
    with pytest.raises(RuntimeError, match="'z_maps'.*with_inputs=False"):
        np.asarray(thin.estimator.inputs_["z_maps"])
    with pytest.raises(RuntimeError, match="'z_maps'"):
        thin.estimator.inputs_["z_maps"].shape  # noqa: B018
    # the FDR correction reads only the maps
    q = FDRCorrector().transform(thin).maps["p_corr-FDR_method-indep"]
    np.testing.assert_allclose(q, FDRCorrector().transform(res).maps["p_corr-FDR_method-indep"])
    # a coordinate-based estimator has no image inputs: nothing is dropped
    cres = cbma.MKDADensity().fit(_dataset())
    cres.save(tmp_path / "c.pkl.gz", with_inputs=False)
    assert MetaResult.load(tmp_path / "c.pkl.gz").estimator.inputs_.ijk.shape[0] == 6


# ------------------------------------------------------------------ correctors (NiMARE protocol)
class _NiMAREStyle:
    """An estimator written for NiMARE: its correction returns (maps, tables, description)."""

    def correct_fwe_montecarlo(self, result, n_iters=5000, n_cores=1):
        self.call = {"n_iters": n_iters, "n_cores": n_cores}
        return {"p": np.asarray(result.maps["p"]) * 2}, {"t": pd_frame()}, "Corrected."


def pd_frame():
    return pd.DataFrame({"a": [1]})


def test_corrector_runs_nimare_protocol_methods_and_checks_their_options():
    mask = _small_mask()
    est = _NiMAREStyle()
    res = MetaResult(est, mask=mask, maps={"p": np.full(60, 0.01)})
    out = FWECorrector(method="montecarlo", n_iters=7).transform(res)
    assert est.call == {"n_iters": 7, "n_cores": 1}
    got = out.maps["p_corr-FWE_method-montecarlo"]  # NiMARE's suffix added, float32
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, 0.02, rtol=1e-6)
    assert "t_corr-FWE_method-montecarlo" in out.tables
    with pytest.raises(TypeError) as err:
        FWECorrector(method="montecarlo", voxel_thresh=0.01).transform(res)
    assert "'voxel_thresh'" in str(err.value)
    assert "_NiMAREStyle.correct_fwe_montecarlo" in str(err.value)
    assert "Accepted keyword arguments: n_iters, n_cores." in str(err.value)
    with pytest.raises(TypeError, match=r"Accepted keyword arguments: \(none\)"):
        FWECorrector(method="bonferroni", voxel_thresh=0.01).transform(res)
    assert FWECorrector.inspect(res) == ["bonferroni", "montecarlo"]
    assert FDRCorrector.inspect(res) == ["indep", "negcorr"]


def test_bonferroni_and_fdr_correct_every_desc_p_map_and_keep_nans():
    mask = _small_mask()
    rng = np.random.default_rng(1)
    p1, p2 = rng.uniform(1e-5, 1, 60), rng.uniform(1e-5, 1, 60)
    p1[:3] = np.nan
    z2 = sps.norm.isf(p2 / 2) * np.sign(rng.normal(size=60))
    res = MetaResult(None, mask=mask, maps={"p_desc-a": p1, "p_desc-b": p2, "z_desc-b": z2})
    out = FWECorrector(method="bonferroni").transform(res)
    a = out.maps["p_desc-a_corr-FWE_method-bonferroni"]
    assert np.isnan(a[:3]).all()
    np.testing.assert_allclose(a[3:], np.minimum(p1[3:] * 57, 1))  # NaNs are not tests
    b = out.maps["p_desc-b_corr-FWE_method-bonferroni"]
    np.testing.assert_allclose(b, np.minimum(p2 * 60, 1))
    zb = out.maps["z_desc-b_corr-FWE_method-bonferroni"]
    np.testing.assert_allclose(zb, sps.norm.isf(b / 2) * np.sign(z2), atol=1e-8)
    assert "z_desc-a_corr-FWE_method-bonferroni" not in out.maps  # no z_desc-a to sign it
    fdr = FDRCorrector().transform(res).maps["p_desc-b_corr-FDR_method-indep"]
    np.testing.assert_allclose(fdr, sps.false_discovery_control(p2, method="bh"))


def test_monte_carlo_nulls_are_kept_by_the_estimator():
    est = cbma.MKDADensity(random_state=1)
    res = est.fit(_dataset())
    out = FWECorrector(method="montecarlo", n_iters=20).transform(res)
    key = "values_level-voxel_corr-fwe_method-montecarlo"
    held = out.estimator.null_distributions_
    np.testing.assert_array_equal(held[key], out.null_distributions[key])
    assert len(held[key]) == 20
    assert "histogram_bins" in held  # the fit's nulls are kept beside them
    # as NiMARE: neither the fitted estimator nor the uncorrected result's one changes
    assert key not in est.null_distributions_ and key not in res.estimator.null_distributions_


# ------------------------------------------------------------------ pairwise inference maps
def test_pairwise_inference_maps_gate_the_contrast():
    d1, d2 = _groups()
    base = cbma.MKDAChi2().fit(d1, d2)
    z = np.asarray(base.maps["z_desc-association"])
    pos, neg = (z > 0).astype(np.int8), (z < 0).astype(np.int8)
    pos[: len(pos) // 2] = 0  # withdraw support from half the positive voxels
    gated = cbma.MKDAChi2().fit(d1, d2, inference_map1=pos, inference_map2=neg)
    gz = np.asarray(gated.maps["z_desc-association"])
    gp = np.asarray(gated.maps["p_desc-association"])
    keep = ((z > 0) & (pos > 0)) | ((z < 0) & (neg > 0))
    np.testing.assert_array_equal(gz, np.where(keep, z, 0))
    np.testing.assert_array_equal(gp, np.where(keep, base.maps["p_desc-association"], 1))
    np.testing.assert_array_equal(  # other maps untouched
        np.asarray(gated.maps["z_desc-uniformity"]), np.asarray(base.maps["z_desc-uniformity"])
    )
    with pytest.raises(ValueError, match="one value per mask voxel"):
        cbma.MKDAChi2().fit(d1, d2, inference_map1=pos[:-1])


def test_alesubtraction_voxel_thresh_checks():
    assert cbma.ALESubtraction().voxel_thresh == 0.001
    assert cbma.ALESubtraction(voxel_thresh=None).voxel_thresh is None
    with pytest.raises(ValueError, match="voxel_thresh must be provided"):
        cbma.ALESubtraction(vfwe_only=False, voxel_thresh=None)
    with pytest.raises(TypeError, match="scalar numeric"):
        cbma.ALESubtraction(vfwe_only=False, voxel_thresh="x")
    with pytest.raises(ValueError, match="between 0 and 1"):
        cbma.ALESubtraction(vfwe_only=False, voxel_thresh=1)
    assert cbma.ALESubtraction(vfwe_only=False, voxel_thresh="0.01").voxel_thresh == 0.01
    assert cbma.ALESubtraction(low_memory="auto").low_memory == "auto"
    with pytest.raises(ValueError, match="low_memory must be"):
        cbma.ALESubtraction(low_memory="sometimes")


# ------------------------------------------------------------------ workflows
def test_conjunction_is_the_minimum_where_all_are_positive(tmp_path):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 5, 6)), rng.normal(size=(4, 5, 6))
    imgs = [nib.Nifti1Image(a, np.eye(4)), nib.Nifti1Image(b, np.eye(4))]
    want = np.where((a > 0) & (b > 0), np.minimum(a, b), 0)
    np.testing.assert_array_equal(conjunction_analysis(imgs).get_fdata(), want)
    imgs[1].to_filename(tmp_path / "b.nii.gz")
    got = conjunction_analysis([imgs[0], str(tmp_path / "b.nii.gz")]).get_fdata()
    np.testing.assert_allclose(got, want)
    with pytest.raises(ValueError, match="at least two"):
        conjunction_analysis(imgs[:1])
    with pytest.raises(ValueError, match="NIfTI image or a path"):
        conjunction_analysis([1, 2])


def test_main_effect_map_prefers_nimares_order_and_thresholds():
    mask = _small_mask()
    z = np.linspace(-3, 3, 60)
    p_fdr = np.linspace(0.001, 0.2, 60)
    p_bonf = np.full(60, 0.01)
    res = MetaResult(
        None,
        mask=mask,
        maps={
            "z_corr-FDR_method-indep": z,
            "p_corr-FDR_method-indep": p_fdr,
            "z_corr-FWE_method-bonferroni": z,
            "p_corr-FWE_method-bonferroni": p_bonf,
        },
    )
    got = main_effect_map(res, 0.05)  # FDR ranks before Bonferroni
    np.testing.assert_array_equal(got, np.where(p_fdr <= 0.05, z, 0).astype(np.float32))
    assert got.dtype == np.float32
    with pytest.raises(ValueError, match="no corrected z map"):
        main_effect_map(MetaResult(None, mask=mask, maps={"z": z}), 0.05)


def test_contrast_workflow_gates_the_contrast_by_the_main_effects():
    d1, d2 = _groups()
    wf = ContrastWorkflow("mkdadensity", "mkdachi2", corrector="fdr", alpha=0.2)
    res = wf.fit(d1, d2)
    m1, m2 = res.maps["z_desc-group1MainEffect"], res.maps["z_desc-group2MainEffect"]
    np.testing.assert_array_equal(res.maps["z_desc-conjunction"], np.minimum(m1, m2))
    # the same contrast computed by hand from the pieces
    pair = cbma.MKDAChi2().fit(d1, d2, inference_map1=m1, inference_map2=m2)
    p = np.asarray(pair.maps["p_desc-association"])
    z = np.asarray(pair.maps["z_desc-association"])
    np.testing.assert_allclose(res.maps["z_desc-contrast"], np.where(p <= 0.2, z, 0), rtol=1e-6)
    assert "Masked contrast workflow" in res.description
    assert "laird2005ale" in res.bibtex_ and "Frahm_Monimu_Hoffstaedter" in res.bibtex_
    res2 = cbma.MKDADensity().fit(d2)
    with pytest.raises(ValueError, match="study ids"):
        wf.fit(d1, d2, corr_result1=wf.corrector.transform(res2))
    quiet = ContrastWorkflow("mkdadensity", "mkdachi2", generate_description=False).fit(d1, d2)
    assert quiet.description == "" and quiet.bibtex_ == ""


def test_workflows_refuse_the_wrong_estimators_with_nimares_exceptions():
    for wf, est in ((CBMAWorkflow, cbma.MKDAChi2), (PairwiseCBMAWorkflow, cbma.ALE)):
        with pytest.raises(TypeError) as err:
            wf(estimator=est)
        assert isinstance(err.value, ValueError) and isinstance(err.value, AttributeError)
    with pytest.raises(ValueError):
        CBMAWorkflow(estimator=ibma.Fishers)


# ------------------------------------------------------------------ IBMA groupby / floors
def test_ibma_groupby_records_groups_and_warns_about_dependence(tmp_path):
    rng = np.random.default_rng(4)
    mask = _small_mask()
    data = np.asanyarray(mask.dataobj) > 0
    src = {}
    for k in range(4):
        z = np.zeros(data.shape, np.float32)
        z[data] = rng.normal(size=int(data.sum()))
        path = tmp_path / f"z{k}.nii.gz"
        nib.Nifti1Image(z, AFFINE).to_filename(path)
        study = f"s{k // 2}"  # two contrasts per study
        src.setdefault(study, {"contrasts": {}})["contrasts"][f"c{k}"] = {
            "images": {"z": str(path)},
            "metadata": {"sample_sizes": [20], "site": ["a", "b"][k % 2]},
        }
    dset = Dataset(src, mask=mask)
    with pytest.warns(UserWarning, match="2 image\\(s\\) share a group"):
        est = ibma.Stouffers()
        res = est.fit(dset)
    np.testing.assert_array_equal(est.inputs_["contrast_names"], [0, 0, 1, 1])
    est_site = ibma.Stouffers(groupby="site")
    with pytest.warns(UserWarning):
        est_site.fit(dset)
    np.testing.assert_array_equal(est_site.inputs_["contrast_names"], [0, 1, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        free = ibma.Stouffers(groupby=False)
        free_res = free.fit(dset)
    # the dependence is recorded, not modelled: the maps are the independent test's
    np.testing.assert_array_equal(np.asarray(free_res.maps["z"]), np.asarray(res.maps["z"]))
    with pytest.raises(ValueError, match="one label per image"):
        ibma.Stouffers(groupby=["x", "y"]).fit(dset)
    # the floor: one analysis gives no variance, and the jackknife refits with one fewer
    with pytest.raises(ValueError, match="Fishers needs at least 2 analyses, got 1"):
        ibma.Fishers().fit(dset.slice(dset.ids[:1]))
    two = ibma.Fishers(groupby=False).fit(dset.slice(dset.ids[:2]))
    with pytest.raises(ValueError, match="Jackknife needs at least 3 analyses"):
        Jackknife(target_image="z", target_threshold=0.5).transform(two)


def test_focus_filter_keeps_the_foci_whose_voxel_is_in_the_mask():
    dset = _dataset()
    sub = np.zeros((11, 11, 11), np.int8)
    sub[6:, :, :] = 1  # x >= 4 mm
    mask = nib.Nifti1Image(sub, dset.masker.mask_img_.affine)
    out = FocusFilter(mask=mask).transform(dset)
    want = dset.coordinates[dset.coordinates["x"] >= 4]
    assert 0 < len(want) < len(dset.coordinates)
    np.testing.assert_array_equal(out.coordinates[["x", "y", "z"]], want[["x", "y", "z"]])
    assert list(out.ids) == list(dset.ids)  # experiments are all kept
    assert len(FocusFilter().transform(dset).coordinates) == len(dset.coordinates)


def test_nimare_exception_types_for_scale_and_missing_sample_sizes(tmp_path):
    with pytest.raises(TypeError, match="'dog'"):
        cbma.SCALE(xyz="dog")
    with pytest.raises(exceptions.InputFileError, match="file not found"):
        cbma.SCALE(xyz=str(tmp_path / "none.txt"))
    src = {
        "a": {"contrasts": {"c": {"coords": {"space": "MNI", "x": [0], "y": [0], "z": [0]}}}},
        "b": {
            "contrasts": {
                "c": {
                    "coords": {"space": "MNI", "x": [4], "y": [0], "z": [0]},
                    "metadata": {"sample_sizes": [20]},
                }
            }
        },
    }
    dset = Dataset(src, mask=_small_mask())
    with pytest.raises(ValueError, match="sample size.*'a-c'"):
        cbma.ALE().fit(dset)
    assert issubclass(VoxelLevelOnlyError, NotImplementedError)
    assert issubclass(VoxelLevelOnlyError, ValueError)


def test_kernel_arguments_with_a_kernel_instance_are_ignored_with_a_warning():
    kern = MKDAKernel(r=2)
    with pytest.warns(UserWarning, match=r"kernel__ arguments \['r'\] are ignored"):
        est = cbma.MKDADensity(kern, kernel__r=6)
    assert est.kernel_transformer is kern and kern.r == 2
    assert cbma.MKDADensity(MKDAKernel, kernel__r=6).kernel_transformer.r == 6


def test_estimators_accept_a_studyset_as_its_dataset():
    d1, d2 = _groups()
    s1, s2 = Studyset.from_dataset(d1), Studyset.from_dataset(d2)
    for fit in (
        lambda x, y: cbma.MKDADensity().fit(x),
        lambda x, y: cbma.MKDAChi2().fit(x, y),
    ):
        want, got = fit(s1.to_dataset(), s2.to_dataset()), fit(s1, s2)
        for name in want.maps:
            np.testing.assert_array_equal(np.asarray(got.maps[name]), np.asarray(want.maps[name]))


def test_ibma_drops_images_without_a_usable_voxel(tmp_path):
    rng = np.random.default_rng(5)
    mask = _small_mask()
    inside = np.asanyarray(mask.dataobj) > 0
    src = {}
    for k in range(4):
        z = np.zeros(inside.shape, np.float32)
        if k != 2:  # experiment s2-c is all zeros: nothing usable
            z[inside] = rng.normal(size=int(inside.sum()))
        nib.Nifti1Image(z, AFFINE).to_filename(tmp_path / f"z{k}.nii.gz")
        src[f"s{k}"] = {"contrasts": {"c": {"images": {"z": str(tmp_path / f"z{k}.nii.gz")}}}}
    dset = Dataset(src, mask=mask)
    with pytest.warns(UserWarning, match="'s2-c'.*left out"):
        est = ibma.Stouffers(groupby=False)
        res = est.fit(dset)
    assert list(est.inputs_["id"]) == ["s0-c", "s1-c", "s3-c"] == list(est.dataset_.ids)
    want = ibma.Stouffers(groupby=False).fit(dset.slice(["s0-c", "s1-c", "s3-c"]))
    np.testing.assert_array_equal(np.asarray(res.maps["z"]), np.asarray(want.maps["z"]))
    with pytest.raises(ValueError, match="'s2-c'"):
        ibma.Stouffers(groupby=False).fit(dset, drop_invalid=False)
    zeros = {f"e{k}": {"contrasts": {"c": src["s2"]["contrasts"]["c"]}} for k in range(2)}
    with pytest.raises(ValueError, match="nothing to meta-analyse"):
        ibma.Stouffers(groupby=False).fit(Dataset(zeros, mask=mask))

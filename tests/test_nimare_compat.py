"""NiMARE 0.22.1 names, signatures and behaviours that NiMARE scripts (and its tests) rely on.

Each test states the NiMARE behaviour and checks it against an independent computation
(closed form, NumPy, SciPy) rather than against nimare_jax itself.
"""

import json
import math

import nibabel as nib
import numpy as np
import pytest
import scipy.special as sps_special
import scipy.stats as sps
from nilearn.maskers import NiftiLabelsMasker

import nimare_jax.meta
from nimare_jax import exceptions, spatial, transforms, utils
from nimare_jax.correct import FDRCorrector, FWECorrector
from nimare_jax.dataset import Dataset
from nimare_jax.meta import cbma, ibma
from nimare_jax.meta.cbma.kernel import ALEKernel, KDAKernel, MKDAKernel
from nimare_jax.results import MetaResult

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

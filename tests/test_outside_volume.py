"""Foci outside the image volume: kept with one warning, kernels clipped at the edge as NiMARE.

The reference maps come from NiMARE 0.22.1 (tests/data/outside/make_outside_reference.py):
foci 1-8 mm beyond each of the six faces of the 2 mm MNI152 volume, on a mask of the
voxels near them.
"""

import json
import warnings
from pathlib import Path

import jax.numpy as jnp
import nibabel as nib
import numpy as np
import pytest
from conftest import LAIRD

from nimare_jax import io
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError, InputFileError
from nimare_jax.meta.cbma import (
    ALE,
    KDA,
    SCALE,
    ALEKernel,
    ALESubtraction,
    KDAKernel,
    MKDAChi2,
    MKDADensity,
    MKDAKernel,
)
from nimare_jax.ops import kernels as K

DATA = Path(__file__).parent / "data" / "outside"
JSON = DATA / "outside_dataset.json"
MASK = DATA / "mask.nii.gz"
GROUP1 = ["s1-c1", "s2-c1", "s3-c1"]
OUTSIDE = "11 foci lie outside the image volume"
KERNELS = {"ale": ALEKernel, "mkda": MKDAKernel, "kda": KDAKernel}
ESTIMATORS = {"ale": ALE, "mkdadensity": MKDADensity, "kda": KDA}


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA / "reference_nimare.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def dset():
    with pytest.warns(UserWarning, match=OUTSIDE):
        return Dataset(JSON, mask=MASK)


def assert_equal_to_nimare(ours, theirs, name):
    """The tolerances of the in-volume parity tests (tests/test_ale.py, tests/test_mkda.py)."""
    ours = np.asarray(ours, np.float64)
    theirs = np.asarray(theirs, np.float64)
    if name.endswith("stat") or name.startswith("ma_"):  # ALE: one float32 ulp; counts exact
        atol = np.spacing(np.float32(theirs.max())) if name.startswith(("ale", "ma_ale")) else 0
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol, err_msg=name)
    else:
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=name)
        ok = ~np.isnan(theirs)
        np.testing.assert_allclose(ours[ok], theirs[ok], rtol=1e-6, atol=1e-7, err_msg=name)


def test_dataset_keeps_foci_outside_with_voxel_indices_outside(dset, ref):
    assert list(dset.ids) == list(ref["ids"])
    ijk = dset.coordinates[["i", "j", "k"]].to_numpy()
    outside = ((ijk < 0) | (ijk >= np.array(dset.masker.mask_img_.shape))).any(axis=1)
    assert outside.sum() == 11 and len(ijk) == 19
    # rounding as NiMARE: x = -93 mm is voxel -1.5 -> -2; x = 91 mm is 90.5 -> 90 (inside)
    xyz = dset.coordinates[["x", "y", "z"]].to_numpy()
    assert ijk[np.flatnonzero(xyz[:, 0] == -93)[0], 0] == -2
    assert ijk[np.flatnonzero(xyz[:, 0] == 91)[0], 0] == 90


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_ma_maps_equal_nimare(dset, ref, name):
    ma = KERNELS[name]().transform(dset, return_type="array")
    assert_equal_to_nimare(ma, ref[f"ma_{name}"], f"ma_{name}")
    # every experiment whose kernels reach the mask has MA values (s7 reaches nothing)
    assert np.all(ma[:6].max(axis=1) > 0) and np.all(ma[6] == 0)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_maps_equal_nimare(dset, ref, name):
    result = ESTIMATORS[name]().fit(dset)
    for m in ("stat", "p", "z"):
        assert_equal_to_nimare(result.get_map(m, "array"), ref[f"{name}__{m}"], f"{name}__{m}")


def test_mkdachi2_equals_nimare(dset, ref):
    group2 = [i for i in dset.ids if i not in GROUP1]
    result = MKDAChi2(undefined_posterior="nan").fit(dset.slice(GROUP1), dset.slice(group2))
    names = [k.split("__")[1] for k in ref if k.startswith("mkdachi2__")]
    assert len(names) == 24
    for m in names:
        assert_equal_to_nimare(result.get_map(m, "array"), ref[f"mkdachi2__{m}"], m)


def _accumulated(arrays, windows, combine, strategy, inside=False):
    """Sum over experiments of their MA volumes with the chosen kernel-application strategy."""
    windows = jnp.asarray(windows, jnp.float32)
    weight = np.ones(len(arrays.ids), np.float32)
    if strategy == "window":
        step_focus, step_flush = K.schedule(arrays.exp_index)
        focus_window = arrays.exp_window[arrays.exp_index]
        acc = K.accumulate(
            arrays.ijk,
            focus_window,
            weight[arrays.exp_index],
            windows,
            step_focus,
            step_flush,
            arrays.shape,
            combine,
            inside=inside,
        )
    else:
        ijk, valid = arrays.padded()
        acc = K.accumulate_scatter(
            ijk, valid, arrays.exp_window, weight, windows, arrays.shape, combine, 3, inside
        )
    return np.asarray(acc).reshape(-1)[arrays.mask_index]


@pytest.mark.parametrize("strategy", ["window", "scatter"])
def test_both_strategies_equal_nimare(dset, ref, strategy):
    arrays = ALEKernel().prepare(dset)
    log_union = _accumulated(arrays, -np.log1p(-arrays.windows), "max", strategy)
    ale = -np.expm1(-log_union.astype(np.float64))
    # float32 accumulation (the permutation path; the fit accumulates in float64): the
    # tolerance tests/test_kernels.py uses between the two strategies
    np.testing.assert_allclose(ale, ref["ale__stat"], rtol=1e-6, atol=1e-9)
    for kernel, name in ((MKDAKernel(), "mkdadensity"), (KDAKernel(), "kda")):
        arrays = kernel.prepare(dset)
        density = _accumulated(arrays, arrays.windows, arrays.combine, strategy)
        np.testing.assert_array_equal(density, ref[f"{name}__stat"], err_msg=name)


@pytest.mark.parametrize("strategy", ["window", "scatter"])
def test_in_volume_promise_changes_only_the_padding(laird, strategy):
    # the permutation loops relocate foci to mask voxels and pad by half a window only
    arrays = ALEKernel().prepare(laird.slice(laird.ids[:4]))
    windows = -np.log1p(-arrays.windows)
    np.testing.assert_array_equal(
        _accumulated(arrays, windows, "max", strategy, inside=True),
        _accumulated(arrays, windows, "max", strategy),
    )


def test_clipped_ale_kernel_brute_force(dset):
    """One focus 8 mm beyond the front face: Gaussian formula evaluated voxel by voxel."""
    one = dset.slice(["s1-c1"])
    foci = one.coordinates[["i", "j", "k"]].to_numpy()
    front = foci[np.argmax(foci[:, 1])]
    assert front[1] == 112 and dset.masker.mask_img_.shape[1] == 109  # 4 voxels beyond y = 90 mm
    sigma = K.fwhm_from_sample_size(10) / np.sqrt(8 * np.log(2)) / 2.0  # voxels
    cut = int(4 * sigma + 0.5)
    norm = np.exp(-0.5 * (np.arange(-cut, cut + 1) / sigma) ** 2).sum()

    def weight(d):  # 1-D Gaussian weights, truncated at 4 sigma and normalised
        return np.where(np.abs(d) <= cut, np.exp(-0.5 * (d / sigma) ** 2) / norm, 0.0)

    mask = np.asanyarray(dset.masker.mask_img_.dataobj) > 0
    voxels = np.argwhere(mask)
    expected = np.zeros(len(voxels))
    for focus in foci:
        d = voxels - focus
        expected = np.maximum(expected, weight(d[:, 0]) * weight(d[:, 1]) * weight(d[:, 2]))
    ma = ALEKernel().transform(one, return_type="array")[0]
    np.testing.assert_allclose(ma, expected, rtol=0, atol=1e-9)
    # the front focus alone reaches the mask: it contributes the part of its kernel inside
    reached = (weight(voxels[:, 1] - front[1]) > 0) & (np.abs(voxels[:, 0] - front[0]) <= cut)
    assert reached.any() and ma[reached].max() > 0


def test_warning_fires_once_and_names_experiments():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dset = Dataset(JSON, mask=MASK)
        ALE().fit(dset)
        MKDADensity().fit(dset)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert caught[0].category is UserWarning
    assert str(JSON) in message and OUTSIDE in message
    assert "'s1-c1', 's2-c1', 's3-c1', 's4-c1', 's5-c1' ..." in message


def test_column_mistake_refused(tmp_path):
    src = json.loads(JSON.read_text())
    src["s3"]["contrasts"]["c1"]["coords"]["y"][1] = -1300.0
    path = tmp_path / "mistake.json"
    path.write_text(json.dumps(src))
    with pytest.raises(
        DatasetError, match=rf"{path}: experiment 's3-c1', field 'coords'.*-1300.*500 mm"
    ):
        Dataset(path, mask=MASK)
    with pytest.raises(ValueError, match=r"xyz: coordinate 2 \(0, 0, 600\).*500 mm"):
        SCALE([[0, 0, 0], [0, 0, 600]])
    baseline = tmp_path / "baseline.txt"
    baseline.write_text("0 0 0\n-501 0 0\n")
    with pytest.raises(InputFileError, match=r"baseline.txt: coordinate 2 \(-501, 0, 0\)"):
        SCALE(baseline)


SLEUTH_TEXT = """// Reference=MNI
// Smith et al., 2010: Faces
// Subjects=12
-12 98 12
-40 -20 10

// Jones et al., 2012: Houses
// Subjects=15
0 0 -80
"""


def test_sleuth_file_with_focus_outside_loads(tmp_path):
    path = tmp_path / "foci.txt"
    path.write_text(SLEUTH_TEXT)
    with pytest.warns(UserWarning, match="2 foci lie outside") as caught:
        out = io.convert_sleuth_to_dict(path)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"{path}, line 4, experiment 'Smith et al., 2010: Faces': (-12, 98, 12)" in message
    assert "line 9, experiment 'Jones et al., 2012: Houses': (0, 0, -80)" in message
    assert out["Smith et al., 2010"]["contrasts"]["Faces"]["coords"]["y"] == [98.0, -20.0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dset = io.convert_sleuth_to_dataset(path)
    assert len(caught) == 1 and "2 foci lie outside the image volume" in str(caught[0].message)
    assert "'Smith et al., 2010-Faces', 'Jones et al., 2012-Houses'" in str(caught[0].message)
    assert len(dset.coordinates) == 3
    assert ALE().fit(dset).get_map("stat", "array").max() > 0


def test_sleuth_talairach_focus_outside_after_transform(tmp_path):
    # y = 90 is inside the volume in MNI but about 95 mm after Talairach -> MNI
    path = tmp_path / "tal.txt"
    path.write_text("// Reference=Talairach\n// S: E\n// Subjects=5\n0 90 0\n")
    with pytest.warns(UserWarning, match=r"1 foci lie outside.*line 4, experiment 'S: E'"):
        io.convert_sleuth_to_dict(path)
    path.write_text("// Reference=MNI\n// S: E\n// Subjects=5\n0 90 0\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.convert_sleuth_to_dict(path)


def test_small_mask_volume_loads_and_agrees_with_full_grid(laird):
    """A mask on a cropped grid: foci outside its volume are kept and clipped, so each voxel's
    MA value is the one computed on the full grid."""
    box = (slice(30, 60), slice(40, 75), slice(30, 58))
    full = np.asanyarray(laird.masker.mask_img_.dataobj) > 0
    in_box = np.zeros(full.shape, bool)
    in_box[box] = True
    corner = np.array([b.start for b in box] + [1.0])
    affine = laird.masker.mask_img_.affine.copy()
    affine[:3, 3] = (laird.masker.mask_img_.affine @ corner)[:3]
    small = nib.Nifti1Image(full[box].astype(np.uint8), affine)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unknown space.*")
        with pytest.warns(UserWarning, match="foci lie outside the image volume"):
            cropped = Dataset(LAIRD, mask=small)
    on_box = laird.with_mask(
        nib.Nifti1Image((full & in_box).astype(np.uint8), laird.masker.mask_img_.affine)
    )
    np.testing.assert_array_equal(
        ALEKernel().transform(cropped.slice(cropped.ids[:4]), return_type="array"),
        ALEKernel().transform(on_box.slice(on_box.ids[:4]), return_type="array"),
    )
    np.testing.assert_array_equal(
        MKDADensity().fit(cropped).get_map("stat", "array"),
        MKDADensity().fit(on_box).get_map("stat", "array"),
    )


@pytest.mark.slow
def test_scale_and_subtraction_run_with_foci_outside(dset, ref):
    pool = np.r_[dset.coordinates[["x", "y", "z"]].to_numpy(), [[0.0, 140.0, 0.0]]]
    scale = SCALE(pool, n_iters=10, random_state=0, progress=False)
    with pytest.warns(UserWarning, match="12 baseline coordinates lie outside") as caught:
        result = scale.fit(dset)
    assert len(caught) == 1
    assert_equal_to_nimare(result.get_map("stat", "array"), ref["ale__stat"], "ale__stat")
    assert np.all((result.maps["p"] > 0) & (result.maps["p"] < 1))
    group2 = [i for i in dset.ids if i not in GROUP1]
    sub = ALESubtraction(n_iters=10, random_state=0, progress=False)
    result = sub.fit(dset.slice(GROUP1), dset.slice(group2))
    diff = result.get_map("stat_desc-group1MinusGroup2", "array")
    assert np.abs(diff).max() > 0 and np.all(np.isfinite(result.maps["z_desc-group1MinusGroup2"]))

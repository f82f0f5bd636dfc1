"""Kernels and MA maps against independent NumPy/SciPy constructions and NiMARE's outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from nimare_jax.meta.cbma.kernel import ALEKernel, KDAKernel, MKDAKernel
from nimare_jax.ops import kernels as K


def scipy_ale_kernel(fwhm):
    """NiMARE's recipe, written independently: smooth an impulse on 31^3, crop at eps."""
    sigma = fwhm / 2.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))  # 2 mm voxels
    data = np.zeros((31, 31, 31))
    data[15, 15, 15] = 1.0
    kern = ndimage.gaussian_filter(data, sigma, mode="constant")
    keep = np.flatnonzero((kern > np.spacing(1)).any(axis=(1, 2)))
    lo, hi = keep.min(), keep.max()
    return kern[lo : hi + 1, lo : hi + 1, lo : hi + 1]


@pytest.mark.parametrize("fwhm", [K.fwhm_from_sample_size(20), 8.0, 12.5, 4.0])
def test_ale_kernel_matches_scipy_impulse_response(fwhm):
    ours, ref = K.ale_kernel(fwhm), scipy_ale_kernel(fwhm)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-18)
    assert ours.sum() == pytest.approx(1.0, abs=1e-12)


def test_fwhm_from_sample_size_closed_form():
    # Eickhoff 2009: FWHM^2 = T^2 + S^2/n with T, S the 5.7 and 11.6 mm constants in FWHM units
    c = np.sqrt(8 * np.log(2)) / (2 * np.sqrt(2 / np.pi))
    for n in (5, 20, 100):
        assert K.fwhm_from_sample_size(n) == pytest.approx(
            np.hypot(5.7 * c, 11.6 * c / np.sqrt(n))
        )


def test_ale_kernel_width_is_right_for_other_voxel_sizes():
    # second moment along x in mm equals sigma^2 for any voxel size (NiMARE's is off at 3 mm)
    fwhm = 12.0
    sigma_mm = fwhm / (2 * np.sqrt(2 * np.log(2)))
    for vs in (2.0, 3.0):
        k = K.ale_kernel(fwhm, (vs, vs, vs))
        x = (np.arange(k.shape[0]) - k.shape[0] // 2) * vs
        var = (k.sum(axis=(1, 2)) * x**2).sum()
        assert var == pytest.approx(sigma_mm**2, rel=2e-2)


def brute_force_ma(dataset, kernel_of_exp, combine):
    """Independent MA maps: loop over foci, place the kernel window with clipping."""
    mask = np.asanyarray(dataset.masker.mask_img_.dataobj) > 0
    out = []
    for n, ident in enumerate(dataset.ids):
        vol = np.zeros(mask.shape)
        kern = kernel_of_exp(n)
        h = kern.shape[0] // 2
        for i, j, k in dataset.coordinates.loc[
            dataset.coordinates.id == ident, ["i", "j", "k"]
        ].to_numpy():
            lo = np.array([i, j, k]) - h
            sl_v = tuple(
                slice(max(a, 0), min(a + kern.shape[0], s))
                for a, s in zip(lo, mask.shape, strict=True)
            )
            sl_k = tuple(slice(v.start - a, v.stop - a) for v, a in zip(sl_v, lo, strict=True))
            vol[sl_v] = (
                np.maximum(vol[sl_v], kern[sl_k]) if combine == "max" else vol[sl_v] + kern[sl_k]
            )
        out.append(vol[mask])
    return np.array(out)


def test_ale_ma_maps_match_brute_force(laird):
    sub = laird.slice(laird.ids[:4])
    ours = ALEKernel().transform(sub, return_type="array")
    kern = scipy_ale_kernel(K.fwhm_from_sample_size(20)).astype(np.float32)
    ref = brute_force_ma(sub, lambda n: kern, "max")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
    assert ours.dtype == np.float32


@pytest.mark.parametrize("cls,combine", [(MKDAKernel, "max"), (KDAKernel, "sum")])
def test_sphere_ma_maps_equal_distance_rule(laird, cls, combine):
    sub = laird.slice(laird.ids[5:8])
    ours = cls(r=10).transform(sub, return_type="array")
    g = np.arange(-5, 6)
    d = np.sqrt(
        (2 * g[:, None, None]) ** 2 + (2 * g[None, :, None]) ** 2 + (2 * g[None, None, :]) ** 2
    )
    sphere = (d <= 10).astype(float)
    ref = brute_force_ma(sub, lambda n: sphere, combine)
    np.testing.assert_array_equal(ours, ref)


def test_kernel_image_output_has_mask_geometry(laird):
    imgs = MKDAKernel().transform(laird.slice(laird.ids[:2]), return_type="image")
    assert len(imgs) == 2
    assert imgs[0].shape == laird.masker.mask_img_.shape
    np.testing.assert_array_equal(imgs[0].affine, laird.masker.mask_img_.affine)


def test_soft_sphere_tends_to_hard_sphere():
    hard = K.sphere_window(10.0)
    soft = np.asarray(K.soft_sphere_window(10.0, (2.0, 2.0, 2.0), hard.shape[0] // 2, 1e-3))
    on_surface = np.isclose(soft, 0.5)
    np.testing.assert_array_equal(np.round(soft)[~on_surface], hard[~on_surface])


@pytest.mark.slow
def test_ale_statistic_gradient_in_fwhm_matches_finite_differences(laird):
    arr = ALEKernel(fwhm=10.0).prepare(laird.slice(laird.ids[:3]))
    step_focus, step_flush = K.schedule(arr.exp_index)
    probe = arr.ijk[:5]

    def mean_ale(fwhm):
        win = -jnp.log1p(-K.ale_kernel_window(fwhm, (2.0, 2.0, 2.0), 8))[None]
        n = arr.ijk.shape[0]
        acc = K.accumulate(
            arr.ijk,
            jnp.zeros(n, jnp.int32),
            jnp.ones(n),
            win,
            step_focus,
            step_flush,
            arr.shape,
            "max",
        )
        return (-jnp.expm1(-acc[tuple(probe.T)])).mean()

    with jax.enable_x64(True):
        grad = jax.grad(mean_ale)(10.0)
        h = 1e-4
        fd = (mean_ale(10.0 + h) - mean_ale(10.0 - h)) / (2 * h)
    assert float(grad) == pytest.approx(float(fd), rel=1e-5)
    assert float(grad) < 0  # wider kernels lower the peak values at the foci


@pytest.mark.parametrize("combine", ["max", "sum"])
def test_scatter_strategy_equals_window_loop(laird, combine):
    arr = ALEKernel().prepare(laird.slice(laird.ids[:5]))
    win = jnp.asarray(-np.log1p(-arr.windows), jnp.float32)
    weights = np.linspace(0.5, 1.5, 5).astype(np.float32)
    step_focus, step_flush = K.schedule(arr.exp_index)
    loop = K.accumulate(
        arr.ijk,
        arr.exp_window[arr.exp_index],
        weights[arr.exp_index],
        win,
        step_focus,
        step_flush,
        arr.shape,
        combine,
    )
    ijk, valid = arr.padded()
    scatter = K.accumulate_scatter(
        ijk, valid, arr.exp_window, weights, win, arr.shape, combine, chunk=2
    )
    np.testing.assert_allclose(np.asarray(scatter), np.asarray(loop), rtol=1e-6, atol=1e-9)

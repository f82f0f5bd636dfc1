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


@pytest.mark.parametrize("cls,combine", [(MKDAKernel, "max"), (KDAKernel, "sum")])
def test_ma_chunks_are_the_brute_force_maps_of_consecutive_experiments(laird, cls, combine):
    """5 experiments in chunks of 2: the last chunk padded with an experiment without foci."""
    sub = laird.slice(laird.ids[5:10])
    g = np.arange(-5, 6)
    d = np.sqrt(
        (2 * g[:, None, None]) ** 2 + (2 * g[None, :, None]) ** 2 + (2 * g[None, None, :]) ** 2
    )
    ref = brute_force_ma(sub, lambda n: (d <= 10).astype(float), combine)
    chunks = list(cls(r=10).prepare(sub).ma_chunks(2))
    assert [(lo, m) for lo, m, _ in chunks] == [(0, 2), (2, 2), (4, 1)]
    for lo, m, ma in chunks:
        assert ma.shape == (2, ref.shape[1])
        np.testing.assert_array_equal(np.asarray(ma)[:m], ref[lo : lo + m])
    np.testing.assert_array_equal(np.asarray(chunks[-1][2])[1:], 0.0)


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


def _dense_summary(
    acc,
    ijk,
    valid,
    exp_window,
    exp_weight,
    windows,
    mask_index,
    shape,
    combine,
    union,
    n_bins,
    inv_step,
):
    """summarize_experiments by dense NumPy volumes: every experiment's whole MA map."""
    half = windows.shape[-1] // 2
    stat, hists, tops = acc.copy(), [], []
    for e in range(ijk.shape[0]):
        vol = np.zeros(shape, np.float32)
        for f in np.flatnonzero(valid[e]):
            lo, hi = ijk[e, f] - half, ijk[e, f] + half + 1
            a, b = np.maximum(lo, 0), np.minimum(hi, shape)
            if np.any(a >= b):
                continue  # the window misses the volume
            dst = tuple(slice(i, j) for i, j in zip(a, b, strict=True))
            src = tuple(slice(i - o, j - o) for i, j, o in zip(a, b, lo, strict=True))
            part = windows[exp_window[e]][src]
            vol[dst] = np.maximum(vol[dst], part) if combine == "max" else vol[dst] + part
        values = vol.reshape(-1)[mask_index]
        term = -np.log1p(-values) if union == "probabilistic" else values
        stat = stat + exp_weight[e] * term.astype(np.float64)
        scaled = values * np.float32(inv_step)
        lower = np.floor(scaled)
        bins = np.clip((lower + (scaled - lower >= 0.5)).astype(int), 0, n_bins - 1)
        hists.append(np.bincount(bins, minlength=n_bins))
        tops.append(values.max())
    return stat, np.stack(hists), np.array(tops)


@pytest.mark.parametrize("combine, union", [("max", "probabilistic"), ("sum", "sum")])
@pytest.mark.parametrize("n_counted", [0, 2, 4])
def test_summary_equals_dense_maps(combine, union, n_counted):
    # overlapping windows, foci outside the volume (near and far), an experiment without
    # foci and padded slots: the window-by-window pass counts each in-mask voxel once, on
    # the device (the first n_counted experiments) and on the host (the others)
    rng = np.random.default_rng(3)
    shape, width, n_bins, inv_step = (13, 11, 9), 5, 40, 100.0
    mask_index = np.flatnonzero(rng.random(int(np.prod(shape))) < 0.6).astype(np.int32)
    windows = (rng.random((2, width, width, width)) * 0.15).astype(np.float32)
    windows[1, 0] = windows[1, 1]  # repeated values share a rank
    counts = np.array([6, 0, 1, 9])
    ijk = rng.integers(-3, 16, (4, 9, 3)).astype(np.int32)
    ijk[0, :3] = [[5, 5, 4], [6, 5, 4], [5, 6, 5]]  # overlapping windows
    ijk[3, 0] = [-40, 5, 5]  # far outside: its window misses the volume
    valid = np.arange(9) < counts[:, None]
    exp_window = np.array([0, 1, 1, 0], np.int32)
    exp_weight = np.array([1.0, 0.5, 2.0, 1.5], np.float32)
    acc = rng.random(mask_index.size)
    args = (exp_window, exp_weight, windows, mask_index, shape, combine, union, n_bins)
    tables = K.window_levels(windows) if combine == "max" else None
    with jax.enable_x64(True):
        got = K.summarize_experiments(
            acc,
            ijk,
            valid,
            *args[:3],
            jnp.asarray(mask_index),
            *args[4:],
            inv_step,
            n_counted,
            tables,
        )
        got = [np.asarray(x) for x in got]
    want = _dense_summary(acc, ijk, valid, *args, inv_step)
    # float32 terms summed in float64 in experiment order; log1p may differ by an ulp
    np.testing.assert_allclose(got[0], want[0], rtol=1e-7, atol=0)
    np.testing.assert_array_equal(got[1], want[1][:n_counted])
    np.testing.assert_array_equal(got[2], want[2][:n_counted])
    frame = K.mask_frame(mask_index, shape, K.window_pad(width))
    rest = slice(n_counted, None)
    host = K.experiment_histograms(
        ijk[rest],
        valid[rest],
        exp_window[rest],
        windows,
        frame,
        shape,
        combine,
        n_bins,
        inv_step,
    )
    np.testing.assert_array_equal(host[0], want[1][rest])
    np.testing.assert_array_equal(host[1], want[2][rest])
    assert want[1][1, 0] == mask_index.size  # no foci: every voxel in bin 0


def test_window_levels_rank_values_and_follow_the_windows():
    rng = np.random.default_rng(5)
    windows = np.round(rng.random((3, 3, 3, 3)), 1).astype(np.float32)  # many ties
    levels, ranks = K.window_levels(windows)
    for w in range(3):
        np.testing.assert_array_equal(levels[w][ranks[w]], windows[w])
        distinct = np.unique(windows[w])
        np.testing.assert_array_equal(levels[w, 1 : distinct.size + 1], distinct)
    assert levels[:, 0].tolist() == [0, 0, 0] and ranks.min() >= 1
    assert not ranks.flags.writeable  # cached by value: shared, so read-only
    other = windows.copy()
    other[0, 0, 0, 0] = 0.55
    assert K.window_levels(other)[0][0].tolist() != levels[0].tolist()


def test_summary_in_mask_box_equals_whole_volume():
    # placing the windows in the mask's bounding box (foci shifted) changes no value
    rng = np.random.default_rng(4)
    shape = (16, 15, 14)
    vol = np.zeros(shape, bool)
    vol[4:11, 3:12, 5:10] = rng.random((7, 9, 5)) < 0.7
    mask_index = np.flatnonzero(vol).astype(np.int32)
    origin, box, box_index = K.mask_box(mask_index, shape)
    np.testing.assert_array_equal(box, np.ptp(np.argwhere(vol), axis=0) + 1)
    windows = (rng.random((1, 5, 5, 5)) * 0.1).astype(np.float32)
    ijk = rng.integers(-2, 18, (3, 7, 3)).astype(np.int32)
    valid = np.ones((3, 7), bool)
    rest = (np.zeros(3, np.int32), np.ones(3, np.float32), jnp.asarray(windows))
    options = ("max", "probabilistic", 20, 200.0, 3, K.window_levels(windows))
    with jax.enable_x64(True):
        acc = jnp.zeros(mask_index.size)
        whole = K.summarize_experiments(acc, ijk, valid, *rest, mask_index, shape, *options)
        boxed = K.summarize_experiments(acc, ijk - origin, valid, *rest, box_index, box, *options)
        for a, b in zip(whole, boxed, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        # foci inside the box: half a window of padding gives the same values
        near = np.clip(ijk - origin, 0, np.array(box) - 1)
        padded = K.summarize_experiments(acc, near, valid, *rest, box_index, box, *options)
        tight = K.summarize_experiments(
            acc, near, valid, *rest, box_index, box, *options, inside=True
        )
        for a, b in zip(padded, tight, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _brute_force_box(vol):
    """Bounding box of a boolean volume's voxels and their C-order indices in it."""
    ijk = np.argwhere(vol)
    origin = ijk.min(axis=0)
    box = tuple(int(n) for n in np.ptp(ijk, axis=0) + 1)
    return origin, box, np.ravel_multi_index(tuple((ijk - origin).T), box)


def test_mask_box_cache_follows_the_mask_values():
    # mask_box is cached by value: a repeated call is served the same answer, a changed
    # mask (even the same array edited in place) or shape is never served a stale one
    rng = np.random.default_rng(7)
    shape = (12, 11, 10)
    vol = np.zeros(shape, bool)
    vol[3:9, 2:8, 4:9] = rng.random((6, 6, 5)) < 0.6
    mask_index = np.flatnonzero(vol).astype(np.int32)
    first = K.mask_box(mask_index, shape)
    again = K.mask_box(mask_index.copy(), shape)
    for got in (first, again):
        origin, box, box_index = _brute_force_box(vol)
        np.testing.assert_array_equal(got[0], origin)
        assert got[1] == box
        np.testing.assert_array_equal(got[2], box_index)
    assert not first[2].flags.writeable  # a shared cached array cannot be changed
    with pytest.raises(ValueError):
        first[2][0] = 0
    vol[0, 0, 0] = True  # grows the box to the volume's corner
    mask_index[:] = np.flatnonzero(vol)[: mask_index.size]  # same array, new values
    vol = np.zeros(shape, bool).reshape(-1)
    vol[mask_index] = True
    vol = vol.reshape(shape)
    got = K.mask_box(mask_index, shape)
    origin, box, box_index = _brute_force_box(vol)
    np.testing.assert_array_equal(got[0], [0, 0, 0])
    np.testing.assert_array_equal(got[0], origin)
    assert got[1] == box
    np.testing.assert_array_equal(got[2], box_index)
    # the same flat indices in another shape are other voxels
    other = (12, 11, 20)
    got = K.mask_box(mask_index, other)
    vol = np.zeros(other, bool).reshape(-1)
    vol[mask_index] = True
    origin, box, box_index = _brute_force_box(vol.reshape(other))
    np.testing.assert_array_equal(got[0], origin)
    assert got[1] == box
    np.testing.assert_array_equal(got[2], box_index)


def test_ale_kernel_cache_is_read_only_and_matches_scipy():
    # ale_kernel is cached by (fwhm, voxel size) values: float32 and float voxel sizes of
    # the same values give the same kernel, and a served kernel cannot be edited
    fwhm = 9.25
    ref = scipy_ale_kernel(fwhm)
    for vs in ((2.0, 2.0, 2.0), tuple(np.float32([2, 2, 2])), np.array([2.0, 2.0, 2.0])):
        k = K.ale_kernel(fwhm, vs)
        np.testing.assert_allclose(k, ref, rtol=1e-10, atol=1e-18)
        assert not k.flags.writeable
    with pytest.raises(ValueError):
        k[0, 0, 0] = 1.0
    assert not np.array_equal(K.ale_kernel(fwhm + 1.0), k)  # another width
    # the fit's kernel (NumPy) is the differentiable JAX window, cropped, to rounding
    with jax.enable_x64(True):
        window = np.asarray(K.ale_kernel_window(jnp.asarray(fwhm), (2.0, 2.0, 2.0), K.MAX_RADIUS))
    half = k.shape[0] // 2
    crop = slice(K.MAX_RADIUS - half, K.MAX_RADIUS + half + 1)
    np.testing.assert_allclose(k, window[crop, crop, crop], rtol=1e-14, atol=0)


@pytest.mark.parametrize("inside", [False, True])
def test_summary_from_mask_frame_and_no_accumulator_equals_zeros(inside):
    # the host-made mask frame and acc=None (a dense start instead of scattering zeros)
    # give exactly the values of starting from an explicit zero accumulator
    rng = np.random.default_rng(11)
    shape = (14, 12, 11)
    mask_index = np.flatnonzero(rng.random(int(np.prod(shape))) < 0.5).astype(np.int32)
    windows = (rng.random((2, 5, 5, 5)) * 0.1).astype(np.float32)
    ijk = rng.integers(0 if inside else -3, 14 if inside else 17, (3, 6, 3)).astype(np.int32)
    ijk = np.minimum(ijk, np.array(shape) - 1) if inside else ijk
    valid = np.arange(6) < np.array([6, 2, 4])[:, None]
    rest = (np.array([0, 1, 0], np.int32), np.array([1.0, 0.5, 2.0], np.float32), windows)
    options = ("max", "probabilistic", 30, 300.0, 2, K.window_levels(windows))
    frame = K.mask_frame(mask_index, shape, K.window_pad(5, inside))
    # brute force: the frame's indices and in-mask volume from the padded volume itself
    pad = K.window_pad(5, inside)
    padded = np.zeros(tuple(s + 2 * pad for s in shape), bool)
    inner = np.zeros(shape, bool)
    inner.reshape(-1)[mask_index] = True
    padded[pad : pad + shape[0], pad : pad + shape[1], pad : pad + shape[2]] = inner
    np.testing.assert_array_equal(np.asarray(frame[0]), np.flatnonzero(padded))
    np.testing.assert_array_equal(np.asarray(frame[1]), padded.reshape(-1))
    with jax.enable_x64(True):
        zeros = jnp.zeros(mask_index.size)
        call = (ijk, valid, *rest, mask_index, shape, *options)
        want = K.summarize_experiments(zeros, *call, inside=inside)
        for acc in (None, zeros):
            got = K.summarize_experiments(acc, *call, inside=inside, frame=frame)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        got = K.summarize_experiments(None, *call, inside=inside)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

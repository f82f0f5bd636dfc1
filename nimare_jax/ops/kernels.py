"""Modelled-activation kernels and their application to foci, as pure JAX functions.

Kernels are small dense windows ``(W, W, W)`` centred on a focus voxel. Applying them touches
only each focus's window of a padded volume (never the whole volume per focus), in one
``lax.fori_loop`` that carries a single array (a complex64 volume packing accumulator and
scratch), which XLA updates in place; carrying a tuple of volumes makes XLA copy them.

Foci may lie outside the volume: a kernel is clipped at the volume's edge, so such a focus
contributes the part of its window that falls inside (as NiMARE does), see
:func:`window_frame`.

Within one experiment a voxel counts once: the experiment's map is the MAX of its foci's
windows (ALE, MKDA) or their SUM (KDA). Across experiments the maps are summed, optionally
weighted. The ALE union ``1 - prod(1 - MA)`` is such a sum in log space: with windows
``-log1p(-K)`` the accumulator is ``-log(1 - ALE)`` and ``ALE = -expm1(-acc)``.

References
----------
Eickhoff et al. (2009) HBM 30:2907 (ALE kernel); Turkeltaub et al. (2012) HBM 33:1 (MA maps
as the maximum over an experiment's foci); Wager et al. (2007) SCAN 2:150 (MKDA spheres).
"""

from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
# Eickhoff et al. (2009): between-template and between-subject uncertainty (FWHM, mm).
TEMPLATE_UNCERTAINTY = 5.7 / (2.0 * np.sqrt(2.0 / np.pi)) * np.sqrt(8.0 * np.log(2.0))
SUBJECT_UNCERTAINTY = 11.6 / (2.0 * np.sqrt(2.0 / np.pi)) * np.sqrt(8.0 * np.log(2.0))
# NiMARE builds the ALE kernel on a 31^3 grid: the window radius never exceeds 15 voxels.
MAX_RADIUS = 15


def fwhm_from_sample_size(sample_size, template_uncertainty=None, subject_uncertainty=None):
    """FWHM (mm) of the ALE kernel for an experiment of ``sample_size`` subjects.

    Eickhoff et al. (2009): ``sqrt(template_uncertainty**2 + (subject_uncertainty**2 / n))``.
    Works on NumPy or JAX values, so it is differentiable in both uncertainty constants.

    Parameters
    ----------
    sample_size : float or array
        Number of subjects (the mean, if an experiment lists several).
    template_uncertainty, subject_uncertainty : float or None
        FWHM constants in mm; ``None`` uses Eickhoff et al.'s values
        (5.7 and 11.6 mm converted from mean distance to FWHM).

    Returns
    -------
    float or array
        FWHM in mm.
    """
    t = TEMPLATE_UNCERTAINTY if template_uncertainty is None else template_uncertainty
    s = SUBJECT_UNCERTAINTY if subject_uncertainty is None else subject_uncertainty
    return (t**2 + (s / sample_size**0.5) ** 2) ** 0.5


def sigma_voxels(fwhm, voxel_size):
    """Gaussian sigma in voxels along each axis for a FWHM in mm.

    NiMARE divides by ``sqrt(prod(voxel_size))`` which is right only for 2 mm voxels; this
    divides each axis by its own voxel size, so both agree at 2 mm.

    Parameters
    ----------
    fwhm : float
        Full width at half maximum in mm.
    voxel_size : sequence of 3 floats
        Voxel dimensions in mm.

    Returns
    -------
    array, shape (3,)
        Sigma in voxels per axis (NumPy for a plain number ``fwhm``, else JAX).
    """
    xp = jnp if isinstance(fwhm, jax.Array) else np  # NumPy for plain numbers
    return fwhm * FWHM_TO_SIGMA / xp.asarray(voxel_size, dtype=xp.result_type(float))


def gaussian_weights_1d(sigma, radius: int):
    """Return a sampled, truncated, normalised 1-D Gaussian on ``[-radius, radius]``.

    As ``scipy.ndimage.gaussian_filter`` (truncate = 4): weights ``exp(-x**2 / 2 sigma**2)``
    for ``|x| <= int(4 sigma + 0.5)``, normalised to sum 1. The truncation point has zero
    derivative, so the weights are differentiable in ``sigma``.

    Parameters
    ----------
    sigma : float or scalar array
        Standard deviation in voxels.
    radius : int
        Half-width of the returned window (static).

    Returns
    -------
    jax.Array or numpy.ndarray (for a plain number ``sigma``), shape (2 * radius + 1,)
        Weights.
    """
    if isinstance(sigma, jax.Array):
        xp, sigma_cut = jnp, jax.lax.stop_gradient(sigma)
    else:  # NumPy for plain numbers: no device program
        xp, sigma_cut = np, sigma
    x = xp.arange(-radius, radius + 1, dtype=xp.result_type(float))
    cut = xp.floor(4.0 * sigma_cut + 0.5)
    w = xp.where(xp.abs(x) <= cut, xp.exp(-0.5 * (x / sigma) ** 2), 0.0)
    return w / w.sum()


@partial(jax.jit, static_argnames="radius")
def ale_kernel_window(fwhm, voxel_size, radius: int):
    """3-D ALE kernel (sums to 1) on a ``(2 radius + 1)^3`` window, differentiable in FWHM.

    Parameters
    ----------
    fwhm : float or scalar array
        FWHM in mm.
    voxel_size : sequence of 3 floats
        Voxel dimensions in mm.
    radius : int
        Half-width of the window (static).

    Returns
    -------
    jax.Array, shape (2 radius + 1,) * 3
        Outer product of the three axes' Gaussian weights.
    """
    return _gaussian_window(fwhm, voxel_size, radius)


def _gaussian_window(fwhm, voxel_size, radius: int):
    """Outer product of the three axes' weights (JAX or NumPy, as ``fwhm`` is)."""
    s = sigma_voxels(fwhm, voxel_size)
    wx, wy, wz = (gaussian_weights_1d(s[a], radius) for a in range(3))
    return wx[:, None, None] * wy[None, :, None] * wz[None, None, :]


def ale_kernel(fwhm: float, voxel_size=(2.0, 2.0, 2.0)) -> np.ndarray:
    """Build the ALE kernel as NiMARE does: an impulse smoothed on a 31^3 grid, cropped.

    The window is cropped to the planes where the kernel exceeds machine epsilon (along the
    first axis, applied to all three), exactly as NiMARE does, so MA maps agree.

    Parameters
    ----------
    fwhm : float
        FWHM in mm.
    voxel_size : sequence of 3 floats
        Voxel dimensions in mm.

    Returns
    -------
    numpy.ndarray, shape (W, W, W), float64
        Kernel centred at ``W // 2`` (read-only: the same array is returned for the same
        ``fwhm`` and ``voxel_size``).
    """
    return _ale_kernel(float(fwhm), tuple(float(v) for v in voxel_size))


@lru_cache(maxsize=64)
def _ale_kernel(fwhm: float, voxel_size: tuple) -> np.ndarray:
    """:func:`ale_kernel` of plain floats, cached (kernels depend on these values only)."""
    full = _gaussian_window(fwhm, voxel_size, MAX_RADIUS)  # NumPy: no program to load
    keep = np.flatnonzero((full > np.spacing(1)).any(axis=(1, 2)))
    lo, hi = keep.min(), keep.max()
    half = max(MAX_RADIUS - lo, hi - MAX_RADIUS)
    crop = slice(MAX_RADIUS - half, MAX_RADIUS + half + 1)
    return _frozen(full[crop, crop, crop])


def sphere_offsets(r: float, voxel_size=(2.0, 2.0, 2.0)) -> np.ndarray:
    """Voxel offsets whose centres lie within ``r`` mm of the centre voxel's centre.

    Parameters
    ----------
    r : float
        Radius in mm.
    voxel_size : sequence of 3 floats
        Voxel dimensions in mm.

    Returns
    -------
    numpy.ndarray, shape (n, 3), int
        Offsets.
    """
    vs = np.asarray(voxel_size, float)
    half = np.floor(r / vs).astype(int)
    grid = np.stack(
        np.meshgrid(*(np.arange(-h, h + 1) for h in half), indexing="ij"), axis=-1
    ).reshape(-1, 3)
    return grid[np.sqrt(((grid * vs) ** 2).sum(1)) <= r]


def sphere_window(r: float, voxel_size=(2.0, 2.0, 2.0), value: float = 1.0) -> np.ndarray:
    """Binary sphere of radius ``r`` mm as a dense ``(W, W, W)`` window.

    Parameters
    ----------
    r : float
        Radius in mm.
    voxel_size : sequence of 3 floats
        Voxel dimensions in mm.
    value : float
        Value inside the sphere.

    Returns
    -------
    numpy.ndarray, shape (W, W, W)
        Window centred at ``W // 2`` (cubic: W from the largest axis extent).
    """
    off = sphere_offsets(r, voxel_size)
    half = int(np.abs(off).max()) if len(off) else 0
    win = np.zeros((2 * half + 1,) * 3)
    win[tuple((off + half).T)] = value
    return win


def soft_sphere_window(r, voxel_size, radius: int, temperature):
    """Differentiable sphere: ``sigmoid((r - distance) / temperature)`` on a window.

    Tends to the binary sphere of :func:`sphere_window` as ``temperature -> 0``
    (voxels exactly at distance ``r`` tend to 1/2).

    Parameters
    ----------
    r : float or scalar array
        Radius in mm.
    voxel_size : sequence of 3 floats
        Voxel dimensions in mm.
    radius : int
        Half-width of the window in voxels (static); must cover ``r``.
    temperature : float or scalar array
        Softness in mm.

    Returns
    -------
    jax.Array, shape (2 radius + 1,) * 3
        Soft sphere.
    """
    ax = jnp.arange(-radius, radius + 1, dtype=jnp.result_type(float))
    vs = jnp.asarray(voxel_size, dtype=ax.dtype)
    d = jnp.sqrt(
        (ax[:, None, None] * vs[0]) ** 2
        + (ax[None, :, None] * vs[1]) ** 2
        + (ax[None, None, :] * vs[2]) ** 2
    )
    return jax.nn.sigmoid((r - d) / temperature)


def stack_windows(windows) -> np.ndarray:
    """Zero-pad windows of different odd sizes to one common size and stack them.

    Parameters
    ----------
    windows : list of numpy.ndarray, each shape (w, w, w) with odd w
        Kernels, each centred.

    Returns
    -------
    numpy.ndarray, shape (n, W, W, W)
        Centred, zero-padded windows.
    """
    size = max(w.shape[0] for w in windows)
    out = np.zeros((len(windows), size, size, size))
    for n, w in enumerate(windows):
        p = (size - w.shape[0]) // 2
        out[n, p : p + w.shape[0], p : p + w.shape[1], p : p + w.shape[2]] = w
    return out


def schedule(exp_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order of window operations for :func:`accumulate`: each experiment's foci, then flushes.

    Parameters
    ----------
    exp_index : numpy.ndarray, shape (n_foci,), int
        Experiment of each focus.

    Returns
    -------
    step_focus : numpy.ndarray, shape (2 n_foci,), int32
        Focus touched by each step.
    step_flush : numpy.ndarray, shape (2 n_foci,), bool
        False: combine the focus's window into the scratch plane; True: add the scratch
        plane's window into the accumulator and clear it.
    """
    steps, flush = [], []
    exp_index = np.asarray(exp_index)
    order = np.argsort(exp_index, kind="stable")
    bounds = np.flatnonzero(np.diff(exp_index[order])) + 1
    for group in np.split(order, bounds):
        steps += [group, group]
        flush += [np.zeros(len(group), bool), np.ones(len(group), bool)]
    if not steps:
        return np.zeros(0, np.int32), np.zeros(0, bool)
    return np.concatenate(steps).astype(np.int32), np.concatenate(flush)


def window_frame(ijk, shape, width: int, inside: bool = False):
    """Return the volume's padding and each focus's window corner in the padded volume.

    A window reaching the volume belongs to a focus within ``width // 2`` voxels of it
    along every axis; such foci keep their exact position. A focus farther out along an
    axis is moved along it to just out of reach (``-(width // 2 + 1)`` or
    ``shape + width // 2``), where its window still misses the volume. With a padding of
    ``width`` voxels every start then lies in the padded volume: ``dynamic_slice`` and
    ``dynamic_update_slice`` would otherwise clamp it, silently shifting the window.

    Parameters
    ----------
    ijk : int array, shape (..., 3)
        Voxel indices of the foci, inside the volume or not.
    shape : tuple of 3 ints
        Volume shape.
    width : int
        Window width (odd).
    inside : bool
        True promises that every focus lies inside the volume (as foci relocated to mask
        voxels do): half a window of padding then suffices, a smaller volume for the
        permutation loops. A focus outside would have its window shifted.

    Returns
    -------
    pad : int
        Padding on each side: the padded volume's shape is ``shape + 2 * pad``.
    corner : jax.Array or numpy.ndarray (for a NumPy ``ijk``), shape (..., 3), int32
        Window corners in the padded volume.
    """
    half = width // 2
    pad = window_pad(width, inside)
    far = np.asarray(shape) + half
    xp = np if isinstance(ijk, np.ndarray) else jnp  # NumPy on the host, JAX in programs
    return pad, xp.clip(xp.asarray(ijk, np.int32), -(half + 1), far) + (pad - half)


def window_pad(width: int, inside: bool = False) -> int:
    """Return the padding on each side of the volume :func:`window_frame` puts windows in."""
    return width // 2 if inside else width


def _padded_shape(shape, pad: int) -> tuple:
    return tuple(s + 2 * pad for s in shape)


def _crop(vol, shape, pad: int):
    """Cut the padding of ``pad`` voxels off a volume."""
    return vol[pad : pad + shape[0], pad : pad + shape[1], pad : pad + shape[2]]


def _larger(a, b):
    """Elementwise maximum of two NaN-free arrays, as the window loops combine windows.

    ``jnp.maximum`` propagates NaN, which XLA's CPU backend lowers to a call per element
    that its vectoriser leaves scalar and slow; a compare and select is the same maximum
    for NaN-free values (windows and maps never hold NaN). Measured on laird's ALE FWE
    null: 15-20 % less CPU per permutation (``benchmarks/profile_fwe.py``).
    """
    return jnp.where(a > b, a, b)


@partial(jax.jit, static_argnames=("shape", "combine", "inside"))
def accumulate(
    ijk, focus_window, focus_weight, windows, step_focus, step_flush, shape, combine, inside=False
):
    """Sum over experiments of (weighted) per-experiment maps built from focus windows.

    For each experiment ``e``: ``map_e = combine_{f in e} window_f`` placed at the focus,
    with ``combine`` max or sum; returns ``sum_e weight_e * map_e`` on the volume.

    The loop carries ONE complex64 volume: the real part is the accumulator, the imaginary
    part the current experiment's scratch map. A single carried array is updated in place by
    XLA; two separate (or stacked) float planes are copied or shuffled at every step, which
    measured 4x slower on CPU.

    Parameters
    ----------
    ijk : int array, shape (n_foci, 3)
        Voxel indices of the foci, inside the volume or not (see :func:`window_frame`).
    focus_window : int array, shape (n_foci,)
        Index into ``windows`` of each focus's kernel.
    focus_weight : float array, shape (n_foci,)
        Weight of each focus's experiment.
    windows : float array, shape (n_windows, W, W, W)
        Centred kernels (W odd); float32 runs in complex64, float64 in complex128.
    step_focus, step_flush : arrays, shape (2 n_foci,)
        From :func:`schedule`.
    shape : tuple of 3 ints
        Volume shape (static).
    combine : {"max", "sum"}
        How an experiment's windows combine (static).
    inside : bool
        Promise that all foci lie inside the volume (static; see :func:`window_frame`).

    Returns
    -------
    jax.Array, shape ``shape``, dtype of ``windows``
        The accumulated volume.
    """
    width = windows.shape[-1]
    pad, corner = window_frame(ijk, shape, width, inside)
    buf = jnp.zeros(_padded_shape(shape, pad), jnp.result_type(windows.dtype, jnp.complex64))
    mix = _larger if combine == "max" else jnp.add
    focus_weight = jnp.asarray(focus_weight, windows.dtype)

    def step(s, buf):
        f = step_focus[s]
        start = (corner[f, 0], corner[f, 1], corner[f, 2])
        win = jax.lax.dynamic_slice(buf, start, (width, width, width))
        acc, scratch = win.real, win.imag
        new = jnp.where(
            step_flush[s],
            jax.lax.complex(acc + focus_weight[f] * scratch, jnp.zeros_like(scratch)),
            jax.lax.complex(acc, mix(scratch, windows[focus_window[f]])),
        )
        return jax.lax.dynamic_update_slice(buf, new, start)

    buf = jax.lax.fori_loop(0, step_focus.shape[0], step, buf)
    return _crop(buf, shape, pad).real


@partial(jax.jit, static_argnames=("shape", "combine"))
def experiment_map(ijk, valid, window, shape, combine):
    """One experiment's modelled-activation volume (max or sum of its foci's windows).

    Parameters
    ----------
    ijk : int array, shape (n, 3)
        Voxel indices, inside the volume or not (padded rows allowed).
    valid : bool array, shape (n,)
        False for padding rows.
    window : float array, shape (W, W, W)
        Centred kernel.
    shape : tuple of 3 ints
        Volume shape (static).
    combine : {"max", "sum"}
        How windows combine (static).

    Returns
    -------
    jax.Array, shape ``shape``
        The MA volume.
    """
    pad, corner = window_frame(ijk, shape, window.shape[-1])
    vol = _padded_map(corner, valid, window, _padded_shape(shape, pad), combine)
    return _crop(vol, shape, pad)


def _padded_map(corner, valid, window, padded, combine):
    """MA volume of padded shape ``padded`` from window corners (see :func:`window_frame`)."""
    box = window.shape
    mix = _larger if combine == "max" else jnp.add

    def step(f, vol):
        start = (corner[f, 0], corner[f, 1], corner[f, 2])
        win = jax.lax.dynamic_slice(vol, start, box)
        new = jnp.where(valid[f], mix(win, window), win)
        return jax.lax.dynamic_update_slice(vol, new, start)

    return jax.lax.fori_loop(0, corner.shape[0], step, jnp.zeros(padded, window.dtype))


def resolve_strategy(strategy: str = "auto") -> str:
    """Pick how foci windows are applied: ``"window"`` (sequential loop) or ``"scatter"``.

    Parameters
    ----------
    strategy : {"auto", "window", "scatter"}
        ``"auto"``: the window loop on CPU (in-place updates, measured faster there), the
        chunked scatter on GPU/TPU (parallel atomic updates).

    Returns
    -------
    str
        ``"window"`` or ``"scatter"``.
    """
    if strategy not in ("auto", "window", "scatter"):
        raise ValueError(f"strategy must be 'auto', 'window' or 'scatter', not {strategy!r}")
    if strategy == "auto":
        return "window" if jax.default_backend() == "cpu" else "scatter"
    return strategy


def _union_term(values, union: str):
    return -jnp.log1p(-values) if union == "probabilistic" else values


@partial(jax.jit, static_argnames=("shape", "combine", "union", "n_bins", "n_counted", "inside"))
def summarize_experiments(
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
    n_counted=0,
    tables=None,
    inside=False,
    frame=None,
):
    """One pass over experiments: their combined statistic, and the first ones' histograms.

    Experiments can be summarised in chunks: each chunk's call continues from the statistic
    of the previous ones, with the same additions in the same order as a single call over
    all experiments. The MA histograms of the first ``n_counted`` experiments are counted
    here; the others' are left to the host (:func:`experiment_histograms`), which counts
    them while the device runs: a fit then uses both a device and a host core.

    Parameters
    ----------
    acc : float array, shape (n_voxels,), or None
        Statistic accumulated over the experiments of earlier chunks, in the accumulation
        dtype (the default float: float64 inside ``jax.enable_x64``); None starts from
        zeros (without scattering them into the volume).
    ijk : int array, shape (n_exp, max_foci, 3)
        Foci of each experiment, padded.
    valid : bool array, shape (n_exp, max_foci)
        False for padding; valid rows come first.
    exp_window : int array, shape (n_exp,)
        Kernel (index into ``windows``) of each experiment.
    exp_weight : float array, shape (n_exp,)
        Weight of each experiment in the sum (ones for ALE).
    windows : float array, shape (n_windows, W, W, W)
        Kernels.
    mask_index : int array, shape (n_voxels,)
        Flat C-order indices of the in-mask voxels.
    shape : tuple of 3 ints
        Volume shape (static).
    combine : {"max", "sum"}
        Within-experiment combination (static).
    union : {"probabilistic", "sum"}
        ``"probabilistic"``: returns ``-log(prod_e(1 - MA_e))`` (ALE = ``-expm1(-out)``);
        ``"sum"``: returns ``sum_e weight_e MA_e`` (static).
    n_bins : int
        Number of histogram bins of width ``1 / inv_step`` starting at 0 (static); values
        are assigned to the nearest bin centre, ties upward, clipped to the last bin.
    inv_step : float
        Inverse bin width.
    n_counted : int
        Experiments (the first ones) whose histograms are counted here (static).
    tables : tuple of arrays, optional
        :func:`window_levels` of ``windows``; required when ``combine == "max"`` and
        ``n_counted > 0``.
    inside : bool
        Promise that every valid focus lies inside the volume (static; see
        :func:`window_frame`): a smaller padded volume.
    frame : tuple of arrays, optional
        :func:`mask_frame` of ``mask_index``, ``shape`` and the padding
        (``window_pad(W, inside)``), made once per mask on the host; computed here if not
        given.

    Returns
    -------
    stat : jax.Array, shape (n_voxels,)
        ``acc`` plus the combined statistic of these experiments as described for
        ``union``, in the dtype of ``acc`` (each term is still float32).
    hist : jax.Array, shape (n_counted, n_bins)
        Counts of the first experiments' in-mask MA values per bin (zeros in bin 0).
    ma_max : jax.Array, shape (n_counted,)
        Largest in-mask MA value of each of them.
    """
    # Only the foci's windows are visited, never the whole volume, and only the real foci
    # (each experiment loops over its own count, not the padded slots). One padded volume
    # is carried from experiment to experiment, a single complex array that XLA updates in
    # place: the real part holds the statistic, the imaginary part the current
    # experiment's map, built window by window, then read back window by window. Each read
    # adds the window's values to the statistic (and, for a counted experiment, its
    # in-mask values to the histogram) and clears them, so a voxel in several windows
    # counts once and the map is empty for the next experiment; each voxel's statistic
    # gets the same additions in the same order as a dense sum would. Voxels outside the
    # mask hold NaN statistics, never read back.
    n_voxels = mask_index.shape[0]
    width = windows.shape[-1]
    pad, corner = window_frame(ijk, shape, width, inside)
    padded = _padded_shape(shape, pad)
    if frame is None:
        flat = _padded_index(mask_index, shape, pad)
        in_mask = (
            None if acc is not None else jnp.zeros(padded, bool).reshape(-1).at[flat].set(True)
        )
    else:
        flat, in_mask = frame
    acc_dtype = jnp.result_type(float) if acc is None else acc.dtype
    ctype = jax.lax.complex(jnp.zeros((), acc_dtype), jnp.zeros((), acc_dtype)).dtype
    if acc is None:
        buf = jnp.where(in_mask, jnp.zeros((), ctype), jnp.full((), np.nan, ctype))
    else:
        buf = jnp.full(int(np.prod(padded)), np.nan, ctype).at[flat].set(acc.astype(ctype))
    box = (width,) * 3
    count = jnp.sum(valid, axis=1, dtype=jnp.int32)  # valid rows come first
    if combine == "max":
        # An uncounted experiment's map holds union terms: they grow with the value, so
        # the max of the terms is the term of the max. A counted one's holds ranks (see
        # window_levels): the max of ranks is the rank of the max, and a voxel's term and
        # bin are looked up in tables made once per window.
        plain = _union_term(windows, union).astype(acc_dtype)
        if n_counted:
            levels, ranks = tables
            ranked = ranks.astype(acc_dtype)
            terms = _union_term(levels, union).astype(acc_dtype)
            level_bins = _nearest_bin(levels, inv_step, n_bins)
            n_codes = levels.shape[1]
    else:
        plain = ranked = windows.astype(acc_dtype)
        n_codes = n_bins

    def put(e_corner, window):
        def step(f, buf):
            start = tuple(e_corner[f])
            win = jax.lax.dynamic_slice(buf, start, box)
            if combine == "max":
                code = _larger(win.imag, window)
            else:  # sums in the windows' precision
                code = (win.imag.astype(windows.dtype) + window.astype(windows.dtype)).astype(
                    win.imag.dtype
                )
            return jax.lax.dynamic_update_slice(buf, jax.lax.complex(win.real, code), start)

        return step

    def one(buf, xs):
        e_corner, e_count, e_win, e_w = xs

        def take(f, buf):
            start = tuple(e_corner[f])
            win = jax.lax.dynamic_slice(buf, start, box)
            if combine == "max":
                term = win.imag
            else:
                term = _union_term(win.imag.astype(windows.dtype), union).astype(acc_dtype)
            new = jax.lax.complex(win.real + e_w * term, jnp.zeros_like(win.imag))
            return jax.lax.dynamic_update_slice(buf, new, start)

        buf = jax.lax.fori_loop(0, e_count, put(e_corner, plain[e_win]), buf)
        return jax.lax.fori_loop(0, e_count, take, buf), None

    def counted(buf, xs):
        e_corner, e_count, e_win, e_w = xs

        def take(f, carry):
            buf, hist, top = carry
            start = tuple(e_corner[f])
            win = jax.lax.dynamic_slice(buf, start, box)
            code = jnp.where(jnp.isnan(win.real), 0, win.imag)
            real, code = jax.lax.optimization_barrier((win.real, code))
            if combine == "max":
                symbol = code.astype(jnp.int32)
                term = e_w * terms[e_win][symbol]
            else:
                value = code.astype(windows.dtype)
                symbol = _nearest_bin(value, inv_step, n_bins)
                term = e_w * _union_term(value, union).astype(acc_dtype)
            term = jax.lax.optimization_barrier(term)
            # symbols computed apart from the count (measured faster than fused into it)
            symbol = jax.lax.optimization_barrier(symbol.reshape(-1))
            hist = hist + jnp.bincount(symbol, length=n_codes)
            top = jnp.maximum(top, code.max())
            # zero, but computed from the tallies: XLA then reads the window for them
            # before overwriting it in place, instead of copying the volume every step
            zero = jnp.minimum(top, 0) + jnp.minimum(hist[0], 0)
            new = jax.lax.complex(real + term, jnp.broadcast_to(zero, box).astype(real.dtype))
            return jax.lax.dynamic_update_slice(buf, new, start), hist, top

        buf = jax.lax.fori_loop(0, e_count, put(e_corner, ranked[e_win]), buf)
        tallies = (jnp.zeros(n_codes, jnp.zeros(0, int).dtype), jnp.zeros((), acc_dtype))
        buf, hist, top = jax.lax.fori_loop(0, e_count, take, (buf, *tallies))
        if combine == "max":  # counts per rank to counts per bin; the top rank's value
            hist = jnp.zeros(n_bins, hist.dtype).at[level_bins[e_win]].add(hist)
            top = levels[e_win][top.astype(jnp.int32)]
        return buf, (hist.at[0].set(n_voxels - hist[1:].sum()), top.astype(windows.dtype))

    xs = (corner, count, exp_window, exp_weight)
    buf = buf.reshape(padded)
    hist = jnp.zeros((0, n_bins), jnp.zeros(0, int).dtype)
    ma_max = jnp.zeros(0, windows.dtype)
    if n_counted:
        buf, (hist, ma_max) = jax.lax.scan(counted, buf, tuple(x[:n_counted] for x in xs))
    buf, _ = jax.lax.scan(one, buf, tuple(x[n_counted:] for x in xs))
    return buf.reshape(-1)[flat].real, hist, ma_max


def experiment_histograms(
    ijk, valid, exp_window, windows, frame, shape, combine, n_bins, inv_step, inside=False
):
    """Each experiment's histogram of in-mask MA values, and its largest (host, NumPy).

    The counts :func:`summarize_experiments` leaves to the host: run while the device sums
    the statistic (the second core is otherwise idle during a fit). Each experiment's map is
    built window by window in a padded volume, then read back window by window, each read
    tallied and cleared, so a voxel in several windows counts once (as in
    :func:`summarize_experiments`). A max map holds each window value's rank among the
    window's distinct values (:func:`window_levels`), so its counts are per rank and become
    counts per bin once per experiment; a sum map holds the float32 sums, added in the
    device's order.

    Parameters
    ----------
    ijk : numpy.ndarray, shape (n_exp, max_foci, 3), int
        Foci of each experiment, padded.
    valid : numpy.ndarray, shape (n_exp, max_foci), bool
        False for padding.
    exp_window : numpy.ndarray, shape (n_exp,), int
        Kernel (index into ``windows``) of each experiment.
    windows : numpy.ndarray, shape (n_windows, W, W, W)
        Kernels (used as float32).
    frame : tuple of arrays
        :func:`mask_frame` of the mask, ``shape`` and ``window_pad(W, inside)``.
    shape : tuple of 3 ints
        Volume shape.
    combine : {"max", "sum"}
        Within-experiment combination.
    n_bins : int
        Number of histogram bins of width ``1 / inv_step`` starting at 0; values are
        assigned to the nearest bin centre, ties upward, clipped to the last bin.
    inv_step : float
        Inverse bin width.
    inside : bool
        Every valid focus lies inside the volume (half a window of padding).

    Returns
    -------
    hist : numpy.ndarray, shape (n_exp, n_bins), int64
        Counts of each experiment's in-mask MA values per bin (zeros in bin 0).
    ma_max : numpy.ndarray, shape (n_exp,), float32
        Largest in-mask MA value of each experiment.
    """
    windows = np.asarray(windows, np.float32)
    width = windows.shape[-1]
    pad, corner = window_frame(np.asarray(ijk), shape, width, inside)
    flat, in_mask = (np.asarray(a) for a in frame)
    in_mask = in_mask.reshape(_padded_shape(shape, pad))
    inv_step = float(inv_step)  # a Python float: binning in the values' float32
    n_exp = corner.shape[0]
    hist = np.zeros((n_exp, n_bins), np.int64)
    ma_max = np.zeros(n_exp, np.float32)
    if combine == "max":
        levels, ranks = window_levels(windows)
        n_levels = levels.shape[1]
        level_bins = _nearest_bin(levels, inv_step, n_bins)
        # rank n_levels outside the mask: above every rank, so a max leaves it, and a min
        # with ``outside`` clears a window's mask voxels to 0 and keeps it
        outside = np.where(in_mask, 0, n_levels).astype(np.uint16)
        scratch = outside.copy()
    else:
        scratch = np.zeros(in_mask.shape, np.float32)
    for e in range(n_exp):
        views = [
            tuple(slice(c, c + width) for c in xyz) for xyz in corner[e][np.asarray(valid[e])]
        ]
        if combine == "max":
            r = ranks[exp_window[e]]
            maps = [scratch[v] for v in views]
            for m in maps:
                np.maximum(m, r, out=m)
            read = np.empty((len(maps), *r.shape), r.dtype)  # each window as read, then cleared
            for m, v, dst in zip(maps, views, read, strict=True):
                np.copyto(dst, m)
                np.minimum(m, outside[v], out=m)
            counts = np.bincount(read.reshape(-1), minlength=n_levels + 1)[:n_levels]
            hist[e] = np.bincount(level_bins[exp_window[e]], counts, n_bins).astype(np.int64)
            occupied = np.flatnonzero(counts)  # none without foci in the volume
            ma_max[e] = levels[exp_window[e], occupied[-1] if occupied.size else 0]
        else:
            w = windows[exp_window[e]]
            for v in views:
                np.add(scratch[v], w, out=scratch[v])
            for v in views:
                values = scratch[v][in_mask[v]]
                hist[e] += np.bincount(_nearest_bin(values, inv_step, n_bins), minlength=n_bins)
                ma_max[e] = max(ma_max[e], values.max(initial=0.0))
                scratch[v] = 0.0
        hist[e, 0] = flat.shape[0] - hist[e, 1:].sum()
    return hist, ma_max


@partial(jax.jit, static_argnames=("union", "n_bins"))
def summarize_values(acc, ma, exp_weight, union, n_bins, inv_step):
    """:func:`summarize_experiments` for MA values given as a (n_exp, n_voxels) array.

    Used by kernels that make whole-brain maps rather than per-focus windows.

    Parameters
    ----------
    acc : float array, shape (n_voxels,)
        As in :func:`summarize_experiments`.
    ma : float array, shape (n_exp, n_voxels)
        Each experiment's MA values over the mask.
    exp_weight, union, n_bins, inv_step
        As in :func:`summarize_experiments`.

    Returns
    -------
    stat, hist, ma_max : jax.Array
        As in :func:`summarize_experiments`.
    """

    def one(acc, xs):
        values, e_w = xs
        hist = jnp.bincount(_nearest_bin(values, inv_step, n_bins), length=n_bins)
        return acc + e_w * _union_term(values, union).astype(acc.dtype), (hist, values.max())

    stat, (hist, ma_max) = jax.lax.scan(one, acc, (ma, exp_weight))
    return stat, hist, ma_max


def mask_box(mask_index, shape) -> tuple[np.ndarray, tuple, np.ndarray]:
    """Return the smallest box holding every mask voxel, and the mask's indices in it.

    Cropping a volume to this box before placing windows keeps every in-mask value (a
    window reaching past the box only covers voxels outside the mask) while the padded
    volume :func:`summarize_experiments` carries gets smaller.

    Parameters
    ----------
    mask_index : numpy.ndarray, shape (n_voxels,), int
        Flat C-order indices of the in-mask voxels of a volume of shape ``shape``.
    shape : tuple of 3 ints
        Volume shape.

    Returns
    -------
    origin : numpy.ndarray, shape (3,), int32
        Voxel of the volume at the box's corner (subtract it from foci indices).
    box : tuple of 3 ints
        Box shape.
    box_index : numpy.ndarray, shape (n_voxels,), int32
        Flat C-order indices of the in-mask voxels in the box.

    Notes
    -----
    Results are cached by the values of ``mask_index`` and ``shape`` (never by object
    identity), so a repeated fit on one mask skips the index arithmetic; the returned
    arrays are read-only.
    """
    flat = np.ascontiguousarray(mask_index)
    return _mask_box(flat.dtype.str, flat.tobytes(), tuple(int(s) for s in shape))


@lru_cache(maxsize=8)
def _mask_box(dtype: str, flat: bytes, shape: tuple) -> tuple[np.ndarray, tuple, np.ndarray]:
    """:func:`mask_box` of the indices' dtype and bytes (a hashable, immutable cache key)."""
    mask_index = np.frombuffer(flat, dtype)
    ijk = np.stack(np.unravel_index(mask_index, shape))
    if ijk.shape[1] == 0:
        return _frozen(np.zeros(3, np.int32)), shape, _frozen(mask_index.astype(np.int32))
    origin = ijk.min(axis=1)
    box = tuple(int(n) for n in ijk.max(axis=1) - origin + 1)
    box_index = np.ravel_multi_index(tuple(ijk - origin[:, None]), box).astype(np.int32)
    return _frozen(origin.astype(np.int32)), box, _frozen(box_index)


def mask_frame(mask_index, shape, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the mask voxels sit in a volume padded by ``pad`` voxels on each side.

    What :func:`summarize_experiments` needs of the mask (its ``frame``), made on the host
    once per mask instead of inside every call.

    Parameters
    ----------
    mask_index : numpy.ndarray, shape (n_voxels,), int
        Flat C-order indices of the in-mask voxels of a volume of shape ``shape``.
    shape : tuple of 3 ints
        Volume shape.
    pad : int
        Padding on each side (:func:`window_pad`).

    Returns
    -------
    flat : jax.Array, shape (n_voxels,), int32
        Flat C-order indices of the mask voxels in the padded volume.
    in_mask : jax.Array, shape (prod(shape + 2 pad),), bool
        True at those indices.

    Notes
    -----
    Cached by the values of the arguments, as :func:`mask_box`, as device arrays, so a
    repeated fit on one mask neither recomputes nor transfers them.
    """
    flat = np.ascontiguousarray(mask_index)
    return _mask_frame(flat.dtype.str, flat.tobytes(), tuple(int(s) for s in shape), int(pad))


@lru_cache(maxsize=8)
def _mask_frame(dtype: str, flat: bytes, shape: tuple, pad: int):
    """:func:`mask_frame` of the indices' dtype and bytes (a hashable, immutable cache key)."""
    ijk = np.stack(np.unravel_index(np.frombuffer(flat, dtype), shape)) + pad
    padded = _padded_shape(shape, pad)
    index = np.ravel_multi_index(tuple(ijk), padded).astype(np.int32)
    in_mask = np.zeros(int(np.prod(padded)), bool)
    in_mask[index] = True
    return jax.device_put(index), jax.device_put(in_mask)


def _frozen(a: np.ndarray) -> np.ndarray:
    """Make ``a`` read-only and return it (a cached result must not be changed)."""
    a.flags.writeable = False
    return a


def _padded_index(mask_index, shape, pad: int):
    """Flat C-order indices in the volume padded by ``pad`` of flat indices in ``shape``."""
    ijk = jnp.stack(jnp.unravel_index(mask_index, shape), axis=-1) + pad
    return jnp.ravel_multi_index(tuple(ijk.T), _padded_shape(shape, pad), mode="clip")


def window_levels(windows) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of max-combined windows, and each voxel's rank among them (host).

    Cached by value: a repeated fit with the same kernels reuses them.

    Parameters
    ----------
    windows : numpy.ndarray, shape (n_windows, W, W, W)
        Kernels (used as float32).

    Returns
    -------
    levels : numpy.ndarray, shape (n_windows, n_levels), float32
        ``levels[w, 0] = 0`` (no window), then window ``w``'s distinct values in
        increasing order, padded with zeros (``n_levels``: the largest count of distinct
        values plus one).
    ranks : numpy.ndarray, shape (n_windows, W, W, W), uint16
        ``levels[w, ranks[w, ...]] == windows[w, ...]``: equal values share a rank and a
        larger value has a larger rank (always at least 1).
    """
    windows = np.ascontiguousarray(windows, np.float32)
    return _window_levels(windows.tobytes(), windows.shape)


@lru_cache(maxsize=8)
def _window_levels(flat: bytes, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    values = np.frombuffer(flat, np.float32).reshape(shape[0], -1)
    distinct = [np.unique(v) for v in values]
    levels = np.zeros((shape[0], 1 + max(d.size for d in distinct)), np.float32)
    ranks = np.empty(values.shape, np.uint16)
    for w, (v, d) in enumerate(zip(values, distinct, strict=True)):
        levels[w, 1 : d.size + 1] = d
        ranks[w] = 1 + np.searchsorted(d, v)
    return _frozen(levels), _frozen(ranks.reshape(shape))


def _nearest_bin(values, inv_step, n_bins):
    """Nearest bin of width ``1 / inv_step`` from 0 (ties upward), clipped to the bins.

    NumPy in, NumPy out (host counts); JAX arrays otherwise. The same arithmetic either
    way: in the values' dtype when ``inv_step`` is a Python float.
    """
    xp = np if isinstance(values, np.ndarray) else jnp
    scaled = values * inv_step
    lower = xp.floor(scaled)
    return xp.clip((lower + (scaled - lower >= 0.5)).astype(np.int32), 0, n_bins - 1)


@partial(jax.jit, static_argnames=("shape", "combine"))
def ma_values(ijk, valid, exp_window, windows, mask_index, shape, combine):
    """Modelled-activation values of every experiment over the mask.

    Parameters
    ----------
    ijk, valid, exp_window, windows, mask_index, shape, combine
        As in :func:`summarize_experiments`.

    Returns
    -------
    jax.Array, shape (n_exp, n_voxels)
        MA values.
    """

    def one(xs):
        e_ijk, e_valid, e_win = xs
        vol = experiment_map(e_ijk, e_valid, windows[e_win], shape, combine)
        return vol.reshape(-1)[mask_index]

    return jax.lax.map(one, (ijk, valid, exp_window))


@partial(jax.jit, static_argnames=("shape", "combine", "chunk", "inside"))
def accumulate_scatter(
    ijk, valid, exp_window, exp_weight, windows, shape, combine, chunk=8, inside=False
):
    """:func:`accumulate` built from scatters, ``chunk`` experiments at a time (GPU strategy).

    Each chunk's experiments are scattered (max or add) into their own rows of a
    ``(chunk, volume)`` buffer, whose weighted sum over rows is added to the accumulator.
    On GPUs the scatters are atomic and parallel; on CPUs the sequential window loop of
    :func:`accumulate` is faster (``benchmarks/bench_strategies.py``). The results agree to
    float rounding.

    Parameters
    ----------
    ijk : int array, shape (n_exp, max_foci, 3)
        Foci of each experiment, padded (see ``FociArrays.padded``).
    valid : bool array, shape (n_exp, max_foci)
        False for padding.
    exp_window : int array, shape (n_exp,)
        Kernel of each experiment (index into ``windows``).
    exp_weight : float array, shape (n_exp,)
        Weight of each experiment.
    windows : float array, shape (n_windows, W, W, W)
        Centred kernels.
    shape : tuple of 3 ints
        Volume shape (static).
    combine : {"max", "sum"}
        Within-experiment combination (static).
    chunk : int
        Experiments per scatter (static); memory is ``chunk`` (padded) volumes.
    inside : bool
        Promise that all foci lie inside the volume (static; see :func:`window_frame`).

    Returns
    -------
    jax.Array, shape ``shape``
        The accumulated volume.
    """
    n_exp, width = ijk.shape[0], windows.shape[-1]
    pad, corner = window_frame(ijk, shape, width, inside)
    padded = _padded_shape(shape, pad)
    strides = np.array([padded[1] * padded[2], padded[2], 1], np.int32)
    offsets = jnp.asarray(np.indices((width,) * 3).reshape(3, -1).T @ strides, jnp.int32)
    n_chunks = -(-n_exp // chunk)
    extra = n_chunks * chunk - n_exp

    def extend(a, value=0):
        return jnp.concatenate([jnp.asarray(a), jnp.full((extra, *a.shape[1:]), value, a.dtype)])

    xs = (
        extend(corner).reshape(n_chunks, chunk, *ijk.shape[1:]),
        extend(jnp.asarray(valid)).reshape(n_chunks, chunk, -1),
        extend(jnp.asarray(exp_window, jnp.int32)).reshape(n_chunks, chunk),
        extend(jnp.asarray(exp_weight, windows.dtype)).reshape(n_chunks, chunk),
    )
    rows = jnp.arange(chunk)[:, None, None]

    def body(acc, x):
        c_start, c_valid, c_win, c_w = x
        idx = (c_start @ strides)[..., None] + offsets  # (chunk, max_foci, W^3)
        vals = windows[c_win].reshape(chunk, 1, -1) * c_valid[..., None]
        buf = jnp.zeros((chunk, int(np.prod(padded))), windows.dtype)
        buf = buf.at[rows, idx].max(vals) if combine == "max" else buf.at[rows, idx].add(vals)
        return acc + (c_w[:, None] * buf).sum(0), None

    acc, _ = jax.lax.scan(body, jnp.zeros(int(np.prod(padded)), windows.dtype), xs)
    return _crop(acc.reshape(padded), shape, pad)

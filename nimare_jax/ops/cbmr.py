"""Coordinate-based meta-regression (CBMR): separable spline basis, likelihoods, fit, information.

The model (Yu et al., 2024, as implemented by NiMARE 0.22.1's ``nimare.meta.cbmr``) is a
log-linear intensity over voxels. Experiments sharing one row of spatial loadings form a
*pattern* ``p``; its log intensity is ``s_p = Phi (L_p @ beta)`` with ``Phi`` the tensor-product
cubic B-spline basis, and experiment ``i`` of pattern ``p`` has mean
``E_i exp(G_i @ gamma) exp(s_p)`` (exposure ``E_i``, moderators ``G_i``).

On large voxel sets ``Phi`` is never formed (:class:`SplineBasis`). Its columns are products
``x_a(i) y_b(j) z_c(k)`` of three 1-D bases on the mask's bounding box, so ``Phi @ beta`` is:
scatter ``beta`` into the full ``(n_x, n_y, n_z)`` coefficient tensor (dropped columns are
zeros), contract z and y on the bounding-box grid (two small mode products), gather each voxel's
``(j, k)`` column and contract x with the voxel's own x-row. Cost
``O(n_x n_y N_y N_z + n_vox n_x)`` instead of ``O(n_vox n_bases)``; the whole 2 mm brain at
spacing 10 needs no 0.84 GB basis. The same structure gives ``Phi^T diag(w) Phi`` on the grid
(:func:`basis_gram`), used by the closed-form Fisher information of all three models
(:func:`poisson_terms`, :func:`overdispersed_terms`) and their Newton fits. Small voxel sets (the
incidence-filtered default: about a thousand voxels) keep ``Phi`` itself (:class:`DenseBasis`,
:func:`prefer_dense`, built from each voxel's 64 non-zero local products):
there a fit's time is mostly XLA compiling its program, and matrix products compile to far
fewer operations than the grid's scatters, mode products and gathers. :func:`basis_apply`,
:func:`basis_transpose` and :func:`basis_gram` take either.

The Newton and information programs are compiled with :data:`FAST_COMPILE` (XLA's CPU loop
emitters), and what needs no matrix algebra is done on the host (benchmarks/README.md, "Cold
compile").

All numerics here are float64: call them inside ``jax.enable_x64(True)`` (the estimator in
:mod:`nimare_jax.meta.cbmr` does; the rest of nimare_jax stays float32).

References
----------
Yu, Y., et al. (2024). Neurosynth compose / CBMR: Coordinate-based meta-regression.
Eisenberg (1966), Barndorff-Nielsen & Yeo (1969), Geoffroy & Weerahandi (2001) for the
Poisson, negative-binomial and clustered negative-binomial models.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import gammaln
from scipy.interpolate import BSpline

#: A tensor-product basis column is kept when its largest value over the voxels reaches this.
SPLINE_SUPPORT_THRESHOLD = 0.1

#: Observation models; the last two carry one overdispersion parameter per pattern.
DISTRIBUTIONS = ("poisson", "negativebinomial", "clusterednegativebinomial")

#: Starting overdispersion of the two negative-binomial models (optimized on the log scale).
INITIAL_OVERDISPERSION = 1e-2

#: Voxels per chunk when the kept basis columns are searched (bounds host memory).
_CHUNK_VOXELS = 32768

#: :func:`autodiff_information` maps all Hessian columns at once (no loop to compile) while
#: its largest intermediate, ``n_coef`` grids of ``n_patterns * n_x * N_y * N_z`` (see
#: :func:`basis_apply`), holds at most this many values (256 MB).
VMAP_INFORMATION_MAX = 2**25

#: The estimator evaluates the basis as a matrix (:class:`DenseBasis`) when it has at most this
#: many entries ``n_vox * n_bases`` (32 MB)...
DENSE_BASIS_MAX = 2**22

#: ...and its gram ``Phi^T diag(w) Phi`` at most this many multiply-adds ``n_vox * n_bases^2``
#: (about 60 ms per pattern on this 2-core machine at load 4, against 25-35 ms on the grid for a
#: brain-sized box: the ~0.6 s of compilation the matrix saves pays for that over ten Newton
#: iterations; 4,422 voxels x 666 bases, 2.9 M entries, took 215 ms); on the separable grid
#: (:class:`SplineBasis`) otherwise.
DENSE_GRAM_MAX = 2**29

#: XLA options of the Newton and information programs (``jax.jit(..., compiler_options=...)``):
#: XLA's CPU loop emitters, instead of its newer MLIR fusion emitters, compile these programs'
#: few dozen small fusions in about half the time (laird's Newton program: 1.1 -> 0.56 s CPU),
#: bit-identical results and run time (benchmarks/README.md, "Cold compile").
FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False}

#: XLA options of the negative-binomial Newton program on a matrix basis
#: (:data:`overdispersed_direction_dense`): :data:`FAST_COMPILE` without LLVM's optimization
#: passes. Its matrix products run in the same library kernels either way, so only the
#: elementwise loops slow down: sim120 compiles in 0.5 instead of 1.8 s CPU and runs 11
#: instead of 6 ms per iteration. (The separable grid's contractions are XLA loops: its
#: program keeps the optimizations.)
DENSE_COMPILE = {**FAST_COMPILE, "xla_backend_optimization_level": 0}

#: L-BFGS also stops when the largest absolute gradient entry falls to this.
GRADIENT_TOLERANCE = 1e-7


class SplineBasis(NamedTuple):
    """Separable cubic B-spline basis over a set of voxels (a pytree of arrays).

    Attributes
    ----------
    bx, by, bz : float64 arrays, shapes (N_x, n_x), (N_y, n_y), (N_z, n_z)
        1-D bases on the bounding box (row ``t`` is the box's ``t``-th index along the axis).
    vx, vy, vz : int32 arrays, shape (n_vox,)
        Each voxel's box coordinates.
    kept : int32 array, shape (n_bases,)
        Flat C-order indices into ``(n_x, n_y, n_z)`` of the kept tensor-product columns, in
        NiMARE's column order.
    """

    bx: jax.Array
    by: jax.Array
    bz: jax.Array
    vx: jax.Array
    vy: jax.Array
    vz: jax.Array
    kept: jax.Array


class DenseBasis(NamedTuple):
    """The same basis as a matrix over a small voxel set (a pytree of arrays).

    On small voxel sets (:func:`prefer_dense`; the incidence-filtered sets of the default
    estimator: laird's 1,030 voxels x 299 bases are 2.5 MB), ``Phi`` itself is cheaper than the
    grid: :func:`basis_apply` and :func:`basis_transpose` are one matrix product each and
    :func:`basis_gram` one more, which XLA compiles in a fraction of the time of the grid's
    scatters, mode products and gathers (compilation, not arithmetic, is most of such a fit's
    time: benchmarks/README.md). Whole-brain masks keep :class:`SplineBasis` (228,483 x 457
    would be 0.84 GB).

    Attributes
    ----------
    matrix : float64 array, shape (n_vox, n_bases)
        ``Phi`` (:func:`dense_basis`).
    kept : int32 array, shape (n_bases,)
        As :attr:`SplineBasis.kept`.
    """

    matrix: jax.Array
    kept: jax.Array


class CBMRData(NamedTuple):
    """Everything the likelihood needs besides the parameters (a pytree of arrays).

    Attributes
    ----------
    basis : SplineBasis or DenseBasis
        Spatial basis over the ``n_vox`` analysis voxels.
    marginal : float64 array, shape (n_patterns, n_vox)
        Foci counts summed over the experiments of each pattern.
    totals : float64 array, shape (n_exp,)
        Foci count of each experiment (inside the analysis mask).
    assignment : int32 array, shape (n_exp,)
        Pattern of each experiment.
    loadings : float64 array, shape (n_patterns, n_spatial_columns)
        Spatial loadings of each pattern.
    moderators : float64 array, shape (n_exp, n_global)
        Non-spatial design columns (``n_global`` may be 0).
    exposure : float64 array, shape (n_exp,)
        Multiplicative exposure (ones without an ``exposure()`` term).
    """

    basis: SplineBasis
    marginal: jax.Array
    totals: jax.Array
    assignment: jax.Array
    loadings: jax.Array
    moderators: jax.Array
    exposure: jax.Array


class FitResult(NamedTuple):
    """Output of :func:`fit`: the optimum and how the optimizer got there.

    Attributes
    ----------
    params : float64 array, shape (n_params,)
        ``[spatial (n_spatial_columns * n_bases) | moderators (n_global) | log overdispersion
        (n_patterns, negative-binomial models only)]``.
    log_likelihood : float64 scalar
        Log-likelihood at ``params`` (up to NiMARE's parameter-free constants).
    n_iter : int32 scalar
        L-BFGS iterations run.
    converged : bool scalar
        Whether a stopping rule (objective or parameter change below ``tol``, or gradient below
        :data:`GRADIENT_TOLERANCE`) fired before the iteration cap, with a finite objective.
    """

    params: jax.Array
    log_likelihood: jax.Array
    n_iter: jax.Array
    converged: jax.Array


# ----------------------------------------------------------------------------- basis (host)
def axis_spline_basis(lo: int, hi: int, spacing: int, margin: int = 10) -> np.ndarray:
    """Cubic B-spline basis along one axis, evaluated at the integer indices ``lo..hi``.

    Knots every ``spacing`` indices from ``lo - margin``; boundary knots at ``lo - margin`` and
    ``hi + margin - 1`` (repeated to order 4); the first basis function is dropped (as patsy's
    ``bs(..., include_intercept=False)``), and so are functions that vanish on ``lo..hi``.
    This is NiMARE 0.22.1's ``coef_spline_bases`` written with scipy's B-splines.

    Parameters
    ----------
    lo, hi : int
        First and last index of the axis range (inclusive).
    spacing : int
        Knot spacing in voxels.
    margin : int
        How far the knot range extends beyond the data range on each side.

    Returns
    -------
    numpy.ndarray, shape (hi - lo + 1, n_bases), float64
    """
    if margin < 1 or spacing < 1:
        raise ValueError(f"spacing and margin must be positive, got {spacing} and {margin}")
    lower, upper = lo - margin, hi + margin - 1
    inner = np.arange(lo - margin, hi + margin, spacing, dtype=np.float64)
    knots = np.sort(np.concatenate([[lower, upper] * 4, inner]).astype(np.float64))
    n_funcs = len(knots) - 4
    x = np.arange(lo, hi + 1, dtype=np.float64)
    values = BSpline(knots, np.eye(n_funcs), 3, extrapolate=False)(x)
    values = np.nan_to_num(values)[:, 1:]
    return values[:, values.sum(axis=0) != 0]


def _local_products(basis: SplineBasis, part: slice):
    """Each voxel's non-zero tensor-product values and their flat column indices.

    Along each axis a voxel has at most 4 consecutive non-zero cubic B-splines, so its row of
    the full tensor-product basis has at most 64 non-zero entries: the products
    ``x_a y_b z_c`` over the voxel's three windows of 4 (``(x * y) * z``, NiMARE's order).

    Parameters
    ----------
    basis : SplineBasis
        NumPy arrays (``kept`` is not used).
    part : slice
        The voxels to evaluate (chunks bound host memory on whole-brain masks).

    Returns
    -------
    flat : int64 array, shape (n, 64)
        Flat C-order indices into ``(n_x, n_y, n_z)`` (fewer than 64 columns on an axis with
        fewer than 4 functions).
    values : float64 array, shape (n, 64)
    """
    axes = (basis.bx, basis.by, basis.bz)
    shape = tuple(b.shape[1] for b in axes)
    starts, rows = [], []
    for b, v, n in zip(axes, (basis.vx, basis.vy, basis.vz), shape, strict=True):
        width = min(4, n)
        values = b[v[part]]
        first = np.clip(np.argmax(values > 0, axis=1), 0, n - width)
        starts.append(first[:, None] + np.arange(width))
        rows.append(np.take_along_axis(values, starts[-1], axis=1))
    flat = (starts[0][:, :, None, None] * shape[1] + starts[1][:, None, :, None]) * shape[2]
    flat = flat + starts[2][:, None, None, :]
    xy = rows[0][:, :, None] * rows[1][:, None, :]
    values = xy[:, :, :, None] * rows[2][:, None, None, :]
    return flat.reshape(len(flat), -1), values.reshape(len(values), -1)


def spline_basis(ijk, spacing: int, margin: int = 10) -> SplineBasis:
    """Build the separable basis over voxels, keeping NiMARE's tensor-product columns.

    A column ``(a, b, c)`` (C order over the three 1-D bases) is kept when
    ``max_v x_a(v) y_b(v) z_c(v) >= 0.1`` over the voxels, as in NiMARE 0.22.1's
    ``b_spline_bases``; the bounding box is that of ``ijk``.

    Parameters
    ----------
    ijk : int array, shape (n_vox, 3)
        Voxel indices of the analysis voxels, in the order the maps use (the mask's C order).
    spacing : int
        Knot spacing in voxels.
    margin : int
        Knot-range margin (NiMARE's default 10).

    Returns
    -------
    SplineBasis
        NumPy arrays (convert with ``jax.device_put`` inside ``jax.enable_x64``).
    """
    ijk = np.asarray(ijk, dtype=np.int64)
    lo, hi = ijk.min(axis=0), ijk.max(axis=0)
    axes = [axis_spline_basis(int(lo[d]), int(hi[d]), spacing, margin) for d in range(3)]
    vx, vy, vz = np.ascontiguousarray((ijk - lo).T.astype(np.int32))
    basis = SplineBasis(*axes, vx, vy, vz, kept=None)
    peak = np.zeros(int(np.prod([b.shape[1] for b in axes])))
    for lo_v in range(0, len(ijk), _CHUNK_VOXELS):  # bounded memory on whole-brain masks
        flat, values = _local_products(basis, slice(lo_v, lo_v + _CHUNK_VOXELS))
        np.maximum.at(peak, flat.ravel(), values.ravel())
    kept = np.flatnonzero(peak >= SPLINE_SUPPORT_THRESHOLD).astype(np.int32)
    return basis._replace(kept=kept)


def prefer_dense(n_vox: int, n_bases: int) -> bool:
    """Return whether the estimator uses :class:`DenseBasis` for this many voxels and bases.

    Up to :data:`DENSE_BASIS_MAX` entries and :data:`DENSE_GRAM_MAX` multiply-adds per gram.
    """
    return n_vox * n_bases <= DENSE_BASIS_MAX and n_vox * n_bases**2 <= DENSE_GRAM_MAX


def dense_basis(basis: SplineBasis) -> DenseBasis:
    """Evaluate the basis matrix ``Phi`` over the voxels (kept columns only) on the host.

    Each row is scattered from the voxel's 64 local tensor-product values
    (:func:`_local_products`). For small voxel sets only: see :class:`DenseBasis`.

    Parameters
    ----------
    basis : SplineBasis
        NumPy arrays, as :func:`spline_basis` returns them.

    Returns
    -------
    DenseBasis
        NumPy arrays.
    """
    kept = np.asarray(basis.kept)
    n_full = basis.bx.shape[1] * basis.by.shape[1] * basis.bz.shape[1]
    column = np.full(n_full + 1, kept.size)  # dropped columns go to a discarded last column
    column[kept] = np.arange(kept.size)
    n_vox = len(basis.vx)
    flat, values = _local_products(basis, slice(0, n_vox))
    matrix = np.zeros((n_vox, kept.size + 1))
    matrix[np.arange(n_vox)[:, None], column[flat]] = values  # (voxel, column) pairs are unique
    return DenseBasis(matrix=matrix[:, :-1].copy(), kept=kept)


# ----------------------------------------------------------------------------- basis (JAX)
def basis_apply(basis: SplineBasis | DenseBasis, coef: jax.Array) -> jax.Array:
    """Evaluate ``Phi @ coef`` for each row of ``coef`` (without ``Phi`` if separable).

    Parameters
    ----------
    basis : SplineBasis or DenseBasis
    coef : float array, shape (n_rows, n_bases)

    Returns
    -------
    jax.Array, shape (n_rows, n_vox)
    """
    if isinstance(basis, DenseBasis):
        return coef @ basis.matrix.T
    nx, ny, nz = basis.bx.shape[1], basis.by.shape[1], basis.bz.shape[1]
    full = jnp.zeros((coef.shape[0], nx * ny * nz), coef.dtype)
    full = full.at[:, basis.kept].set(coef, unique_indices=True)
    full = full.reshape(coef.shape[0], nx, ny, nz)
    grid = jnp.einsum("raic,zc->raiz", full, basis.bz)  # (r, nx, ny, N_z)
    grid = jnp.einsum("raiz,yi->rayz", grid, basis.by)  # (r, nx, N_y, N_z)
    n_box = basis.bx.shape[0] * basis.by.shape[0] * basis.bz.shape[0]
    if basis.vx.shape[0] * nx < n_box:
        # Few voxels: gather each voxel's (y, z) column and contract x per voxel.
        columns = grid[:, :, basis.vy, basis.vz]  # (r, nx, n_vox)
        return jnp.einsum("rav,va->rv", columns, basis.bx[basis.vx])
    # Dense voxel set: contract x on the grid too, then one flat gather (its adjoint is a
    # 1-D scatter of n_vox values instead of n_x * n_vox).
    grid = jnp.einsum("rayz,xa->rxyz", grid, basis.bx).reshape(coef.shape[0], -1)
    flat = (basis.vx * basis.by.shape[0] + basis.vy) * basis.bz.shape[0] + basis.vz
    return grid[:, flat]


def basis_transpose(basis: SplineBasis | DenseBasis, values: jax.Array) -> jax.Array:
    """Evaluate ``values @ Phi`` (the adjoint of :func:`basis_apply`).

    Parameters
    ----------
    basis : SplineBasis or DenseBasis
    values : float array, shape (n_rows, n_vox)

    Returns
    -------
    jax.Array, shape (n_rows, n_bases)
    """
    zeros = jnp.zeros((values.shape[0], basis.kept.shape[0]), values.dtype)
    return jax.linear_transpose(lambda c: basis_apply(basis, c), zeros)(values)[0]


def basis_gram(basis: SplineBasis | DenseBasis, weights: jax.Array) -> jax.Array:
    """Evaluate ``Phi^T diag(weights) Phi`` (on the bounding-box grid if separable).

    Parameters
    ----------
    basis : SplineBasis or DenseBasis
    weights : float array, shape (n_vox,)

    Returns
    -------
    jax.Array, shape (n_bases, n_bases)
    """
    if isinstance(basis, DenseBasis):
        return (basis.matrix.T * weights) @ basis.matrix
    shape = (basis.bx.shape[0], basis.by.shape[0], basis.bz.shape[0])
    grid = jnp.zeros(shape, weights.dtype).at[basis.vx, basis.vy, basis.vz].add(weights)
    zz = jnp.einsum("xyz,zc,zf->xycf", grid, basis.bz, basis.bz)
    yy = jnp.einsum("xycf,yb,ye->xbecf", zz, basis.by, basis.by)
    full = jnp.einsum("xbecf,xa,xd->abcdef", yy, basis.bx, basis.bx)
    n = basis.bx.shape[1] * basis.by.shape[1] * basis.bz.shape[1]
    full = full.reshape(n, n)
    return full[basis.kept][:, basis.kept]


def _spatial_gram(data: CBMRData, weights: jax.Array) -> jax.Array:
    """``sum_p (L_p L_p^T) kron Phi^T diag(weights_p) Phi`` over the spatial coefficients.

    A matrix basis forms all patterns' grams in one product; the separable one adds them in a
    ``lax.scan`` (one grid contraction in memory at a time).

    Parameters
    ----------
    data : CBMRData
    weights : float array, shape (n_patterns, n_vox)

    Returns
    -------
    jax.Array, shape (n_spatial, n_spatial), symmetric
    """
    n_columns, n_bases = data.loadings.shape[1], data.basis.kept.shape[0]
    if isinstance(data.basis, DenseBasis):
        phi = data.basis.matrix
        grams = (weights[:, :, None] * phi).transpose(0, 2, 1) @ phi  # (P, K, K)
        gram = jnp.einsum("pc,pd,pkl->ckdl", data.loadings, data.loadings, grams)
    else:

        def add_pattern(acc, inputs):
            row, weight = inputs
            gram = basis_gram(data.basis, weight)
            return acc + jnp.einsum("c,d,kl->ckdl", row, row, gram), None

        zeros = jnp.zeros((n_columns, n_bases, n_columns, n_bases), weights.dtype)
        gram, _ = jax.lax.scan(add_pattern, zeros, (data.loadings, weights))
    gram = gram.reshape(n_columns * n_bases, n_columns * n_bases)
    return 0.5 * (gram + gram.T)


# ----------------------------------------------------------------------------- likelihoods
def _layout(data: CBMRData, distribution: str) -> tuple[int, int, int]:
    """Return ``(n_spatial, n_global, n_nuisance)`` sizes of the flat parameter vector."""
    n_spatial = data.loadings.shape[1] * data.basis.kept.shape[0]
    n_nuisance = 0 if distribution == "poisson" else data.loadings.shape[0]
    return n_spatial, data.moderators.shape[1], n_nuisance


def n_params(data: CBMRData, distribution: str) -> int:
    """Return the length of the flat parameter vector (coefficients and nuisance)."""
    return sum(_layout(data, distribution))


def _pieces(params, data: CBMRData, distribution: str):
    """Return log intensity per pattern, moderator effects, weights and overdispersion."""
    n_spatial, n_global, _ = _layout(data, distribution)
    spatial = params[:n_spatial].reshape(data.loadings.shape[1], -1)
    gamma = params[n_spatial : n_spatial + n_global]
    log_intensity = basis_apply(data.basis, data.loadings @ spatial)
    moderator = data.moderators @ gamma
    # Without moderators the weights are data: no derivative flows into the negative
    # binomials' gamma functions, which keeps their autodiff programs small.
    weight = data.exposure * jnp.exp(moderator) if n_global else data.exposure
    overdispersion = jnp.exp(params[n_spatial + n_global :])
    return log_intensity, moderator, weight, overdispersion


def log_rising_ratio(n: jax.Array, phi: jax.Array) -> jax.Array:
    """Return ``lgamma(n + phi) - lgamma(phi) - n log(phi)`` without cancellation.

    Direct for ``phi <= 1e3``; above, Stirling's series to the ``1/x^3`` term (error below
    ``1e-15`` there), which stays exact as ``phi`` grows without bound (the limit is 0).
    """
    big = phi > 1e3
    safe_small = jnp.where(big, 1.0, phi)
    safe_big = jnp.where(big, phi, 1e3)
    direct = gammaln(n + safe_small) - gammaln(safe_small) - n * jnp.log(safe_small)
    x = n + safe_big
    series = (
        (x - 0.5) * jnp.log1p(n / safe_big)
        - n
        + (1.0 / x - 1.0 / safe_big) / 12.0
        - (1.0 / x**3 - 1.0 / safe_big**3) / 360.0
    )
    return jnp.where(big, series, direct)


def _nb_pattern_scalars(log_weight, log_overdispersion, data: CBMRData):
    """Per pattern, the log mean-to-size ratio ``log a`` and ``log s1`` of the matched NB.

    With ``s1 = sum w_i`` and ``s2 = sum w_i^2`` over the pattern's experiments, NiMARE matches
    the pattern's voxel totals to a negative binomial of mean ``s1 mu`` and size
    ``r = s1 a``, ``a = s1 / (theta s2)``.
    """
    n_patterns = data.loadings.shape[0]
    log_s1 = jnp.log(jax.ops.segment_sum(jnp.exp(log_weight), data.assignment, n_patterns))
    log_s2 = jnp.log(jax.ops.segment_sum(jnp.exp(2 * log_weight), data.assignment, n_patterns))
    return log_s1 - log_s2 - log_overdispersion, log_s1


def _nb_log_pmf(y, s, log_ratio, log_total):
    """NB log-pmf of a pattern's voxel total ``y`` at log intensity ``s`` (broadcasting).

    NiMARE's ``lgamma(y+r) - lgamma(y+1) - lgamma(r) + r log(1-p) + y log p`` with
    ``r = s1 a`` and ``p = mu / (a + mu)`` (``log_ratio = log a``, ``log_total = log s1``),
    rewritten so that a vanishing overdispersion (``r -> inf``) does not cancel
    catastrophically.
    """
    size = jnp.exp(log_total + log_ratio)
    excess = jnp.logaddexp(0.0, s - log_ratio)  # log(1 + mu / a)
    return (
        log_rising_ratio(y, size) - gammaln(y + 1) - size * excess + y * (s + log_total - excess)
    )


def _cnb_total_term(n, log_mean, log_overdispersion):
    """Return the clustered NB's term of an experiment's total ``n`` (broadcasting).

    NiMARE's ``phi log phi - lgamma(phi) + lgamma(n + phi) - (n + phi) log(mean + phi)`` minus
    ``n log(mean)`` (which the caller adds as ``y . s + n . m``), with precision
    ``phi = 1 / theta``, rewritten stably for large ``phi``.
    """
    precision = jnp.exp(-log_overdispersion)
    return log_rising_ratio(n, precision) - (n + precision) * jnp.logaddexp(
        0.0, log_mean + log_overdispersion
    )


@functools.partial(jax.jit, static_argnames=("distribution",))
def log_likelihood(params: jax.Array, data: CBMRData, distribution: str) -> jax.Array:
    """Log-likelihood of the foci counts, up to NiMARE's parameter-free constants.

    Parameters
    ----------
    params : float64 array, shape (n_params,)
        Flat parameters (see :class:`FitResult`).
    data : CBMRData
    distribution : {"poisson", "negativebinomial", "clusterednegativebinomial"}
        Poisson on pattern marginals; the negative binomial moment-matched to each pattern's
        voxel totals; the clustered negative binomial with one gamma effect per experiment.

    Returns
    -------
    jax.Array, scalar

    Notes
    -----
    Jitted so that the fit and Newton programs, which evaluate it (and its gradient) in
    several places, trace its Python once per process and embed one shared function.
    """
    s, m, w, theta = _pieces(params, data, distribution)
    n_patterns = data.loadings.shape[0]
    y = data.marginal
    if distribution == "poisson":
        total_weight = jax.ops.segment_sum(w, data.assignment, n_patterns)
        return (
            jnp.sum(y * s)
            + jnp.dot(data.totals, m)
            - jnp.dot(jnp.exp(s).sum(axis=1), total_weight)
        )
    if distribution == "negativebinomial":
        log_ratio, log_total = _nb_pattern_scalars(jnp.log(w), jnp.log(theta), data)
        return jnp.sum(_nb_log_pmf(y, s, log_ratio[:, None], log_total[:, None]))
    if distribution == "clusterednegativebinomial":
        log_mean = jax.nn.logsumexp(s, axis=1)[data.assignment] + jnp.log(w)
        return (
            jnp.sum(_cnb_total_term(data.totals, log_mean, jnp.log(theta)[data.assignment]))
            + jnp.sum(y * s)
            + jnp.dot(data.totals, m)
        )
    raise ValueError(f"unknown distribution {distribution!r}; expected one of {DISTRIBUTIONS}")


def initial_params(data: CBMRData, distribution: str) -> np.ndarray:
    """Return zero coefficients and overdispersion :data:`INITIAL_OVERDISPERSION`.

    A host array (NumPy, float64): building it is no reason to compile a program.
    """
    n_spatial, n_global, n_nuisance = _layout(data, distribution)
    return np.concatenate(
        [np.zeros(n_spatial + n_global), np.full(n_nuisance, np.log(INITIAL_OVERDISPERSION))]
    )


# ----------------------------------------------------------------------------- fitting
@functools.partial(jax.jit, static_argnames=("distribution", "lr"))
def fit(
    data: CBMRData, params0: jax.Array, max_iter, tol, *, distribution: str, lr: float = 1.0
) -> FitResult:
    """Maximize the log-likelihood with optax L-BFGS (zoom line search), compiled end to end.

    The loop is a ``lax.while_loop``: it stops when the objective changes by less than ``tol``
    between iterations, when no parameter moves by more than ``tol``, when the largest gradient
    entry is at most :data:`GRADIENT_TOLERANCE` (PyTorch's L-BFGS rules, which NiMARE uses), or
    after ``max_iter`` iterations.

    Parameters
    ----------
    data : CBMRData
    params0 : float64 array, shape (n_params,)
    max_iter : int
        Iteration cap (traced: changing it does not recompile).
    tol : float
        Objective-change tolerance (traced).
    distribution : str
        See :func:`log_likelihood`.
    lr : float
        Learning rate multiplying the L-BFGS direction before the line search.

    Returns
    -------
    FitResult
    """

    def objective(p):
        return -log_likelihood(p, data, distribution)

    solver = optax.lbfgs(learning_rate=lr)
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry):
        params, state, it, previous, _ = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = solver.update(
            grad, state, params, value=value, grad=grad, value_fn=objective
        )
        params = optax.apply_updates(params, updates)
        new_value = optax.tree_utils.tree_get(state, "value")
        new_grad = optax.tree_utils.tree_get(state, "grad")
        done = (
            (jnp.abs(previous - new_value) < tol)
            | (jnp.max(jnp.abs(updates)) <= tol)
            | (jnp.max(jnp.abs(new_grad)) <= GRADIENT_TOLERANCE)
        )
        return params, state, it + 1, new_value, done

    def keep_going(carry):
        _, _, it, value, done = carry
        return (it < max_iter) & ~done & jnp.isfinite(value)

    state = solver.init(params0)
    init = (params0, state, jnp.int32(0), objective(params0), jnp.bool_(False))
    params, _, it, value, done = jax.lax.while_loop(keep_going, step, init)
    return FitResult(params, -value, it, done & jnp.isfinite(value))


# ----------------------------------------------------------------------------- information
def poisson_terms(params: jax.Array, data: CBMRData):
    """Poisson log-likelihood, its gradient and its observed information, in closed form.

    With ``mu_p = exp(s_p)``, ``E_p = sum_v mu_p``, ``w_i = E_i exp(m_i)``,
    ``T_p = sum_{i in p} w_i`` and ``U_p = sum_{i in p} w_i G_i``:

    * gradient: ``sum_p L_p kron Phi^T (y_p - T_p mu_p)`` (spatial) and
      ``G^T (n - w E_p(i))`` (moderators, ``n`` the experiments' totals);
    * information: ``H_ss = sum_p (L_p L_p^T) kron (T_p Phi^T diag(mu_p) Phi)``,
      ``H_sg = sum_p L_p kron (Phi^T mu_p) U_p^T`` and ``H_gg = G^T diag(w_i E_p(i)) G``.

    The ``Phi^T diag(.) Phi`` come from :func:`_spatial_gram` and both ``Phi^T`` products from
    one :func:`basis_transpose`; on a separable basis nothing of size ``n_vox x n_bases`` is
    formed. No automatic differentiation is traced (a smaller program to compile than
    ``jax.value_and_grad``).

    Parameters
    ----------
    params : float64 array, shape (n_params,)
    data : CBMRData

    Returns
    -------
    value : float64 scalar
        :func:`log_likelihood` (Poisson) at ``params``.
    grad : float64 array, shape (n_coef,)
    information : float64 array, shape (n_coef, n_coef)
        Over the regression coefficients (spatial then moderators).
    """
    s, m, w, _ = _pieces(params, data, "poisson")
    n_patterns, n_columns = data.loadings.shape
    n_bases = data.basis.kept.shape[0]
    mu = jnp.exp(s)
    total = jax.ops.segment_sum(w, data.assignment, n_patterns)
    energy = mu.sum(axis=1)
    value = jnp.sum(data.marginal * s) + jnp.dot(data.totals, m) - jnp.dot(energy, total)

    projected = basis_transpose(data.basis, jnp.concatenate([data.marginal, mu]))
    marginal_basis = projected[n_patterns:]  # (P, K): Phi^T mu_p
    residual = projected[:n_patterns] - total[:, None] * marginal_basis
    g = data.moderators
    weight_energy = w * energy[data.assignment]
    grad = jnp.concatenate(
        [
            jnp.einsum("pc,pk->ck", data.loadings, residual).ravel(),
            g.T @ (data.totals - weight_energy),
        ]
    )

    h_ss = _spatial_gram(data, total[:, None] * mu)
    u = jax.ops.segment_sum(w[:, None] * g, data.assignment, n_patterns)  # (P, Q)
    h_sg = jnp.einsum("pc,pk,pq->ckq", data.loadings, marginal_basis, u)
    h_sg = h_sg.reshape(n_columns * n_bases, g.shape[1])
    h_gg = g.T @ (g * weight_energy[:, None])
    h_gg = 0.5 * (h_gg + h_gg.T)
    return value, grad, jnp.block([[h_ss, h_sg], [h_sg.T, h_gg]])


@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def poisson_information(params: jax.Array, data: CBMRData) -> jax.Array:
    """Observed Fisher information of the Poisson model in closed form (:func:`poisson_terms`).

    Parameters
    ----------
    params : float64 array, shape (n_params,)
    data : CBMRData

    Returns
    -------
    jax.Array, shape (n_coef, n_coef)
    """
    return poisson_terms(params, data)[2]


def _rising_ratio_terms(n, size):
    """``log_rising_ratio(n, size)`` and its first two derivatives in ``log(size)``.

    For a whole count ``n``, ``lgamma(n + r) - lgamma(r) - n log r = sum_{k<n} log(1 + k / r)``,
    so the derivatives are ``-sum_k k / (r + k)`` and ``sum_k k r / (r + k)^2``: sums of
    positive terms (no cancellation as ``r`` grows) over ``k < max(n)``, one loop of
    elementwise operations (the gamma and polygamma functions of the closed form compile to
    far larger programs).

    Parameters
    ----------
    n : float array
        Whole counts (foci), broadcasting with ``size``.
    size : float array
        ``r > 0``.

    Returns
    -------
    value, slope, curvature : arrays, the broadcast shape of ``n`` and ``size``
    """
    n, size = jnp.broadcast_arrays(n, size)

    def add(k, sums):
        ratio = jnp.where(k < n, k / size, 0.0)
        term = ratio / (1.0 + ratio)  # k / (r + k)
        return sums[0] + jnp.log1p(ratio), sums[1] - term, sums[2] + term / (1.0 + ratio)

    zeros = jnp.zeros_like(size)
    return jax.lax.fori_loop(0, jnp.max(n).astype(jnp.int32), add, (zeros, zeros, zeros))


def _nb_pointwise_derivatives(y, s, log_ratio, log_total):
    """:func:`_nb_log_pmf` and its first and second derivatives in ``(s, log_ratio, log_total)``.

    With ``r = exp(log_total + log_ratio)``, ``x = s - log_ratio``, ``q = sigmoid(x)`` and the
    log rising ratio ``L(rho) = log_rising_ratio(y, exp(rho))`` at ``rho = log r``
    (:func:`_rising_ratio_terms`; ``y`` whole counts), writing ``a``, ``c`` for
    ``log_ratio``, ``log_total``:
    ``f_s = y - (r + y) q``, ``f_a = L' - r softplus(x) + (r + y) q``,
    ``f_c = L' - r softplus(x) + y``, ``f_ss = -(r + y) q (1 - q)``,
    ``f_sa = (r + y) q (1 - q) - r q``, ``f_sc = -r q``, ``f_cc = L'' - r softplus(x)``,
    ``f_ac = f_cc + r q``, ``f_aa = f_ac + r q - (r + y) q (1 - q)``. Elementwise (broadcasting).

    Returns
    -------
    value : array
    first : tuple of arrays
        ``(f_s, f_a, f_c)``.
    second : tuple of arrays
        ``(f_ss, f_sa, f_sc, f_aa, f_ac, f_cc)``.
    """
    size = jnp.exp(log_total + log_ratio)
    value, slope, curvature = _rising_ratio_terms(y, size)
    x = s - log_ratio
    excess = jnp.logaddexp(0.0, x)
    q, spread = jax.nn.sigmoid(x), jax.nn.sigmoid(x) * jax.nn.sigmoid(-x)
    value = value - gammaln(y + 1) - size * excess + y * (s + log_total - excess)
    base = slope - size * excess
    f_cc = curvature - size * excess
    f_ac = f_cc + size * q
    first = (y - (size + y) * q, base + (size + y) * q, base + y)
    second = (
        -(size + y) * spread,
        (size + y) * spread - size * q,
        -size * q,
        f_ac + size * q - (size + y) * spread,
        f_ac,
        f_cc,
    )
    return value, first, second


def overdispersed_terms(params: jax.Array, data: CBMRData, distribution: str):
    """Negative-binomial log-likelihood, gradient and observed information in closed form.

    Over all parameters ``[beta (spatial) | gamma (moderators) | eta (log overdispersion)]``.
    The log intensity ``s_p = Phi (L_p beta)`` is linear in ``beta`` and everything else enters
    through a few scalars per pattern or per experiment, so ``Phi`` only appears through
    :func:`basis_transpose` and :func:`basis_gram` and no automatic differentiation runs
    through the basis:

    * ``"negativebinomial"``: ``ll = sum_pv f(y_pv, s_pv, z_p)`` with ``f`` the NB log-pmf
      (:func:`_nb_pointwise_derivatives`) and ``z_p = (log a_p, log s1_p)`` functions of
      ``(gamma, eta)`` (:func:`_nb_pattern_scalars`). Gradient ``Phi^T f_s`` and
      ``J^T sum_v f_z``; information from ``Phi^T diag(f_ss) Phi``, ``Phi^T f_sz`` and, by the
      chain rule through ``z`` (its Jacobian ``J`` and Hessians, weighted means and
      covariances of the moderators within each pattern), ``J^T (sum_v f_zz) J`` plus
      ``sum_p F_z . d2 z_p``.
    * ``"clusterednegativebinomial"``: ``ll = sum_p y_p . s_p + n . m + sum_i h_i`` where
      experiment ``i`` of pattern ``p`` contributes ``h(n_i, u_i, eta_p)``
      (:func:`_cnb_total_term`) at ``u_i = e_p + log w_i``, ``e_p = log sum_v exp(s_pv)``.
      ``h`` is the NB log-pmf of ``n_i`` with ``log a = -eta``, ``log s1 = 0`` plus
      ``log n_i! - n_i u_i``, so its derivatives come from the same pointwise formulas; with
      ``pi_p = softmax(s_p)``, ``de_p / ds_p = pi_p`` and
      ``d2e_p / ds_p2 = diag(pi_p) - pi_p pi_p^T``, the spatial information is
      ``Phi^T diag(-h_e pi_p) Phi`` plus a rank-one term per pattern.

    Parameters
    ----------
    params : float64 array, shape (n_params,)
    data : CBMRData
        Its ``marginal`` and ``totals`` are whole counts (foci), as the estimator builds them
        (:func:`_rising_ratio_terms`).
    distribution : {"negativebinomial", "clusterednegativebinomial"}

    Returns
    -------
    value : float64 scalar
        :func:`log_likelihood` at ``params``.
    grad : float64 array, shape (n_params,)
    information : float64 array, shape (n_params, n_params)
        Minus the Hessian over all parameters; its leading ``n_coef`` block is the information
        over the coefficients at fixed overdispersion (what :func:`autodiff_information`
        returns).
    """
    n_spatial, n_global, _ = _layout(data, distribution)
    n_patterns, n_columns = data.loadings.shape
    spatial = params[:n_spatial].reshape(n_columns, -1)
    gamma, eta = params[n_spatial : n_spatial + n_global], params[n_spatial + n_global :]
    s = basis_apply(data.basis, data.loadings @ spatial)  # (P, V)
    y, g = data.marginal, data.moderators
    log_weight = jnp.log(data.exposure) + g @ gamma
    # experiment -> pattern sums and lookups as products with the membership matrix (XLA
    # compiles them to far less than scatters and gathers)
    member = jax.nn.one_hot(data.assignment, n_patterns, dtype=params.dtype)  # (n_exp, P)
    if distribution == "negativebinomial":
        w = jnp.exp(log_weight)
        s1, s2 = member.T @ w, member.T @ (w * w)
        log_total = jnp.log(s1)
        log_ratio = log_total - jnp.log(s2) - eta
        values, first, second = _nb_pointwise_derivatives(
            y, s, log_ratio[:, None], log_total[:, None]
        )
        f_ss, f_sa, f_sc, f_aa, f_ac, f_cc = second
        projected = basis_transpose(data.basis, jnp.concatenate([first[0], f_sa, f_sc]))
        projected = projected.reshape(3, n_patterns, -1)  # Phi^T of f_s, f_sa, f_sc
        f_a, f_c = first[1].sum(axis=1), first[2].sum(axis=1)
        # z_p = (log a_p, log s1_p): d log s1 / d gamma = m1 (the w-weighted mean of G),
        # d log s2 / d gamma = 2 m2 (w^2-weighted), d log a / d eta = -1
        share1, share2 = w / (member @ s1), w * w / (member @ s2)
        m1, m2 = member.T @ (share1[:, None] * g), member.T @ (share2[:, None] * g)
        eye = jnp.eye(n_patterns, dtype=params.dtype)
        jac = jnp.stack(
            [
                jnp.concatenate([m1 - 2 * m2, -eye], axis=1),
                jnp.concatenate([m1, jnp.zeros_like(eye)], axis=1),
            ],
            axis=1,
        )  # (P, 2, T)
        f_zz = jnp.stack([f_aa.sum(axis=1), f_ac.sum(axis=1), f_ac.sum(axis=1), f_cc.sum(axis=1)])
        h_st = jnp.einsum("pc,apk,pat->ckt", data.loadings, projected[1:], jac)
        h_tt = jnp.einsum("abp,pat,pbu->tu", f_zz.reshape(2, 2, -1), jac, jac)
        # + sum_p f_a,p d2 log a_p + f_c,p d2 log s1_p (gamma block only), with
        # d2 log s1 = G^T diag(share1) G - m1 m1^T and d2 log s2 = 4 (same with share2, m2)
        both = f_a + f_c
        curvature = (
            g.T @ (((member @ both) * share1 - 4 * (member @ f_a) * share2)[:, None] * g)
            - m1.T @ (both[:, None] * m1)
            + 4 * m2.T @ (f_a[:, None] * m2)
        )
        h_tt = h_tt.at[:n_global, :n_global].add(curvature)
        grad_s = projected[0]
        grad_t = jnp.einsum("p,pt->t", f_a, jac[:, 0]) + jnp.einsum("p,pt->t", f_c, jac[:, 1])
        h_ss = _spatial_gram(data, f_ss)
        value = jnp.sum(values)
    elif distribution == "clusterednegativebinomial":
        log_energy = jax.nn.logsumexp(s, axis=1)
        share = jnp.exp(s - log_energy[:, None])  # pi_p
        projected = basis_transpose(data.basis, jnp.concatenate([y, share]))
        share_basis = projected[n_patterns:]  # Phi^T pi_p
        n = data.totals
        u = member @ log_energy + log_weight
        values, first, second = _nb_pointwise_derivatives(n, u, -(member @ eta), 0.0)
        h_u, h_eta = first[0] - n, -first[1]
        h_uu, h_ueta, h_etaeta = second[0], -second[1], second[3]
        value = jnp.sum(values + gammaln(n + 1) - n * (u - g @ gamma)) + jnp.sum(y * s)
        h_e = member.T @ h_u
        grad_s = projected[:n_patterns] + h_e[:, None] * share_basis
        grad_t = jnp.concatenate([g.T @ (h_u + n), member.T @ h_eta])
        h_ut = jnp.concatenate([h_uu[:, None] * g, h_ueta[:, None] * member], 1)
        h_et = member.T @ h_ut  # (P, T)
        cross = member.T @ (h_ueta[:, None] * g)
        h_tt = jnp.block(
            [[g.T @ (h_uu[:, None] * g), cross.T], [cross, jnp.diag(member.T @ h_etaeta)]]
        )
        outer = jnp.einsum("pc,pk->pck", data.loadings, share_basis).reshape(n_patterns, -1)
        h_ee = member.T @ h_uu - h_e
        h_ss = (outer.T * h_ee) @ outer + _spatial_gram(data, h_e[:, None] * share)
        h_st = outer.T @ h_et
    else:
        raise ValueError(f"{distribution!r} has no overdispersion; use poisson_terms")
    grad = jnp.concatenate([jnp.einsum("pc,pk->ck", data.loadings, grad_s).ravel(), grad_t])
    h_st = h_st.reshape(n_spatial, -1)
    hessian = jnp.block([[h_ss, h_st], [h_st.T, 0.5 * (h_tt + h_tt.T)]])
    return value, grad, -hessian


@functools.partial(jax.jit, static_argnames=("distribution",), compiler_options=FAST_COMPILE)
def overdispersed_information(params: jax.Array, data: CBMRData, distribution: str) -> jax.Array:
    """Observed information of a negative-binomial model over the coefficients, in closed form.

    The overdispersion is held fixed (:func:`overdispersed_terms`' leading block).

    Parameters
    ----------
    params : float64 array, shape (n_params,)
    data : CBMRData
    distribution : {"negativebinomial", "clusterednegativebinomial"}

    Returns
    -------
    jax.Array, shape (n_coef, n_coef)
    """
    n_coef = params.shape[0] - data.loadings.shape[0]
    return overdispersed_terms(params, data, distribution)[2][:n_coef, :n_coef]


class NewtonResult(NamedTuple):
    """Output of :func:`newton_fit`.

    Attributes
    ----------
    params : numpy.ndarray, shape (n_coef,), float64
    log_likelihood : float
        At ``params``.
    n_iter : int
        Newton iterations run (each evaluates the likelihood, gradient and information once).
    converged : bool
        Whether a stopping rule fired before the iteration cap: a log-likelihood gain below
        ``tol``, or a Newton step at ``params`` (the distance to the optimum to first order)
        below :data:`NEWTON_CONVERGED` when the steps ran out.
    last_step : float
        Largest entry of the Newton step at ``params``.
    information : float64 array, shape (n_coef, n_coef)
        Observed information over the coefficients at ``params`` (the direction program's).
    factor : float64 array, shape (n_coef, n_coef)
        Its lower Cholesky factor (NaNs if it is not positive definite): the Fisher covariance
        follows with one triangular solve, and no factorization on the host.
    """

    params: np.ndarray
    log_likelihood: float
    n_iter: int
    converged: bool
    last_step: float
    information: jax.Array
    factor: jax.Array


#: :func:`newton_fit` stops when its next trial would move no parameter by more than this.
NEWTON_STEP_TOLERANCE = 1e-10

#: A Newton step at most this large certifies a Poisson optimum.
NEWTON_CONVERGED = 1e-6

#: :func:`newton_fit` has converged when a full Newton step would gain at most this fraction of
#: the log-likelihood (``grad . direction``, the Newton decrement squared, is twice the gain
#: to second order): no trial could be told from the current point in float64 (such trials
#: were otherwise rejected on rounding and halved, each halving an evaluation).
NEWTON_GAIN_RESOLUTION = 1e-13

#: Armijo constant of the backtracking line search of :func:`newton_fit`.
_ARMIJO = 1e-4

#: Up to this many parameters :func:`newton_fit` factors the information with
#: :func:`cholesky_loop` (XLA's own matrix-vector products); above, with LAPACK.
CHOLESKY_LOOP_MAX = 1024


def cholesky_loop(matrix: jax.Array) -> jax.Array:
    """Lower Cholesky factor, one column per ``fori_loop`` step (a matrix-vector product each).

    LAPACK's factorization (what ``jax.scipy.linalg.cho_factor`` calls on the CPU) runs
    OpenBLAS threads that, on a busy machine, spin for up to 100x the work on a 300 x 300
    matrix; this loop costs ``n`` matrix-vector products (about 10 ms at ``n = 300``, 0.2 s at
    ``n = 1000``) and compiles to a few operations. A matrix that is not positive definite gives
    NaNs.

    Parameters
    ----------
    matrix : float array, shape (n, n)
        Symmetric; only its lower triangle is used.

    Returns
    -------
    jax.Array, shape (n, n)
        Lower triangular ``L`` with ``L @ L.T == matrix``.
    """
    rows = jnp.arange(matrix.shape[0])

    def column(j, factor):
        values = matrix[:, j] - factor @ factor[j]
        return factor.at[:, j].set(jnp.where(rows >= j, values / jnp.sqrt(values[j]), 0.0))

    return jax.lax.fori_loop(0, matrix.shape[0], column, jnp.zeros_like(matrix))


def cholesky_factor(matrix: jax.Array) -> tuple[jax.Array, bool]:
    """Return a ``cho_factor``-style lower Cholesky factor of ``matrix``.

    :func:`cholesky_loop` up to :data:`CHOLESKY_LOOP_MAX` rows, LAPACK above (NaNs if
    ``matrix`` is not positive definite).
    """
    if matrix.shape[0] <= CHOLESKY_LOOP_MAX:
        return cholesky_loop(matrix), True
    return jax.scipy.linalg.cho_factor(matrix, lower=True)


def constant_start(data: CBMRData) -> np.ndarray:
    """Poisson starting values: each pattern's intensity flat at its mean count.

    The kept B-spline columns sum to about one over the box, so a pattern's log intensity is
    about ``c`` when its coefficients all equal ``c``; ``c_p`` is the log of the pattern's foci
    per voxel per unit exposure, mapped to the spatial columns by least squares; moderator
    coefficients start at 0. Computed with NumPy on the host (no program to compile).

    Parameters
    ----------
    data : CBMRData

    Returns
    -------
    numpy.ndarray, shape (n_coef,), float64
    """
    marginal, loadings = np.asarray(data.marginal), np.asarray(data.loadings)
    exposure = np.bincount(
        np.asarray(data.assignment), np.asarray(data.exposure), minlength=loadings.shape[0]
    )
    level = np.log((marginal.sum(axis=1) + 0.5) / (marginal.shape[1] * exposure))
    columns = np.linalg.lstsq(loadings, level, rcond=None)[0]
    spatial = np.repeat(columns, np.shape(data.basis.kept)[0])
    return np.concatenate([spatial, np.zeros(np.shape(data.moderators)[1])])


@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def newton_direction(params: jax.Array, data: CBMRData):
    """Poisson log-likelihood, gradient, Newton direction and information (one program).

    What needs no matrix algebra - the line search's slope, the fallback for an information
    that is not positive definite - is left to :func:`newton_fit` on the host: fewer
    operations for XLA to compile.

    Parameters
    ----------
    params : float64 array, shape (n_coef,)
    data : CBMRData

    Returns
    -------
    value : float64 scalar
        Log-likelihood.
    grad : float64 array, shape (n_coef,)
    direction : float64 array, shape (n_coef,)
        ``information^-1 grad`` (NaNs if the information is not positive definite).
    information : float64 array, shape (n_coef, n_coef)
    factor : float64 array, shape (n_coef, n_coef)
        Lower Cholesky factor of the information (:func:`cholesky_factor`; only its lower
        triangle is meaningful).
    """
    value, grad, info = poisson_terms(params, data)
    factor = cholesky_factor(info)
    direction = jax.scipy.linalg.cho_solve(factor, grad)
    return value, grad, direction, info, factor[0]


#: An overdispersed Newton step changes no log overdispersion by more than this (the whole
#: step is scaled down to it)...
OVERDISPERSION_STEP_MAX = 2.0

#: ...except toward the Poisson limit, where a log overdispersion moves down by this at once.
OVERDISPERSION_JUMP = 20.0


@functools.partial(jax.jit, static_argnames=("distribution",), compiler_options=FAST_COMPILE)
def overdispersed_direction(params: jax.Array, data: CBMRData, distribution: str):
    """:func:`newton_direction` for the negative-binomial models (one program).

    The coefficient block ``A`` of the information (:func:`overdispersed_terms`) is positive
    definite (both likelihoods are concave in the coefficients at fixed overdispersion: the
    NB's pointwise ``f_ss < 0``, the clustered NB's Hessian is a sum of negative semi-definite
    terms), but the joint information with the log overdispersions ``eta`` need not be, away
    from the optimum or where the likelihood flattens toward the Poisson limit. The direction
    solves the block system with ``A`` (Cholesky) and replaces the ``eta`` Schur complement
    ``S = D - B^T A^-1 B`` (``n_patterns`` square) by ``|S|`` (its eigenvalues' absolute
    values): a positive-definite system, so the direction always ascends, and the exact Newton
    step wherever the information is positive definite. A step changing some ``eta`` by more
    than :data:`OVERDISPERSION_STEP_MAX` is scaled down to it; :func:`newton_fit`'s line search
    does the rest. If ``A`` cannot be factored the direction is NaN (:func:`newton_fit` then
    follows the scaled gradient).

    Toward the Poisson limit (data without overdispersion, where the supremum is at
    ``theta = 0``) the likelihood is about ``ll_0 - c theta``: Newton's step in ``eta`` is
    -1 at every iteration and each gains ``1 - 1/e`` of what is left, tens of iterations to
    ``tol``. A quadratic model in ``theta`` instead of ``eta`` puts the optimum at or below
    ``theta = 0`` exactly when the ``eta`` step is at most -1/2 (an interior optimum
    approached from above gives steps in (-1/2, 0)), and the likelihood is linear in
    ``theta`` when the step is -1. So an ``eta`` whose step is at most -0.9 (with a negative
    gradient; -0.9 rather than -1/2 because the likelihood is not quadratic in ``theta``: an
    overshoot past an interior optimum gave -0.54) is moved by ``-OVERDISPERSION_JUMP``
    instead, leaving about ``exp(-20)`` of the remaining gain; the coefficients keep their
    Newton step, and the plain Newton direction is used if this one would not ascend.

    Parameters
    ----------
    params : float64 array, shape (n_params,)
        ``[coefficients | log overdispersion]``.
    data : CBMRData
    distribution : {"negativebinomial", "clusterednegativebinomial"}

    Returns
    -------
    value, grad, direction
        As :func:`newton_direction` (over all ``n_params``).
    information : float64 array, shape (n_coef, n_coef)
        Over the coefficients at fixed overdispersion.
    factor : float64 array, shape (n_coef, n_coef)
        Its lower Cholesky factor.
    """
    value, grad, info = overdispersed_terms(params, data, distribution)
    n_coef = info.shape[0] - data.loadings.shape[0]
    coef_info, cross = info[:n_coef, :n_coef], info[:n_coef, n_coef:]
    factor = cholesky_factor(coef_info)
    solved = jax.scipy.linalg.cho_solve(
        factor, jnp.concatenate([grad[:n_coef, None], cross], axis=1)
    )
    coef_step, cross_solved = solved[:, 0], solved[:, 1:]
    schur = info[n_coef:, n_coef:] - cross.T @ cross_solved
    eigenvalues, eigenvectors = jnp.linalg.eigh(0.5 * (schur + schur.T))
    magnitude = jnp.abs(eigenvalues)
    magnitude = jnp.maximum(magnitude, 1e-12 * jnp.maximum(jnp.max(magnitude), 1.0))
    reduced = eigenvectors.T @ (grad[n_coef:] - cross.T @ coef_step)
    nuisance_step = eigenvectors @ (reduced / magnitude)
    direction = jnp.concatenate([coef_step - cross_solved @ nuisance_step, nuisance_step])
    direction = direction * jnp.minimum(
        1.0, OVERDISPERSION_STEP_MAX / jnp.max(jnp.abs(nuisance_step))
    )
    limit = (nuisance_step <= -0.9) & (grad[n_coef:] < 0)
    jump = direction.at[n_coef:].set(jnp.where(limit, -OVERDISPERSION_JUMP, direction[n_coef:]))
    direction = jnp.where(jnp.dot(grad, jump) > 0, jump, direction)
    return value, grad, direction, coef_info, factor[0]


#: :func:`overdispersed_direction` compiled with :data:`DENSE_COMPILE`, for a
#: :class:`DenseBasis` (the estimator's choice on small voxel sets).
overdispersed_direction_dense = jax.jit(
    overdispersed_direction.__wrapped__,
    static_argnames=("distribution",),
    compiler_options=DENSE_COMPILE,
)


def newton_fit(
    data: CBMRData, params0, max_iter: int, tol: float, program=newton_direction
) -> NewtonResult:
    """Maximize the log-likelihood by Newton's method on the closed-form information.

    ``program`` computes the Newton direction: :func:`newton_direction` (Poisson, the default)
    or :func:`overdispersed_direction` (the negative binomials, whose direction is made an
    ascent direction where their information is not positive definite); the driver is the same.

    The Poisson log-likelihood is concave in the coefficients, so Newton's method with a
    backtracking (Armijo) line search reaches its maximum from any start (the estimator passes
    :func:`constant_start`). Every iteration evaluates one trial point with the compiled
    :func:`newton_direction`: an accepted trial gives the next Newton direction, a rejected one
    halves the step. It stops when an accepted step raised the log-likelihood by less than
    ``tol`` (NiMARE's L-BFGS rule; it also ends fits whose optimum is at infinity, such as
    whole-brain bases without a focus, whose coefficients fall by about one per step), when
    the next trial would move no parameter by more than :data:`NEWTON_STEP_TOLERANCE` (a
    converged Newton step, or a line search out of room at rounding level), when a full Newton
    step would gain less than the log-likelihood's rounding (:data:`NEWTON_GAIN_RESOLUTION`;
    converged), or after
    ``max_iter`` iterations. Where the information is not positive definite (intensities
    underflowing) the direction is the gradient scaled by the information's largest diagonal
    entry.

    The iterations are driven from Python (a few, each a whole likelihood, information and
    factorization, and one scalar read back): inside a ``lax.while_loop`` the same evaluation
    took XLA about twice as long to compile (benchmarks/README.md), which was most of a first
    fit's time.

    Parameters
    ----------
    data : CBMRData
    params0 : float64 array, shape (n_coef,)
        Starting values.
    max_iter : int
        Iteration cap.
    tol : float
        Log-likelihood change below which an accepted step ends the fit.
    program : callable
        ``program(params, data) -> (value, grad, direction, information, factor)``, compiled:
        :func:`newton_direction` (Poisson) or :func:`overdispersed_direction` with its
        ``distribution`` bound. ``direction`` may hold NaNs (the fallback above replaces it);
        ``factor`` is the lower Cholesky factor of ``information``.

    Returns
    -------
    NewtonResult
    """
    params = np.asarray(params0, np.float64)
    direction = np.zeros_like(params)
    value, slope, scale, n_iter, converged = -np.inf, 0.0, 0.0, 0, False
    matrices = None  # information and its Cholesky factor at params
    while n_iter < max_iter:
        trial = params + scale * direction
        t_value, t_grad, t_direction, *t_matrices = program(trial, data)
        t_value, n_iter = float(t_value), n_iter + 1
        matrices = t_matrices if matrices is None else matrices
        if np.isfinite(t_value) and t_value >= value + _ARMIJO * scale * slope:
            gain = t_value - value
            params, value, matrices = trial, t_value, t_matrices
            t_grad, direction, scale = np.asarray(t_grad), np.asarray(t_direction), 1.0
            if not np.all(np.isfinite(direction)):
                diagonal = np.diagonal(np.asarray(t_matrices[0]))
                direction = t_grad / max(float(np.max(diagonal)), 1.0)
            slope = float(t_grad @ direction)
            if gain < tol:
                converged = True
                break
        else:
            scale *= 0.5
        if np.isfinite(value) and slope <= NEWTON_GAIN_RESOLUTION * abs(value):
            converged = True  # a full Newton step would gain nothing float64 can show
            break
        if scale * np.max(np.abs(direction)) < NEWTON_STEP_TOLERANCE:
            converged = bool(np.max(np.abs(direction)) < NEWTON_CONVERGED)
            break
    size = float(np.max(np.abs(direction), initial=0.0))
    return NewtonResult(params, value, n_iter, converged, size, *matrices)


@functools.partial(jax.jit, static_argnames=("distribution", "batch_size"))
def autodiff_information(
    params: jax.Array, data: CBMRData, distribution: str, batch_size: int | None = None
) -> jax.Array:
    """Observed information by automatic differentiation (Hessian-vector products).

    Hessian-vector products (forward over reverse) mapped over the unit vectors: all at once
    (``vmap``) when ``batch_size`` is None and the intermediates are small
    (:data:`VMAP_INFORMATION_MAX`), else in batches of ``batch_size`` (default 16) with
    ``lax.map``, so the memory is ``batch_size`` gradients rather than a full ``jax.hessian``
    intermediate. (The single batch compiles faster: XLA took about 1.5x as long on the same
    products inside ``lax.map``'s loop.) Overdispersion parameters are held at their fitted
    values.

    Parameters
    ----------
    params : float64 array, shape (n_params,)
    data : CBMRData
    distribution : str
    batch_size : int or None

    Returns
    -------
    jax.Array, shape (n_coef, n_coef)
    """
    n_spatial, n_global, _ = _layout(data, distribution)
    n_coef = n_spatial + n_global
    nuisance = params[n_coef:]

    def negative(coef):
        return -log_likelihood(jnp.concatenate([coef, nuisance]), data, distribution)

    coef = params[:n_coef]
    grad = jax.grad(negative)

    def column(v):
        return jax.jvp(grad, (coef,), (v,))[1]

    units = jnp.eye(n_coef, dtype=params.dtype)
    basis = data.basis
    if isinstance(basis, DenseBasis):
        grid = data.loadings.shape[0] * basis.matrix.shape[0]
    else:
        grid = data.loadings.shape[0] * basis.bx.shape[1] * basis.by.shape[0] * basis.bz.shape[0]
    if batch_size is None and n_coef * grid <= VMAP_INFORMATION_MAX:
        hessian = jax.vmap(column)(units)
    else:
        hessian = jax.lax.map(column, units, batch_size=batch_size or 16)
    return 0.5 * (hessian + hessian.T)


@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def cluster_scores(params: jax.Array, data: CBMRData, counts: jax.Array) -> jax.Array:
    """Per-experiment Poisson score contributions, the meat of a cluster sandwich.

    Row ``i`` is ``sum_v x_iv (y_iv - mu_iv)`` over the experiment's voxels, with the design row
    ``x_iv = [L_p(i) (x) phi_v, G_i]`` - assembled as ``L_p(i) (x) Phi^T r_i`` and
    ``G_i (y_i. - w_i E_p(i))``, never as an (experiment x voxel) x parameter array.

    Parameters
    ----------
    params : float64 array, shape (n_params,)
    data : CBMRData
    counts : float64 array, shape (n_exp, n_vox)
        Foci counts of each experiment.

    Returns
    -------
    jax.Array, shape (n_exp, n_coef)
    """
    s, _, w, _ = _pieces(params, data, "poisson")
    mu = jnp.exp(s)
    residual = (
        basis_transpose(data.basis, counts)
        - w[:, None] * basis_transpose(data.basis, mu)[data.assignment]
    )
    spatial = data.loadings[data.assignment][:, :, None] * residual[:, None, :]
    energy = mu.sum(axis=1)[data.assignment]
    scalar = data.moderators * (data.totals - w * energy)[:, None]
    return jnp.concatenate([spatial.reshape(counts.shape[0], -1), scalar], axis=1)


@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def coefficient_maps(basis: SplineBasis, coef: jax.Array) -> jax.Array:
    """Jitted :func:`basis_apply`: coefficient rows (n_rows, n_bases) to maps (n_rows, n_vox)."""
    return basis_apply(basis, coef)

"""Fit kernel parameters to a dataset's foci by gradient descent (JAX + optax).

The ALE kernel's width is a statement about *spatial uncertainty*: a focus reported at ``y``
is taken to lie at the true location with a Gaussian error of the kernel's FWHM (Eickhoff
et al. 2009 derived it from the between-subject and between-template variance of repeated
localisations). This module estimates that width from a meta-analytic dataset itself, by
maximising how well each experiment's foci are predicted by the *other* experiments' foci
smoothed with the kernel.

Objective
---------
For every ordered pair of different experiments ``(e, f)`` and every focus ``x_i`` of ``e``,
score ``x_i`` under the density that experiment ``f`` predicts for it::

    p(x_i | f) = pi * mean_{j in f} N(x_i; y_j, (sigma_i**2 + sigma_j**2) I_3)
                 + (1 - pi) / V

- the first term: ``x_i`` reports the same true location as one of ``f``'s foci ``y_j``.
  Both are noisy reports of that location, each with its own Gaussian error (kernel
  ``sigma = FWHM / sqrt(8 ln 2)``), so their difference is exactly
  ``N(0, sigma_i**2 + sigma_j**2)``;
- the second term: ``x_i`` has no counterpart in ``f`` and is uniform over the mask
  (volume ``V`` mm^3); ``pi`` is the fitted probability of a counterpart.

The loss is minus the mean of ``log p(x_i | f)`` over all ``(x_i, f)`` with ``f != e``
(a composite, leave-one-experiment-out likelihood). It is continuous in mm (no grid), so
it is smooth and differentiable in the FWHM and in the sample-size constants.

Why score against each other experiment separately instead of a pooled density of all
other experiments' foci? The pooled leave-one-out density is a kernel density estimate,
and its likelihood-optimal bandwidth shrinks as experiments are added (as
``n**(-1/(d + 4)) = n**(-1/7)`` in 3-D; Silverman 1986): it measures how smooth a density
estimate should be, not how uncertain a focus is. Against one experiment at a time, the
matching component's variance is the sum of the two foci's localisation variances whatever
the number of experiments, so the fit recovers the generating FWHM (tested on simulated foci
in ``tests/test_fitting.py``; the uniform component absorbs part of the Gaussian's tail,
which biases the fit by about -1.5 % there). The uniform background assumes that
unrelated foci are spread on a scale larger than the kernel; where they are not, the
fitted width is that of the best Gaussian-plus-uniform description of the pair distances.

Memory is bounded: held-out foci are processed in chunks of ``chunk`` rows (a ``chunk x
n_foci`` block of pairwise distances at a time, rematerialised in the backward pass), and
``batch_size`` scores a random subset of foci per optimisation step for very large data.

References
----------
Eickhoff et al. (2009) HBM 30:2907 (the kernel and its sample-size relation); Turkeltaub
et al. (2002) NeuroImage 16:765 (ALE); Varin, Reid & Firth (2011) Statistica Sinica 21:5
(composite likelihood); Silverman (1986) Density Estimation for Statistics and Data
Analysis, Chapman & Hall (bandwidth rates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nimare_jax.exceptions import DatasetError
from nimare_jax.ops import kernels as K
from nimare_jax.spatial import load_mask

__all__ = [
    "FitResult",
    "FociMM",
    "fit_fwhm",
    "fit_uncertainty_constants",
    "foci_mm",
    "held_out_log_likelihood",
]


@dataclass(frozen=True)
class FociMM:
    """A dataset's foci in mm, grouped by experiment, for :func:`held_out_log_likelihood`.

    Attributes
    ----------
    xyz : numpy.ndarray, shape (n_foci, 3), float64
        MNI coordinates in mm.
    exp_index : numpy.ndarray, shape (n_foci,), int32
        Experiment (row of ``ids``) of each focus.
    counts : numpy.ndarray, shape (n_exp,), int32
        Number of foci of each experiment.
    ids : numpy.ndarray of str, shape (n_exp,)
        Experiment ids.
    sample_sizes : numpy.ndarray, shape (n_exp,), float64, or None
        Mean sample size of each experiment, if every experiment has one.
    volume : float
        Mask volume in mm^3 (the uniform background's support).
    """

    xyz: np.ndarray
    exp_index: np.ndarray
    counts: np.ndarray
    ids: np.ndarray
    sample_sizes: np.ndarray | None
    volume: float


@dataclass(frozen=True)
class FitResult:
    """Fitted kernel parameters and the optimisation trace.

    Attributes
    ----------
    fwhm : float or numpy.ndarray, shape (n_exp,)
        Fitted FWHM in mm: one value (:func:`fit_fwhm`) or each experiment's FWHM implied by
        its sample size (:func:`fit_uncertainty_constants`).
    match_probability : float
        Fitted probability ``pi`` that a focus has a counterpart in another experiment.
    loss_history : numpy.ndarray, shape (steps,)
        Loss (minus mean held-out log-likelihood, nats per scored pair) before each step.
    loss : float
        Loss on all foci at the fitted parameters.
    param_history : dict of str to numpy.ndarray, shape (steps,)
        Parameters in natural units (``"fwhm"`` or ``"template_uncertainty"`` and
        ``"subject_uncertainty"``, and ``"match_probability"``) before each step.
    template_uncertainty, subject_uncertainty : float or None
        Fitted constants (FWHM in mm) of Eickhoff et al.'s relation
        ``FWHM**2 = T**2 + S**2 / n``; None for :func:`fit_fwhm`.
    init : dict
        Starting values in natural units.
    """

    fwhm: float | np.ndarray
    match_probability: float
    loss_history: np.ndarray
    loss: float
    param_history: dict
    template_uncertainty: float | None = None
    subject_uncertainty: float | None = None
    init: dict | None = None


def foci_mm(dataset) -> FociMM:
    """Collect a dataset's foci (mm), experiment indices, sample sizes and mask volume.

    Parameters
    ----------
    dataset : nimare_jax.dataset.Dataset
        Studies with coordinates; at least two experiments with foci.

    Returns
    -------
    FociMM
        Arrays for :func:`held_out_log_likelihood`.

    Raises
    ------
    DatasetError
        If fewer than two experiments have foci.
    """
    coords = dataset.coordinates
    ids = np.asarray(dataset.ids)
    order = {k: n for n, k in enumerate(ids)}
    exp_index = coords["id"].map(order).to_numpy()
    counts = np.bincount(exp_index, minlength=len(ids))
    if (counts > 0).sum() < 2:
        raise DatasetError(
            f"kernel fitting needs at least two experiments with foci, got {(counts > 0).sum()}"
        )
    keep = counts > 0  # experiments without foci take no part
    remap = np.cumsum(keep) - 1
    sort = np.argsort(exp_index, kind="stable")
    try:
        sizes = dataset.get_sample_sizes()[keep]
    except DatasetError:
        sizes = None
    mask_img = load_mask(dataset.masker)
    mask = np.asanyarray(mask_img.dataobj) > 0
    voxel_volume = float(np.prod(mask_img.header.get_zooms()[:3]))
    return FociMM(
        xyz=coords[["x", "y", "z"]].to_numpy(np.float64)[sort],
        exp_index=remap[exp_index[sort]].astype(np.int32),
        counts=counts[keep].astype(np.int32),
        ids=ids[keep],
        sample_sizes=sizes,
        volume=float(mask.sum()) * voxel_volume,
    )


@partial(jax.jit, static_argnames=("chunk",))
def held_out_log_likelihood(
    xyz, exp_index, counts, focus_var, match_probability, volume, rows=None, chunk=256
):
    """Mean log-likelihood of each focus under each other experiment's kernel density.

    See the module docstring for the model. Differentiable in ``focus_var``,
    ``match_probability`` and ``volume``.

    Parameters
    ----------
    xyz : float array, shape (n_foci, 3)
        Foci in mm.
    exp_index : int array, shape (n_foci,)
        Experiment of each focus, in ``[0, n_exp)``.
    counts : int array, shape (n_exp,)
        Foci per experiment (all positive).
    focus_var : float array, shape (n_foci,)
        Localisation variance (sigma^2, mm^2 per axis) of each focus.
    match_probability : float
        Probability ``pi`` in (0, 1) that a focus has a counterpart in another experiment.
    volume : float
        Volume in mm^3 of the uniform background.
    rows : int array, shape (n_rows,), or None
        Foci to score (held out); None scores all. Scores are averaged over these rows.
    chunk : int
        Held-out foci per block of pairwise distances (static): memory is
        ``O(chunk * n_foci)``.

    Returns
    -------
    jax.Array, shape ()
        Mean of ``log p(x_i | f)`` over the scored foci ``i`` and experiments ``f != e(i)``.
    """
    dtype = jnp.result_type(xyz, focus_var, float)
    xyz = jnp.asarray(xyz, dtype)
    focus_var = jnp.asarray(focus_var, dtype)
    exp_index = jnp.asarray(exp_index, jnp.int32)
    n_exp = counts.shape[0]
    n_foci = xyz.shape[0]
    rows = jnp.arange(n_foci) if rows is None else jnp.asarray(rows, jnp.int32)
    n_rows = rows.shape[0]
    n_blocks = -(-n_rows // chunk)
    pad = n_blocks * chunk - n_rows
    weight = jnp.concatenate([jnp.ones(n_rows, dtype), jnp.zeros(pad, dtype)])
    rows = jnp.concatenate([rows, jnp.zeros(pad, jnp.int32)])
    inv_counts = 1.0 / jnp.asarray(counts, dtype)
    background = (1.0 - match_probability) / volume

    @jax.checkpoint
    def block(args):
        r, w = args
        diff = xyz[r][:, None, :] - xyz[None, :, :]  # (chunk, n_foci, 3)
        d2 = (diff**2).sum(-1)
        var = focus_var[r][:, None] + focus_var[None, :]
        phi = jnp.exp(-0.5 * d2 / var - 1.5 * jnp.log(2.0 * jnp.pi * var))
        per_exp = jax.ops.segment_sum(phi.T, exp_index, num_segments=n_exp).T * inv_counts
        # the background floor keeps the log finite (and its gradient defined) where the
        # Gaussian terms underflow
        log_p = jnp.log(match_probability * per_exp + background)  # (chunk, n_exp)
        other = exp_index[r][:, None] != jnp.arange(n_exp)[None, :]
        return (jnp.where(other, log_p, 0.0).sum(1) * w).sum()

    totals = jax.lax.map(block, (rows.reshape(n_blocks, chunk), weight.reshape(n_blocks, chunk)))
    return totals.sum() / (n_rows * (n_exp - 1))


def _check_positive(name, value):
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _optimizer(optimizer, learning_rate):
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if callable(optimizer):
        try:  # the same factory and rate give the same object, so the fit is not recompiled
            return _cached_optimizer(optimizer, learning_rate)
        except TypeError:  # unhashable learning rate
            return optimizer(learning_rate)
    raise TypeError(
        "optimizer must be an optax.GradientTransformation or a factory such as optax.adam, "
        f"got {type(optimizer).__name__}"
    )


@lru_cache(maxsize=32)
def _cached_optimizer(optimizer, learning_rate):
    return optimizer(learning_rate)


def _loss_fwhm(p, d, rows, chunk):
    """Minus the held-out log-likelihood for one FWHM ``exp(log_fwhm)``."""
    sigma2 = (jnp.exp(p["log_fwhm"]) * K.FWHM_TO_SIGMA) ** 2
    var = jnp.full(d["xyz"].shape[0], sigma2)
    match = jax.nn.sigmoid(p["logit_match"])
    args = (d["xyz"], d["exp_index"], d["counts"], var, match, d["volume"])
    return -held_out_log_likelihood(*args, rows=rows, chunk=chunk)


def _loss_constants(p, d, rows, chunk):
    """Minus the held-out log-likelihood for FWHM**2 = exp(log_t)**2 + exp(log_s)**2 / n."""
    fwhm = K.fwhm_from_sample_size(d["n"], jnp.exp(p["log_t"]), jnp.exp(p["log_s"]))
    var = (fwhm * K.FWHM_TO_SIGMA) ** 2
    match = jax.nn.sigmoid(p["logit_match"])
    args = (d["xyz"], d["exp_index"], d["counts"], var, match, d["volume"])
    return -held_out_log_likelihood(*args, rows=rows, chunk=chunk)


@partial(jax.jit, static_argnames=("loss_fn", "opt", "steps", "batch_size", "chunk"))
def _optimise(params, data, key, loss_fn, opt, steps, batch_size, chunk):
    """Minimise ``loss_fn(params, data, rows, chunk)`` with ``opt`` for ``steps`` (one scan).

    Returns the fitted parameters, the loss before each step (steps,), the parameters before
    each step (each (steps,)) and the loss on all foci at the fitted parameters.
    """
    n_foci = data["xyz"].shape[0]

    def step(carry, s):
        p, state = carry
        rows = None
        if batch_size is not None:
            k = jax.random.fold_in(key, s)
            rows = jax.random.choice(k, n_foci, (batch_size,), replace=False)
        loss, grad = jax.value_and_grad(loss_fn)(p, data, rows, chunk)
        updates, state = opt.update(grad, state, p)
        return (optax.apply_updates(p, updates), state), (loss, p)

    init = (params, opt.init(params))
    (p, _), (history, trace) = jax.lax.scan(step, init, jnp.arange(steps))
    return p, history, trace, loss_fn(p, data, None, chunk)


def _prepare(dataset, steps, batch_size):
    if not (isinstance(steps, int | np.integer) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    foci = foci_mm(dataset)
    n_foci = foci.xyz.shape[0]
    if batch_size is not None and not (
        isinstance(batch_size, int | np.integer) and 1 <= batch_size <= n_foci
    ):
        raise ValueError(
            f"batch_size must be an integer in [1, n_foci={n_foci}], got {batch_size!r}"
        )
    dtype = jnp.result_type(float)
    data = {
        "xyz": jnp.asarray(foci.xyz, dtype),
        "exp_index": jnp.asarray(foci.exp_index),
        "counts": jnp.asarray(foci.counts),
        "volume": jnp.asarray(foci.volume, dtype),
    }
    return foci, data, dtype


def fit_fwhm(
    dataset,
    init: float = 10.0,
    steps: int = 200,
    learning_rate=0.1,
    optimizer: Callable | optax.GradientTransformation = optax.adam,
    key=None,
    *,
    init_match_probability: float = 0.5,
    batch_size: int | None = None,
    chunk: int = 256,
) -> FitResult:
    """Fit one ALE kernel FWHM to a dataset by maximising the held-out likelihood of its foci.

    The objective is described in :mod:`nimare_jax.fitting`: each focus is scored against
    every other experiment's foci smoothed with Gaussians of variance ``2 sigma**2``
    (``sigma = FWHM / sqrt(8 ln 2)``), mixed with a uniform background over the mask.
    The FWHM is parameterised as ``exp(theta)`` and the match probability as
    ``sigmoid(logit)``, so both stay valid; both are fitted.

    Parameters
    ----------
    dataset : nimare_jax.dataset.Dataset
        At least two experiments with foci.
    init : float
        Starting FWHM in mm.
    steps : int
        Optimisation steps (all inside one ``jax.lax.scan``).
    learning_rate : float or optax schedule
        Passed to ``optimizer`` (on the log-FWHM and logit scales).
    optimizer : callable or optax.GradientTransformation
        A factory taking the learning rate (``optax.adam``, ``optax.sgd``, ...) or a ready
        transformation (``learning_rate`` is then ignored).
    key : jax.random.PRNGKey or None
        Key of the foci subsets drawn when ``batch_size`` is set; unused otherwise.
    init_match_probability : float
        Starting match probability in (0, 1).
    batch_size : int or None
        Score this many random foci per step (stochastic gradient) instead of all.
    chunk : int
        Held-out foci per block of pairwise distances (memory ``O(chunk * n_foci)``).

    Returns
    -------
    FitResult
        ``fwhm`` (float, mm), ``match_probability``, ``loss_history`` (steps,) and ``loss``.

    Examples
    --------
    >>> from nimare_jax.generate import create_coordinate_dataset
    >>> _, dset = create_coordinate_dataset(foci=[(40, -20, 50), (-40, -20, 50)], fwhm=10,
    ...                                     n_studies=40, seed=0)
    >>> res = fit_fwhm(dset, steps=300)
    >>> bool(8.5 < res.fwhm < 11.5)
    True
    """
    _check_positive("init", init)
    if not 0 < init_match_probability < 1:
        raise ValueError(
            f"init_match_probability must be in (0, 1), got {init_match_probability!r}"
        )
    foci, data, dtype = _prepare(dataset, steps, batch_size)

    params = {
        "log_fwhm": jnp.asarray(np.log(init), dtype),
        "logit_match": jnp.asarray(_logit(init_match_probability), dtype),
    }
    opt = _optimizer(optimizer, learning_rate)
    key = jax.random.key(0) if key is None else key
    p, history, trace, loss = _optimise(
        params, data, key, _loss_fwhm, opt, int(steps), batch_size, int(chunk)
    )
    return FitResult(
        fwhm=float(jnp.exp(p["log_fwhm"])),
        match_probability=float(jax.nn.sigmoid(p["logit_match"])),
        loss_history=np.asarray(history),
        loss=float(loss),
        param_history={
            "fwhm": np.exp(np.asarray(trace["log_fwhm"])),
            "match_probability": np.asarray(jax.nn.sigmoid(trace["logit_match"])),
        },
        init={"fwhm": float(init), "match_probability": float(init_match_probability)},
    )


def fit_uncertainty_constants(
    dataset,
    init: tuple[float, float] | None = None,
    steps: int = 300,
    learning_rate=0.1,
    optimizer: Callable | optax.GradientTransformation = optax.adam,
    key=None,
    *,
    init_match_probability: float = 0.5,
    batch_size: int | None = None,
    chunk: int = 256,
) -> FitResult:
    """Fit the two constants of the sample-size -> FWHM relation (Eickhoff et al. 2009).

    Each experiment's kernel has ``FWHM_e**2 = T**2 + S**2 / n_e`` with ``n_e`` its mean
    sample size, ``T`` the template (between-template) and ``S`` the subject
    (between-subject) uncertainty, both FWHM in mm. A pair of foci from experiments ``e``
    and ``f`` then differs by ``N(0, sigma_e**2 + sigma_f**2)``; the objective is the held-out
    likelihood of :func:`fit_fwhm` with these per-focus variances. ``T`` and ``S`` are
    parameterised by their logarithms. They are identifiable only if sample sizes vary
    across experiments (with one ``n`` only ``T**2 + S**2 / n`` is determined).

    Parameters
    ----------
    dataset : nimare_jax.dataset.Dataset
        At least two experiments with foci, each with metadata ``sample_sizes``.
    init : (float, float) or None
        Starting ``(T, S)`` in mm; None starts from Eickhoff et al.'s values
        (about 11.4 and 23.1 mm FWHM, i.e. 5.7 and 11.6 mm as mean distances).
    steps : int
        Optimisation steps.
    learning_rate : float or optax schedule
        Passed to ``optimizer`` (on the log scale of T and S).
    optimizer : callable or optax.GradientTransformation
        Factory taking the learning rate, or a ready transformation.
    key : jax.random.PRNGKey or None
        Key of the foci subsets drawn when ``batch_size`` is set.
    init_match_probability : float
        Starting match probability in (0, 1).
    batch_size : int or None
        Score this many random foci per step instead of all.
    chunk : int
        Held-out foci per block of pairwise distances.

    Returns
    -------
    FitResult
        ``template_uncertainty``, ``subject_uncertainty`` (mm), ``fwhm`` (n_exp,) implied for
        each experiment, ``match_probability``, ``loss_history`` and ``loss``.

    Raises
    ------
    DatasetError
        If an experiment has no valid sample size.
    """
    if init is None:
        init = (float(K.TEMPLATE_UNCERTAINTY), float(K.SUBJECT_UNCERTAINTY))
    if len(init) != 2:
        raise ValueError(f"init must be a pair (template, subject) in mm, got {init!r}")
    for name, v in zip(("template uncertainty", "subject uncertainty"), init, strict=True):
        _check_positive(f"init {name}", v)
    if not 0 < init_match_probability < 1:
        raise ValueError(
            f"init_match_probability must be in (0, 1), got {init_match_probability!r}"
        )
    dataset.get_sample_sizes()  # raises a clear DatasetError if any is missing or invalid
    foci, data, dtype = _prepare(dataset, steps, batch_size)
    data["n"] = jnp.asarray(foci.sample_sizes[foci.exp_index], dtype)

    params = {
        "log_t": jnp.asarray(np.log(init[0]), dtype),
        "log_s": jnp.asarray(np.log(init[1]), dtype),
        "logit_match": jnp.asarray(_logit(init_match_probability), dtype),
    }
    opt = _optimizer(optimizer, learning_rate)
    key = jax.random.key(0) if key is None else key
    p, history, trace, loss = _optimise(
        params, data, key, _loss_constants, opt, int(steps), batch_size, int(chunk)
    )
    t, s = float(jnp.exp(p["log_t"])), float(jnp.exp(p["log_s"]))
    return FitResult(
        fwhm=np.asarray(K.fwhm_from_sample_size(foci.sample_sizes, t, s)),
        match_probability=float(jax.nn.sigmoid(p["logit_match"])),
        loss_history=np.asarray(history),
        loss=float(loss),
        param_history={
            "template_uncertainty": np.exp(np.asarray(trace["log_t"])),
            "subject_uncertainty": np.exp(np.asarray(trace["log_s"])),
            "match_probability": np.asarray(jax.nn.sigmoid(trace["logit_match"])),
        },
        template_uncertainty=t,
        subject_uncertainty=s,
        init={
            "template_uncertainty": float(init[0]),
            "subject_uncertainty": float(init[1]),
            "match_probability": float(init_match_probability),
        },
    )


def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))

"""The Monte Carlo engine: every permutation / resampling null in nimare_jax runs here.

A null is described by one pure function ``summary_fn(key) -> pytree`` that draws one
permuted data set from ``key`` and returns a few numbers (max statistic, max cluster size,
max cluster mass, histogram counts...). :func:`run_permutations` evaluates it for
iterations ``0 .. n_iters - 1`` with key ``jax.random.fold_in(key, i)``, so iteration ``i``
gets the same draw whatever the batch size or the number of devices: results are
reproducible across hardware.

Execution
---------
- Iterations run in fixed-size batches of ``batch_size`` per device (``vmap`` or ``lax.map``
  inside one ``jit``); each step dispatches one batch to each of ``n_devices`` devices
  asynchronously. The batch shape is static: the last, partial batch is padded with extra
  iteration indices whose results are dropped, so there is one compilation per device.
- Devices run independent programs rather than one ``shard_map`` SPMD program: the
  iterations never communicate, and on CPU a host callback (cluster labelling) inside a
  multi-device SPMD program deadlocks (each device's callback waits on its input while
  holding the GIL the other needs), which per-device programs avoid.
- Several hosts (``jax.distributed``): each process runs this engine on its local devices
  for its own block of iteration indices; see ``docs/multihost.md``.
- Peak memory is set by ``batch_size`` (one batch of per-iteration maps per device), never
  by ``n_iters``; only summaries come back to the host.
- The next batch is dispatched before the previous one is copied to the host, so devices
  stay busy while the host updates the progress bar and checks early stopping.

Devices on CPU
--------------
XLA exposes one CPU device by default. To use ``n`` cores as ``n`` devices, call
:func:`configure_cpu_devices` (or set ``XLA_FLAGS=--xla_force_host_platform_device_count=n``)
*before the first JAX computation*. Estimators' NiMARE-style ``n_cores`` argument maps to
``n_devices`` (see :func:`resolve_n_devices`: ``n <= 0`` means all cores, as in NiMARE;
a request JAX cannot honour any more is reduced to the devices it has, with a warning).

Early stopping
--------------
``stop_fn(samples_so_far) -> bool`` is called on the host after each batch (NiMARE issue
866). :class:`QuantileStop` is a ready-made criterion: stop when the Maritz-Jarrett
standard error of the ``1 - alpha`` quantile of one summary (the FWE threshold) falls below
a tolerance.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import betainc
from tqdm.auto import tqdm

from nimare_jax.ops.validate import check_n_iters

__all__ = [
    "BatchedSummary",
    "BoundSummary",
    "PermutationResult",
    "QuantileStop",
    "configure_cpu_devices",
    "maritz_jarrett_se",
    "resolve_n_devices",
    "run_permutations",
]


@dataclass(frozen=True)
class PermutationResult:
    """Output of :func:`run_permutations`.

    Attributes
    ----------
    samples : pytree of numpy.ndarray
        The summaries with a leading axis of length ``n_iters`` (iteration ``i`` at row
        ``i``), same tree structure as ``summary_fn``'s output; leaves reduced with
        ``"sum"`` hold their sum over iterations instead.
    n_iters : int
        Iterations actually run (fewer than requested if stopped early).
    n_requested : int
        Iterations requested.
    stopped_early : bool
        True if ``stop_fn`` ended the run.
    """

    samples: Any
    n_iters: int
    n_requested: int
    stopped_early: bool


@dataclass(frozen=True, eq=False)
class BoundSummary:
    """A null's summary function with its operands: ``null(key) == summary(key, *operands)``.

    Callable (and ``jit``-able) as a one-argument summary; :func:`run_permutations` should
    get ``summary`` and ``operands`` separately (``run_permutations(null.summary, key,
    n_iters, operands=null.operands)``), so the arrays stay arguments and a cached
    ``summary`` reuses its compiled runner.

    Attributes
    ----------
    summary : callable
        Pure ``summary(key, *operands) -> pytree``.
    operands : tuple
        Its arguments after the key.
    """

    summary: Callable
    operands: tuple

    def __call__(self, key):
        """Return ``summary(key, *operands)``."""
        return self.summary(key, *self.operands)


def configure_cpu_devices(n: int) -> bool:
    """Expose ``n`` CPU cores as ``n`` JAX devices, if JAX has not started yet.

    Must run before the first JAX computation (importing ``jax`` is fine). Equivalent to
    ``XLA_FLAGS=--xla_force_host_platform_device_count=n`` set before importing jax.

    Parameters
    ----------
    n : int
        Number of CPU devices.

    Returns
    -------
    bool
        True if the setting took effect (or ``n`` devices already exist); False, with a
        ``RuntimeWarning``, if JAX's backend was already initialised with fewer devices.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be a positive integer; got {n}.")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        have = len(jax.devices("cpu"))
        if have >= n:
            return True
        warnings.warn(
            f"configure_cpu_devices({n}) came too late: JAX is already running with {have} "
            "CPU device(s). Call it before any JAX computation, or set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={n} before importing jax.",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


#: ``(requested, available)`` device shortfalls already warned about (warned once each).
_WARNED_SHORTFALL: set = set()


def _n_cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_n_devices(n_devices: int | None = None) -> int:
    """Map a NiMARE-style ``n_cores`` request to a number of JAX devices.

    ``n_cores`` is never ignored silently: on CPU, if JAX has not started yet, the cores
    are exposed as devices here (:func:`configure_cpu_devices`); if it has already started
    with fewer devices, a ``RuntimeWarning`` (once per request) says so and how to fix it.

    Parameters
    ----------
    n_devices : int or None
        ``None``: every device JAX already has (the engine's default). ``n <= 0``: all
        cores, as NiMARE (on CPU the cores available to this process, elsewhere all
        devices). ``n > 0``: that many, reduced with a warning to the devices available.

    Returns
    -------
    int
        Number of devices to use.
    """
    if n_devices is None:
        return jax.device_count()
    if isinstance(n_devices, bool) or not isinstance(n_devices, int | np.integer):
        raise TypeError(f"n_cores must be an integer or None; got {n_devices!r}.")
    want_cpu = int(n_devices) if n_devices > 0 else _n_cpu_cores()
    if want_cpu > 1 and jax.config.jax_num_cpu_devices in (None, -1):
        with contextlib.suppress(RuntimeError):  # raises once JAX's backends have started
            jax.config.update("jax_num_cpu_devices", want_cpu)
    available = jax.device_count()
    on_cpu = jax.default_backend() == "cpu"
    wanted = want_cpu if (n_devices > 0 or on_cpu) else available
    if wanted <= available:
        return wanted
    if (wanted, available) not in _WARNED_SHORTFALL:
        _WARNED_SHORTFALL.add((wanted, available))
        hint = (
            " JAX was already running, so its CPU devices could not be reconfigured: call "
            "nimare_jax.ops.permute.configure_cpu_devices(n) before any JAX computation, "
            f"or set XLA_FLAGS=--xla_force_host_platform_device_count={wanted} before "
            "importing jax."
            if on_cpu
            else ""
        )
        warnings.warn(
            f"n_cores={n_devices} asks for {wanted} devices but JAX has {available}; using "
            f"{available}." + hint,
            RuntimeWarning,
            stacklevel=2,
        )
    return available


def maritz_jarrett_se(x, q: float) -> float:
    """Maritz-Jarrett standard error of the sample ``q``-quantile.

    The quantile is estimated by the order statistic ``X_(m)``, ``m = floor(q n + 0.5)``;
    its standard error is ``sqrt(C2 - C1**2)`` with ``Ck = sum_i W_i X_(i)**k`` and
    ``W_i = I_{i/n}(m - 1, n - m) - I_{(i-1)/n}(m - 1, n - m)`` (``I`` the regularised
    incomplete beta function). Maritz & Jarrett (1978), J. Am. Stat. Assoc. 73:194;
    Wilcox (2012), *Introduction to Robust Estimation*, 3.5.

    Parameters
    ----------
    x : array-like, shape (n,)
        Sample (n >= 3).
    q : float
        Quantile level in (0, 1).

    Returns
    -------
    float
        Estimated standard error of ``X_(m)``.
    """
    x = np.sort(np.asarray(x, dtype=np.float64).ravel())
    n = x.size
    if n < 3:
        raise ValueError(f"Need at least 3 samples for the Maritz-Jarrett SE; got {n}.")
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1); got {q}.")
    m = min(max(math.floor(q * n + 0.5), 2), n - 1)
    cdf = betainc(m - 1, n - m, np.arange(n + 1) / n)
    w = np.diff(cdf)
    c1 = w @ x
    c2 = w @ (x * x)
    return float(np.sqrt(max(c2 - c1 * c1, 0.0)))


class QuantileStop:
    """Early-stopping rule: the FWE threshold is known precisely enough.

    Stops when the Maritz-Jarrett standard error (:func:`maritz_jarrett_se`) of the
    ``1 - alpha`` quantile of the selected summary is at most ``tol`` (times the quantile's
    magnitude if ``relative``), once at least ``min_iters`` iterations have run. After each
    call, ``n``, ``quantile`` and ``se`` hold the last evaluation, so the Monte Carlo error of
    the corrected threshold can be reported.

    Parameters
    ----------
    select : str or callable
        Key of the summary in a dict-like pytree, or a function ``samples -> 1-D array``.
    alpha : float
        FWE level; the monitored quantile is ``1 - alpha``.
    tol : float
        Tolerance on the standard error.
    relative : bool
        If True, the tolerance is relative to ``|quantile|``.
    min_iters : int
        Never stop before this many iterations.
    """

    def __init__(
        self,
        select: str | Callable,
        *,
        alpha: float = 0.05,
        tol: float = 0.01,
        relative: bool = True,
        min_iters: int = 1000,
    ):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1); got {alpha}.")
        if tol <= 0:
            raise ValueError(f"tol must be positive; got {tol}.")
        self.select = select
        self.alpha = alpha
        self.tol = tol
        self.relative = relative
        self.min_iters = max(int(min_iters), 3)
        self.n = 0
        self.quantile = float("nan")
        self.se = float("nan")

    def __call__(self, samples) -> bool:
        """Return True if sampling can stop."""
        x = self.select(samples) if callable(self.select) else samples[self.select]
        x = np.asarray(x).ravel()
        self.n = x.size
        if x.size < self.min_iters:
            return False
        q = 1 - self.alpha
        xs = np.sort(x)
        self.quantile = float(xs[min(max(math.floor(q * x.size + 0.5), 2), x.size - 1) - 1])
        self.se = maritz_jarrett_se(xs, q)
        scale = abs(self.quantile) if self.relative else 1.0
        return self.se <= self.tol * scale


#: Per-leaf reductions :func:`run_permutations` accepts.
REDUCTIONS = ("keep", "sum")


def _reduction_spec(reduce) -> tuple | str:
    """Normalise ``reduce`` to ``"keep"``, ``"sum"`` or sorted ``((name, how), ...)``."""
    if reduce is None:
        return "keep"
    if isinstance(reduce, str):
        if reduce not in REDUCTIONS:
            raise ValueError(
                f"reduce must be None, one of {REDUCTIONS} or a dict; got {reduce!r}."
            )
        return reduce
    if not isinstance(reduce, dict) or not reduce:
        raise ValueError(f"reduce must be None, one of {REDUCTIONS} or a dict; got {reduce!r}.")
    spec = []
    for name, how in sorted(reduce.items()):
        how = "keep" if how is None else how
        if how not in REDUCTIONS:
            raise ValueError(f"reduce[{name!r}] must be None or one of {REDUCTIONS}; got {how!r}.")
        spec.append((name, how))
    kinds = {how for _, how in spec}
    return kinds.pop() if len(kinds) == 1 else tuple(spec)


def _split(tree, spec):
    """Return ``(kept, summed)`` parts of a summary tree (dicts, or the tree and None)."""
    if spec == "keep":
        return tree, None
    if spec == "sum":
        return None, tree
    if not isinstance(tree, dict) or set(tree) != {name for name, _ in spec}:
        have = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise ValueError(
            f"reduce names the summary's leaves {[n for n, _ in spec]}, but the summary "
            f"returns {have}"
        )
    kept = {n: tree[n] for n, how in spec if how == "keep"}
    summed = {n: tree[n] for n, how in spec if how == "sum"}
    return kept, summed


@functools.lru_cache(maxsize=16)
def _build_runner(summary_fn, vectorize: str, spec, batch_size: int, step: int):
    # Cached: the same summary function (``nimare_jax.ops.relocation`` returns one per
    # configuration), reduction and batch layout reuse one jitted runner, so a second run
    # with the same shapes neither traces nor compiles. Bounded, as entries keep their
    # summary alive.
    def per_device(key, start, end, operands):
        # Iteration indices are made on the device from the batch's first index, so no
        # O(n_iters) array exists anywhere; the next batch's start is returned on the
        # device too (no host transfer to a busy device between dispatches).
        idx = start + jnp.arange(batch_size, dtype=jnp.int32)
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, idx)

        if isinstance(summary_fn, BatchedSummary):
            each, batch = summary_fn.each, None if summary_fn.on_host else summary_fn.batch
        else:
            each, batch = summary_fn, None

        def one(k):
            return each(k, *operands)

        out = jax.lax.map(one, keys) if vectorize == "map" else jax.vmap(one)(keys)
        if batch is not None:
            out = batch(out)
        kept, summed = _split(out, spec)
        if summed is not None:
            # Sum on the device (padding iterations masked out): only one summary per
            # device and step crosses to the host.
            valid = idx < end

            def total(leaf):
                return jnp.where(valid.reshape((-1,) + (1,) * (leaf.ndim - 1)), leaf, 0).sum(0)

            summed = jax.tree.map(total, summed)
        return (kept, summed), start + step

    return jax.jit(per_device)


class _Samples:
    """Per-iteration summaries gathered on the host in a buffer that doubles as it fills.

    Memory follows the iterations actually run, not the number requested (which may be
    huge when early stopping is expected to end the run).
    """

    def __init__(self, n_max: int):
        self.n_max = n_max
        self.n = 0
        self.buffers = None

    def add(self, batch, n_valid: int) -> None:
        def grow(buf):
            size = min(max(2 * buf.shape[0], need), self.n_max)
            new = np.empty((size, *buf.shape[1:]), buf.dtype)
            new[: self.n] = buf[: self.n]
            return new

        need = self.n + n_valid
        if self.buffers is None:
            self.buffers = jax.tree.map(
                lambda leaf: np.empty((need, *leaf.shape[1:]), leaf.dtype), batch
            )
        elif need > jax.tree.leaves(self.buffers)[0].shape[0]:
            self.buffers = jax.tree.map(grow, self.buffers)

        def store(buf, leaf, lo=self.n):
            buf[lo:need] = leaf[:n_valid]

        jax.tree.map(store, self.buffers, batch)
        self.n = need

    def view(self):
        """Return the summaries so far, ``(n_done, ...)`` per leaf (views, not copies)."""
        return jax.tree.map(lambda buf: buf[: self.n], self.buffers)


class BatchedSummary(NamedTuple):
    """A summary in two stages: one part per iteration, one part per batch.

    :func:`run_permutations` runs ``each`` for every iteration of a device's batch (as
    ``vectorize`` says), then ``batch`` once on the stacked outputs, inside the same device
    program. Use it when part of the work is cheaper for a whole batch at once, e.g. one
    host callback (:func:`jax.pure_callback`, which holds the Python GIL) per batch instead
    of one per iteration. A ``NamedTuple`` of functions, so it hashes by the functions'
    identities and a cached pair reuses the compiled runner.

    With ``on_host=True``, ``batch`` runs on the host instead, on NumPy arrays, after each
    device's batch is copied back, while the devices already run their next batches. A
    program holding a host callback does not overlap with the other devices' programs on
    CPU (measured: two compute threads busy together 6 % of the time, 87 % without the
    callback), so host work is better done outside the device programs.

    Attributes
    ----------
    each : callable
        Pure ``each(key, *operands) -> pytree``.
    batch : callable
        Pure ``batch(pytree with a leading batch axis) -> pytree`` of the summaries, each
        leaf with the same leading axis (row ``j`` must depend on row ``j`` of the input
        only).
    on_host : bool
        Run ``batch`` on the host (NumPy in, NumPy out); the summary's leaves are then all
        kept (``reduce`` None or ``"keep"``).
    with_operands : bool
        With ``on_host``, call ``batch(out, *operands)``: the host stage also gets the
        operands as given to :func:`run_permutations` (e.g. the mask's voxel indices that
        place the values ``each`` returns in the volume).
    """

    each: Callable
    batch: Callable
    on_host: bool = False
    with_operands: bool = False


def run_permutations(
    summary_fn: Callable[[jax.Array], Any],
    key: jax.Array,
    n_iters: int,
    *,
    batch_size: int = 64,
    n_devices: int | None = None,
    progress: bool = True,
    desc: str = "Monte Carlo null",
    stop_fn: Callable[[Any], bool] | None = None,
    vectorize: str = "vmap",
    reduce: str | None = None,
    first_iter: int = 0,
    operands: tuple = (),
) -> PermutationResult:
    """Run ``n_iters`` Monte Carlo iterations of a pure summary function.

    Parameters
    ----------
    summary_fn : callable or BatchedSummary
        Pure function ``summary_fn(key, *operands) -> pytree`` of small arrays (scalars,
        short histograms). It must be traceable by ``jit`` and ``vmap``; it is traced once.
        A :class:`BatchedSummary` splits it into a per-iteration and a per-batch stage.
    key : jax.Array
        Root PRNG key (typed or raw). Iteration ``i`` uses ``jax.random.fold_in(key, i)``.
    n_iters : int
        Number of iterations (validated by :func:`~nimare_jax.ops.validate.check_n_iters`).
        Memory does not grow with it: indices are made per batch on the device and the
        host holds only the summaries of the iterations done.
    batch_size : int
        Iterations per device per step, vmapped together; sets peak memory (one batch of
        per-iteration intermediates per device). Reduced for small ``n_iters`` so padding
        never exceeds one step.
    n_devices : int or None
        Devices to spread batches over (``jax.devices()[:n_devices]``): ``None`` for every
        device JAX has, otherwise NiMARE's ``n_cores`` (``<= 0``: all cores), resolved by
        :func:`resolve_n_devices`.
    progress : bool
        Show a tqdm progress bar with iterations per second.
    desc : str
        Label of the progress bar.
    stop_fn : callable, optional
        ``stop_fn(samples_so_far) -> bool``, called on the host after every step with the
        summaries gathered so far (numpy arrays with a leading axis of the iterations
        done); return True to stop. Where it stops depends on the step size
        (``batch_size * n_devices``), but iteration ``i``'s result never does. See
        :class:`QuantileStop`.
    vectorize : {"vmap", "map"}
        How a device runs its batch: ``"vmap"`` batches the summary (best when it is
        array-parallel, and on GPUs); ``"map"`` runs the batch's iterations one after the
        other with ``lax.map`` (best for summaries built on in-place window updates, which
        ``vmap`` would turn into gathers and scatters).
    reduce : None, "keep", "sum" or dict
        What comes back of each leaf of the summary. ``None``/``"keep"`` keeps every
        iteration's value; ``"sum"`` keeps only the running sum over iterations (e.g.
        histograms or exceedance counts of a voxel-wise null), so memory does not grow with
        ``n_iters``. A dict ``{name: "keep" | "sum"}`` over the keys of a dict summary
        chooses per leaf (subtree), so one run yields both a voxel-wise count and the
        per-iteration maxima of the same draws. ``stop_fn`` needs at least one kept leaf
        and sees only the kept ones.
    first_iter : int
        Index of the first iteration: runs iterations ``first_iter .. first_iter + n_iters
        - 1``. Lets several processes (``jax.distributed``) split one null between them
        and still get exactly the draws of a single-process run.
    operands : tuple of arrays
        Extra arguments of ``summary_fn``, placed once on every device (pass large inputs
        here rather than closing over them, which would compile them in as constants).

    Returns
    -------
    PermutationResult
        Samples as numpy arrays of shape ``(n_iters_done, ...)``, and the counts.

    Examples
    --------
    >>> import jax
    >>> res = run_permutations(
    ...     lambda k: jax.random.normal(k, (100,)).max(), jax.random.key(0), 10, progress=False
    ... )
    >>> res.samples.shape, res.n_iters
    ((10,), 10)
    """
    n_iters = check_n_iters(n_iters)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}.")
    if vectorize not in ("vmap", "map"):
        raise ValueError(f"vectorize must be 'vmap' or 'map'; got {vectorize!r}.")
    spec = _reduction_spec(reduce)
    host_batch = summary_fn.batch if getattr(summary_fn, "on_host", False) else None
    if host_batch is not None and spec != "keep":
        raise ValueError("a BatchedSummary with on_host=True needs reduce=None or 'keep'.")
    host_args = tuple(operands) if getattr(summary_fn, "with_operands", False) else ()
    if spec == "sum" and stop_fn is not None:
        raise ValueError("stop_fn needs at least one leaf kept; reduce='sum' keeps none.")
    n_dev = resolve_n_devices(n_devices)
    batch_size = min(int(batch_size), -(-n_iters // n_dev))
    step = batch_size * n_dev
    n_steps = -(-n_iters // step)
    if first_iter < 0:
        raise ValueError(f"first_iter must be >= 0; got {first_iter}.")
    if first_iter + n_iters + 2 * step >= np.iinfo(np.int32).max:
        raise ValueError(f"n_iters={n_iters} is too large for 32-bit iteration indices.")

    devices = jax.devices()[:n_dev]
    keys = [jax.device_put(key, d) for d in devices]
    # Large inputs go in as arguments: arrays closed over by ``summary_fn`` would be
    # embedded in the compiled program as constants, a second copy of each.
    device_operands = [jax.device_put(tuple(operands), d) for d in devices]
    ends = [jax.device_put(np.int32(first_iter + n_iters), d) for d in devices]
    # Device n's batch of step i starts at first_iter + i * step + n * batch_size; each
    # dispatch returns the start of its device's next batch.
    starts = [
        jax.device_put(np.int32(first_iter + n * batch_size), d) for n, d in enumerate(devices)
    ]
    runner = _build_runner(summary_fn, vectorize, spec, batch_size, step)

    def dispatch():
        outs = []
        for n, args in enumerate(zip(keys, starts, ends, device_operands, strict=True)):
            out, starts[n] = runner(*args)
            outs.append(out)
        return outs

    kept = None if spec == "sum" else _Samples(n_iters)
    summed = None
    done = 0
    stopped = False
    with tqdm(total=n_iters, desc=desc, unit="it", disable=not progress, leave=False) as bar:
        pending = dispatch()
        for i_step in range(n_steps):
            upcoming = dispatch() if i_step + 1 < n_steps else None
            n_valid = min(step, n_iters - done)
            outs = jax.device_get(pending)
            if host_batch is not None:
                outs = [(host_batch(k, *host_args), s) for k, s in outs]
            if spec != "keep":
                part = jax.tree.map(
                    lambda *leaves: sum(np.asarray(x) for x in leaves), *(s for _, s in outs)
                )
                summed = part if summed is None else jax.tree.map(np.add, summed, part)
            if kept is not None:
                batch = jax.tree.map(
                    lambda *leaves: np.concatenate([np.asarray(x) for x in leaves]),
                    *(k for k, _ in outs),
                )
                kept.add(batch, n_valid)
            done += n_valid
            bar.update(n_valid)
            pending = upcoming
            if stop_fn is not None and done < n_iters and stop_fn(kept.view()):
                stopped = True
                break
    if spec == "sum":
        samples = summed
    elif spec == "keep":
        samples = kept.view()
    else:
        samples = {**kept.view(), **summed}
    return PermutationResult(samples, done, n_iters, stopped)

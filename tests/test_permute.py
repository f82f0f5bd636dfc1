import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from nimare_jax.ops import permute as pm
from nimare_jax.ops.label import max_cluster_stats

N_ITERS = 50


def summary(key):
    """A small null: max, a short histogram and a cluster size (exercises while_loops)."""
    k1, k2 = jax.random.split(key)
    vol = jax.random.uniform(k1, (5, 6, 7))
    stats = max_cluster_stats(vol > 0.6, vol - 0.6, connectivity=6, backend="jax", capacity=32)
    counts = jnp.histogram(jax.random.normal(k2, (40,)), bins=4, range=(-2.0, 2.0))[0]
    return {"max": jnp.max(vol), "size": stats.max_size, "hist": counts}


def loop_reference(key, n):
    """Independent computation: a plain Python loop over fold_in keys."""
    outs = [jax.jit(summary)(jax.random.fold_in(key, i)) for i in range(n)]
    return {k: np.stack([np.asarray(o[k]) for o in outs]) for k in outs[0]}


@pytest.fixture(scope="module")
def reference():
    return loop_reference(jax.random.key(3), N_ITERS)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batch_size_invariance_and_loop_equality(batch_size, reference):
    res = pm.run_permutations(
        summary, jax.random.key(3), N_ITERS, batch_size=batch_size, progress=False
    )
    assert res.n_iters == N_ITERS == res.n_requested
    assert not res.stopped_early
    assert res.samples["hist"].shape == (N_ITERS, 4)
    assert all(isinstance(v, np.ndarray) for v in res.samples.values())
    assert_same(res.samples, reference)


def test_different_key_gives_different_null(reference):
    res = pm.run_permutations(summary, jax.random.key(4), N_ITERS, batch_size=64, progress=False)
    assert not np.array_equal(res.samples["max"], reference["max"])


def test_raw_uint32_key():
    raw = jax.random.PRNGKey(0)
    res = pm.run_permutations(lambda k: jax.random.uniform(k), raw, 5, progress=False)
    expected = [float(jax.random.uniform(jax.random.fold_in(raw, i))) for i in range(5)]
    np.testing.assert_array_equal(res.samples, np.asarray(expected, np.float32))


def test_traced_once_across_batches():
    n_traces = 0

    def counted(key):
        nonlocal n_traces
        n_traces += 1
        return jax.random.normal(key, (3,)).sum()

    res = pm.run_permutations(counted, jax.random.key(0), 23, batch_size=4, progress=False)
    assert res.n_iters == 23  # 6 steps, last one partial
    assert n_traces == 1


def test_stop_fn_stops_and_reports_count(reference):
    calls = []

    def stop(samples):
        calls.append(len(samples["max"]))
        return len(samples["max"]) >= 20

    res = pm.run_permutations(
        summary, jax.random.key(3), 1000, batch_size=8, progress=False, stop_fn=stop
    )
    assert res.stopped_early
    assert res.n_iters == 24 == len(res.samples["max"])
    assert calls == [8, 16, 24]
    assert_same(res.samples, {k: v[:24] for k, v in reference.items()})


def test_quantile_stop_criterion():
    stop = pm.QuantileStop(lambda s: s, alpha=0.05, tol=0.02, min_iters=100)
    res = pm.run_permutations(
        lambda k: jax.random.normal(k, (20,)).max(),
        jax.random.key(0),
        20_000,
        batch_size=100,
        progress=False,
        stop_fn=stop,
    )
    assert res.stopped_early
    assert 100 <= res.n_iters < 20_000
    assert stop.n == res.n_iters
    assert stop.se <= 0.02 * abs(stop.quantile)
    # the rule did not hold one step earlier
    earlier = res.samples[: res.n_iters - 100]
    if earlier.size >= 100:
        assert not pm.QuantileStop(lambda s: s, alpha=0.05, tol=0.02, min_iters=100)(earlier)


def test_maritz_jarrett_matches_asymptotic_se():
    # for U(0, 1) the SE of the q-quantile is sqrt(q (1 - q) / n) (density 1)
    rng = np.random.default_rng(0)
    n, q = 4000, 0.95
    se = np.mean([pm.maritz_jarrett_se(rng.random(n), q) for _ in range(20)])
    assert se == pytest.approx(np.sqrt(q * (1 - q) / n), rel=0.08)
    with pytest.raises(ValueError, match="at least 3"):
        pm.maritz_jarrett_se([1.0, 2.0], q)


def test_progress_bar(capsys):
    pm.run_permutations(
        lambda k: jax.random.uniform(k),
        jax.random.key(0),
        6,
        batch_size=2,
        progress=True,
        desc="null-test",
    )
    err = capsys.readouterr().err
    assert "null-test" in err
    assert "it/s" in err or "s/it" in err
    pm.run_permutations(lambda k: jax.random.uniform(k), jax.random.key(0), 6, progress=False)
    assert capsys.readouterr().err == ""


def test_device_arguments(monkeypatch):
    monkeypatch.setattr(pm, "_WARNED_SHORTFALL", set())
    have = jax.device_count()
    assert pm.resolve_n_devices(None) == have
    assert pm.resolve_n_devices(1) == 1
    with pytest.warns(RuntimeWarning, match=f"asks for {have + 5} devices but JAX has {have}"):
        assert pm.resolve_n_devices(have + 5) == have
    with warnings.catch_warnings():  # warned once per request
        warnings.simplefilter("error")
        assert pm.resolve_n_devices(have + 5) == have
    # n <= 0 means all cores, as NiMARE's _check_ncores
    cores = pm._n_cpu_cores()
    if cores > have:
        with pytest.warns(RuntimeWarning, match="could not be reconfigured"):
            assert pm.resolve_n_devices(0) == have
    else:
        assert pm.resolve_n_devices(0) == cores
    with pytest.raises(TypeError, match="n_cores must be an integer"):
        pm.resolve_n_devices(1.5)
    jax.devices()  # backend is initialised: too late to change the device count
    if jax.device_count() < 64:
        with pytest.warns(RuntimeWarning, match="came too late"):
            assert not pm.configure_cpu_devices(64)


def test_n_cores_configures_devices_before_jax_starts():
    # In a fresh process, asking for 2 cores (or all, n_cores=0) exposes them as devices
    # instead of silently running on JAX's single default CPU device.
    code = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("error")
        import jax
        from nimare_jax.ops import permute as pm
        n = pm.resolve_n_devices(2)
        res = pm.run_permutations(lambda k: jax.random.uniform(k), jax.random.key(0), 6,
                                  n_devices=2, progress=False)
        print(n, jax.device_count(), res.n_iters)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "2", "6"]


def test_huge_n_iters_allocates_nothing_per_iteration():
    # A run asked for 10**9 iterations and stopped after its first batch: before, the
    # engine made an index for every iteration up front (4 GB here; 235 MB and 2 minutes
    # for 10**6) plus a sample buffer of n_iters rows. Host allocations (numpy's are traced
    # by tracemalloc) must not depend on n_iters; 16 MB is far below any per-iteration array.
    def small_summary(k):
        return {"max": jax.random.uniform(k), "hist": jnp.zeros(3, jnp.int32)}

    key = jax.random.key(5)
    expected = pm.run_permutations(small_summary, key, 8, batch_size=8, progress=False)
    tracemalloc.start()
    try:
        res = pm.run_permutations(
            small_summary, key, 10**9, batch_size=8, progress=False, stop_fn=lambda s: True
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.1f} MB traced"
    assert res.stopped_early and res.n_iters == 8 and res.n_requested == 10**9
    assert_same(res.samples, expected.samples)


def test_sample_buffer_grows_with_iterations_done(reference):
    # stop_fn sees every summary so far, across buffer growths, identical to a full run
    seen = []

    def stop(samples):
        seen.append(samples["max"].copy())
        return len(samples["max"]) >= 40

    res = pm.run_permutations(
        summary, jax.random.key(3), 10**6, batch_size=5, progress=False, stop_fn=stop
    )
    assert res.n_iters == 40 and [len(s) for s in seen] == list(range(5, 45, 5))
    for s in seen:
        np.testing.assert_array_equal(s, reference["max"][: len(s)])
    assert_same(res.samples, {k: v[:40] for k, v in reference.items()})


def test_bad_arguments():
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="n_iters must be a positive integer"):
            pm.run_permutations(summary, jax.random.key(0), bad)
    with pytest.raises(ValueError, match="batch_size must be"):
        pm.run_permutations(summary, jax.random.key(0), 5, batch_size=0)


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from nimare_jax.ops import permute as pm
    assert pm.configure_cpu_devices(2)
    import jax
    sys.path.insert(0, {tests_dir!r})
    from test_permute import summary
    assert jax.device_count() == 2, jax.devices()
    out = {{}}
    for bs in (1, 7, 64):
        res = pm.run_permutations(summary, jax.random.key(3), {n}, batch_size=bs,
                                  n_devices=2, progress=False)
        out[bs] = {{k: v.tolist() for k, v in res.samples.items()}}
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_two_devices_in_subprocess(reference):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    script = SCRIPT.format(tests_dir=os.path.dirname(__file__), n=N_ITERS)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for samples in out.values():
        got = {k: np.asarray(v, dtype=reference[k].dtype) for k, v in samples.items()}
        assert_same(got, reference)


def test_first_iter_continues_the_same_stream():
    def summary(k):
        return jax.random.uniform(k)

    key = jax.random.key(11)
    whole = pm.run_permutations(summary, key, 10, progress=False).samples
    tail = pm.run_permutations(summary, key, 4, progress=False, first_iter=6).samples
    np.testing.assert_array_equal(whole[6:], tail)


@pytest.mark.parametrize("n_iters,batch_size", [(10, 4), (7, 7), (5, 16)])
def test_reduce_sum_equals_sum_of_samples(n_iters, batch_size):
    def summary(k):
        u = jax.random.uniform(k, (6,))
        return {"hist": u > 0.5, "total": u.sum()}

    key = jax.random.key(3)
    full = pm.run_permutations(summary, key, n_iters, batch_size=batch_size, progress=False)
    summed = pm.run_permutations(
        summary, key, n_iters, batch_size=batch_size, progress=False, reduce="sum"
    )
    np.testing.assert_array_equal(summed.samples["hist"], full.samples["hist"].sum(0))
    np.testing.assert_allclose(summed.samples["total"], full.samples["total"].sum(), rtol=1e-5)
    assert summed.n_iters == n_iters


@pytest.mark.parametrize("n_iters,batch_size", [(10, 4), (7, 7), (5, 16)])
def test_per_leaf_reduction_equals_two_passes(n_iters, batch_size):
    # One run with some leaves summed and others kept gives bit for bit what the old
    # all-or-nothing engine gave in two runs of the same draws (reduce="sum", then kept).
    def summary(k):
        u = jax.random.uniform(k, (6,))
        return {"exceed": u > 0.5, "total": u.sum(), "max": u.max(), "hist": summary_hist(k)}

    def summary_hist(k):
        return jnp.histogram(jax.random.normal(k, (40,)), bins=4, range=(-2.0, 2.0))[0]

    key = jax.random.key(5)
    opts = {"batch_size": batch_size, "progress": False}
    summed = pm.run_permutations(summary, key, n_iters, reduce="sum", **opts).samples
    kept = pm.run_permutations(summary, key, n_iters, **opts).samples
    spec = {"exceed": "sum", "total": "sum", "max": "keep", "hist": None}
    mixed = pm.run_permutations(summary, key, n_iters, reduce=spec, **opts)
    assert mixed.n_iters == n_iters
    assert set(mixed.samples) == set(spec)
    for name in ("exceed", "total"):
        np.testing.assert_array_equal(mixed.samples[name], summed[name])
    for name in ("max", "hist"):
        np.testing.assert_array_equal(mixed.samples[name], kept[name])
    assert mixed.samples["max"].shape == (n_iters,)


def test_per_leaf_reduction_stops_on_kept_leaves():
    def summary(k):
        u = jax.random.uniform(k, (3,))
        return {"count": u > 0.5, "max": u.max()}

    seen = []

    def stop(samples):
        seen.append(sorted(samples))
        return samples["max"].shape[0] >= 8

    res = pm.run_permutations(
        summary,
        jax.random.key(0),
        100,
        batch_size=4,
        progress=False,
        reduce={"count": "sum", "max": "keep"},
        stop_fn=stop,
    )
    assert res.stopped_early and res.n_iters == 8
    assert seen[0] == ["max"]  # the stopping rule sees only what is kept
    full = pm.run_permutations(summary, jax.random.key(0), 8, progress=False).samples
    np.testing.assert_array_equal(res.samples["count"], full["count"].sum(0))


def test_reduction_spec_errors():
    def summary(k):
        return {"a": jax.random.uniform(k), "b": jax.random.uniform(k)}

    key = jax.random.key(0)
    with pytest.raises(ValueError, match="reduce must be"):
        pm.run_permutations(summary, key, 4, progress=False, reduce="mean")
    with pytest.raises(ValueError, match=r"reduce\['a'\] must be"):
        pm.run_permutations(summary, key, 4, progress=False, reduce={"a": "max", "b": "sum"})
    with pytest.raises(ValueError, match="the summary returns"):
        pm.run_permutations(summary, key, 4, progress=False, reduce={"a": "sum", "c": "keep"})
    with pytest.raises(ValueError, match="stop_fn needs at least one leaf kept"):
        pm.run_permutations(summary, key, 4, progress=False, reduce="sum", stop_fn=bool)


@pytest.mark.parametrize("vectorize", ["map", "vmap"])
@pytest.mark.parametrize("batch_size", [1, 7])
def test_batched_summary_equals_per_iteration_summary(vectorize, batch_size, reference):
    """A two-stage summary (the cluster labelling moved into the per-batch stage, with
    the host backend) gives the per-iteration reference, padding included."""

    def each(key):
        k1, k2 = jax.random.split(key)
        vol = jax.random.uniform(k1, (5, 6, 7))
        counts = jnp.histogram(jax.random.normal(k2, (40,)), bins=4, range=(-2.0, 2.0))[0]
        return vol, counts

    def batch(out):
        vol, counts = out
        assert vol.shape[0] == batch_size  # the stage sees the whole batch
        stats = jax.vmap(lambda v: max_cluster_stats(v > 0.6, v - 0.6, backend="scipy"))(vol)
        return {"max": vol.max(axis=(1, 2, 3)), "size": stats.max_size, "hist": counts}

    res = pm.run_permutations(
        pm.BatchedSummary(each, batch),
        jax.random.key(3),
        N_ITERS,
        batch_size=batch_size,
        vectorize=vectorize,
        progress=False,
    )
    assert_same(res.samples, reference)


@pytest.mark.parametrize("batch_size", [1, 7])
def test_batched_summary_on_host_equals_per_iteration_summary(batch_size, reference):
    """The per-batch stage run on the host (NumPy, SciPy labelling, after the copy back)
    gives the per-iteration reference, padding iterations dropped; it needs kept leaves."""

    def each(key):
        k1, k2 = jax.random.split(key)
        vol = jax.random.uniform(k1, (5, 6, 7))
        counts = jnp.histogram(jax.random.normal(k2, (40,)), bins=4, range=(-2.0, 2.0))[0]
        return vol, counts

    def batch(out):
        vol, counts = out
        assert isinstance(vol, np.ndarray) and vol.shape[0] == batch_size
        sizes = []
        for v in vol:  # brute force: scipy.ndimage on each volume
            labels, n = ndimage.label(v > 0.6)
            sizes.append(np.bincount(labels.ravel())[1:].max() if n else 0)
        return {
            "max": vol.max(axis=(1, 2, 3)),
            "size": np.asarray(sizes, np.int32),
            "hist": counts,
        }

    on_host = pm.BatchedSummary(each, batch, on_host=True)
    res = pm.run_permutations(
        on_host, jax.random.key(3), N_ITERS, batch_size=batch_size, vectorize="map", progress=False
    )
    assert_same(res.samples, reference)
    with pytest.raises(ValueError, match="on_host=True"):
        pm.run_permutations(on_host, jax.random.key(3), 4, progress=False, reduce="sum")

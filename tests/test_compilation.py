"""Compilation is cached: in a process (trace counts) and across processes (on disk)."""

import contextlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nimare_jax.correct import FWECorrector
from nimare_jax.dataset import Dataset
from nimare_jax.generate import create_coordinate_dataset
from nimare_jax.meta.cbma import ALE, SCALE, ALESubtraction, MKDAChi2, MKDADensity
from nimare_jax.meta.ibma import PermutedOLS
from nimare_jax.ops import baseline, chi2, relocation, signflip
from nimare_jax.ops import subtraction as ops_subtraction
from nimare_jax.ops.permute import run_permutations

_TRACE = "/jax/core/compile/jaxpr_trace_duration"


@contextlib.contextmanager
def count_traces():
    """Count JAX traces (one per jit cache miss) while the block runs, with their names."""
    names = []

    def listener(event, duration, **kwargs):
        if event == _TRACE:
            names.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _summary(key, scale):
    return {"max": (scale * jax.random.normal(key, (31,))).max()}


def test_second_run_permutations_traces_nothing():
    operands = (jnp.float32(2.0),)
    with count_traces() as first:
        a = run_permutations(_summary, jax.random.key(3), 37, progress=False, operands=operands)
    with count_traces() as second:
        b = run_permutations(_summary, jax.random.key(4), 37, progress=False, operands=operands)
    assert first, "the first run should have traced its runner"
    assert second == []
    assert not np.array_equal(a.samples["max"], b.samples["max"])


def _two_leaves(key, scale):
    x = scale * jax.random.normal(key, (31,))
    return {"count": x > 0, "max": x.max()}


def test_second_per_leaf_reduction_run_traces_nothing():
    # A per-leaf reduction is part of the runner's cache key: the same spec (in any key
    # order) reuses the compiled runner; the summed leaf is the sum, the kept one is kept.
    operands = (jnp.float32(2.0),)
    opts = {"progress": False, "operands": operands}
    with count_traces() as first:
        a = run_permutations(
            _two_leaves, jax.random.key(3), 37, reduce={"count": "sum", "max": "keep"}, **opts
        )
    with count_traces() as second:
        b = run_permutations(
            _two_leaves, jax.random.key(4), 37, reduce={"max": "keep", "count": "sum"}, **opts
        )
    assert first, "the first run should have traced its runner"
    assert second == []
    assert a.samples["max"].shape == (37,) and a.samples["count"].shape == (31,)
    assert not np.array_equal(a.samples["max"], b.samples["max"])


@pytest.fixture(scope="module")
def small_dataset():
    _, dset = create_coordinate_dataset(
        foci=7, foci_percentage="0%", n_noise_foci=7, n_studies=13, sample_size=17, seed=11
    )
    return dset


_VOXEL_NULL = "values_level-voxel_corr-fwe_method-montecarlo"


def _assert_second_traces_nothing(fit, n_iters, null=_VOXEL_NULL):
    """Fit (``fit(seed)``) and correct twice, seeds 0 and 1: the second traces nothing.

    The nulls must differ (the seeds differ), so both runs really ran; returns both results.
    """

    def run(seed):
        corrector = FWECorrector(method="montecarlo", n_iters=n_iters, progress=False)
        with warnings.catch_warnings():
            # too few iterations for the FWE level; divide by zero in logs of p
            warnings.simplefilter("ignore")
            return corrector.transform(fit(seed))

    with count_traces() as first:
        a = run(0)
    with count_traces() as second:
        b = run(1)
    assert first, "the first run should have traced"
    assert second == [], f"traced again: {second}"
    assert not np.array_equal(a.null_distributions[null], b.null_distributions[null])
    return a, b


@pytest.fixture(scope="module")
def two_groups(small_dataset):
    ids = small_dataset.ids
    return small_dataset.slice(ids[:6]), small_dataset.slice(ids[6:])


def test_fit_in_chunks_compiles_at_most_three_summary_programs():
    # the device counts the histograms of a share of each chunk's experiments, a static
    # argument: every full chunk takes the first chunk's share, so chunks holding unequal
    # numbers of foci (here 11 foci per study in the first 92 studies, 3 after) make no
    # program beyond the first chunk's, the full chunks' and the last one's
    _, dataset = create_coordinate_dataset(
        foci=8, foci_percentage="40%", n_noise_foci=3, n_studies=230, sample_size=(10, 40),
        seed=5,
    )  # fmt: skip
    with count_traces() as names:
        ALE().fit(dataset)
    assert 1 <= names.count("summarize_experiments") <= 3, names


@pytest.mark.parametrize("estimator", [ALE, MKDADensity])
def test_second_fit_and_correction_trace_nothing(small_dataset, estimator):
    relocation.volume_fn.cache_clear()
    a, b = _assert_second_traces_nothing(
        lambda seed: estimator(random_state=seed).fit(small_dataset), 21
    )
    # the same fit, two different nulls (the seeds differ)
    np.testing.assert_array_equal(a.get_map("z", "array"), b.get_map("z", "array"))


@pytest.mark.slow
@pytest.mark.parametrize("null_method", ["label-permutation", "random-foci"])
def test_mkdachi2_second_fit_and_correction_trace_nothing(two_groups, null_method):
    chi2.label_permutation_summary.cache_clear()
    chi2.random_foci_summary.cache_clear()
    _assert_second_traces_nothing(
        lambda seed: MKDAChi2(fwe_null_method=null_method, random_state=seed).fit(*two_groups),
        5,
        null="values_desc-pFgA_level-voxel_corr-fwe_method-montecarlo",
    )


@pytest.mark.slow
@pytest.mark.parametrize("vfwe_only", [True, False])
def test_subtraction_second_fit_and_correction_trace_nothing(two_groups, vfwe_only):
    ops_subtraction.label_permutation_summary.cache_clear()

    def fit(seed):
        est = ALESubtraction(n_iters=30, vfwe_only=vfwe_only, random_state=seed, progress=False)
        return est.fit(*two_groups)

    _assert_second_traces_nothing(fit, 30)


def test_scale_second_fit_and_correction_trace_nothing(small_dataset):
    baseline.log_union_fn.cache_clear()
    baseline.baseline_summary.cache_clear()
    pool = small_dataset.coordinates[["x", "y", "z"]].to_numpy()

    def fit(seed):
        return SCALE(pool, n_iters=12, random_state=seed, progress=False).fit(small_dataset)

    _assert_second_traces_nothing(fit, 10)  # 10 != 12: the correction draws a new null


@pytest.mark.parametrize("use_sample_size", [False, True])
def test_permutedols_second_fit_and_correction_trace_nothing(use_sample_size):
    signflip.sign_flip_summary.cache_clear()
    ibma = Path(__file__).parent / "data" / "ibma"
    dset = Dataset(ibma / "inputs" / "ibma_sim_dataset.json", mask=ibma / "mask.nii.gz")

    def fit(seed):
        return PermutedOLS(use_sample_size=use_sample_size, random_state=seed).fit(dset)

    _assert_second_traces_nothing(fit, 20)


_PROBE = """
import jax, jax.numpy as jnp, nimare_jax
print(jax.config.jax_compilation_cache_dir)
jax.jit(lambda x: jnp.sin(x) * 2)(jnp.arange(3.0)).block_until_ready()
"""


def _run(env_update):
    env = {**os.environ, **env_update}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_persistent_cache_written_to_configured_folder(tmp_path):
    folder = tmp_path / "cache"
    assert _run({"NIMARE_JAX_CACHE_DIR": str(folder)}) == str(folder)
    assert any(folder.iterdir()), "a compiled program should have been written to the cache"


def test_persistent_cache_defaults_to_user_cache_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NIMARE_JAX_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(tmp_path / "nimare_jax" / "jax")


@pytest.mark.parametrize("value", ["off", "0", ""])
def test_persistent_cache_can_be_turned_off(tmp_path, value):
    assert _run({"NIMARE_JAX_CACHE_DIR": value, "XDG_CACHE_HOME": str(tmp_path)}) == "None"
    assert not (tmp_path / "nimare_jax").exists()

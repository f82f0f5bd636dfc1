"""No Monte Carlo null's device program holds a host callback (CPU, default backends).

On CPU, a device program holding a host callback (``jax.pure_callback``, which takes the
Python GIL) does not run beside the other devices' programs, so with ``n_cores=2`` the two
devices take turns (benchmarks/README.md). Every cluster-level null therefore labels its
clusters on the host between batches (``BatchedSummary(on_host=True)``). These tests lower
every program the permutation engine dispatches during each estimator's FWE correction and
look for the callback's custom call in it.
"""

import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from nimare_jax.correct import FWECorrector
from nimare_jax.dataset import Dataset
from nimare_jax.generate import create_coordinate_dataset
from nimare_jax.meta.cbma import ALE, KDA, SCALE, ALESubtraction, MKDAChi2, MKDADensity
from nimare_jax.meta.ibma import PermutedOLS
from nimare_jax.ops import permute as pm
from nimare_jax.ops.label import max_cluster_stats


@pytest.fixture
def programs(monkeypatch):
    """The lowered text of every program ``run_permutations`` dispatches (once per runner)."""
    texts = []
    build = pm._build_runner

    def recording(*args):
        runner = build(*args)
        lowered = []

        def call(*operands):
            if not lowered:
                lowered.append(runner.lower(*operands).as_text())
                texts.append(lowered[0])
            return runner(*operands)

        return call

    monkeypatch.setattr(pm, "_build_runner", recording)
    return texts


@pytest.fixture(scope="module")
def small():
    _, dset = create_coordinate_dataset(
        foci=5, foci_percentage="0%", n_noise_foci=5, n_studies=10, sample_size=17, seed=5
    )
    return dset


def _fwe(fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few iterations: MonteCarloWarning
        return FWECorrector(method="montecarlo", n_iters=4, progress=False).transform(fitted)


def _pair(dset):
    return dset.slice(dset.ids[:5]), dset.slice(dset.ids[5:])


def _permuted_ols():
    ibma = Path(__file__).parent / "data" / "ibma"
    dset = Dataset(ibma / "inputs" / "ibma_sim_dataset.json", mask=ibma / "mask.nii.gz")
    return _fwe(PermutedOLS(random_state=0).fit(dset))


CASES = {
    "ALE": lambda d: _fwe(ALE(random_state=0).fit(d)),
    "MKDADensity": lambda d: _fwe(MKDADensity(random_state=0).fit(d)),
    "KDA": lambda d: _fwe(KDA(random_state=0).fit(d)),
    "MKDAChi2 label-permutation": lambda d: _fwe(MKDAChi2(random_state=0).fit(*_pair(d))),
    "MKDAChi2 random-foci": lambda d: _fwe(
        MKDAChi2(fwe_null_method="random-foci", random_state=0).fit(*_pair(d))
    ),
    "ALESubtraction": lambda d: ALESubtraction(
        n_iters=4, vfwe_only=False, random_state=0, progress=False
    ).fit(*_pair(d)),
    "SCALE": lambda d: SCALE(
        d.coordinates[["x", "y", "z"]].to_numpy(), n_iters=4, random_state=0, progress=False
    ).fit(d),
    "PermutedOLS": lambda d: _permuted_ols(),
}


@pytest.mark.slow  # 4-15 s each (compilation of every null)
@pytest.mark.parametrize("name", list(CASES))
def test_fwe_device_programs_hold_no_host_callback(programs, small, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CASES[name](small)
    assert programs, "the correction ran no permutation"
    for text in programs:
        assert "callback" not in text


def test_the_check_sees_an_in_program_callback(programs):
    """The former layout, labelled by a callback inside the device program, is caught."""

    def summary(key):
        vol = jax.random.uniform(key, (5, 6, 7))
        return max_cluster_stats(vol > 0.6, vol - 0.6, backend="scipy").max_size

    res = pm.run_permutations(summary, jax.random.key(0), 3, progress=False)
    assert res.samples.shape == (3,) and np.all(res.samples > 0)
    assert len(programs) == 1 and "callback" in programs[0]

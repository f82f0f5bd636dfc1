"""nimare_jax.ops.validate: the one check of Monte Carlo counts, and where its warning points."""

import warnings

import numpy as np
import pytest

from nimare_jax.correct import FWECorrector
from nimare_jax.meta.cbma import ALE, MKDADensity
from nimare_jax.meta.ibma import PermutedOLS
from nimare_jax.ops.validate import FWE_ALPHA, MonteCarloWarning, check_n_iters


@pytest.mark.parametrize("bad", [0, -3, 2.5, 5.0, True, "10", None, np.float64(7)])
def test_refuses_non_integers_and_counts_below_one(bad):
    with pytest.raises(ValueError, match=r"n_iters must be a positive integer, got"):
        check_n_iters(bad)


def test_accepts_python_and_numpy_integers():
    assert check_n_iters(np.int64(5)) == 5
    assert type(check_n_iters(np.int32(5))) is int


@pytest.mark.parametrize(
    "n_iters,alpha,per_iter,warns",
    [
        (19, 0.05, 1, True),  # smallest p 1/19 > 0.05
        (20, 0.05, 1, False),  # 1/20 = 0.05 is attainable
        (999, 0.001, 1, True),
        (1000, 0.001, 1, False),
        (1, 0.001, 999, True),  # a threshold read from 999 pooled values
        (1, 0.001, 1000, False),
        (3, None, 1, False),
    ],
)
def test_warns_when_alpha_cannot_be_reached(n_iters, alpha, per_iter, warns):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_n_iters(n_iters, alpha, per_iter=per_iter) == n_iters
    assert [w.category for w in caught] == ([MonteCarloWarning] if warns else [])
    if warns:
        assert f"n_iters={n_iters}" in str(caught[0].message)
        assert f"{alpha:g}" in str(caught[0].message)


def test_warning_points_at_the_caller_outside_the_package(laird):
    fit = ALE().fit(laird.slice(laird.ids[:2]))
    with pytest.warns(MonteCarloWarning) as record:
        fit.estimator.correct_fwe_montecarlo(fit, n_iters=4, vfwe_only=True, progress=False)
    assert record[0].filename == __file__


def test_cluster_forming_threshold_from_pooled_monte_carlo_null(laird):
    # null_method="montecarlo" reads the threshold from n_iters x n_voxels pooled values
    fit = ALE(null_method="montecarlo", n_iters=20, random_state=0).fit(laird.slice(laird.ids[:2]))
    with pytest.warns(MonteCarloWarning, match=r"cluster-forming threshold.*reach 1e-07"):
        fit.estimator.correct_fwe_montecarlo(fit, voxel_thresh=1e-7, n_iters=20, progress=False)


def test_one_check_everywhere():
    # constructors and correctors of every family refuse the same values with one message
    for make in (
        lambda: ALE(n_iters=1.5),
        lambda: MKDADensity(n_iters=0),
        lambda: FWECorrector(method="montecarlo", n_iters=2.0),
        lambda: PermutedOLS().correct_fwe_montecarlo(None, n_iters=-1),
    ):
        with pytest.raises(ValueError, match=r"n_iters must be a positive integer, got"):
            make()
    assert FWE_ALPHA == 0.05

"""ALE against NiMARE 0.22.1's outputs on the same 17 real experiments (tests/data/reference)."""

import numpy as np
import pytest

from nimare_jax.exceptions import DatasetError
from nimare_jax.meta.cbma import ALE
from nimare_jax.meta.cbma.kernel import ALEKernel


@pytest.fixture(scope="module")
def ale_result(laird):
    return ALE().fit(laird)


def test_approximate_null_equals_nimare(ale_result, reference):
    ref = reference("ale_laird_nulls")
    ours = ale_result.null_distributions
    np.testing.assert_array_equal(ours["histogram_bins"], ref["histogram_bins"])
    key = "histweights_corr-none_method-approximate"
    # float64 histogram folding; only the summation order differs from NiMARE's loop
    np.testing.assert_allclose(ours[key], ref[key], rtol=1e-12, atol=1e-300)


def test_ale_maps_equal_nimare(ale_result, reference):
    ref = reference("ale_laird_maps")
    stat = ale_result.get_map("stat", return_type="array")
    # float32 rounding: at most one unit in the last place of the largest ALE value
    np.testing.assert_allclose(stat, ref["stat"], rtol=0, atol=np.spacing(ref["stat"].max()))
    for name in ("p", "z", "logp"):
        ours = ale_result.get_map(name, return_type="array")
        np.testing.assert_allclose(ours, ref[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_missing_sample_sizes_raise_clear_error(laird):
    bad = laird.slice(laird.ids[:2])
    meta = bad.metadata.copy()
    meta.loc[0, "sample_sizes"] = None
    object.__setattr__(bad, "metadata", meta)
    with pytest.raises(DatasetError, match=f"{bad.ids[0]}.*sample_sizes"):
        ALE().fit(bad)
    # a fixed FWHM needs no sample sizes
    assert ALE(kernel_transformer=ALEKernel(fwhm=10)).fit(bad).get_map("stat", "array").max() > 0


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10"])
def test_bad_n_iters_rejected(bad):
    with pytest.raises(ValueError, match="n_iters"):
        ALE(n_iters=bad)

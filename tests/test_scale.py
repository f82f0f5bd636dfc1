"""SCALE: maps, null, FWE correction and the baseline reader."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nimare_jax.correct import FWECorrector
from nimare_jax.exceptions import InputFileError
from nimare_jax.io import convert_sleuth_to_dataset
from nimare_jax.meta.cbma import SCALE
from nimare_jax.meta.cbma.ale import ale_windows
from nimare_jax.meta.cbma.base import seed_to_key
from nimare_jax.meta.cbma.scale import baseline_null, baseline_operands, read_baseline
from nimare_jax.ops import baseline
from nimare_jax.ops.permute import run_permutations
from nimare_jax.ops.validate import MonteCarloWarning

SLEUTH = Path(__file__).parent / "data" / "sleuth"


@pytest.fixture(scope="module")
def small():
    return convert_sleuth_to_dataset(str(SLEUTH / "test_sleuth_file.txt"))


@pytest.fixture(scope="module")
def fitted(small):
    pool = small.coordinates[["x", "y", "z"]].to_numpy()
    est = SCALE(pool, n_iters=40, random_state=0, progress=False)
    return est, est.fit(small)


def test_maps_and_null(fitted, small):
    est, res = fitted
    assert {"stat", "p", "z", "logp"} <= set(res.maps)
    p = res.maps["p"]
    assert p.min() >= 1 / 40 and p.max() <= 1 - 1 / 40
    stat = res.maps["stat"]
    assert np.all(p[stat == 0] == 1 - 1 / 40)  # every redraw reaches ALE >= 0
    # the peak of the observed ALE is rarely exceeded when foci are redrawn from themselves
    assert p[np.argmax(stat)] < 0.5
    null = res.null_distributions["values_level-voxel_corr-fwe_method-montecarlo"]
    assert null.shape == (40,) and np.all((null > 0) & (null < 1))


def test_fwe(fitted):
    _, res = fitted
    corr = FWECorrector(method="montecarlo").transform(res)
    for kind in ("p", "z", "logp"):
        assert f"{kind}_level-voxel_corr-FWE_method-montecarlo" in corr.maps
    with pytest.raises(ValueError, match="voxel-level"):
        FWECorrector(method="montecarlo", vfwe_only=False).transform(res)


def test_one_iteration_gives_uncorrected_and_fwe_p_one(small):
    # One redraw: every p is 1 (z 0), uncorrected and corrected; the inverted clip made the
    # uncorrected z 38.5 at every voxel.
    est = SCALE(small.coordinates[["x", "y", "z"]].to_numpy(), n_iters=1, progress=False)
    res = est.fit(small)
    np.testing.assert_array_equal(res.maps["p"], 1.0)
    np.testing.assert_array_equal(res.maps["z"], 0.0)
    with pytest.warns(MonteCarloWarning, match="n_iters=1 "):
        corr = FWECorrector(method="montecarlo").transform(res)
    np.testing.assert_array_equal(corr.maps["p_level-voxel_corr-FWE_method-montecarlo"], 1.0)
    np.testing.assert_array_equal(corr.maps["z_level-voxel_corr-FWE_method-montecarlo"], 0.0)


def test_reproducible(fitted, small):
    est, res = fitted
    again = SCALE(est.xyz, n_iters=40, random_state=0, progress=False, batch_size=5).fit(small)
    np.testing.assert_array_equal(again.maps["p"], res.maps["p"])


def test_baseline_file(tmp_path):
    xyz = read_baseline(SLEUTH / "test_baseline.txt")
    assert xyz.shape == (2, 3)
    good = tmp_path / "ok.txt"
    good.write_text("# pool\n1, 2, 3\n\n4 5 6\n")
    np.testing.assert_array_equal(read_baseline(good), [[1, 2, 3], [4, 5, 6]])
    for text, where in (("1 2 3\n4 5\n", "line 2"), ("1 2 x\n", "line 1"), ("\n", "no coord")):
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(InputFileError, match=where):
            read_baseline(bad)


def test_baseline_file_reads_lines_as_the_sleuth_reader(tmp_path):
    # the same line breaks, encodings and numbers as Sleuth files; echoes are cut
    path = tmp_path / "pool.txt"
    path.write_bytes(b"// pool \x85 Windows-1252\r1, 2, 3\r\n\x0c4 5 6\n")
    np.testing.assert_array_equal(read_baseline(path), [[1, 2, 3], [4, 5, 6]])
    path.write_bytes(b"1 2 3\n4 5 1_0\n")
    with pytest.raises(InputFileError, match="line 2: expected three numbers"):
        read_baseline(path)
    path.write_bytes(b"1 2 " + b"3" * 5_000_000 + b"x\n")
    with pytest.raises(InputFileError, match=r"line 1: .*\.\.\. \(5000007 characters\)$"):
        read_baseline(path)


def test_bad_xyz():
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        SCALE(np.zeros((4, 2)))
    with pytest.raises(InputFileError):
        SCALE("/nonexistent/baseline.txt")


def test_one_pass_null_equals_the_two_pass_null(fitted):
    # The fit runs its null once (counts summed, maxima kept, per-leaf reductions); the
    # old engine needed two runs of the same draws. Both must agree bit for bit.
    est, res = fitted
    arrays = est.inputs_
    log_windows = ale_windows(arrays)
    observed = baseline.log_union_fn(tuple(arrays.shape), False, arrays.ma_fn)(
        jnp.asarray(arrays.ijk), baseline_operands(arrays, log_windows, est.pool_ijk_)
    )
    key = jax.random.fold_in(seed_to_key(0)[1], 4)
    old = {}
    for output, reduce in (("exceed", "sum"), ("voxel", None)):
        null = baseline_null(arrays, log_windows, est.pool_ijk_, observed, (output,))
        old[output] = run_permutations(
            null.summary,
            key,
            40,
            batch_size=8,
            progress=False,
            vectorize="map",
            reduce=reduce,
            operands=null.operands,
        ).samples[output]
    counts, vmax = est._run(40, 1, False)
    np.testing.assert_array_equal(counts, old["exceed"])
    np.testing.assert_array_equal(vmax, old["voxel"])
    np.testing.assert_array_equal(
        res.null_distributions["values_level-voxel_corr-fwe_method-montecarlo"], old["voxel"]
    )

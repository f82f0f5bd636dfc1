"""Jackknife and FocusCounter against brute-force computations written here."""

import nibabel as nib
import numpy as np
import pytest

from nimare_jax.correct import FWECorrector
from nimare_jax.diagnostics import FocusCounter, Jackknife
from nimare_jax.meta.cbma import ALE, MKDADensity
from nimare_jax.results import MetaResult

TARGET = "z"
COUNTS = "z_diag-{}_tab-counts_tail-positive"


@pytest.fixture(scope="module")
def ale_result(laird):
    return ALE().fit(laird)


@pytest.fixture(scope="module")
def tiny(laird):
    return laird.slice(laird.ids[:5])


def fixed_ale():
    return ALE(kernel__fwhm=10.0)  # one kernel for every subset: fewer compilations


@pytest.fixture(scope="module")
def tiny_ale(tiny):
    return fixed_ale().fit(tiny)


def label_volume(result, name="label_tail-positive"):
    inside = np.asanyarray(result.mask.dataobj) > 0
    vol = np.zeros(inside.shape, int)
    vol[inside] = result.maps[name]
    return vol


def test_focus_counter_matches_brute_force(laird, ale_result):
    out = FocusCounter(target_image=TARGET, target_threshold=3.1).transform(ale_result)
    table = out.tables[COUNTS.format("FocusCounter")]
    labels = label_volume(out)
    n = int(labels.max())
    assert n > 5 and table.shape == (len(laird.ids), n + 1)
    assert table["id"].tolist() == list(laird.ids)
    inverse = np.linalg.inv(ale_result.mask.affine)
    expected = np.zeros((len(laird.ids), n), int)
    for row, exp_id in enumerate(laird.ids):
        foci = laird.coordinates[laird.coordinates["id"] == exp_id]
        for x, y, z in foci[["x", "y", "z"]].to_numpy():
            i, j, k = (int(v) for v in np.round(inverse @ [x, y, z, 1.0])[:3])
            inside = all(0 <= v < m for v, m in zip((i, j, k), labels.shape, strict=True))
            if inside and labels[i, j, k] > 0:
                expected[row, labels[i, j, k] - 1] += 1
    np.testing.assert_array_equal(table.iloc[:, 1:].to_numpy(), expected)
    assert expected.sum() > 0
    clusters = out.tables["z_tab-clust"]
    assert clusters["Cluster ID"].tolist() == [f"PositiveTail {k}" for k in range(1, n + 1)]
    assert clusters["Peak Stat"].is_monotonic_decreasing
    assert "label_tail-positive" not in ale_result.maps  # input left unchanged


def brute_force_jackknife(estimator_cls, dataset, full, labels, n):
    expected = np.zeros((len(dataset.ids), n))
    for row, exp_id in enumerate(dataset.ids):
        others = [i for i in dataset.ids if i != exp_id]
        without = estimator_cls().fit(dataset.slice(others)).get_map("stat", "array")
        for c in range(1, n + 1):
            inside = labels == c
            expected[row, c - 1] = np.mean(1.0 - without[inside] / full[inside])
    return expected


@pytest.mark.parametrize("estimator_cls", [fixed_ale, MKDADensity])
def test_jackknife_matches_brute_force(tiny, tiny_ale, estimator_cls):
    result = tiny_ale if estimator_cls is fixed_ale else estimator_cls().fit(tiny)
    threshold = 1.0
    out = Jackknife(target_image=TARGET, target_threshold=threshold).transform(result)
    table = out.tables[COUNTS.format("Jackknife")]
    labels = out.maps["label_tail-positive"]
    n = int(labels.max())
    assert n >= 2
    full = result.get_map("stat", "array").astype(float)
    expected = brute_force_jackknife(estimator_cls, tiny, full, labels, n)
    np.testing.assert_allclose(table.iloc[:, 1:].to_numpy(float), expected, rtol=2e-5, atol=1e-6)
    assert table["id"].tolist() == list(tiny.ids)


def test_default_target_on_fwe_result(tiny, tiny_ale):
    corrected = FWECorrector(
        method="montecarlo", n_iters=20, progress=False, voxel_thresh=0.01
    ).transform(tiny_ale)
    out = Jackknife().transform(corrected)
    target = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
    assert f"{target}_tab-clust" in out.tables
    clusters = out.tables[f"{target}_tab-clust"]
    label_name = "label_desc-size_level-cluster_corr-FWE_method-montecarlo_tail-positive"
    assert not clusters.empty  # fixed seed: this small null leaves clusters to diagnose
    labels = out.maps[label_name]
    assert labels.max() == len(clusters)
    counts = out.tables[f"{target}_diag-Jackknife_tab-counts_tail-positive"]
    assert counts.shape == (len(tiny.ids), len(clusters) + 1)
    # peaks come from the uncorrected z map, inside the clusters
    z = corrected.get_map("z", "array")
    for k, peak in enumerate(clusters["Peak Stat"], start=1):
        assert peak == pytest.approx(z[labels == k].max())
    out.get_map(label_name)  # saves as an image


def test_no_clusters_and_errors(ale_result):
    with pytest.warns(UserWarning, match="no clusters"):
        out = FocusCounter(target_image=TARGET, target_threshold=100.0).transform(ale_result)
    assert out.tables["z_tab-clust"].empty
    assert out.tables["z_diag-FocusCounter_tab-counts"] is None
    with pytest.raises(ValueError, match="not in the result"):
        Jackknife(target_image="nope").transform(ale_result)
    with pytest.raises(ValueError, match="target_threshold or"):
        Jackknife(voxel_thresh=1.0, target_threshold=1.0)
    with pytest.warns(FutureWarning):
        assert Jackknife(voxel_thresh=2.0).target_threshold == 2.0
    bare = MetaResult(object(), mask=ale_result.mask, maps=ale_result.maps)
    with pytest.raises(ValueError, match="fitted to a dataset"):
        FocusCounter(target_image=TARGET).transform(bare)


def test_two_sided_target_merges_tails(tiny, tiny_ale):
    result = tiny_ale
    signed = result.copy()
    z = np.asarray(result.maps["z"], float)
    mask = np.asanyarray(result.mask.dataobj) > 0
    x_mm = nib.affines.apply_affine(result.mask.affine, np.argwhere(mask))[:, 0]
    signed.maps["z"] = np.where(x_mm < 0, -z, z)  # left hemisphere becomes negative
    out = FocusCounter(target_image="z", target_threshold=1.5).transform(signed)
    table = out.tables["z_diag-FocusCounter_tab-counts"]
    pos = [c for c in table.columns if c.startswith("PositiveTail")]
    neg = [c for c in table.columns if c.startswith("NegativeTail")]
    assert pos and neg
    assert "label_tail-negative" in out.maps
    total = table[pos + neg].to_numpy().sum()
    coords = tiny.coordinates[["x", "y", "z"]].to_numpy()
    assert 0 < total <= len(coords)

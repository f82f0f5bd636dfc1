"""Meta-analytic parcellation (CBP, MAMP): simulated ground truth, exact per-voxel MACMs.

No reference implementation exists (NiMARE dropped its parcellation module unimplemented),
so the planted truth is simulated: a box-shaped ROI is cut along y into 2 or 3 slabs; each
slab's experiments report one focus inside it plus foci at that slab's own coactivation
targets elsewhere in the brain, and every experiment adds uniform noise foci. The planted
labels are known, so recovery is scored with the adjusted Rand index (ARI). The batched
MACMs are compared with nimare_jax's own estimators fitted on the same experiment subsets.
"""

from __future__ import annotations

import jax
import nibabel as nib
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, mutual_info_score
from test_compilation import count_traces

from nimare_jax.cli import main
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError, ImageError
from nimare_jax.io.nimare_json import convert_dataset_to_json
from nimare_jax.meta.cbma import ALE, MKDADensity
from nimare_jax.ops import nulls
from nimare_jax.ops import parcellate as ops
from nimare_jax.parcellate import MAMP, CoordCBP
from nimare_jax.parcellate.base import (
    hierarchy_deviation,
    misclassified,
    target_voxels,
    variation_of_information,
)
from nimare_jax.parcellate.cbp import _Terms, batched_macm_maps, select_experiments
from nimare_jax.spatial import get_template, vox2mm

SLAB = 6  # voxels per planted subregion along y


def _mask():
    """Brain voxels in a box holding the ROI and the targets (fewer voxels: faster)."""
    tpl = get_template("mni152_2mm")
    brain = np.asanyarray(tpl.dataobj) > 0
    xyz = vox2mm(np.argwhere(np.ones(brain.shape, bool)), tpl.affine).reshape(*brain.shape, 3)
    box = (
        (np.abs(xyz[..., 0] + 5) <= 50)
        & (xyz[..., 1] >= -75)
        & (xyz[..., 1] <= 50)
        & (xyz[..., 2] >= -20)
        & (xyz[..., 2] <= 40)
    )
    return nib.Nifti1Image((brain & box).astype(np.int8), tpl.affine)


def planted(n_sub: int, n_per: int = 60, structure: bool = True, seed: int = 0):
    """Dataset, ROI image and planted label (0..n_sub-1) of each ROI voxel (C order).

    Slab ``s`` spans ``SLAB`` voxels along y; its experiments report one focus drawn
    uniformly in it and two foci at its own targets (3 mm jitter), plus 2 noise foci drawn
    uniformly from the mask. ``structure=False``: the ROI focus is drawn anywhere in the ROI
    and the targets of a random slab are used, so location and coactivation are unrelated.
    """
    rng = np.random.default_rng(seed)
    mask = _mask()
    aff = mask.affine
    corner = np.round(np.linalg.inv(aff) @ np.array([-40, -20, 10, 1]))[:3].astype(int)
    roi = np.zeros(mask.shape, np.int8)
    i, j, k = corner
    roi[i : i + 6, j : j + SLAB * n_sub, k : k + 5] = 1
    ijk = np.argwhere(roi > 0)
    truth = (ijk[:, 1] - j) // SLAB
    targets = [np.array([[30.0, -60 + 35 * s, 30], [-10, 40 - 25 * s, -10]]) for s in range(n_sub)]
    brain = vox2mm(np.argwhere(np.asanyarray(mask.dataobj) > 0), aff)
    roi_xyz = vox2mm(ijk, aff)
    studies = {}
    for s in range(n_sub):
        for e in range(n_per):
            where = roi_xyz[truth == s] if structure else roi_xyz
            tg = targets[s] if structure else targets[rng.integers(n_sub)]
            pts = np.vstack(
                [
                    where[rng.integers(len(where))],
                    tg + rng.normal(0, 3, tg.shape),
                    brain[rng.integers(len(brain), size=2)],
                ]
            )
            studies[f"s{s}e{e}"] = {
                "contrasts": {
                    "1": {
                        "coords": {
                            "space": "MNI",
                            "x": pts[:, 0].tolist(),
                            "y": pts[:, 1].tolist(),
                            "z": pts[:, 2].tolist(),
                        },
                        "metadata": {"sample_sizes": [int(rng.integers(12, 40))]},
                    }
                }
            }
    return Dataset(studies, mask=mask), nib.Nifti1Image(roi, aff), truth


@pytest.fixture(scope="module")
def two():
    return planted(2)


# ---------------------------------------------------------------------------------------
# criteria against closed forms


def test_variation_of_information_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, 200), rng.integers(0, 4, 200)

    def entropy(x):
        p = np.bincount(x) / x.size
        return -np.sum(p[p > 0] * np.log(p[p > 0]))

    expected = entropy(a) + entropy(b) - 2 * mutual_info_score(a, b)
    assert variation_of_information(a, b) == pytest.approx(expected, abs=1e-12)
    assert variation_of_information(a, (a + 1) % 3) == pytest.approx(0.0, abs=1e-12)


def test_misclassified_and_hierarchy():
    a = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    # relabelled partition: nothing misclassified; one item moved: 10 %
    assert misclassified(a, (a + 1) % 3) == pytest.approx(0.0)
    b = a.copy()
    b[0] = 1
    assert misclassified(a, b) == pytest.approx(10.0)
    # nested: children {0}, {1}, {2} of parents {0, 1} -> 0, {2} -> 1
    parent = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    assert hierarchy_deviation(a, parent) == pytest.approx(0.0)
    parent[3] = 1  # one voxel of child 1 under the other parent
    assert hierarchy_deviation(a, parent) == pytest.approx(10.0)


# ---------------------------------------------------------------------------------------
# selection and batched MACMs against the estimators


def test_selection_matches_dataset_search(two):
    dset, roi, _ = two
    xyz = target_voxels(roi, dset).xyz[::37]
    sel = select_experiments(dset, xyz, r=6)
    for row, point in zip(sel, xyz, strict=True):
        expected = dset.get_studies_by_coordinate(point[None], r=6)
        assert list(np.asarray(dset.ids)[row]) == expected
    # n nearest: the n experiments with the smallest nearest-focus distance
    near = select_experiments(dset, xyz, n=7)
    foci = dset.coordinates
    for row, point in zip(near, xyz, strict=True):
        dist = np.sqrt(((foci[["x", "y", "z"]].to_numpy() - point) ** 2).sum(1))
        best = foci.assign(d=dist).groupby("id")["d"].min().reindex(dset.ids)
        assert row.sum() == 7
        assert best[row].max() <= best[~row].min()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["z", "stat"])
@pytest.mark.parametrize("estimator", [ALE, MKDADensity])
def test_batched_macm_equals_estimator(two, estimator, target):
    dset, roi, _ = two
    xyz = target_voxels(roi, dset).xyz[[0, 100, 250]]
    sel = select_experiments(dset, xyz, r=6)
    maps = batched_macm_maps(estimator(), dset, sel, target)
    for row, m in zip(sel, maps, strict=True):
        ids = list(np.asarray(dset.ids)[row])
        ref = estimator().fit(dset.slice(ids)).get_map(target, return_type="array")
        np.testing.assert_allclose(m, np.asarray(ref, np.float64), rtol=0, atol=1e-6)


def test_batched_macm_second_call_does_not_retrace(two):
    """Same shapes, other selections: the chunked MACM program is reused, not retraced."""
    dset, roi, _ = two
    sel = select_experiments(dset, target_voxels(roi, dset).xyz[[0, 1]], r=6)
    batched_macm_maps(MKDADensity(), dset, sel, "stat")
    with count_traces() as names:
        batched_macm_maps(MKDADensity(), dset, sel[::-1], "stat")
    assert [n for n in names if "macm" in n] == []


def test_shared_prefix_nulls_equal_one_fold_per_selection(two):
    """The trie walk (folds of common prefixes shared) gives each selection's own null.

    Selections of every ROI voxel and of both halves of a split (many share prefixes,
    some are prefixes of others, one is empty), against one
    ``fold_union_histograms`` call over each selection's experiments, as ``ALE`` makes it.
    """
    dset, roi, _ = two
    sel = select_experiments(dset, target_voxels(roi, dset).xyz[::9], r=8)
    half = np.random.default_rng(1).permutation(sel.shape[1]) < sel.shape[1] // 2
    subsets = np.vstack([sel, sel & half, sel & ~half, sel[:1] & False])
    chosen = [np.flatnonzero(s) for s in np.unique(subsets, axis=0)]
    chosen.append(chosen[-1][:3])  # a prefix of another selection
    with jax.enable_x64(True):
        terms = _Terms(ALE(), dset)
        got = dict(terms._ale_nulls(chosen))
    assert sorted(got) == list(range(len(chosen)))
    for row, exps in enumerate(chosen):
        if exps.size == 0:
            assert got[row] is None
            continue
        grid = nulls.ale_histogram_bins(terms.ma_max[exps])
        probs = terms.hist[exps, : min(terms.hist.shape[1], grid.size)] / terms.n_vox
        expected = nulls.fold_union_histograms(probs, grid)
        np.testing.assert_allclose(got[row], expected, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("n_blocks", [1, 3])
def test_block_triangular_gram_equals_full_product(n_blocks):
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(10, 40)).astype(np.float32)
    rows = np.array([7, 2, 2, 9, 0, 4])
    valid = (np.arange(40) < 33).astype(np.float32)
    gram, total = np.zeros((6, 6)), np.zeros(6)
    for _ in range(2):  # two chunks accumulate
        gram, total = ops.gram_update(gram, total, maps, rows, valid, n_blocks)
    x = maps[rows][:, :33].astype(np.float64)
    np.testing.assert_allclose(ops.symmetric_from_blocks(gram, n_blocks), 2 * x @ x.T, rtol=1e-5)
    np.testing.assert_allclose(total, 2 * x.sum(1), rtol=1e-5)


def test_cbp_similarity_equals_correlation_of_macms(two):
    """The chunked, grouped-by-size MACMs' correlation equals that of the maps themselves."""
    dset, roi, _ = two
    cbp = CoordCBP(roi, 2, r=8, n_splits=0, n_init=2, voxel_chunk=8192)
    result = cbp.fit(dset)
    widths = np.unique(-(-cbp.selection_.sum(1) // 8))
    assert widths.size > 1  # several groups of selection sizes
    maps = batched_macm_maps(ALE(), dset, cbp.selection_, "z")
    np.testing.assert_allclose(result.similarity, np.corrcoef(maps), atol=2e-5)


# ---------------------------------------------------------------------------------------
# recovery of planted subregions


def _check_recovery(result, truth, k_true):
    ari = adjusted_rand_score(truth, result.labels[k_true])
    assert ari >= 0.9, (ari, result.metrics)
    metrics = result.metrics
    # the silhouette picks the planted k, and its split halves agree (a random split of so
    # few experiments is too noisy to rank the other k by stability)
    assert metrics["silhouette"].idxmax() == k_true, metrics
    assert metrics.loc[k_true, "misclassified_pct"] <= 15, metrics


@pytest.mark.slow
def test_cbp_recovers_two_subregions_ale(two):
    dset, roi, truth = two
    result = CoordCBP(roi, [2, 3, 4], n=10, n_init=10).fit(dset)
    _check_recovery(result, truth, 2)


@pytest.mark.slow
def test_cbp_recovers_three_subregions_mkda():
    dset, roi, truth = planted(3)
    result = CoordCBP(roi, [2, 3, 4], n=15, meta_estimator=MKDADensity(), n_init=10).fit(dset)
    _check_recovery(result, truth, 3)


@pytest.mark.parametrize("n_sub", [2, 3])
def test_mamp_recovers_subregions(n_sub):
    dset, roi, truth = planted(n_sub)
    result = MAMP(roi, [2, 3, 4], n_init=10).fit(dset)
    _check_recovery(result, truth, n_sub)


@pytest.mark.slow
def test_cbp_no_structure_is_not_favoured():
    """Without planted structure, no k > 1 is supported beyond the planted data's noise.

    Unstructured: each experiment's ROI focus is drawn anywhere in the ROI and its targets
    are those of a random slab. MACMs of neighbouring voxels still overlap (they share
    experiments), so any k gets a moderate silhouette; "beyond noise" is judged against
    the planted dataset of the same size and geometry: for every k the unstructured
    silhouette is at least 0.15 below the planted k = 2 silhouette, and its split halves
    disagree on more voxels than the planted k = 2 halves do.
    """
    kwargs = dict(n=15, meta_estimator=MKDADensity(), n_init=10, target_image="stat")
    dset, roi, _ = planted(2)
    planted_fit = CoordCBP(roi, [2, 3, 4], **kwargs).fit(dset)
    dset0, roi0, _ = planted(2, structure=False)
    null_fit = CoordCBP(roi0, [2, 3, 4], **kwargs).fit(dset0)
    best = planted_fit.metrics.loc[2]
    assert (null_fit.metrics["silhouette"] <= best["silhouette"] - 0.15).all(), null_fit.metrics
    assert (null_fit.metrics["misclassified_pct"] > best["misclassified_pct"]).all()


# ---------------------------------------------------------------------------------------
# bad input


def test_bad_input(two):
    dset, roi, _ = two
    one_voxel = np.zeros(roi.shape, np.int8)
    one_voxel[tuple(np.argwhere(np.asarray(roi.dataobj))[0])] = 1
    with pytest.raises(ImageError, match="fewer than the 3 clusters"):
        MAMP(nib.Nifti1Image(one_voxel, roi.affine), [2, 3]).fit(dset)
    outside = np.zeros(roi.shape, np.int8)
    outside[:3, :3, :3] = 1  # corner of the volume, outside the brain
    with pytest.raises(ImageError, match="none of its 27 voxels lies inside"):
        CoordCBP(nib.Nifti1Image(outside, roi.affine), 2, r=6).fit(dset)
    with pytest.raises(DatasetError, match="select no experiment within r=0.5 mm"):
        CoordCBP(roi, 2, r=0.5).fit(dset)
    with pytest.raises(ValueError, match="exactly one of r"):
        CoordCBP(roi, 2)
    with pytest.raises(ValueError, match="n_clusters must be integers >= 2"):
        MAMP(roi, [1, 2])


# ---------------------------------------------------------------------------------------
# command line


def test_cli_cbp_mamp(tmp_path, two, capsys):
    dset, roi, _ = two
    data = tmp_path / "planted.json"
    convert_dataset_to_json(dset, data)
    roi_file = tmp_path / "roi.nii.gz"
    roi.to_filename(roi_file)
    out = tmp_path / "out"
    argv = ["cbp", str(data), "--roi", str(roi_file), "--n_clusters", "2", "3"]
    argv += ["--method", "mamp", "--output_dir", str(out), "--prefix", "p", "--n_splits", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "p_boilerplate.txt",
        "p_k-2_labels.nii.gz",
        "p_k-3_labels.nii.gz",
        "p_metrics.png",
        "p_metrics.tsv",
        "p_references.bib",
    ]
    expected = MAMP(roi, [2, 3], n_splits=1).fit(Dataset(data))
    for k in (2, 3):
        written = np.asarray(nib.load(out / f"p_k-{k}_labels.nii.gz").dataobj)
        np.testing.assert_array_equal(written, np.asarray(expected.get_label_image(k).dataobj))
    assert "Yang" in (out / "p_boilerplate.txt").read_text()
    assert main([*argv[:-2], "--method", "nope"]) == 1
    assert "method 'nope' is not available" in capsys.readouterr().err

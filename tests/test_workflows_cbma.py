"""Workflow objects (CBMAWorkflow, PairwiseCBMAWorkflow, IBMAWorkflow).

Compared against: NiMARE 0.22.1's map and table names (tests/data/workflows/names.json,
made by make_reference.py), reports.cluster_table on the same maps, Jackknife contributions
recomputed by refitting the estimator without each experiment (brute force), and
FocusCounter counts recomputed by rounding every focus to its voxel.
"""

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from nimare_jax.correct import FDRCorrector, FWECorrector
from nimare_jax.dataset import Dataset
from nimare_jax.diagnostics import FocusCounter, Jackknife
from nimare_jax.meta.cbma import ALE, MKDAChi2, MKDADensity
from nimare_jax.meta.ibma import Stouffers
from nimare_jax.reports import cluster_table
from nimare_jax.workflows import CBMAWorkflow, IBMAWorkflow, PairwiseCBMAWorkflow

DATA = Path(__file__).parent / "data"
NAMES = json.loads((DATA / "workflows" / "names.json").read_text())
IBMA = DATA / "ibma"
MASS = "z_desc-mass_level-cluster_corr-FWE_method-montecarlo"
FDR = "z_corr-FDR_method-indep"
N_ITERS = 30  # names and tables do not depend on the count; NiMARE's default is 5000


def _fwe():
    return FWECorrector(method="montecarlo", n_iters=N_ITERS)


@pytest.fixture(scope="module")
def ale_defaults(laird):
    """CBMAWorkflow with NiMARE's defaults (ALE, Monte Carlo FWE, Jackknife)."""
    return CBMAWorkflow(corrector=_fwe()).fit(laird)


@pytest.fixture(scope="module")
def ale_focus(laird):
    return CBMAWorkflow(corrector=_fwe(), diagnostics="focuscounter").fit(laird)


@pytest.fixture(scope="module")
def ibma_dset():
    return Dataset(IBMA / "inputs" / "ibma_sim_dataset.json", mask=IBMA / "mask.nii.gz")


@pytest.fixture(scope="module")
def ibma_result(ibma_dset):
    # No voxel of the cropped test set survives FDR at q < 0.05 (nor in NiMARE 0.22.1):
    # clusters of z_corr > 0.3 (q < 0.38) exercise the diagnostics.
    return IBMAWorkflow(voxel_thresh=0.3).fit(ibma_dset)


def _volume(result, name):
    """The map as a float64 volume (get_map's image is float32, which can tie peaks)."""
    inside = np.asanyarray(result.mask.dataobj) > 0
    out = np.zeros(inside.shape)
    out[inside] = np.asarray(result.maps[name], float)
    return out


def _assert_names(result, ref):
    assert sorted(result.maps) == ref["maps"]
    assert sorted(result.tables) == sorted(ref["tables"])
    for name, columns in ref["tables"].items():
        ours = list(result.tables[name].columns)
        if name.endswith("_tab-clust"):
            assert ours == [*columns, "Peak Label"]  # plus the Harvard-Oxford label
        else:  # one column per cluster: their number depends on the Monte Carlo null
            assert ours[0] == columns[0] == "id"
            assert all(c.startswith("PositiveTail ") for c in ours[1:] + columns[1:])


def _assert_clusters_equal(table, reference, volume, affine, threshold):
    """The diagnostics' cluster table describes the same clusters as cluster_table's.

    Clusters are matched through the voxel of each table's peak (scipy's 6-connected labels
    of ``volume > threshold``): same clusters, sizes and peak values; the peak coordinates
    and atlas labels are equal where the cluster's maximum is reached at a single voxel (a
    plateau, as FDR q-values make, has no unique peak: there the peak must lie on it).
    """
    positive, n_positive = ndimage.label(volume > threshold)
    negative, _ = ndimage.label(volume < -threshold)  # two-sided maps (signed z)
    labels = np.where(negative > 0, negative + n_positive, positive)
    inv = np.linalg.inv(affine)

    def cluster_of(xyz):
        ijk = tuple(np.rint(inv @ np.append(np.asarray(xyz, float), 1.0))[:3].astype(int))
        return int(labels[ijk]), float(volume[ijk])

    ours = {}
    for row in table.itertuples(index=False):
        label, value = cluster_of([row.X, row.Y, row.Z])
        ours[label] = row
        assert value == pytest.approx(row._4, rel=1e-6)  # "Peak Stat": the voxel's value
        cluster = volume[labels == label]
        assert value == pytest.approx(cluster.max() if value > 0 else cluster.min(), rel=1e-6)
    assert len(ours) == len(table) == len(reference) > 0
    for ref in reference.itertuples(index=False):
        label, _ = cluster_of([ref.peak_x, ref.peak_y, ref.peak_z])
        row = ours[label]
        assert row._5 == ref.size_mm3  # "Cluster Size (mm3)"
        assert row._4 == pytest.approx(ref.peak_value, rel=1e-6)
        cluster = volume[labels == label]
        if (cluster == (cluster.max() if ref.peak_value > 0 else cluster.min())).sum() == 1:
            assert (ref.peak_x, ref.peak_y, ref.peak_z) == (row.X, row.Y, row.Z)
            assert row._6 == ref.peak_label  # "Peak Label"


def _brute_force_counts(dataset, labels_volume, affine, n_clusters):
    """Foci of each experiment (rows) inside each cluster (columns), focus by focus."""
    inv = np.linalg.inv(affine)
    out = np.zeros((len(dataset.ids), n_clusters), int)
    row = {i: r for r, i in enumerate(dataset.ids)}
    shape = np.array(labels_volume.shape)
    for exp_id, x, y, z in dataset.coordinates[["id", "x", "y", "z"]].itertuples(index=False):
        ijk = np.rint(inv @ np.array([x, y, z, 1.0]))[:3].astype(int)
        if np.all((ijk >= 0) & (ijk < shape)):
            label = int(labels_volume[tuple(ijk)])
            if label > 0:
                out[row[exp_id], label - 1] += 1
    return out


# ----------------------------------------------------------------- construction (fast)
def test_strings_classes_and_instances_are_built_as_nimare_does():
    wf = CBMAWorkflow(estimator="mkdadensity", corrector="fdr", diagnostics="focuscounter")
    assert type(wf.estimator) is MKDADensity
    assert type(wf.corrector) is FDRCorrector and wf.corrector.method == "indep"
    (diag,) = wf.diagnostics
    assert type(diag) is FocusCounter
    assert (diag.target_threshold, diag.cluster_threshold) == (1.65, 10)
    wf = CBMAWorkflow(corrector="bonferroni", n_cores=2)
    assert type(wf.estimator) is ALE and wf.estimator.n_cores == 2
    assert (wf.corrector.method, wf.corrector.n_cores) == ("bonferroni", 2)
    assert type(wf.diagnostics[0]) is Jackknife  # NiMARE 0.22.1's default
    default = CBMAWorkflow()
    assert (default.corrector.method, default.corrector.n_iters) == ("montecarlo", None)
    assert type(IBMAWorkflow().estimator) is Stouffers
    assert type(PairwiseCBMAWorkflow().estimator) is MKDAChi2


def test_instances_keep_their_settings_and_are_not_modified():
    mine = FocusCounter(cluster_threshold=5)
    wf = CBMAWorkflow(diagnostics=[mine, Jackknife], voxel_thresh=2.0)
    first, second = wf.diagnostics
    assert (first.target_threshold, first.cluster_threshold) == (2.0, 5)
    assert (second.target_threshold, second.cluster_threshold) == (2.0, 10)
    assert mine.target_threshold is None  # the caller's object is copied, not changed


def test_bad_components_are_refused():
    with pytest.raises(ValueError, match="'gale' is not one of"):
        CBMAWorkflow(estimator="gale")
    with pytest.raises(ValueError, match="baseline pool"):
        CBMAWorkflow(estimator="scale")
    with pytest.raises(TypeError, match="pairwise"):
        CBMAWorkflow(estimator=MKDAChi2())
    with pytest.raises(TypeError, match="one-sample"):
        PairwiseCBMAWorkflow(estimator="ale")
    with pytest.raises(ValueError, match="is not one of jackknife"):
        IBMAWorkflow(diagnostics="focuscounter")
    with pytest.raises(TypeError, match="estimator must be one of"):
        IBMAWorkflow(estimator=ALE())


# ------------------------------------------------------------------------------ CBMA
@pytest.mark.slow
def test_cbma_defaults_give_nimare_names(ale_defaults):
    _assert_names(ale_defaults, NAMES["cbma_defaults"])
    assert [d.target_image for d in ale_defaults.diagnostics] == [MASS]


@pytest.mark.slow
def test_cbma_focuscounter_gives_nimare_names(ale_focus):
    _assert_names(ale_focus, NAMES["cbma_focuscounter"])


@pytest.mark.slow
def test_cbma_cluster_table_equals_cluster_table_on_the_same_map(ale_defaults):
    table = ale_defaults.tables[f"{MASS}_tab-clust"]
    # The target is cluster-level corrected (constant within a cluster): peaks come from the
    # uncorrected z map inside the surviving clusters, which cluster_table finds on its own.
    support = _volume(ale_defaults, "label_desc-mass_level-cluster_corr-FWE_method-montecarlo"
                      "_tail-positive") > 0  # fmt: skip
    z = _volume(ale_defaults, "z")
    affine = ale_defaults.mask.affine
    masked = np.where(support, z, 0.0)
    reference = cluster_table(nib.Nifti1Image(masked, affine), 0.0)
    _assert_clusters_equal(table, reference, masked, affine, 0.0)
    assert (table["Cluster Size (mm3)"] >= 10 * 8).all()  # cluster_threshold=10 voxels


@pytest.mark.slow
def test_cbma_jackknife_equals_refits_without_each_experiment(ale_defaults, laird):
    table = ale_defaults.tables[f"{MASS}_diag-Jackknife_tab-counts_tail-positive"]
    labels = ale_defaults.get_map(
        "label_desc-mass_level-cluster_corr-FWE_method-montecarlo_tail-positive",
        return_type="array",
    ).astype(int)
    n = int(labels.max())
    assert list(table.columns) == ["id", *(f"PositiveTail {k}" for k in range(1, n + 1))]
    assert list(table["id"]) == list(laird.ids)
    full = np.asarray(ale_defaults.maps["stat"], float)
    for row in (0, 7):  # two experiments: each refit is a full ALE fit
        exp_id = laird.ids[row]
        without = ALE().fit(laird.slice([i for i in laird.ids if i != exp_id]))
        with np.errstate(divide="ignore", invalid="ignore"):
            prop = 1.0 - np.nan_to_num(np.asarray(without.maps["stat"], float) / full)
        expected = [prop[labels == k].mean() for k in range(1, n + 1)]
        np.testing.assert_allclose(table.iloc[row, 1:].to_numpy(float), expected, atol=1e-5)


@pytest.mark.slow
def test_cbma_focuscounter_equals_counting_by_hand(ale_focus, laird):
    table = ale_focus.tables[f"{MASS}_diag-FocusCounter_tab-counts_tail-positive"]
    volume = _volume(ale_focus, "label_desc-mass_level-cluster_corr-FWE_method-montecarlo"
                     "_tail-positive").astype(int)  # fmt: skip
    expected = _brute_force_counts(laird, volume, ale_focus.mask.affine, int(volume.max()))
    np.testing.assert_array_equal(table.iloc[:, 1:].to_numpy(int), expected)
    assert expected.sum() > 0
    # the same diagnostic run by hand on the corrected result gives the same tables
    by_hand = FocusCounter(target_image=MASS, target_threshold=1.65, cluster_threshold=10)
    again = by_hand.transform(ale_focus)
    for name in (f"{MASS}_tab-clust", f"{MASS}_diag-FocusCounter_tab-counts_tail-positive"):
        pd.testing.assert_frame_equal(again.tables[name], ale_focus.tables[name])


# ------------------------------------------------------------------------------ IBMA
def test_ibma_defaults_give_nimare_names(ibma_dset):
    with pytest.warns(UserWarning, match="no clusters found"):
        result = IBMAWorkflow().fit(ibma_dset)  # nothing survives FDR here, as in NiMARE
    ref = NAMES["ibma_defaults"]
    # NiMARE also stores a label map set to None when there is no cluster; we add none
    assert sorted(result.maps) == [m for m in ref["maps"] if not m.startswith("label_")]
    assert sorted(result.tables) == sorted(ref["tables"])
    assert result.tables[f"{FDR}_diag-Jackknife_tab-counts"] is None


@pytest.mark.slow  # Jackknife refits Stouffers 20 times
def test_ibma_cluster_table_equals_cluster_table(ibma_result):
    table = ibma_result.tables[f"{FDR}_tab-clust"]
    volume, affine = _volume(ibma_result, FDR), ibma_result.mask.affine
    reference = cluster_table(nib.Nifti1Image(volume, affine), 0.3, min_size=10, two_sided=True)
    _assert_clusters_equal(table, reference, volume, affine, 0.3)


@pytest.mark.slow  # Jackknife refits Stouffers 20 times
def test_ibma_jackknife_equals_refits_without_each_study(ibma_result, ibma_dset):
    # Both tails have clusters (the corrected z is signed), so NiMARE's one merged table.
    merged = ibma_result.tables[f"{FDR}_diag-Jackknife_tab-counts"]
    table = merged[["id", *[c for c in merged.columns if c.startswith("PositiveTail ")]]]
    labels = ibma_result.get_map(
        "label_corr-FDR_method-indep_tail-positive", return_type="array"
    ).astype(int)
    n = int(labels.max())
    full = np.asarray(ibma_result.maps["z"], float)  # Stouffers: contributions to z
    ids = list(ibma_dset.ids)
    for row, exp_id in enumerate(ids):
        without = Stouffers().fit(ibma_dset.slice([i for i in ids if i != exp_id]))
        with np.errstate(divide="ignore", invalid="ignore"):
            prop = 1.0 - np.nan_to_num(np.asarray(without.maps["z"], float) / full)
        expected = [prop[labels == k].mean() for k in range(1, n + 1)]
        np.testing.assert_allclose(table.iloc[row, 1:].to_numpy(float), expected, atol=1e-6)


@pytest.mark.slow  # Jackknife refits Stouffers 20 times
def test_output_dir_receives_every_map_and_table(ibma_dset, tmp_path):
    out = tmp_path / "wf"
    result = IBMAWorkflow(voxel_thresh=0.3, output_dir=out).fit(ibma_dset)
    names = {p.name for p in out.iterdir()}
    expected = {f"{m}.nii.gz" for m in result.maps} | {f"{t}.tsv" for t in result.tables}
    assert names == expected | {"boilerplate.txt", "references.bib"}
    back = pd.read_csv(out / f"{FDR}_tab-clust.tsv", sep="\t")
    pd.testing.assert_frame_equal(back, result.tables[f"{FDR}_tab-clust"], check_dtype=False)
    img = nib.load(out / f"{FDR}.nii.gz")
    np.testing.assert_allclose(
        np.asarray(img.dataobj)[np.asanyarray(result.mask.dataobj) > 0],
        result.maps[FDR],
        rtol=1e-6,
    )
    assert "Benjamini" in (out / "boilerplate.txt").read_text()


@pytest.mark.slow  # Jackknife refits Stouffers 20 times
def test_ibma_workflow_warns_nothing_else(ibma_dset):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = IBMAWorkflow(voxel_thresh=0.3, corrector="fdr").fit(ibma_dset)
    assert f"{FDR}_tab-clust" in result.tables


@pytest.mark.slow
def test_pairwise_defaults_give_nimare_names(laird):
    split = json.loads((DATA / "reference" / "laird_split.json").read_text())
    group1, group2 = (laird.slice(ids) for ids in split.values())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Jackknife: no clusters found")
        result = PairwiseCBMAWorkflow(corrector=_fwe()).fit(group1, group2)
    ref = NAMES["pairwise_defaults"]
    assert [d.target_image for d in result.diagnostics] == [
        "z_desc-associationMass_level-cluster_corr-FWE_method-montecarlo"
    ]
    # the label map exists only when the (random, 30-iteration) correction leaves clusters
    labels = [m for m in ref["maps"] if m.startswith("label_")]
    assert sorted(set(result.maps) - set(labels)) == sorted(set(ref["maps"]) - set(labels))
    assert sorted(result.tables) == sorted(ref["tables"])

"""MAPBOT (meta-analytic parcellation based on text, Yuan et al. 2017).

No reference implementation exists (NiMARE dropped its unfinished draft), so the tests are
of two kinds: the array steps against brute-force NumPy written from the definitions, and
the whole method on a simulated corpus whose planted subregions carry distinct terms.
"""

import json
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score
from test_compilation import count_traces

from nimare_jax.cli import main
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError, ImageError
from nimare_jax.ops import mapbot as ops_mapbot
from nimare_jax.parcellate.cbp import CoordCBP
from nimare_jax.parcellate.mapbot import MAPBOT
from nimare_jax.spatial import load_mask, mm2vox, vox2mm


# ----------------------------------------------------------------------------- ops
def test_term_profiles_are_mean_weights_of_selected_experiments():
    rng = np.random.default_rng(1)
    selection = rng.random((7, 11)) < 0.4
    selection[3] = False  # a voxel selecting nothing
    weights = rng.random((11, 5)).astype(np.float32)
    profiles, counts = ops_mapbot.term_profiles(selection, weights)
    for v in range(7):
        chosen = weights[selection[v]]
        expected = chosen.mean(0) if len(chosen) else np.zeros(5)
        np.testing.assert_allclose(profiles[v], expected, rtol=1e-6, atol=1e-7)
        assert counts[v] == selection[v].sum()


def test_normalized_cut_weighting_matches_the_definition():
    # Xu et al. (2003): D = diag(F F^T 1), V = D^(-1/2) F (voxels as documents).
    rng = np.random.default_rng(2)
    profiles = rng.random((9, 4))
    profiles[5] = 0.0
    degree = (profiles @ profiles.T).sum(1)
    expected = np.zeros_like(profiles)
    keep = degree > 0
    expected[keep] = profiles[keep] / np.sqrt(degree[keep])[:, None]
    got = ops_mapbot.normalized_cut_weighting(profiles.astype(np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_assign_parcels_rescales_without_changing_the_product():
    rng = np.random.default_rng(3)
    loadings = rng.random((12, 3))
    components = rng.random((3, 6)) * np.array([[1.0], [10.0], [0.1]])
    labels, scaled, unit = ops_mapbot.assign_parcels(loadings, components)
    np.testing.assert_allclose(
        np.asarray(scaled) @ np.asarray(unit), loadings @ components, rtol=1e-5
    )
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    norms = np.linalg.norm(components, axis=1)
    np.testing.assert_array_equal(labels, np.argmax(loadings * norms, axis=1))


# ----------------------------------------------------------------------------- simulation
GROUP = "Neurosynth_TFIDF"
N_TERMS = 3  # planted terms per subregion
N_COMMON = 3  # terms every experiment carries at random weights


def planted_corpus(k, n_per=40, width=16.0, seed=0, return_source=False):
    """A region split along x into ``k`` slabs; each slab's experiments carry its own terms.

    The region is ``k`` slabs of ``width`` mm (x) by 12 mm (y) by 12 mm (z) of 2 mm voxels.
    Each of the ``n_per`` experiments of slab ``s`` reports 3 foci drawn uniformly inside
    the slab (1 mm from its faces) and weights ``U(0.3, 1)`` on the terms
    ``region{s}_term{t}``, 0 on the other slabs' terms, and ``U(0, 0.6)`` on common terms.

    Returns the dataset, the ROI image and the planted slab of each ROI voxel in the
    order of ``np.argwhere`` on the ROI (which is the order of the result's voxels), and
    with ``return_source`` the NiMARE-format dict the dataset was built from.
    """
    rng = np.random.default_rng(seed)
    x0 = -40.0
    xs = np.arange(x0, x0 + k * width, 2.0)
    ys, zs = np.arange(-20.0, -8.0, 2.0), np.arange(0.0, 12.0, 2.0)
    edges = x0 - 1.0 + width * np.arange(k + 1)  # slab faces between voxel centres
    terms = [f"region{s}_term{t}" for s in range(k) for t in range(N_TERMS)]
    terms += [f"common{t}" for t in range(N_COMMON)]
    source = {}
    for s in range(k):
        for e in range(n_per):
            x = rng.uniform(edges[s] + 1, edges[s + 1] - 1, 3)
            y = rng.uniform(ys[0], ys[-1], 3)
            z = rng.uniform(zs[0], zs[-1], 3)
            w = np.zeros(len(terms))
            w[s * N_TERMS : (s + 1) * N_TERMS] = rng.uniform(0.3, 1.0, N_TERMS)
            w[k * N_TERMS :] = rng.uniform(0.0, 0.6, N_COMMON)
            coords = {"space": "MNI", "x": x.tolist(), "y": y.tolist(), "z": z.tolist()}
            labels = {f"{GROUP}__{t}": float(v) for t, v in zip(terms, w, strict=True)}
            source[f"s{s}e{e}"] = {"contrasts": {"1": {"coords": coords, "labels": labels}}}
    dset = Dataset(source)
    mask = load_mask(dset.masker)
    vox = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), -1).reshape(-1, 3)
    data = np.zeros(mask.shape, np.int8)
    data[tuple(mm2vox(vox, mask.affine).T)] = 1
    roi = nib.Nifti1Image(data, mask.affine)
    roi_xyz = vox2mm(np.argwhere(data > 0), mask.affine)
    truth = np.digitize(roi_xyz[:, 0], edges[1:-1])
    return (dset, roi, truth, source) if return_source else (dset, roi, truth)


@pytest.fixture(scope="module")
def two():
    return planted_corpus(2, seed=0)


@pytest.fixture(scope="module")
def three():
    return planted_corpus(3, seed=1)


def brute_force_profiles(dset, xyz, r):
    """Normalized-cut-weighted mean term weights, one voxel and one experiment at a time."""
    terms = [c for c in dset.annotations.columns if c.startswith(GROUP)]
    table = dset.annotations.set_index("id")
    weights = {exp: table.loc[exp, terms].to_numpy(float) for exp in dset.ids}
    coords = dset.coordinates
    foci = {exp: coords.loc[coords["id"] == exp, ["x", "y", "z"]].to_numpy() for exp in dset.ids}
    freq = np.zeros((len(xyz), len(terms)))
    for v, point in enumerate(xyz):
        chosen = [
            weights[exp]
            for exp in dset.ids
            if (np.linalg.norm(foci[exp] - point, axis=1) <= r).any()
        ]
        freq[v] = np.mean(chosen, axis=0)
    degree = (freq @ freq.T).sum(1)  # row sums of the voxel similarity matrix
    return freq / np.sqrt(degree)[:, None]


# ----------------------------------------------------------------------------- MAPBOT
@pytest.mark.parametrize("case", ["two", "three"])
def test_planted_parcels_and_their_terms_are_recovered(case, request):
    dset, roi, truth = request.getfixturevalue(case)
    k = truth.max() + 1
    result = MAPBOT(roi, [2, 3], r=5, feature_group=GROUP).fit(dset)
    labels = result.labels[k]
    assert adjusted_rand_score(truth, labels) >= 0.9
    # the silhouette favours the planted number of parcels
    assert result.metrics["silhouette"].idxmax() == k
    # each parcel's 3 top terms are the planted terms of the slab holding most of its voxels
    top = result.top_terms(k, N_TERMS)
    for parcel in range(1, k + 1):
        slab = np.bincount(truth[labels == parcel]).argmax()
        planted = {f"{GROUP}__region{slab}_term{t}" for t in range(N_TERMS)}
        assert set(top.loc[parcel]) == planted
    # the term table holds unit-norm NMF components, one column per parcel
    table = result.terms[k]
    assert list(table.columns) == list(range(1, k + 1))
    np.testing.assert_allclose(np.linalg.norm(table.to_numpy(), axis=0), 1.0, rtol=1e-6)


def test_voxel_profiles_equal_a_brute_force_computation(two):
    dset, roi, _ = two
    model = MAPBOT(roi, 2, r=5, feature_group=GROUP, n_splits=0)
    result = model.fit(dset)
    expected = brute_force_profiles(dset, result.roi.xyz, 5.0)
    np.testing.assert_allclose(model.profiles_, expected, rtol=1e-5, atol=1e-7)


def test_nearest_experiments_selection_recovers_the_parcels(two):
    dset, roi, truth = two
    result = MAPBOT(roi, 2, n=12, feature_group=GROUP, n_splits=0).fit(dset)
    assert adjusted_rand_score(truth, result.labels[2]) >= 0.9


def test_save_writes_the_term_tables(two, tmp_path):
    dset, roi, _ = two
    result = MAPBOT(roi, [2, 3], r=5, feature_group=GROUP, n_splits=1).fit(dset)
    out = tmp_path / "new"  # created by save
    files = [p.name for p in result.save(out, prefix="thal")]
    assert files == [
        *(f"thal_k-{k}_labels.nii.gz" for k in (2, 3)),
        "thal_metrics.tsv",
        "thal_metrics.png",
        "thal_boilerplate.txt",
        "thal_references.bib",
        *(f"thal_k-{k}_terms.tsv" for k in (2, 3)),
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    back = pd.read_csv(out / "thal_k-3_terms.tsv", sep="\t", index_col="term")
    np.testing.assert_allclose(back.to_numpy(), result.terms[3].to_numpy(), rtol=1e-5)
    assert list(back.index) == list(result.terms[3].index)
    img = nib.load(out / "thal_k-2_labels.nii.gz")
    np.testing.assert_array_equal(np.asarray(img.dataobj), result.get_label_image(2).dataobj)
    assert "Yuan et al., 2017" in result.boilerplate()


# ----------------------------------------------------------------------------- bad input
def test_missing_feature_group_is_an_error(two):
    dset, roi, _ = two
    with pytest.raises(DatasetError, match="no annotation column belongs to feature_group 'LDA'"):
        MAPBOT(roi, 2, r=5, feature_group="LDA").fit(dset)


def test_a_dataset_without_annotations_is_an_error(two):
    dset, roi, _ = two
    bare = dset.copy()
    bare.annotations = bare.annotations[["id", "study_id", "contrast_id"]]
    with pytest.raises(DatasetError, match="the dataset has no annotations"):
        MAPBOT(roi, 2, r=5).fit(bare)


def test_features_select_terms_within_the_group(two):
    dset, roi, truth = two
    planted = [f"region{s}_term{t}" for s in range(2) for t in range(N_TERMS)]
    result = MAPBOT(roi, 2, r=5, feature_group=GROUP, features=planted, n_splits=0).fit(dset)
    assert list(result.terms[2].index) == [f"{GROUP}__{term}" for term in planted]
    assert adjusted_rand_score(truth, result.labels[2]) >= 0.9
    with pytest.raises(DatasetError, match=r"features not in feature_group .*'attention'"):
        MAPBOT(roi, 2, r=5, feature_group=GROUP, features=["attention"]).fit(dset)


def test_voxels_without_nearby_experiments_are_an_error(two):
    dset, roi, _ = two
    with pytest.raises(DatasetError, match=r"target voxels have no experiment within r=1 mm"):
        MAPBOT(roi, 2, r=1, feature_group=GROUP).fit(dset)


def test_roi_smaller_than_the_number_of_parcels_is_an_error(two):
    dset, roi, _ = two
    data = np.zeros(roi.shape, np.int8)
    data[tuple(np.argwhere(np.asarray(roi.dataobj))[:2].T)] = 1
    with pytest.raises(ImageError, match="2 voxel"):
        MAPBOT(nib.Nifti1Image(data, roi.affine), [2, 3], r=5, feature_group=GROUP).fit(dset)


def test_negative_or_non_numeric_term_weights_are_errors(two):
    dset, roi, _ = two
    bad = dset.copy()
    column = f"{GROUP}__common0"
    bad.annotations = bad.annotations.assign(**{column: -bad.annotations[column]})
    with pytest.raises(DatasetError, match="non-negative term weights.*common0"):
        MAPBOT(roi, 2, r=5, feature_group=GROUP).fit(bad)
    bad.annotations = bad.annotations.assign(**{column: "often"})
    with pytest.raises(DatasetError, match="is not a number: 'often'"):
        MAPBOT(roi, 2, r=5, feature_group=GROUP).fit(bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of r"),
        ({"r": 5, "n": 10}, "exactly one of r"),
        ({"r": -1}, "positive distance"),
        ({"r": float("inf")}, "positive distance"),
        ({"n": 2.5}, "positive integer"),
    ],
)
def test_selection_parameters_are_checked(kwargs, match):
    """The same check (``cbp.check_selection``) as CoordCBP's and select_experiments'."""
    with pytest.raises(ValueError, match=match):
        MAPBOT("roi.nii.gz", 2, **kwargs)
    with pytest.raises(ValueError, match=match):
        CoordCBP("roi.nii.gz", 2, **kwargs)


def test_a_second_fit_compiles_nothing(two):
    dset, roi, _ = two
    model = MAPBOT(roi, 2, r=5, feature_group=GROUP, n_splits=1)
    first = model.fit(dset)
    with count_traces() as traced:
        second = model.fit(dset)
    assert traced == []
    np.testing.assert_array_equal(first.labels[2], second.labels[2])


def test_a_component_without_voxels_is_reported(three):
    # 3 planted subregions, 5 components: NMF leaves some components without a voxel, and
    # the warning, the label image and the term table agree on how many parcels remain.
    dset, roi, truth = three
    with pytest.warns(UserWarning, match="5 parcels: .* won no voxel") as record:
        result = MAPBOT(roi, 5, r=5, feature_group=GROUP, n_splits=0).fit(dset)
    message = str(record[0].message)
    n_found = int(re.search(r"solution has (\d) parcels", message).group(1))
    assert 3 <= n_found < 5
    assert np.unique(result.labels[5]).tolist() == list(range(1, n_found + 1))
    assert list(result.terms[5].columns) == list(range(1, n_found + 1))
    # the surviving parcels still follow the planted subregions
    assert adjusted_rand_score(truth, result.labels[5]) >= 0.8


# ----------------------------------------------------------------------------- command line
def test_cbp_command_runs_mapbot(tmp_path, capsys):
    dset, roi, _, source = planted_corpus(2, seed=0, return_source=True)
    (tmp_path / "corpus.json").write_text(json.dumps(source))
    roi.to_filename(tmp_path / "roi.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    argv = ["cbp", str(tmp_path / "corpus.json"), "--roi", str(tmp_path / "roi.nii.gz")]
    argv += ["--n_clusters", "2", "3", "--method", "mapbot", "--feature_group", GROUP]
    argv += ["--r", "5", "--n_splits", "1", "--output_dir", str(out), "--prefix", "m"]
    assert main(argv) == 0
    assert "Yuan et al., 2017" in capsys.readouterr().out
    direct = MAPBOT(roi, [2, 3], r=5, feature_group=GROUP, n_splits=1).fit(dset)
    for k in (2, 3):
        img = nib.load(out / f"m_k-{k}_labels.nii.gz")
        np.testing.assert_array_equal(np.asarray(img.dataobj), direct.get_label_image(k).dataobj)
        table = pd.read_csv(out / f"m_k-{k}_terms.tsv", sep="\t", index_col="term")
        np.testing.assert_allclose(table.to_numpy(), direct.terms[k].to_numpy(), rtol=1e-5)
    metrics = pd.read_csv(out / "m_metrics.tsv", sep="\t", index_col="n_clusters")
    np.testing.assert_allclose(metrics.to_numpy(), direct.metrics.to_numpy(), rtol=1e-5)


def test_cbp_command_reports_a_missing_feature_group(tmp_path, capsys):
    _, roi, _, source = planted_corpus(2, n_per=3, seed=0, return_source=True)
    (tmp_path / "corpus.json").write_text(json.dumps(source))
    roi.to_filename(tmp_path / "roi.nii.gz")
    argv = ["cbp", str(tmp_path / "corpus.json"), "--roi", str(tmp_path / "roi.nii.gz")]
    argv += ["--n_clusters", "2", "--method", "mapbot", "--feature_group", "LDA50"]
    assert main([*argv, "--output_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no annotation column belongs to feature_group 'LDA50'" in err
    assert "Traceback" not in err

"""nimare_jax.generate.create_coordinate_dataset: structure, reproducibility and statistics."""

import time

import numpy as np
import pytest

from nimare_jax.dataset import Dataset
from nimare_jax.generate import create_coordinate_dataset
from nimare_jax.spatial import get_template

MASK = get_template("mni152_2mm")
MASK_DATA = np.asarray(MASK.dataobj) > 0
FAR_APART = [[-40.0, -20.0, 10.0], [40.0, -20.0, 10.0], [0.0, 40.0, 20.0]]  # mm, deep in the brain


def _foci_per_study(dset):
    return dset.coordinates.groupby("id", sort=False).size().reindex(dset.ids).to_numpy()


def _xyz(dset, ident=None):
    coords = dset.coordinates
    if ident is not None:
        coords = coords[coords["id"] == ident]
    return coords[["x", "y", "z"]].to_numpy()


def test_structure_matches_nimare_format():
    truth, dset = create_coordinate_dataset(foci=3, n_studies=7, sample_size=25, seed=1)
    assert isinstance(dset, Dataset) and len(dset) == 7
    assert list(dset.ids) == [f"study-{i}-1" for i in range(7)]
    assert dset.get_metadata(field="sample_sizes") == [[25]] * 7
    assert len(truth) == 3 and all(len(f) == 3 and isinstance(f[0], float) for f in truth)
    assert len({tuple(f) for f in truth}) == 3  # distinct ground-truth foci


def test_all_foci_and_ground_truth_lie_in_the_mask():
    truth, dset = create_coordinate_dataset(foci=5, n_studies=40, n_noise_foci=6, seed=2)
    ijk = dset.coordinates[["i", "j", "k"]].to_numpy()
    assert MASK_DATA[tuple(ijk.T)].all()
    truth_ijk = np.round(np.linalg.solve(MASK.affine, np.c_[truth, np.ones(5)].T)[:3]).astype(int)
    assert MASK_DATA[tuple(truth_ijk)].all()


def test_counts_as_requested():
    truth, dset = create_coordinate_dataset(
        foci=FAR_APART, foci_percentage="40%", n_studies=50, n_noise_foci=0, seed=3
    )
    counts = _foci_per_study(dset)
    # 20 studies report the 3 foci (kept apart, so they cannot collide); the other 30 get
    # one noise focus each so that no study is empty
    np.testing.assert_array_equal(counts, [3] * 20 + [1] * 30)
    assert truth == [tuple(f) for f in FAR_APART]  # already voxel centres

    _, dset = create_coordinate_dataset(foci=FAR_APART, n_studies=30, n_noise_foci=4, seed=3)
    counts = _foci_per_study(dset)
    # repeats within a study are reported once; among 228,483 voxels they are rare
    assert counts.max() == 7 and counts.min() >= 6 and counts.mean() > 6.9


@pytest.mark.parametrize(("share", "expected"), [(0.5, 10), ("25%", 5), (0.0, 0)])
def test_foci_percentage_sets_number_of_signal_studies(share, expected):
    _, dset = create_coordinate_dataset(
        foci=[[0.0, -20.0, 10.0]], foci_percentage=share, n_studies=20, n_noise_foci=2, seed=4
    )
    near = [
        np.min(np.linalg.norm(_xyz(dset, i) - [0.0, -20.0, 10.0], axis=1)) < 20 for i in dset.ids
    ]
    assert np.all(near[:expected])
    # noise-only studies: a uniform focus lands within 20 mm of the peak with p ~ 0.02
    assert sum(near[expected:]) <= 3


def test_reproducible_with_seed():
    kwargs = {"foci": 4, "n_studies": 20, "n_noise_foci": 3, "sample_size": (10, 50)}
    t1, d1 = create_coordinate_dataset(seed=11, **kwargs)
    t2, d2 = create_coordinate_dataset(seed=11, **kwargs)
    t3, d3 = create_coordinate_dataset(seed=12, **kwargs)
    assert t1 == t2 and t1 != t3
    np.testing.assert_array_equal(_xyz(d1), _xyz(d2))
    assert d1.get_metadata(field="sample_sizes") == d2.get_metadata(field="sample_sizes")
    assert not np.array_equal(_xyz(d1)[:10], _xyz(d3)[:10])


@pytest.mark.parametrize("fwhm", [6.0, 12.0])
def test_true_foci_spread_as_gaussian_of_fwhm(fwhm):
    # the brain mask holds every voxel within 22 mm of this peak, so nothing truncates the
    # Gaussian there but its 4-sigma window
    peak = np.array([0.0, -22.0, 50.0])
    n = 4000
    _, dset = create_coordinate_dataset(foci=[peak], fwhm=fwhm, n_studies=n, seed=5)
    offsets = _xyz(dset) - peak
    sigma = fwhm / np.sqrt(8 * np.log(2))
    # a Gaussian sampled on a 2 mm grid keeps variance sigma**2 (for sigma > 2 mm); the
    # standard error of each axis's standard deviation is ~1.1 %, so 5 % is > 4 SE
    np.testing.assert_allclose(offsets.std(axis=0), sigma, rtol=0.05)
    np.testing.assert_allclose(offsets.mean(axis=0), 0.0, atol=4 * sigma / np.sqrt(n))
    assert np.linalg.norm(offsets, axis=1).max() <= 4 * sigma * np.sqrt(3) + 2


def test_sample_size_forms():
    _, dset = create_coordinate_dataset(n_studies=300, sample_size=[10, 20], seed=6)
    sizes = np.ravel(dset.get_metadata(field="sample_sizes"))
    assert sizes.min() >= 10 and sizes.max() < 20 and len(set(sizes)) == 10
    _, dset = create_coordinate_dataset(n_studies=3, sample_size=[5, 6, 7], seed=6)
    assert dset.get_metadata(field="sample_sizes") == [[5], [6], [7]]
    _, dset = create_coordinate_dataset(n_studies=2, sample_size=[8, 9], seed=6)
    assert dset.get_metadata(field="sample_sizes") == [[8], [9]]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"space": "TAL"}, NotImplementedError, "space='MNI'"),
        ({"foci_percentage": "40"}, ValueError, "foci_percentage"),
        ({"foci_percentage": 1.5}, ValueError, "between 0 and 100%"),
        ({"sample_size": [1, 2, 3]}, ValueError, "one entry per study"),
        ({"foci": [[1.0, 2.0]]}, ValueError, r"\(n, 3\)"),
        ({"foci": [[0.0, 0.0, 500.0]]}, ValueError, "outside the template"),
        ({"n_noise_foci": -1}, ValueError, "n_noise_foci"),
        ({"fwhm": 0}, ValueError, "fwhm"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        create_coordinate_dataset(n_studies=4, seed=0, **kwargs)


@pytest.mark.slow
def test_neurosynth_scale_is_fast():
    start = time.perf_counter()
    truth, dset = create_coordinate_dataset(
        foci=6, foci_percentage="30%", n_studies=14000, n_noise_foci=30, seed=7
    )
    elapsed = time.perf_counter() - start
    counts = _foci_per_study(dset)
    assert len(dset) == 14000 and len(truth) == 6
    assert counts[:4200].max() == 36 and counts[4200:].max() == 30
    assert counts.sum() > 0.99 * (4200 * 36 + 9800 * 30)
    assert elapsed < 60  # ~3 s on a 2-core machine, most of it building the Dataset tables

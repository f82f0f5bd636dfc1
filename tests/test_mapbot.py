"""MAPBOT (meta-analytic parcellation based on text, Yuan et al. 2017).

No reference implementation exists (NiMARE dropped its unfinished draft), so the tests are
of two kinds: the array steps against brute-force NumPy written from the definitions, and
the whole method on a simulated corpus whose planted subregions carry distinct terms.
"""

import numpy as np
import pytest

from nimare_jax.ops import mapbot as ops_mapbot


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

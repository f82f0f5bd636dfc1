"""GC-LDA decoding and encoding against NiMARE 0.22.1 given the same model matrices.

The model carries the state NiMARE's reference script saved (tests/data/gclda); its
distributions equal NiMARE's to 1e-10 (tests/test_annotate_gclda.py), so the decoders'
outputs must match NiMARE's stored outputs to 1e-6 relative.
"""

import nibabel as nib
import numpy as np
import pytest
from test_annotate_gclda import load_corpus, load_state, model_like, set_state

from nimare_jax.decode.encode import gclda_encode
from nimare_jax.decode.gclda import gclda_decode_map, gclda_decode_roi
from nimare_jax.decode.utils import weight_priors
from nimare_jax.exceptions import ImageError

RTOL = 1e-6
ENCODE_TEXT = "working memory task prefrontal cortex memory load and emotion faces"


def world_coordinates(img):
    ijk = np.indices(img.shape).reshape(3, -1).T
    return nib.affines.apply_affine(img.affine, ijk)


def roi_image(mask_img, center=(-24.0, -4.0, -18.0), radius=15.0):
    """The sphere make_reference.py decodes."""
    inside = np.linalg.norm(world_coordinates(mask_img) - np.asarray(center), axis=1) <= radius
    return nib.Nifti1Image(inside.reshape(mask_img.shape).astype(np.int8), mask_img.affine)


def map_image(mask_img):
    """The smooth signed map make_reference.py decodes."""
    xyz = world_coordinates(mask_img)
    d1 = np.sum((xyz - np.array([40.0, 20.0, 30.0])) ** 2, axis=1)
    d2 = np.sum((xyz - np.array([-30.0, -60.0, 10.0])) ** 2, axis=1)
    values = np.exp(-d1 / (2 * 15.0**2)) - 0.5 * np.exp(-d2 / (2 * 20.0**2))
    return nib.Nifti1Image(values.reshape(mask_img.shape), mask_img.affine)


@pytest.fixture(scope="module")
def fitted():
    ref = load_state("symmetric")
    model = model_like(load_corpus(), ref)
    set_state(model, ref)
    (
        model.p_topic_g_voxel_,
        model.p_voxel_g_topic_,
        model.p_topic_g_word_,
        model.p_word_g_topic_,
    ) = model.get_probability_distributions()
    return model, ref


def priors_for(model):
    return np.linspace(1.0, 2.0, model.params["n_topics"])


def test_decode_roi_matches_nimare(fitted):
    model, ref = fitted
    roi = roi_image(model.mask)
    table, topics = gclda_decode_roi(model, roi)
    assert table.index.name == "Term" and list(table.columns) == ["Weight"]
    assert list(table.index) == model.vocabulary
    np.testing.assert_allclose(topics, ref["roi_topic_weights"], rtol=RTOL)
    np.testing.assert_allclose(table["Weight"], ref["roi_word_weights"], rtol=RTOL)
    table, topics = gclda_decode_roi(model, roi, topic_priors=priors_for(model), prior_weight=0.5)
    np.testing.assert_allclose(topics, ref["roi_prior_topic_weights"], rtol=RTOL)
    np.testing.assert_allclose(table["Weight"], ref["roi_prior_word_weights"], rtol=RTOL)


def test_decode_map_matches_nimare(fitted):
    model, ref = fitted
    img = map_image(model.mask)
    table, topics = gclda_decode_map(model, img)
    np.testing.assert_allclose(topics, ref["map_topic_weights"], rtol=RTOL)
    np.testing.assert_allclose(table["Weight"], ref["map_word_weights"], rtol=RTOL)
    table, topics = gclda_decode_map(model, img, topic_priors=priors_for(model), prior_weight=0.25)
    np.testing.assert_allclose(topics, ref["map_prior_topic_weights"], rtol=RTOL)
    np.testing.assert_allclose(table["Weight"], ref["map_prior_word_weights"], rtol=RTOL)


def test_encode_matches_nimare(fitted, tmp_path):
    model, ref = fitted
    out = tmp_path / "encoded.nii.gz"
    img, topics = gclda_encode(model, ENCODE_TEXT, out_file=out)
    inside = np.asarray(model.mask.dataobj) > 0
    np.testing.assert_allclose(topics, ref["encode_topic_weights"], rtol=RTOL)
    voxels = img.get_fdata()[inside][ref["vox_rows"]]
    np.testing.assert_allclose(voxels, ref["encode_voxel_weights"], rtol=RTOL)
    np.testing.assert_array_equal(nib.load(out).get_fdata(), img.get_fdata())
    img, topics = gclda_encode(
        model, ENCODE_TEXT.split(), topic_priors=priors_for(model), prior_weight=1.0
    )
    np.testing.assert_allclose(topics, ref["encode_prior_topic_weights"], rtol=RTOL)
    voxels = img.get_fdata()[inside][ref["vox_rows"]]
    np.testing.assert_allclose(voxels, ref["encode_prior_voxel_weights"], rtol=RTOL)


def test_weight_priors_closed_form():
    priors = np.array([2.0, 1.0, 1.0, 0.0])
    before = priors.copy()
    weighted = weight_priors(priors, 0.6)
    np.testing.assert_allclose(weighted, 0.6 * priors / 4.0 + 0.4 / 4, rtol=1e-15)
    np.testing.assert_array_equal(priors, before)  # input untouched
    np.testing.assert_allclose(weight_priors(priors, 0), 0.25)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        weight_priors(priors, 1.5)
    with pytest.raises(TypeError, match="must be a number"):
        weight_priors(priors, "0.5")
    with pytest.raises(ValueError, match="positive sum"):
        weight_priors(np.zeros(3), 0.5)


def test_bad_input(fitted):
    model, _ = fitted
    mask = model.mask
    affine = mask.affine.copy()
    affine[0, 3] += 2.0
    shifted = nib.Nifti1Image(np.asarray(mask.dataobj), affine)
    with pytest.raises(ImageError, match="differ in geometry"):
        gclda_decode_roi(model, shifted)
    with pytest.raises(ImageError, match="differ in geometry"):
        gclda_decode_map(model, shifted)
    empty = nib.Nifti1Image(np.zeros(mask.shape, np.int8), mask.affine)
    with pytest.raises(ImageError, match="no voxel inside"):
        gclda_decode_roi(model, empty)
    values = map_image(mask).get_fdata()
    values[tuple(np.argwhere(np.asarray(mask.dataobj) > 0)[0])] = np.nan
    nan_map = nib.Nifti1Image(values, mask.affine)
    with pytest.raises(ImageError, match="NaN"):
        gclda_decode_map(model, nan_map)
    with pytest.raises(ValueError, match="No term"):
        gclda_encode(model, "zzzz qqqq")
    with pytest.raises(ValueError, match="topic_priors has 3 values"):
        gclda_decode_roi(model, roi_image(mask), topic_priors=np.ones(3))
    unfitted = model_like(load_corpus(), load_state("symmetric"))
    with pytest.raises(ValueError, match=r"call model.fit\(\) first"):
        gclda_encode(unfitted, ENCODE_TEXT)

"""Continuous decoders: CorrelationDecoder and CorrelationDistributionDecoder.

References: NiMARE 0.22.1's ``CorrelationDecoder`` maps and correlations on a 7-label laird
dataset and its ``CorrelationDistributionDecoder`` on the 20 simulated IBMA studies with
random labels (``tests/data/decode/``, made by ``make_continuous_reference.py``); separate
``MKDAChi2`` / ``MKDADensity`` / ``KDA`` / ``ALE`` fits of nimare_jax per feature; float64
NumPy correlations.
"""

import contextlib
import importlib.util
from pathlib import Path

import jax
import nibabel as nib
import numpy as np
import pytest

from nimare_jax.dataset import Dataset
from nimare_jax.decode import continuous
from nimare_jax.decode.continuous import CorrelationDecoder, CorrelationDistributionDecoder
from nimare_jax.exceptions import DatasetError, ImageError
from nimare_jax.io.images import load_images
from nimare_jax.meta.cbma import ALE, KDA, MKDAChi2, MKDADensity

DATA = Path(__file__).parent / "data" / "decode"
IBMA = Path(__file__).parent / "data" / "ibma"
GROUP = "Neurosynth_TFIDF"
MAP_TOL = 1e-4  # absolute, NiMARE's float32 maps (z of order 1-5)
R_TOL = 1e-5  # absolute, NiMARE's float32 Pearson
SELF_TOL = 1e-6  # batched engine vs a separate MKDAChi2 fit (float32 maps)

_spec = importlib.util.spec_from_file_location("make_ref", DATA / "make_continuous_reference.py")
make_ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_ref)


@contextlib.contextmanager
def count_traces():
    names = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration":
            names.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture(scope="module")
def dset():
    with pytest.warns(UserWarning, match="unknown space"):
        return Dataset(DATA / "laird_decode_dataset.json")


@pytest.fixture(scope="module")
def reference():
    with np.load(DATA / "continuous_reference.npz") as f:
        data = {k: f[k] for k in f.files}
    out = {}
    for tag in ("mkdachi2", "mkdadensity"):
        names = [str(n) for n in data[f"{tag}_features"]]
        maps = {
            name: data[f"{tag}_values_{n}"][data[f"{tag}_codes_{n}"]].astype(np.float64)
            for n, name in enumerate(names)
        }
        out[tag] = {"maps": maps, "r": dict(zip(names, data[f"{tag}_r"], strict=True))}
    return out


@pytest.fixture(scope="module")
def decoder(dset):
    return CorrelationDecoder(feature_group=GROUP).fit(dset)


@pytest.fixture(scope="module")
def target(dset):
    return make_ref.target_image(dset.masker.mask_img_)


@pytest.fixture(scope="module")
def separate(dset):
    """A separate ``MKDAChi2`` fit of each feature in two or more experiments (all maps)."""
    out = {}
    for feature in dset.get_labels():
        selected = dset.get_studies_by_label(feature)
        if 2 <= len(selected) <= len(dset.ids) - 2:
            others = [i for i in dset.ids if i not in selected]
            out[feature] = MKDAChi2().fit(dset.slice(selected), dset.slice(others))
    return out


# ----------------------------------------------------------------------------- parity
def test_mkdachi2_maps_and_skips_match_nimare(decoder, reference):
    ref = reference["mkdachi2"]["maps"]
    # NiMARE drops "001" (in no experiment) and "everywhere" (in all 17: nothing to compare).
    assert set(decoder.features_) == set(ref)
    assert set(decoder.results_.maps) == set(ref)
    for feature, expected in ref.items():
        got = decoder.results_.get_map(feature, return_type="array")
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, expected, atol=MAP_TOL, rtol=0, err_msg=feature)


def test_transform_matches_nimare_and_float64_pearson(dset, decoder, reference, target):
    table = decoder.transform(target)
    assert table.index.name == "feature" and list(table.columns) == ["r"]
    assert decoder.results_.tables["correlation"] is table
    x = np.asarray(target.dataobj, np.float64)[np.asanyarray(dset.masker.mask_img_.dataobj) > 0]
    for feature, r in reference["mkdachi2"]["r"].items():
        np.testing.assert_allclose(table.loc[feature, "r"], r, atol=R_TOL, err_msg=feature)
        m = decoder.results_.maps[feature].astype(np.float64)
        np.testing.assert_allclose(table.loc[feature, "r"], np.corrcoef(x, m)[0, 1], atol=1e-12)


@pytest.mark.slow
def test_batched_equals_separate_mkdachi2_fits(decoder, separate):
    # A direct MKDAChi2 fit needs two experiments per group: 5 of the 6 features.
    assert len(separate) == 5
    for feature, result in separate.items():
        expected = result.get_map("z_desc-association", return_type="array")
        np.testing.assert_allclose(decoder.results_.maps[feature], expected, atol=SELF_TOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "target",
    [
        "z_desc-uniformity",
        "chi2_desc-group2",
        "p_desc-association",
        "logp_desc-group1",
        "prob_desc-AgF",
        "prob_desc-A",
    ],
)
def test_batched_other_targets_equal_separate_fits(dset, separate, target):
    features = ["motor", "cognition", "connectivity"]
    dec = CorrelationDecoder(feature_group=GROUP, features=features, target_image=target)
    dec.fit(dset)
    assert dec.features_ == [f"{GROUP}__{f}" for f in features]
    for feature in dec.features_:
        expected = separate[feature].get_map(target, return_type="array")
        tol = SELF_TOL * max(1.0, float(np.abs(expected).max()))  # chi2 and logp reach ~30
        np.testing.assert_allclose(dec.results_.maps[feature], expected, atol=tol, rtol=1e-6)


def test_chunked_engine_equals_single_chunk(dset, decoder, monkeypatch):
    # Many voxel chunks, feature blocks of 4 (6 features: one padded block), few pairs.
    monkeypatch.setattr(continuous, "CHUNK_CELLS", 17 * 4096)
    monkeypatch.setattr(continuous, "FEATURE_BLOCK", 4)
    monkeypatch.setattr(continuous, "EXPERIMENT_CHUNK", 5)
    monkeypatch.setattr(continuous, "PAIR_QUANTUM", 64)
    small = CorrelationDecoder(feature_group=GROUP).fit(dset)
    for feature in decoder.features_:
        np.testing.assert_array_equal(small.results_.maps[feature], decoder.results_.maps[feature])


def test_second_fit_does_not_retrace(dset, decoder):
    again = CorrelationDecoder(feature_group=GROUP)
    with count_traces() as traces:
        again.fit(dset)
    assert traces == [], traces
    density = dict(feature_group=GROUP, meta_estimator=KDA(), target_image="z")
    CorrelationDecoder(**density).fit(dset)
    with count_traces() as traces:
        CorrelationDecoder(**density).fit(dset)
    assert traces == [], traces


def test_mkdadensity_maps_match_nimare(dset, reference, target):
    dec = CorrelationDecoder(feature_group=GROUP, meta_estimator=MKDADensity(), target_image="z")
    dec.fit(dset)
    ref = reference["mkdadensity"]
    # One-group estimator: "everywhere" is kept, "001" dropped.
    assert set(dec.features_) == set(ref["maps"])
    for feature, expected in ref["maps"].items():
        np.testing.assert_allclose(
            dec.results_.maps[feature], expected, atol=MAP_TOL, rtol=0, err_msg=feature
        )
    table = dec.transform(target)
    for feature, r in ref["r"].items():
        np.testing.assert_allclose(table.loc[feature, "r"], r, atol=R_TOL, err_msg=feature)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", [MKDADensity, KDA])
@pytest.mark.parametrize("target", ["stat", "p", "z", "logp"])
def test_batched_density_equals_separate_fits(dset, estimator, target):
    features = ["abnormal", "motor", "connectivity"]
    dec = CorrelationDecoder(
        feature_group=GROUP, features=features, meta_estimator=estimator(), target_image=target
    )
    dec.fit(dset)
    for feature in dec.features_:
        expected = estimator().fit(dset.slice(dset.get_studies_by_label(feature)))
        expected = expected.get_map(target, return_type="array")
        tol = SELF_TOL * max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(dec.results_.maps[feature], expected, atol=tol, rtol=0)


@pytest.mark.slow
def test_other_estimators_fit_once_per_feature(dset):
    # ALE has no batched path: each map is a separate fit of the feature's experiments.
    features = ["motor", "connectivity"]
    dec = CorrelationDecoder(
        feature_group=GROUP, features=features, meta_estimator=ALE(), target_image="z"
    )
    dec.fit(dset)
    for feature in dec.features_:
        expected = ALE().fit(dset.slice(dset.get_studies_by_label(feature)))
        np.testing.assert_array_equal(
            dec.results_.maps[feature],
            expected.get_map("z", return_type="array").astype(np.float32),
        )


def test_self_correlation_never_exceeds_one(dset, decoder):
    feature = decoder.features_[0]
    img = decoder.results_.get_map(feature)
    r = decoder.transform(img).loc[feature, "r"]
    assert abs(r) <= 1.0
    np.testing.assert_allclose(r, 1.0, atol=1e-12)


def test_load_imgs_roundtrip(tmp_path, dset, decoder, target):
    for feature in decoder.features_:
        decoder.results_.get_map(feature).to_filename(tmp_path / f"{feature}.nii.gz")
    loaded = CorrelationDecoder()
    loaded.load_imgs(str(tmp_path), mask=dset.masker)
    assert set(loaded.features_) == set(decoder.features_)
    a = loaded.transform(target)
    b = decoder.transform(target)
    np.testing.assert_allclose(a.loc[b.index, "r"], b["r"], atol=1e-12)
    as_dict = CorrelationDecoder()
    as_dict.load_imgs({"one": tmp_path / f"{decoder.features_[0]}.nii.gz"}, mask=dset.masker)
    assert list(as_dict.results_.maps) == ["one"]


# ----------------------------------------------------------------------------- bad input
def test_missing_feature_group_is_clear(dset):
    with pytest.raises(DatasetError, match="feature_group 'Nope'.*Neurosynth_TFIDF"):
        CorrelationDecoder(feature_group="Nope").fit(dset)


def test_features_in_every_experiment_are_clear(dset):
    with pytest.raises(DatasetError, match="present in all 17 experiments.*everywhere"):
        CorrelationDecoder(feature_group=GROUP, features=["everywhere"]).fit(dset)


def test_no_feature_after_threshold_is_clear(dset):
    with pytest.raises(DatasetError, match="frequency_threshold"):
        CorrelationDecoder(feature_group=GROUP, features=["001"]).fit(dset)
    with pytest.raises(DatasetError, match="frequency_threshold=2"):
        CorrelationDecoder(feature_group=GROUP, frequency_threshold=2).fit(dset)


def test_unknown_feature_is_clear(dset):
    with pytest.raises(DatasetError, match="zebra"):
        CorrelationDecoder(feature_group=GROUP, features=["motor", "zebra"]).fit(dset)
    with pytest.raises(DatasetError, match="zebra"):
        CorrelationDecoder(features=["zebra"]).fit(dset)


def test_image_on_another_grid_is_clear(dset, decoder, target):
    shifted = nib.Nifti1Image(np.asarray(target.dataobj), target.affine @ np.diag([2, 2, 2, 1]))
    with pytest.raises(ImageError, match="differ in geometry"):
        decoder.transform(shifted)
    bad = np.asarray(target.dataobj).copy()
    bad[45, 54, 45] = np.nan
    with pytest.raises(ImageError, match="1 voxel"):
        decoder.transform(nib.Nifti1Image(bad, target.affine))


def test_unfitted_and_load_imgs_errors(dset):
    with pytest.raises(AttributeError, match="not fitted"):
        CorrelationDecoder().transform(make_ref.target_image(dset.masker.mask_img_))
    with pytest.raises(ValueError, match="mask"):
        CorrelationDecoder().load_imgs({})
    with pytest.raises(ValueError, match="dictionary or a folder"):
        CorrelationDecoder().load_imgs(3, mask=dset.masker)
    with pytest.raises(TypeError, match="estimator instance"):
        CorrelationDecoder(meta_estimator=MKDAChi2)


# ----------------------------------------------------------------------------- distribution
@pytest.fixture(scope="module")
def ibma_labelled():
    """The 20 simulated IBMA studies with five seeded random binary labels."""
    dset = Dataset(DATA / "ibma_labelled.json", mask=IBMA / "mask.nii.gz")
    return dset.update_path(IBMA / "inputs")


def test_distribution_decoder_matches_nimare_and_numpy(ibma_labelled):
    dset = ibma_labelled
    dec = CorrelationDistributionDecoder(feature_group="syn").fit(dset)
    z = load_images(dset, "z").astype(np.float64)
    img = make_ref.cdd_target(dset.masker.mask_img_, z[0].astype(np.float32))
    x = np.asarray(img.dataobj, np.float64)[np.asanyarray(dset.masker.mask_img_.dataobj) > 0]
    table = dec.transform(img)
    assert list(table.columns) == ["mean", "std"] and table.index.name == "feature"
    with np.load(DATA / "cdd_reference.npz") as ref:
        assert list(table.index) == [str(f) for f in ref["features"]]
        np.testing.assert_allclose(table["mean"], ref["mean"], atol=1e-5)
        np.testing.assert_allclose(table["std"], ref["std"], atol=1e-5)
    for feature in table.index:
        rows = np.flatnonzero(dset.annotations[feature].to_numpy() >= 0.001)
        fz = np.arctanh([np.corrcoef(x, z[i])[0, 1] for i in rows])
        np.testing.assert_allclose(table.loc[feature, "mean"], fz.mean(), atol=1e-10)
        np.testing.assert_allclose(table.loc[feature, "std"], fz.std(), atol=1e-10)


def test_distribution_decoders_do_not_share_requirements(ibma_labelled):
    dset = ibma_labelled
    on_z = CorrelationDistributionDecoder(feature_group="syn", target_image="z")
    on_beta = CorrelationDistributionDecoder(feature_group="syn", target_image="beta")
    assert on_z._required_inputs != on_beta._required_inputs
    on_z.fit(dset)
    feature = on_z.features_[0]
    rows = dset.annotations[feature].to_numpy() >= 0.001
    np.testing.assert_array_equal(on_z.results_.maps[feature], load_images(dset, "z")[rows])
    with pytest.raises(DatasetError, match="no experiment has a 'nope' image"):
        CorrelationDistributionDecoder(feature_group="syn", target_image="nope").fit(dset)

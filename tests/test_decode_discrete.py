"""Discrete decoders against NiMARE 0.22.1 (tests/data/decode_discrete/make_reference.py).

The fixture is NiMARE's ``testdata_laird`` (17 experiments, 1117 foci) with its
``Neurosynth_TFIDF`` features (the 728 with a non-zero value plus 12 that are zero
everywhere); the selection is the experiments with a focus in the right-amygdala ROI.
"""

import json
import warnings
from pathlib import Path

import jax
import nibabel as nib
import numpy as np
import pytest
from scipy import stats as sps
from test_compilation import count_traces

from nimare_jax.dataset import Dataset
from nimare_jax.decode.discrete import (
    BrainMapDecoder,
    NeurosynthDecoder,
    ROIAssociationDecoder,
    brainmap_decode,
    neurosynth_decode,
)
from nimare_jax.exceptions import DatasetError, ImageError
from nimare_jax.meta.kernel import KDAKernel
from nimare_jax.ops import discrete as ops
from nimare_jax.ops import stats as jax_stats

HERE = Path(__file__).parent / "data" / "decode_discrete"
ROI = HERE / "amygdala_roi.nii.gz"
GROUP = "Neurosynth_TFIDF"
CORRECTIONS = [None, "bh", "by", "bonferroni"]
RTOL = 1e-10  # every column of the discrete decoders, relative to NiMARE
ATOL = 0.0  # zeros (z of p = 1, probabilities of 0) must be exact zeros


def _source(extra_labels=None):
    """The fixture as a NiMARE-format dict (coordinates JSON + annotation table)."""
    source = json.loads((HERE / "laird_coords.json").read_text())
    with np.load(HERE / "laird_annotations.npz") as f:
        columns, ids, values = f["columns"].tolist(), f["ids"], f["values"]
    for ident, row in zip(ids, values, strict=True):
        study, contrast = str(ident).split("-")
        labels = dict(zip(columns, row.tolist(), strict=True))
        labels.update(extra_labels or {})
        source[study]["contrasts"][contrast]["labels"] = labels
    return source


def _dataset(source):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unknown space.*")
        return Dataset(source)


@pytest.fixture(scope="module")
def dset():
    return _dataset(_source())


@pytest.fixture(scope="module")
def ref():
    with np.load(HERE / "reference.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def ids(dset):
    return [str(i) for i in dset.get_studies_by_mask(ROI)]


@pytest.fixture(scope="module")
def brainmap(dset):
    return BrainMapDecoder(feature_group=GROUP).fit(dset)


@pytest.fixture(scope="module")
def neurosynth(dset):
    return NeurosynthDecoder(feature_group=GROUP).fit(dset)


def _assert_table(ours, ref, case, columns):
    assert ours.index.name == "Term"
    assert list(ours.columns) == ref[f"columns_{columns}"].tolist()
    assert ours.index.tolist() == ref[f"{case}__index"].tolist()
    expected = ref[f"{case}__values"]
    assert np.isfinite(expected).all()
    for c, name in enumerate(ours.columns):
        np.testing.assert_allclose(
            ours[name].to_numpy(), expected[:, c], rtol=RTOL, atol=ATOL, err_msg=f"{case} {name}"
        )


def test_selection_and_features_match_nimare(dset, ref, brainmap, neurosynth):
    assert [str(i) for i in dset.get_studies_by_mask(ROI)] == ref["ids"].tolist()
    assert brainmap.features_ == ref["features"].tolist()  # 728 of the 740 columns
    assert neurosynth.features_ == ref["features"].tolist()
    assert len(ref["features"]) == 728


@pytest.mark.parametrize("correction", CORRECTIONS)
def test_brainmap_matches_nimare(brainmap, ref, ids, correction):
    brainmap.correction = correction
    try:
        _assert_table(brainmap.transform(ids), ref, f"brainmap_{correction}", "brainmap")
    finally:
        brainmap.correction = "bh"


def test_brainmap_ids2_matches_nimare(brainmap, ref, ids):
    out = brainmap.transform(ids, ids2=ref["ids2"].tolist())
    _assert_table(out, ref, "brainmap_bh_ids2", "brainmap")


def test_brainmap_function_equals_decoder(dset, brainmap, ids):
    out = brainmap_decode(
        dset.coordinates, dset.annotations, ids, features=brainmap.features_, correction="by"
    )
    brainmap.correction = "by"
    try:
        np.testing.assert_array_equal(out.to_numpy(), brainmap.transform(ids).to_numpy())
    finally:
        brainmap.correction = "bh"


@pytest.mark.parametrize("correction", CORRECTIONS)
def test_neurosynth_matches_nimare(neurosynth, ref, ids, correction):
    neurosynth.correction = correction
    try:
        _assert_table(neurosynth.transform(ids), ref, f"neurosynth_{correction}", "neurosynth")
    finally:
        neurosynth.correction = "bh"


@pytest.mark.parametrize(
    ("case", "params", "use_ids2"),
    [
        ("neurosynth_bh_ids2", {}, True),
        ("neurosynth_bh_minint2", {"min_studies": 2}, False),
        ("neurosynth_bh_minint2_ids2", {"min_studies": 2}, True),
        ("neurosynth_bh_minprop02", {"min_studies": 0.2}, False),
        ("neurosynth_bh_minprop02_ids2", {"min_studies": 0.2}, True),
        ("neurosynth_bh_priorNone", {"prior": None}, False),
    ],
)
def test_neurosynth_options_match_nimare(dset, ref, ids, case, params, use_ids2):
    decoder = NeurosynthDecoder(feature_group=GROUP, **params).fit(dset)
    out = decoder.transform(ids, ids2=ref["ids2"].tolist() if use_ids2 else None)
    _assert_table(out, ref, case, "neurosynth")


def test_neurosynth_function_equals_decoder(dset, neurosynth, ids):
    out = neurosynth_decode(
        dset.coordinates, dset.annotations, ids, features=neurosynth.features_, min_studies=3
    )
    neurosynth.min_studies = 3
    try:
        expected = neurosynth.transform(ids)
    finally:
        neurosynth.min_studies = 1
    assert out.index.tolist() == expected.index.tolist()
    np.testing.assert_array_equal(out.to_numpy(), expected.to_numpy())


@pytest.mark.parametrize(("case", "params"), [("roi_default", {}), ("roi_r6", {"kernel__r": 6})])
def test_roi_association_matches_nimare(dset, ref, case, params):
    decoder = ROIAssociationDecoder(ROI, feature_group=GROUP, **params).fit(dset)
    assert decoder.inputs_["id"] == ref[f"{case}__ids"].tolist()
    # NiMARE averages the MA values in float32; here the mean is exact (n_active / n_roi)
    n_roi = int((nib.load(ROI).get_fdata() > 0).sum())
    np.testing.assert_array_equal(
        np.round(decoder.roi_values_ * n_roi), np.round(ref[f"{case}__roi_values"] * n_roi)
    )
    np.testing.assert_allclose(decoder.roi_values_, ref[f"{case}__roi_values"], rtol=1e-6)
    out = decoder.transform()
    assert out.index.name == "feature"
    assert list(out.columns) == ["r"]
    assert out.index.tolist() == ref[f"{case}__index"].tolist()
    np.testing.assert_allclose(out["r"], ref[f"{case}__values"][:, 0], rtol=0, atol=1e-6)
    assert np.abs(out["r"]).max() <= 1.0


def test_roi_association_takes_a_kernel_instance(dset):
    kda = ROIAssociationDecoder(ROI, kernel_transformer=KDAKernel(r=10), feature_group=GROUP)
    mkda = ROIAssociationDecoder(ROI, feature_group=GROUP)
    kda.fit(dset)
    mkda.fit(dset)
    # KDA sums overlapping spheres where MKDA takes their union: same support, MA >= MKDA's
    assert np.all(kda.roi_values_ >= mkda.roi_values_)
    np.testing.assert_array_equal(kda.roi_values_ > 0, mkda.roi_values_ > 0)
    assert np.any(kda.roi_values_ > mkda.roi_values_)
    # as NiMARE: kernel__ arguments beside a kernel instance are ignored, with a warning
    with pytest.warns(UserWarning, match=r"kernel__ arguments \['r'\] are ignored"):
        ignored = ROIAssociationDecoder(ROI, kernel_transformer=KDAKernel(r=8), kernel__r=5)
    assert ignored.kernel_transformer.r == 8


# ---------------------------------------------------------------- array statistics


def test_label_counts_equal_loops():
    rng = np.random.default_rng(0)
    labels = rng.random((7, 30)) < 0.3
    selected = rng.random(30) < 0.4
    unselected = ~selected & (rng.random(30) < 0.7)
    foci = rng.integers(1, 20, 30).astype(float)
    sel, unsel, term_foci, n_labelled = ops.label_counts(labels, selected, unselected, foci)
    for f in range(7):
        assert sel[f] == sum(labels[f, s] for s in range(30) if selected[s])
        assert unsel[f] == sum(labels[f, s] for s in range(30) if unselected[s])
        assert term_foci[f] == sum(foci[s] for s in range(30) if labels[f, s])
    assert n_labelled == labels.sum()
    # the float32 product the decoders use gives the same counts, returned in float64
    single = ops.label_counts(labels.astype(np.float32), selected, unselected, foci)
    for a, b in zip(single, (sel, unsel, term_foci, n_labelled), strict=True):
        assert np.asarray(a).dtype == np.float64
        np.testing.assert_array_equal(np.asarray(a), b)


def test_binomial_and_chi2_tails_equal_scipy():
    k = np.array([0, 1, 5, 6, 30, 200, 7, 12])
    n = np.array([10, 10, 400, 1117, 100, 1000, 6, 12])
    p = np.array([0.1, 0.5, 0.005, 0.0054, 0.01, 0.01, 0.3, 0.99])
    chi2 = np.array([0.0, 1e-9, 0.5, 3.84, 50.0, 1500.0])
    logsf = ops.binomial_logsf(k, n, p)
    chi2_logp = ops.chi2_to_logp(chi2)
    expected = sps.binom.logsf(k - 1, n, p)  # P(X >= k); -inf for k > n
    finite = np.isfinite(expected)
    np.testing.assert_allclose(logsf[finite], expected[finite], rtol=1e-10)
    assert np.all(logsf[~finite] == -np.inf)
    assert logsf[5] < -400  # a deep tail (p ~ 1e-188) kept in logs
    np.testing.assert_allclose(chi2_logp[:5], sps.chi2.logsf(chi2[:5], 1), rtol=1e-12, atol=1e-15)
    # scipy's chi2.logsf underflows to -inf at 1500; the two-sided normal tail does not
    deep = np.log(2.0) + sps.norm.logsf(np.sqrt(chi2[5]))
    np.testing.assert_allclose(chi2_logp[5], deep, rtol=1e-12)


def test_host_fdr_and_z_equal_the_jax_kernels():
    """The host helpers against ``ops.stats`` (JAX, Newton-refined z), deep tails included."""
    rng = np.random.default_rng(1)
    logp = np.concatenate([np.log(rng.random(50)), [-700.0, -2000.0, 0.0, -1e-3, -1e-3]])
    with jax.enable_x64(True):
        for method in ("bh", "by"):
            expected = np.asarray(jax_stats.fdr_logp(logp, method=method))
            np.testing.assert_allclose(ops.fdr_logp(logp, method), expected, rtol=1e-13)
        for tail in ("one", "two"):
            expected = np.asarray(jax_stats.logp_to_z(logp, tail=tail))
            np.testing.assert_allclose(ops.logp_to_z(logp, tail), expected, rtol=1e-12)


def test_second_transform_traces_nothing(brainmap, neurosynth, ids):
    brainmap.transform(ids)
    neurosynth.transform(ids)
    with count_traces() as traces:
        brainmap.transform(ids[:5])
        neurosynth.transform(ids[1:])
    assert traces == []


# ---------------------------------------------------------------- bad input


def test_unknown_feature_group_is_an_error(dset):
    with pytest.raises(DatasetError, match="feature_group 'Nope'.*Neurosynth_TFIDF"):
        BrainMapDecoder(feature_group="Nope").fit(dset)
    with pytest.raises(DatasetError, match="feature_group"):
        ROIAssociationDecoder(ROI, feature_group="Nope").fit(dset)


def test_feature_in_every_experiment_is_an_error(ids):
    dset = _dataset(_source({"Neurosynth_TFIDF__everywhere": 0.5}))
    for decoder in (BrainMapDecoder(feature_group=GROUP), NeurosynthDecoder(feature_group=GROUP)):
        decoder.fit(dset)
        with pytest.raises(DatasetError, match="every experiment.*TFIDF__everywhere"):
            decoder.transform(ids)
    # with features= the remaining ones decode as before
    kept = [
        f for f in BrainMapDecoder(feature_group=GROUP).fit(dset).features_ if "every" not in f
    ]
    out = BrainMapDecoder(features=kept).fit(dset).transform(ids)
    assert np.isfinite(out.to_numpy()).all()
    # the ROI decoder has nothing to correlate a constant feature with
    with pytest.raises(DatasetError, match="same value in every experiment.*everywhere"):
        ROIAssociationDecoder(ROI, feature_group=GROUP).fit(dset).transform()


def test_empty_selection_is_an_error(brainmap, neurosynth, dset):
    for decoder in (brainmap, neurosynth):
        with pytest.raises(DatasetError, match="ids is empty"):
            decoder.transform([])
        with pytest.raises(DatasetError, match="none is left to compare"):
            decoder.transform(list(dset.ids))
        with pytest.raises(DatasetError, match="without coordinates/annotations: nope"):
            decoder.transform(["nope"])
        with pytest.raises(DatasetError, match="share experiments"):
            decoder.transform(list(dset.ids[:3]), ids2=list(dset.ids[2:]))
        with pytest.raises(DatasetError, match="more than once"):
            decoder.transform([dset.ids[0], dset.ids[0]])


def test_selection_without_labels_is_an_error(dset, ids, brainmap):
    table = dset.annotations.set_index("id")[brainmap.features_] >= 0.001
    outside = table.columns[~table.loc[ids].any() & table.any()][:3].tolist()
    assert len(outside) == 3
    with pytest.raises(DatasetError, match="none of the 6 selected experiments carries"):
        brainmap_decode(dset.coordinates, dset.annotations, ids, features=outside)


def test_empty_roi_is_an_error(dset):
    roi = nib.load(ROI)
    empty = nib.Nifti1Image(np.zeros(roi.shape, np.int8), roi.affine)
    with pytest.raises(ImageError, match="empty"):
        ROIAssociationDecoder(empty)
    far = np.zeros(roi.shape, np.int8)
    far[0, 0, 0] = 1  # a corner of the volume, far from every focus
    decoder = ROIAssociationDecoder(nib.Nifti1Image(far, roi.affine), feature_group=GROUP)
    with pytest.raises(DatasetError, match="same mean MA value"):
        decoder.fit(dset).transform()


def test_bad_options_are_errors(dset, ids):
    with pytest.raises(ValueError, match="correction must be one of"):
        BrainMapDecoder(correction="fdr_bh")
    with pytest.raises(ValueError, match="correction must be one of"):
        neurosynth_decode(dset.coordinates, dset.annotations, ids, correction="holm")
    with pytest.raises(ValueError, match="no feature is carried by min_studies=50"):
        NeurosynthDecoder(feature_group=GROUP, min_studies=50).fit(dset).transform(ids)
    with pytest.raises(ValueError, match="non-negative"):
        NeurosynthDecoder(feature_group=GROUP, min_studies=-1).fit(dset).transform(ids)
    with pytest.raises(DatasetError, match="carried by none.*min_studies|carried by none"):
        NeurosynthDecoder(feature_group=GROUP, min_studies=0).fit(dset).transform(
            ids, ids2=[i for i in dset.ids if i not in ids][:2]
        )

"""Discrete decoding: which features describe a selected set of experiments, or an ROI.

As NiMARE 0.22.1's ``nimare.decode.discrete``: :class:`BrainMapDecoder` /
:func:`brainmap_decode` (Amft et al. 2015), :class:`NeurosynthDecoder` /
:func:`neurosynth_decode` (Yarkoni et al. 2011) and :class:`ROIAssociationDecoder`. The
classes and functions here prepare arrays and build tables; the statistics of all features
at once are the host NumPy/SciPy functions of :mod:`nimare_jax.ops.discrete` (one matrix
product gives every count, where NiMARE loops over features in pandas), evaluated in float64
with no compilation, so the first selection in a process is as fast as the later ones.

Unlike NiMARE, inputs that would make a column NaN (no selected or no unselected experiment,
a feature carried by every experiment or by none) raise a
:class:`~nimare_jax.exceptions.DatasetError` naming the cause instead of returning a table
with NaNs in it.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from nimare_jax.decode.base import ID_COLUMNS, Decoder, label_matrix
from nimare_jax.decode.gclda import gclda_decode_roi
from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError
from nimare_jax.meta.cbma.base import make_kernel
from nimare_jax.meta.cbma.kernel import MKDAKernel
from nimare_jax.ops import discrete as ops
from nimare_jax.spatial import load_mask
from nimare_jax.stats import pearson

__all__ = [
    "BrainMapDecoder",
    "NeurosynthDecoder",
    "ROIAssociationDecoder",
    "brainmap_decode",
    "gclda_decode_roi",
    "neurosynth_decode",
]

LGR = logging.getLogger(__name__)

BRAINMAP_COLUMNS = [
    "pForward",
    "zForward",
    "likelihoodForward",
    "pReverse",
    "zReverse",
    "probReverse",
]
NEUROSYNTH_COLUMNS = ["pForward", "zForward", "probForward", "pReverse", "zReverse", "probReverse"]
_SMALLEST_P = np.nextafter(0.0, 1.0)  # NiMARE's floor on reported p-values


def _names(items, limit: int = 10) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:limit]) + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def _check_correction(correction) -> None:
    if correction not in ops.CORRECTIONS:
        raise ValueError(
            f"correction must be one of None, 'bh', 'by' or 'bonferroni', got {correction!r}"
        )


def _check_ids(name: str, ids, known) -> list[str]:
    """Return ``ids`` as a list of str after checking they are unique and known."""
    if ids is None or isinstance(ids, str):
        raise TypeError(f"{name} must be a list of experiment ids, got {ids!r}")
    ids = [str(i) for i in ids]
    if not ids:
        raise DatasetError(
            f"{name} is empty: no experiment to decode (an ROI that contains no focus selects "
            "no experiment)"
        )
    unique, count = np.unique(ids, return_counts=True)
    dup = unique[count > 1].tolist()
    if dup:
        raise DatasetError(f"{name} lists experiments more than once: {_names(dup)}")
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise DatasetError(
            f"{name} has experiments without coordinates/annotations: {_names(unknown)}"
        )
    return ids


class _Labels:
    """What every selection of one dataset shares: labels, foci per experiment, features.

    Parameters
    ----------
    coordinates : pandas.DataFrame
        Foci with an ``id`` column.
    annotations : pandas.DataFrame
        One row per experiment with an ``id`` column and the feature columns.
    features : list of str or None
        Feature columns; None uses all but the id columns.
    frequency_threshold : float
        Binarization threshold (``>=``).
    """

    def __init__(self, coordinates, annotations, features, frequency_threshold):
        if "id" not in annotations.columns or "id" not in coordinates.columns:
            raise DatasetError("coordinates and annotations must both have an 'id' column")
        if features is None:
            features = [c for c in annotations.columns if c not in ID_COLUMNS]
        features = list(features)
        missing = [f for f in features if f not in annotations.columns]
        if missing:
            raise DatasetError(f"features not in the annotations: {_names(missing)}")
        if not features:
            raise DatasetError("no features to decode")
        coord_ids = coordinates["id"].astype(str)
        self.features = features
        study_ids = annotations["id"].astype(str).to_numpy()
        self.position = {ident: row for row, ident in enumerate(study_ids)}
        # in float32 where that is exact (half the memory): every selection reuses it
        exact32 = len(coordinates) < ops.FLOAT32_EXACT and len(study_ids) < ops.FLOAT32_EXACT
        labels = label_matrix(annotations, features, frequency_threshold).T
        self.labels = np.ascontiguousarray(labels, np.float32 if exact32 else np.float64)
        self.foci = coord_ids.value_counts().reindex(study_ids, fill_value=0).to_numpy(float)
        self.n_foci = float(len(coordinates))
        self.in_database = set(coord_ids)
        self.frequency_threshold = frequency_threshold

    def counts(self, ids, ids2):
        """Validate a selection and count it.

        Parameters
        ----------
        ids, ids2 : list of str, and list of str or None
            Selected experiments and those to compare with (None: every other experiment
            with foci).

        Returns
        -------
        n_selected_term, n_unselected_term, n_term_foci : numpy.ndarray, (n_features,)
            See :func:`nimare_jax.ops.discrete.label_counts`.
        n_labelled, n_selected, n_unselected : float
            Labelled (experiment, feature) pairs; sizes of the two groups.
        """
        ids = _check_ids("ids", ids, self.position)
        if ids2 is None:
            ids2 = sorted(self.in_database - set(ids))
            if not ids2:
                raise DatasetError(
                    "every experiment is selected, so none is left to compare with (give ids2)"
                )
        ids2 = _check_ids("ids2", ids2, self.position)
        both = sorted(set(ids) & set(ids2))
        if both:
            raise DatasetError(f"ids and ids2 share experiments: {_names(both)}")
        selected = np.zeros(len(self.position), bool)
        selected[[self.position[i] for i in ids]] = True
        unselected = np.zeros(len(self.position), bool)
        unselected[[self.position[i] for i in ids2]] = True
        n_sel_term, n_unsel_term, n_term_foci, n_labelled = ops.label_counts(
            self.labels, selected, unselected, self.foci
        )
        return n_sel_term, n_unsel_term, n_term_foci, n_labelled, len(ids), len(ids2)


def _table(features, columns, logp_fi, z_fi, effect_fi, logp_ri, z_ri, effect_ri):
    """Assemble a decoder's output table (p from log p, floored as NiMARE does)."""
    arrays = [np.asarray(a, float) for a in (logp_fi, z_fi, effect_fi, logp_ri, z_ri, effect_ri)]
    for i in (0, 3):
        arrays[i] = np.clip(np.exp(arrays[i]), _SMALLEST_P, 1.0)
    data = np.stack(arrays, axis=1)
    bad = np.isnan(data)
    if bad.any():  # every known cause is rejected earlier; never return NaN as a result
        rows = np.flatnonzero(bad.any(axis=1))
        raise DatasetError(
            "decoding produced undefined values for features "
            f"{_names([features[r] for r in rows])} in columns "
            f"{_names([columns[c] for c in np.flatnonzero(bad.any(axis=0))])}"
        )
    return pd.DataFrame(data, index=pd.Index(features, name="Term"), columns=columns)


def _reject(mask, features, why: str) -> None:
    if np.any(mask):
        raise DatasetError(
            f"features {why}, so the comparison is undefined for them; leave them out with "
            f"features=: {_names([f for f, m in zip(features, mask, strict=True) if m])}"
        )


@fill_doc
def brainmap_decode(
    coordinates,
    annotations,
    ids,
    ids2=None,
    features=None,
    frequency_threshold=0.001,
    u=0.05,
    correction="bh",
):
    """Decode a set of experiments into features with the BrainMap method.

    Forward inference asks whether the foci of experiments carrying a feature fall in the
    selection more often than the selection's share of all foci (one-sided binomial test);
    reverse inference asks whether carrying the feature and being selected are associated
    (2x2 chi-square test). The method is described in Amft et al. (2015), "Definition and
    characterization of an extended social-affective default network", Brain Structure and
    Function 220:1031.

    Parameters
    ----------
    %(decode_tables)s
    ids : list of str
        The selected experiments (e.g. those reporting a focus in an ROI).
    %(decode_ids2)s
    %(decode_features)s
    %(frequency_threshold)s
    %(decode_u)s
    correction : {None, "bh", "by", "bonferroni"}
        Multiple-comparisons correction across features, applied to each inference
        separately: Benjamini-Hochberg or Benjamini-Yekutieli FDR, or Bonferroni.

    Returns
    -------
    pandas.DataFrame
        Index ``"Term"`` (the features), columns ``pForward``, ``zForward`` (one-tailed,
        non-negative), ``likelihoodForward``, ``pReverse``, ``zReverse`` (two-tailed, signed
        by P(selected | feature) - P(selected | no feature)) and ``probReverse``.

    Raises
    ------
    DatasetError
        If ``ids`` is empty, ``ids``/``ids2`` name unknown, repeated or shared experiments,
        nothing is left to compare with, a feature is carried by every experiment with foci
        or by none, or no selected experiment carries any feature.

    Notes
    -----
    Follows NiMARE 0.22.1's implementation, including its units: P(selected) is the number
    of selected experiments over the foci in the database, P(selected | feature) the selected
    experiments carrying the feature over their foci. Features carried by fewer than five
    selected experiments get p = 1 in both inferences.
    """
    _check_correction(correction)
    labels = _Labels(coordinates, annotations, features, frequency_threshold)
    return _brainmap(labels, ids, ids2, correction)


def _brainmap(labels: _Labels, ids, ids2, correction) -> pd.DataFrame:
    n_sel_term, n_unsel_term, n_term_foci, n_labelled, n_sel, n_unsel = labels.counts(ids, ids2)
    n_foci_labelled = float(labels.foci.sum())
    _reject(n_term_foci == 0, labels.features, "are carried by no experiment with foci")
    _reject(
        n_term_foci == n_foci_labelled,
        labels.features,
        "are carried by every experiment with foci",
    )
    if not n_sel_term.any():
        raise DatasetError(
            f"none of the {n_sel} selected experiments carries any of the "
            f"{len(labels.features)} features (at frequency_threshold="
            f"{labels.frequency_threshold})"
        )
    stats = ops.brainmap_statistics(
        n_sel_term,
        n_unsel_term,
        n_term_foci,
        n_foci_labelled,
        n_labelled,
        float(n_sel),
        float(n_unsel),
        labels.n_foci,
        correction=correction,
    )
    return _table(labels.features, BRAINMAP_COLUMNS, *stats)


def _resolve_min_studies(min_studies, n_studies) -> float:
    """``min_studies`` as a number of experiments: a count, or a proportion in (0, 1)."""
    if min_studies is None:
        return 0.0
    if isinstance(min_studies, float) and 0 < min_studies < 1:
        return min_studies * n_studies
    if min_studies < 0:
        raise ValueError(f"min_studies must be non-negative, got {min_studies}")
    return float(min_studies)


@fill_doc
def neurosynth_decode(
    coordinates,
    annotations,
    ids,
    ids2=None,
    feature_group=None,
    features=None,
    frequency_threshold=0.001,
    prior=0.5,
    u=0.05,
    correction="bh",
    min_studies=1,
):
    """Decode a set of experiments into features with Neurosynth's tests.

    The forward columns are Neurosynth's *uniformity* test: a one-way chi-square test of
    whether a feature is carried by more selected experiments than the average feature. Its
    ranking mostly reflects how common a feature is. The reverse columns are the
    *association* test: a 2x2 chi-square test of feature against selection, usually what a
    decoding wants. Yarkoni et al. (2011), "Large-scale automated synthesis of human
    functional neuroimaging data", Nature Methods 8:665.

    Parameters
    ----------
    %(decode_tables)s
    ids : list of str
        The selected experiments.
    %(decode_ids2)s
    feature_group : str or None
        Kept for NiMARE's signature; not used (select columns with ``features``).
    %(decode_features)s
    %(frequency_threshold)s
    prior : float or None
        Prior probability of a feature for the posterior columns; None uses each feature's
        frequency among the experiments of ``ids`` and ``ids2``.
    %(decode_u)s
    correction : {None, "bh", "by", "bonferroni"}
        Multiple-comparisons correction across features, for each test separately.
    min_studies : int, float or None
        Features carried by fewer experiments (of ``ids`` and ``ids2``) are dropped before
        testing, since the uniformity test's expectation is the mean over the features
        tested. An int (or a float >= 1) is a count; a float in (0, 1) a proportion of the
        experiments of ``ids`` and ``ids2``. Default 1 drops features carried by none.

    Returns
    -------
    pandas.DataFrame
        Index ``"Term"`` (the features kept), columns ``pForward``, ``zForward``,
        ``probForward``, ``pReverse``, ``zReverse``, ``probReverse``; z-values are
        two-tailed, signed by the direction of the effect.

    Raises
    ------
    DatasetError
        If ``ids`` is empty, ``ids``/``ids2`` name unknown, repeated or shared experiments,
        nothing is left to compare with, or a tested feature is carried by every experiment
        of ``ids`` and ``ids2`` or (with ``min_studies`` below 1) by none.
    ValueError
        If no feature reaches ``min_studies``, or ``min_studies`` is negative.
    """
    del feature_group, u
    _check_correction(correction)
    labels = _Labels(coordinates, annotations, features, frequency_threshold)
    return _neurosynth(labels, ids, ids2, prior, correction, min_studies)


def _neurosynth(labels: _Labels, ids, ids2, prior, correction, min_studies) -> pd.DataFrame:
    n_sel_term, n_unsel_term, _, _, n_sel, n_unsel = labels.counts(ids, ids2)
    n_studies = n_sel + n_unsel
    n_term = n_sel_term + n_unsel_term
    keep = n_term >= _resolve_min_studies(min_studies, n_studies)
    if not keep.any():
        raise ValueError(
            f"no feature is carried by min_studies={min_studies} experiments; all "
            f"{len(labels.features)} features were excluded"
        )
    if not keep.all():
        LGR.info(
            "Excluding %d of %d features below min_studies=%s.",
            int((~keep).sum()),
            len(keep),
            min_studies,
        )
    kept = [f for f, k in zip(labels.features, keep, strict=True) if k]
    _reject(n_term[keep] == 0, kept, "are carried by none of the experiments of ids and ids2")
    _reject(n_term[keep] == n_studies, kept, "are carried by every experiment of ids and ids2")
    stats = ops.neurosynth_statistics(
        n_sel_term[keep],
        n_unsel_term[keep],
        float(n_sel),
        float(n_unsel),
        prior=0.5 if prior is None else float(prior),
        correction=correction,
        empirical_prior=prior is None,
    )
    return _table(kept, NEUROSYNTH_COLUMNS, *stats)


class _CountDecoder(Decoder):
    """Base of the count-based decoders (BrainMap, Neurosynth).

    ``fit`` binarizes the features and counts foci per experiment once, for every later
    selection.
    """

    _required_inputs = ("coordinates", "annotations")

    def _fit(self, dataset) -> None:
        """Binarize the features and count foci per experiment, once for every selection."""
        self.labels_ = _Labels(
            self.inputs_["coordinates"],
            self.inputs_["annotations"],
            self.features_,
            self.frequency_threshold,
        )


@fill_doc
class BrainMapDecoder(_CountDecoder):
    """Decode a selection of experiments with the BrainMap method (Amft et al. 2015).

    Parameters
    ----------
    feature_group : str or None
        Prefix of the annotation columns to use (``"[source]_[valuetype]"``, with or without
        the trailing ``"__"``); None uses every group.
    features : list of str or None
        Features to use (with or without the group prefix when ``feature_group`` is given);
        None uses all of the group.
    %(frequency_threshold)s
    %(decode_u)s
    %(decode_correction)s

    Attributes
    ----------
    %(count_decoder_attributes)s

    See Also
    --------
    brainmap_decode : the computation, on tables.
    """

    def __init__(
        self, feature_group=None, features=None, frequency_threshold=0.001, u=0.05, correction="bh"
    ):
        _check_correction(correction)
        self.feature_group = feature_group
        self.features = features
        self.frequency_threshold = frequency_threshold
        self.u = u
        self.correction = correction

    @fill_doc
    def transform(self, ids, ids2=None) -> pd.DataFrame:
        """Decode a selection of the fitted experiments.

        Parameters
        ----------
        ids : list of str
            The selected experiments (e.g. ``dataset.get_studies_by_mask(roi)``).
        %(decode_transform_ids2)s

        Returns
        -------
        pandas.DataFrame
            See :func:`brainmap_decode`.
        """
        _check_correction(self.correction)
        return _brainmap(self.labels_, ids, ids2, self.correction)


@fill_doc
class NeurosynthDecoder(_CountDecoder):
    """Decode a selection of experiments with Neurosynth's tests (Yarkoni et al. 2011).

    Parameters
    ----------
    feature_group : str or None
        Prefix of the annotation columns to use; None uses every group.
    features : list of str or None
        Features to use (with or without the group prefix when ``feature_group`` is given).
    %(frequency_threshold)s
    prior : float or None
        Prior probability of a feature; None uses each feature's frequency.
    %(decode_u)s
    %(decode_correction)s
    min_studies : int, float or None
        Minimum number (int) or proportion (float in (0, 1)) of experiments carrying a
        feature for it to be tested; see :func:`neurosynth_decode`.

    Attributes
    ----------
    %(count_decoder_attributes)s

    See Also
    --------
    neurosynth_decode : the computation, on tables.
    """

    def __init__(
        self,
        feature_group=None,
        features=None,
        frequency_threshold=0.001,
        prior=0.5,
        u=0.05,
        correction="bh",
        min_studies=1,
    ):
        _check_correction(correction)
        self.feature_group = feature_group
        self.features = features
        self.frequency_threshold = frequency_threshold
        self.prior = prior
        self.u = u
        self.correction = correction
        self.min_studies = min_studies

    @fill_doc
    def transform(self, ids, ids2=None) -> pd.DataFrame:
        """Decode a selection of the fitted experiments.

        Parameters
        ----------
        ids : list of str
            The selected experiments.
        %(decode_transform_ids2)s

        Returns
        -------
        pandas.DataFrame
            See :func:`neurosynth_decode`.
        """
        _check_correction(self.correction)
        return _neurosynth(self.labels_, ids, ids2, self.prior, self.correction, self.min_studies)


class ROIAssociationDecoder(Decoder):
    """Correlate each feature with how strongly the experiments activate an ROI.

    Every experiment's modelled-activation (MA) map is averaged over the ROI's voxels; the
    decoder reports, per feature, the Pearson correlation across experiments between that
    average and the feature's annotation values (Neurosynth's ROI association, Yarkoni et
    al. 2011).

    Parameters
    ----------
    masker : str, pathlib.Path, nibabel.Nifti1Image or nilearn NiftiMasker
        The ROI (voxels > 0).
    kernel_transformer : KernelTransformer class or instance
        Kernel of the MA maps; default :class:`~nimare_jax.meta.kernel.MKDAKernel`.
    feature_group : str or None
        Prefix of the annotation columns to use; None uses every group.
    features : list of str or None
        Features to use; only those with a value > 0 in some experiment are kept.
    **kwargs
        ``kernel__<name>=value`` arguments of the kernel class (e.g. ``kernel__r=6``).

    Attributes
    ----------
    roi_values_ : numpy.ndarray, shape (n_experiments,)
        After ``fit``: mean MA value over the ROI, in the order of ``inputs_["id"]``.
    """

    _required_inputs = ("coordinates", "annotations")

    def __init__(
        self, masker, kernel_transformer=MKDAKernel, feature_group=None, features=None, **kwargs
    ):
        self.masker = load_mask(masker)  # an image, a path or a (fitted) NiftiMasker
        self.kernel_transformer = make_kernel(kernel_transformer, MKDAKernel, kwargs)
        self.feature_group = feature_group
        self.features = features
        self.frequency_threshold = 0

    def _preprocess_input(self, dataset) -> None:
        super()._preprocess_input(dataset)
        positive = label_matrix(self.inputs_["annotations"], self.features_, _SMALLEST_P)
        self.features_ = [f for f, p in zip(self.features_, positive.any(0), strict=True) if p]
        if not self.features_:
            raise DatasetError(f"{dataset.origin}: no feature has a value > 0 in any experiment")

    def _fit(self, dataset) -> None:
        roi_dset = dataset.slice(self.inputs_["id"]).with_mask(self.masker)
        values = np.asarray(
            self.kernel_transformer.transform(roi_dset, return_type="array"), np.float64
        )
        self.roi_values_ = values.mean(axis=1)

    def transform(self) -> pd.DataFrame:
        """Correlate the features with the experiments' mean MA value in the ROI.

        Returns
        -------
        pandas.DataFrame
            Index ``"feature"``, column ``"r"`` (Pearson correlation in float64).

        Raises
        ------
        DatasetError
            If no experiment activates the ROI (the MA average is 0 everywhere, so no
            correlation is defined) or a feature has the same value in every experiment.
        """
        if np.ptp(self.roi_values_) == 0:
            raise DatasetError(
                "every experiment has the same mean MA value in the ROI "
                f"({self.roi_values_[0]:g}), so no correlation is defined (is the ROI far "
                "from every focus?)"
            )
        values = self.inputs_["annotations"][self.features_].to_numpy(np.float64)
        _reject(np.isnan(values).any(axis=0), self.features_, "have missing values")
        _reject(
            np.ptp(values, axis=0) == 0, self.features_, "have the same value in every experiment"
        )
        r = pearson(self.roi_values_, values.T)
        return pd.DataFrame({"r": r}, index=pd.Index(self.features_, name="feature"))

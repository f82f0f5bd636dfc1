"""The base class of the decoders: input collection and feature selection.

As NiMARE 0.22.1's ``nimare.decode.base.Decoder``: ``fit(dataset)`` collects the inputs a
decoder declares, selects the annotation columns to decode (``feature_group``,
``features``) keeping those with at least one experiment at or above
``frequency_threshold``, then calls the decoder's ``_fit``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError
from nimare_jax.io.images import get_image_paths, image_types

LGR = logging.getLogger(__name__)

ID_COLUMNS = ("id", "study_id", "contrast_id")


def label_matrix(annotations: pd.DataFrame, features, threshold: float) -> np.ndarray:
    """Return the binary experiment x feature matrix ``value >= threshold``.

    Parameters
    ----------
    annotations : pandas.DataFrame
        One row per experiment, one column per feature.
    features : list of str
        Columns to binarize.
    threshold : float
        Minimum value for an experiment to carry a feature (NiMARE's ``>=``).

    Returns
    -------
    numpy.ndarray of bool, shape (n_experiments, n_features)
        True where the experiment has the feature. Non-numeric or missing values count
        as absent.
    """
    values = annotations[list(features)]
    if not all(pd.api.types.is_numeric_dtype(t) for t in values.dtypes):
        values = values.apply(pd.to_numeric, errors="coerce")
    with np.errstate(invalid="ignore"):
        return values.to_numpy(np.float64) >= threshold  # NaN compares False


def select_features(columns, feature_group=None, features=None, origin="dataset") -> list[str]:
    """Choose annotation columns by feature group and feature names, as NiMARE's decoders.

    Parameters
    ----------
    columns : iterable of str
        Columns of ``dataset.annotations`` (the id columns are ignored).
    feature_group : str or None
        Prefix of the columns to use (``"Neurosynth_TFIDF"`` selects the columns
        ``"Neurosynth_TFIDF__*"``); None uses every column.
    features : list of str or None
        Columns to use; with ``feature_group`` they may be given with or without the
        prefix. None uses every column of the group.
    origin : str
        Name of the dataset, for error messages.

    Returns
    -------
    list of str
        The selected columns, in the annotations' order (or in the order of ``features``
        without a group).

    Raises
    ------
    DatasetError
        If no column belongs to ``feature_group`` or a requested feature is absent.
    """
    columns = [c for c in columns if c not in ID_COLUMNS]
    if feature_group is not None:
        prefix = feature_group if feature_group.endswith("__") else f"{feature_group}__"
        in_group = [c for c in columns if c.startswith(prefix)]
        if not in_group:
            groups = sorted({c.split("__")[0] for c in columns if "__" in c})
            raise DatasetError(
                f"{origin}: no annotation column belongs to feature_group "
                f"{feature_group!r} (groups present: {', '.join(groups) or 'none'})"
            )
        if features is None:
            return in_group
        requested = set(features)
        selected = [c for c in in_group if c in requested or c[len(prefix) :] in requested]
        found = set(selected) | {c[len(prefix) :] for c in selected}
        missing = [f for f in features if f not in found]
        if missing:
            raise DatasetError(
                f"{origin}: features not in feature_group {feature_group!r}: {missing[:10]}"
            )
        return selected
    if features is None:
        return columns
    selected = [f for f in features if f not in ID_COLUMNS]
    missing = [f for f in selected if f not in columns]
    if missing:
        raise DatasetError(f"{origin}: features not in the dataset's annotations: {missing[:10]}")
    return selected


class Decoder:
    """Base class of the decoders of :mod:`nimare_jax.decode`.

    Subclasses set ``feature_group``, ``features`` and ``frequency_threshold`` in their
    ``__init__``, list what they need in ``_required_inputs`` and implement ``_fit``.

    ``_required_inputs`` is a tuple of entries ``"coordinates"``, ``"annotations"`` or
    ``("images", image_type)``. A subclass whose requirement depends on its parameters
    assigns the tuple to the *instance* in ``__init__`` (never mutates a class-level
    container, so two instances cannot interfere).

    Attributes
    ----------
    inputs_ : dict
        After ``fit``: ``"id"`` (the experiments with every required input, in dataset
        order), ``"annotations"`` (their rows of ``dataset.annotations``), and
        ``"coordinates"`` / ``"images"`` when required (foci table; list of image paths).
    features_ : list of str
        After ``fit``: the annotation columns decoded.
    """

    _required_inputs: tuple = ("coordinates", "annotations")

    feature_group: str | None
    features: list | None
    frequency_threshold: float

    def fit(self, dataset: Dataset, drop_invalid: bool = True):
        """Select features and fit the decoder to a dataset.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset
            Experiments with annotations (and what the decoder needs besides).
        drop_invalid : bool
            Leave out experiments lacking a required input (default). If False, such an
            experiment raises :class:`~nimare_jax.exceptions.DatasetError`.

        Returns
        -------
        Decoder
            This decoder, fitted. (NiMARE 0.22.1 returns None.)

        Raises
        ------
        DatasetError
            If no experiment has the required inputs, the feature group or a requested
            feature does not exist, or no feature is left after the frequency threshold.
        """
        if not isinstance(dataset, Dataset):
            raise TypeError(f"{type(self).__name__}.fit expects a Dataset, got {dataset!r}")
        self._collect_inputs(dataset, drop_invalid=drop_invalid)
        self._preprocess_input(dataset)
        self._fit(dataset)
        return self

    def _fit(self, dataset: Dataset) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ inputs
    def _collect_inputs(self, dataset: Dataset, drop_invalid: bool = True) -> None:
        """Fill ``inputs_`` with the experiments that have every required input."""
        ids = [str(i) for i in dataset.ids]
        valid = np.ones(len(ids), bool)
        reasons = []
        paths = None
        for need in self._required_inputs:
            if need == "coordinates":
                has = np.isin(ids, dataset.coordinates["id"].astype(str).unique())
                reasons.append((has, "no coordinates"))
            elif need == "annotations":
                labels = [c for c in dataset.annotations.columns if c not in ID_COLUMNS]
                if not labels:
                    raise DatasetError(f"{dataset.origin}: the dataset has no annotations")
                has = np.isin(ids, dataset.annotations["id"].astype(str))
                reasons.append((has, "no annotations"))
            else:
                _, image_type = need
                paths = get_image_paths(dataset, image_type, ids)
                has = np.array([p is not None for p in paths], bool)
                if not has.any():
                    raise DatasetError(
                        f"{dataset.origin}: no experiment has a {image_type!r} image "
                        f"(available image types: {', '.join(image_types(dataset)) or 'none'})"
                    )
                reasons.append((has, f"no {image_type!r} image"))
        for has, why in reasons:
            if not drop_invalid and not has.all():
                bad = [i for i, h in zip(ids, has, strict=True) if not h]
                raise DatasetError(
                    f"{dataset.origin}: {len(bad)} experiment(s) have {why}: "
                    + ", ".join(repr(b) for b in bad[:10])
                    + (" ..." if len(bad) > 10 else "")
                )
            valid &= has
        if not valid.any():
            raise DatasetError(
                f"{dataset.origin}: no experiment has every input {type(self).__name__} "
                f"needs ({', '.join(str(n) for n in self._required_inputs)})"
            )
        kept = [i for i, v in zip(ids, valid, strict=True) if v]
        table = dataset.annotations.assign(id=dataset.annotations["id"].astype(str))
        inputs = {"id": kept, "annotations": table.set_index("id").loc[kept].reset_index()}
        if "coordinates" in self._required_inputs:
            coords = dataset.coordinates
            inputs["coordinates"] = coords[coords["id"].astype(str).isin(kept)]
        if paths is not None:
            inputs["images"] = [p for p, v in zip(paths, valid, strict=True) if v]
        self.inputs_ = inputs

    # ------------------------------------------------------------------ features
    def _preprocess_input(self, dataset: Dataset) -> None:
        """Choose ``features_``: group/feature selection, then the frequency threshold."""
        annotations = self.inputs_["annotations"]
        features = select_features(
            annotations.columns, self.feature_group, self.features, dataset.origin
        )
        n_requested = len(features)
        counts = label_matrix(annotations, features, self.frequency_threshold).sum(0)
        features = [f for f, n in zip(features, counts, strict=True) if n > 0]
        if not features:
            raise DatasetError(
                f"{dataset.origin}: none of the {n_requested} feature(s) reaches "
                f"frequency_threshold={self.frequency_threshold} in any experiment"
            )
        if len(features) < n_requested:
            LGR.info("Retaining %d/%d features.", len(features), n_requested)
        self.features_ = features

    def _drop_features_in_every_experiment(self, dataset: Dataset) -> None:
        """Drop features carried by every experiment (nothing left to compare them with).

        Used by decoders that contrast the experiments with a feature against those without
        it (NiMARE's pairwise estimators in ``CorrelationDecoder``).
        """
        annotations = self.inputs_["annotations"]
        everywhere = label_matrix(annotations, self.features_, self.frequency_threshold).all(0)
        skipped = [f for f, e in zip(self.features_, everywhere, strict=True) if e]
        if skipped:
            LGR.info(
                "Skipping %d features present in every experiment: %s",
                len(skipped),
                ", ".join(skipped),
            )
        kept = [f for f, e in zip(self.features_, everywhere, strict=True) if not e]
        if not kept:
            raise DatasetError(
                f"{dataset.origin}: every selected feature is present in all "
                f"{len(self.inputs_['id'])} experiments, so no experiment is left to compare "
                f"with: {', '.join(skipped[:10])}"
            )
        self.features_ = kept

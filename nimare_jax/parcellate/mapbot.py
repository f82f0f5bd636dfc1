"""Meta-analytic parcellation based on text (MAPBOT).

Yuan et al. (2017) NeuroImage 157:716. Each voxel of the target region is described by the
words of the literature reporting activation near it: the mean term weights (e.g. TF-IDF
of the abstracts, the ``Neurosynth_TFIDF`` annotations) of the experiments with a focus
within ``r`` mm of the voxel, or of its ``n`` nearest experiments (the same selection as
:class:`~nimare_jax.parcellate.cbp.CoordCBP`:
:func:`~nimare_jax.parcellate.cbp.select_experiments`).
The voxel x term matrix is clustered as Xu et al. (2003) cluster documents: normalized-cut
weighting, non-negative matrix factorisation (scikit-learn's ``NMF``) with one component per
parcel, each voxel in the component of its largest loading, and each parcel described by
its component's term weights (:mod:`nimare_jax.ops.mapbot`).

The criteria for choosing k are those of the other parcellations
(:mod:`nimare_jax.parcellate.base`), with cosine distances between the voxels' weighted
term profiles for the silhouette and the split halves' own term profiles for the
stability criteria.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics.pairwise import cosine_distances

from nimare_jax.decode.base import ID_COLUMNS, select_features
from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError
from nimare_jax.ops import mapbot as ops
from nimare_jax.parcellate.base import ParcellationResult, Parcellator, RegionOfInterest
from nimare_jax.parcellate.cbp import check_selection, select_experiments

__all__ = ["MAPBOT", "MAPBOTResult", "term_weights"]

LGR = logging.getLogger(__name__)


def term_weights(dataset, feature_group=None, features=None) -> tuple[list[str], np.ndarray]:
    """Return the experiments' term weights: annotation columns as a non-negative matrix.

    Parameters
    ----------
    dataset : nimare_jax.dataset.Dataset
        Experiments with annotations.
    feature_group : str or None
        Prefix of the annotation columns to use (e.g. ``"Neurosynth_TFIDF"``); None uses
        every annotation column.
    features : list of str or None
        Columns to use (with or without the group prefix); None uses the whole group.

    Returns
    -------
    terms : list of str
        The selected columns.
    weights : numpy.ndarray of float64, shape (n_experiments, n_terms)
        Their values, experiments in ``dataset.ids`` order; a missing value (or an
        experiment without an annotation row) counts as 0, the term being absent.

    Raises
    ------
    DatasetError
        If the dataset has no annotations, the group or a feature is absent, a value is
        not a number or is negative, or no experiment carries any selected term.
    """
    annotations = dataset.annotations
    if "id" not in annotations.columns or set(annotations.columns) <= set(ID_COLUMNS):
        raise DatasetError(f"{dataset.origin}: the dataset has no annotations (term weights)")
    terms = select_features(annotations.columns, feature_group, features, dataset.origin)
    table = annotations.assign(id=annotations["id"].astype(str)).drop_duplicates("id")
    table = table.set_index("id").reindex([str(i) for i in dataset.ids])[terms]
    numeric = table.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & table.notna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise DatasetError(
            f"{dataset.origin}: annotation {terms[col]!r} of experiment "
            f"{table.index[row]!r} is not a number: {table.iloc[row, col]!r}"
        )
    weights = numeric.fillna(0.0).to_numpy(np.float64)
    if (weights < 0).any():
        row, col = np.argwhere(weights < 0)[0]
        raise DatasetError(
            f"{dataset.origin}: MAPBOT needs non-negative term weights, but annotation "
            f"{terms[col]!r} of experiment {table.index[row]!r} is {weights[row, col]:g}"
        )
    if not weights.any():
        raise DatasetError(
            f"{dataset.origin}: every selected term weight is 0 in every experiment "
            f"({len(terms)} term(s))"
        )
    return terms, weights


@dataclass
class MAPBOTResult(ParcellationResult):
    """A :class:`~nimare_jax.parcellate.base.ParcellationResult` with each parcel's terms.

    The other attributes and methods are those of ``ParcellationResult``; :meth:`save`
    writes the term tables too, as ``{prefix}_k-{k}_terms.tsv`` (terms x parcels).

    Attributes
    ----------
    terms : dict of int to pandas.DataFrame
        For each k, one row per term (index: the annotation column) and one column per
        parcel label (1..k): the parcel's NMF component, scaled to unit Euclidean norm.
    """

    terms: dict = field(default_factory=dict, repr=False)

    def top_terms(self, n_clusters: int, n_top: int = 10) -> pd.DataFrame:
        """Return the highest-weighted terms of every parcel of one solution.

        Parameters
        ----------
        n_clusters : int
            One of the fitted numbers of clusters.
        n_top : int
            Terms per parcel.

        Returns
        -------
        pandas.DataFrame
            One row per parcel (index: label) and term rank (columns ``term_1`` ..
            ``term_{n_top}``), the terms in decreasing weight (ties: table order).
        """
        if n_clusters not in self.terms:
            raise KeyError(f"no solution with {n_clusters} clusters; fitted: {sorted(self.terms)}")
        table = self.terms[n_clusters]
        n_top = min(int(n_top), len(table))
        rows = {}
        for label in table.columns:
            order = np.argsort(-table[label].to_numpy(), kind="stable")[:n_top]
            rows[label] = list(table.index[order])
        return pd.DataFrame.from_dict(
            rows, orient="index", columns=[f"term_{i + 1}" for i in range(n_top)]
        ).rename_axis("parcel")

    def _files(self):
        yield from super()._files()
        for k in sorted(self.terms):
            table = self.terms[k]
            yield (
                f"k-{k}_terms.tsv",
                functools.partial(table.to_csv, sep="\t", float_format="%.6g", index_label="term"),
            )


@fill_doc
class MAPBOT(Parcellator):
    """Meta-analytic parcellation based on text (Yuan et al., 2017).

    Parameters
    ----------
    %(parcellation_region)s
    %(parcellation_selection)s
    feature_group : str or None
        Annotation columns used as terms (e.g. ``"Neurosynth_TFIDF"``); None uses every
        annotation column.
    features : list of str or None
        Terms to use within the group (with or without its prefix); None uses all.
    n_splits : int
        See :class:`~nimare_jax.parcellate.base.Parcellator`.
    max_iter : int
        Iterations of scikit-learn's NMF solver.
    random_state : int
        Seed of the splits and of the NMF.

    Notes
    -----
    Every target voxel must select at least one experiment with a non-zero term weight
    (otherwise it has no words to be clustered by): an error names how many do not and
    one of them. In a split half such a voxel has a zero profile; it is assigned to the
    first parcel (NMF gives it no loading), which the stability criteria count against
    the solution.

    The NMF is initialised by NNDSVDa (deterministic given the data), so a solution is
    reproducible; components that win no voxel leave the solution with fewer parcels (a
    warning says so).
    """

    _citations = ("Yuan2017", "Xu2003", "Clos2013", "Chase2020")

    def __init__(
        self,
        target_mask,
        n_clusters,
        r=None,
        n=None,
        feature_group=None,
        features=None,
        n_splits: int = 2,
        max_iter: int = 1000,
        random_state: int = 0,
    ):
        super().__init__(target_mask, n_clusters, n_splits=n_splits, random_state=random_state)
        self.r, self.n = check_selection(r, n)
        if int(max_iter) != max_iter or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
        self.feature_group = feature_group
        self.features = None if features is None else list(features)
        self.max_iter = int(max_iter)

    def fit(self, dataset) -> MAPBOTResult:
        """Parcellate the target region by the terms of the experiments near each voxel.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset or nimare_jax.studyset.Studyset
            Experiments with coordinates and annotations.

        Returns
        -------
        MAPBOTResult
            Labels, criteria, term tables per number of parcels, and the methods text.
        """
        self.components_ = {}
        result = super().fit(dataset)
        terms = {}
        for k in self.n_clusters:
            found = np.unique(result.labels[k])
            if found.size < k:
                warnings.warn(
                    f"MAPBOT with {k} parcels: {k - found.size} NMF component(s) won no "
                    f"voxel, so the solution has {found.size} parcels",
                    UserWarning,
                    stacklevel=2,
                )
            terms[k] = pd.DataFrame(
                self.components_[k][found - 1].T, index=self.terms_, columns=list(found)
            ).rename_axis("term")
        return MAPBOTResult(
            labels=result.labels,
            metrics=result.metrics,
            roi=result.roi,
            description=result.description,
            citations=result.citations,
            similarity=result.similarity,
            terms=terms,
        )

    # ------------------------------------------------------------------ Parcellator hooks
    def _profiles(self, dataset, roi: RegionOfInterest, groups) -> list[np.ndarray]:
        self.terms_, weights = term_weights(dataset, self.feature_group, self.features)
        selection = select_experiments(dataset, roi.xyz, r=self.r, n=self.n)
        self.selection_ = selection
        has_words = (selection & weights.any(1)[None, :]).any(1)
        if not has_words.all():
            x, y, z = roi.xyz[np.flatnonzero(~has_words)[0]]
            how = f"within r={self.r:g} mm" if self.r is not None else "among the nearest"
            raise DatasetError(
                f"{dataset.origin}: {int((~has_words).sum())} of the {len(roi)} target "
                f"voxels have no experiment {how} with a non-zero term weight (e.g. at "
                f"({x:g}, {y:g}, {z:g}) mm); use a larger r, or n"
            )
        profiles = []
        for g in groups:
            freq, _ = ops.term_profiles(selection & g[None, :], weights)
            # float32 (as computed): scikit-learn's NMF keeps it, ~1.5x faster than float64
            profiles.append(np.asarray(ops.normalized_cut_weighting(freq)))
        self.profiles_ = profiles[0]
        return profiles

    def _factorize(self, features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels 0..k-1 (by first appearance) and each label's unit term vector."""
        model = NMF(
            n_components=k, init="nndsvda", max_iter=self.max_iter, random_state=self.random_state
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            loadings = model.fit_transform(features)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            LGR.warning(
                "NMF with %d components did not converge in %d iterations", k, self.max_iter
            )
        labels, _, unit = ops.assign_parcels(loadings, model.components_)
        labels, unit = np.asarray(labels), np.asarray(unit, np.float64)
        _, first = np.unique(labels, return_index=True)
        order = np.unique(labels)[np.argsort(first)]  # component of label 0, 1, ...
        relabel = np.empty(k, np.int32)
        relabel[order] = np.arange(order.size)
        empty = np.setdiff1d(np.arange(k), order)
        relabel[empty] = np.arange(order.size, k)
        components = np.empty_like(unit)
        components[relabel] = unit
        return relabel[labels], components

    def _cluster(self, features: np.ndarray, k: int) -> np.ndarray:
        labels, components = self._factorize(features, k)
        if features is self.profiles_:  # the full-data solution: keep its terms
            self.components_[k] = components
        return labels

    def _distance(self, features: np.ndarray) -> np.ndarray:
        distance = np.clip(cosine_distances(features), 0.0, 2.0)
        np.fill_diagonal(distance, 0.0)
        return distance

    def _description(self, roi: RegionOfInterest) -> str:
        select = (
            f"with a focus within {self.r:g} mm of the voxel"
            if self.r is not None
            else f"nearest to the voxel ({self.n} experiments, by their nearest focus)"
        )
        ks = ", ".join(str(k) for k in self.n_clusters)
        group = f" of the {self.feature_group!r} group" if self.feature_group else ""
        return (
            "A meta-analytic parcellation based on text (MAPBOT) [Yuan2017] was performed "
            f"with nimare_jax on {len(self.dataset_.ids)} experiments. Each of the "
            f"{len(roi)} voxels of the target region was described by the mean weights of "
            f"{len(self.terms_)} terms{group} over the experiments {select}. The voxel x "
            "term matrix was weighted by the normalized-cut scheme and factorised by "
            "non-negative matrix factorization (scikit-learn, NNDSVDa initialisation) into "
            f"{ks} components; each voxel was assigned to the component with its largest "
            "loading, each component's terms describing its parcel [Xu2003]. "
            + self._criteria_text(
                "cosine distances between the voxels' weighted term profiles", "parcel"
            )
        )

"""Shared machinery of the meta-analytic parcellations: ROI, resampling, clustering, criteria.

A parcellation method (:class:`~nimare_jax.parcellate.cbp.CoordCBP`,
:class:`~nimare_jax.parcellate.mamp.MAMP`, ...) subclasses :class:`Parcellator` and
implements one method, :meth:`Parcellator._profiles`: for each experiment group (all
experiments, then the two halves of each random split) it returns one feature matrix per
ROI voxel (CBP and MAMP: the voxel x voxel correlation of the voxels' maps or study
series). The base class clusters it for every requested number of clusters and scores each
solution with the criteria of the CBP literature (Clos et al. 2013; Chase et al. 2020):

* ``silhouette``: mean silhouette of the full-data solution, with ``1 - r`` distances;
* ``vi``: variation of information between the solutions of the two halves of random
  splits of the experiments (mean over splits; lower is more stable);
* ``misclassified_pct``: percentage of voxels assigned to different clusters by the two
  halves, after matching the halves' clusters one to one (mean over splits);
* ``hierarchy_deviation_pct``: percentage of voxels of the k-cluster solution not in the
  (k-1)-cluster parent that holds most of their cluster (0 for k = 2).

Methods that are not correlation-based (MAPBOT) override :meth:`Parcellator._cluster` and
:meth:`Parcellator._distance` as well.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from nilearn.image import resample_to_img
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from sklearn.metrics.cluster import contingency_matrix
from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

from nimare_jax import references
from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError, ImageError
from nimare_jax.meta.cbma.kernel import drop_experiments_without_foci
from nimare_jax.results import write_files
from nimare_jax.spatial import load_image_3d, load_mask, vox2mm
from nimare_jax.studyset import as_dataset

__all__ = [
    "METRIC_COLUMNS",
    "ParcellationResult",
    "Parcellator",
    "RegionOfInterest",
    "hierarchy_deviation",
    "misclassified",
    "target_voxels",
    "variation_of_information",
]

#: k-means runs on at most this many principal components of the similarity profiles.
KMEANS_COMPONENTS = 64
#: Columns of :attr:`ParcellationResult.metrics` (one row per number of clusters).
METRIC_COLUMNS = ("silhouette", "vi", "misclassified_pct", "hierarchy_deviation_pct")


@dataclass(frozen=True)
class RegionOfInterest:
    """The voxels of a target mask on a dataset's grid.

    Attributes
    ----------
    ijk : numpy.ndarray of int, shape (n_roi, 3)
        Voxel indices, in C order of the volume.
    xyz : numpy.ndarray of float, shape (n_roi, 3)
        Voxel centres in mm.
    position : numpy.ndarray of int, shape (n_roi,)
        Position of each voxel among the dataset mask's voxels (its column in masked maps).
    mask_img : nibabel.Nifti1Image
        The dataset's mask.
    """

    ijk: np.ndarray
    xyz: np.ndarray
    position: np.ndarray
    mask_img: nib.Nifti1Image = field(repr=False)

    def __len__(self) -> int:
        return int(self.ijk.shape[0])


def target_voxels(target_mask, dataset) -> RegionOfInterest:
    """Return the voxels of ``target_mask`` inside the dataset's mask.

    Parameters
    ----------
    target_mask : str, os.PathLike or nibabel.Nifti1Image
        ROI image; non-zero voxels belong to it. An image on another grid is resampled to
        the dataset mask's grid (nearest neighbour).
    dataset : nimare_jax.dataset.Dataset
        Supplies the mask.

    Returns
    -------
    RegionOfInterest
        Its voxels.

    Raises
    ------
    ImageError
        If the image is not 3-D or no ROI voxel lies inside the dataset's mask.
    """
    what = f"target mask {target_mask}" if isinstance(target_mask, str | Path) else "target mask"
    img = load_image_3d(target_mask, what)
    mask_img = load_mask(dataset.masker)
    if img.shape != mask_img.shape or not np.allclose(img.affine, mask_img.affine):
        img = resample_to_img(
            img, mask_img, interpolation="nearest", force_resample=True, copy_header=True
        )
    roi = np.asarray(img.dataobj) != 0
    brain = np.asanyarray(mask_img.dataobj) > 0
    if not roi.any():
        raise ImageError(f"{what}: the image has no non-zero voxel")
    inside = roi & brain
    if not inside.any():
        raise ImageError(
            f"{what}: none of its {int(roi.sum())} voxels lies inside the dataset's mask"
        )
    ijk = np.argwhere(inside)
    order = np.cumsum(brain.reshape(-1)) - 1
    position = order[np.flatnonzero(inside.reshape(-1))]
    return RegionOfInterest(
        ijk=ijk, xyz=vox2mm(ijk, mask_img.affine), position=position, mask_img=mask_img
    )


def variation_of_information(a, b) -> float:
    """Variation of information between two partitions (natural log; Meila 2007).

    Parameters
    ----------
    a, b : array-like of int, shape (n,)
        Cluster labels.

    Returns
    -------
    float
        ``H(a) + H(b) - 2 I(a, b)``, 0 for identical partitions.
    """
    joint = contingency_matrix(a, b).astype(np.float64)
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    h_a = -np.sum(pa[pa > 0] * np.log(pa[pa > 0]))
    h_b = -np.sum(pb[pb > 0] * np.log(pb[pb > 0]))
    mutual = np.sum(joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz]))
    return float(max(h_a + h_b - 2.0 * mutual, 0.0))


def misclassified(a, b) -> float:
    """Percentage of items labelled differently by two partitions, clusters matched 1:1.

    Parameters
    ----------
    a, b : array-like of int, shape (n,)
        Cluster labels (any integers).

    Returns
    -------
    float
        ``100 * (1 - best matching agreement / n)``, the matching maximising agreement
        (Hungarian algorithm).
    """
    joint = contingency_matrix(a, b)
    rows, cols = linear_sum_assignment(-joint)
    return float(100.0 * (1.0 - joint[rows, cols].sum() / joint.sum()))


def hierarchy_deviation(child, parent) -> float:
    """Percentage of items outside the dominant parent cluster of their own cluster.

    Parameters
    ----------
    child : array-like of int, shape (n,)
        Labels of the finer (k-cluster) solution.
    parent : array-like of int, shape (n,)
        Labels of the coarser (k-1-cluster) solution.

    Returns
    -------
    float
        ``100 * (n - sum over child clusters of their largest parent overlap) / n``; 0 when
        the solutions are perfectly nested.
    """
    joint = contingency_matrix(child, parent)
    return float(100.0 * (1.0 - joint.max(1).sum() / joint.sum()))


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels 0..k-1 numbered by first appearance (so equal partitions get equal labels)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse].astype(np.int32)


@dataclass
class ParcellationResult:
    """Labels per number of clusters, the selection criteria, and the methods text.

    Attributes
    ----------
    labels : dict of int to numpy.ndarray
        For each k, the cluster (1..k) of every ROI voxel, in :attr:`roi` order.
    metrics : pandas.DataFrame
        One row per k (index ``n_clusters``), columns :data:`METRIC_COLUMNS`.
    roi : RegionOfInterest
        The parcellated voxels.
    description : str
        Methods paragraph with ``[Key]`` citations.
    citations : tuple of str
        Further BibTeX keys cited.
    similarity : numpy.ndarray or None
        The full-data voxel x voxel similarity the labels were computed from.
    """

    labels: dict
    metrics: pd.DataFrame
    roi: RegionOfInterest
    description: str = ""
    citations: tuple = ()
    similarity: np.ndarray | None = field(default=None, repr=False)

    def get_label_image(self, n_clusters: int) -> nib.Nifti1Image:
        """Return the k-cluster solution as a label image (0 outside the ROI).

        Parameters
        ----------
        n_clusters : int
            One of the fitted numbers of clusters.

        Returns
        -------
        nibabel.Nifti1Image
            int16 labels 1..k on the dataset mask's grid.
        """
        if n_clusters not in self.labels:
            raise KeyError(
                f"no solution with {n_clusters} clusters; fitted: {sorted(self.labels)}"
            )
        mask_img = self.roi.mask_img
        data = np.zeros(mask_img.shape, np.int16)
        data[tuple(self.roi.ijk.T)] = self.labels[n_clusters]
        return nib.Nifti1Image(data, mask_img.affine)

    def boilerplate(self) -> str:
        """Return the methods paragraph with author-year citations and its references."""
        return references.format_boilerplate(self.description, self.citations)

    def bibtex(self) -> str:
        """Return the BibTeX entries cited by the description and ``citations``."""
        return references.bibtex(references.cited_keys(self.description, self.citations))

    def plot_metrics(self):
        """Plot the criteria against the number of clusters.

        Returns
        -------
        matplotlib.figure.Figure
            Four panels, one per criterion.
        """
        titles = {
            "silhouette": "silhouette (higher is better)",
            "vi": "VI between split halves",
            "misclassified_pct": "misclassified voxels (%)",
            "hierarchy_deviation_pct": "deviation from hierarchy (%)",
        }
        fig = Figure(figsize=(12, 2.8), layout="constrained")
        axes = fig.subplots(1, 4)
        ks = self.metrics.index.to_numpy()
        for ax, column in zip(axes, METRIC_COLUMNS, strict=True):
            ax.plot(ks, self.metrics[column].to_numpy(), "o-", color="C0")
            ax.set_title(titles[column], fontsize=9)
            ax.set_xlabel("number of clusters")
            ax.set_xticks(ks)
        return fig

    @fill_doc
    def save(self, output_dir=".", prefix: str = "") -> list[Path]:
        """Write the label images, metrics table, figure, boilerplate and BibTeX.

        Files: ``{prefix}_k-{k}_labels.nii.gz`` per k, ``{prefix}_metrics.tsv``,
        ``{prefix}_metrics.png``, ``{prefix}_boilerplate.txt``, ``{prefix}_references.bib``
        (without the ``{prefix}_`` part when the prefix is empty), then any files of a
        subclass (:class:`~nimare_jax.parcellate.mapbot.MAPBOTResult`'s term tables).

        Parameters
        ----------
        %(output_dir)s
        %(prefix)s

        Returns
        -------
        list of pathlib.Path
            Written files.
        """
        return write_files(output_dir, prefix, self._files())

    def _files(self):
        """Yield the ``(name, write)`` pairs of :meth:`save` (see ``write_files``)."""
        for k in sorted(self.labels):
            yield f"k-{k}_labels.nii.gz", self.get_label_image(k).to_filename
        yield "metrics.tsv", functools.partial(self.metrics.to_csv, sep="\t", float_format="%.6g")
        yield "metrics.png", functools.partial(self.plot_metrics().savefig, dpi=80)
        texts = {"boilerplate.txt": self.boilerplate(), "references.bib": self.bibtex()}
        for name, text in texts.items():
            yield name, functools.partial(Path.write_text, data=text, encoding="utf-8")


@fill_doc
class Parcellator:
    """Base class of meta-analytic parcellations (see the module docstring).

    Parameters
    ----------
    %(parcellation_region)s
    n_splits : int
        Random split-half resamples of the experiments for the stability criteria (0: only
        silhouette and hierarchy).
    method : {"kmeans", "hierarchical"}
        k-means on the voxels' similarity profiles (``n_init`` restarts), or average-linkage
        agglomerative clustering of the ``1 - r`` distances.
    n_init : int
        k-means restarts.
    random_state : int
        Seed of the splits and of k-means.
    """

    _citations: tuple = ("Clos2013", "Chase2020")

    def __init__(
        self,
        target_mask,
        n_clusters,
        n_splits: int = 2,
        method: str = "kmeans",
        n_init: int = 50,
        random_state: int = 0,
    ):
        ks = [n_clusters] if np.isscalar(n_clusters) else list(n_clusters)
        if not ks or any(int(k) != k or k < 2 for k in ks):
            raise ValueError(f"n_clusters must be integers >= 2, got {n_clusters!r}")
        if method not in ("kmeans", "hierarchical"):
            raise ValueError(f"method must be 'kmeans' or 'hierarchical', not {method!r}")
        if int(n_splits) != n_splits or n_splits < 0:
            raise ValueError(f"n_splits must be a non-negative integer, got {n_splits!r}")
        if int(n_init) != n_init or n_init < 1:
            raise ValueError(f"n_init must be a positive integer, got {n_init!r}")
        self.target_mask = target_mask
        self.n_clusters = sorted({int(k) for k in ks})
        self.n_splits = int(n_splits)
        self.method = method
        self.n_init = int(n_init)
        self.random_state = random_state

    def fit(self, dataset) -> ParcellationResult:
        """Parcellate the target region.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset or nimare_jax.studyset.Studyset
            Experiments with coordinates.

        Returns
        -------
        ParcellationResult
            Labels per number of clusters, the criteria and the methods text.
        """
        dataset = as_dataset(dataset)
        if len(dataset.ids) == 0:
            raise DatasetError("cannot parcellate with an empty dataset")
        dataset = drop_experiments_without_foci(dataset)
        roi = target_voxels(self.target_mask, dataset)
        if len(roi) < max(self.n_clusters):
            raise ImageError(
                f"the target mask has {len(roi)} voxel(s) inside the dataset's mask, fewer "
                f"than the {max(self.n_clusters)} clusters asked for"
            )
        groups = self._groups(len(dataset.ids))
        self.dataset_, self.roi_ = dataset, roi
        profiles = self._profiles(dataset, roi, groups)
        return self._summarize(profiles, roi)

    def _groups(self, n_exp: int) -> list[np.ndarray]:
        """All experiments, then the two halves of each random split (bool masks)."""
        rng = np.random.default_rng(self.random_state)
        groups = [np.ones(n_exp, bool)]
        for _ in range(self.n_splits):
            half = np.zeros(n_exp, bool)
            half[rng.permutation(n_exp)[: n_exp // 2]] = True
            groups += [half, ~half]
        return groups

    def _profiles(self, dataset, roi: RegionOfInterest, groups) -> list[np.ndarray]:
        """Feature matrix (one row per ROI voxel) of each experiment group."""
        raise NotImplementedError

    def _cluster(self, features: np.ndarray, k: int) -> np.ndarray:
        """Labels 0..k-1 (numbered by first appearance) of one solution.

        k-means runs on the profiles' first :data:`KMEANS_COMPONENTS` principal components
        (all of them for smaller ROIs): Euclidean distances between profiles are kept up to
        the discarded variance, and each restart costs ``O(n k 64)`` instead of ``O(n k n)``.
        It runs on one thread: these small problems are dominated by thread start-up and
        synchronisation (several times slower on a busy machine otherwise).
        """
        with threadpool_limits(1):
            return self._cluster_one_thread(features, k)

    def _cluster_one_thread(self, features: np.ndarray, k: int) -> np.ndarray:
        if self.method == "kmeans":
            if features.shape[1] > KMEANS_COMPONENTS:
                pca = PCA(KMEANS_COMPONENTS, random_state=self.random_state)
                features = pca.fit_transform(features)
            model = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state)
            labels = model.fit_predict(features)
        else:
            model = AgglomerativeClustering(n_clusters=k, metric="precomputed", linkage="average")
            labels = model.fit_predict(self._distance(features))
        return _relabel(labels)

    def _distance(self, features: np.ndarray) -> np.ndarray:
        """Voxel x voxel distances for the silhouette (correlations: ``1 - r``)."""
        distance = np.clip(1.0 - features, 0.0, 2.0)
        np.fill_diagonal(distance, 0.0)
        return distance

    def _summarize(self, profiles, roi: RegionOfInterest) -> ParcellationResult:
        full = profiles[0]
        cluster = functools.lru_cache(maxsize=None)(lambda g, k: self._cluster(profiles[g], k))
        labels, rows = {}, []
        distance = self._distance(full)
        for k in self.n_clusters:
            lab = cluster(0, k)
            labels[k] = lab + 1
            n_found = np.unique(lab).size
            sil = silhouette_score(distance, lab, metric="precomputed") if n_found > 1 else np.nan
            vi, mis = [], []
            for s in range(self.n_splits):
                a, b = cluster(1 + 2 * s, k), cluster(2 + 2 * s, k)
                vi.append(variation_of_information(a, b))
                mis.append(misclassified(a, b))
            parent = np.zeros_like(lab) if k == 2 else cluster(0, k - 1)
            rows.append(
                {
                    "n_clusters": k,
                    "silhouette": float(sil),
                    "vi": float(np.mean(vi)) if vi else np.nan,
                    "misclassified_pct": float(np.mean(mis)) if mis else np.nan,
                    "hierarchy_deviation_pct": hierarchy_deviation(lab, parent),
                }
            )
        metrics = pd.DataFrame(rows).set_index("n_clusters")
        return ParcellationResult(
            labels=labels,
            metrics=metrics,
            roi=roi,
            description=self._description(roi),
            citations=self._citations,
            similarity=full,
        )

    def _description(self, roi: RegionOfInterest) -> str:
        ks = ", ".join(str(k) for k in self.n_clusters)
        how = (
            f"k-means clustering of the voxels' similarity profiles ({self.n_init} restarts)"
            if self.method == "kmeans"
            else "average-linkage hierarchical clustering of the 1 - r distances"
        )
        return (
            f"The {len(roi)} voxels of the target region were clustered into {ks} clusters by "
            f"{how}. " + self._criteria_text("1 - r distances", "cluster")
        )

    def _criteria_text(self, distances: str, unit: str) -> str:
        """Sentences of the methods text on the criteria (``unit``: "cluster", "parcel")."""
        splits = (
            f" Stability was assessed over {self.n_splits} random split(s) of the experiments "
            "into halves, each half parcellated separately: the variation of information "
            "between the halves' solutions and the percentage of voxels assigned "
            f"differently by them ({unit}s matched one to one) [Clos2013; Chase2020]."
            if self.n_splits
            else ""
        )
        return (
            f"For each solution the mean silhouette ({distances}) and the percentage of voxels "
            f"deviating from the hierarchy (not in the dominant parent {unit} of the solution "
            f"with one {unit} fewer) were computed.{splits}"
        )

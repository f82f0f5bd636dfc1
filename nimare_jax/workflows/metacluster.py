"""Meta-analytic clustering: group experiments by the similarity of their activation maps.

The command ``nimare-jax metacluster`` runs :func:`metacluster_workflow`. Each experiment is
represented by a map over the mask: its modelled-activation (MA) map from its foci
(``coord=True``, with an ALE, MKDA or KDA kernel) or one of its images (``img="z"`` etc.).
The experiments are clustered with scikit-learn once for every number of clusters ``k`` in
``clust_range`` (inclusive), and the silhouette coefficient of each solution is tabulated so
that ``k`` can be chosen.

Outputs (``{p}`` is ``prefix + "_"``, or nothing without a prefix):

- ``{p}k-{k}_labels.tsv``: columns ``id`` and ``cluster`` (1..n; -1 marks DBSCAN noise);
- ``{p}k-{k}_means.nii.gz``: one 4-D NIfTI per ``k`` whose volume ``c - 1`` is the mean map
  of the experiments in cluster ``c`` (noise excluded; not written if DBSCAN finds no
  cluster);
- ``{p}silhouette.tsv``: columns ``k``, ``n_clusters`` (clusters found) and
  ``silhouette`` (NaN when fewer than two clusters, or only singletons, were found);
- ``{p}boilerplate.txt`` and ``{p}references.bib``.

Algorithms: ``kmeans`` (k-means on the maps, Euclidean, 10 restarts); ``spectral``
(spectral clustering of the non-negative part of the experiments' correlation matrix);
``dbscan`` (density-based: ``k`` is ``min_samples``, the number of clusters is found by
the algorithm, ``eps`` is the median correlation distance of an experiment to its
``k - 1``-th nearest other experiment). Silhouettes use Euclidean distances between maps for
k-means and correlation distance (``1 - r``) otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from sklearn.cluster import DBSCAN, KMeans, SpectralClustering
from sklearn.metrics import silhouette_score

from nimare_jax.exceptions import DatasetError
from nimare_jax.io.images import get_image_paths, image_types, load_images
from nimare_jax.meta.cbma.kernel import ALEKernel, KDAKernel, MKDAKernel
from nimare_jax.references import bibtex, cited_keys, format_boilerplate
from nimare_jax.results import unmask
from nimare_jax.spatial import load_mask
from nimare_jax.workflows.ale import load_dataset
from nimare_jax.workflows.arguments import add_prefix_argument, random_seed
from nimare_jax.workflows.staging import staged_dir

__all__ = ["ALGORITHMS", "KERNELS", "metacluster_workflow"]

KERNELS = {"ALEKernel": ALEKernel, "MKDAKernel": MKDAKernel, "KDAKernel": KDAKernel}
ALGORITHMS = ("kmeans", "dbscan", "spectral")

_KERNEL_TEXT = {
    "ALEKernel": "activation likelihood estimation kernels (3-D Gaussians whose width "
    "depends on the sample size) [Eickhoff2009; Turkeltaub2012]",
    "MKDAKernel": "binary spheres of radius 10 mm combined as a union within each "
    "experiment [Wager2007]",
    "KDAKernel": "spheres of radius 10 mm summed within each experiment [Wager2007]",
}
_ALGORITHM_TEXT = {
    "kmeans": "k-means clustering (Euclidean distance, 10 random restarts)",
    "spectral": "spectral clustering of the experiments' non-negative map correlations",
    "dbscan": "DBSCAN on correlation distance (1 - r), with the minimum number of "
    "experiments per dense neighbourhood set to k",
}


def check_clust_range(clust_range, n_experiments: int | None = None) -> tuple[int, int]:
    """Validate a ``(k1, k2)`` range of cluster numbers.

    Parameters
    ----------
    clust_range : tuple of 2 ints
        Smallest and largest number of clusters (inclusive).
    n_experiments : int or None
        Number of experiments to cluster; ``k2`` must be smaller (a silhouette needs at
        least one cluster with two experiments).

    Returns
    -------
    tuple of 2 ints
        The range.
    """
    try:
        k1, k2 = (int(k) for k in clust_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"clust_range must be two whole numbers K1 K2, got {clust_range!r}"
        ) from None
    if any(int(k) != k for k in clust_range):
        raise ValueError(f"clust_range must be two whole numbers K1 K2, got {clust_range!r}")
    if k1 < 2:
        raise ValueError(f"clust_range must start at 2 clusters or more, got {k1}")
    if k2 < k1:
        raise ValueError(f"clust_range must be increasing (K1 <= K2), got {k1} {k2}")
    if n_experiments is not None and k2 >= n_experiments:
        limit = f"at most {n_experiments - 1}" if n_experiments > 2 else "at least 3 needed"
        raise ValueError(
            f"clust_range goes up to {k2} clusters but there are only {n_experiments} "
            f"experiments to cluster; the largest number of clusters must be smaller than the "
            f"number of experiments ({limit})"
        )
    return k1, k2


def _features(dataset, coord: bool, img, kernel: str):
    """Return ``(ids, maps (n_exp, n_vox), text)`` for the experiments to cluster."""
    if coord:
        with_foci = set(dataset.coordinates["id"])
        ids = [i for i in dataset.ids if i in with_foci]
        subset = dataset.slice(ids)
        maps = KERNELS[kernel]().transform(subset, return_type="array")
        text = f"its modelled activation map, computed from its foci with {_KERNEL_TEXT[kernel]}"
        return ids, np.asarray(maps, np.float64), text
    paths = get_image_paths(dataset, img)
    ids = [i for i, p in zip(dataset.ids, paths, strict=True) if p is not None]
    if not ids:
        raise DatasetError(
            f"the dataset has no images of type {img!r} to cluster (image types it has: "
            f"{', '.join(image_types(dataset)) or 'none'}); use --coord to cluster foci"
        )
    return ids, None, f"its {img!r} image"


def _correlation(maps: np.ndarray) -> np.ndarray:
    centred = maps - maps.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1)
    norm[norm == 0] = 1.0
    unit = centred / norm[:, None]
    return np.clip(unit @ unit.T, -1.0, 1.0)


def _cluster(maps, k: int, algorithm: str, seed: int):
    """Return 0-based labels (-1 = noise) and the distances used for the silhouette."""
    if algorithm == "kmeans":
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(maps)
        return labels, None
    corr = _correlation(maps)
    distance = 1.0 - corr
    np.fill_diagonal(distance, 0.0)
    if algorithm == "spectral":
        affinity = np.clip(corr, 0.0, None)
        np.fill_diagonal(affinity, 1.0)
        labels = SpectralClustering(
            n_clusters=k, affinity="precomputed", random_state=seed
        ).fit_predict(affinity)
        return labels, distance
    kth = np.sort(distance, axis=1)[:, k - 1]  # column 0 is the experiment itself
    eps = max(float(np.median(kth)), 1e-12)
    labels = DBSCAN(eps=eps, min_samples=k, metric="precomputed").fit_predict(distance)
    return labels, distance


def _silhouette(maps, labels, distance) -> float:
    keep = labels >= 0
    found = np.unique(labels[keep])
    if found.size < 2 or found.size >= keep.sum():
        return float("nan")
    if distance is None:
        return float(silhouette_score(maps[keep], labels[keep], metric="euclidean"))
    sub = distance[np.ix_(keep, keep)]
    return float(silhouette_score(sub, labels[keep], metric="precomputed"))


def metacluster_workflow(
    dataset,
    clust_range=(2, 10),
    coord: bool = True,
    img: str | None = None,
    kernel: str = "ALEKernel",
    algorithm: str = "kmeans",
    output_dir=".",
    prefix: str | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[Path]]:
    """Cluster experiments by their activation maps for each number of clusters in a range.

    Parameters
    ----------
    dataset : Dataset, str or os.PathLike
        Experiments, or a NiMARE JSON (``.json``) or Sleuth text file.
    clust_range : tuple of 2 ints
        Smallest and largest number of clusters ``k`` (inclusive); ``2 <= K1 <= K2`` and
        ``K2`` smaller than the number of experiments.
    coord : bool
        Cluster modelled-activation maps made from the foci (experiments without foci are
        left out). Exactly one of ``coord`` and ``img`` must be set.
    img : str or None
        Image type (a column of ``dataset.images``, e.g. ``"z"``) to cluster instead.
    kernel : {"ALEKernel", "MKDAKernel", "KDAKernel"}
        Kernel of the modelled-activation maps (default settings of each).
    algorithm : {"kmeans", "dbscan", "spectral"}
        Clustering algorithm (see the module notes).
    output_dir : str or os.PathLike
        Output folder; files are written only once everything succeeded.
    prefix : str or None
        File-name prefix; None uses the input file's name for a file, nothing for a Dataset.
    seed : int
        Random state of k-means and spectral clustering.

    Returns
    -------
    silhouette : pandas.DataFrame
        Columns ``k``, ``n_clusters`` and ``silhouette``.
    files : list of pathlib.Path
        Written files (see the module notes).
    """
    if bool(coord) == (img is not None):
        raise ValueError("give exactly one of coord=True (foci) and img=<image type>")
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {', '.join(KERNELS)}")
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}"
        )
    k1, k2 = check_clust_range(clust_range)
    if prefix is None and isinstance(dataset, str | Path):
        prefix = Path(dataset).stem
    head = f"{prefix}_" if prefix else ""
    with staged_dir(output_dir) as tmp:  # checks the output folder before the work
        if isinstance(dataset, str | Path):
            dataset = load_dataset(dataset)
        ids, maps, source = _features(dataset, coord, img, kernel)
        check_clust_range((k1, k2), len(ids))
        if maps is None:
            maps = np.asarray(load_images(dataset, img, ids=ids), np.float64)
            maps = np.nan_to_num(maps)
        table, outputs = _cluster_range(maps, ids, k1, k2, algorithm, seed)
        description = (
            f"Meta-analytic clustering of {len(ids)} experiments was performed with "
            f"nimare_jax [Salo2023]. Each experiment was represented by {source}, over the "
            f"{maps.shape[1]} voxels of the brain mask, and the experiments were grouped by "
            f"{_ALGORITHM_TEXT[algorithm]} (scikit-learn) for every number of clusters k from "
            f"{k1} to {k2}. Solutions were compared by their mean silhouette coefficient "
            "(Rousseeuw, 1987)."
        )
        for k, (assign, means) in outputs.items():
            assign.to_csv(tmp / f"{head}k-{k}_labels.tsv", sep="\t", index=False)
            if means is not None:
                image = unmask(means.astype(np.float32), load_mask(dataset.masker))
                nib.save(image, tmp / f"{head}k-{k}_means.nii.gz")
        table.to_csv(tmp / f"{head}silhouette.tsv", sep="\t", index=False)
        (tmp / f"{head}boilerplate.txt").write_text(
            format_boilerplate(description), encoding="utf-8"
        )
        keys = cited_keys(description)
        (tmp / f"{head}references.bib").write_text(bibtex(keys), encoding="utf-8")
        names = sorted(p.name for p in tmp.iterdir())
    return table, [Path(output_dir) / name for name in names]


def _cluster_range(maps, ids, k1: int, k2: int, algorithm: str, seed: int):
    """Return the silhouette table and, per ``k``, the assignments and cluster-mean maps.

    Clusters are numbered from 1 (-1 marks DBSCAN noise); ``k`` runs from ``k1`` to ``k2``.
    """
    rows, outputs = [], {}
    for k in range(k1, k2 + 1):
        labels, distance = _cluster(maps, k, algorithm, seed)
        found = np.unique(labels[labels >= 0])
        number = np.full(labels.shape, -1)
        for new, old in enumerate(found, start=1):
            number[labels == old] = new
        means = [maps[number == c].mean(axis=0) for c in range(1, found.size + 1)]
        means = np.stack(means) if means else None  # DBSCAN may call everything noise
        rows.append(
            {
                "k": k,
                "n_clusters": int(found.size),
                "silhouette": _silhouette(maps, number, distance),
            }
        )
        outputs[k] = (pd.DataFrame({"id": ids, "cluster": number}), means)
    return pd.DataFrame(rows), outputs


def add_metacluster_arguments(parser) -> None:
    """Add the ``nimare-jax metacluster`` arguments to an argparse (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Parser to extend; its parsed namespace is accepted by :func:`run_metacluster`.
    """
    parser.add_argument("dataset", metavar="DATASET", help="NiMARE JSON file or Sleuth text file")
    parser.add_argument(
        "--clust_range",
        nargs=2,
        type=int,
        action=_ClusterRange,
        required=True,
        metavar=("K1", "K2"),
        help="smallest and largest number of clusters to try (inclusive; K1 >= 2)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--coord",
        action="store_true",
        help="cluster modelled-activation maps made from the experiments' foci",
    )
    source.add_argument(
        "--img",
        nargs="?",
        const="z",
        default=None,
        metavar="TYPE",
        help="cluster the experiments' images of this type instead (default type: z)",
    )
    parser.add_argument(
        "--kernel",
        default="ALEKernel",
        choices=KERNELS,
        help=f"kernel of the modelled-activation maps: {', '.join(KERNELS)} (ALEKernel)",
    )
    parser.add_argument(
        "--algorithm",
        default="kmeans",
        choices=ALGORITHMS,
        help=f"clustering algorithm: {', '.join(ALGORITHMS)} (kmeans)",
    )
    parser.add_argument("--output_dir", metavar="PATH", default=".", help="output folder (.)")
    add_prefix_argument(parser)
    parser.add_argument("--seed", type=random_seed, default=0, help="seed of the clustering (0)")


class _ClusterRange(argparse.Action):
    """Store ``--clust_range K1 K2`` after :func:`check_clust_range` (a usage error if bad)."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, self.dest, check_clust_range(values))
        except ValueError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None


def run_metacluster(args) -> None:
    """Run :func:`metacluster_workflow` from parsed command-line arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Namespace from a parser set up by :func:`add_metacluster_arguments`.
    """
    table, files = metacluster_workflow(
        args.dataset,
        clust_range=args.clust_range,
        coord=bool(args.coord),
        img=args.img,
        kernel=args.kernel,
        algorithm=args.algorithm,
        output_dir=args.output_dir,
        prefix=args.prefix,
        seed=args.seed,
    )
    print(table.to_string(index=False))
    print(f"Wrote {len(files)} files to {args.output_dir}")

"""Diagnostics of a meta-analytic result: which experiments drive each significant cluster.

:class:`Jackknife` refits the estimator without each experiment in turn and reports, per
cluster, the mean proportional drop of the summary statistic; :class:`FocusCounter` counts
each experiment's foci inside each cluster. Both follow NiMARE 0.22's ``Diagnostics``: they
threshold ``target_image`` (default: the cluster-size FWE z map), label its clusters with
face (6-neighbour) connectivity, and return the result with these additions:

- ``tables["<target_image>_tab-clust"]``: one row per cluster (``Cluster ID`` such as
  ``"PositiveTail 1"``, ``X``/``Y``/``Z`` of the peak in mm, ``Peak Stat``, ``Cluster Size
  (mm3)``) plus ``Peak Label`` (Harvard-Oxford region of the peak);
- ``tables["<target_image>_diag-<Jackknife|FocusCounter>_tab-counts_tail-<positive|negative>"]``:
  one row per experiment (column ``id``) and one column per cluster of that tail (for a
  one-sample estimator with clusters in both tails, a single table without the ``_tail-``
  suffix holds every column);
- ``maps["label_<target_image minus its first field>_tail-<positive|negative>"]``: cluster
  labels over the mask (1 = the cluster with the highest peak).

Differences from NiMARE, on purpose: ``transform`` returns a copy and leaves its input
unchanged; cluster numbers in the cluster table, the contribution tables and the label maps
always agree (NiMARE numbers the cluster table by the peak of the uncorrected map but the
label maps by the peak of the target map, and numbers the negative tail's rows after the
positive tail's peaks and sub-peaks); the cluster table lists peaks only (no sub-peaks).
For a cluster-level corrected target (constant within a cluster) clusters with equal values
are ordered by the peak of the uncorrected map.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
from scipy import ndimage

from nimare_jax.base import NiMAREBase
from nimare_jax.meta.cbma.ale import ALE
from nimare_jax.meta.fwe import fwe_map
from nimare_jax.reports.clusters import atlas_labels, ordered_clusters
from nimare_jax.spatial import load_mask, mm2vox, vox2mm
from nimare_jax.studyset import as_dataset

__all__ = ["Diagnostics", "FocusCounter", "FocusFilter", "Jackknife"]

POSTAIL_LBL = "PositiveTail"
NEGTAIL_LBL = "NegativeTail"
_TAIL_NAME = {POSTAIL_LBL: "positive", NEGTAIL_LBL: "negative"}
# Map whose values Jackknife compares, first one present (as NiMARE chooses it).
_TARGET_VALUE_KEYS = ("stat", "est", "stat_desc-group1MinusGroup2", "z_desc-association", "z")


def _target_value_map(result) -> str:
    for key in _TARGET_VALUE_KEYS:
        if key in result.maps:
            return key
    raise ValueError(
        f"no map to compute contributions from: expected one of {_TARGET_VALUE_KEYS}, "
        f"available maps are {sorted(result.maps)}"
    )


def _is_cluster_corrected(name: str) -> bool:
    return "_level-cluster" in name and "_corr-" in name


def _uncorrected_name(name: str) -> str:
    """``z_desc-size_level-cluster_corr-FWE_method-montecarlo`` -> ``z`` (and similar)."""
    base = name.split("_corr-", 1)[0].replace("_level-cluster", "")
    if "_desc-" not in base:
        return base
    head, rest = base.split("_desc-", 1)
    desc, sep, tail = rest.partition("_")
    for suffix in ("size", "mass", "Size", "Mass"):
        if desc.endswith(suffix):
            desc = desc[: -len(suffix)]
            break
    out = head + (f"_desc-{desc}" if desc else "")
    return out + (f"_{tail}" if sep else "")


def _is_pairwise(estimator) -> bool:
    return hasattr(estimator, "dataset1_") and hasattr(estimator, "dataset2_")


class Diagnostics:
    """Base class of the cluster diagnostics (see the module notes for the outputs).

    Parameters
    ----------
    target_image : str
        Map whose clusters are characterised.
    voxel_thresh : float or None
        Deprecated alias of ``target_threshold`` (as in NiMARE 0.22; a ``FutureWarning``).
    cluster_threshold : int or None
        Smallest cluster kept, in voxels (None: all).
    display_second_group : bool
        Pairwise estimators: also report group 2's experiments for the negative tail.
    n_cores : int
        Accepted for compatibility with NiMARE; the work runs in this process.
    target_threshold : float or None
        Voxels of ``target_image`` strictly above it (and, for a two-sided map, strictly
        below its negative) form clusters; None means 0.
    atlas : str, tuple or None
        Atlas naming cluster peaks in the cluster table (None: no ``Peak Label`` column).
    """

    def __init__(
        self,
        target_image: str = fwe_map("z", "cluster", "size"),
        voxel_thresh: float | None = None,
        cluster_threshold: int | None = None,
        display_second_group: bool = False,
        n_cores: int = 1,
        target_threshold: float | None = None,
        atlas="harvard_oxford",
    ):
        if target_threshold is not None and voxel_thresh is not None:
            raise ValueError("give target_threshold or the deprecated voxel_thresh, not both")
        if voxel_thresh is not None:
            warnings.warn(
                "voxel_thresh is deprecated for diagnostics; use target_threshold",
                FutureWarning,
                stacklevel=2,
            )
            target_threshold = voxel_thresh
        self.target_image = target_image
        self.voxel_thresh = voxel_thresh
        self.target_threshold = target_threshold
        self.cluster_threshold = cluster_threshold
        self.display_second_group = display_second_group
        self.n_cores = n_cores
        self.atlas = atlas

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target_image={self.target_image!r})"

    # ------------------------------------------------------------------ clusters
    def _tails(self, result):
        """Label each tail's clusters; return the contexts and the cluster table."""
        if self.target_image not in result.maps:
            raise ValueError(
                f"target image {self.target_image!r} is not in the result; available maps: "
                f"{', '.join(sorted(result.maps))}"
            )
        inside = np.asanyarray(result.mask.dataobj) > 0
        target = np.zeros(inside.shape)
        target[inside] = np.asarray(result.maps[self.target_image], float)
        peak_name = self.target_image
        if _is_cluster_corrected(self.target_image):
            peak_name = _uncorrected_name(self.target_image)
            if "_level-cluster" in peak_name or peak_name not in result.maps:
                raise ValueError(
                    f"no uncorrected map {peak_name!r} to take cluster peaks from (target "
                    f"{self.target_image!r}); available maps: {', '.join(sorted(result.maps))}"
                )
        peaks = np.zeros(inside.shape)
        peaks[inside] = np.asarray(result.maps[peak_name], float)
        two_sided = getattr(result.estimator, "two_sided", None)
        if two_sided is None:
            two_sided = bool((target < 0).any())
        threshold = 0.0 if self.target_threshold is None else float(self.target_threshold)
        min_size = 1 if self.cluster_threshold is None else max(int(self.cluster_threshold), 1)
        voxel_mm3 = float(np.prod(result.mask.header.get_zooms()[:3]))
        tails, rows = [], []
        for label, sign in ((POSTAIL_LBL, 1.0), (NEGTAIL_LBL, -1.0))[: 2 if two_sided else 1]:
            labels, n = ordered_clusters(
                sign * target, threshold, 6, min_size, tiebreak=sign * np.where(inside, peaks, 0)
            )
            if n == 0:
                continue
            index = np.arange(1, n + 1)
            signed = np.where(labels > 0, sign * peaks, -np.inf)
            ijk = np.asarray(ndimage.maximum_position(signed, labels, index), float)
            xyz = vox2mm(ijk.reshape(-1, 3), result.mask.affine)
            sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
            part = pd.DataFrame(
                {
                    "Cluster ID": [f"{label} {k}" for k in index],
                    "X": xyz[:, 0],
                    "Y": xyz[:, 1],
                    "Z": xyz[:, 2],
                    "Peak Stat": sign * np.asarray(ndimage.maximum(signed, labels, index)),
                    "Cluster Size (mm3)": (sizes * voxel_mm3).astype(int),
                }
            )
            if self.atlas is not None:
                part["Peak Label"] = atlas_labels(xyz, self.atlas)
            rows.append(part)
            tails.append({"sign": label, "labels": labels[inside], "n": n})
        columns = ["Cluster ID", "X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"]
        if self.atlas is not None:
            columns.append("Peak Label")
        table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)
        return tails, table

    def _groups(self, estimator, tails):
        """Assign each tail the dataset whose experiments are diagnosed (NiMARE's rules)."""
        if not _is_pairwise(estimator):
            return [(tail, estimator.dataset_, None) for tail in tails]
        out = []
        for tail in tails:
            group = 1 if tail["sign"] == POSTAIL_LBL else 2
            if len(tails) == 2 and group == 2 and not self.display_second_group:
                continue
            out.append((tail, getattr(estimator, f"dataset{group}_"), group))
        return out

    # ----------------------------------------------------------------- transform
    def transform(self, result):
        """Characterise each experiment's contribution to the clusters of ``target_image``.

        Parameters
        ----------
        result : MetaResult
            A fitted (and usually FWE-corrected) coordinate-based result; its ``estimator``
            must keep the dataset it was fitted on.

        Returns
        -------
        MetaResult
            A copy of ``result`` with the cluster table, the contribution table(s) and the
            label map(s) added (names in the module notes). Without clusters, the cluster
            table is empty, the contribution table is None and no label map is added.
        """
        estimator = result.estimator
        if estimator is None or not (hasattr(estimator, "dataset_") or _is_pairwise(estimator)):
            raise ValueError(
                f"{type(self).__name__} needs a result whose estimator was fitted to a dataset"
            )
        self._check(result)
        tails, clusters = self._tails(result)
        out = result.copy()
        name = type(self).__name__
        image_name = "_".join(self.target_image.split("_")[1:])
        image_name = f"_{image_name}" if image_name else ""
        counts_name = f"{self.target_image}_diag-{name}_tab-counts"
        out.tables[f"{self.target_image}_tab-clust"] = clusters
        if not tails:
            warnings.warn(f"{name}: no clusters found in {self.target_image!r}", stacklevel=2)
            out.tables[counts_name] = None
            return out
        for tail in tails:
            out.maps[f"label{image_name}_tail-{_TAIL_NAME[tail['sign']]}"] = tail["labels"]
        groups = self._groups(estimator, tails)
        values = self._contributions(result, groups)
        tables = []
        for (tail, dataset, _), table in zip(groups, values, strict=True):
            columns = [f"{tail['sign']} {k}" for k in range(1, tail["n"] + 1)]
            frame = pd.DataFrame(table, columns=columns)
            frame.insert(0, "id", list(dataset.ids))
            tables.append((tail, frame))
        if not _is_pairwise(estimator) and len(tables) == 2:
            merged = tables[0][1].merge(tables[1][1], on="id", how="outer").fillna(0)
            out.tables[counts_name] = merged
        else:
            for tail, frame in tables:
                out.tables[f"{counts_name}_tail-{_TAIL_NAME[tail['sign']]}"] = frame
        return out

    def _check(self, result) -> None:
        """Raise if this diagnostic cannot run on ``result``."""

    def _contributions(self, result, groups) -> list[np.ndarray]:
        """Return one ``(n_experiments, n_clusters)`` array per ``(tail, dataset, group)``."""
        raise NotImplementedError


class Jackknife(Diagnostics):
    """Leave-one-experiment-out contribution of each experiment to each cluster.

    For every experiment the estimator is refitted without it; the contribution to a
    cluster is the mean over the cluster's voxels of ``1 - stat_without / stat_all`` (0
    where the division is undefined), with ``stat`` the result's ``stat`` map (or ``est``,
    ``stat_desc-group1MinusGroup2``, ``z_desc-association``, ``z``: the first present).
    The refit uses a shallow copy of the fitted estimator with the same configuration and,
    because only the statistic is needed, the approximate (analytic) null when the
    estimator has one, so no Monte Carlo runs inside the loop.

    Parameters
    ----------
    target_image, voxel_thresh, cluster_threshold, display_second_group, n_cores, \
target_threshold, atlas
        See :class:`Diagnostics`.
    """

    def _check(self, result) -> None:
        estimator = result.estimator
        datasets = (
            [estimator.dataset1_, estimator.dataset2_]
            if _is_pairwise(estimator)
            else [estimator.dataset_]
        )
        if min(len(d.ids) for d in datasets) < 2:
            raise ValueError(
                "Jackknife needs at least two experiments in every group: it refits the "
                "estimator without each experiment in turn"
            )
        floor = getattr(estimator, "_min_analyses", None)  # IBMA: 2 to estimate a variance
        n = min(len(d.ids) for d in datasets)
        if floor is not None and n - 1 < floor:
            raise ValueError(
                f"Jackknife needs at least {floor + 1} analyses, got {n}: each refit leaves "
                f"one out, and {type(estimator).__name__} needs at least {floor}"
            )

    @staticmethod
    def _ale_leave_one_out(estimator, dataset, chunk: int = 128):
        """Yield ``(id, ALE without it)``, from modelled-activation maps computed once.

        ALE is ``1 - prod_e(1 - MA_e)`` and each experiment's MA map depends on that
        experiment alone, so leaving one out divides its factor out of the product:
        ``log(1 - ALE_-e) = sum_f log1p(-MA_f) - log1p(-MA_e)``. The first item is
        ``(None, full ALE)`` from the same sums. Maps are built in chunks of
        experiments (two passes) so memory stays bounded for large datasets.
        """
        ids = list(dataset.ids)
        kernel = estimator.kernel_transformer
        chunks = [ids[i : i + chunk] for i in range(0, len(ids), chunk)]
        total = 0.0
        for part in chunks:
            ma = kernel.transform(dataset.slice(part), return_type="array")
            total = total + np.log1p(-np.asarray(ma, np.float64)).sum(axis=0)
        yield None, (-np.expm1(total)).astype(np.float32)
        for part in chunks:
            ma = kernel.transform(dataset.slice(part), return_type="array")
            for exp_id, row in zip(part, np.asarray(ma, np.float64), strict=True):
                yield exp_id, (-np.expm1(total - np.log1p(-row))).astype(np.float32)

    @staticmethod
    def _refitter(estimator):
        new = copy.copy(estimator)
        if getattr(new, "null_method", None) == "montecarlo":
            new.null_method = "approximate"
        return new

    def _contributions(self, result, groups):
        estimator = result.estimator
        value_name = _target_value_map(result)
        full = np.asarray(result.maps[value_name], float)
        out = [np.zeros((len(d.ids), t["n"])) for t, d, _ in groups]
        done = {}
        if value_name == "stat" and type(estimator) is ALE and not _is_pairwise(estimator):
            maps = self._ale_leave_one_out(estimator, estimator.dataset_)
            _, everything = next(maps)  # the full ALE, summed in the same order (exact zeros)
            for exp_id, without in maps:
                with np.errstate(divide="ignore", invalid="ignore"):
                    done[(None, exp_id)] = 1.0 - np.nan_to_num(without / everything)
        for g, (tail, dataset, group) in enumerate(groups):
            index = tail["labels"]
            n = tail["n"]
            counts = np.bincount(index, minlength=n + 1)[1:]
            for row, exp_id in enumerate(dataset.ids):
                key = (group, exp_id)
                if key not in done:  # both tails of a one-sample estimator share the refit
                    rest = dataset.slice([i for i in dataset.ids if i != exp_id])
                    refit = self._refitter(estimator)
                    if group is None:
                        loo = refit.fit(rest)
                    elif group == 1:
                        loo = refit.fit(rest, estimator.dataset2_)
                    else:
                        loo = refit.fit(estimator.dataset1_, rest)
                    without = np.asarray(loo.maps[value_name], float)
                    with np.errstate(divide="ignore", invalid="ignore"):
                        done[key] = 1.0 - np.nan_to_num(without / full)
                prop = done[key]
                sums = np.bincount(index, weights=prop, minlength=n + 1)[1:]
                out[g][row] = sums / counts
        return out


class FocusCounter(Diagnostics):
    """Number of each experiment's foci inside each cluster.

    A focus counts for a cluster when the voxel it falls in (world coordinate rounded to
    the nearest voxel of the mask's grid, as NiMARE's ``mm2vox``) belongs to the cluster.

    Parameters
    ----------
    target_image, voxel_thresh, cluster_threshold, display_second_group, n_cores, \
target_threshold, atlas
        See :class:`Diagnostics`.
    """

    def _check(self, result) -> None:
        if not hasattr(result.estimator, "kernel_transformer"):
            raise ValueError("FocusCounter only works for coordinate-based meta-analyses")

    def _contributions(self, result, groups):
        inside = np.asanyarray(result.mask.dataobj) > 0
        affine = result.mask.affine
        out = []
        for tail, dataset, _ in groups:
            volume = np.zeros(inside.shape, np.int64)
            volume[inside] = tail["labels"]
            coords = dataset.coordinates
            ijk = mm2vox(coords[["x", "y", "z"]].to_numpy(float), affine)
            ok = np.all((ijk >= 0) & (ijk < np.asarray(inside.shape)), axis=1)
            lab = np.zeros(len(ijk), np.int64)
            lab[ok] = volume[tuple(ijk[ok].T)]
            rows = pd.Index(dataset.ids).get_indexer(coords["id"])
            table = np.zeros((len(dataset.ids), tail["n"] + 1), np.int64)
            np.add.at(table, (rows[rows >= 0], lab[rows >= 0]), 1)
            out.append(table[:, 1:])
        return out


class FocusFilter(NiMAREBase):
    """Remove the foci that fall outside a mask (NiMARE's ``FocusFilter``).

    Parameters
    ----------
    mask : mask image, path, nilearn masker or None
        Mask whose voxels keep a focus (a focus is kept if its nearest voxel is in the mask);
        None uses the dataset's own mask.

    Notes
    -----
    Experiments are all kept, even those left without foci (a dataset may hold experiments
    with images only).
    """

    def __init__(self, mask=None):
        self.mask = mask

    def transform(self, dataset):
        """Return a copy of ``dataset`` without its foci outside the mask.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset or Studyset
            The collection to filter.

        Returns
        -------
        nimare_jax.dataset.Dataset
            A copy with the in-mask foci only.
        """
        dataset = as_dataset(dataset)
        mask_img = load_mask(dataset.masker if self.mask is None else self.mask)
        inside = np.asanyarray(mask_img.dataobj) > 0
        coords = dataset.coordinates
        ijk = mm2vox(coords[["x", "y", "z"]].to_numpy(float), mask_img.affine)
        in_bounds = np.all((ijk >= 0) & (ijk < np.array(inside.shape)), axis=1)
        keep = np.zeros(len(coords), bool)
        keep[in_bounds] = inside[tuple(ijk[in_bounds].T)]
        out = dataset.copy()
        out.coordinates = coords.loc[keep].reset_index(drop=True)
        return out

"""Decode unthresholded brain maps by correlating them with per-feature maps.

As NiMARE 0.22.1's ``nimare.decode.continuous``: :class:`CorrelationDecoder` makes one
meta-analytic map per feature (the experiments carrying it, against the others for a
two-group estimator) and correlates a new image with each; :class:`CorrelationDistributionDecoder`
correlates it with every experiment image of each feature.

For ``MKDAChi2`` (NiMARE's default), ``MKDADensity`` (unweighted) and ``KDA``, with their
approximate nulls, every feature map is computed at once: the experiments'
modelled-activation maps are made in one pass, and for a chunk of voxels the counts of all
features are one product of the label matrix with the activation matrix
(:mod:`nimare_jax.ops.decode`). Other estimators and maps are fitted once per feature.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from glob import glob

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from nimare_jax import stats
from nimare_jax.dataset import Dataset
from nimare_jax.decode.base import Decoder, label_matrix
from nimare_jax.decode.gclda import gclda_decode_map
from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError, ImageError
from nimare_jax.io.images import load_images
from nimare_jax.meta.cbma.mkda import KDA, MKDAChi2, MKDADensity, bernoulli_sum_null, sum_null
from nimare_jax.ops import decode as ops_decode
from nimare_jax.results import MetaResult
from nimare_jax.spatial import check_same_space, load_image_3d, load_mask

LGR = logging.getLogger(__name__)

#: Experiments whose activation maps are made per call in the one MA pass.
EXPERIMENT_CHUNK = 64
#: Dense activation block of a voxel chunk: at most this many experiment x voxel cells.
CHUNK_CELLS = 2**25
#: Features per block (the last block is padded with empty features).
FEATURE_BLOCK = 256
#: A feature block's maps over a voxel chunk: at most this many cells (bounds temporaries).
BLOCK_CELLS = 2**22
#: Active pairs of a chunk are padded to a multiple of this, so chunks share one shape.
PAIR_QUANTUM = 2**14
#: Maps of MKDADensity and KDA that the batched density engine makes.
DENSITY_TARGETS = ("stat", "p", "z", "logp")
#: Feature maps correlated per step of ``transform`` (float64 blocks).
CORRELATION_BLOCK = 64

__all__ = [
    "CorrelationDecoder",
    "CorrelationDistributionDecoder",
    "activation_pairs",
    "batched_chi2_maps",
    "batched_density_maps",
    "gclda_decode_map",
]


def _pow2_at_most(x: float) -> int:
    return 1 << max(int(math.floor(math.log2(max(x, 1.0)))), 0)


def activation_pairs(kernel_transformer, dataset: Dataset, voxel_chunk: int, binary=True):
    """Return every experiment's modelled activation as its non-zero cells, per voxel chunk.

    Parameters
    ----------
    kernel_transformer : KernelTransformer
        Kernel of the estimator.
    dataset : nimare_jax.dataset.Dataset
        Experiments, in the order of the rows.
    voxel_chunk : int
        Voxels per chunk.
    binary : bool
        Binarize the maps (value > 0), as ``MKDAChi2`` counts them. Otherwise keep each
        cell's value in units of the kernel's ``value`` (a count of overlapping spheres for
        ``KDAKernel``).

    Returns
    -------
    pairs : list of tuples of arrays
        For each chunk of ``voxel_chunk`` mask voxels, ``(rows, cols)`` (experiment and
        chunk-local voxel of every non-zero cell; uint16 where the indices fit, else int32),
        plus ``values`` float32 if not ``binary``.
    histograms : numpy.ndarray of float64, shape (n_experiments, n_values)
        Number of mask voxels at each value ``0, 1, ...`` of each experiment's map (for a
        binary map, ``histograms[:, 1]`` is its coverage).
    """
    arrays = kernel_transformer.prepare(dataset)
    n_exp, n_vox = len(arrays.ids), arrays.mask_index.shape[0]
    unit = 1.0 if binary else float(kernel_transformer.value)
    windows = np.asarray(arrays.windows) > 0 if binary else None
    n_chunks = -(-n_vox // voxel_chunk)
    pieces = [[] for _ in range(n_chunks)]
    # Neurosynth has ~2e8 active cells: store indices in 16 bits where they fit.
    row_type = np.uint16 if n_exp < 2**16 else np.int32
    col_type = np.uint16 if voxel_chunk <= 2**16 else np.int32
    hist_rows = []
    for lo, n_part, ma in arrays.ma_chunks(min(EXPERIMENT_CHUNK, n_exp), windows):
        ma = np.asarray(ma)[:n_part]
        r, v = np.nonzero(ma > 0)
        vals = (
            np.ones(r.size, np.float32) if binary else np.rint(ma[r, v] / unit).astype(np.float32)
        )
        if binary:
            hist_rows.append(np.bincount(r, minlength=n_part)[:, None])
        else:
            width = int(vals.max()) + 1 if vals.size else 1
            h = np.zeros((n_part, width))
            np.add.at(h, (r, vals.astype(np.int64)), 1.0)
            hist_rows.append(h[:, 1:])
        chunk_id = v // voxel_chunk
        order = np.argsort(chunk_id, kind="stable")
        bounds = np.searchsorted(chunk_id[order], np.arange(n_chunks + 1))
        for c in range(n_chunks):
            sel = order[bounds[c] : bounds[c + 1]]
            if sel.size:
                piece = [
                    (lo + r[sel]).astype(row_type),
                    (v[sel] - c * voxel_chunk).astype(col_type),
                ]
                pieces[c].append(piece if binary else [*piece, vals[sel]])
    width = max(h.shape[1] for h in hist_rows)
    histograms = np.zeros((n_exp, width + 1))
    row = 0
    for h in hist_rows:
        histograms[row : row + h.shape[0], 1 : 1 + h.shape[1]] = h
        row += h.shape[0]
    histograms[:, 0] = n_vox - histograms[:, 1:].sum(1)
    n_fields = 2 if binary else 3
    empty = (np.zeros(0, row_type), np.zeros(0, col_type), np.zeros(0, np.float32))
    pairs = []
    for c, chunk in enumerate(pieces):  # freed as we go: peak memory ~ one copy of the pairs
        pairs.append(
            tuple(np.concatenate(x) for x in zip(*chunk, strict=True))
            if chunk
            else empty[:n_fields]
        )
        pieces[c] = None
    return pairs, histograms


def _padded_pairs(pairs, n_exp: int):
    """Pad every chunk's pairs to one length (padding rows point past the last experiment)."""
    n_pairs = max(max(p[0].size for p in pairs), 1)
    n_pairs = -(-n_pairs // PAIR_QUANTUM) * PAIR_QUANTUM
    for chunk in pairs:
        pad = n_pairs - chunk[0].size
        rows = np.concatenate([chunk[0].astype(np.int32), np.full(pad, n_exp, np.int32)])
        cols = np.concatenate([chunk[1].astype(np.int32), np.zeros(pad, np.int32)])
        extra = [np.concatenate([chunk[2], np.zeros(pad, np.float32)])] if len(chunk) > 2 else []
        yield rows, cols, *extra


def _layout(n_exp: int, n_feat: int, n_vox: int) -> tuple[int, int, int]:
    """Feature block size, number of blocks and voxel chunk size of the batched engines."""
    n_blocks = -(-n_feat // FEATURE_BLOCK)
    block = 8 * math.ceil(math.ceil(n_feat / n_blocks) / 8)  # equal blocks, multiple of 8
    voxel_chunk = min(
        _pow2_at_most(CHUNK_CELLS / n_exp),
        _pow2_at_most(BLOCK_CELLS / block),
        1 << math.ceil(math.log2(n_vox)),
    )
    return block, n_blocks, voxel_chunk


def batched_chi2_maps(kernel_transformer, dataset: Dataset, labels: np.ndarray, target: str):
    """MKDA chi-square map of every feature: its experiments against all the others.

    Parameters
    ----------
    kernel_transformer : KernelTransformer
        Binary kernel of the ``MKDAChi2`` estimator.
    dataset : nimare_jax.dataset.Dataset
        The experiments (rows of ``labels``).
    labels : numpy.ndarray of bool, shape (n_experiments, n_features)
        Which experiments carry each feature.
    target : str
        Map name (one of :data:`nimare_jax.ops.decode.CHI2_TARGETS`).

    Returns
    -------
    numpy.ndarray of float32, shape (n_features, n_voxels)
        Each feature's map, equal to ``MKDAChi2().fit(with, without).get_map(target)``.
    """
    n_exp, n_feat = labels.shape
    n_vox = int((np.asanyarray(load_mask(dataset.masker).dataobj) > 0).sum())
    block, n_blocks, voxel_chunk = _layout(n_exp, n_feat, n_vox)
    pairs, histograms = activation_pairs(kernel_transformer, dataset, voxel_chunk)
    coverage = histograms[:, 1]
    lab = np.zeros((n_blocks * block, n_exp), np.float32)
    lab[:n_feat] = labels.T
    out = np.empty((n_feat, n_vox), np.float32)
    with jax.enable_x64(True):
        selected = lab.astype(np.float64) @ coverage
        e1 = jnp.asarray((selected / n_vox).reshape(n_blocks, block))
        e2 = jnp.asarray(((coverage.sum() - selected) / n_vox).reshape(n_blocks, block))
        lab_dev = jnp.asarray(lab.reshape(n_blocks, block, n_exp))
        for c, (rows, cols) in enumerate(_padded_pairs(pairs, n_exp)):
            maps = ops_decode.chi2_chunk(lab_dev, rows, cols, voxel_chunk, e1, e2, target)
            lo, hi = c * voxel_chunk, min((c + 1) * voxel_chunk, n_vox)
            out[:, lo:hi] = np.asarray(maps).reshape(-1, voxel_chunk)[:n_feat, : hi - lo]
    return out


def batched_density_maps(estimator, dataset: Dataset, labels: np.ndarray, target: str):
    """MKDADensity or KDA map of every feature's experiments (approximate null, unweighted).

    Parameters
    ----------
    estimator : MKDADensity or KDA
        The estimator (its kernel, ``n_histogram_bins`` for MKDADensity).
    dataset : nimare_jax.dataset.Dataset
        The experiments (rows of ``labels``).
    labels : numpy.ndarray of bool, shape (n_experiments, n_features)
        Which experiments carry each feature.
    target : {"stat", "p", "z", "logp"}
        Map name.

    Returns
    -------
    numpy.ndarray of float32, shape (n_features, n_voxels)
        Each feature's map, equal to ``estimator.fit(dataset.slice(with)).get_map(target)``.
    """
    kt = estimator.kernel_transformer
    n_exp, n_feat = labels.shape
    n_vox = int((np.asanyarray(load_mask(dataset.masker).dataobj) > 0).sum())
    block, n_blocks, voxel_chunk = _layout(n_exp, n_feat, n_vox)
    binary = kt.combine == "max"
    pairs, histograms = activation_pairs(kt, dataset, voxel_chunk, binary=False)
    value = float(kt.value)
    foci = np.bincount(kt.prepare(dataset).exp_index, minlength=n_exp)
    # Largest sum any feature can reach: its experiments' largest MA values added up.
    top = np.array([np.flatnonzero(h)[-1] for h in histograms], np.float64)
    n_grid = int((labels.T.astype(np.float64) @ top).max()) + 1
    table = np.zeros((n_blocks * block, n_grid))
    for f in range(n_feat):
        sel = labels[:, f]
        if isinstance(estimator, MKDADensity):
            weights = np.full(int(sel.sum()), value)
            bins, hist = bernoulli_sum_null(
                weights, histograms[sel, 1] / n_vox, estimator.n_histogram_bins
            )
        else:
            n_sum = int(foci[sel].sum()) if not binary else int(sel.sum())
            bins = np.arange(n_sum + 2) * value
            hist = sum_null(histograms[sel] / n_vox, n_sum + 2)
        # Every map is a function of the sum k = stat / value: tabulate it on k's grid
        # exactly as the estimator computes it (stats.nullhist_to_p, p_to_z).
        stat = np.arange(n_grid) * value
        p = stats.nullhist_to_p(stat, hist, bins)
        if target == "stat":
            table[f] = stat
        elif target == "p":
            table[f] = p
        elif target == "z":
            table[f] = stats.p_to_z(p, tail="one")
        else:
            table[f] = -np.log10(p)
    lab = np.zeros((n_blocks * block, n_exp), np.float32)
    lab[:n_feat] = labels.T
    out = np.empty((n_feat, n_vox), np.float32)
    lab_dev = jnp.asarray(lab.reshape(n_blocks, block, n_exp))
    table = jnp.asarray(table.reshape(n_blocks, block, n_grid), jnp.float32)
    for c, (rows, cols, vals) in enumerate(_padded_pairs(pairs, n_exp)):
        maps = ops_decode.density_chunk(lab_dev, rows, cols, vals, voxel_chunk, table)
        lo, hi = c * voxel_chunk, min((c + 1) * voxel_chunk, n_vox)
        out[:, lo:hi] = np.asarray(maps).reshape(-1, voxel_chunk)[:n_feat, : hi - lo]
    return out


def _masked_values(img, mask_img, what: str) -> np.ndarray:
    """Values of an image at the mask's voxels (float64), which must share its grid."""
    img = load_image_3d(img, what)
    check_same_space(img, mask_img, f"{what} and the decoder's mask")
    values = np.asarray(img.dataobj, dtype=np.float64)[np.asanyarray(mask_img.dataobj) > 0]
    bad = ~np.isfinite(values)
    if bad.any():
        raise ImageError(f"{what}: {int(bad.sum())} voxel(s) of the mask are NaN or infinite")
    return values


def _correlate(x: np.ndarray, maps) -> np.ndarray:
    """Pearson r of ``x`` with each map (float64, blocks of rows), clipped to [-1, 1]."""
    maps = list(maps)
    r = np.empty(len(maps))
    for lo in range(0, len(maps), CORRELATION_BLOCK):
        rows = np.stack([np.asarray(m, np.float64) for m in maps[lo : lo + CORRELATION_BLOCK]])
        r[lo : lo + rows.shape[0]] = stats.pearson(x, rows)
    return np.clip(r, -1.0, 1.0)


def _density_batchable(estimator, target: str) -> bool:
    """Whether :func:`batched_density_maps` reproduces ``estimator``'s ``target`` map."""
    if type(estimator) not in (MKDADensity, KDA) or target not in DENSITY_TARGETS:
        return False
    if getattr(estimator, "null_method", None) != "approximate":
        return False
    weighted = isinstance(estimator, MKDADensity) and estimator.weighting not in (None, "uniform")
    return not weighted


def _check_fitted(decoder) -> None:
    if not hasattr(decoder, "results_"):
        raise AttributeError(
            f"This {type(decoder).__name__} instance is not fitted yet; call 'fit'"
            + (" or 'load_imgs'" if isinstance(decoder, CorrelationDecoder) else "")
            + " before 'transform'."
        )


def _with_table(results: MetaResult, table: pd.DataFrame) -> MetaResult:
    """Return a new result sharing the maps, with ``tables["correlation"]`` set."""
    new = results.copy()
    new.tables["correlation"] = table
    return new


@fill_doc
class CorrelationDecoder(Decoder):
    """Decode an image by correlating it with a meta-analytic map of each feature.

    Parameters
    ----------
    feature_group : str, optional
        Prefix of the annotation columns to use (``"Neurosynth_TFIDF"``; the ``__``
        separator is added). Default: every annotation column.
    features : list of str, optional
        Features to use; with ``feature_group`` they may be given with or without the
        prefix.
    %(frequency_threshold)s
    meta_estimator : estimator, optional
        Coordinate-based estimator making each feature's map; default ``MKDAChi2()``.
        A two-group estimator (``fit(dataset1, dataset2)``) compares the experiments with
        the feature against those without it.
    target_image : str
        Map of the estimator's result to keep (default ``"z_desc-association"``).
    n_cores : int
        Accepted for NiMARE compatibility; JAX uses the machine's threads itself.

    Attributes
    ----------
    features_ : list of str
        Decoded features.
    results_ : MetaResult
        ``maps`` holds one map per feature (float32 over the mask); after
        :meth:`transform`, ``tables["correlation"]``.

    Notes
    -----
    With ``MKDAChi2`` and any of its chi-square, p, z, logp or activation-probability
    maps, all features are computed at once (:func:`batched_chi2_maps`); each map equals
    a separate ``MKDAChi2().fit(with_feature, without_feature)``, including for a feature
    of a single experiment (which a direct ``MKDAChi2`` fit refuses, and NiMARE maps).
    Likewise for ``MKDADensity`` (unweighted) and ``KDA`` with the approximate null and a
    ``stat``, ``p``, ``z`` or ``logp`` target (:func:`batched_density_maps`). Any other
    estimator, map or option is fitted once per feature.
    Features carried by every experiment are skipped for two-group estimators, as in
    NiMARE. Correlations are computed in float64 and never exceed 1 in absolute value
    (NiMARE's float32 Pearson can give 1.0000025).
    """

    _required_inputs = ("coordinates", "annotations")

    def __init__(
        self,
        feature_group=None,
        features=None,
        frequency_threshold=0.001,
        meta_estimator=None,
        target_image="z_desc-association",
        n_cores=1,
    ):
        if meta_estimator is None:
            meta_estimator = MKDAChi2()
        elif isinstance(meta_estimator, type) or not callable(
            getattr(meta_estimator, "fit", None)
        ):
            raise TypeError(
                f"meta_estimator must be an estimator instance with a fit method, "
                f"got {meta_estimator!r}"
            )
        self.feature_group = feature_group
        self.features = features
        self.frequency_threshold = frequency_threshold
        self.meta_estimator = meta_estimator
        self.target_image = target_image
        self.n_cores = n_cores
        self._is_pairwise = "dataset2" in inspect.signature(meta_estimator.fit).parameters

    def _preprocess_input(self, dataset: Dataset) -> None:
        super()._preprocess_input(dataset)
        if self._is_pairwise:
            self._drop_features_in_every_experiment(dataset)

    def _fit(self, dataset: Dataset) -> None:
        ids = self.inputs_["id"]
        data = dataset.slice(ids)
        annotations = self.inputs_["annotations"]
        labels = label_matrix(annotations, self.features_, self.frequency_threshold)
        est = self.meta_estimator
        if isinstance(est, MKDAChi2) and self.target_image in ops_decode.CHI2_TARGETS:
            stacked = batched_chi2_maps(est.kernel_transformer, data, labels, self.target_image)
            maps = dict(zip(self.features_, stacked, strict=True))
        elif _density_batchable(est, self.target_image):
            stacked = batched_density_maps(est, data, labels, self.target_image)
            maps = dict(zip(self.features_, stacked, strict=True))
        else:
            maps = {
                feature: self._fit_one(data, np.asarray(ids)[labels[:, n]], feature)
                for n, feature in enumerate(self.features_)
            }
        self.results_ = MetaResult(
            maps=maps,
            mask=dataset.masker,
            description=(
                f"Meta-analytic maps ({self.target_image}) of {len(maps)} features were made "
                f"with {type(self.meta_estimator).__name__} over {len(ids)} experiments."
            ),
            estimator=self,
        )

    def _fit_one(self, data: Dataset, selected, feature: str) -> np.ndarray:
        """One feature's map by a separate fit of the estimator."""
        try:
            if self._is_pairwise:
                others = [i for i in data.ids if i not in set(selected)]
                result = self.meta_estimator.fit(data.slice(selected), data.slice(others))
            else:
                result = self.meta_estimator.fit(data.slice(selected))
            return np.asarray(result.get_map(self.target_image, return_type="array"), np.float32)
        except (DatasetError, KeyError) as exc:
            raise DatasetError(f"feature {feature!r}: {exc}") from exc

    def load_imgs(self, features_imgs, mask=None) -> None:
        """Use feature maps saved as images instead of fitting.

        Parameters
        ----------
        features_imgs : dict or str
            ``{feature: image path or image}``, or a folder whose ``*.nii*`` files are the
            maps (the feature is the file name before its first ``.``).
        mask : str, pathlib.Path or nibabel.Nifti1Image
            Mask of the maps (required); every image must be on its grid.
        """
        if isinstance(features_imgs, dict):
            named = dict(features_imgs)
        elif isinstance(features_imgs, str | os.PathLike):
            paths = sorted(glob(os.path.join(os.fspath(features_imgs), "*.nii*")))
            if not paths:
                raise DatasetError(f"no NIfTI image (*.nii*) in {os.fspath(features_imgs)!r}")
            named = {os.path.basename(p).split(os.extsep)[0]: p for p in paths}
        else:
            raise ValueError(
                f"features_imgs must be a dictionary or a folder path, not {type(features_imgs)}"
            )
        if mask is None:
            raise ValueError("A mask must be provided.")
        mask_img = load_mask(mask)
        maps = {
            feature: _masked_values(img, mask_img, f"image of feature {feature!r}").astype(
                np.float32
            )
            for feature, img in named.items()
        }
        self.features_ = list(maps)
        self.results_ = MetaResult(maps=maps, mask=mask_img, estimator=self)

    def transform(self, img) -> pd.DataFrame:
        """Correlate an image with every feature map.

        Parameters
        ----------
        img : str, pathlib.Path or nibabel.Nifti1Image
            Image on the decoder's mask grid.

        Returns
        -------
        pandas.DataFrame
            Index ``"feature"``, column ``"r"`` (Pearson correlation, float64). Also stored
            as ``results_.tables["correlation"]`` of a new ``results_``.
        """
        _check_fitted(self)
        x = _masked_values(img, self.results_.mask, "image to decode")
        features = list(self.results_.maps)
        r = _correlate(x, self.results_.maps.values())
        table = pd.DataFrame({"r": r}, index=pd.Index(features, name="feature"))
        self.results_ = _with_table(self.results_, table)
        return table


@fill_doc
class CorrelationDistributionDecoder(Decoder):
    """Decode an image by its correlations with the experiment images of each feature.

    Parameters
    ----------
    feature_group : str, optional
        Prefix of the annotation columns to use. Default: every annotation column.
    features : list of str, optional
        Features to use.
    %(frequency_threshold)s
    target_image : str
        Image type of the experiments to correlate with (default ``"z"``).
    n_cores : int
        Accepted for NiMARE compatibility.

    Attributes
    ----------
    results_ : MetaResult
        ``maps[feature]`` is the (n_experiments_with_feature, n_voxels) array of their images.

    Notes
    -----
    The image requirement is set on the instance, so decoders with different
    ``target_image`` do not affect one another (NiMARE 0.22.1 writes it into a dictionary
    shared by the class).
    """

    def __init__(
        self,
        feature_group=None,
        features=None,
        frequency_threshold=0.001,
        target_image="z",
        n_cores=1,
    ):
        self.feature_group = feature_group
        self.features = features
        self.frequency_threshold = frequency_threshold
        self.target_image = target_image
        self.n_cores = n_cores
        self._required_inputs = ("annotations", ("images", target_image))

    def _fit(self, dataset: Dataset) -> None:
        ids = self.inputs_["id"]
        images = load_images(dataset, self.target_image, ids=ids)
        annotations = self.inputs_["annotations"]
        labels = label_matrix(annotations, self.features_, self.frequency_threshold)
        maps = {f: images[labels[:, n]] for n, f in enumerate(self.features_)}
        self.results_ = MetaResult(maps=maps, mask=dataset.masker, estimator=self)

    def transform(self, img) -> pd.DataFrame:
        """Summarise the correlations of an image with each feature's experiment images.

        Parameters
        ----------
        img : str, pathlib.Path or nibabel.Nifti1Image
            Image on the dataset's mask grid.

        Returns
        -------
        pandas.DataFrame
            Index ``"feature"``, columns ``"mean"`` and ``"std"`` of the Fisher-transformed
            correlations (``arctanh(r)``) over the feature's experiments.
        """
        _check_fitted(self)
        x = _masked_values(img, self.results_.mask, "image to decode")
        rows = []
        for arr in self.results_.maps.values():
            z = np.arctanh(_correlate(x, arr))
            rows.append((z.mean(), z.std()))
        table = pd.DataFrame(
            rows,
            columns=["mean", "std"],
            index=pd.Index(list(self.results_.maps), name="feature"),
        )
        self.results_ = _with_table(self.results_, table)
        return table

"""Kernel transformers: turn a dataset's foci into modelled-activation (MA) maps.

The classes hold configuration and prepare arrays; the numerics are the pure functions of
:mod:`nimare_jax.ops.kernels` (and, for :class:`Peaks2MapsKernel`, the network of
:mod:`nimare_jax.ops.unet` on the grid of :mod:`nimare_jax.ops.coarse_grid`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.special import ndtr
from scipy import sparse

from nimare_jax.base import NiMAREBase
from nimare_jax.dataset import Dataset
from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError, excerpt
from nimare_jax.io.weights import load_weights
from nimare_jax.ops import coarse_grid, unet
from nimare_jax.ops import kernels as K
from nimare_jax.ops.validate import user_stacklevel
from nimare_jax.results import unmask
from nimare_jax.spatial import get_template, load_mask, mask_voxels

#: Standard deviation of the bundled peaks2maps network's error (reconstruction minus true
#: map) over the coarse brain mask of 200 held-out simulated studies (``MODEL_CARD.md``).
ERROR_SD = 0.88


@dataclass(frozen=True, eq=False)
class FociArrays(Mapping):
    """A dataset's foci and kernels as arrays for the ``ops`` layer.

    It also reads as NiMARE's ``estimator.inputs_`` dictionary of a coordinate-based
    estimator: ``arrays["id"]`` (the experiment ids) and ``arrays["coordinates"]`` (the foci
    table, one row per focus, in the order of ``ijk``).

    Attributes
    ----------
    ids : numpy.ndarray of str, shape (n_exp,)
        Experiment ids, in dataset order.
    ijk : numpy.ndarray, shape (n_foci, 3), int32
        Voxel indices of all foci, grouped by experiment in ``ids`` order.
    exp_index : numpy.ndarray, shape (n_foci,), int32
        Experiment (row of ``ids``) of each focus.
    exp_window : numpy.ndarray, shape (n_exp,), int32
        Kernel of each experiment (index into ``windows``).
    windows : numpy.ndarray, shape (n_windows, W, W, W), float64
        Kernels, centred.
    shape : tuple of 3 ints
        Volume shape.
    mask_index : numpy.ndarray, shape (n_voxels,), int32
        Flat C-order indices of the in-mask voxels.
    combine : {"max", "sum"}
        How an experiment's windows combine.
    ma_fn : callable or None
        For kernels that make whole-brain maps instead of per-focus windows (``windows``
        then holds one empty placeholder): pure ``ma_fn(ijk (n_exp, m, 3), valid (n_exp,
        m)) -> (n_exp, n_voxels)`` MA values over the mask, for the padded foci of
        :meth:`padded` or any relocation of them.
    coordinates : pandas.DataFrame or None
        The dataset's foci table rows behind ``ijk`` (same order).
    """

    ids: np.ndarray
    ijk: np.ndarray
    exp_index: np.ndarray
    exp_window: np.ndarray
    windows: np.ndarray
    shape: tuple
    mask_index: np.ndarray
    combine: str
    ma_fn: object = None
    coordinates: object = None

    # Identity semantics (Mapping's item-wise equality would compare arrays).
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __getitem__(self, key):
        if key == "id":
            return self.ids
        if key == "coordinates" and self.coordinates is not None:
            return self.coordinates
        raise KeyError(key)

    def __iter__(self):
        return iter(("id",) if self.coordinates is None else ("id", "coordinates"))

    def __len__(self):
        return 1 if self.coordinates is None else 2

    def slots(self):
        """Return ``(slot (n_exp, m) int32, valid (n_exp, m) bool)``: focus index per slot.

        Experiment ``e``'s foci are ``slot[e, valid[e]]``; padding slots point at focus 0.
        """
        n_exp = len(self.ids)
        counts = np.bincount(self.exp_index, minlength=n_exp)
        width = max(int(counts.max()) if n_exp else 0, 1)
        slot = np.zeros((n_exp, width), np.int32)
        valid = np.zeros((n_exp, width), bool)
        rank = np.arange(len(self.exp_index)) - np.repeat(np.cumsum(counts) - counts, counts)
        slot[self.exp_index, rank] = np.arange(len(self.exp_index))
        valid[self.exp_index, rank] = True
        return slot, valid

    def ma_values(self, windows=None):
        """MA values of every experiment over the mask, (n_exp, n_voxels).

        Parameters
        ----------
        windows : array, optional
            Kernels to place instead of ``self.windows`` (e.g. ``windows > 0``); ignored for
            whole-brain kernels (``ma_fn``).

        Returns
        -------
        jax.Array
            MA values (float64 under ``jax.enable_x64`` with float64 windows).
        """
        ijk, valid = self.padded()
        if self.ma_fn is not None:
            return self.ma_fn(ijk, valid)
        windows = self.windows if windows is None else windows
        return K.ma_values(
            ijk,
            valid,
            self.exp_window,
            jnp.asarray(windows),
            self.mask_index,
            self.shape,
            self.combine,
        )

    def ma_chunks(self, size: int, windows=None):
        """Yield the MA values of the experiments ``size`` at a time (bounded memory).

        Every chunk has the same shape (one compiled program); the last is padded with
        experiments without foci.

        Parameters
        ----------
        size : int
            Experiments per chunk.
        windows : array, optional
            As in :meth:`ma_values`; placed in float32.

        Yields
        ------
        lo : int
            First experiment of the chunk.
        m : int
            Its number of experiments (rows beyond ``m`` are padding).
        ma : jax.Array, shape (size, n_voxels)
            MA values over the mask of experiments ``lo`` to ``lo + m - 1``.
        """
        ijk, valid = self.padded()
        n_exp = ijk.shape[0]
        windows = jnp.asarray(self.windows if windows is None else windows, jnp.float32)
        mask_index = jnp.asarray(self.mask_index)  # on the device once, not per chunk
        for lo in range(0, n_exp, size):
            part = np.arange(lo, lo + size)
            keep = part < n_exp
            part = np.where(keep, part, 0)
            ok = valid[part] & keep[:, None]
            if self.ma_fn is not None:
                ma = self.ma_fn(ijk[part], ok)
            else:
                ma = K.ma_values(
                    ijk[part],
                    ok,
                    self.exp_window[part],
                    windows,
                    mask_index,
                    self.shape,
                    self.combine,
                )
            yield lo, int(keep.sum()), ma

    def padded(self):
        """Return foci padded per experiment: ``(ijk (n_exp, m, 3), valid (n_exp, m))``."""
        slot, valid = self.slots()
        return np.where(valid[..., None], self.ijk[slot], 0).astype(np.int32), valid


def drop_experiments_without_foci(dataset):
    """Return ``dataset`` without its experiments that have no foci, warning about them.

    NiMARE leaves such (image-only) experiments out of a coordinate-based analysis; the
    estimators call this before anything else, so weights and inputs agree.

    Parameters
    ----------
    dataset : nimare_jax.dataset.Dataset
        Studies, some possibly without coordinates.

    Returns
    -------
    nimare_jax.dataset.Dataset
        The dataset itself if every experiment has foci, else a slice.

    Raises
    ------
    DatasetError
        If no experiment has foci.
    """
    with_foci = set(dataset.coordinates["id"].unique())  # unique: far fewer than foci
    empty = [str(i) for i in dataset.ids if i not in with_foci]
    if not empty:
        return dataset
    names = ", ".join(excerpt(i) for i in empty[:5]) + (" ..." if len(empty) > 5 else "")
    if len(empty) == len(dataset.ids):
        raise DatasetError(
            f"{dataset.origin}: {len(empty)} experiment(s) have no foci; a coordinate-based "
            f"meta-analysis needs foci: {names}"
        )
    warnings.warn(
        f"{dataset.origin}: {len(empty)} experiment(s) have no foci and are left out of the "
        f"coordinate-based analysis: {names}",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
    return dataset.slice([i for i in dataset.ids if i in with_foci])


class KernelTransformer(NiMAREBase):
    """Base class: subclasses define :meth:`_windows` and the ``combine`` rule.

    ``ma_kind`` says what an MA value is -- ``"probability"`` (ALE's union needs it) or
    ``"binary"`` (an indicator of activation, summed by MKDA and KDA) --,
    :meth:`description` says in the methods text how foci were modelled and ``citations``
    adds BibTeX keys to the estimator's. Kernels that make
    whole-brain maps instead of per-focus windows override :meth:`_ma_fn`.
    """

    combine = "max"
    ma_kind = "probability"
    citations: tuple = ()

    def description(self) -> str:  # pragma: no cover - abstract
        """Return the methods sentence on how foci were modelled."""
        raise NotImplementedError

    def _windows(self, dataset) -> tuple[list[np.ndarray], np.ndarray]:
        raise NotImplementedError

    def _ma_fn(self, mask_img):
        """Whole-brain MA function (see :class:`FociArrays`), or None for window kernels."""
        return None

    def prepare(self, dataset) -> FociArrays:
        """Validate a dataset and return its foci and kernels as arrays.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset
            Studies with coordinates.

        Returns
        -------
        FociArrays
            Arrays for the ``ops`` layer.
        """
        if len(dataset.ids) == 0:
            raise DatasetError("the dataset has no experiments")
        dataset = drop_experiments_without_foci(dataset)
        coords = dataset.coordinates
        exp_index = pd.Index(dataset.ids).get_indexer(coords["id"])
        sort = np.argsort(exp_index, kind="stable")
        mask_img = load_mask(dataset.masker)
        shape, mask_index = mask_voxels(mask_img)
        ma_fn = self._ma_fn(mask_img)
        if ma_fn is None:
            windows, exp_window = self._windows(dataset)
        else:
            windows, exp_window = [np.zeros((1, 1, 1))], np.zeros(len(dataset.ids))
        return FociArrays(
            ids=np.asarray(dataset.ids),
            ijk=coords[["i", "j", "k"]].to_numpy(np.int32)[sort],
            exp_index=exp_index[sort].astype(np.int32),
            exp_window=np.asarray(exp_window, np.int32),
            windows=K.stack_windows(windows),
            shape=shape,
            mask_index=mask_index,
            combine=self.combine,
            ma_fn=ma_fn,
            coordinates=coords.iloc[sort].reset_index(drop=True),
        )

    def transform(self, dataset, masker=None, return_type: str = "image"):
        """Compute each experiment's modelled-activation map (NiMARE's signature).

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset or pandas.DataFrame
            Studies with coordinates, or a foci table (``id``, ``x``, ``y``, ``z``; see
            :meth:`~nimare_jax.dataset.Dataset.from_coordinates`).
        masker : mask image, path or nilearn masker, optional
            Mask to compute the maps in instead of the dataset's (voxel indices are
            recomputed from the foci's mm coordinates); required for a foci table.
        return_type : {"image", "array", "sparse", "summary_array"}
            ``"image"`` (default, as in NiMARE): a list of NIfTI images, one per experiment;
            ``"array"``: a (n_experiments, n_voxels) NumPy array over the mask;
            ``"sparse"``: the same as a :class:`scipy.sparse.csr_matrix`;
            ``"summary_array"``: its sum over experiments, shape (n_voxels,).

        Returns
        -------
        list of nibabel.Nifti1Image, numpy.ndarray or scipy.sparse.csr_matrix
            MA maps in the order of ``dataset.ids``.
        """
        if return_type not in ("image", "array", "sparse", "summary_array"):
            raise ValueError(
                "return_type must be 'image', 'array', 'sparse' or 'summary_array', got "
                f"{return_type!r}"
            )
        if isinstance(dataset, pd.DataFrame):  # a foci table, as NiMARE kernels accept
            if masker is None:
                raise ValueError("a masker is required to transform a coordinates table")
            dataset = Dataset.from_coordinates(dataset, masker)
        elif masker is not None:
            dataset = dataset.with_mask(masker)
        values = self._ma_values(dataset)
        if return_type == "array":
            return values
        if return_type == "sparse":
            return sparse.csr_matrix(values)
        if return_type == "summary_array":
            return values.sum(axis=0)
        return [unmask(v, load_mask(dataset.masker)) for v in values]

    def _ma_values(self, dataset) -> np.ndarray:
        """Return the (n_experiments, n_voxels) maps over the dataset's mask."""
        arrays = self.prepare(dataset)
        return np.asarray(arrays.ma_values(np.asarray(arrays.windows, np.float32)))


@fill_doc
class ALEKernel(KernelTransformer):
    """Gaussian ALE kernel with an experiment's sample size setting its width.

    Parameters
    ----------
    fwhm : float or None
        Fixed FWHM in mm for every experiment.
    sample_size : float or None
        Sample size used for every experiment instead of the dataset's ``sample_sizes``.
    %(kernel_memory)s

    Notes
    -----
    Without ``fwhm`` the FWHM follows Eickhoff et al. (2009) from each experiment's mean
    ``sample_sizes``. Each kernel sums to one on a 31^3 grid and is cropped where it falls
    below machine epsilon, as in NiMARE.
    """

    combine = "max"

    def __init__(
        self,
        fwhm: float | None = None,
        sample_size: float | None = None,
        memory=None,
        memory_level: int = 0,
    ):
        if fwhm is not None and sample_size is not None:
            raise ValueError("give ALEKernel either fwhm or sample_size, not both")
        for name, v in (("fwhm", fwhm), ("sample_size", sample_size)):
            if v is not None and not (np.isfinite(v) and v > 0):
                raise ValueError(f"ALEKernel {name} must be a positive number, got {v!r}")
        self.fwhm = fwhm
        self.sample_size = sample_size
        self.memory, self.memory_level = memory, memory_level

    def __repr__(self) -> str:
        return f"ALEKernel(fwhm={self.fwhm}, sample_size={self.sample_size})"

    def description(self) -> str:
        """Return the methods sentence on how foci were modelled.

        Returns
        -------
        str
            Text for an estimator's boilerplate.
        """
        if self.fwhm is not None:
            width = f"a fixed full width at half maximum of {self.fwhm} mm"
        elif self.sample_size is not None:
            width = f"a width set by a sample size of {self.sample_size} for every experiment"
        else:
            width = "a width set by each experiment's sample size [Eickhoff2009]"
        return (
            f"Each focus was modelled by a 3-D Gaussian kernel with {width}; modelled "
            "activation maps took the maximum over an experiment's foci [Turkeltaub2012]."
        )

    def fwhms(self, dataset) -> np.ndarray:
        """FWHM in mm of each experiment's kernel.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset
            Studies.

        Returns
        -------
        numpy.ndarray, shape (n_experiments,)
            FWHM values.
        """
        n = len(dataset.ids)
        if self.fwhm is not None:
            return np.full(n, float(self.fwhm))
        if self.sample_size:
            sizes = np.full(n, self.sample_size)
        else:
            try:
                sizes = dataset.get_sample_sizes()
            except DatasetError as err:
                raise DatasetError(
                    "ALEKernel sets each kernel's width from the experiment's sample size, "
                    f"and one is missing or invalid (give sample_size= or fwhm=): {err}"
                ) from err
        return np.asarray(K.fwhm_from_sample_size(sizes))

    def _windows(self, dataset):
        fwhms = self.fwhms(dataset)
        unique, inverse = np.unique(fwhms, return_inverse=True)
        voxel_size = load_mask(dataset.masker).header.get_zooms()[:3]
        return [K.ale_kernel(f, voxel_size) for f in unique], inverse


@fill_doc
class MKDAKernel(KernelTransformer):
    """Binary sphere of radius ``r`` mm; an experiment's spheres form a union (max).

    Parameters
    ----------
    r : float
        Sphere radius in mm (NiMARE's default 10).
    value : float
        Value inside the spheres.
    %(kernel_memory)s
    """

    combine = "max"
    ma_kind = "binary"

    def __init__(self, r: float = 10, value: float = 1, memory=None, memory_level: int = 0):
        if not (np.isfinite(r) and r >= 0):
            raise ValueError(f"sphere radius r must be a non-negative number, got {r!r}")
        self.r = r
        self.value = value
        self.memory, self.memory_level = memory, memory_level

    def __repr__(self) -> str:
        return f"{type(self).__name__}(r={self.r}, value={self.value})"

    def description(self) -> str:
        """Return the methods sentence on how foci were modelled.

        Returns
        -------
        str
            Text for an estimator's boilerplate.
        """
        spheres = (
            "each experiment's map was the union of its spheres"
            if self.combine == "max"
            else "the spheres of all foci were summed"
        )
        return f"Each focus was modelled by a binary sphere of radius {self.r} mm; {spheres}."

    def _windows(self, dataset):
        voxel_size = load_mask(dataset.masker).header.get_zooms()[:3]
        window = K.sphere_window(self.r, voxel_size, self.value)
        return [window], np.zeros(len(dataset.ids), int)


@fill_doc
class KDAKernel(MKDAKernel):
    """Binary sphere of radius ``r`` mm; an experiment's spheres are summed (KDA).

    Parameters
    ----------
    r : float
        Sphere radius in mm (NiMARE's default 10).
    value : float
        Value inside each sphere.
    %(kernel_memory)s
    """

    combine = "sum"


@lru_cache(maxsize=1)
def coarse_mask() -> np.ndarray:
    """Brain mask of the peaks2maps network: coarse voxels whose centre is in the brain.

    The MNI152 2 mm brain mask on :mod:`nimare_jax.ops.coarse_grid`'s grid (the mask the
    bundled network was trained with).

    Returns
    -------
    numpy.ndarray of bool, shape (32, 32, 32)
        Coarse brain mask.
    """
    mask = get_template("mni152_2mm")
    return coarse_grid.grid_mask(np.asanyarray(mask.dataobj) > 0, mask.affine)


class Peaks2MapsKernel(KernelTransformer):
    """Modelled activation from each experiment's map as reconstructed by a 3-D U-Net.

    The idea is Freyberg et al.'s peaks2maps (OHBM 2018): a network maps a study's peak
    coordinates, placed on a coarse 32^3 grid of 6 mm voxels, to its unthresholded
    statistical map. The bundled network was trained here, in JAX, **on simulated studies
    only** (smooth random fields plus Gaussian activation blobs; peaks reported as local
    maxima above z = 3.1, at least 8 mm apart; see ``resources/peaks2maps/MODEL_CARD.md``).
    Its output is resampled (trilinear, in world coordinates) to the dataset's mask.

    The MA value of a voxel is the probability that the experiment's true map exceeds the
    peak-reporting threshold there, given the reconstruction ``z_hat`` and a Gaussian
    reconstruction error: ``Phi((z_hat - threshold) / error_sd)`` -- a probability of
    activation, as ALE's union needs. With ``binary=True`` it is the indicator
    ``z_hat > threshold``, the analogue of MKDA's sphere, as MKDADensity and KDA need.
    :meth:`reconstruct` gives the reconstructed maps themselves.

    Parameters
    ----------
    weights : str, os.PathLike or None
        Network weights (``.npz`` written by :func:`nimare_jax.io.weights.save_params`);
        None uses the bundled ones.
    binary : bool
        Binary MA maps (for MKDADensity and KDA) instead of probabilities (for ALE).
    threshold : float
        Threshold on the reconstructed z map (default 3.1, the simulated studies' peak
        threshold).
    error_sd : float
        Standard deviation of the reconstruction error (default :data:`ERROR_SD`, measured on
        held-out simulated studies; on them the resulting probabilities are calibrated within
        a few percentage points, see the model card).

    Notes
    -----
    Accepted by :class:`~nimare_jax.meta.cbma.ale.ALE` (``binary=False``),
    :class:`~nimare_jax.meta.cbma.mkda.MKDADensity` and :class:`~nimare_jax.meta.cbma.mkda.KDA`
    (``binary=True``), with either null method and Monte Carlo FWE correction. Monte Carlo
    steps run the network on every relocated experiment (about 40 ms per experiment on one
    CPU core; use a GPU, or the approximate null, for large runs).
    """

    combine = "max"
    value = 1.0
    citations = ("Freyberg2018",)

    @property
    def ma_kind(self) -> str:
        """``"binary"`` or ``"probability"``, following ``binary``."""
        return "binary" if self.binary else "probability"

    def __init__(self, weights=None, binary=False, threshold=3.1, error_sd=ERROR_SD):
        if not error_sd > 0:
            raise ValueError(f"error_sd must be positive, got {error_sd!r}")
        self.weights = weights
        self.binary = bool(binary)
        self.threshold = float(threshold)
        self.error_sd = float(error_sd)

    def __repr__(self) -> str:
        return (
            f"Peaks2MapsKernel(weights={self.weights!r}, binary={self.binary}, "
            f"threshold={self.threshold}, error_sd={self.error_sd})"
        )

    def description(self) -> str:
        """Return the methods sentence on how foci were modelled.

        Returns
        -------
        str
            Text for an estimator's boilerplate.
        """
        ma = (
            f"the indicator of the reconstruction exceeding z = {self.threshold:g}"
            if self.binary
            else f"the probability that the true map exceeds z = {self.threshold:g} given the "
            f"reconstruction and a Gaussian reconstruction error of SD {self.error_sd:g}"
        )
        return (
            "Each experiment's unthresholded map was reconstructed from its foci by a "
            "peaks2maps network [Freyberg2018] trained by nimare_jax on simulated studies "
            f"only, and its modelled activation was {ma}."
        )

    def reconstruct(self, dataset) -> np.ndarray:
        """Reconstructed unthresholded z maps over the dataset's mask, one per experiment.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset
            Studies with coordinates.

        Returns
        -------
        numpy.ndarray, shape (n_experiments, n_voxels), float32
            Maps in the order of ``dataset.ids``.
        """
        arrays = self.prepare(dataset)
        ijk, valid = arrays.padded()
        return np.asarray(jax.jit(self._reconstruct_fn(load_mask(dataset.masker)))(ijk, valid))

    def _reconstruct_fn(self, mask_img):
        """Pure ``fn(ijk (n_exp, m, 3) mask voxels, valid) -> (n_exp, n_voxels)`` z maps."""
        params, _ = load_weights(None if self.weights is None else str(self.weights))
        coarse_brain = jnp.asarray(coarse_mask(), jnp.float32)
        to_mask = coarse_grid.mask_sampler(np.asanyarray(mask_img.dataobj) > 0, mask_img.affine)
        rotation = jnp.asarray(mask_img.affine[:3, :3], jnp.float32)
        shift = jnp.asarray(mask_img.affine[:3, 3], jnp.float32)

        def one(peaks):
            return unet.apply(params, peaks[None], coarse_brain)[0]

        def fn(ijk, valid):
            xyz = ijk.astype(jnp.float32) @ rotation.T + shift
            peaks = coarse_grid.peak_images(coarse_grid.coarse_ijk(xyz), valid)
            return to_mask(jax.lax.map(one, peaks, batch_size=8))

        return fn

    def _ma_fn(self, mask_img):
        reconstruct = self._reconstruct_fn(mask_img)
        if self.binary:
            return lambda ijk, valid: (reconstruct(ijk, valid) > self.threshold).astype(
                jnp.float32
            )
        return lambda ijk, valid: ndtr((reconstruct(ijk, valid) - self.threshold) / self.error_sd)

"""Image-based meta-analysis estimators, with NiMARE's names, parameters and output maps.

Each estimator loads the images it needs from a :class:`~nimare_jax.dataset.Dataset`
(:func:`nimare_jax.io.images.load_images`: one image at a time, resampled to the mask when
grids differ), marks which study has a usable value at which voxel (finite and non-zero, and
for variances above ``1 / sqrt(float max)``: smaller or negative varcopes are left out with a
warning), and calls a voxel-wise function of
:mod:`nimare_jax.ops.esma` over chunks of voxels, so memory is bounded by the chunk size
rather than by the number of voxels.

Missing data follow NiMARE: by default (``aggressive_mask=False``) each voxel is analysed
over the studies that have it -- the voxel-wise equivalent of NiMARE's liberal-mask bags --
and voxels with fewer than two such studies are NaN. ``aggressive_mask=True`` analyses only
voxels present in every study. Missing values are never zero-filled.

Where the values do not vary across studies (zero variance up to rounding: identical
images, constant voxels) a t statistic (:class:`PermutedOLS`) or a Knapp-Hartung variance
is undefined. Such voxels are NaN in every map, with a warning giving their number, and
never enter the FWE null; if no covered voxel is left, fitting raises
:class:`~nimare_jax.exceptions.ImageError`. (NiMARE passes such voxels to nilearn's
``permuted_ols``, whose t there divides by a zero residual sum of squares.)

Output maps are float64 arrays over the mask's voxels: ``z``, ``p``, ``logp`` (``-log10 p``)
and ``dof`` for every estimator; ``est`` and ``se`` for the meta-regression estimators;
``tau2`` where it is estimated; ``sigma2`` for :class:`SampleSizeBasedLikelihood`; ``t``
for :class:`PermutedOLS`.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from nimare_jax.base import NiMAREBase
from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError, ImageError
from nimare_jax.io.images import get_image_paths, image_types, load_images
from nimare_jax.meta.fwe import fwe_map, fwe_null, fwe_options
from nimare_jax.nimads import as_dataset  # NiMARE's path of the Studyset coercion
from nimare_jax.ops import esma, signflip
from nimare_jax.ops.permute import run_permutations
from nimare_jax.ops.stats import logp_to_z
from nimare_jax.ops.validate import IGNORED_NIMARE_OPTIONS, user_stacklevel
from nimare_jax.results import MetaResult
from nimare_jax.spatial import load_mask

__all__ = [
    "DerSimonianLaird",
    "FixedEffectsHedges",
    "Fishers",
    "Hedges",
    "IBMAEstimator",
    "PermutedOLS",
    "SampleSizeBasedLikelihood",
    "Stouffers",
    "VarianceBasedLikelihood",
    "WeightedLeastSquares",
]

_LN10 = math.log(10.0)
#: Entries of a (n_studies x chunk) float64 block processed at once (~32 MB per array).
_CHUNK_ENTRIES = 1 << 22
_MIN_VARCOPE = 1.0 / math.sqrt(np.finfo(np.float32).max)
_IMAGE_NAMES = {"z_maps": "z", "t_maps": "t", "beta_maps": "beta", "varcope_maps": "varcope"}


def _chunk_size(n_studies: int, n_voxels: int) -> int:
    size = max(256, _CHUNK_ENTRIES // max(n_studies, 1))
    size = 1 << int(math.floor(math.log2(size)))  # powers of two: few distinct compilations
    return int(min(size, 1 << int(math.ceil(math.log2(max(n_voxels, 1))))))


def apply_chunked(fn, arrays: dict, valid: np.ndarray, per_study=None, chunk=None) -> dict:
    """Evaluate a voxel-wise function over chunks of voxels, in float64.

    Parameters
    ----------
    fn : callable
        ``fn(valid=..., **arrays, **per_study) -> dict of (chunk,) arrays``; jit-compiled
        by the caller (it is called once per chunk with identical shapes).
    arrays : dict of str to numpy.ndarray, each (n_studies, n_voxels)
        Per-study, per-voxel inputs (float32 or float64 on the host).
    valid : numpy.ndarray of bool, (n_studies, n_voxels)
        Which entries are usable.
    per_study : dict of str to numpy.ndarray, each (n_studies,), optional
        Per-study constants (sample sizes, weights).
    chunk : int, optional
        Voxels per chunk (default: about 4 M study-voxel entries per chunk).

    Returns
    -------
    dict of str to numpy.ndarray of float64, each (n_voxels,)
        The outputs of ``fn`` concatenated over chunks.
    """
    n_studies, n_voxels = valid.shape
    chunk = chunk or _chunk_size(n_studies, n_voxels)
    per_study = {k: np.asarray(v, np.float64) for k, v in (per_study or {}).items()}
    pieces: dict[str, list] = {}
    with jax.enable_x64(True):
        for start in range(0, n_voxels, chunk):
            stop = min(start + chunk, n_voxels)
            pad = chunk - (stop - start)
            block = {}
            for name, arr in arrays.items():
                part = np.asarray(arr[:, start:stop], np.float64)
                block[name] = np.pad(part, ((0, 0), (0, pad)), constant_values=1.0)
            vpart = np.pad(valid[:, start:stop], ((0, 0), (0, pad)), constant_values=False)
            out = fn(valid=vpart, **block, **per_study)
            for name, val in out.items():
                pieces.setdefault(name, []).append(np.asarray(val)[: stop - start])
    return {name: np.concatenate(vals).astype(np.float64) for name, vals in pieces.items()}


def _usable(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values) & (values != 0)


class IBMAEstimator(NiMAREBase):
    """Base class of the image-based meta-analysis estimators.

    Parameters
    ----------
    aggressive_mask : bool
        If True, analyse only voxels with a usable (finite, non-zero) value in every study.
        If False (NiMARE's default), each voxel is analysed over the studies that have it.
    mask : str, pathlib.Path, nibabel.Nifti1Image, nilearn masker or None
        Mask to analyse within (default: the dataset's); kept as given in ``masker`` and
        read when fitting, where a region-averaging masker is refused.
    **kwargs
        ``resample__<name>`` options passed to :func:`nilearn.image.resample_to_img` for
        images whose grid differs from the mask's (default linear interpolation, clipped).
        ``groupby`` (NiMARE 0.22): which images share participants -- None (default) groups
        them by study, a string names a metadata field, an array gives one label per image,
        False declares every image independent. nimare_jax records the groups
        (``inputs_["contrast_names"]``, one integer per image) but does not model the
        dependence: when a group holds several images it warns that they are treated as
        independent (NiMARE instead uses Brown's method, variance inflation or
        cluster-robust errors). NiMARE's ``memory``, ``memory_level`` and
        ``generate_description`` are accepted and ignored (see
        ``nimare_jax.ops.validate.IGNORED_NIMARE_OPTIONS``).
    """

    #: ``inputs_`` keys of the images needed, in the order the model takes them.
    _image_inputs: tuple = ()
    _needs_sample_sizes = False
    _citations: tuple = ("Salo2023", "SalimiKhorshidi2009")
    #: Fewest analyses a fit accepts (one gives no replication to estimate a variance).
    _min_analyses = 2

    def __init__(self, aggressive_mask: bool = False, *, mask=None, **kwargs):
        self.groupby = kwargs.pop("groupby", None)
        resample = {k: v for k, v in kwargs.items() if k.startswith("resample__")}
        unknown = sorted(set(kwargs) - set(resample) - IGNORED_NIMARE_OPTIONS)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword argument(s): "
                f"{', '.join(repr(k) for k in unknown)} (resampling options must be prefixed "
                "with 'resample__')"
            )
        self.aggressive_mask = bool(aggressive_mask)
        self.masker = mask  # as given; read (and a labels masker refused) at fit, as NiMARE
        self._resample_kwargs = {k[len("resample__") :]: v for k, v in resample.items()}
        self.inputs_: dict = {}

    # ------------------------------------------------------------------ inputs
    def _collect_inputs(
        self, dataset, n_submitted: int | None = None, drop_empty: bool = False
    ) -> dict:
        """Load images and metadata; validate; return ``inputs_``."""
        dataset = self._with_required_images(dataset)
        n = len(dataset.ids)
        if n < self._min_analyses:
            n_submitted = n if n_submitted is None else n_submitted
            lacking = n_submitted - n
            fate = (
                f"; the other {lacking} lacked required input(s) "
                f"{', '.join(repr(k) for k in self._image_inputs)}."
                if lacking
                else "."
            )
            raise DatasetError(
                f"{type(self).__name__} needs at least {self._min_analyses} analyses, got {n}: "
                "one analysis has "
                f"no replication to estimate a variance from. {n} of the {n_submitted} "
                f"submitted reached the estimator{fate}"
            )
        mask = load_mask(self.masker if self.masker is not None else dataset.masker)
        inputs = {"id": np.asarray(dataset.ids), "mask": mask}
        for key in self._image_inputs:
            inputs[key] = load_images(
                dataset, _IMAGE_NAMES[key], mask=mask, resample_kwargs=self._resample_kwargs
            )
        if self._needs_sample_sizes:
            inputs["sample_sizes"] = dataset.get_sample_sizes()
        return self._validate_inputs(inputs, drop_empty)

    def _with_required_images(self, dataset):
        """Leave out experiments lacking a required image type, with a warning (as NiMARE)."""
        names = [_IMAGE_NAMES[k] for k in self._image_inputs]
        have = np.ones(len(dataset.ids), bool)
        for name in names:
            paths = get_image_paths(dataset, name) if name in image_types(dataset) else None
            have &= np.array([p is not None for p in paths or [None] * len(have)])
        if have.all() or not have.any():  # none usable: load_images names what is missing
            return dataset
        dropped = [str(i) for i in np.asarray(dataset.ids)[~have]]
        warnings.warn(
            f"{type(self).__name__}: {len(dropped)} experiment(s) lack a {'/'.join(names)} "
            f"image and are left out: {', '.join(dropped[:10])}"
            + (" ..." if len(dropped) > 10 else ""),
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        return dataset.slice(np.asarray(dataset.ids)[have])

    def _validate_inputs(self, inputs: dict, drop_empty: bool = False) -> dict:
        validity = np.logical_and.reduce([_usable(inputs[k]) for k in self._image_inputs])
        if "varcope_maps" in self._image_inputs:
            # a variance must be positive: inverse-variance weights of negative or vanishing
            # varcopes are meaningless or infinite, so those entries are missing data
            varcope = inputs["varcope_maps"]
            bad = _usable(varcope) & (varcope <= _MIN_VARCOPE)
            if bad.any():
                warnings.warn(
                    f"{type(self).__name__}: {int(bad.sum())} varcope values are negative or "
                    f"not above {_MIN_VARCOPE:.3g}; those study-voxel entries are left out "
                    "(treated as missing).",
                    UserWarning,
                    stacklevel=user_stacklevel(),
                )
            validity &= ~bad
        empty = ~validity.any(axis=1)
        if empty.any():
            names = "/".join(repr(_IMAGE_NAMES[k]) for k in self._image_inputs)
            bad = ", ".join(repr(str(i)) for i in inputs["id"][empty][:10])
            what = (
                f"{int(empty.sum())} experiment(s) have no voxel with a usable (finite, "
                f"non-zero) value in their {names} image(s) within the mask: {bad}"
            )
            if not drop_empty or empty.all():
                raise ImageError(
                    what
                    + (
                        "; nothing to meta-analyse. Check the images' space."
                        if empty.all()
                        else ". Remove them from the dataset (Dataset.slice), fit with "
                        "drop_invalid=True, or check the images' space."
                    )
                )
            warnings.warn(f"{what}; they are left out.", UserWarning, stacklevel=user_stacklevel())
            n = len(empty)
            inputs = {
                k: v[~empty] if isinstance(v, np.ndarray) and v.shape[:1] == (n,) else v
                for k, v in inputs.items()
            }
            validity = validity[~empty]
            if len(inputs["id"]) < self._min_analyses:
                raise DatasetError(
                    f"{type(self).__name__} needs at least {self._min_analyses} analyses; "
                    f"{len(inputs['id'])} of the {n} with images have usable values"
                )
        n_voxels = validity.shape[1]
        if self.aggressive_mask:
            keep = validity.all(axis=0)
            validity &= keep[None, :]
            if (~keep).any():
                warnings.warn(
                    f"aggressive_mask: {int((~keep).sum())} of {n_voxels} voxels lack a usable "
                    "value in at least one study and are left out (NaN).",
                    UserWarning,
                    stacklevel=4,
                )
        covered = validity.sum(axis=0) >= 2
        if not covered.any():
            raise ImageError(
                "no voxel has usable values in at least two studies; the images do not "
                "overlap within the mask"
            )
        inputs["valid"] = validity
        return inputs

    # --------------------------------------------------------------------- fit
    def fit(self, dataset, drop_invalid: bool = True) -> MetaResult:
        """Fit the estimator to a dataset with images.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset or Studyset
            Experiments with the image types this estimator needs.
        drop_invalid : bool
            Leave out, with a warning, experiments lacking a required image or whose image
            has no usable (finite, non-zero) voxel in the mask (default, as NiMARE); False
            refuses the latter with an error naming them.

        Returns
        -------
        MetaResult
            The maps; ``result.estimator`` is this fitted estimator.
        """
        dataset = as_dataset(dataset)
        given = [str(i) for i in dataset.ids]
        dataset = self._with_required_images(dataset)
        self.inputs_ = self._collect_inputs(dataset, len(given), drop_empty=drop_invalid)
        if len(self.inputs_["id"]) < len(dataset.ids):  # images without a usable voxel
            dataset = dataset.slice(self.inputs_["id"])
        self.dataset_ = dataset
        self.inputs_["contrast_names"] = self._group_codes(dataset, given)
        return self._result(self._fit(self.inputs_))

    def _group_codes(self, dataset, given: list) -> np.ndarray:
        """Integer group of each image from ``groupby``, warning if a group has several."""
        ids = [str(i) for i in dataset.ids]
        if self.groupby is False:
            return np.arange(len(ids))
        if self.groupby is None or isinstance(self.groupby, str):
            field = "study_id" if self.groupby is None else self.groupby
            table = dataset.metadata
            if field not in table.columns:
                raise DatasetError(
                    f"groupby={field!r}: the dataset's metadata has no column {field!r}"
                )
            by_id = dict(zip(table["id"].astype(str), table[field], strict=True))
            labels = [str(by_id[i]) for i in ids]
        else:
            labels = [str(v) for v in np.asarray(self.groupby, dtype=object).ravel()]
            if len(labels) not in (len(ids), len(given)):
                raise ValueError(
                    f"groupby must hold one label per image: expected {len(ids)}, got "
                    f"{len(labels)}"
                )
            if len(labels) != len(ids):  # images were left out: their labels go with them
                kept = set(ids)
                labels = [lab for i, lab in zip(given, labels, strict=True) if i in kept]
        codes = {lab: n for n, lab in enumerate(sorted(set(labels)))}
        if len(codes) < len(labels):
            what = (
                f"groupby={self.groupby!r}"
                if self.groupby is None or isinstance(self.groupby, str)
                else "by the groupby labels"
            )
            warnings.warn(
                f"{type(self).__name__}: {len(labels) - len(codes)} image(s) share a group "
                f"({what}) with another image; nimare_jax does not model "
                "that dependence and treats them as independent, which overstates "
                "significance if they share participants. Pass groupby=False to silence.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        return np.array([codes[lab] for lab in labels])

    def fit_arrays(self, arrays: dict, mask, sample_sizes=None, ids=None) -> MetaResult:
        """Fit the estimator to masked arrays instead of a dataset.

        Parameters
        ----------
        arrays : dict of str to array, each (n_studies, n_voxels)
            Keyed by image type (``"z"``, ``"beta"``, ``"varcope"``).
        mask : nibabel.Nifti1Image
            Mask whose voxels the columns are.
        sample_sizes : array-like, shape (n_studies,), optional
            Needed by the estimators that use sample sizes.
        ids : list of str, optional
            Study names used in messages.

        Returns
        -------
        MetaResult
            The maps.
        """
        types = {v: k for k, v in _IMAGE_NAMES.items()}
        first = np.asarray(next(iter(arrays.values())))
        n = first.shape[0]
        if n < 2:
            raise DatasetError(f"{type(self).__name__} needs at least 2 studies, got {n}")
        inputs = {"id": np.asarray(ids if ids is not None else [f"study-{i}" for i in range(n)])}
        inputs["mask"] = load_mask(mask)
        for name, values in arrays.items():
            if types[name] in self._image_inputs:  # float32, without copying if already so
                inputs[types[name]] = np.asarray(values, np.float32)
        missing = [_IMAGE_NAMES[k] for k in self._image_inputs if k not in inputs]
        if missing:
            raise DatasetError(f"{type(self).__name__} needs {missing} arrays")
        if self._needs_sample_sizes:
            if sample_sizes is None:
                raise DatasetError(f"{type(self).__name__} needs sample sizes")
            inputs["sample_sizes"] = np.asarray(sample_sizes, float)
        self.inputs_ = self._validate_inputs(inputs)
        return self._result(self._fit(self.inputs_))

    def _result(self, maps: dict) -> MetaResult:
        maps = dict(maps)
        self._check_defined(maps["z"])
        if "log_p" in maps:
            maps["logp"] = -maps.pop("log_p") / _LN10
        return MetaResult(
            maps=maps,
            mask=self.inputs_["mask"],
            tables=self._tables(),
            description=self._description(),
            citations=self._citations,
            # a snapshot, as NiMARE's deep copy: a later fit must not change this result
            estimator=copy.copy(self),
        )

    def _check_defined(self, z: np.ndarray) -> None:
        """Warn about (or, if none is left, refuse) covered voxels without a statistic.

        Where the values do not vary across studies (identical images, constant voxels)
        a t statistic or a Knapp-Hartung variance is undefined; such voxels are NaN, like
        voxels covered by fewer than two studies, and never enter an FWE null.
        """
        covered = self.inputs_["valid"].sum(axis=0) >= 2
        undefined = covered & np.isnan(z)
        n_undefined, n_covered = int(undefined.sum()), int(covered.sum())
        if n_undefined == n_covered:
            raise ImageError(
                f"{type(self).__name__}: the values do not vary across studies at any of the "
                f"{n_covered} voxels covered by two or more studies (zero variance: are the "
                "images identical?); there is nothing to test"
            )
        if n_undefined:
            warnings.warn(
                f"{type(self).__name__}: {n_undefined} of {n_covered} voxels have values that "
                "do not vary across studies (zero variance, e.g. identical images); their "
                "statistic is undefined: NaN in every map, and left out of FWE correction.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )

    def _tables(self) -> dict:
        return {}

    def _fit(self, inputs: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _description(self) -> str:  # pragma: no cover - abstract
        return ""

    def _describe(self, what: str) -> str:
        """Return the methods paragraph of a fit.

        Parameters
        ----------
        what : str
            The images analysed and the method, completing "An image-based meta-analysis
            was performed with nimare_jax on <n> ".

        Returns
        -------
        str
            The paragraph, followed by the inference and missing-data notes.
        """
        return (
            "An image-based meta-analysis was performed with nimare_jax on "
            f"{len(self.inputs_['id'])} {what}" + self._inference_text() + self._missing_text()
        )

    def _inference_text(self) -> str:
        return ""

    def _missing_text(self) -> str:
        if self.aggressive_mask:
            return " Only voxels with usable values in every study were analysed."
        return (
            " Each voxel was analysed over the studies with a usable (finite, non-zero) value "
            "there; voxels covered by fewer than two studies were left empty."
        )


@functools.cache
def _voxelwise(name: str, **options):
    """Return the :mod:`~nimare_jax.ops.esma` function ``name`` with its options bound, jitted.

    Parameters
    ----------
    name : str
        Name of the voxel-wise function in :mod:`nimare_jax.ops.esma`.
    **options
        Static options bound to it (``two_sided``, ``small_sample_correction``, ``method``,
        ``tau2``).

    Returns
    -------
    callable
        ``fn(valid=..., **arrays)``, cached per name and options, for :func:`apply_chunked`.
    """
    return jax.jit(functools.partial(getattr(esma, name), **options))


class _CombinationTest(IBMAEstimator):
    """Shared options and fit of the tests that combine z statistics.

    Parameters
    ----------
    two_sided, use_sample_size, aggressive_mask, mask, **kwargs
        See :class:`Fishers`; subclasses set ``_test`` and ``_sample_size_weights``.
    """

    _image_inputs = ("z_maps",)
    #: Name of the :mod:`~nimare_jax.ops.esma` test.
    _test = ""

    def __init__(self, two_sided: bool = True, use_sample_size: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.two_sided = two_sided
        self.use_sample_size = use_sample_size
        self._needs_sample_sizes = use_sample_size

    def _sample_size_weights(self, sample_sizes):  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit(self, inputs):
        per_study = {}
        if self.use_sample_size:
            per_study["weights"] = self._sample_size_weights(inputs["sample_sizes"])
        fn = _voxelwise(self._test, two_sided=self.two_sided)
        return apply_chunked(fn, {"z": inputs["z_maps"]}, inputs["valid"], per_study)


@fill_doc
class Fishers(_CombinationTest):
    """Fisher's combined probability test on z-statistic images (Fisher 1946).

    Parameters
    ----------
    %(two_sided_combination)s
    use_sample_size : bool
        Weight each study's ``-2 log p`` by its sample size, referring the weighted sum to
        Brown's scaled chi-square (default False).
    %(ibma_kwargs)s

    Notes
    -----
    Needs ``z`` images. Output maps: ``z``, ``p``, ``logp``, ``dof``.
    """

    _test = "fisher"

    def _sample_size_weights(self, sample_sizes):
        return sample_sizes

    def _description(self):
        weighting = ", with studies weighted by sample size" if self.use_sample_size else ""
        return self._describe(
            "z-statistic images using Fisher's combined probability method (Fisher, 1946)"
            f"{weighting}."
        )


@fill_doc
class Stouffers(_CombinationTest):
    """Stouffer's z test on z-statistic images (Stouffer et al. 1949).

    Parameters
    ----------
    use_sample_size : bool
        Weight studies by the square root of their sample sizes (Zaykin 2011).
    %(two_sided_combination)s
    %(ibma_kwargs)s

    Notes
    -----
    Needs ``z`` images (and ``sample_sizes`` metadata if ``use_sample_size``). Output maps:
    ``z``, ``p``, ``logp``, ``dof``.
    """

    _test = "stouffer"

    def __init__(self, use_sample_size: bool = False, two_sided: bool = True, **kwargs):
        super().__init__(two_sided=two_sided, use_sample_size=use_sample_size, **kwargs)

    def _sample_size_weights(self, sample_sizes):
        return np.sqrt(sample_sizes)

    def _description(self):
        weighting = (
            ", with studies weighted by the square root of their sample sizes"
            if self.use_sample_size
            else ""
        )
        return self._describe(
            f"z-statistic images using Stouffer's method (Stouffer et al., 1949){weighting}."
        )


_CORRECTIONS = (None, "knapp-hartung", "wald")


class _RegressionEstimator(IBMAEstimator):
    """Shared options and fit of the estimators that pool betas (and variances).

    Parameters
    ----------
    small_sample_correction : {None, "knapp-hartung", "wald"}
        None keeps PyMARE's default for each estimator: Knapp-Hartung (t reference with
        k - 1 dof, scaled variance) where tau^2 is estimated, Wald for
        :class:`WeightedLeastSquares`.
    """

    _image_inputs = ("beta_maps", "varcope_maps")
    _default_correction = "knapp-hartung"
    _map_names = ("z", "p", "log_p", "est", "se", "tau2", "dof")
    #: Name of the :mod:`~nimare_jax.ops.esma` model.
    _model = ""

    def __init__(self, small_sample_correction=None, **kwargs):
        if small_sample_correction not in _CORRECTIONS:
            raise ValueError(
                f"small_sample_correction must be one of {list(_CORRECTIONS)}, got "
                f"{small_sample_correction!r}"
            )
        super().__init__(**kwargs)
        self.small_sample_correction = small_sample_correction

    @property
    def _correction(self):
        return self.small_sample_correction or self._default_correction

    def _model_options(self) -> dict:
        return {}

    def _fit(self, inputs):
        fn = _voxelwise(
            self._model, small_sample_correction=self._correction, **self._model_options()
        )
        arrays = {"y": inputs["beta_maps"]}
        if "varcope_maps" in self._image_inputs:
            arrays["v"] = inputs["varcope_maps"]
        per_study = {"n": inputs["sample_sizes"]} if self._needs_sample_sizes else None
        maps = apply_chunked(fn, arrays, inputs["valid"], per_study)
        return {k: maps[k] for k in self._map_names}

    def _inference_text(self):
        if self._correction == "knapp-hartung":
            return (
                " Standard errors were scaled with the Knapp-Hartung adjustment and tests "
                "referred to a t distribution with k - 1 degrees of freedom (Knapp & Hartung, "
                "2003)."
            )
        return " Tests used a normal reference (Wald)."


@fill_doc
class WeightedLeastSquares(_RegressionEstimator):
    """Weighted least-squares meta-analysis with a known tau^2 (Brockwell & Gordon 2001).

    Parameters
    ----------
    tau2 : float
        Assumed between-study variance (default 0: fixed effects).
    small_sample_correction : {None, "wald", "knapp-hartung"}
        None means Wald, PyMARE's default here.
    %(ibma_kwargs)s

    Notes
    -----
    Needs ``beta`` and ``varcope`` images. Output maps: ``z``, ``p``, ``logp``, ``est``,
    ``se``, ``dof``; the table ``level-estimator`` holds ``tau2``.
    """

    _default_correction = "wald"
    _map_names = ("z", "p", "log_p", "est", "se", "dof")
    _model = "random_effects"

    def __init__(self, tau2: float = 0, **kwargs):
        super().__init__(**kwargs)
        if np.ndim(tau2) != 0 or not float(tau2) >= 0:
            raise ValueError(f"tau2 must be a number >= 0, got {tau2!r}")
        self.tau2 = tau2

    def _model_options(self):
        return {"tau2": float(self.tau2)}

    def _tables(self):
        return {"level-estimator": pd.DataFrame({"tau2": [self.tau2]})}

    def _description(self):
        return self._describe(
            "beta and variance images using weighted least squares (Brockwell & Gordon, "
            f"2001) with an a priori tau-squared of {self.tau2} at every voxel."
        )


@fill_doc
class FixedEffectsHedges(WeightedLeastSquares):
    """Fixed-effects meta-analysis of Hedges' g computed from t images (Bossier et al. 2019).

    Each study's one-sample t image and sample size ``n`` give Cohen's ``d = t / sqrt(n)``,
    Hedges' ``g = h d`` with the small-sample factor ``h = 1 - 3 / (4 (n - 1) - 1)``, and
    its variance ``(n - 1) (1 + n d^2) h^2 / (n (n - 3)) - d^2`` (as NiMARE); ``g`` and that
    variance are then pooled by weighted least squares with the assumed ``tau2``
    (:class:`WeightedLeastSquares`).

    Parameters
    ----------
    tau2 : float
        Assumed between-study variance (default 0: fixed effects).
    small_sample_correction : {None, "wald", "knapp-hartung"}
        None means Wald, as in :class:`WeightedLeastSquares`.
    %(ibma_kwargs)s

    Notes
    -----
    Needs ``t`` images and ``sample_sizes`` metadata (more than 3 subjects per study, for
    the variance to be defined). Output maps: ``z``, ``p``, ``logp``, ``est``, ``se``,
    ``dof``; the table ``level-estimator`` holds ``tau2``.
    """

    _image_inputs = ("t_maps",)
    _needs_sample_sizes = True
    _citations = ("Salo2023", "SalimiKhorshidi2009", "Bossier2019")

    def _fit(self, inputs):
        n = np.asarray(inputs["sample_sizes"], np.float64)
        if np.any(n <= 3):
            bad = [str(i) for i, k in zip(inputs["id"], n, strict=True) if k <= 3]
            raise DatasetError(
                f"{type(self).__name__} needs more than 3 subjects per study for the variance "
                f"of Hedges' g; sample size <= 3 in: {', '.join(bad[:5])}"
            )
        n = n[:, None]
        d = np.asarray(inputs["t_maps"], np.float64) / np.sqrt(n)
        h = 1.0 - 3.0 / (4.0 * (n - 1.0) - 1.0)
        variance = (n - 1.0) * (1.0 + n * d**2) * h**2 / (n * (n - 3.0)) - d**2
        fn = _voxelwise(
            self._model, small_sample_correction=self._correction, **self._model_options()
        )
        maps = apply_chunked(fn, {"y": d * h, "v": variance}, inputs["valid"])
        return {k: maps[k] for k in self._map_names}

    def _description(self):
        return self._describe(
            "t-statistic images, converted to Hedges' g with the variance of bias-corrected "
            "Cohen's d and pooled by weighted least squares (Brockwell & Gordon, 2001; Bossier "
            f"et al., 2019) with an a priori tau-squared of {self.tau2} at every voxel."
        )


@fill_doc
class DerSimonianLaird(_RegressionEstimator):
    """DerSimonian-Laird random-effects meta-analysis (DerSimonian & Laird 1986).

    tau^2 is estimated voxel-wise by the method of moments.

    Parameters
    ----------
    %(small_sample_correction)s
    %(ibma_kwargs)s

    Notes
    -----
    %(regression_maps)s
    """

    _model = "dersimonian_laird"
    _citations = ("Salo2023", "SalimiKhorshidi2009", "DerSimonian1986")

    def _description(self):
        return self._describe(
            "beta and variance images using the DerSimonian-Laird random-effects method, with "
            "tau-squared estimated voxel-wise by the method of moments (DerSimonian & Laird, "
            "1986)."
        )


@fill_doc
class Hedges(_RegressionEstimator):
    """Hedges' random-effects meta-analysis (Hedges & Olkin 1985).

    Parameters
    ----------
    %(small_sample_correction)s
    %(ibma_kwargs)s

    Notes
    -----
    %(regression_maps)s
    """

    _model = "hedges"

    def _description(self):
        return self._describe(
            "beta and variance images using the Hedges random-effects method, with "
            "tau-squared estimated voxel-wise (Hedges & Olkin, 1985)."
        )


@fill_doc
class _LikelihoodEstimator(_RegressionEstimator):
    """Shared ``method`` option of the (restricted) maximum-likelihood estimators.

    Parameters
    ----------
    %(likelihood_method)s
    """

    def __init__(self, method: str = "ml", **kwargs):
        super().__init__(**kwargs)
        self.method = esma.check_method(method)

    def _model_options(self):
        return {"method": self.method}

    @property
    def _likelihood_text(self) -> str:
        return "restricted maximum" if self.method == "reml" else "maximum"


@fill_doc
class VarianceBasedLikelihood(_LikelihoodEstimator):
    """Likelihood-based random-effects meta-analysis with known variances.

    tau^2 and the pooled effect are estimated voxel-wise by maximum likelihood (``"ml"``)
    or restricted maximum likelihood (``"reml"``); the profile likelihood is maximised by
    a grid scan followed by golden-section search, vectorised over voxels.

    Parameters
    ----------
    %(likelihood_method)s
    %(small_sample_correction)s
    %(ibma_kwargs)s

    Notes
    -----
    %(regression_maps)s
    """

    _model = "variance_based_likelihood"

    def _description(self):
        return self._describe(
            f"beta and variance images using variance-based {self._likelihood_text} "
            "likelihood estimation, with tau-squared estimated voxel-wise."
        )


@fill_doc
class SampleSizeBasedLikelihood(_LikelihoodEstimator):
    """Likelihood-based meta-analysis with known sample sizes and unknown variances.

    Each study's variance is ``tau2 + sigma2 / n``, with one within-study variance
    ``sigma2`` shared by all studies; both are estimated voxel-wise by ML or REML.

    Parameters
    ----------
    %(likelihood_method)s
    %(small_sample_correction)s
    %(ibma_kwargs)s

    Notes
    -----
    Needs ``beta`` images and ``sample_sizes`` metadata (not all equal). Output maps:
    ``z``, ``p``, ``logp``, ``est``, ``se``, ``tau2``, ``sigma2``, ``dof``.
    """

    _image_inputs = ("beta_maps",)
    _needs_sample_sizes = True
    _map_names = ("z", "p", "log_p", "est", "se", "tau2", "sigma2", "dof")
    _model = "sample_size_based_likelihood"

    def _fit(self, inputs):
        n = np.asarray(inputs["sample_sizes"], float)
        if np.ptp(n) < math.sqrt(np.finfo(float).eps):
            raise DatasetError(
                "SampleSizeBasedLikelihood cannot separate tau^2 from sigma^2 when every "
                f"study has the same sample size (all {n[0]:g})"
            )
        return super()._fit(inputs)

    def _description(self):
        return self._describe(
            f"beta images using sample size-based {self._likelihood_text} likelihood "
            "estimation, with tau-squared and sigma-squared estimated voxel-wise."
        )


@fill_doc
class PermutedOLS(IBMAEstimator):
    """One-sample t test of beta images with a sign-flipping max-statistic FWE null.

    Parameters
    ----------
    two_sided : bool
        Two-sided test (default) or one-sided test of positive effects.
    use_sample_size : bool
        Weight each study by its sample size (default False: the ordinary one-sample t).
        The statistic is then the weighted mean's CR2 robust t (Hedges et al. 2010),
        referred to Satterthwaite degrees of freedom (Tipton 2015), as in NiMARE 0.22; see
        :func:`nimare_jax.ops.esma.weighted_one_sample_t`.
    n_jobs : int
        Kept for NiMARE compatibility; parallelism comes from ``n_cores`` in
        :meth:`correct_fwe_montecarlo` (devices of the permutation engine).
    random_state : int or None
        Seed of the sign flips (default 42, as NiMARE).
    %(ibma_kwargs)s

    Notes
    -----
    Needs ``beta`` images (and ``sample_sizes`` metadata with ``use_sample_size``). Output
    maps: ``t``, ``z`` (same one-tailed probability as t), ``p``, ``logp``, ``dof``. With
    sample-size weights the degrees of freedom fall below ``k - 1`` as the weights become
    unequal (one dominant study pulls them towards 1).
    :class:`~nimare_jax.correct.FWECorrector` with
    ``method="montecarlo"`` adds ``{p,z,logp}_level-voxel_corr-FWE_method-montecarlo``:
    each study's map is multiplied by a random sign per iteration (Winkler et al. 2014),
    the maximum ``|z|`` over voxels is recorded, and the corrected p of a voxel is
    ``(#(null max >= |z|) + 1) / (n_iters + 1)``. Iteration ``i`` draws its signs from
    ``fold_in(key(random_state), i)``, so the null does not depend on batch size or
    device count.
    """

    _image_inputs = ("beta_maps",)

    def __init__(
        self,
        two_sided: bool = True,
        use_sample_size: bool = False,
        n_jobs: int = 1,
        random_state=42,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.two_sided = two_sided
        self.use_sample_size = use_sample_size
        self._needs_sample_sizes = use_sample_size
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _fit(self, inputs):
        if self.use_sample_size:
            fn = _voxelwise("weighted_one_sample_t")
            per_study = {"weights": inputs["sample_sizes"]}
        else:
            fn, per_study = _voxelwise("one_sample_t"), None
        maps = apply_chunked(fn, {"y": inputs["beta_maps"]}, inputs["valid"], per_study)
        if not self.two_sided:
            with jax.enable_x64(True):
                t, dof = jnp.asarray(maps["t"]), jnp.asarray(maps["dof"])
                log_p = np.asarray(esma.log_t_sf(t, jnp.where(jnp.isnan(dof), 1.0, dof)))
            maps["log_p"] = np.where(np.isnan(maps["t"]), np.nan, log_p)
            maps["p"] = np.exp(maps["log_p"])
        return {k: maps[k] for k in ("t", "z", "p", "log_p", "dof")}

    def _description(self):
        if self.use_sample_size:
            return self._describe(
                "beta images using a one-sample test weighted by sample size at each voxel: "
                "the weighted mean's bias-reduced (CR2) robust t statistic [Hedges2010], "
                "referred to Student's t with Satterthwaite degrees of freedom [Tipton2015]."
            )
        return self._describe(
            "beta images using a one-sample t test (ordinary least squares) at each voxel."
        )

    @property
    def _citations(self):
        extra = ("Hedges2010", "Tipton2015") if self.use_sample_size else ()
        return (*IBMAEstimator._citations, *extra)

    #: Sign flips per device per dispatch (``batch_size=None``).
    _fwe_batch_size = 64

    @fill_doc
    def correct_fwe_montecarlo(
        self,
        result,
        voxel_thresh: float = 0.001,
        n_iters: int | None = None,
        n_cores: int = 1,
        vfwe_only: bool | None = None,
        *,
        connectivity: int = 6,
        batch_size: int | None = None,
        tolerance: float | None = None,
        label_backend: str = "auto",
        progress: bool | None = None,
    ):
        """Voxel-level FWE correction with a sign-flipping max-``|z|`` null.

        Parameters and returns as :meth:`nimare_jax.meta.fwe.MonteCarloFWE.correct_fwe_montecarlo`
        (``n_iters=None``: 5000, NiMARE's default). Voxel level only: ``vfwe_only``
        defaults to True and False is an error; ``voxel_thresh``, ``connectivity`` and
        ``label_backend`` have no use. Maps: ``{p,z,logp}_level-voxel_corr-FWE_method-
        montecarlo``; null ``values_level-voxel_corr-fwe_method-montecarlo`` (the
        per-iteration maxima).

        Parameters
        ----------
        %(fwe_montecarlo_parameters)s

        Returns
        -------
        %(fwe_montecarlo_returns)s
        """
        opts = fwe_options(
            self,
            voxel_thresh=voxel_thresh,
            n_iters=n_iters,
            n_cores=n_cores,
            vfwe_only=vfwe_only,
            connectivity=connectivity,
            batch_size=batch_size,
            tolerance=tolerance,
            label_backend=label_backend,
            progress=progress,
            default_n_iters=5000,
            default_batch_size=self._fwe_batch_size,
            cluster_level=False,
        )
        observed = np.asarray(result.maps["z"], np.float64)
        seed = self.random_state
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31 - 1))
        with jax.enable_x64(True):
            weights = self.inputs_["sample_sizes"] if self.use_sample_size else None
            dof = np.asarray(result.maps["dof"], np.float64)
            summary, operands = _sign_flip_summary(
                self.inputs_["beta_maps"],
                self.inputs_["valid"],
                np.flatnonzero(np.isfinite(observed)),
                dof,
                self.two_sided,
                weights,
            )
            res = run_permutations(
                summary,
                jax.random.key(int(seed)),
                opts.n_iters,
                batch_size=opts.batch_size,
                n_devices=opts.n_cores,
                progress=opts.progress,
                desc="PermutedOLS sign flips",
                stop_fn=opts.stopper(lambda samples: samples),
                operands=operands,
            )
        null = np.asarray(res.samples, np.float64)
        stat = np.abs(observed) if self.two_sided else observed
        sorted_null = np.sort(null)
        finite = np.isfinite(stat)
        exceed = null.size - np.searchsorted(sorted_null, stat[finite], side="left")
        p = np.full(stat.shape, np.nan)
        p[finite] = (exceed + 1.0) / (null.size + 1.0)
        sign = np.where(observed < 0, -1.0, 1.0)
        with jax.enable_x64(True):
            tail = "two" if self.two_sided else "one"
            z = np.asarray(logp_to_z(np.log(p), tail=tail)) * sign
        maps = {fwe_map("p"): p, fwe_map("z"): z, fwe_map("logp"): -np.log10(p)}
        nulls = {fwe_null(): null}
        text = (
            "Family-wise error rate correction was performed with a max-statistic null "
            "distribution built by randomly flipping the sign of each study's map "
            "[Winkler2014]; the maximum was taken over z statistics so that voxels covered by "
            f"different numbers of studies are comparable. {res.n_iters} iterations were "
            "performed."
        )
        n_constant = int(((self.inputs_["valid"].sum(axis=0) >= 2) & ~finite).sum())
        if n_constant:
            text += (
                f" {n_constant} voxels whose values did not vary across studies (undefined "
                "statistic) were left out."
            )
        return maps, nulls, text, ("Winkler2014",)


def _sign_flip_summary(y, valid, columns, dof, two_sided: bool, weights=None):
    """Return ``summary(key, *operands) -> max z`` for one random sign flip, and operands.

    The summary is :func:`nimare_jax.ops.signflip.sign_flip_summary` (cached per
    configuration); this prepares its arrays. ``y`` are the studies' values (entries not
    ``valid`` are ignored); only the voxels ``columns`` (those with a defined observed
    statistic) enter the maximum, grouped by their degrees of freedom (``dof``, the fit's
    map). Host-side preparation runs over chunks of voxels, so no float64
    (n_studies, n_voxels) temporary is made. Call under ``jax.enable_x64(True)``.
    """
    dof = dof[columns]
    n_terms = 1 if weights is None else 2
    n_studies, n_voxels = y.shape[0], columns.size
    # float64 unless that would exceed ~256 MB (float32 sums of a few hundred terms still
    # carry ~1e-6 relative error, immaterial for a max statistic but batch-shape dependent)
    dtype = np.float64 if n_studies * n_voxels * n_terms <= _CHUNK_ENTRIES * 8 else np.float32
    linear = [np.empty((n_studies, n_voxels), dtype) for _ in range(n_terms)]
    fixed = np.empty((3, n_voxels))
    chunk = _chunk_size(n_studies, n_voxels)
    for start in range(0, n_voxels, chunk):
        part = slice(start, start + chunk)
        mc = valid[:, columns[part]]
        yc = np.where(mc, y[:, columns[part]], 0.0).astype(np.float64)  # float64 sums
        mc = mc.astype(np.float64)
        if weights is None:
            linear[0][:, part] = yc
            fixed[:2, part] = (yc * yc).sum(0), mc.sum(0)
        else:
            q, a, total, _ = (np.asarray(v) for v in esma.cr2_weights(weights, mc))
            linear[0][:, part], linear[1][:, part] = q * yc, a * yc
            fixed[:, part] = (a * yc * yc).sum(0), a.sum(0), total
    linear = [jnp.asarray(linear.pop(0)) for _ in range(n_terms)]  # host copies released
    fixed = jnp.asarray(fixed, jnp.float64)
    classes, inverse = np.unique(dof, return_inverse=True)
    n_classes = int(classes.size)
    seg = jnp.asarray(inverse.ravel(), jnp.int32)
    class_dof = jnp.asarray(classes, jnp.float64)

    t_stat = esma.t_from_sums if weights is None else esma.cr2_t
    summary = signflip.sign_flip_summary(t_stat, esma.t_to_z, bool(two_sided), n_classes)
    return summary, (linear, fixed, seg, class_dof)

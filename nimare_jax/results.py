"""The :class:`MetaResult` container, registered as a JAX pytree.

Maps are 1-D arrays over the in-mask voxels (the canonical in-memory form); they are the
pytree's children together with the null distributions, so a result can pass through
``jax.jit`` or ``jax.vmap``. The mask, tables, description and citations are static
auxiliary data.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import jax
import nibabel as nib
import numpy as np
import pandas as pd

from nimare_jax import references
from nimare_jax.base import read_pickle, write_pickle
from nimare_jax.docstrings import fill_doc
from nimare_jax.spatial import get_masker, load_mask


class _Static:
    """Auxiliary data of a flattened result, compared by value so ``jit`` caches hit.

    Two results from the same estimator on the same mask flatten to equal aux data, so a
    second ``jax.jit`` call over a result of the same shapes does not trace again. The mask
    is compared by its geometry and voxels, tables by their contents, the estimator by
    identity (a fitted estimator is not a value).
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def _key(self):
        return (
            self.mask.shape,
            self.mask.affine.tobytes(),
            tuple(self.tables),
            self.description,
            self.citations,
            id(self.estimator),
            id(self.corrector),
        )

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        if not isinstance(other, _Static) or self._key() != other._key():
            return False
        same_mask = self.mask is other.mask or np.array_equal(
            np.asanyarray(self.mask.dataobj), np.asanyarray(other.mask.dataobj)
        )
        return same_mask and all(self.tables[k].equals(other.tables[k]) for k in self.tables)


class DroppedInput:
    """Stand-in for an input array left out by ``MetaResult.save(..., with_inputs=False)``.

    Reading it in any way (an attribute such as ``.shape``, indexing, iterating, converting
    to an array) raises a :class:`RuntimeError` naming the ``estimator.inputs_`` key, so an
    operation that needs the input images (Monte Carlo FWE of an image-based estimator, a
    report) says why it cannot run instead of failing obscurely.

    Parameters
    ----------
    key : str
        The ``estimator.inputs_`` key whose array was left out.
    """

    def __init__(self, key: str):
        self._key = key

    def _raise(self, *args, **kwargs):
        raise RuntimeError(
            f"estimator.inputs_[{self._key!r}] was left out when this MetaResult was saved "
            "with with_inputs=False; refit the estimator, or save the result with "
            "with_inputs=True, to run what reads the input images"
        )

    def __getattr__(self, name):
        if name.startswith("_"):  # let pickle and copy probe for their hooks
            raise AttributeError(name)
        self._raise()

    __array__ = _raise
    __getitem__ = _raise
    __iter__ = _raise
    __len__ = _raise

    def __repr__(self) -> str:
        return f"DroppedInput({self._key!r})"


def _without_input_images(estimator):
    """Return a shallow copy of ``estimator`` whose input image arrays are placeholders.

    The keys replaced are the image inputs an image-based estimator declares
    (``_image_inputs``) and ``data_bags``; ids, mask and sample sizes are kept. An estimator
    without such inputs (a coordinate-based one) is returned unchanged.
    """
    inputs = getattr(estimator, "inputs_", None)
    if not isinstance(inputs, dict):
        return estimator
    dropped = (set(getattr(estimator, "_image_inputs", ())) | {"data_bags"}) & set(inputs)
    if not dropped:
        return estimator
    stripped = copy.copy(estimator)
    stripped.inputs_ = {k: DroppedInput(k) if k in dropped else v for k, v in inputs.items()}
    return stripped


@jax.tree_util.register_pytree_node_class
class MetaResult:
    """Maps, tables and null distributions produced by an estimator or corrector.

    The positional arguments follow NiMARE 0.22's ``MetaResult(estimator, corrector=None,
    diagnostics=None, mask=None, maps=None, tables=None, description="")``; the null
    distributions and citations that nimare_jax adds are keyword-only.

    Parameters
    ----------
    estimator : object or None
        The fitted estimator that produced the result (correctors need it).
    corrector : object or None
        The corrector whose output this is, if any.
    diagnostics : list or None
        Diagnostics applied to the result (empty list if None).
    mask : nibabel.Nifti1Image, str, pathlib.Path or nilearn masker
        Binary mask the maps are defined on (a masker or a path is converted to its mask
        image with :func:`~nimare_jax.spatial.load_mask`).
    maps : dict of str to array, each shape (n_voxels,), optional
        Statistical maps over the mask's voxels, named as NiMARE names them (``stat``, ``p``,
        ``z``, ``logp``, ``z_level-voxel_corr-FWE_method-montecarlo``, ...).
    tables : dict of str to pandas.DataFrame, optional
        Tables (cluster tables, diagnostics).
    description : str
        A methods paragraph describing what was done, with citation keys in brackets.
    null_distributions : dict of str to array, optional
        Null distributions (histogram bins and weights, per-iteration maxima).
    citations : tuple of str
        BibTeX keys of ``resources/references.bib`` cited by the description.

    Attributes
    ----------
    masker : nilearn.maskers.NiftiMasker
        A fitted masker of ``mask`` (made on first use), as NiMARE's ``MetaResult.masker``.
    """

    def __init__(
        self,
        estimator=None,
        corrector=None,
        diagnostics=None,
        mask=None,
        maps=None,
        tables=None,
        description: str = "",
        *,
        null_distributions=None,
        citations=(),
    ):
        self.maps = dict(maps or {})
        self.null_distributions = dict(null_distributions or {})
        self.mask = mask if isinstance(mask, nib.Nifti1Image) else load_mask(mask)
        self.tables = dict(tables or {})
        self.description = description
        self.citations = tuple(citations)
        self.estimator = estimator
        self.corrector = corrector
        self.diagnostics = list(diagnostics or [])

    @property
    def description_(self) -> str:
        """NiMARE's name of :attr:`description`."""
        return self.description

    @description_.setter
    def description_(self, text: str) -> None:
        self.description = text

    @property
    def masker(self):
        """Fitted nilearn masker of :attr:`mask` (NiMARE's ``MetaResult.masker``)."""
        cached = self.__dict__.get("_masker")
        if cached is None or cached[0] is not self.mask:
            cached = (self.mask, get_masker(self.mask))
            self.__dict__["_masker"] = cached
        return cached[1]

    # -------------------------------------------------------------------- pytree
    def tree_flatten(self):
        """Return the maps and nulls as children and everything else as static aux data."""
        aux = _Static(
            mask=self.mask,
            tables=self.tables,
            description=self.description,
            citations=self.citations,
            estimator=self.estimator,
            corrector=self.corrector,
            diagnostics=self.diagnostics,
        )
        return (self.maps, self.null_distributions), aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        """Rebuild a result from :meth:`tree_flatten`'s output."""
        obj = object.__new__(cls)
        obj.maps, obj.null_distributions = children
        obj.mask, obj.tables, obj.description = aux.mask, aux.tables, aux.description
        obj.citations, obj.estimator = aux.citations, aux.estimator
        obj.corrector, obj.diagnostics = aux.corrector, aux.diagnostics
        return obj

    def __repr__(self) -> str:
        return f"MetaResult({type(self.estimator).__name__}, maps={sorted(self.maps)})"

    # ------------------------------------------------------------------- access
    def get_map(self, name: str, return_type: str = "image"):
        """Return one map as a NIfTI image or as a 1-D array over the mask.

        Parameters
        ----------
        name : str
            Map name, e.g. ``"z"`` or ``"logp_level-voxel_corr-FWE_method-montecarlo"``.
        return_type : {"image", "array"}
            ``"image"``: a :class:`nibabel.Nifti1Image` on the mask's grid (zero outside);
            ``"array"``: a :class:`numpy.ndarray` of shape (n_voxels,).

        Returns
        -------
        nibabel.Nifti1Image or numpy.ndarray
            The map.
        """
        if name not in self.maps:
            raise KeyError(f"no map {name!r}; available: {sorted(self.maps)}")
        values = np.asarray(self.maps[name])
        if return_type == "array":
            return values
        if return_type != "image":
            raise ValueError(f"return_type must be 'image' or 'array', got {return_type!r}")
        return unmask(values, self.mask)

    def copy(self) -> MetaResult:
        """Return a copy whose map and table dictionaries can be changed independently.

        Returns
        -------
        MetaResult
            The copy.
        """
        new = copy.copy(self)
        new.maps, new.tables = dict(self.maps), dict(self.tables)
        new.null_distributions = dict(self.null_distributions)
        return new

    # -------------------------------------------------------------------- files
    @fill_doc
    def save(self, filename, compress: bool = True, with_inputs: bool = True) -> None:
        """Pickle the result (with its estimator and corrector) to a file, as NiMARE's.

        Parameters
        ----------
        %(save_params)s
        with_inputs : bool
            Keep the estimator's input image arrays (default True). False replaces them by
            :class:`DroppedInput` placeholders, which makes an image-based result's file
            much smaller; maps, tables, ids, corrections and diagnostics that refit from
            the dataset still work, while Monte Carlo FWE correction of an image-based
            estimator and reports raise a ``RuntimeError`` naming the dropped input.
        """
        obj = self
        if not with_inputs:
            obj = copy.copy(self)
            obj.estimator = _without_input_images(self.estimator)
        write_pickle(obj, filename, compress)

    @classmethod
    @fill_doc
    def load(cls, filename, compressed: bool = True) -> MetaResult:
        """Read a result written by :meth:`save`.

        Parameters
        ----------
        %(load_params)s

        Returns
        -------
        MetaResult
            The result (of the class it was saved as).

        Raises
        ------
        TypeError
            If the file holds something other than a ``cls`` instance.
        """
        return read_pickle(cls, filename, compressed)

    @fill_doc
    def save_maps(self, output_dir=".", prefix: str = "", names=None) -> list[Path]:
        """Write maps as ``{prefix}_{name}.nii.gz`` (``{name}.nii.gz`` without a prefix).

        Parameters
        ----------
        %(output_dir)s
        %(prefix)s
        names : list of str or None
            Maps to write (all if None).

        Returns
        -------
        list of pathlib.Path
            Written files.
        """
        return write_files(
            output_dir,
            prefix,
            (
                (f"{name}.nii.gz", self.get_map(name).to_filename)
                for name in names or sorted(self.maps)
            ),
        )

    @fill_doc
    def save_tables(self, output_dir=".", prefix: str = "") -> list[Path]:
        """Write tables as tab-separated ``{prefix}_{name}.tsv`` files.

        Parameters
        ----------
        %(output_dir)s
        %(prefix)s

        Returns
        -------
        list of pathlib.Path
            Written files.
        """
        return write_files(
            output_dir,
            prefix,
            (
                (
                    f"{name}.tsv",
                    functools.partial(pd.DataFrame(table).to_csv, sep="\t", index=False),
                )
                for name, table in sorted(self.tables.items())
            ),
        )

    def boilerplate(self) -> str:
        """Return the methods paragraph with author-year citations and its reference list.

        Returns
        -------
        str
            ``description`` with ``[Key]`` citations resolved against
            ``resources/references.bib``, then the formatted references.
        """
        return references.format_boilerplate(self.description, self.citations)

    @property
    def bibtex_(self) -> str:
        """NiMARE's attribute: the BibTeX entries cited (:meth:`bibtex`); "" if none."""
        text = self.bibtex()
        return text if text.strip() else ""

    def bibtex(self) -> str:
        """Return the BibTeX entries cited by the description and ``citations``.

        Returns
        -------
        str
            The entries, in order of first citation.
        """
        return references.bibtex(references.cited_keys(self.description, self.citations))

    @fill_doc
    def save_boilerplate(self, output_dir=".", prefix: str = "") -> list[Path]:
        """Write ``{prefix}_boilerplate.txt`` and ``{prefix}_references.bib``.

        Without a prefix the files are ``boilerplate.txt`` and ``references.bib``.

        Parameters
        ----------
        %(output_dir)s
        %(prefix)s

        Returns
        -------
        list of pathlib.Path
            Written files.
        """
        text, bib = self.boilerplate(), self.bibtex()
        return write_files(
            output_dir,
            prefix,
            (
                (name, functools.partial(Path.write_text, data=content, encoding="utf-8"))
                for name, content in (("boilerplate.txt", text), ("references.bib", bib))
            ),
        )


@fill_doc
def write_files(output_dir, prefix: str, files) -> list[Path]:
    """Write files named ``{prefix}_{name}`` (``{name}`` without a prefix) into a folder.

    Parameters
    ----------
    %(output_dir)s
    %(prefix)s
    files : iterable of (str, callable)
        Each file's name and a function writing it to the path it is given.

    Returns
    -------
    list of pathlib.Path
        The paths, in the order of ``files``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, write in files:
        path = out / f"{prefix + '_' if prefix else ''}{name}"
        write(path)
        written.append(path)
    return written


def unmask(values, mask: nib.Nifti1Image) -> nib.Nifti1Image:
    """Place a 1-D array of in-mask values into a volume on the mask's grid.

    Parameters
    ----------
    values : array-like, shape (n_voxels,) or (n_maps, n_voxels)
        Values in C order of the mask's non-zero voxels.
    mask : nibabel.Nifti1Image
        Binary mask.

    Returns
    -------
    nibabel.Nifti1Image
        3-D (or 4-D for several maps) float32 image, zero outside the mask.
    """
    values = np.asarray(values)
    inside = np.asanyarray(mask.dataobj) > 0
    n = int(inside.sum())
    if values.shape[-1] != n:
        raise ValueError(f"expected {n} in-mask values, got shape {values.shape}")
    dtype = np.float32 if values.dtype.kind == "f" or values.dtype == bool else values.dtype
    if values.ndim == 1:
        vol = np.zeros(inside.shape, dtype=dtype)
        vol[inside] = values
    else:
        vol = np.zeros(inside.shape + (values.shape[0],), dtype=dtype)
        vol[inside] = values.T
    img = nib.Nifti1Image(vol, mask.affine)
    img.header.set_xyzt_units("mm")
    return img

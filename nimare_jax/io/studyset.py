"""The :class:`Studyset`: NiMARE 0.22's NIMADS container, as a second face of a Dataset.

A studyset is a NIMADS document (studies -> analyses -> points and images) plus the
annotations attached to its analyses. Its tables (``coordinates``, ``metadata``,
``images``, ``texts``, ``annotations_df``) are those of the :class:`~nimare_jax.dataset.Dataset`
that :func:`~nimare_jax.io.nimads.convert_nimads_to_dict` reads from the same document, so
the two containers cannot disagree; :meth:`Studyset.to_dataset` returns that dataset and
:meth:`Studyset.from_dataset` goes the other way.

A studyset is a value: selections (:meth:`~Studyset.slice`, :meth:`~Studyset.select_points`)
and edits (:meth:`~Studyset.with_annotation`, ...) return a new studyset sharing the same
read-only store. Analyses are named by their full id ``"{study id}-{analysis id}"`` (the
dataset's ids) or by their analysis id alone.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import itertools
import math
import operator
import os
import pickle
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError, InputFileError, InvalidStudysetError, excerpt
from nimare_jax.io.neurosynth import convert_neurosynth_to_dataset
from nimare_jax.io.nimads import (
    POINT_VALUE_KINDS,
    _images,
    _space_name,
    convert_dataset_to_nimads_dict,
    convert_nimads_to_dict,
    convert_sleuth_to_nimads_dict,
    label_columns,
    match_notes,
)
from nimare_jax.io.nimare_json import _json_value, _write_json
from nimare_jax.parsing import load_json
from nimare_jax.spatial import load_mask, mm2vox, mni2tal, outside_volume, tal2mni

ID_COLS = ["id", "study_id", "contrast_id"]
_TEMPLATE_TARGETS = ("mni152_2mm", "ale_2mm")
_VALUE_COLUMNS = {kind: column for column, kind in POINT_VALUE_KINDS.items()}
_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
#: How many unresolved ids an error message names before counting the rest.
_NAMED_IDS = 10


# ------------------------------------------------------------------ nested accessors
@dataclass
class Point:
    """One focus: ``coordinates`` (x, y, z in the studyset's space), ``space``, ``values``."""

    id: str | None
    coordinates: list
    space: str | None
    kind: str | None = None
    values: dict = field(default_factory=dict)

    @property
    def x(self) -> float:
        """The x coordinate (mm)."""
        return self.coordinates[0]

    @property
    def y(self) -> float:
        """The y coordinate (mm)."""
        return self.coordinates[1]

    @property
    def z(self) -> float:
        """The z coordinate (mm)."""
        return self.coordinates[2]


@dataclass
class Image:
    """One statistical image of an analysis; a relative ``filename`` is resolved."""

    id: str | None
    value_type: str | None
    filename: str | None
    url: str | None
    space: str | None


@dataclass(eq=False)
class Analysis:
    """One analysis (a Dataset experiment) with its points, images, metadata and notes."""

    id: str
    name: str | None
    description: str | None
    full_id: str
    metadata: dict
    texts: dict
    conditions: list
    weights: list
    points: list
    images: list
    annotations: dict
    study: Study | None = field(default=None, repr=False)

    @property
    def labels(self) -> dict:
        """The notes of every annotation merged into one ``{label: value}`` dict."""
        out = {}
        for note in self.annotations.values():
            out.update(note)
        return out

    def get_metadata(self) -> dict:
        """Return the study's metadata overridden by the analysis' own."""
        return {**(self.study.metadata if self.study else {}), **self.metadata}


@dataclass(eq=False)
class Study:
    """One study (publication) and the analyses of it that the studyset holds."""

    id: str
    name: str | None
    authors: str | None
    publication: str | None
    doi: str | None
    pmid: str | None
    year: int | None
    description: str | None
    metadata: dict
    analyses: list


@dataclass(frozen=True)
class Annotation:
    """A NIMADS annotation: ``notes`` maps full analysis ids to ``{label: value}``."""

    id: str
    name: str
    description: str
    metadata: dict
    note_keys: dict
    notes: dict

    @property
    def labels(self) -> list[str]:
        """The labels the annotation declares or uses."""
        labels = dict.fromkeys(self.note_keys)
        for note in self.notes.values():
            labels.update(dict.fromkeys(note))
        return list(labels)

    def to_dict(self, keys) -> dict:
        """Return the NIMADS form, with notes for the analyses ``keys`` ``(study, analysis)``."""
        notes = [
            {"analysis": analysis, "study": study, "note": self.notes[f"{study}-{analysis}"]}
            for study, analysis in keys
            if f"{study}-{analysis}" in self.notes
        ]
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "metadata": self.metadata,
            "note_keys": self.note_keys,
            "notes": notes,
        }


# ----------------------------------------------------------------------- the store
@dataclass(frozen=True)
class StudysetStore:
    """The read-only data a studyset and its selections share.

    Attributes
    ----------
    id, name, description : str or None
        Of the studyset.
    studies : tuple of dict
        The NIMADS study records (each with its ``analyses``), as read.
    annotations : tuple of Annotation
        Attached annotations, in the order they were attached.
    keys : numpy.ndarray of str, shape (n_analyses, 2)
        ``(study id, analysis id)`` of every analysis, in document order.
    xyz : numpy.ndarray, shape (n_points, 3)
        Every focus as written in the document (read-only).
    point_analysis : numpy.ndarray of int, shape (n_points,)
        The analysis (row of ``keys``) of each focus.
    source_order : numpy.ndarray of int, shape (n_analyses,)
        Position of each analysis within its study in the document as read (studies and
        analyses are stored sorted by id, as NiMARE stores them).
    """

    id: str | None
    name: str | None
    description: str | None
    studies: tuple
    annotations: tuple
    keys: np.ndarray
    xyz: np.ndarray
    point_analysis: np.ndarray
    source_order: np.ndarray

    def __post_init__(self):
        for array in (self.keys, self.xyz, self.point_analysis, self.source_order):
            array.flags.writeable = False

    def __setstate__(self, state):
        # pickle does not keep numpy's writeable flag; freeze the arrays again.
        object.__setattr__(self, "__dict__", state)
        self.__post_init__()

    @property
    def n_points(self) -> int:
        """Number of foci in the store."""
        return len(self.xyz)

    @property
    def n_analyses(self) -> int:
        """Number of analyses in the store."""
        return len(self.keys)

    @functools.cached_property
    def full_ids(self) -> np.ndarray:
        """``"{study id}-{analysis id}"`` of every analysis."""
        return np.array([f"{s}-{a}" for s, a in self.keys.tolist()], dtype=str)

    @functools.cached_property
    def records(self) -> tuple:
        """``(study record, analysis record)`` of every analysis, in the order of ``keys``."""
        return tuple(
            (study, analysis) for study in self.studies for analysis in study.get("analyses") or []
        )

    @functools.cached_property
    def point_fields(self) -> tuple[np.ndarray, list, list]:
        """What the tables need of each focus, read in one pass over the records.

        Returns
        -------
        space_code : numpy.ndarray of int, shape (n_points,)
            Index of the focus' ``space`` (as written, None if absent) in ``spaces``.
        spaces : list
            The distinct spaces, in order of first use.
        values : list of tuple
            ``(focus, column, value)`` for every ``values`` entry that names a ``kind``, in
            document order (the column is the coordinates column of the kind).
        """
        points = [p for _, analysis in self.records for p in analysis.get("points") or []]
        written = [p.get("space") for p in points]
        spaces = dict.fromkeys(written)
        code = {space: n for n, space in enumerate(spaces)}
        codes = np.fromiter(map(code.__getitem__, written), dtype=int, count=len(written))
        values = [
            (n, _VALUE_COLUMNS.get(value["kind"], str(value["kind"])), value.get("value"))
            for n, point in enumerate(points)
            if point.get("values")
            for value in point["values"]
            if isinstance(value, dict) and value.get("kind") is not None
        ]
        return codes, list(spaces), values


def _make_store(document: dict, annotations=(), origin: str = "NIMADS studyset dict"):
    """Check a NIMADS document and build the store; errors name ``origin`` and the field."""
    with _collector_paused():
        return _build_store(document, annotations, origin)


def _build_store(document: dict, annotations, origin: str):
    if not isinstance(document, dict):
        raise InvalidStudysetError(
            f"{origin}: a NIMADS studyset must be a JSON object, got {type(document).__name__}"
        )
    studies = document.get("studies")
    if not isinstance(studies, list):
        raise InvalidStudysetError(
            f"{origin}: field 'studies' must be a list of studies"
            + ("" if "studies" in document else " (it is missing)")
        )
    # every focus checked at once; only if one is bad is each checked in turn (to name it)
    try:
        given = [
            point.get("coordinates") if isinstance(point, dict) else point
            for study in studies
            for analysis in study.get("analyses") or []
            for point in analysis.get("points") or []
        ]
        points_ok = _coordinate_array(given) is not None
    except (AttributeError, TypeError):
        points_ok = False
    for s, study in enumerate(studies):
        _check_study(study, f"{origin}: studies[{s}]", check_points=not points_ok)
    # NiMARE's canonical order: studies by id, analyses by id within their study
    records = sorted(_copy_json(studies), key=lambda study: str(study["id"]))
    keys, xyz, owner, source = [], [], [], []
    for study in records:
        analyses = study.get("analyses") or []
        order = sorted(range(len(analyses)), key=lambda n: str(analyses[n]["id"]))
        study["analyses"] = [analyses[n] for n in order]
        source += order
        seen = set()
        for analysis in study["analyses"]:
            key = (str(study["id"]), str(analysis["id"]))
            if key in seen:
                raise InvalidStudysetError(
                    f"{origin}: study {key[0]!r} has two analyses with id {key[1]!r}"
                )
            seen.add(key)
            points = analysis.get("points") or []
            xyz += [point["coordinates"] for point in points]
            owner += [len(keys)] * len(points)
            keys.append(key)
    store = StudysetStore(
        id=document.get("id"),
        name=document.get("name"),
        description=document.get("description"),
        studies=tuple(records),
        annotations=(),
        keys=np.array(keys, dtype=str).reshape(-1, 2),
        xyz=_float_rows(xyz),
        point_analysis=np.array(owner, dtype=int),
        source_order=np.array(source, dtype=int),
    )
    inline = _inline_annotation(store)
    payloads = list(document.get("annotations") or []) + list(annotations or [])
    attached = [inline] if inline is not None else []
    for payload in payloads:
        attached.append(_read_annotation(store, payload, origin))
    return replace(store, annotations=tuple(attached))


def _coordinate_array(given: list) -> np.ndarray | None:
    """Return foci as an (n, 3) float array if each is a list of three finite numbers, else None.

    Only plain ``int`` and ``float`` values pass (no booleans); anything else (a string, a
    NumPy number) returns None, for the focus-by-focus check to judge.
    """
    if not set(map(type, given)) <= {list, tuple} or set(map(len, given)) - {3}:
        return None
    flat = list(itertools.chain.from_iterable(given))
    if not set(map(type, flat)) <= {float, int}:
        return None
    try:
        xyz = np.array(flat, dtype=float).reshape(-1, 3)
    except OverflowError:
        return None
    return xyz if np.isfinite(xyz).all() else None


def _float_rows(given: list) -> np.ndarray:
    """Return checked foci as an (n, 3) float array (``float`` of each value)."""
    xyz = _coordinate_array(given)
    if xyz is not None:
        return xyz
    try:
        return np.array(given, dtype=float).reshape(-1, 3)
    except ValueError:  # a spelling of a number only Python's float reads
        return np.array([[float(v) for v in c] for c in given], dtype=float).reshape(-1, 3)


def _check_study(study, where: str, check_points: bool = True) -> None:
    """Raise InvalidStudysetError naming ``where`` and the field if a study record is malformed.

    ``check_points=False`` skips the foci' coordinates (checked already).
    """
    if not isinstance(study, dict) or study.get("id") is None:
        raise InvalidStudysetError(f"{where}: a study must be an object with an 'id'")
    analyses = study.get("analyses") or []
    if not isinstance(analyses, list):
        raise InvalidStudysetError(
            f"{where} (study {study['id']!r}): field 'analyses' must be a list"
        )
    for a, analysis in enumerate(analyses):
        here = f"{where}.analyses[{a}]"
        if not isinstance(analysis, dict) or analysis.get("id") is None:
            raise InvalidStudysetError(f"{here}: an analysis must be an object with an 'id'")
        here += f" (analysis {study['id']}-{analysis['id']})"
        points = analysis.get("points") or []
        if not isinstance(points, list):
            raise InvalidStudysetError(f"{here}: field 'points' must be a list")
        for p, point in enumerate(points if check_points else []):
            given = point.get("coordinates") if isinstance(point, dict) else point
            if not _finite_triple(given):
                raise InvalidStudysetError(
                    f"{here}: field 'points[{p}].coordinates' must hold three finite "
                    f"numbers, got {excerpt(given)}"
                )


def _finite_triple(given) -> bool:
    """Whether ``given`` is a list of three finite numbers (or strings of numbers)."""
    if not isinstance(given, list | tuple) or len(given) != 3:
        return False
    try:
        return all(not isinstance(v, bool) and math.isfinite(float(v)) for v in given)
    except (TypeError, ValueError, OverflowError):
        return False


def _copy_json(value):
    """Return a deep copy of a JSON-like document.

    One pickle round trip, with the garbage collector paused: faster than
    :func:`copy.deepcopy` on many small dicts. Objects pickle cannot copy are deep-copied.
    """
    with _collector_paused():
        try:
            return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        except (pickle.PicklingError, TypeError, AttributeError):
            return copy.deepcopy(value)


@contextlib.contextmanager
def _collector_paused():
    """Pause the garbage collector while many small objects are made.

    Each full collection walks every object of the studyset (a million for a NeuroStore
    release), and making the tables would start many of them; the collector resumes after.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _inline_annotation(store: StudysetStore) -> Annotation | None:
    """Gather analyses' own ``annotations`` objects (NiMARE's extension) into one annotation."""
    notes = {}
    for study in store.studies:
        for analysis in study.get("analyses") or []:
            values = analysis.get("annotations")
            if isinstance(values, dict) and values:
                notes[f"{study['id']}-{analysis['id']}"] = dict(values)
    if not notes:
        return None
    return Annotation("annotations", "annotations", "", {}, _note_keys(notes), notes)


def _read_annotation(store: StudysetStore, payload, origin: str) -> Annotation:
    """Attach a NIMADS annotation's notes to analyses by (study, analysis), full or unique id."""
    if isinstance(payload, Annotation):
        return payload
    if isinstance(payload, str | os.PathLike):
        origin, payload = str(payload), load_json(payload)
    if not isinstance(payload, dict) or not isinstance(payload.get("notes", []), list):
        raise InvalidStudysetError(
            f"{origin}: an annotation must be an object whose 'notes' is a list"
        )
    try:
        notes, _ = match_notes(store.keys.tolist(), payload.get("notes"), origin)
    except InputFileError as exc:
        raise InvalidStudysetError(str(exc)) from None
    ident = str(payload.get("id") or payload.get("name") or "annotation")
    return Annotation(
        id=ident,
        name=str(payload.get("name") or ident),
        description=payload.get("description") or "",
        metadata=payload.get("metadata") or {},
        note_keys=dict(payload.get("note_keys") or _note_keys(notes)),
        notes=notes,
    )


def _note_keys(notes: dict) -> dict:
    """Return the NIMADS type of each label of ``notes``: boolean, number or string."""
    types = {}
    for note in notes.values():
        for label, value in note.items():
            kind = (
                "boolean"
                if isinstance(value, bool | np.bool_)
                else "number"
                if isinstance(value, int | float | np.number)
                else "string"
            )
            types[label] = kind if types.get(label, kind) == kind else "string"
    return types


@dataclass(frozen=True)
class _Foci:
    """The selected foci of a studyset, as :meth:`Studyset._foci` resolves them.

    ``index`` (store positions, document order), ``mni`` (their MNI coordinates),
    ``dataset_space`` (the dataset's space of each) and ``raw_space`` (the space as written,
    MNI for foci of an analysis that mixed spaces) are per focus; ``has_points`` and
    ``given_space`` (the space the analysis' foci name, None if none) are per store analysis.
    """

    index: np.ndarray
    mni: np.ndarray
    dataset_space: list
    raw_space: list
    has_points: np.ndarray
    given_space: list


def _is_url(path: str) -> bool:
    return "://" in path


class Studyset:
    """A NIMADS studyset: studies, analyses, foci, images and annotations.

    Parameters
    ----------
    source : str, os.PathLike, dict or Studyset
        A NIMADS studyset JSON file or its dictionary (``{"id", "name", "studies": [...],
        "annotations": [...]}``).
    target : str or None
        Space the coordinates are reported and analysed in: ``"mni152_2mm"`` (default) or
        ``"ale_2mm"`` (MNI, Talairach foci converted), a Talairach name (``"TAL"``:
        foci converted to Talairach), or ``None`` (foci as written).
    mask : str, os.PathLike, nibabel.Nifti1Image, NiftiMasker or None
        Mask for analyses; ``None`` uses the template of ``target``.
    annotations : list of dict or None
        Extra NIMADS annotations to attach.
    basepath : str or None
        Folder relative image paths are resolved against.

    Raises
    ------
    InvalidStudysetError
        If the document is malformed, naming the file (or dict) and the field.
    """

    _id_cols = ID_COLS

    def __init__(self, source, target="mni152_2mm", mask=None, annotations=None, basepath=None):
        if isinstance(source, Studyset):
            self._store, self._rows, self._point_mask = (
                source._store,
                source._rows,
                source._point_mask,
            )
            self._space, self._mask, self._basepath = source._space, source._mask, source._basepath
            return
        if isinstance(source, StudysetStore):
            store = source
        else:
            origin = "NIMADS studyset dict"
            if isinstance(source, str | os.PathLike):
                origin = str(source)
                if os.path.isdir(source):
                    raise InputFileError(
                        f"{origin}: a folder (NiMARE's parquet release) cannot be read; "
                        "give a NIMADS JSON file"
                    )
                try:
                    source = load_json(source)
                except InputFileError as exc:
                    raise InvalidStudysetError(str(exc)) from None
            store = _make_store(source, annotations, origin)
        self._store = store
        self._rows = np.arange(store.n_analyses)
        self._point_mask = None
        self._space, self._mask = target, mask
        self._basepath = None if basepath is None else str(basepath)

    # ------------------------------------------------------------ construction
    def _view(self, rows=None, point_mask=None, store=None, **context) -> Studyset:
        """Return a studyset over ``store`` with other selected rows, mask or context."""
        new = Studyset.__new__(Studyset)
        new._store = self._store if store is None else store
        new._rows = self._rows if rows is None else np.asarray(rows, dtype=int)
        new._point_mask = self._point_mask if point_mask is None else point_mask
        new._space = context.get("space", self._space)
        new._mask = context.get("masker", self._mask)
        new._basepath = context.get("basepath", self._basepath)
        return new

    @classmethod
    def from_nimads(cls, source, **kwargs) -> Studyset:
        """Read a NIMADS studyset from a JSON file or a dict (same as the constructor)."""
        return cls(source, **kwargs)

    @classmethod
    def from_sleuth(cls, sleuth_file, **kwargs) -> Studyset:
        """Read Sleuth text file(s); see :func:`~nimare_jax.io.convert_sleuth_to_nimads_dict`."""
        return cls(convert_sleuth_to_nimads_dict(sleuth_file), **kwargs)

    @classmethod
    def from_dataset(cls, dataset, studyset_id="nimads_from_dataset", studyset_name=""):
        """Return the studyset of a :class:`~nimare_jax.dataset.Dataset` (same space and mask).

        Parameters
        ----------
        dataset : Dataset
            The dataset; see :func:`~nimare_jax.io.convert_dataset_to_nimads_dict`.
        studyset_id, studyset_name : str
            ``id`` and ``name`` of the studyset.

        Returns
        -------
        Studyset
        """
        document = convert_dataset_to_nimads_dict(
            dataset, studyset_id=studyset_id, studyset_name=studyset_name
        )
        basepath = _dataset_basepath(dataset)
        if basepath is not None:
            _store_relative_filenames(document, dataset.images, basepath)
        return cls(document, target=dataset.space, mask=dataset.masker, basepath=basepath)

    # ---------------------------------------------------------------- identity
    @property
    def store(self) -> StudysetStore:
        """The read-only data this studyset (and every selection of it) reads."""
        return self._store

    @property
    def view(self) -> Studyset:
        """The studyset itself (NiMARE's selection object; a studyset is its own view)."""
        return self

    @property
    def id(self):
        """The studyset's id."""
        return self._store.id

    @property
    def name(self):
        """The studyset's name."""
        return self._store.name

    @property
    def ids(self) -> np.ndarray:
        """Full ids ``"{study id}-{analysis id}"`` of the selected analyses."""
        return self._store.full_ids[self._rows]

    @property
    def study_ids(self) -> np.ndarray:
        """Ids of the studies of the selected analyses, each once, in document order."""
        return np.array(list(dict.fromkeys(self._store.keys[self._rows, 0].tolist())), dtype=str)

    @property
    def space(self):
        """The space coordinates are reported in (the ``target``)."""
        return self._space

    @property
    def basepath(self):
        """Folder relative image paths are resolved against, or None."""
        return self._basepath

    @property
    def masker(self):
        """The mask of the studyset's dataset (the template of ``target`` by default).

        None for a studyset read without a target or mask (``target=None``).
        """
        if self._space is None and self._mask is None:
            return None
        if self._tables[0] is None:
            default = self._space if self._space in _TEMPLATE_TARGETS else "mni152_2mm"
            return load_mask(default if self._mask is None else _mask_image(self._mask))
        return self.to_dataset().masker

    @property
    def annotations(self) -> list[Annotation]:
        """The attached annotations."""
        return list(self._store.annotations)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"<Studyset: {self.id}>"

    def __str__(self) -> str:
        return f"Studyset: {self.name} :: studies: {len(self.study_ids)}"

    # ---------------------------------------------------------- the document face
    def to_dict(self) -> dict:
        """Return the NIMADS document of the selected analyses and foci.

        Image references are written as stored (relative paths stay relative).
        """
        return self._document(resolve=False, annotations=True)

    def _document(self, resolve: bool, annotations: bool) -> dict:
        store = self._store
        keep = np.zeros(store.n_analyses, dtype=bool)
        keep[self._rows] = True
        kept_points = (
            np.ones(store.n_points, dtype=bool) if self._point_mask is None else self._point_mask
        )
        studies, row, first_point = [], 0, 0
        for study in store.studies:
            analyses = []
            for analysis in study.get("analyses") or []:
                n_points = len(analysis.get("points") or [])
                if keep[row]:
                    record = _copy_json(analysis)
                    record.pop("annotations", None)
                    mask = kept_points[first_point : first_point + n_points]
                    record["points"] = [
                        p for p, k in zip(record.get("points") or [], mask, strict=True) if k
                    ]
                    if resolve:
                        for image in record.get("images") or []:
                            image["filename"] = self._resolve(image.get("filename"))
                    analyses.append(record)
                row += 1
                first_point += n_points
            if analyses or (len(self._rows) == store.n_analyses and not study.get("analyses")):
                studies.append(
                    {
                        **_copy_json({k: v for k, v in study.items() if k != "analyses"}),
                        "analyses": analyses,
                    }
                )
        out = {"id": store.id, "name": store.name, "studies": studies}
        if store.description is not None:
            out["description"] = store.description
        if annotations and store.annotations:
            keys = [tuple(k) for k in store.keys[self._rows].tolist()]
            out["annotations"] = [a.to_dict(keys) for a in store.annotations]
        return out

    def _resolve(self, path):
        if not path or self._basepath is None or _is_url(path) or os.path.isabs(path):
            return path
        return os.path.join(self._basepath, path)

    def to_nimads(self, filename) -> None:
        """Write the NIMADS JSON of the selected analyses and foci to ``filename``."""
        _write_json(_json_value(self.to_dict()), filename)

    def save(self, filename) -> None:
        """Pickle the studyset to ``filename``."""
        with open(filename, "wb") as f:
            pickle.dump(self, f)

    @staticmethod
    def load(filename) -> Studyset:
        """Return the studyset pickled in ``filename`` (by :meth:`save`)."""
        with open(filename, "rb") as f:
            out = pickle.load(f)
        if not isinstance(out, Studyset):
            raise InputFileError(f"{filename}: holds a {type(out).__name__}, not a Studyset")
        return out

    def copy(self) -> Studyset:
        """Return a new studyset on the same (read-only) store."""
        return self._view()

    # ------------------------------------------------------------- the table face
    def to_dataset(self) -> Dataset:
        """Return the :class:`~nimare_jax.dataset.Dataset` of the selected analyses and foci.

        Its tables are those the studyset reports. Relative image paths are resolved
        against :attr:`basepath`; a Talairach or ``None`` target gives an MNI dataset.
        """
        if self._tables[0] is None:
            raise DatasetError(f"studyset {self.id!r}: no analyses are selected")
        return self._tables[0]

    @functools.cached_property
    def _tables(self):
        with _collector_paused():
            return self._make_tables()

    def _make_tables(self):
        # The dataset reads every analysis' metadata, images, texts and labels from a NIMADS
        # document; its foci are built here column-wise from the store's arrays (one row per
        # focus, in document order) and assigned to it, which adds the voxel indices. An
        # analysis whose foci name no space, or one other than MNI or Talairach, gives the
        # document one placeholder focus in that space, so the conversion warns as it would
        # for the real foci; the placeholders are then replaced.
        if not len(self._rows):
            return None, pd.DataFrame(columns=[*ID_COLS, "x", "y", "z", "space"])
        foci = self._foci()
        labels = self._labels()
        store = self._store
        selected = self._selected_analyses()
        records = _copy_json(
            [
                {k: v for k, v in analysis.items() if k not in ("points", "annotations")}
                for _, _, analysis in selected
            ]
        )
        studies = {}
        for (row, study, _), record in zip(selected, records, strict=True):
            for image in record.get("images") or []:
                image["filename"] = self._resolve(image.get("filename"))
            note = labels.get(store.full_ids[row])
            if note:
                record["annotations"] = note
            space = foci.given_space[row]
            if foci.has_points[row] and (
                space is None or _space_name(space) not in ("MNI", "TAL")
            ):
                placeholder = {"coordinates": [0.0, 0.0, 0.0]}
                if space is not None:
                    placeholder["space"] = space
                record["points"] = [placeholder]
            studies.setdefault(id(study), (study, []))[1].append(record)
        heads = _copy_json(
            [{k: v for k, v in study.items() if k != "analyses"} for study, _ in studies.values()]
        )
        document = {
            "id": store.id,
            "name": store.name,
            "studies": [
                {**head, "analyses": analyses}
                for head, (_, analyses) in zip(heads, studies.values(), strict=True)
            ],
        }
        target = self._space if self._space in _TEMPLATE_TARGETS else "mni152_2mm"
        dataset = Dataset(
            convert_nimads_to_dict(document), target=target, mask=_mask_image(self._mask)
        )
        rows = store.point_analysis[foci.index]
        if len(rows):
            dataset.coordinates = pd.DataFrame(
                {
                    "id": store.full_ids[rows].tolist(),
                    "study_id": store.keys[rows, 0].tolist(),
                    "contrast_id": store.keys[rows, 1].tolist(),
                    "x": foci.mni[:, 0],
                    "y": foci.mni[:, 1],
                    "z": foci.mni[:, 2],
                    "space": foci.dataset_space,
                }
            )
        coords = dataset.coordinates.copy()
        if self._space is None:
            coords[["x", "y", "z"]] = store.xyz[foci.index]
            coords["space"] = foci.raw_space
        else:
            if "tal" in str(self._space).lower():
                coords[["x", "y", "z"]] = mni2tal(coords[["x", "y", "z"]].to_numpy())
            coords["space"] = self._space
        for column, values in self._point_values(foci.index).items():
            coords[column] = values
        return dataset, coords

    def _selected_analyses(self) -> list:
        """``(row, study record, analysis record)`` of the selected analyses, in document order.

        The records are the store's own: read them, never change them.
        """
        keep = np.zeros(self._store.n_analyses, dtype=bool)
        keep[self._rows] = True
        return [(row, *pair) for row, pair in enumerate(self._store.records) if keep[row]]

    def _foci(self) -> _Foci:
        """Return the selected foci in document order, their spaces resolved per analysis.

        Follows :func:`_one_space` and the dataset's reading of a space: an analysis whose
        foci (those selected) name two spaces has its Talairach foci converted one by one and
        is in MNI; otherwise the one space named (or MNI) is the analysis', and a Talairach
        analysis is converted as a block.
        """
        store = self._store
        keep = np.zeros(store.n_analyses, dtype=bool)
        keep[self._rows] = True
        kept = keep[store.point_analysis]
        if self._point_mask is not None:
            kept &= self._point_mask
        index = np.flatnonzero(kept)
        rows = store.point_analysis[index]
        code_of_point, spaces, _ = store.point_fields
        codes = code_of_point[index]
        # per distinct space as written: is it given, its name, its name with MNI for none
        given = np.array([bool(s) for s in spaces], dtype=bool)
        names = [_space_name(s) if s else None for s in spaces]
        name_code = {name: n for n, name in enumerate(dict.fromkeys(names))}
        name_of = np.array([name_code[name] for name in names], dtype=int)
        tal_default = np.array([_space_name(s or "MNI") == "TAL" for s in spaces], dtype=bool)
        has_points = np.zeros(store.n_analyses, dtype=bool)
        has_points[rows] = True
        spaced = given[codes] if len(codes) else np.zeros(0, dtype=bool)
        pairs = np.unique(rows[spaced] * len(name_code) + name_of[codes[spaced]])
        mixed = np.bincount(pairs // len(name_code), minlength=store.n_analyses) > 1
        # the first space given by each analysis' selected foci
        first = np.full(store.n_analyses, -1)
        spaced_rows, at = np.unique(rows[spaced], return_index=True)
        first[spaced_rows] = codes[spaced][at]
        given_space = [
            "MNI" if mixed[r] else (spaces[first[r]] if first[r] >= 0 else None)
            for r in range(store.n_analyses)
        ]
        row_space = [
            "MNI" if s is None or mixed[r] else _space_name(s) for r, s in enumerate(given_space)
        ]
        mni = store.xyz[index].copy()
        point_mixed = mixed[rows]
        for n in np.flatnonzero(point_mixed & tal_default[codes]):
            mni[n] = tal2mni(mni[n : n + 1])[0]
        # foci are grouped by analysis (rows never decrease): convert each Talairach block
        tal = np.array([space == "TAL" for space in row_space], dtype=bool) & ~mixed
        for r in np.flatnonzero(tal & has_points):
            start, stop = np.searchsorted(rows, [r, r + 1])
            mni[start:stop] = tal2mni(mni[start:stop])
        raw = np.array(spaces, dtype=object)[codes] if len(codes) else np.zeros(0, dtype=object)
        raw_space = np.where(point_mixed, "MNI", raw).tolist()
        dataset_space = np.array(row_space, dtype=object)[rows].tolist()
        return _Foci(index, mni, dataset_space, raw_space, has_points, given_space)

    def _point_values(self, index: np.ndarray) -> dict:
        """``{column: one value per selected focus}`` of the foci's ``values`` (None if absent).

        Columns are in order of first use by the selected foci.
        """
        _, _, entries = self._store.point_fields
        if not entries:
            return {}
        position = np.full(self._store.n_points, -1)
        position[index] = np.arange(len(index))
        position = position.tolist()
        columns: dict[str, list] = {}
        for point, column, value in entries:
            n = position[point]
            if n >= 0:
                columns.setdefault(column, [None] * len(index))[n] = _copy_json(value)
        return columns

    def _labels(self) -> dict:
        """``{full id: {column: value}}``: every annotation's notes, later labels prefixed.

        A label two annotations share keeps its bare name for the first and becomes
        ``"{annotation id}.{label}"`` for the others, so no value is overwritten.
        """
        return label_columns([(a.id, a.labels, a.notes) for a in self._store.annotations])

    def _table(self, name: str) -> pd.DataFrame:
        dataset = self._tables[0]
        return pd.DataFrame(columns=ID_COLS) if dataset is None else getattr(dataset, name)

    @property
    def coordinates(self) -> pd.DataFrame:
        """One row per focus: ids, x, y, z (in :attr:`space`), space, voxel indices, values."""
        return self._coordinates.copy()

    @functools.cached_property
    def _coordinates(self) -> pd.DataFrame:
        # the studyset is a value, and this table is its own (to_dataset's are the caller's)
        return _none_strings(self._tables[1])

    @property
    def metadata(self) -> pd.DataFrame:
        """One row per analysis: study and analysis names, authors, journal, sample sizes..."""
        return _none_strings(self._table("metadata"))

    @property
    def images(self) -> pd.DataFrame:
        """One row per analysis, one column of paths per image type.

        Paths are resolved against :attr:`basepath`; each type also has a
        ``{type}__relative`` column with the reference as the document stores it.
        """
        frame = self._table("images").copy()
        relative = [
            _images(analysis.get("images") or [], Counter())
            for _, _, analysis in self._selected_analyses()
        ]
        for column in [c for c in frame.columns if c not in [*ID_COLS, "space"]]:
            frame[f"{column}__relative"] = [r.get(column) for r in relative]
        return frame

    @property
    def texts(self) -> pd.DataFrame:
        """One row per analysis, one column per text field."""
        return _none_strings(self._table("texts"))

    @property
    def annotations_df(self) -> pd.DataFrame:
        """One row per analysis, one column per annotation label (see :meth:`_labels`)."""
        return _none_strings(self._table("annotations"))

    # --------------------------------------------------------------- nested face
    @property
    def studies(self) -> list[Study]:
        """The studies of the selected analyses, each with only those analyses."""
        document = self._document(resolve=True, annotations=False)
        space = self._space
        xyz = self.coordinates[["x", "y", "z"]].to_numpy().tolist()
        notes = {a.id: a.notes for a in self._store.annotations}
        out, n = [], 0
        for record in document["studies"]:
            study = Study(
                id=str(record["id"]),
                name=record.get("name"),
                authors=record.get("authors"),
                publication=record.get("publication"),
                doi=record.get("doi"),
                pmid=record.get("pmid"),
                year=record.get("year"),
                description=record.get("description"),
                metadata=dict(record.get("metadata") or {}),
                analyses=[],
            )
            for a in record["analyses"]:
                full_id = f"{study.id}-{a['id']}"
                points = []
                for p in a.get("points") or []:
                    values = {
                        _VALUE_COLUMNS.get(v["kind"], str(v["kind"])): v.get("value")
                        for v in p.get("values") or []
                        if isinstance(v, dict) and v.get("kind") is not None
                    }
                    points.append(
                        Point(
                            id=p.get("id"),
                            coordinates=xyz[n],
                            space=p.get("space") if space is None else space,
                            kind=p.get("kind"),
                            values=values,
                        )
                    )
                    n += 1
                images = [
                    Image(
                        id=i.get("id"),
                        value_type=i.get("value_type"),
                        filename=i.get("filename"),
                        url=i.get("url"),
                        space=i.get("space"),
                    )
                    for i in a.get("images") or []
                ]
                study.analyses.append(
                    Analysis(
                        id=str(a["id"]),
                        name=a.get("name"),
                        description=a.get("description"),
                        full_id=full_id,
                        metadata=dict(a.get("metadata") or {}),
                        texts=dict(a.get("texts") or {}),
                        conditions=list(a.get("conditions") or []),
                        weights=list(a.get("weights") or []),
                        points=points,
                        images=images,
                        annotations={k: v[full_id] for k, v in notes.items() if full_id in v},
                        study=study,
                    )
                )
            out.append(study)
        return out

    @property
    def analyses(self) -> list[Analysis]:
        """The selected analyses, in order."""
        return [a for s in self.studies for a in s.analyses]

    # ---------------------------------------------------------------- selection
    def _resolve_ids(self, ids, level: str = "analysis") -> np.ndarray:
        """Rows (of the store) the ids name, within the selection; unknown ids raise."""
        ids = [ids] if isinstance(ids, str) else [str(i) for i in ids]
        store = self._store
        if level == "study":
            names = [store.keys[self._rows, 0]]
        else:
            names = [store.full_ids[self._rows], store.keys[self._rows, 1]]
        wanted = set(ids)
        hit = np.zeros(len(self._rows), dtype=bool)
        for column in names:
            hit |= np.isin(column, list(wanted))
        found = set().union(*(set(c.tolist()) for c in names)) & wanted
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        if missing:
            shown = ", ".join(missing[:_NAMED_IDS])
            more = len(missing) - _NAMED_IDS
            raise ValueError(
                f"No {level} in this studyset matches: {shown}"
                + (f" and {more} more" if more > 0 else "")
                + "."
            )
        return self._rows[hit]

    def slice(self, ids=None, *, analyses=None, filter_level="analysis") -> Studyset:
        """Return a studyset with only the named analyses (or studies).

        Parameters
        ----------
        ids : str or list of str
            Full analysis ids (:attr:`ids`) or analysis ids (a short id several studies
            share selects all of them); study ids if ``filter_level="study"``.
        analyses : list of str or None
            Alias of ``ids``.
        filter_level : {"analysis", "study"}
            What ``ids`` names.

        Returns
        -------
        Studyset
            The selection, in document order.

        Raises
        ------
        ValueError
            If an id names nothing in this studyset (all such ids are listed).
        """
        if ids is None and analyses is None:
            raise TypeError("slice() requires 'ids'")
        ids = analyses if ids is None else ids
        if filter_level not in ("analysis", "study"):
            raise ValueError(f"filter_level must be 'analysis' or 'study', got {filter_level!r}")
        return self._view(rows=self._resolve_ids(ids, filter_level))

    def filter_ids(self, ids) -> Studyset:
        """Keep the named analyses (see :meth:`slice`)."""
        return self.slice(ids)

    def filter_study_ids(self, study_ids) -> Studyset:
        """Keep the analyses of the named studies; an unknown study id raises."""
        return self.slice(study_ids, filter_level="study")

    def exclude_study_ids(self, study_ids) -> Studyset:
        """Drop the analyses of the named studies (unknown ids are ignored)."""
        study_ids = [study_ids] if isinstance(study_ids, str) else [str(s) for s in study_ids]
        keep = ~np.isin(self._store.keys[self._rows, 0], study_ids)
        return self._view(rows=self._rows[keep])

    def select_analyses(self, mask) -> Studyset:
        """Keep the analyses a boolean mask (or positions) over the selection picks."""
        mask = np.asarray(mask)
        if mask.dtype == bool and len(mask) != len(self._rows):
            raise ValueError(
                f"the mask must have one entry per analysis ({len(self._rows)}), got {len(mask)}"
            )
        return self._view(rows=self._rows[mask])

    def select_points(self, point_mask) -> Studyset:
        """Keep the flagged foci (and every analysis).

        ``point_mask`` has one boolean per focus of the whole store, in document order
        (the order of an unselected studyset's :attr:`coordinates`).
        """
        mask = np.asarray(point_mask, dtype=bool).ravel()
        if len(mask) != self._store.n_points:
            raise ValueError(
                f"point_mask must have one entry per focus ({self._store.n_points}), "
                f"got {len(mask)}"
            )
        if self._point_mask is not None:
            mask = mask & self._point_mask
        mask.flags.writeable = False
        return self._view(point_mask=mask)

    def materialize_points(self) -> Studyset:
        """Return a studyset whose store holds only the selected analyses and foci."""
        if self._point_mask is None and len(self._rows) == self._store.n_analyses:
            return self
        return self._with_document(self.to_dict())

    def _with_document(self, document: dict) -> Studyset:
        return Studyset(document, target=self._space, mask=self._mask, basepath=self._basepath)

    def filter_annotations(self, labels, threshold=0.001, match="all", annotation=None):
        """Keep analyses whose labels reach ``threshold`` (all of them, or any)."""
        if match not in ("all", "any"):
            raise ValueError("match must be 'all' or 'any'")
        masks = self._label_masks(labels, threshold)
        return self.select_analyses(masks.all(axis=0) if match == "all" else masks.any(axis=0))

    def filter_metadata(self, field, op, value) -> Studyset:
        """Keep analyses whose metadata ``field`` satisfies ``field <op> value``."""
        frame = self.metadata
        if field not in frame.columns:
            raise ValueError(f"Unknown metadata field: {field}")
        if op not in _OPS:
            raise ValueError(f"Unsupported metadata operator {op!r}; use one of {list(_OPS)}")
        keep = pd.Series(_OPS[op](frame[field], value), index=frame.index)
        return self.select_analyses(keep.fillna(False).to_numpy(dtype=bool))

    def with_context(self, **changes) -> Studyset:
        """Return the studyset with another ``space``, ``masker`` or ``basepath``."""
        unknown = set(changes) - {"space", "masker", "basepath"}
        if unknown:
            raise TypeError(f"unknown context field(s): {sorted(unknown)}")
        return self._view(**changes)

    def update_path(self, new_path) -> Studyset:
        """Return the studyset with relative image paths resolved against ``new_path``."""
        return self._view(basepath=os.path.abspath(new_path))

    # ------------------------------------------------------------------- queries
    def _label_masks(self, labels, threshold) -> np.ndarray:
        labels = [labels] if isinstance(labels, str) else labels
        if not isinstance(labels, list):
            raise ValueError(f"Argument 'labels' cannot be {type(labels)}")
        frame = self.annotations_df
        missing = [label for label in labels if label not in frame.columns]
        if missing:
            raise ValueError(f"Missing label(s): {', '.join(missing)}")
        values = frame[labels].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float).T
        return np.nan_to_num(values, nan=-np.inf) >= threshold

    def get_labels(self, ids=None) -> list[str]:
        """Annotation labels (of the analyses ``ids`` with a non-zero value, if given)."""
        frame = (self if ids is None else self.slice(ids)).annotations_df
        labels = [c for c in frame.columns if c not in ID_COLS]
        if ids is None:
            return labels
        return [c for c in labels if (frame[c].notna() & (frame[c] != 0)).any()]

    def get_analyses_by_label(self, labels=None, label_threshold=0.001, annotation=None):
        """Full ids of the analyses whose every label in ``labels`` is >= the threshold."""
        return self.ids[self._label_masks(labels, label_threshold).all(axis=0)].tolist()

    get_studies_by_label = get_analyses_by_label

    def get_analyses_by_mask(self, mask) -> list[str]:
        """Full ids of the analyses with at least one focus inside ``mask`` (a NIfTI image)."""
        img = load_mask(mask)
        coords = self.coordinates
        if coords.empty:
            return []
        ijk = mm2vox(coords[["x", "y", "z"]].to_numpy(), img.affine)
        inside = ~outside_volume(ijk, img.shape)
        data = np.asanyarray(img.dataobj)
        hit = np.zeros(len(ijk), dtype=bool)
        hit[inside] = data[tuple(ijk[inside].T)] > 0
        return self._ids_with(coords["id"].to_numpy()[hit])

    get_studies_by_mask = get_analyses_by_mask

    def _ids_with(self, found) -> list[str]:
        found = set(found.tolist())
        return [i for i in self.ids.tolist() if i in found]

    def get_studies_by_coordinate(self, xyz, r=20) -> list[str]:
        """Full ids of the analyses with a focus within ``r`` mm of any point of ``xyz``."""
        coords = self.coordinates
        if coords.empty:
            return []
        xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
        if xyz.shape[1] != 3:
            raise ValueError(f"xyz must be (n, 3) coordinates, got shape {xyz.shape}")
        foci = coords[["x", "y", "z"]].to_numpy(dtype=float)
        dist = np.linalg.norm(foci[:, None, :] - xyz[None, :, :], axis=-1).min(axis=1)
        return self._ids_with(coords["id"].to_numpy()[dist <= r])

    def get_analyses_by_coordinate(self, xyz, r=None, n=None) -> list[str]:
        """Full ids of the analyses with a focus within ``r`` mm of ``xyz`` (or the n nearest)."""
        if (r is None) == (n is None):
            raise ValueError("Exactly one of r or n must be provided.")
        xyz = np.asarray(xyz, dtype=float).ravel()
        if xyz.shape != (3,):
            raise ValueError("xyz must be a 1 x 3 array-like object.")
        coords = self.coordinates
        if coords.empty:
            return []
        dist = np.linalg.norm(coords[["x", "y", "z"]].to_numpy(dtype=float) - xyz, axis=1)
        hit = dist <= r if r is not None else np.argsort(dist, kind="stable")[:n]
        return self._ids_with(coords["id"].to_numpy()[hit])

    def _field(self, frame: pd.DataFrame, field, what: str):
        available = [c for c in frame.columns if c not in ID_COLS]
        if field is None:
            return available
        if field not in available:
            raise ValueError(f"{field} not found in {what}. Available: {', '.join(available)}")
        return frame[field].tolist()

    def get_metadata(self, field=None, ids=None):
        """Metadata field names, or one field's values (of the analyses ``ids``)."""
        return self._field((self if ids is None else self.slice(ids)).metadata, field, "metadata")

    def get_texts(self, text_type=None, ids=None):
        """Text field names, or one field's values (of the analyses ``ids``)."""
        return self._field((self if ids is None else self.slice(ids)).texts, text_type, "texts")

    def get_images(self, imtype=None, ids=None):
        """Image types present, or one type's paths per analysis (None where missing)."""
        frame = (self if ids is None else self.slice(ids)).images
        types = [
            c
            for c in frame.columns
            if c not in ID_COLS + ["space"] and not c.endswith("__relative")
        ]
        if imtype is None:
            return types
        if imtype not in types:
            return [None] * len(frame)
        return [None if pd.isna(v) else v for v in frame[imtype]]

    def _short_ids(self, analyses) -> list:
        rows = self._rows if analyses is None else self._resolve_ids(analyses)
        return [(self._store.full_ids[r], self._store.keys[r, 1]) for r in rows]

    def get_points(self, analyses=None) -> dict:
        """``{analysis id: [point dicts]}`` for the named (default: selected) analyses."""
        by_id = {a.full_id: a for a in self.analyses}
        return {
            short: [
                {"coordinates": p.coordinates, "space": p.space, "kind": p.kind}
                for p in by_id[full].points
            ]
            for full, short in self._short_ids(analyses)
        }

    def get_annotations(self, analyses=None) -> dict:
        """``{analysis id: {label: value}}`` merged over every annotation."""
        labels = self._labels()
        return {short: dict(labels.get(full, {})) for full, short in self._short_ids(analyses)}

    def get_analyses_by_metadata(self, key, value=None) -> dict:
        """``{full id: {key: value}}`` of the analyses whose metadata (or study's) has ``key``."""
        out = {}
        for analysis in self.analyses:
            meta = analysis.get_metadata()
            if key in meta and meta[key] is not None and (value is None or meta[key] == value):
                out[analysis.full_id] = {key: meta[key]}
        return out

    def get_analyses_by_annotations(self, key, value=None) -> dict:
        """``{full id: ...}``: an annotation's notes if ``key`` is its id, else a label's value."""
        ids = set(self.ids.tolist())
        for annotation in self._store.annotations:
            if annotation.id == key:
                return {
                    k: {key: note}
                    for k, note in annotation.notes.items()
                    if k in ids and (value is None or note == value)
                }
        out = {}
        for full, note in self._labels().items():
            if full in ids and key in note and (value is None or note[key] == value):
                out[full] = {key: note[key]}
        return {i: out[i] for i in self.ids.tolist() if i in out}

    # --------------------------------------------------------------------- edits
    def _with_annotations(self, annotations) -> Studyset:
        return self._view(store=replace(self._store, annotations=tuple(annotations)))

    def with_annotation(self, name, labels, matrix, rows=None, note_key_types=None):
        """Return the studyset with one more annotation.

        Parameters
        ----------
        name : str
            Id (and name) of the annotation.
        labels : list of str
            Its labels (columns of ``matrix``).
        matrix : array-like, shape (n_rows, n_labels)
            Values; NaN means no value.
        rows : array-like of int or None
            Positions in the selection the matrix rows belong to (default: all, in order).
        note_key_types : dict or None
            Declared NIMADS types of the labels (inferred if None).
        """
        matrix = np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix)
        positions = np.arange(len(self._rows)) if rows is None else np.asarray(rows)
        if matrix.ndim != 2 or matrix.shape != (len(positions), len(labels)):
            raise ValueError(
                f"matrix must have shape ({len(positions)}, {len(labels)}), got {matrix.shape}"
            )
        full = self.ids
        notes = {}
        for pos, values in zip(positions, matrix, strict=True):
            note = {
                label: _json_value(v)
                for label, v in zip(labels, values, strict=True)
                if not pd.isna(v)
            }
            if note:
                notes[str(full[pos])] = note
        types = dict(note_key_types or _note_keys(notes))
        return self._with_annotations(
            [*self._store.annotations, Annotation(name, name, "", {}, types, notes)]
        )

    def _with_analysis_fields(self, section: str, values: dict, rows) -> Studyset:
        """Return the studyset with ``values`` set in ``section`` of the analyses ``rows``."""
        where, row = {}, 0
        for s, study in enumerate(self._store.studies):
            for a in range(len(study.get("analyses") or [])):
                where[row] = (s, a)
                row += 1
        studies = _copy_json(list(self._store.studies))
        for r, value in zip(rows, values, strict=True):
            s, a = where[int(r)]
            target = studies[s] if section == "study" else studies[s]["analyses"][a]
            key = "metadata" if section in ("study", "metadata") else "texts"
            target[key] = {**(target.get(key) or {}), **value}
        return self._view(store=replace(self._store, studies=tuple(studies)))

    def with_metadata(self, name, values, *, level="analysis") -> Studyset:
        """Return the studyset with one more metadata field.

        Parameters
        ----------
        name : str
            Field name.
        values : sequence
            One value per selected analysis (``level="analysis"``), or per study of
            :attr:`study_ids` (``level="study"``).
        level : {"analysis", "study"}
            Where the field is stored.
        """
        values = list(values)
        if level == "analysis":
            rows = self._rows
        elif level == "study":
            studies = self._store.keys[:, 0]
            rows = [int(np.flatnonzero(studies == sid)[0]) for sid in self.study_ids]
        else:
            raise ValueError(f"level must be 'analysis' or 'study', got {level!r}")
        if len(values) != len(rows):
            raise ValueError(f"expected {len(rows)} values (one per {level}), got {len(values)}")
        section = "metadata" if level == "analysis" else "study"
        return self._with_analysis_fields(section, [{name: v} for v in values], rows)

    def with_texts(self, rows, field, values) -> Studyset:
        """Return the studyset with text ``field`` set for the analyses at positions ``rows``."""
        rows = self._rows[np.asarray(rows, dtype=int)]
        return self._with_analysis_fields("texts", [{field: v} for v in values], rows)

    def with_annotations_df(self, frame, name=None, replace=False) -> Studyset:
        """Return the studyset with ``frame`` (an ``id`` column, one per label) as an annotation.

        Rows naming analyses not in the studyset are ignored. ``replace=True`` drops the
        existing annotations, ``name`` (default ``"annotations"``) is the new one's id.
        """
        if "id" not in frame.columns:
            raise ValueError("the annotations frame needs an 'id' column")
        labels = [c for c in frame.columns if c not in ID_COLS]
        ids = set(self.ids.tolist())
        notes = {}
        for record in frame.to_dict("records"):
            key = str(record["id"])
            note = {k: _json_value(record[k]) for k in labels if not _isna(record[k])}
            if key in ids and note:
                notes[key] = note
        name = "annotations" if name is None else str(name)
        types = {label: _column_type(frame[label]) for label in labels}
        new = Annotation(name, name, "", {}, types, notes)
        kept = [] if replace else [a for a in self._store.annotations if a.id != name]
        return self._with_annotations([*kept, new])

    def with_annotation_payload(self, payload) -> Studyset:
        """Return the studyset with a NIMADS annotation (a dict or JSON file) attached."""
        annotation = _read_annotation(self._store, payload, "NIMADS annotation dict")
        return self._with_annotations([*self._store.annotations, annotation])

    def combine_analyses(self) -> Studyset:
        """Return a studyset with one analysis per study (foci, images and metadata merged).

        Annotations name the analyses before merging, so they are dropped.
        """
        document = self._document(resolve=False, annotations=False)
        store = self._store
        position = dict(zip(store.full_ids.tolist(), store.source_order.tolist(), strict=True))
        for study in document["studies"]:
            # merged in the order the document gave them, as NiMARE does
            analyses = sorted(
                study["analyses"], key=lambda a: position[f"{study['id']}-{a['id']}"]
            )
            if len(analyses) < 2:
                continue
            merged = {
                "id": "_".join(str(a["id"]) for a in analyses),
                "name": "; ".join(str(a.get("name") or "") for a in analyses),
                "metadata": _merge(a.get("metadata") for a in analyses),
                "texts": _merge(a.get("texts") for a in analyses),
            }
            for key in ("conditions", "weights", "images", "points"):
                merged[key] = [x for a in analyses for x in a.get(key) or []]
            merged["points"] = _one_space(merged["points"])
            study["analyses"] = [merged]
        return self._with_document(document)

    def merge(self, right) -> Studyset:
        """Return this studyset merged with ``right`` (this one wins where both define a field)."""
        if not isinstance(right, Studyset):
            raise ValueError(f"Can only merge with another Studyset, got {type(right).__name__}")
        left, other = self.to_dict(), right.to_dict()
        left["id"] = f"{self.id}_{right.id}"
        left["name"] = f"Merged: {self.name} + {right.name}"
        by_id = {str(s["id"]): s for s in left["studies"]}
        for study in other["studies"]:
            mine = by_id.get(str(study["id"]))
            if mine is None:
                left["studies"].append(study)
                continue
            for key in ("name", "authors", "publication", "doi", "pmid", "year"):
                mine[key] = mine.get(key) or study.get(key)
            mine["metadata"] = _merge([study.get("metadata"), mine.get("metadata")])
            have = {str(a["id"]) for a in mine["analyses"]}
            mine["analyses"] += [a for a in study["analyses"] if str(a["id"]) not in have]
        have = {a["id"] for a in left.get("annotations", [])}
        left.setdefault("annotations", []).extend(
            a for a in other.get("annotations", []) if a["id"] not in have
        )
        return self._with_document(left)


def _one_space(points: list) -> list:
    """Return foci of several analyses in one space: MNI if they mix MNI and Talairach."""
    spaces = {_space_name(p["space"]) for p in points if p.get("space")}
    if len(spaces) < 2:
        return points
    out = []
    for point in points:
        xyz = np.array([point["coordinates"]], dtype=float)
        if _space_name(point.get("space") or "MNI") == "TAL":
            xyz = tal2mni(xyz)
        out.append({**point, "coordinates": xyz[0].tolist(), "space": "MNI"})
    return out


def _merge(dicts) -> dict | None:
    out = {}
    for d in dicts:
        if isinstance(d, dict):
            out.update(d)
    return out or None


def _isna(value) -> bool:
    if isinstance(value, list | tuple | dict | np.ndarray):
        return False
    return bool(pd.isna(value))


def _column_type(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column):
        return "boolean"
    if pd.api.types.is_numeric_dtype(column):
        return "number"
    return "string"


def _none_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with the literal string ``"None"`` read as missing (as NiMARE does)."""
    frame = frame.copy()
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            if (
                isinstance(frame[column].dtype, pd.StringDtype)
                and not frame[column].eq("None").any()
            ):
                frame[column] = frame[column].astype(object)  # what the general path gives
                continue
            values = frame[column].to_numpy(dtype=object)
            # a new Series from the list infers the dtype as Series.map would
            kept = np.where(values == "None", None, values).tolist()
            frame[column] = pd.Series(kept, index=frame.index, dtype=None).astype(object)
    return frame


def _mask_image(mask):
    """Return a mask image or path for a mask argument (a NiftiMasker gives its mask image)."""
    if mask is None or isinstance(mask, str | os.PathLike | nib.spatialimages.SpatialImage):
        return mask
    for attribute in ("mask_img_", "mask_img"):
        img = getattr(mask, attribute, None)
        if img is not None:
            return img
    raise TypeError(f"mask must be a path, an image or a NiftiMasker, got {type(mask).__name__}")


def _store_relative_filenames(document: dict, images: pd.DataFrame, basepath) -> None:
    """Store an image's ``<type>__relative`` path in ``document`` where it names the same file.

    A dataset keeps both the absolute path and the one relative to its base folder (as
    NiMARE); the studyset keeps the relative one and resolves it against ``basepath``.
    """
    relative = {
        (str(row["id"]), col.removesuffix("__relative")): row[col]
        for _, row in images.iterrows()
        for col in images.columns
        if col.endswith("__relative") and isinstance(row[col], str) and row[col]
    }
    for study in document["studies"]:
        for analysis in study["analyses"]:
            ident = f"{study['id']}-{analysis['id']}"
            for image in analysis.get("images") or []:
                rel = relative.get((ident, image.get("value_type")))
                absolute = os.path.normpath(str(image.get("filename")))
                if rel is not None and os.path.normpath(os.path.join(basepath, rel)) == absolute:
                    image["filename"] = rel


def _dataset_basepath(dataset):
    """Return the folder a dataset's relative image paths resolve against (given or inferred)."""
    if getattr(dataset, "basepath", None):
        return dataset.basepath
    images = dataset.images
    for column in images.columns:
        absolute = column.removesuffix("__relative")
        if column == absolute or absolute not in images.columns:
            continue
        for rel, path in zip(images[column], images[absolute], strict=True):
            if isinstance(rel, str) and isinstance(path, str) and path.endswith(rel):
                return str(Path(path[: -len(rel)])) or os.sep
    return None


def convert_dataset_to_studyset(
    dataset, *, studyset_id="nimads_from_dataset", studyset_name="", out_file=None
) -> Studyset:
    """Convert a Dataset to a :class:`Studyset` with the dataset's space, mask and base path.

    Parameters
    ----------
    dataset : Dataset
        The dataset.
    studyset_id, studyset_name : str
        ``id`` and ``name`` of the studyset.
    out_file : str, os.PathLike or None
        If given, the NIMADS document is also written there.

    Returns
    -------
    Studyset
    """
    if out_file is not None:
        convert_dataset_to_nimads_dict(
            dataset, studyset_id=studyset_id, studyset_name=studyset_name, out_file=out_file
        )
    return Studyset.from_dataset(dataset, studyset_id=studyset_id, studyset_name=studyset_name)


def convert_sleuth_to_studyset(text_file, target="ale_2mm") -> Studyset:
    """Convert Sleuth text file(s) to a :class:`Studyset` in ``target`` space.

    Parameters
    ----------
    text_file : str, os.PathLike or a list of them
        Sleuth file(s).
    target : {"ale_2mm", "mni152_2mm"}
        Template space (as :func:`~nimare_jax.io.convert_sleuth_to_dataset`).

    Returns
    -------
    Studyset
    """
    return Studyset(convert_sleuth_to_nimads_dict(text_file, target=target), target=target)


def convert_neurosynth_to_studyset(
    coordinates_file,
    metadata_file,
    annotations_files=None,
    feature_groups=None,
    target="mni152_2mm",
    *,
    studyset_id="nimads_from_neurosynth",
    studyset_name="",
) -> Studyset:
    """Convert Neurosynth/NeuroQuery files to a :class:`Studyset`.

    Parameters
    ----------
    coordinates_file, metadata_file, annotations_files, feature_groups, target
        As :func:`~nimare_jax.io.convert_neurosynth_to_dataset`; the feature sets become
        the studyset's annotation.
    studyset_id, studyset_name : str
        ``id`` and ``name`` of the studyset.

    Returns
    -------
    Studyset
    """
    dataset = convert_neurosynth_to_dataset(
        coordinates_file, metadata_file, annotations_files, feature_groups, target=target
    )
    return Studyset.from_dataset(dataset, studyset_id=studyset_id, studyset_name=studyset_name)


def convert_nimads_to_sleuth(
    studyset,
    output_dir,
    target="MNI",
    decimal_precision=2,
    annotation=None,
    export_metadata=None,
    *,
    annotation_columns=None,
    annotation_values=None,
    split_booleans=True,
) -> None:
    """Write a NIMADS studyset as Sleuth text file(s).

    Without annotations, one file ``nimads_sleuth_file.txt``; with annotations, one file
    per value of each label of the first annotation (``{label}_{value}.txt``, booleans as
    ``_true``/``_false`` when ``split_booleans``), plus ``default.txt`` for analyses it
    does not annotate. Each analysis with foci is written as a block: a
    ``//{authors} ({study}): {analysis}`` header, ``//Subjects=`` (the smallest sample
    size, analysis metadata first, then the study's), the requested metadata as comments,
    and the foci in ``target`` space.

    Parameters
    ----------
    studyset : str, os.PathLike, dict or Studyset
        The studyset.
    output_dir : str or os.PathLike
        Folder for the files (created if needed).
    target : str
        Reference space of the output: a name containing "tal" gives Talairach (foci
        converted from MNI with Lancaster et al.'s 2007 transform), anything else MNI.
    decimal_precision : int
        Decimal places of the coordinates.
    annotation : str, os.PathLike, dict or None
        A NIMADS annotation to split by.
    export_metadata : list of str or None
        Study fields written as comments, among "authors", "publication", "year", "doi",
        "pmid", "affiliations" (default: doi and pmid).
    annotation_columns : list of str or None
        Split only on these labels.
    annotation_values : dict or None
        ``{label: allowed values}``: other values are not written.
    split_booleans : bool
        Write boolean labels as ``_true``/``_false`` (else as ``_True``/``_False``).

    Raises
    ------
    InvalidStudysetError
        If the studyset or annotation cannot be read, or ``decimal_precision`` < 0.
    """
    if decimal_precision is None or decimal_precision < 0:
        raise InvalidStudysetError(
            f"decimal_precision must be a non-negative integer, got {decimal_precision!r}"
        )
    fields = ["doi", "pmid"] if export_metadata is None else list(export_metadata)
    reference = "TAL" if "tal" in str(target).lower() else "MNI"
    try:
        obj = studyset if isinstance(studyset, Studyset) else Studyset(studyset)
        if annotation is not None:
            obj = obj.with_annotation_payload(annotation)
    except (InputFileError, TypeError, ValueError) as exc:
        raise InvalidStudysetError(f"cannot convert the studyset to Sleuth: {exc}") from exc
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pairs = [
        (study, analysis)
        for study in sorted(obj.studies, key=lambda s: s.id)
        for analysis in sorted(study.analyses, key=lambda a: a.id)
    ]
    if not obj.annotations:
        groups = {"nimads_sleuth_file": pairs}
    else:
        groups = _sleuth_groups(
            pairs, obj.annotations[0], annotation_columns, annotation_values, split_booleans
        )
    # MNI templates report MNI; Talairach-targeted studysets report Talairach
    in_tal = "tal" in str(obj.space).lower()
    for name, members in sorted(groups.items()):
        lines = [f"//Reference={reference}"]
        for study, analysis in members:
            lines += _sleuth_block(study, analysis, reference, in_tal, decimal_precision, fields)
        safe = "".join(c for c in name if c.isalnum() or c in "._-") or "unnamed_group"
        (output_dir / f"{safe}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _sleuth_groups(pairs, annotation, columns, values, split_booleans) -> dict:
    groups = defaultdict(list)
    for study, analysis in pairs:
        note = analysis.annotations.get(annotation.id)
        if not note:
            groups["default"].append((study, analysis))
            continue
        for label, value in sorted(note.items(), key=lambda kv: (kv[0], str(kv[1]))):
            if columns is not None and label not in columns:
                continue
            if values and label in values and value not in values[label]:
                continue
            shown = str(value).lower() if isinstance(value, bool) and split_booleans else value
            groups[f"{label}_{shown}"].append((study, analysis))
    return groups


def _sleuth_block(study, analysis, reference, in_tal, precision, fields) -> list[str]:
    if not analysis.points:
        return []
    study_name = study.name or f"Study_{study.id}"
    analysis_name = analysis.name or f"Analysis_{analysis.id}"
    if study.authors:
        lines = [f"//{study.authors} ({study_name}): {analysis_name}"]
    else:
        lines = [f"//{study_name}: {analysis_name}"]
    size = _sleuth_subjects(analysis.metadata) or _sleuth_subjects(study.metadata)
    if size:
        lines.append(f"//Subjects={size}")
    meta = study.metadata
    optional = {
        "authors": ("Authors", study.authors),
        "publication": ("Publication", study.publication),
        "year": ("Year", study.year or meta.get("year")),
        "doi": ("DOI", study.doi or meta.get("doi")),
        "pmid": ("PubMedId", study.pmid or meta.get("pmid")),
        "affiliations": (
            "Affiliations",
            meta.get("affiliations") or meta.get("institutions") or meta.get("institution"),
        ),
    }
    for key in optional:
        tag, value = optional[key]
        if key in fields and value:
            lines.append(f"//{tag}={value}")
    xyz = np.array([p.coordinates for p in analysis.points], dtype=float)
    spaces = {str(p.space).lower() for p in analysis.points}
    tal = in_tal or any("tal" in s for s in spaces)
    if reference == "MNI" and tal:
        xyz = tal2mni(xyz)
    elif reference == "TAL" and not tal:
        xyz = mni2tal(xyz)
    lines += ["\t".join(f"{v:.{precision}f}" for v in row) for row in xyz]
    lines.append("")
    return lines


def _sleuth_subjects(meta: dict):
    sizes = meta.get("sample_sizes") or meta.get("sample_size")
    if isinstance(sizes, list | tuple):
        return min(sizes) if sizes else None
    return sizes

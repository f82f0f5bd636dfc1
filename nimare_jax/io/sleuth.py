"""Read Sleuth / GingerALE foci text files.

The format, line by line (blank lines may appear anywhere)::

    // Reference=MNI                 first line: MNI, TAL or Talairach (any case)
    // Smith et al., 2010: Task > Rest     one or more header lines name an experiment
    // Subjects=20                   closes the header; a positive whole number
    -16   -58   -22                  foci: x y z separated by spaces, tabs or commas
    26    -64   -50

Several header lines before one ``Subjects`` line form one experiment whose name is their
text joined by single spaces (as NiMARE does). The name is split into study and contrast at
the first ``;`` or ``:`` after a year (19xx/20xx), else at the first ``;``, else at the first
``:``; with no separator the contrast is ``"analysis_1"``. Every malformed input raises
:class:`~nimare_jax.exceptions.InputFileError` naming the file, the line and the experiment.

Files are UTF-8 or, failing that, Windows-1252 (so a name typed with "…" or "–" in a
Windows editor reads as written); lines end at LF, CR LF or CR only, and a
coordinate is an ASCII decimal number (see :mod:`nimare_jax.parsing`).
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import InputFileError, excerpt
from nimare_jax.io.nimare_json import _write_json
from nimare_jax.parsing import parse_number, read_lines
from nimare_jax.spatial import (
    MAX_COORDINATE_MM,
    get_template,
    mm2vox,
    outside_volume,
    tal2mni,
    volume_extent,
)

_REFERENCE = re.compile(r"reference\s*=\s*(.*)", re.IGNORECASE)
_SUBJECTS = re.compile(r"subjects\s*=\s*(.*)", re.IGNORECASE)
_SPACES = {"mni": "MNI", "tal": "TAL", "talairach": "Talairach"}
_YEAR = re.compile(r"(?:19|20)\d{2}")


@dataclass
class _Experiment:
    name: str
    line: int
    n_subjects: int
    foci: list[tuple[int, list[float]]] = field(default_factory=list)


def convert_sleuth_to_dict(text_file) -> dict:
    """Read Sleuth text file(s) into a NiMARE-format dictionary.

    Parameters
    ----------
    text_file : str, os.PathLike or list of them
        Sleuth file(s). Experiments of several files are pooled; files may use different
        reference spaces.

    Returns
    -------
    dict
        ``{study: {"contrasts": {contrast: {"coords": {"space", "x", "y", "z"},
        "metadata": {"sample_sizes": [n]}}}}}``, studies in order of first appearance.
        Coordinates are as written (not transformed); ``space`` is ``"MNI"``, ``"TAL"`` or
        ``"Talairach"``.

    Raises
    ------
    InputFileError
        If a file is missing or malformed: a NUL character (e.g. a UTF-16 file), no or an
        unknown ``Reference``, a header without ``Subjects``, a sample size that is not a
        positive whole number, a coordinate row without exactly three numbers, an
        experiment without foci, a coordinate beyond 500 mm (a column mistake), or an
        experiment (study and contrast) given twice. The message names the file, the line
        and the experiment.

    Warns
    -----
    UserWarning
        Once, if foci lie outside the 2 mm MNI152 template's volume, naming the first ones.
        They are kept: as in NiMARE, each contributes the part of its kernel inside the
        volume.

    Examples
    --------
    >>> convert_sleuth_to_dict("ale.txt")  # doctest: +SKIP
    {'Smith et al., 2010': {'contrasts': {'Task > Rest': {...}}}}
    """
    out, outside = _read_sleuth(text_file)
    if outside:
        extent = volume_extent(*_template_grids()[1])
        warnings.warn(
            f"{len(outside)} foci lie outside the 2 mm MNI152 template's volume ({extent}); "
            "they are kept, and each contributes the part of its kernel inside the volume "
            "(as in NiMARE): " + "; ".join(outside[:3]) + ("; ..." if len(outside) > 3 else ""),
            UserWarning,
            stacklevel=2,
        )
    return out


def _read_sleuth(text_file) -> tuple[dict, list[str]]:
    """Read Sleuth file(s) into a NiMARE-format dict; also describe the foci outside the volume."""
    out: dict = {}
    outside: list[str] = []
    first_seen: dict[tuple[str, str], str] = {}
    for path in _as_paths(text_file):
        space, experiments = _read_sleuth_file(path)
        for exp in experiments:
            study, contrast = _split_name(exp.name)
            if (study, contrast) in first_seen:
                raise _error(
                    path,
                    exp.line,
                    exp.name,
                    f"study {excerpt(study)}, contrast {excerpt(contrast)} was already read at "
                    f"{first_seen[study, contrast]}; experiment names must be unique",
                )
            first_seen[study, contrast] = f"{path}, line {exp.line}"
            xyz = np.array([focus for _, focus in exp.foci])
            for n in np.flatnonzero(_outside_templates(_mni(xyz, space))):
                x, y, z = xyz[n]
                where = f"{path}, line {exp.foci[n][0]}, experiment {exp.name!r}"
                outside.append(f"{where}: ({x:g}, {y:g}, {z:g})")
            coords = {"space": space, **dict(zip("xyz", xyz.T.tolist(), strict=True))}
            entry = {"coords": coords, "metadata": {"sample_sizes": [exp.n_subjects]}}
            out.setdefault(study, {"contrasts": {}})["contrasts"][contrast] = entry
    return out, outside


def convert_sleuth_to_json(text_file, out_file) -> None:
    """Convert Sleuth text file(s) to a NiMARE-format JSON file.

    Parameters
    ----------
    text_file : str, os.PathLike or list of them
        Sleuth file(s); see :func:`convert_sleuth_to_dict`.
    out_file : str or os.PathLike
        Output JSON file.
    """
    _write_json(convert_sleuth_to_dict(text_file), out_file)


def convert_sleuth_to_dataset(text_file, target: str = "ale_2mm") -> Dataset:
    """Convert Sleuth text file(s) to a :class:`~nimare_jax.dataset.Dataset`.

    Parameters
    ----------
    text_file : str, os.PathLike or list of them
        Sleuth file(s); see :func:`convert_sleuth_to_dict`.
    target : {"ale_2mm", "mni152_2mm"}
        Template space of the dataset. ``"ale_2mm"`` (the default, as in NiMARE) is the
        GingerALE brain mask.

    Returns
    -------
    Dataset
        The experiments, Talairach foci converted to MNI (Lancaster et al., 2007).
    """
    # The Dataset warns about foci outside its mask's volume; the reader's warning would repeat it.
    return Dataset(_read_sleuth(text_file)[0], target=target)


def _as_paths(text_file) -> list:
    """Return one or several file arguments as a list of paths."""
    files = list(text_file) if isinstance(text_file, list | tuple) else [text_file]
    if not files or not all(isinstance(f, str | os.PathLike) for f in files):
        raise ValueError(
            f"text_file must be a path or a non-empty list of paths, got {text_file!r}"
        )
    return files


def _error(path, line: int, experiment: str | None, message: str) -> InputFileError:
    name = excerpt(experiment) if experiment else "none (before the first experiment)"
    return InputFileError(f"{path}, line {line}, experiment {name}: {message}")


def _read_sleuth_file(path) -> tuple[str, list[_Experiment]]:
    """Parse one file into its reference space and experiments, validating every line."""
    lines = read_lines(path)
    space = None
    header: list[str] = []  # name lines of the experiment being declared
    header_line = 0
    experiments: list[_Experiment] = []
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        current = experiments[-1] if experiments else None
        context = " ".join(header) or (current.name if current else None)
        where = (path, lineno, context)
        if "\x00" in line:
            raise _error(
                *where, "the line holds a NUL character; is the file UTF-16? Save it as UTF-8"
            )
        comment = line[2:].strip() if line.startswith("//") else None
        if comment is not None and (match := _REFERENCE.fullmatch(comment)):
            if space is not None or context:
                raise _error(*where, "the Reference line must appear once, before any experiment")
            space = _SPACES.get(match.group(1).strip().lower())
            if space is None:
                raise _error(
                    *where,
                    f"unknown Reference space {excerpt(match.group(1).strip())}; "
                    "expected MNI, TAL or Talairach",
                )
        elif space is None:
            raise _error(*where, "the file must start with a '// Reference=MNI' (or TAL) line")
        elif comment is not None and (match := _SUBJECTS.fullmatch(comment)):
            if not header:
                raise _error(*where, "'Subjects' line without an experiment name line before it")
            try:
                n_subjects = _positive_int(match.group(1).strip())
            except ValueError as exc:
                raise _error(*where, str(exc)) from None
            experiments.append(_Experiment(" ".join(header), header_line, n_subjects))
            header = []
        elif comment:  # an experiment name line; empty '//' lines are skipped
            if not header:
                if current is not None:
                    _check_foci(path, current, space)
                header_line = lineno
            header.append(comment)
        elif comment is None:  # a focus
            if header:
                raise _error(*where, "foci follow an experiment header without a 'Subjects' line")
            if current is None:
                raise _error(*where, "foci appear before the first experiment header")
            try:
                current.foci.append((lineno, _parse_focus(line)))
            except ValueError as exc:
                raise _error(*where, str(exc)) from None
    if space is None:
        raise _error(path, max(len(lines), 1), None, "the file is empty")
    if header:
        raise _error(path, header_line, " ".join(header), "no 'Subjects' line and no foci")
    if not experiments:
        raise _error(path, len(lines), None, "no experiment after the Reference line")
    _check_foci(path, experiments[-1], space)
    return space, experiments


def _positive_int(text: str) -> int:
    try:  # ASCII digits only, as for coordinates; int() refuses over 4300 digits
        n = int(text) if re.fullmatch(r"\+?\d+", text, re.ASCII) else 0
    except ValueError:
        n = 0
    if n == 0:
        raise ValueError(f"Subjects must be a positive whole number, got {excerpt(text)}")
    return n


def _parse_focus(line: str) -> list[float]:
    parts = re.split(r"[\s,]+", line)
    if len(parts) != 3:
        raise ValueError(f"expected 3 coordinates (x y z), got {len(parts)}: {excerpt(line)}")
    try:
        xyz = [parse_number(p) for p in parts]
    except ValueError:
        raise ValueError(f"coordinates must be numbers, got {excerpt(line)}") from None
    if not np.all(np.isfinite(xyz)):
        raise ValueError(f"coordinates must be finite, got {excerpt(line)}")
    return xyz


def _check_foci(path, exp: _Experiment, space: str) -> None:
    """Raise unless the experiment has foci, none beyond 500 mm of the origin (in MNI)."""
    if not exp.foci:
        raise _error(path, exp.line, exp.name, "the experiment has no foci")
    xyz = np.array([focus for _, focus in exp.foci])
    absurd = (np.abs(_mni(xyz, space)) > MAX_COORDINATE_MM).any(axis=1)
    if absurd.any():
        first = int(np.argmax(absurd))
        x, y, z = xyz[first]
        raise _error(
            path,
            exp.foci[first][0],
            exp.name,
            f"focus ({x:g}, {y:g}, {z:g}) lies more than {MAX_COORDINATE_MM:g} mm from the "
            "origin; check the columns",
        )


def _mni(xyz: np.ndarray, space: str) -> np.ndarray:
    return xyz if space == "MNI" else tal2mni(xyz)


def _outside_templates(mni: np.ndarray) -> np.ndarray:
    """Which MNI coordinates fall outside the volume of either 2 mm template."""
    outside = np.zeros(len(mni), bool)
    for affine, shape in _template_grids():
        outside |= outside_volume(mm2vox(mni, affine), shape)
    return outside


@functools.cache
def _template_grids() -> tuple[tuple[np.ndarray, tuple[int, ...]], ...]:
    """Affine and shape of both templates a Sleuth dataset may target."""
    return tuple((img.affine, img.shape) for img in map(get_template, ("ale_2mm", "mni152_2mm")))


def _split_name(info: str) -> tuple[str, str]:
    """Split an experiment name into study and contrast (NiMARE's rule, see module doc)."""
    cut = -1
    year = _YEAR.search(info)
    if year:
        after = [i for i in (info.find(s, year.end()) for s in ";:") if i >= 0]
        cut = min(after, default=-1)
    if cut < 0:
        cut = info.find(";") if ";" in info else info.find(":")
    if cut < 0:
        return info, "analysis_1"
    study, contrast = info[:cut].strip(), info[cut + 1 :].strip()
    return study or info, contrast or "analysis_1"

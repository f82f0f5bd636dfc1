"""Reading rules shared by every reader: text files as lines, JSON files, numbers.

This module sits below :mod:`nimare_jax.dataset` (which reads NiMARE JSON) and
:mod:`nimare_jax.io` (Sleuth, Neurosynth vocabularies), and SCALE's baseline reader uses it
too, so all of them decode, split and parse the same way:

- Text is UTF-8 (a byte-order mark is dropped). A file that is not valid UTF-8 is read as
  Windows-1252, the encoding of Windows exports such as Sleuth files saved by Excel or
  Notepad: byte 0x85 is "…", 0x96 "–", 0x93/0x94 curly quotes, so names come out as
  written. The five bytes Windows-1252 leaves undefined decode to the control characters
  of the same number, as browsers do (WHATWG "windows-1252"), so decoding never fails.
- Lines end at LF, CR LF or CR only. :meth:`str.splitlines` also breaks at
  characters that may sit inside a name (U+0085, form feed, U+2028, ...), which shifted
  every later line number and split names in two.
- A number is what :class:`float` reads from ASCII text without ``_`` separators: decimal
  notation with an optional sign and exponent, or ``nan``/``inf`` (callers reject those
  where a finite value is needed). Digits of other scripts and ``1_000`` are not numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from nimare_jax.exceptions import InputFileError

__all__ = ["decode_text", "load_json", "parse_number", "read_lines"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Bytes 0x80-0x9F where Windows-1252 differs from Latin-1 (all other bytes agree).
_WINDOWS_1252 = str.maketrans(
    {chr(b): c for b in range(0x80, 0xA0) if (c := bytes([b]).decode("cp1252", "ignore"))}
)


def _read_bytes(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise InputFileError(f"{path}: file not found") from exc
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the file ({exc.strerror})") from exc


def decode_text(data: bytes) -> str:
    r"""Decode a text file's bytes: UTF-8 (BOM dropped), else Windows-1252.

    Parameters
    ----------
    data : bytes
        File content.

    Returns
    -------
    str
        The text; decoding never fails.

    Examples
    --------
    >>> decode_text(b"Smith et al., 2010: Task \x85 more")
    'Smith et al., 2010: Task … more'
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1").translate(_WINDOWS_1252)


def read_lines(path) -> list[str]:
    """Return the lines of a text file, split at LF, CR LF or CR only.

    Parameters
    ----------
    path : str or os.PathLike
        Text file, decoded by :func:`decode_text`.

    Returns
    -------
    list of str
        Lines without their line break; line ``k`` (counting from 1) is item ``k - 1``. A
        final line break does not start another line.

    Raises
    ------
    InputFileError
        If the file is missing or cannot be read.
    """
    lines = _LINE_BREAK.split(decode_text(_read_bytes(path)))
    return lines[:-1] if lines[-1] == "" else lines


def load_json(path) -> dict:
    """Return the JSON object stored in a file.

    Parameters
    ----------
    path : str or os.PathLike
        JSON file, e.g. a NiMARE dataset or a NIMADS studyset, in UTF-8 (with or without a
        byte-order mark), UTF-16 or UTF-32.

    Returns
    -------
    dict
        The decoded object.

    Raises
    ------
    InputFileError
        If the file is missing, is not valid JSON (the message says when it looks like a
        Sleuth text file) or does not hold a JSON object.
    """
    data = _read_bytes(path)
    try:
        obj = json.loads(data)  # detects the encoding and drops a UTF-8 byte-order mark
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        hint = ""
        if decode_text(data).lstrip().startswith("//"):
            hint = (
                "; it looks like a Sleuth text file: read it with "
                "nimare_jax.io.convert_sleuth_to_dataset"
            )
        raise InputFileError(f"{path}: not valid JSON ({why}){hint}") from exc
    if not isinstance(obj, dict):
        raise InputFileError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    if re.search(rb"\\u[dD][89a-fA-F]", data):  # escapes of UTF-16 surrogates: pairs only
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputFileError(
                f"{path}: not valid JSON text: a string holds an unpaired surrogate escape "
                f"({exc.object[exc.start : exc.end]!a}), which is not a character"
            ) from exc
    return obj


def parse_number(text: str) -> float:
    """Return the number written in ``text`` (see the module notes for what counts).

    Parameters
    ----------
    text : str
        One field, e.g. ``"-16"``, ``"2.5e1"``; surrounding white space is allowed.

    Returns
    -------
    float
        Its value; ``nan`` and ``inf`` are returned as such.

    Raises
    ------
    ValueError
        If ``text`` is not a number.

    Examples
    --------
    >>> parse_number(" -16 "), parse_number("2.5e1")
    (-16.0, 25.0)
    """
    if not text.isascii() or "_" in text:
        raise ValueError(f"not a number: {text!r}")
    return float(text)

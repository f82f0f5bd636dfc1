"""Exceptions raised by nimare_jax for bad input.

Every error about user input derives from :class:`NiMAREJaxError` so that the command-line
interface can print it as one line without a traceback.
"""


class NiMAREJaxError(Exception):
    """Base class of all errors nimare_jax raises about its input."""


class InputFileError(NiMAREJaxError, ValueError):
    """A file (Sleuth, JSON, image, ...) is malformed; the message names file, line and field."""


class DatasetError(NiMAREJaxError, ValueError):
    """A dataset cannot be analysed as asked (empty, no sample sizes, absurd foci)."""


class ImageError(NiMAREJaxError, ValueError):
    """Images are incompatible (shapes, affines) or contain invalid values."""


class InvalidStudysetError(NiMAREJaxError, ValueError):
    """A NIMADS studyset is invalid or malformed (NiMARE's ``InvalidStudysetError``)."""


class OutputError(NiMAREJaxError, OSError):
    """The output folder or file cannot be created or written (checked before any work)."""


class DownloadError(NiMAREJaxError, OSError):
    """A download failed (offline, HTTP error, cut short, wrong checksum); names URL and folder."""


def excerpt(value, limit: int = 80) -> str:
    """Return ``repr(value)`` for an error message, cut to a readable length.

    Readers echo the offending input (a line, a name, a value); a line of a broken file
    can be megabytes long, so the echo keeps its first ``limit`` characters and says how
    long it was. String subclasses (e.g. ``numpy.str_``) are shown as plain strings.

    Parameters
    ----------
    value : object
        The input to quote.
    limit : int
        Maximum number of characters of the representation that are kept.

    Returns
    -------
    str
        The representation, or its start followed by ``"... (N characters)"``.

    Examples
    --------
    >>> excerpt("1 2 x")
    "'1 2 x'"
    >>> excerpt("9" * 1000, limit=10)
    "'999999999... (1002 characters)"
    """
    text = repr(str(value) if isinstance(value, str) else value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"

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


class OutputError(NiMAREJaxError, OSError):
    """The output folder or file cannot be created or written (checked before any work)."""

"""Argument types shared by the command-line parsers of the workflows and ``nimare-jax``."""

from __future__ import annotations

import argparse
import math


def number(kind, low, high=math.inf, what="a number"):
    """Return an argparse type accepting ``kind(text)`` strictly between ``low`` and ``high``.

    Parameters
    ----------
    kind : type
        ``int`` or ``float``.
    low, high : float
        Exclusive bounds.
    what : str
        Description used in the error message.

    Returns
    -------
    callable
        ``parse(text) -> kind``; raises :class:`argparse.ArgumentTypeError`.
    """

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low < value < high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = number(int, 0, what="a positive whole number")
positive_float = number(float, 0, what="a positive number")
probability = number(float, 0, 1, what="a p-value between 0 and 1 (exclusive)")

"""Checks of user-facing parameters shared by every layer, and the warnings they raise.

This module imports nothing else of nimare_jax, so the permutation engine, the estimators
and the workflows all validate a parameter with the same function and the same message.
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["FWE_ALPHA", "MonteCarloWarning", "check_n_iters", "user_stacklevel"]

#: Family-wise error level that Monte Carlo corrected p-values are checked against. NiMARE's
#: correctors take no alpha (thresholding comes later), so the conventional 0.05 is assumed.
FWE_ALPHA = 0.05

#: NiMARE estimator and kernel options that nimare_jax accepts so that NiMARE scripts run,
#: and ignores: ``memory``/``memory_level`` configure joblib caching of NiMARE's kernel maps
#: (nimare_jax caches compiled programs instead), and ``generate_description=False`` skips
#: NiMARE's methods text, which nimare_jax always writes (it costs nothing).
IGNORED_NIMARE_OPTIONS = frozenset({"generate_description", "memory", "memory_level"})

_PACKAGE = str(Path(__file__).resolve().parents[1]) + os.sep


class MonteCarloWarning(UserWarning):
    """Too few Monte Carlo iterations for the p-values to reach the level they are used at."""


def user_stacklevel() -> int:
    """Return the ``stacklevel`` that makes a warning point at the first caller outside nimare_jax.

    Call it from the function that calls :func:`warnings.warn`.

    Returns
    -------
    int
        Number of frames between that function and the user's code, plus one.
    """
    frame = inspect.currentframe().f_back  # the function about to warn: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level


def check_n_iters(
    n_iters,
    alpha: float | None = None,
    *,
    per_iter: int = 1,
    what: str = "family-wise error corrected p-values",
) -> int:
    """Validate a number of Monte Carlo iterations; warn if it is too small for ``alpha``.

    Refused (``ValueError``): anything but a whole number of type ``int`` (or a NumPy
    integer), booleans, and numbers below 1. Warned about (:class:`MonteCarloWarning`):
    counts whose null sample, ``n_iters * per_iter`` values, is smaller than ``1 / alpha``,
    so that the Monte Carlo p-values (at best about ``1 / (n_iters * per_iter)``) cannot
    reach ``alpha``. A warning rather than an error: small counts are legitimate for tests
    and quick looks, whose p-values are simply coarse.

    Parameters
    ----------
    n_iters : int
        Requested iterations.
    alpha : float, optional
        Level the resulting p-values are compared with (:data:`FWE_ALPHA` for
        family-wise error, ``voxel_thresh`` for a cluster-forming threshold read from a
        Monte Carlo null). None: no warning.
    per_iter : int
        Null values each iteration adds (e.g. the number of voxels when a threshold is read
        from the values of every voxel of every iteration).
    what : str
        What the null is used for, completing "too few Monte Carlo null values for ...".

    Returns
    -------
    int
        ``n_iters`` as a Python int.

    Examples
    --------
    >>> check_n_iters(5000, FWE_ALPHA)
    5000
    >>> check_n_iters(2.5)
    Traceback (most recent call last):
    ...
    ValueError: n_iters must be a positive integer, got 2.5
    """
    if isinstance(n_iters, bool) or not isinstance(n_iters, int | np.integer) or n_iters < 1:
        raise ValueError(f"n_iters must be a positive integer, got {n_iters!r}")
    n_iters = int(n_iters)
    if alpha is not None:
        needed = math.ceil(1.0 / alpha - 1e-9)
        if n_iters * per_iter < needed:
            per = "" if per_iter == 1 else f" (x {per_iter} values per iteration)"
            warnings.warn(
                f"n_iters={n_iters}{per} gives too few Monte Carlo null values for {what} "
                f"to reach {alpha:g}: the smallest attainable p-value is about "
                f"{1.0 / (n_iters * per_iter):.3g}. At least {needed} null values are needed "
                "(NiMARE's default is 5000 iterations).",
                MonteCarloWarning,
                stacklevel=user_stacklevel(),
            )
    return n_iters

"""Shared machinery of the coordinate-based estimators (configuration and glue only)."""

from __future__ import annotations

import numpy as np

from nimare_jax.exceptions import DatasetError
from nimare_jax.meta.cbma.kernel import KernelTransformer
from nimare_jax.results import MetaResult


def make_kernel(kernel_transformer, default, kwargs) -> KernelTransformer:
    """Return a kernel instance from a class, an instance or None (plus ``kernel__`` kwargs).

    Parameters
    ----------
    kernel_transformer : type, KernelTransformer or None
        Kernel class or instance.
    default : type
        Class used when ``kernel_transformer`` is None.
    kwargs : dict
        Estimator keyword arguments; those starting with ``kernel__`` configure the kernel.

    Returns
    -------
    KernelTransformer
        The kernel.
    """
    kernel_args = {k[len("kernel__") :]: v for k, v in kwargs.items() if k.startswith("kernel__")}
    unknown = [k for k in kwargs if not k.startswith("kernel__")]
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {unknown}")
    kt = default if kernel_transformer is None else kernel_transformer
    if isinstance(kt, type):
        if not issubclass(kt, KernelTransformer):
            raise TypeError(f"kernel_transformer must be a KernelTransformer, got {kt!r}")
        return kt(**kernel_args)
    if not isinstance(kt, KernelTransformer):
        raise TypeError(f"kernel_transformer must be a KernelTransformer, got {kt!r}")
    if kernel_args:
        raise TypeError(
            "kernel__ arguments can only be given with a kernel class, not an instance"
        )
    return kt


def check_n_iters(n_iters) -> int:
    """Validate a number of Monte Carlo iterations.

    Parameters
    ----------
    n_iters : int
        Requested iterations.

    Returns
    -------
    int
        The same, as int.
    """
    if isinstance(n_iters, bool) or not isinstance(n_iters, int | np.integer) or n_iters < 1:
        raise ValueError(f"n_iters must be a positive integer, got {n_iters!r}")
    return int(n_iters)


class CBMAEstimator:
    """Base class: ``fit(dataset)`` validates, calls :meth:`_fit`, wraps a :class:`MetaResult`.

    Subclasses implement ``_fit(arrays) -> (maps, null_distributions)``, ``_description()``
    and, for Monte Carlo FWE, ``correct_fwe_montecarlo``.
    """

    _citations: tuple = ()

    def fit(self, dataset) -> MetaResult:
        """Fit the estimator to a dataset.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset
            Studies with coordinates.

        Returns
        -------
        MetaResult
            Maps and null distributions; ``result.estimator`` is this (fitted) estimator.
        """
        if len(dataset.ids) == 0:
            raise DatasetError("cannot fit an estimator to an empty dataset")
        self.dataset_ = dataset
        self.inputs_ = self.kernel_transformer.prepare(dataset)
        maps, nulls = self._fit(self.inputs_)
        self.null_distributions_ = nulls
        return MetaResult(
            maps,
            mask=dataset.masker,
            null_distributions=nulls,
            description=self._description(),
            citations=self._citations,
            estimator=self,
        )

    def _fit(self, arrays):
        raise NotImplementedError

    def _description(self) -> str:
        raise NotImplementedError

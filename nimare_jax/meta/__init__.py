"""Meta-analysis estimators: coordinate-based (``cbma``) and image-based (``ibma``)."""

from nimare_jax.meta import cbma, esma, ibma, kernel

__all__ = ["cbma", "esma", "ibma", "kernel"]
from nimare_jax.meta.cbmr import CBMR as CBMR  # noqa: E402  (issue 14; explicit re-export)

"""Model-based coordinate-based meta-analysis (the seed's ``meta.cbma.model``): CBMR."""

from nimare_jax.meta.cbmr import CBMR, CBMRResult

__all__ = ["CBMR", "CBMRResult"]

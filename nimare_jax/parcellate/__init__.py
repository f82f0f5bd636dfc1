"""Meta-analytic parcellation of a brain region (NiMARE's ``nimare.parcellate`` seed API).

:class:`~nimare_jax.parcellate.cbp.CoordCBP` (coactivation-based parcellation) and
:class:`~nimare_jax.parcellate.mamp.MAMP` (meta-analytic activation modelling-based
parcellation) share :class:`~nimare_jax.parcellate.base.Parcellator`.
"""

from nimare_jax.parcellate.base import ParcellationResult, Parcellator
from nimare_jax.parcellate.cbp import CoordCBP
from nimare_jax.parcellate.mamp import MAMP

__all__ = ["MAMP", "CoordCBP", "ParcellationResult", "Parcellator"]

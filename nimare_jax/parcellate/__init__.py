"""Meta-analytic parcellation of a brain region (NiMARE's ``nimare.parcellate`` seed API).

:class:`~nimare_jax.parcellate.cbp.CoordCBP` (coactivation-based parcellation) and
:class:`~nimare_jax.parcellate.mamp.MAMP` (meta-analytic activation modelling-based
parcellation) share :class:`~nimare_jax.parcellate.base.Parcellator` with
:class:`~nimare_jax.parcellate.mapbot.MAPBOT` (meta-analytic parcellation based on text).
"""

from nimare_jax.parcellate.base import ParcellationResult, Parcellator
from nimare_jax.parcellate.cbp import CoordCBP
from nimare_jax.parcellate.mamp import MAMP
from nimare_jax.parcellate.mapbot import MAPBOT

__all__ = ["MAMP", "MAPBOT", "CoordCBP", "ParcellationResult", "Parcellator"]

"""NiMARE-compatible home of the small helpers (``nimare.utils``); they live in spatial."""

from nimare_jax.parsing import load_json
from nimare_jax.spatial import (
    DEFAULT_FLOAT_DTYPE,
    get_masker,
    get_resource_path,
    get_template,
    listify,
    mm2vox,
    mni2tal,
    round2,
    tal2mni,
    vox2mm,
)

__all__ = [
    "DEFAULT_FLOAT_DTYPE",
    "get_masker",
    "get_resource_path",
    "get_template",
    "listify",
    "load_json",
    "mm2vox",
    "mni2tal",
    "round2",
    "tal2mni",
    "vox2mm",
]

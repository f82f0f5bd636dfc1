"""NiMARE-compatible home of the small helpers (``nimare.utils``); they live in spatial."""

from nimare_jax.spatial import (
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
    "get_resource_path",
    "get_template",
    "listify",
    "mm2vox",
    "mni2tal",
    "round2",
    "tal2mni",
    "vox2mm",
]

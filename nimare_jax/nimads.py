"""NiMARE's historical import path ``nimare.nimads``: the names of :mod:`nimare_jax.studyset`."""

from nimare_jax.studyset import (
    Analysis,
    Annotation,
    Image,
    Point,
    Study,
    Studyset,
    StudysetStore,
    as_dataset,
    normalize_collection,
)

__all__ = [
    "Analysis",
    "Annotation",
    "Image",
    "Point",
    "Study",
    "Studyset",
    "StudysetStore",
    "as_dataset",
    "normalize_collection",
]

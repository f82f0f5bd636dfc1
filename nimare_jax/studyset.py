"""NiMARE 0.22's ``nimare.studyset``: the :class:`Studyset` container and its helpers.

The implementation lives in :mod:`nimare_jax.io.studyset` (a studyset is read from and
written to NIMADS files, so it sits with the readers); this module is the public import path
and holds the one coercion every estimator applies to its input, :func:`as_dataset`.
"""

from nimare_jax.dataset import Dataset
from nimare_jax.io.studyset import (
    Analysis,
    Annotation,
    Image,
    Point,
    Study,
    Studyset,
    StudysetStore,
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


def as_dataset(collection) -> Dataset:
    """Return the Dataset an estimator should analyse for a Dataset or a Studyset.

    This is how every ``fit``/``transform`` accepts a :class:`Studyset` wherever a
    :class:`~nimare_jax.dataset.Dataset` is accepted: a dataset is returned unchanged, a
    studyset as :meth:`Studyset.to_dataset` (its selected analyses and foci, in its space,
    with its mask).

    Parameters
    ----------
    collection : Dataset or Studyset
        The studies to analyse.

    Returns
    -------
    Dataset

    Raises
    ------
    TypeError
        For anything else, naming the type received.
    """
    if isinstance(collection, Dataset):
        return collection
    if isinstance(collection, Studyset):
        return collection.to_dataset()
    raise TypeError(f"expected a Dataset or a Studyset, got {type(collection).__name__}")


def normalize_collection(collection) -> Studyset:
    """Return a Studyset for a Studyset (unchanged) or a Dataset (converted).

    Parameters
    ----------
    collection : Dataset or Studyset
        The studies.

    Returns
    -------
    Studyset
    """
    if isinstance(collection, Studyset):
        return collection
    if isinstance(collection, Dataset):
        return Studyset.from_dataset(collection)
    raise TypeError(f"expected a Dataset or a Studyset, got {type(collection).__name__}")

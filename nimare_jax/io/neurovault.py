"""NeuroVault collections -> an image-based Dataset (NiMARE's ``convert_neurovault_to_dataset``).

For each collection the NeuroVault API lists its images
(``/api/collections/<id>/images/?format=json``, followed page by page); the group-level
images whose name matches a contrast's regular expression and whose map type is known are
downloaded (atomically, once: a file already on disk is reused) and become that contrast's
images. Differences from NiMARE 0.22.1: every page of a collection's listing is read (NiMARE
reads only the first), only the standard library is used for HTTP, and a failed request
raises :class:`~nimare_jax.exceptions.DownloadError` naming its URL and the image folder.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError
from nimare_jax.io.download import download_file, fetch_json, get_dataset_dir

#: Root of the NeuroVault site.
NEUROVAULT_URL = "https://neurovault.org"
#: NeuroVault map types -> Dataset image columns (NiMARE 0.22.1's default table).
DEFAULT_MAP_TYPE_CONVERSION = {
    "T map": "t",
    "variance": "varcope",
    "univariate-beta map": "beta",
    "multivariate-beta map": "beta",
    "Z map": "z",
    "p map": "p",
    "P map (given null hypothesis)": "p",
}


def _collection_images(root: str, collection, folder: str, timeout) -> list[dict]:
    """Every image record of a collection, following the listing's ``next`` pages."""
    url = f"{root}/api/collections/{collection}/images/?format=json"
    records = []
    while url:
        page = fetch_json(url, timeout=timeout, folder=folder, attempts=3)
        if not isinstance(page, dict) or not isinstance(page.get("results"), list):
            raise DatasetError(f"{url}: not a NeuroVault image listing (no 'results' list)")
        records += page["results"]
        url = page.get("next")
    return records


def _modal_sample_size(sizes: list, collection, contrast: str):
    counts = Counter(s for s in sizes if s is not None)
    if not counts:
        return None
    size = counts.most_common(1)[0][0]
    if len(counts) > 1:
        warnings.warn(
            f"NeuroVault collection {collection}, contrast {contrast!r}: images give sample "
            f"sizes {sorted(counts)}; the most common, {size}, is used",
            UserWarning,
            stacklevel=3,
        )
    return size


def convert_neurovault_to_dataset(
    collection_ids,
    contrasts,
    img_dir=None,
    map_type_conversion=None,
    url=None,
    timeout=30,
    **dset_kwargs,
):
    """Download NeuroVault collections' group-level maps into an image-based Dataset.

    Parameters
    ----------
    collection_ids : list of int or dict
        NeuroVault collection ids, or ``{study name: collection id}`` to name the studies
        (``"study-<name>"``; the id itself is the name otherwise).
    contrasts : dict
        ``{contrast name: regular expression}``; an image belongs to the contrast when the
        expression matches the start of its NeuroVault name.
    img_dir : str, os.PathLike or None
        Data folder for the images (see :func:`~nimare_jax.io.download.get_data_dirs`); they
        go to its subfolder named after the contrasts joined by ``_``.
    map_type_conversion : dict or None
        ``{NeuroVault map type: image column}``; default :data:`DEFAULT_MAP_TYPE_CONVERSION`.
    url : str or None
        Root of the NeuroVault site; default :data:`NEUROVAULT_URL`.
    timeout : float
        Seconds to wait for the server at each step.
    **dset_kwargs
        Passed to :class:`~nimare_jax.dataset.Dataset` (e.g. ``target``, ``mask``).

    Returns
    -------
    Dataset
        One experiment ``"study-<name>-<contrast>"`` per collection and contrast, with its
        images (files named ``collection-<id>_id-<image id>_<file name>``) and the modal
        sample size of its images.

    Raises
    ------
    DownloadError
        If a listing or an image cannot be downloaded (unknown or private collection:
        HTTP 404), naming the URL and the image folder.
    DatasetError
        If a contrast matches no group-level image of a known map type in a collection.
    """
    root = (url or NEUROVAULT_URL).rstrip("/")
    conversion = (
        DEFAULT_MAP_TYPE_CONVERSION if map_type_conversion is None else map_type_conversion
    )
    folder = Path(get_dataset_dir("_".join(contrasts), data_dir=img_dir))
    if not isinstance(collection_ids, dict):
        collection_ids = {c: c for c in collection_ids}
    source = {}
    for name, collection in collection_ids.items():
        records = _collection_images(root, collection, str(folder), timeout)
        study = source[f"study-{name}"] = {"contrasts": {}}
        for contrast, pattern in contrasts.items():
            images, sizes = {}, []
            for record in records:
                column = conversion.get(record.get("map_type"))
                if not (
                    column is not None
                    and record.get("analysis_level") == "group"
                    and re.match(pattern, str(record.get("name", "")))
                ):
                    continue
                if column in images:
                    warnings.warn(
                        f"NeuroVault collection {collection}, contrast {contrast!r}: a second "
                        f"{column!r} image ({record.get('id')}) is ignored",
                        UserWarning,
                        stacklevel=2,
                    )
                    continue
                file_url = record["file"]
                path = folder / (
                    f"collection-{collection}_id-{record['id']}_"
                    + Path(urlparse(file_url).path).name
                )
                if not path.is_file():
                    download_file(file_url, path, timeout=timeout)
                images[column] = path.as_posix()
                sizes.append(record.get("number_of_subjects"))
            if not images:
                raise DatasetError(
                    f"NeuroVault collection {collection}: no group-level image of a known map "
                    f"type ({sorted(conversion)}) matches contrast {contrast!r} "
                    f"(regular expression {pattern!r})"
                )
            size = _modal_sample_size(sizes, collection, contrast)
            study["contrasts"][contrast] = {
                "images": images,
                "metadata": {"sample_sizes": None if size is None else [size]},
            }
    return Dataset(source, **dset_kwargs)

"""Download coordinate databases, ontologies and abstracts (NiMARE 0.22.1's ``nimare.extract``).

Every base address is a module constant and an argument (``url=``), so a mirror or a local
test server can stand in for the real one. Downloads go through
:mod:`nimare_jax.io.download`: atomic (a failure never leaves a file that a later call would
take for cached data), checked against published checksums, and failing with one
:class:`~nimare_jax.exceptions.DownloadError` that names the URL and the cache folder.

Return types: where NiMARE returns a ``Studyset`` (``return_type="studyset"``, the default),
these return nimare_jax's :class:`~nimare_jax.studyset.Studyset`, built from the same tables
as the Dataset (``return_type="dataset"``); ``return_type="files"`` returns the downloaded
paths without reading them. ``fetch_neurostore`` accepts ``"dataset"`` too.

Differences from NiMARE 0.22.1:

* ``fetch_neurosynth``/``fetch_neuroquery`` reject a selector other than ``source``,
  ``vocab`` and ``type`` (NiMARE ignores it and downloads every feature set) and check
  ``return_type`` before downloading; ``fetch_neurosynth`` does not warn that it is
  deprecated;
* ``fetch_neurostore`` with an explicit version already on disk does not contact the server,
  so a cached release also works offline; a release is extracted into a temporary folder
  and renamed into place, so an interrupted extraction is never taken for a cached release;
* ``download_cognitive_atlas`` keeps a concept's lone alias (NiMARE keeps comma-separated
  aliases only), needs no ``cognitiveatlas`` package, and writes its two tables only once
  every request has succeeded;
* ``download_abstracts`` asks NCBI's E-utilities directly (``efetch``, XML) instead of
  through biopython, which is therefore not needed.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DownloadError, InputFileError
from nimare_jax.extract.utils import _expand_df, _get_concept_reltype, _longify
from nimare_jax.io.download import download_file, fetch_bytes, fetch_json, get_dataset_dir
from nimare_jax.io.neurostore import (
    NEUROSTORE_API_URL,
    find_release_folder,
    read_neurostore_release,
)
from nimare_jax.io.neurosynth import convert_neurosynth_to_dataset
from nimare_jax.io.nimads import convert_nimads_to_dataset
from nimare_jax.io.studyset import Studyset
from nimare_jax.spatial import get_resource_path

#: Neurosynth's data files, at the commit NiMARE 0.22.1 pins.
NEUROSYNTH_URL = (
    "https://github.com/neurosynth/neurosynth-data/raw/209c33cd009d0b069398a802198b41b9c488b9b7/"
)
#: NeuroQuery's data files, at the commit NiMARE 0.22.1 pins.
NEUROQUERY_URL = "https://github.com/neuroquery/neuroquery_data/raw/4580f86267fb7c14ac1f601e298cbed898d79f2d/data/"
#: Index of NeuroStore's studyset releases.
NEUROSTORE_RELEASES_URL = f"{NEUROSTORE_API_URL}/neurostore-studyset-releases/"
#: The NeuroVault collection of the 21 pain studies (NIDM-Results packs), as one zip file.
NIDM_PAIN_URL = "https://neurovault.org/collections/1425/download"
#: Root of the Cognitive Atlas API.
COGNITIVE_ATLAS_URL = "https://www.cognitiveatlas.org/api/v-alpha"
#: NCBI E-utilities ``efetch``, which returns PubMed records.
PUBMED_EFETCH_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/efetch.fcgi"
#: Seconds to pause after every 100 Cognitive Atlas requests (the API's rate limit).
COGNITIVE_ATLAS_PAUSE = 5.0
#: PMIDs asked for in one ``efetch`` request.
PUBMED_CHUNK = 900

VALID_FETCH_RETURN_TYPES = ("studyset", "dataset", "files")
#: Keyword arguments that select feature files of a Neurosynth/NeuroQuery database.
FEATURE_SELECTORS = ("source", "vocab", "type")


# --------------------------------------------------------------- Neurosynth / NeuroQuery
def _entities(filename: str) -> dict[str, str]:
    """Return ``{"data": ..., "version": ..., ...}`` of a BIDS-like database file name."""
    parts = filename.split("_")[:-1]
    return {k: v for k, sep, v in (p.partition("-") for p in parts) if sep}


def _as_strings(value) -> list[str]:
    if isinstance(value, str | int):
        return [str(value)]
    return [str(v) for v in value]


def _check_return_type(return_type, valid=VALID_FETCH_RETURN_TYPES) -> None:
    if return_type not in valid:
        raise ValueError(f"return_type={return_type!r} is not one of {list(valid)}")


def _match_databases(data: str, version, selectors: dict) -> list[dict]:
    """Manifest entries (file names) of ``data`` matching the version and selectors."""
    unknown = sorted(set(selectors) - set(FEATURE_SELECTORS))
    if unknown:
        raise ValueError(
            f"unknown file selector(s) {unknown}; the valid ones are {list(FEATURE_SELECTORS)}"
        )
    wanted = {"version": _as_strings(version)}
    wanted.update({k: _as_strings(v) for k, v in selectors.items()})
    manifest = json.loads((get_resource_path() / "database_file_manifest.json").read_text())
    found, available, combinations = [], {}, []
    for database in manifest:
        if _entities(database["coordinates"]).get("data") != data:
            continue
        features = []
        for feature in database["features"]:
            entities = _entities(Path(feature["features"]).name)
            for key in ("version", *FEATURE_SELECTORS):
                available.setdefault(key, set()).add(entities.get(key))
            if entities.get("version") in wanted["version"]:
                combinations.append(" ".join(f"{k}={entities.get(k)}" for k in FEATURE_SELECTORS))
            if all(entities.get(k) in values for k, values in wanted.items()):
                features.append(feature)
        if features:
            found.append({**database, "features": features})
    if not found:
        options = "; ".join(
            f"{key}: {', '.join(sorted(v for v in values if v))}"
            for key, values in available.items()
        )
        within = ""
        if combinations:
            within = f"; with version={version!r}: " + ", ".join(dict.fromkeys(combinations))
        raise ValueError(
            f"no {data} files match version={version!r}"
            + "".join(f", {k}={v!r}" for k, v in selectors.items())
            + f". Available options for {data}: {options}{within}"
        )
    return found


def _fetch_database(data, version, selectors, base_url, data_dir, overwrite, return_type, target):
    """Download the matching files of a database and return them as asked."""
    _check_return_type(return_type)
    databases = _match_databases(data, version, selectors)
    folder = Path(get_dataset_dir(data, data_dir=data_dir))
    names = sorted(
        {
            name
            for db in databases
            for name in (db["coordinates"], db["metadata"])
            + tuple(v for f in db["features"] for v in f.values())
        }
    )
    for name in names:
        path = folder / name
        # A 0-byte file is what NiMARE leaves after a failed download: never data.
        if overwrite or not path.is_file() or path.stat().st_size == 0:
            download_file(urllib.parse.urljoin(base_url.rstrip("/") + "/", name), path)
    files = [
        {
            "coordinates": str(folder / db["coordinates"]),
            "metadata": str(folder / db["metadata"]),
            "features": [{k: str(folder / v) for k, v in f.items()} for f in db["features"]],
        }
        for db in databases
    ]
    if return_type == "files":
        return files
    out = []
    for db in files:
        dataset = convert_neurosynth_to_dataset(
            db["coordinates"], db["metadata"], annotations_files=db["features"], target=target
        )
        out.append(dataset if return_type == "dataset" else Studyset.from_dataset(dataset))
    return out


def fetch_neurosynth(
    data_dir=None,
    version="7",
    overwrite=False,
    return_type="studyset",
    target="mni152_2mm",
    url=None,
    **kwargs,
):
    """Download the Neurosynth database files (a frozen 2018 snapshot) and read them.

    Parameters
    ----------
    data_dir : str, os.PathLike or None
        Data folder (see :func:`~nimare_jax.extract.utils.get_data_dirs`); files go to its
        ``neurosynth`` subfolder.
    version : str or list of str
        Database version(s): ``"3"`` to ``"7"`` (default ``"7"``).
    overwrite : bool
        Download files again even if they are on disk.
    return_type : {"studyset", "dataset", "files"}
        What to return for each database (see Returns).
    target : {"mni152_2mm", "ale_2mm"}
        Template space of the returned studysets or datasets.
    url : str or None
        Folder URL the files are downloaded from; default :data:`NEUROSYNTH_URL`.
    **kwargs
        Feature-file selectors ``source``, ``vocab`` and ``type``, each a string or a list;
        without them every feature set of the version is downloaded. Valid combinations:
        ``source="abstract"`` with ``vocab="terms"`` (``type="tfidf"``) or, for versions 6
        and 7, ``vocab="LDA50"``, ``"LDA100"``, ``"LDA200"``, ``"LDA400"`` (``type="weight"``).

    Returns
    -------
    list
        One item per database: a :class:`~nimare_jax.studyset.Studyset`, a
        :class:`~nimare_jax.dataset.Dataset` (labels ``{vocab}_{source}_{type}__{term}``),
        or a dict of paths ``{"coordinates", "metadata", "features": [{"features",
        "vocabulary", ...}]}``.

    Raises
    ------
    ValueError
        For an unknown ``return_type`` or selector, or a query no file matches (the message
        lists the valid values).
    DownloadError
        If a file cannot be downloaded, naming its URL and the folder.
    """
    return _fetch_database(
        "neurosynth",
        version,
        kwargs,
        url or NEUROSYNTH_URL,
        data_dir,
        overwrite,
        return_type,
        target,
    )


def fetch_neuroquery(
    data_dir=None,
    version="1",
    overwrite=False,
    return_type="studyset",
    target="mni152_2mm",
    url=None,
    **kwargs,
):
    """Download the NeuroQuery database files (a frozen snapshot) and read them.

    Parameters
    ----------
    data_dir : str, os.PathLike or None
        Data folder; files go to its ``neuroquery`` subfolder.
    version : str or list of str
        Database version (only ``"1"``).
    overwrite : bool
        Download files again even if they are on disk.
    return_type : {"studyset", "dataset", "files"}
        What to return for each database, as :func:`fetch_neurosynth`.
    target : {"mni152_2mm", "ale_2mm"}
        Template space of the returned studysets or datasets.
    url : str or None
        Folder URL the files are downloaded from; default :data:`NEUROQUERY_URL`.
    **kwargs
        Feature-file selectors ``source`` (``"combined"``, ``"abstract"``, ``"body"``,
        ``"keywords"``, ``"title"``), ``vocab`` (``"neuroquery6308"``,
        ``"neuroquery7547"``, ``"neuroquery156521"``) and ``type`` (``"tfidf"``,
        ``"count"``).

    Returns
    -------
    list
        As :func:`fetch_neurosynth`.

    Raises
    ------
    ValueError
        For an unknown ``return_type`` or selector, or a query no file matches.
    DownloadError
        If a file cannot be downloaded, naming its URL and the folder.
    """
    return _fetch_database(
        "neuroquery",
        version,
        kwargs,
        url or NEUROQUERY_URL,
        data_dir,
        overwrite,
        return_type,
        target,
    )


# ---------------------------------------------------------------------------- NeuroStore
def _release_index(url: str, timeout, folder=None) -> list[dict]:
    payload = fetch_json(url, timeout=timeout, folder=folder)
    releases = payload.get("results") if isinstance(payload, dict) else payload
    if not isinstance(releases, list) or not releases:
        raise DownloadError(f"{url} lists no NeuroStore studyset releases")
    return list(releases)


def fetch_neurostore_releases(url=None, timeout=30):
    """List the NeuroStore studyset releases that can be downloaded.

    Parameters
    ----------
    url : str or None
        Release index; default :data:`NEUROSTORE_RELEASES_URL`.
    timeout : float
        Seconds to wait for the server at each step.

    Returns
    -------
    list of dict
        The index's entries, each with at least ``"version"`` (e.g. ``"2026-09"`` or
        ``"nightly"``), ``"release_type"``, ``"built_at"`` and ``"download_path"``, and
        usually ``"archive_checksum"`` (SHA-256 of the archive).

    Raises
    ------
    DownloadError
        If the index cannot be read or lists no release.
    """
    return _release_index(url or NEUROSTORE_RELEASES_URL, timeout)


def _release_order(release: dict):
    return str(release.get("built_at") or ""), str(release.get("version") or "")


def _select_release(releases: list[dict], version) -> dict:
    """``"latest"``: the newest dated release (nightly only if nothing else); else by name."""
    if version == "latest":
        dated = [r for r in releases if r.get("release_type") != "nightly"]
        return max(dated or releases, key=_release_order)
    matches = [r for r in releases if str(r.get("version")) == str(version)]
    if not matches:
        names = sorted(str(r.get("version")) for r in releases)
        raise ValueError(
            f"no NeuroStore studyset release {version!r}; available: {names} (or 'latest')"
        )
    return max(matches, key=_release_order)


def _release_folder(folder: Path, version) -> Path:
    name = str(version)
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"NeuroStore release version {name!r} cannot name a folder")
    return folder / name


def _extract_release(archive: Path, destination: Path, url: str) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # "data": no absolute paths, links or files outside the destination (PEP 706)
            tar.extractall(destination, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise DownloadError(
            f"{url}: the release archive cannot be extracted into {destination.parent} ({exc})"
        ) from None


def fetch_neurostore(
    version="latest",
    data_dir=None,
    overwrite=False,
    return_type="studyset",
    target="mni152_2mm",
    url=None,
    timeout=30,
    verify_checksum=True,
):
    """Download a NeuroStore studyset release (parquet tables) and read it.

    Parameters
    ----------
    version : str
        ``"latest"`` (the newest dated release), ``"nightly"``, or a release's version
        (e.g. ``"2026-09"``); see :func:`fetch_neurostore_releases`.
    data_dir : str, os.PathLike or None
        Data folder; releases go to ``neurostore/<version>`` inside it.
    overwrite : bool
        Download and extract the release again even if it is on disk.
    return_type : {"studyset", "dataset", "files"}
        A :class:`~nimare_jax.studyset.Studyset`, its Dataset, or the path of the release
        folder (which holds ``studyset.json``).
    target : str
        Template space of the returned studyset or dataset.
    url : str or None
        Release index; default :data:`NEUROSTORE_RELEASES_URL`. The archive's address is the
        release's ``download_path`` resolved against it.
    timeout : float
        Seconds to wait for the server at each step.
    verify_checksum : bool
        Check the archive against the SHA-256 the index publishes (``archive_checksum``).

    Returns
    -------
    Studyset, Dataset or str

    Raises
    ------
    ValueError
        For an unknown ``return_type`` or version.
    DownloadError
        If the index or archive cannot be downloaded, the checksum differs or the archive
        cannot be extracted; nothing is left in the cache folder then.
    ImportError
        If pyarrow (needed to read parquet) is missing and ``return_type`` is not "files".

    Notes
    -----
    A release already on disk is reused; for an explicit version (not ``"latest"``) the
    index is then not asked at all, so it works offline. ``"nightly"`` is cached like any
    version: pass ``overwrite=True`` to replace it by the current build. Archives are
    extracted with tarfile's ``"data"`` filter (no absolute paths, links or members outside
    the folder).
    """
    _check_return_type(return_type)
    url = url or NEUROSTORE_RELEASES_URL
    folder = Path(get_dataset_dir("neurostore", data_dir=data_dir))
    release_dir = None
    if version != "latest" and not overwrite:
        release_dir = _release_folder(folder, version)
    if release_dir is None or not release_dir.is_dir():
        release = _select_release(_release_index(url, timeout, folder), version)
        release_dir = _release_folder(folder, release.get("version"))
        if overwrite or not release_dir.is_dir():
            _download_release(release, url, release_dir, timeout, verify_checksum)
    studyset_dir = find_release_folder(release_dir)
    if return_type == "files":
        return studyset_dir
    document = read_neurostore_release(studyset_dir)
    if return_type == "dataset":  # the studyset's dataset, without building the studyset
        return convert_nimads_to_dataset(document, target=target)
    return Studyset(document, target=target)


def _download_release(release: dict, url: str, release_dir: Path, timeout, verify) -> None:
    """Download, check and extract a release archive, then rename it into ``release_dir``."""
    path = release.get("download_url") or release.get("download_path")
    if not path:
        raise DownloadError(f"{url}: release {release.get('version')!r} gives no download_path")
    archive_url = urllib.parse.urljoin(url, path)
    checksum = release.get("archive_checksum") if verify else None
    if checksum:
        checksum = str(checksum).removeprefix("sha256:")
    work = Path(tempfile.mkdtemp(prefix=f".{release_dir.name}.", dir=release_dir.parent))
    try:
        archive = work / "release.tar.gz"
        download_file(archive_url, archive, sha256=checksum or None, timeout=timeout)
        extracted = work / "release"
        _extract_release(archive, extracted, archive_url)
        find_release_folder(extracted)
        if release_dir.exists():
            shutil.rmtree(release_dir)
        extracted.rename(release_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------ NeuroVault
def download_nidm_pain(data_dir=None, overwrite=False, url=None):
    """Download the NIDM-Results packs of 21 pain studies (NeuroVault collection 1425).

    Parameters
    ----------
    data_dir : str, os.PathLike or None
        Data folder; the packs go to its ``nidm_21pain`` subfolder, one folder per pack.
    overwrite : bool
        Download again even if the packs are on disk.
    url : str or None
        The collection's zip file; default :data:`NIDM_PAIN_URL`.

    Returns
    -------
    str
        The ``nidm_21pain`` folder. ``description.txt`` in it marks a complete download.

    Raises
    ------
    DownloadError
        If the download fails or the file is not the expected zip of zipped packs.
    """
    url = url or NIDM_PAIN_URL
    folder = Path(get_dataset_dir("nidm_21pain", data_dir=data_dir))
    marker = folder / "description.txt"
    if marker.is_file() and not overwrite:
        return str(folder)
    work = Path(tempfile.mkdtemp(prefix=".download.", dir=folder))
    try:
        archive = work / "collection.zip"
        download_file(url, archive)
        try:
            with zipfile.ZipFile(archive) as outer:
                outer.extractall(work / "collection")
            packs = sorted((work / "collection").rglob("*.zip"))
            if not packs:
                raise DownloadError(f"{url}: the zip file holds no NIDM-Results pack (*.zip)")
            for pack in packs:
                with zipfile.ZipFile(pack) as inner:
                    inner.extractall(work / "packs" / pack.stem)
        except zipfile.BadZipFile as exc:
            raise DownloadError(f"{url}: not a valid zip file ({exc}); kept nothing") from None
        for pack in sorted((work / "packs").iterdir()):
            target = folder / pack.name
            if target.exists():
                shutil.rmtree(target)
            pack.rename(target)
        marker.write_text("21 pain studies in NIDM-results packs.")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return str(folder)


# ------------------------------------------------------------------------ Cognitive Atlas
def _cogat(root: str, kind: str, folder: Path, timeout, term_id=None):
    """One Cognitive Atlas listing (all concepts/tasks/disorders) or one term's record."""
    query = "" if term_id is None else "?" + urllib.parse.urlencode({"id": term_id})
    payload = fetch_json(f"{root}/{kind}{query}", timeout=timeout, folder=folder, attempts=3)
    if term_id is not None and isinstance(payload, list):
        payload = payload[0] if payload else {}
    return payload


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with open(handle, "w", encoding="utf-8", newline="") as out:
            table.to_csv(out, index=False)
        Path(partial).replace(path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def download_cognitive_atlas(data_dir=None, overwrite=False, url=None, timeout=30):
    """Download the Cognitive Atlas and write its alias and relationship tables.

    Parameters
    ----------
    data_dir : str, os.PathLike or None
        Data folder; the tables go to its ``cognitive_atlas`` subfolder.
    overwrite : bool
        Download again even if both tables are on disk.
    url : str or None
        Root of the API; default :data:`COGNITIVE_ATLAS_URL` (``/concept``, ``/task`` and
        ``/disorder``, each also with ``?id=``).
    timeout : float
        Seconds to wait for the server at each step.

    Returns
    -------
    dict
        ``{"ids": cogat_aliases.csv, "relationships": cogat_relationships.csv}`` (paths).
        The aliases table has columns ``id``, ``name``, ``alias``, ``length``, ``ratio``,
        one row per alias (names, aliases and their variants without parentheses, "task"
        or "paradigm"), longest first; the relationships table has ``input``, ``output``,
        ``rel_type`` (``inCategory``, ``isSelf``, ``hasPart``, ``isPartOf``, ``hasKind``,
        ``isKindOf``, ``measures``, ``measuredBy``, and disorders' own relationships).

    Raises
    ------
    DownloadError
        If a request fails, naming its URL and the folder.

    Notes
    -----
    The API is asked once per term; the function pauses :data:`COGNITIVE_ATLAS_PAUSE`
    seconds after every 100 requests, so a full download takes several minutes.
    """
    root = (url or COGNITIVE_ATLAS_URL).rstrip("/")
    folder = Path(get_dataset_dir("cognitive_atlas", data_dir=data_dir))
    out = {
        "ids": folder / "cogat_aliases.csv",
        "relationships": folder / "cogat_relationships.csv",
    }
    if not overwrite and all(p.is_file() for p in out.values()):
        return {k: str(p) for k, p in out.items()}
    listings = {
        kind: pd.DataFrame(_cogat(root, kind, folder, timeout))
        for kind in ("concept", "task", "disorder")
    }
    for kind, table in listings.items():
        missing = [c for c in ("id", "name") if c not in table.columns]
        if missing:
            raise InputFileError(f"{root}/{kind}: the listing lacks field(s) {missing}")
        if "alias" not in table.columns:
            listings[kind] = table.assign(alias=None)
    concepts, tasks, disorders = listings["concept"], listings["task"], listings["disorder"]
    disorder_names = disorders["name"].str.lower()
    aliases = pd.concat(
        [
            _longify(concepts),
            _longify(tasks),
            pd.DataFrame({"id": disorders["id"], "name": disorder_names, "alias": disorder_names}),
        ],
        axis=0,
    )
    aliases = _expand_df(aliases).replace("", np.nan).dropna(axis=0).reset_index(drop=True)

    requests = 0
    relations = []

    def record(kind, term_id):
        nonlocal requests
        if requests and requests % 100 == 0:
            time.sleep(COGNITIVE_ATLAS_PAUSE)
        requests += 1
        return _cogat(root, kind, folder, timeout, term_id)

    for term_id in concepts["id"].unique():
        relations.append([term_id, term_id, "isSelf"])
        for rel in record("concept", term_id).get("relationships") or []:
            rel_type = _get_concept_reltype(rel.get("relationship"), rel.get("direction"))
            if rel_type is not None:
                relations.append([term_id, rel["id"], rel_type])
    for term_id in tasks["id"].unique():
        relations.append([term_id, term_id, "isSelf"])
        for rel in record("task", term_id).get("concepts") or []:
            relations.append([term_id, rel["concept_id"], "measures"])
            relations.append([rel["concept_id"], term_id, "measuredBy"])
    for term_id in disorders["id"].unique():
        relations.append([term_id, term_id, "isSelf"])
        for rel in record("disorder", term_id).get("disorders") or []:
            rel_type = "isA" if rel.get("relationship") == "ISA" else rel.get("relationship")
            relations.append([term_id, rel["id"], rel_type])
    category = concepts.get("id_concept_class", pd.Series([None] * len(concepts)))
    categories = pd.DataFrame(
        {"input": concepts["id"], "output": category.replace("", np.nan), "rel_type": "inCategory"}
    ).dropna(axis=0)
    relationships = pd.concat(
        [categories, pd.DataFrame(relations, columns=["input", "output", "rel_type"])]
    ).reset_index(drop=True)
    _write_csv(aliases, out["ids"])
    _write_csv(relationships, out["relationships"])
    return {k: str(p) for k, p in out.items()}


# --------------------------------------------------------------------------------- PubMed
def _abstract(article: ET.Element) -> str | None:
    """Return the abstract of a PubmedArticle, structured sections as ``"LABEL: text"``."""
    sections = []
    for part in article.iterfind(".//Article/Abstract/AbstractText"):
        text = " ".join("".join(part.itertext()).split())
        label = part.get("Label")
        if text:
            sections.append(f"{label}: {text}" if label else text)
    return " ".join(sections) or None


def _pubmed_abstracts(pmids: list[str], email: str, url: str, timeout) -> pd.DataFrame:
    rows = []
    for start in range(0, len(pmids), PUBMED_CHUNK):
        chunk = pmids[start : start + PUBMED_CHUNK]
        body = urllib.parse.urlencode(
            {
                "db": "pubmed",
                "id": ",".join(chunk),
                "retmode": "xml",
                "rettype": "abstract",
                "tool": "nimare_jax",
                "email": email,
            }
        ).encode()
        xml = fetch_bytes(url, data=body, timeout=timeout)
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as exc:
            raise DownloadError(f"could not read PubMed records from {url}: {exc}") from None
        for article in root.iter("PubmedArticle"):
            pmid = article.findtext("MedlineCitation/PMID")
            abstract = _abstract(article)
            if pmid and abstract:
                rows.append([pmid.strip(), abstract])
    return pd.DataFrame(rows, columns=["study_id", "abstract"])


def download_abstracts(dataset, email, url=None, timeout=30):
    """Download the PubMed abstracts of studies whose ids are PMIDs.

    Parameters
    ----------
    dataset : Dataset, Studyset or list of str
        Studies to look up: a dataset's or studyset's ``texts`` ``study_id`` values, or a
        list of PMIDs.
    email : str
        Your e-mail address, sent to NCBI as its usage policy asks.
    url : str or None
        E-utilities ``efetch`` address; default :data:`PUBMED_EFETCH_URL`. PMIDs are asked
        :data:`PUBMED_CHUNK` at a time (POST, XML records).
    timeout : float
        Seconds to wait for the server at each step.

    Returns
    -------
    Dataset, Studyset or pandas.DataFrame
        The dataset with an ``abstract`` column in ``texts`` (the dataset is changed in
        place, as NiMARE does, and returned); a new studyset with the abstracts as
        analysis texts; or, for a list, a table ``study_id``, ``abstract`` of the records
        that have an abstract.

    Raises
    ------
    TypeError
        For another type of ``dataset``.
    DownloadError
        If a request fails or its answer is not XML.
    """
    url = url or PUBMED_EFETCH_URL
    if isinstance(dataset, Dataset | Studyset):
        pmids = sorted(set(dataset.texts["study_id"].astype(str)))
    elif isinstance(dataset, list | tuple):
        pmids = [str(p) for p in dataset]
    else:
        raise TypeError(
            "dataset must be a Dataset, a Studyset or a list of PMIDs, not "
            + type(dataset).__name__
        )
    table = _pubmed_abstracts(pmids, email, url, timeout)
    if isinstance(dataset, Dataset):
        texts = dataset.texts.drop(columns="abstract", errors="ignore")
        dataset.texts = texts.merge(table, on="study_id", how="left")
        return dataset
    if isinstance(dataset, Studyset):
        by_study = table.drop_duplicates("study_id").set_index("study_id")["abstract"]
        study_ids = dataset.texts["study_id"].astype(str).to_numpy()
        rows = [i for i, s in enumerate(study_ids) if s in by_study.index]
        if not rows:
            return dataset
        return dataset.with_texts(rows, "abstract", [by_study[study_ids[i]] for i in rows])
    return table

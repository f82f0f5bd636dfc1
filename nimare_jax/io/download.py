"""Downloads over HTTP(S) with the standard library, and the folders they are kept in.

Every fetcher of nimare_jax (:mod:`nimare_jax.extract`, the NeuroVault and NeuroStore
readers of :mod:`nimare_jax.io`) goes through these functions, so they share one behaviour:

* a file is written to a temporary file in its destination folder and renamed into place
  only once it is complete (``os.replace``), so a failed or interrupted download never leaves
  a partial or empty file that a later call would take for cached data (NiMARE 0.22.1 opens
  the destination before connecting and keeps a 0-byte file after a failure);
* a body shorter than its ``Content-Length`` is a failure, and a published SHA-256 checksum
  is checked before the rename;
* any failure (offline, refused connection, HTTP error, timeout, cut-short body, wrong
  checksum) raises one :class:`~nimare_jax.exceptions.DownloadError` naming the URL and the
  folder the data was meant for;
* long downloads show a progress bar (tqdm, as the permutation runner does) when standard
  error is a terminal.

Data folders follow NiMARE's rules with nimare_jax's own names: ``data_dir`` if given, else
the folders in ``$NIMARE_JAX_SHARED_DATA`` then ``$NIMARE_JAX_DATA`` (``os.pathsep``-separated),
else ``~/.nimare_jax``; each data set lives in a subfolder named after it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from nimare_jax import __version__
from nimare_jax.exceptions import DownloadError

#: Environment variables naming data folders, in order of precedence (NiMARE's
#: ``NIMARE_SHARED_DATA`` and ``NIMARE_DATA``).
DATA_ENV_VARS = ("NIMARE_JAX_SHARED_DATA", "NIMARE_JAX_DATA")
#: The data folder used when neither ``data_dir`` nor the variables name one.
DEFAULT_DATA_DIR = "~/.nimare_jax"
#: Sent with every request (NCBI and NeuroVault ask clients to name themselves).
USER_AGENT = f"nimare_jax/{__version__} (Python urllib)"
_CHUNK = 1 << 16


def get_data_dirs(data_dir=None) -> list[str]:
    """Return the folders nimare_jax keeps downloaded data in, by precedence.

    Parameters
    ----------
    data_dir : str, os.PathLike or None
        A folder (or several joined by ``os.pathsep``) that overrides the defaults.

    Returns
    -------
    list of str
        ``data_dir``'s folders if given; else those of ``$NIMARE_JAX_SHARED_DATA``, then of
        ``$NIMARE_JAX_DATA``, then ``~/.nimare_jax`` (expanded).
    """
    if data_dir is not None:
        return [d for d in str(data_dir).split(os.pathsep) if d]
    paths = []
    for var in DATA_ENV_VARS:
        paths += [d for d in os.environ.get(var, "").split(os.pathsep) if d]
    return [*paths, os.path.expanduser(DEFAULT_DATA_DIR)]


def get_dataset_dir(dataset_name: str, data_dir=None) -> str:
    """Return the folder of one data set, creating it in the first writable data folder.

    Parameters
    ----------
    dataset_name : str
        Subfolder name, e.g. ``"neurosynth"``.
    data_dir : str, os.PathLike or None
        See :func:`get_data_dirs`.

    Returns
    -------
    str
        ``<data folder>/<dataset_name>``: the first that exists (symbolic links resolved),
        else the first that can be created.

    Raises
    ------
    DownloadError
        If no candidate folder exists or can be created, listing each and why.
    """
    candidates = [Path(d).expanduser() / dataset_name for d in get_data_dirs(data_dir)]
    for path in candidates:
        if path.is_dir():
            return str(path.resolve())
    errors = []
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            errors.append(f"{path} ({exc.strerror or exc})")
        else:
            return str(path.resolve())
    raise DownloadError(
        f"no folder to keep {dataset_name!r} in could be created: " + "; ".join(errors)
    )


def _failure(url: str, folder, reason) -> DownloadError:
    where = f" into {folder}" if folder is not None else ""
    return DownloadError(f"could not download {url}{where}: {reason}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        exc.close()  # it holds the connection of the error page
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason} (offline, or the server is down?)"
    return f"{type(exc).__name__}: {exc}"


def _request(url: str, data: bytes | None):
    headers = {"User-Agent": USER_AGENT}
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return urllib.request.Request(url, data=data, headers=headers)


def fetch_bytes(url: str, *, data: bytes | None = None, timeout=30, folder=None, attempts=1):
    """Return the body of a (small) HTTP response.

    Parameters
    ----------
    url : str
        Address to GET (or POST, if ``data`` is given).
    data : bytes or None
        Form-encoded body of a POST request.
    timeout : float
        Seconds to wait for the server at each step.
    folder : str, os.PathLike or None
        Where the data is meant to be kept (named in the error message).
    attempts : int
        How many times to try before giving up (transient failures).

    Returns
    -------
    bytes

    Raises
    ------
    DownloadError
        After the last failed attempt, naming the URL, ``folder`` and the last reason.
    """
    last = None
    for _ in range(max(1, attempts)):
        try:
            with urllib.request.urlopen(_request(url, data), timeout=timeout) as response:
                body = response.read()
                _check_length(response, len(body))
                return body
        except (OSError, http.client.HTTPException) as exc:
            last = exc
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # it holds the connection of the error page
                if 400 <= exc.code < 500:
                    break  # the server answered: asking again will not change its mind
    raise _failure(url, folder, _reason(last)) from last


def fetch_json(url: str, *, timeout=30, folder=None, attempts=1):
    """Return the decoded JSON body of a GET request.

    Parameters
    ----------
    url, timeout, folder, attempts
        As :func:`fetch_bytes`.

    Returns
    -------
    object
        The decoded document.

    Raises
    ------
    DownloadError
        If the request fails or the body is not JSON.
    """
    body = fetch_bytes(url, timeout=timeout, folder=folder, attempts=attempts)
    try:
        return json.loads(body)
    except ValueError as exc:
        raise _failure(url, folder, f"the answer is not JSON ({exc})") from None


def _check_length(response, received: int) -> None:
    expected = response.headers.get("Content-Length")
    if expected is not None and expected.isdigit() and int(expected) != received:
        raise http.client.IncompleteRead(b"", int(expected) - received)


def download_file(url: str, path, *, sha256: str | None = None, timeout=30) -> str:
    """Download ``url`` to ``path`` atomically, optionally checking its SHA-256.

    The body is streamed to a temporary file beside ``path`` (so the final rename stays on
    one file system) and moved into place only when complete and verified; on any failure
    the temporary file is removed and ``path`` is left as it was.

    Parameters
    ----------
    url : str
        Address of the file.
    path : str or os.PathLike
        Destination; its folder is created if needed.
    sha256 : str or None
        Expected hexadecimal SHA-256 digest of the body; None skips the check.
    timeout : float
        Seconds to wait for the server at each step.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    DownloadError
        If the download fails, is cut short or has another checksum; the message names the
        URL and the destination folder.
    """
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _failure(url, folder, f"the folder cannot be created ({exc})") from None
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(_request(url, None), timeout=timeout) as response:
                    size = response.headers.get("Content-Length")
                    total = int(size) if size is not None and size.isdigit() else None
                    received = 0
                    with tqdm(
                        total=total,
                        unit="B",
                        unit_scale=True,
                        desc=path.name,
                        disable=None,  # only on a terminal
                        leave=False,
                    ) as bar:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                    _check_length(response, received)
            except (OSError, http.client.HTTPException) as exc:
                raise _failure(url, folder, _reason(exc)) from exc
        if sha256 is not None and digest.hexdigest() != sha256.strip().lower():
            raise _failure(
                url,
                folder,
                f"checksum mismatch: expected SHA-256 {sha256}, got {digest.hexdigest()}",
            )
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return str(path)

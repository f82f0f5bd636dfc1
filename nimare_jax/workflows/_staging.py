"""Write outputs all-or-nothing: into a hidden temporary place, moved into position at the end.

A failed or interrupted run leaves no partial files behind, and an existing output folder
keeps its previous contents except for the files a successful run replaces.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def staged_dir(output_dir):
    """Yield a temporary folder next to ``output_dir``; on success move its files there.

    Parameters
    ----------
    output_dir : str or os.PathLike
        Final folder (created on success if needed).

    Yields
    ------
    pathlib.Path
        Temporary folder to write into (in the nearest existing folder above
        ``output_dir``); removed in every case.
    """
    out = Path(output_dir).absolute()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=_existing(out)))
    try:
        yield tmp
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(tmp.iterdir()):
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def staged_file(out_file):
    """Yield a temporary path next to ``out_file``; on success rename it to ``out_file``.

    Parameters
    ----------
    out_file : str or os.PathLike
        Final file.

    Yields
    ------
    pathlib.Path
        Temporary file path to write; removed if the block fails.
    """
    out = Path(out_file).absolute()
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=_existing(out))
    os.close(fd)
    try:
        yield Path(name)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(name, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def _existing(path: Path) -> Path:
    """Return the nearest existing folder above ``path`` (temporary files go there)."""
    parent = path.parent
    while not parent.is_dir():
        parent = parent.parent
    return parent

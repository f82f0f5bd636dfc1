"""Write outputs all-or-nothing, staged in a hidden folder inside the output folder.

The output folder is created and checked for writing before any work starts, so a run
never fails for that reason after its computation. Files are written into a hidden staging
folder inside the output folder, so the final moves are renames within one file system
whatever the parent folder is (not writable, another mount, the target of a symlink).
Once every file exists they are moved into place all or nothing: files of an earlier run
with the same names are first moved aside into the staging folder, and if any move fails
they are put back and the new files removed. A failed or interrupted run leaves the output
folder as it was (a folder the run had to create is removed again); other files in it are
never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from nimare_jax.exceptions import OutputError

#: Name prefix of the hidden staging folders and files (a crashed run may leave one behind).
STAGING_PREFIX = ".nimare-jax-staging-"


@contextlib.contextmanager
def staged_dir(output_dir):
    """Prepare ``output_dir``, yield a staging folder inside it; on success move its files in.

    Enter it before the computation: the output folder is created and checked first.

    Parameters
    ----------
    output_dir : str or os.PathLike
        Final folder (created, with its parents, if needed).

    Yields
    ------
    pathlib.Path
        Empty folder to write the outputs into (hidden, inside ``output_dir``).

    Raises
    ------
    OutputError
        If ``output_dir`` is a file, cannot be created or is not writable.
    """
    out = Path(output_dir).absolute()
    with _output_folder(out):
        stage = _make_stage(out)
        try:
            new = stage / "new"
            new.mkdir()
            yield new
            _commit(new, out, stage / "old")
        finally:
            old = stage / "old"
            if not (old.is_dir() and any(old.iterdir())):  # else previous files wait there
                shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def staged_file(out_file):
    """Prepare ``out_file``'s folder, yield a hidden path beside it; on success rename it.

    Parameters
    ----------
    out_file : str or os.PathLike
        Final file (its folder is created if needed; an existing file is replaced).

    Yields
    ------
    pathlib.Path
        Temporary file path to write; removed if the block fails.

    Raises
    ------
    OutputError
        If ``out_file`` is a folder, or its folder is a file, cannot be created or is not
        writable.
    """
    out = Path(out_file).absolute()
    if out.is_dir():
        raise OutputError(f"output file {out_file} is an existing folder")
    with _output_folder(out.parent):
        try:
            fd, name = tempfile.mkstemp(prefix=STAGING_PREFIX, suffix=".tmp", dir=out.parent)
        except OSError as exc:
            raise OutputError(f"cannot write to the output folder {out.parent}: {exc}") from exc
        os.close(fd)
        try:
            yield Path(name)
            os.replace(name, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)


@contextlib.contextmanager
def _output_folder(folder: Path):
    """Create ``folder`` if needed and check it is writable; on failure remove what was made."""
    created = []
    for path in (folder, *folder.parents):
        if path.is_dir():
            break
        if path.exists() or path.is_symlink():  # a file, or a broken link
            detail = "it is an existing file" if path == folder else f"{path} is a file"
            raise OutputError(f"cannot create the output folder {folder}: {detail}")
        created.append(path)
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or exc
            raise OutputError(f"cannot create the output folder {folder}: {reason}") from exc
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write to the output folder {folder}: permission denied")
        yield
    except BaseException:
        for path in created:  # deepest first; a folder someone else filled stays
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def _make_stage(out: Path) -> Path:
    """Create the hidden staging folder inside ``out``."""
    try:
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    except OSError as exc:
        raise OutputError(f"cannot write to the output folder {out}: {exc}") from exc


def _commit(new: Path, out: Path, old: Path) -> None:
    """Move every file of ``new`` into ``out``, all or nothing (earlier files wait in ``old``).

    On failure the new files already moved are removed and the earlier ones put back; any
    that cannot be put back stay in ``old``, and the error says so.
    """
    names = sorted(path.name for path in new.iterdir())
    old.mkdir()
    aside, placed = [], []
    try:
        for name in names:
            if os.path.lexists(out / name):
                os.replace(out / name, old / name)
                aside.append(name)
        for name in names:
            os.replace(new / name, out / name)
            placed.append(name)
    except BaseException as exc:
        for name in placed:
            with contextlib.suppress(OSError):
                os.remove(out / name)
        for name in aside:
            with contextlib.suppress(OSError):
                os.replace(old / name, out / name)
        if any(old.iterdir()):
            raise OutputError(
                f"could not move the new files into {out} ({exc}), nor put the earlier files "
                f"back: they are kept in {old}"
            ) from exc
        raise
    shutil.rmtree(old, ignore_errors=True)

"""Usage errors, bad input and the output folder, for every ``nimare-jax`` command."""

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_cli import SUBCOMMANDS as COMMANDS

from nimare_jax import spatial
from nimare_jax.cli import MAX_MESSAGE, main
from nimare_jax.exceptions import InputFileError, OutputError
from nimare_jax.io.images import load_image
from nimare_jax.workflows.staging import staged_dir, staged_file

DATA = Path(__file__).parent / "data"
FOCI = DATA / "sleuth" / "test_sleuth_file.txt"
NEUROSYNTH = DATA / "neurosynth" / "data-neurosynth_version-7_"
WORKFLOWS = ["ale", "conperm", "macm", "metacluster", "peaks2maps", "scale"]  # take --prefix
ERROR = "nimare-jax: error: "


def _argv(command, src, out):
    """Arguments of ``command`` with ``src`` as its (first) input file and ``out`` as output.

    ``macm`` and ``cbp`` get ``src`` as their mask (``--roi``); the converters write
    ``out / "dset.json"``.
    """
    src, out = str(src), str(out)
    return {
        "ale": ["ale", src, "--output_dir", out, "--n_iters", "5"],
        "conperm": ["conperm", src, src, "--output_dir", out, "--n_iters", "5"],
        "macm": ["macm", str(FOCI), "--mask", src, "--output_dir", out, "--n_iters", "5"],
        "cbp": ["cbp", str(FOCI), "--roi", src, "--n_clusters", "2", "--output_dir", out],
        "metacluster": ["metacluster", src, "--coord", "--clust_range", "2", "3"]
        + ["--output_dir", out],
        "neurosynth2nimare": ["neurosynth2nimare", src, f"{NEUROSYNTH}metadata.tsv.gz"]
        + [str(Path(out) / "dset.json")],
        "peaks2maps": ["peaks2maps", src, "--output_dir", out, "--n_iters", "5"],
        "scale": ["scale", src, "--output_dir", out, "--n_iters", "5"],
        "sleuth2nimare": ["sleuth2nimare", src, str(Path(out) / "dset.json")],
    }[command]


def _run(argv):
    """Return the exit status of ``main(argv)``, whether it returns or exits (argparse)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _error(capsys) -> str:
    """Return the one error line on stderr (asserting there is exactly one, no traceback)."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), err
    assert "Traceback" not in err
    return lines[0]


def _files(folder: Path) -> dict:
    return {p.relative_to(folder): p.is_file() and p.read_bytes() for p in folder.rglob("*")}


def _truncated_gz(path: Path) -> Path:
    """Write the first half of a gzipped NIfTI image (a download cut short) to ``path``."""
    spatial.get_template().to_filename(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


@pytest.fixture
def unwritable(tmp_path, monkeypatch):
    """An existing output folder the user cannot write into.

    chmod does not stop root, so as root ``os.access`` is made to say no for this folder.
    """
    folder = tmp_path / "readonly"
    folder.mkdir()
    if os.geteuid() == 0:
        access = os.access
        monkeypatch.setattr(
            os, "access", lambda path, mode, **kw: Path(path) != folder and access(path, mode)
        )
        yield folder
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


@pytest.mark.parametrize(
    "kind", ["missing file", "truncated gz", "output is a file", "unwritable output"]
)
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_input_is_one_line_and_leaves_nothing(command, kind, tmp_path, capsys, request):
    """The README's promise, for every command: one line naming the culprit, no output."""
    src, out = tmp_path / "missing.nii.gz", tmp_path / "out"
    needle = "missing.nii.gz"
    if kind == "truncated gz":
        src = needle = _truncated_gz(tmp_path / "cut.nii.gz")
    elif kind == "output is a file":  # checked before the input is even read
        out.write_text("not a folder")
        needle = f"cannot create the output folder {out}"
    elif kind == "unwritable output":
        out = request.getfixturevalue("unwritable")
        needle = f"cannot write to the output folder {out}"
    before = _files(tmp_path)
    assert _run(_argv(command, src, out)) == 1
    assert str(needle) in _error(capsys)
    assert _files(tmp_path) == before


@pytest.mark.parametrize("prefix", ["../escape", "sub/run", "a\\b", "", ".", ".."])
@pytest.mark.parametrize("command", WORKFLOWS)
def test_prefix_must_be_a_file_name(command, prefix, tmp_path, capsys, monkeypatch):
    """Item 5: ``--prefix ../escape`` would write every file outside --output_dir."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    assert _run([*_argv(command, FOCI, "out"), "--prefix", prefix]) == 2
    assert "argument --prefix: expected a file-name prefix" in _error(capsys)
    assert _files(tmp_path) == {Path("out"): False}


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("ale", ["--seed", "-1"]),
        ("conperm", ["--n_iters", "0"]),
        ("conperm", ["--n_cores", "0"]),
        ("conperm", ["--seed", "4294967296"]),
        ("macm", ["--v_thr", "1"]),
        ("macm", ["--seed", "x"]),
        ("metacluster", ["--clust_range", "1", "3"]),
        ("metacluster", ["--clust_range", "4", "3"]),
        ("metacluster", ["--kernel", "GaussKernel"]),
        ("metacluster", ["--seed", "-5"]),
        ("peaks2maps", ["--n_iters", "0"]),
        ("peaks2maps", ["--n_cores", "-1"]),
        ("peaks2maps", ["--seed", "1.5"]),
        ("scale", ["--n_iters", "-3"]),
        ("scale", ["--fwhm", "0"]),
    ],
)
def test_bad_numbers_are_usage_errors_everywhere(command, args, tmp_path, capsys):
    """Item 11: one exit status (2) for a bad option value, whatever the command."""
    assert _run([*_argv(command, FOCI, tmp_path / "out"), *args]) == 2
    assert f"argument {args[0]}: " in _error(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_help_says_earlier_results_are_replaced(command, capsys):
    """Item 8: every command that writes says that files of the same names are replaced."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "replaced" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("link", ["same", "relative", "symlink", "hardlink"])
def test_sleuth2nimare_refuses_to_replace_its_input(link, tmp_path, capsys, monkeypatch):
    """Item 6: ``sleuth2nimare foci.txt foci.txt`` used to replace the Sleuth file by JSON."""
    monkeypatch.chdir(tmp_path)
    foci = tmp_path / "foci.txt"
    foci.write_bytes(FOCI.read_bytes())
    out = {"same": "foci.txt", "relative": str(tmp_path / "." / "foci.txt")}.get(link)
    if link == "symlink":
        out = "link.json"
        os.symlink("foci.txt", out)
    elif link == "hardlink":
        out = "hard.json"
        os.link("foci.txt", out)
    before = _files(tmp_path)
    assert _run(["sleuth2nimare", "foci.txt", out]) == 2
    assert f"the output file {out} is the input file foci.txt" in _error(capsys)
    assert _files(tmp_path) == before


def test_neurosynth2nimare_refuses_to_replace_an_input(tmp_path, capsys):
    features = tmp_path / "features.npz"
    features.write_bytes(b"features")
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("pain\n")
    before = _files(tmp_path)
    argv = ["neurosynth2nimare", f"{NEUROSYNTH}coordinates.tsv.gz", f"{NEUROSYNTH}metadata.tsv.gz"]
    argv += [str(vocabulary), "--annotations_file", str(features), str(vocabulary)]
    assert _run(argv) == 2
    assert "is the input file" in _error(capsys)
    assert _files(tmp_path) == before


def _record_replace(monkeypatch):
    calls, replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append((a, b)), replace(a, b))[1])
    return calls


def test_staging_renames_stay_inside_the_output_folder(tmp_path, monkeypatch):
    """Item 7: staging used to sit in the output folder's parent (not writable, or another
    file system when the output folder is a mount point or a link)."""
    out = tmp_path / "parent" / "out"
    calls = _record_replace(monkeypatch)
    with staged_dir(out) as tmp:
        (tmp / "a_z.nii.gz").write_text("z")
    with staged_file(out / "dset.json") as tmp:
        tmp.write_text("{}")
    assert {p.name for p in out.iterdir()} == {"a_z.nii.gz", "dset.json"}
    assert calls and all(Path(p).is_relative_to(out) for call in calls for p in call)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "a_z.nii.gz",
        "dset.json",
        "out",
        "parent",
    ]


def test_output_folder_is_checked_before_the_work(tmp_path):
    """Item 7: the folder is created and checked on entry; removed again if the run fails."""
    out = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError, match="failed"), staged_dir(out) as tmp:
        assert out.is_dir() and tmp.parent.parent == out
        raise RuntimeError("the analysis failed")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is an existing folder"), staged_file(tmp_path):
        pass
    with pytest.raises(OutputError, match="file is a file"), staged_dir(tmp_path / "file" / "x"):
        pass


def _old_outputs(out: Path) -> dict:
    out.mkdir()
    for name in ("run_z.nii.gz", "run_p.nii.gz", "notes.txt"):
        (out / name).write_text(f"old {name}")
    return _files(out)


@pytest.mark.parametrize("fail_at", range(5))
def test_failed_final_move_restores_the_earlier_files(fail_at, tmp_path, monkeypatch):
    """Item 8: a move failing midway used to leave old and new files mixed."""
    out = tmp_path / "out"
    old = _old_outputs(out)
    calls, replace = [], os.replace

    def failing(src, dst):  # 2 earlier files moved aside, then 3 new files moved in
        calls.append(src)
        if len(calls) == fail_at + 1:
            raise OSError(28, "No space left on device")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space left"), staged_dir(out) as tmp:
        for name in ("run_z.nii.gz", "run_p.nii.gz", "run_stat.nii.gz"):
            (tmp / name).write_text(f"new {name}")
    assert _files(out) == old


def test_earlier_files_that_cannot_be_put_back_are_kept(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _old_outputs(out)
    replace = os.replace

    def failing(src, dst):  # the first move aside works, then every move fails
        if Path(dst).parent == out or Path(src).parent.name == "new":
            raise OSError(5, "Input/output error")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OutputError, match="kept in") as exc, staged_dir(out) as tmp:
        (tmp / "run_z.nii.gz").write_text("new")
    kept = Path(str(exc.value).rsplit("kept in ", 1)[1])
    assert (kept / "run_z.nii.gz").read_text() == "old run_z.nii.gz"


def test_a_successful_run_replaces_only_files_of_the_same_names(tmp_path):
    out = tmp_path / "out"
    _old_outputs(out)
    with staged_dir(out) as tmp:
        (tmp / "run_z.nii.gz").write_text("new")
    assert _files(out) == {
        Path("notes.txt"): b"old notes.txt",
        Path("run_p.nii.gz"): b"old run_p.nii.gz",
        Path("run_z.nii.gz"): b"new",
    }


def test_truncated_images_raise_input_file_error(tmp_path):
    """Item 9: a truncated .nii.gz used to fail with an EOFError traceback at first use."""
    cut = _truncated_gz(tmp_path / "cut.nii.gz")
    with pytest.raises(InputFileError, match=r"contrast: cannot read .*cut\.nii\.gz as an image"):
        load_image(cut, "contrast")
    with pytest.raises(InputFileError, match=r"mask image: cannot read .*cut\.nii\.gz"):
        spatial.load_mask(cut)


def test_load_image_keeps_scaled_values(tmp_path):
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    img.header.set_slope_inter(2.0, 1.0)
    img.to_filename(tmp_path / "scaled.nii.gz")
    loaded = load_image(tmp_path / "scaled.nii.gz")
    np.testing.assert_array_equal(loaded.get_fdata(), 2.0 * np.arange(24).reshape(2, 3, 4) + 1)


@pytest.mark.parametrize(
    ("exc", "needles"),
    [
        (RuntimeError("boom\nsecond line"), ["RuntimeError: boom second line", "--debug"]),
        (MemoryError(), ["out of memory", "--n_cores", "not with --n_iters"]),
        (RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating"), ["--n_cores"]),
        (InputFileError("foci.txt, line 3: " + "9" * 5_000_000), ["foci.txt, line 3: 999"]),
    ],
)
def test_any_error_is_one_readable_line(exc, needles, tmp_path, capsys, monkeypatch):
    """Items 9 and 11: unexpected errors, memory, and messages echoing a 5 MB line."""

    def fail(*args):
        raise exc

    monkeypatch.setattr("nimare_jax.cli.convert_sleuth_to_json", fail)
    assert main(["sleuth2nimare", str(FOCI), str(tmp_path / "out.json")]) == 1
    line = _error(capsys)
    assert len(line) <= len(ERROR) + MAX_MESSAGE
    for needle in needles:
        assert needle in line
    assert list(tmp_path.iterdir()) == []


def test_usage_error_echoing_a_huge_value_is_cut(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["ale", str(FOCI), "--n_iters", "9" * 100_000 + "x"])
    assert exc.value.code == 2
    line = _error(capsys)
    assert len(line) == len(ERROR) + MAX_MESSAGE and line.endswith("...")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where, tmp_path, monkeypatch):
    def fail(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr("nimare_jax.cli.convert_sleuth_to_json", fail)
    argv = ["sleuth2nimare", str(FOCI), str(tmp_path / "out.json")]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(RuntimeError, match="boom"):
        main(argv)


def test_metacluster_img_on_a_coordinates_only_dataset(tmp_path, capsys):
    """Item 11: it used to say the dataset had "only 0 experiments ... (at most -1)"."""
    out = tmp_path / "out"
    argv = ["metacluster", str(FOCI), "--img", "--clust_range", "2", "3", "--output_dir", str(out)]
    assert main(argv) == 1
    line = _error(capsys)
    assert "the dataset has no images of type 'z'" in line and "-1" not in line
    assert list(tmp_path.iterdir()) == []

"""The macm, scale and ``ale --file2`` commands, run in-process on tiny inputs."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nilearn.image import load_img

from nimare_jax.cli import main
from nimare_jax.spatial import get_template, mm2vox

SLEUTH = Path(__file__).parent / "data" / "sleuth"
FILE1 = SLEUTH / "test_sleuth_file.txt"  # 3 experiments, 7 foci
FILE2 = SLEUTH / "test_sleuth_file2.txt"  # 2 experiments, 4 foci (Talairach)


def _roi(path, xyz):
    """A 3x3x3-voxel box around an MNI coordinate on the 2 mm template grid."""
    tpl = get_template("mni152_2mm")
    data = np.zeros(tpl.shape, np.uint8)
    i, j, k = mm2vox(np.atleast_2d(xyz), tpl.affine)[0]
    data[i - 1 : i + 2, j - 1 : j + 2, k - 1 : k + 2] = 1
    nib.Nifti1Image(data, tpl.affine).to_filename(path)
    return path


def _assert_one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("nimare-jax: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err


def _check_images(files):
    assert files
    for path in files:
        img = load_img(str(path))
        assert img.shape == (91, 109, 91)
        assert np.all(np.isfinite(img.get_fdata()))


@pytest.mark.slow
def test_macm(tmp_path, capsys):
    out = tmp_path / "macm"
    roi = _roi(tmp_path / "roi.nii.gz", (-16, -58, -22))
    argv = ["macm", str(FILE1), "--mask", str(roi), "--output_dir", str(out)]
    assert main([*argv, "--n_iters", "4"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "test_sleuth_file_boilerplate.txt" in names
    assert "test_sleuth_file_selected_experiments.tsv" in names
    assert "Robinson" in (out / "test_sleuth_file_boilerplate.txt").read_text()
    _check_images(out.glob("*.nii.gz"))
    assert (out / "test_sleuth_file_z_level-voxel_corr-FWE_method-montecarlo.nii.gz").exists()
    assert "Wrote" in capsys.readouterr().out


def test_macm_empty_mask(tmp_path, capsys):
    out = tmp_path / "empty"
    roi = _roi(tmp_path / "roi.nii.gz", (60, 60, 60))
    assert main(["macm", str(FILE1), "--mask", str(roi), "--output_dir", str(out)]) == 1
    _assert_one_line_error(capsys, "no experiment has a focus inside the mask")
    assert not out.exists()


@pytest.mark.slow
def test_scale_with_baseline(tmp_path, capsys):
    out = tmp_path / "scale"
    argv = ["scale", str(FILE1), "--baseline", str(SLEUTH / "test_baseline.txt")]
    assert main([*argv, "--output_dir", str(out), "--n_iters", "5", "--prefix", "s"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"s_stat.nii.gz", "s_z.nii.gz", "s_logp_level-voxel_corr-FWE_method-montecarlo.nii.gz",
            "s_boilerplate.txt", "s_references.bib"} <= names  # fmt: skip
    _check_images(out.glob("*.nii.gz"))
    assert "Langner" in (out / "s_boilerplate.txt").read_text()


def test_scale_bad_baseline(tmp_path, capsys):
    bad = tmp_path / "pool.txt"
    bad.write_text("1 2 3\n4 five 6\n")
    out = tmp_path / "out"
    argv = ["scale", str(FILE1), "--baseline", str(bad), "--output_dir", str(out)]
    assert main(argv) == 1
    _assert_one_line_error(capsys, "line 2", "three numbers")
    assert not out.exists()


@pytest.mark.slow
def test_ale_subtraction(tmp_path, capsys):
    out = tmp_path / "sub"
    argv = ["ale", str(FILE1), "--file2", str(FILE2), "--output_dir", str(out)]
    assert main([*argv, "--n_iters", "4"]) == 0
    names = {p.name for p in out.iterdir()}
    expected = {
        "test_sleuth_file_stat_desc-group1MinusGroup2.nii.gz",
        "test_sleuth_file_z_desc-group1MinusGroup2.nii.gz",
        "test_sleuth_file_z_desc-group1MinusGroup2_level-voxel_corr-FWE_method-montecarlo.nii.gz",
        "test_sleuth_file_group1_z.nii.gz",
        "test_sleuth_file_group2_stat.nii.gz",
        "test_sleuth_file_group1_logp_level-voxel_corr-FWE_method-montecarlo.nii.gz",
        "test_sleuth_file_group2_z_desc-size_level-cluster_corr-FWE_method-montecarlo.nii.gz",
        "test_sleuth_file_boilerplate.txt",
    }
    assert expected <= names, sorted(names)
    _check_images(out.glob("*.nii.gz"))
    assert "Laird" in (out / "test_sleuth_file_boilerplate.txt").read_text()


def test_ale_subtraction_needs_two_experiments(tmp_path, capsys):
    one = tmp_path / "one.txt"
    one.write_text("// Reference=MNI\n// Study: A\n// Subjects=12\n10 10 10\n")
    out = tmp_path / "out"
    assert main(["ale", str(FILE1), "--file2", str(one), "--output_dir", str(out)]) == 1
    _assert_one_line_error(capsys, "at least two experiments", "dataset2 has 1")
    assert not out.exists()


@pytest.mark.parametrize("command", ["macm", "scale"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"usage: nimare-jax {command}" in capsys.readouterr().out

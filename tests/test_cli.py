import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nimare_jax.cli import main
from nimare_jax.dataset import Dataset
from nimare_jax.io import convert_sleuth_to_dict
from nimare_jax.spatial import get_template

SLEUTH = Path(__file__).parent / "data" / "sleuth"
NEUROSYNTH = Path(__file__).parent / "data" / "neurosynth"
PREFIX = "data-neurosynth_version-7_"


SUBCOMMANDS = [
    "ale",
    "cbp",
    "conperm",
    "macm",
    "metacluster",
    "neurosynth2nimare",
    "peaks2maps",
    "scale",
    "sleuth2nimare",
]


@pytest.mark.slow
def test_help_lists_exactly_the_subcommands():
    proc = subprocess.run(
        [sys.executable, "-m", "nimare_jax.cli", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("positional arguments:")[1].split("options:")[0]
    commands = set(re.findall(r"^    (\S+)", listed, re.MULTILINE))
    assert commands == set(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"usage: nimare-jax {command}" in capsys.readouterr().out


def test_sleuth2nimare_round_trip(tmp_path):
    out = tmp_path / "nested" / "dset.json"
    assert main(["sleuth2nimare", str(SLEUTH / "test_sleuth_file.txt"), str(out)]) == 0
    with open(out) as f:
        data = json.load(f)
    assert data == json.loads(json.dumps(convert_sleuth_to_dict(SLEUTH / "test_sleuth_file.txt")))
    assert Dataset(str(out)).ids.size == sum(len(s["contrasts"]) for s in data.values())
    assert [p.name for p in out.parent.iterdir()] == ["dset.json"]  # no temporary left over


def test_neurosynth2nimare(tmp_path):
    out = tmp_path / "ns.json"
    features = NEUROSYNTH / f"{PREFIX}vocab-terms_source-abstract_type-tfidf_features.npz"
    vocabulary = NEUROSYNTH / f"{PREFIX}vocab-terms_vocabulary.txt"
    argv = [
        "neurosynth2nimare",
        str(NEUROSYNTH / f"{PREFIX}coordinates.tsv.gz"),
        str(NEUROSYNTH / f"{PREFIX}metadata.tsv.gz"),
        str(out),
        "--annotations_file",
        str(features),
        str(vocabulary),
    ]
    assert main(argv) == 0
    with open(out) as f:
        data = json.load(f)
    contrast = next(iter(data.values()))["contrasts"]["1"]
    assert {"coords", "labels", "metadata"} <= set(contrast)
    assert all(label.startswith("terms_abstract_tfidf__") for label in contrast["labels"])


def _assert_one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("nimare-jax: error: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize(
    ("name", "where", "what"),
    [
        ("test_sleuth_file3.txt", "line 5, experiment 'StudyName: ExperimentName'", "numbers"),
        ("test_sleuth_file4.txt", "line 5, experiment 'StudyName: ExperimentName'", "expected 3"),
        ("test_sleuth_file5.txt", "line 1", "unknown Reference space 'Dog'"),
    ],
)
@pytest.mark.parametrize("command", ["ale", "sleuth2nimare"])
def test_malformed_sleuth(command, name, where, what, tmp_path, capsys):
    out = tmp_path / "out"
    if command == "ale":
        argv = ["ale", str(SLEUTH / name), "--output_dir", str(out), "--n_iters", "20"]
    else:
        argv = ["sleuth2nimare", str(SLEUTH / name), str(out / "dset.json")]
    assert main(argv) == 1
    _assert_one_line_error(capsys, name, where, what)
    assert list(tmp_path.iterdir()) == []  # no output folder, no temporary files


def test_missing_file(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["ale", str(tmp_path / "nope.txt"), "--output_dir", str(out)]) == 1
    _assert_one_line_error(capsys, "nope.txt", "not found")
    assert list(tmp_path.iterdir()) == []


def test_malformed_json(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = tmp_path / "out"
    assert main(["ale", str(bad), "--output_dir", str(out)]) == 1
    _assert_one_line_error(capsys, "bad.json", "not valid JSON")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--n_iters", "0", "argument --n_iters: expected a positive whole number, got '0'"),
        ("--n_iters", "ten", "argument --n_iters: expected a positive whole number"),
        ("--v_thr", "1.5", "argument --v_thr: expected a p-value between 0 and 1"),
        ("--fwhm", "-8", "argument --fwhm: expected a positive number, got '-8'"),
        ("--fwhm", "nan", "argument --fwhm: expected a positive number"),
        ("--n_cores", "0", "argument --n_cores: expected a positive whole number"),
    ],
)
def test_bad_numbers(option, value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["ale", str(SLEUTH / "test_sleuth_file.txt"), option, value])
    assert exc.value.code == 2
    _assert_one_line_error(capsys, message)


def test_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["meta"])
    assert exc.value.code == 2
    _assert_one_line_error(capsys, "invalid choice: 'meta'")


@pytest.mark.slow
def test_ale_writes_maps_and_boilerplate(tmp_path, capsys):
    import nilearn.image

    out = tmp_path / "ale"
    argv = ["ale", str(SLEUTH / "test_sleuth_file.txt"), "--output_dir", str(out)]
    assert main([*argv, "--n_iters", "20", "--prefix", "run"]) == 0
    stdout = capsys.readouterr().out
    assert "activation likelihood estimation" in stdout and "References" in stdout
    names = {p.name for p in out.iterdir()}
    expected = {
        "stat",
        "p",
        "z",
        "logp",
        "logp_level-voxel_corr-FWE_method-montecarlo",
        "z_desc-size_level-cluster_corr-FWE_method-montecarlo",
        "z_desc-mass_level-cluster_corr-FWE_method-montecarlo",
    }
    assert {f"run_{m}.nii.gz" for m in expected} <= names
    assert {"run_boilerplate.txt", "run_references.bib"} <= names
    assert not [n for n in names if n.startswith(".")]  # nothing temporary left
    template = get_template("ale_2mm")  # Sleuth files are analysed in GingerALE's space
    for name in sorted(names):
        if name.endswith(".nii.gz"):
            img = nib.load(out / name)
            assert img.shape == template.shape
            np.testing.assert_array_equal(img.affine, template.affine)
            assert np.all(np.isfinite(img.get_fdata()))
            nilearn.image.load_img(out / name)
    stat = nib.load(out / "run_stat.nii.gz").get_fdata()
    assert stat.max() > 0
    text = (out / "run_boilerplate.txt").read_text()
    assert "Monte Carlo" in text and "[" not in text.split("References")[0]


def test_load_dataset_reads_json_and_sleuth(tmp_path):
    from nimare_jax.workflows.ale import load_dataset

    sleuth = SLEUTH / "test_sleuth_file.txt"
    json_file = tmp_path / "dset.json"
    assert main(["sleuth2nimare", str(sleuth), str(json_file)]) == 0
    from_sleuth, from_json = load_dataset(sleuth), load_dataset(json_file)
    assert list(from_json.ids) == list(from_sleuth.ids)
    np.testing.assert_allclose(
        from_json.coordinates[["x", "y", "z"]], from_sleuth.coordinates[["x", "y", "z"]]
    )


@pytest.mark.slow
def test_conperm_on_simulated_images(tmp_path):
    from nimare_jax.generate import create_image_dataset

    dset = create_image_dataset(n_studies=6, seed=0, out_dir=tmp_path / "imgs")
    paths = sorted(str(p) for p in (tmp_path / "imgs").glob("*_beta.nii.gz"))
    assert len(paths) == 6 and len(dset.ids) == 6
    out = tmp_path / "out"
    assert main(["conperm", *paths, "--output_dir", str(out), "--n_iters", "50"]) == 0
    z = nib.load(out / "z_level-voxel_corr-FWE_method-montecarlo.nii.gz")
    assert z.shape == (91, 109, 91)
    assert (out / "boilerplate.txt").read_text().startswith("A one-sample permutation test")


def test_conperm_needs_two_images(tmp_path, capsys):
    from nimare_jax.generate import create_image_dataset

    create_image_dataset(n_studies=2, seed=0, out_dir=tmp_path / "imgs")
    one = [str(p) for p in (tmp_path / "imgs").glob("*_z.nii.gz")][:1]
    assert main(["conperm", *one, "--output_dir", str(tmp_path / "o"), "--n_iters", "10"]) == 1
    assert "at least 2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

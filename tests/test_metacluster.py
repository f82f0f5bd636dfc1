"""Meta-analytic clustering workflow and its command."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nimare_jax.cli import main
from nimare_jax.meta.cbma import MKDAKernel
from nimare_jax.spatial import get_resource_path
from nimare_jax.workflows import metacluster_workflow

LAIRD = get_resource_path() / "data" / "laird_n20_dataset.json"


@pytest.fixture(scope="module")
def small(laird):
    return laird.slice(laird.ids[:8])


def test_kmeans_outputs(small, tmp_path):
    table, files = metacluster_workflow(
        small,
        clust_range=(2, 3),
        coord=True,
        kernel="MKDAKernel",
        output_dir=tmp_path,
        prefix="mc",
    )
    names = sorted(p.name for p in files)
    assert names == sorted(
        [
            "mc_boilerplate.txt",
            "mc_references.bib",
            "mc_silhouette.tsv",
            *(f"mc_k-{k}_{kind}" for k in (2, 3) for kind in ("labels.tsv", "means.nii.gz")),
        ]
    )
    assert all(p.is_file() for p in files)
    assert table["k"].tolist() == [2, 3] and table["n_clusters"].tolist() == [2, 3]
    assert np.all((table["silhouette"] > -1) & (table["silhouette"] <= 1))
    saved = pd.read_csv(tmp_path / "mc_silhouette.tsv", sep="\t")
    np.testing.assert_allclose(saved["silhouette"], table["silhouette"])
    ma = MKDAKernel().transform(small, return_type="array")
    inside = np.asanyarray(small.masker.mask_img_.dataobj) > 0
    for k in (2, 3):
        assign = pd.read_csv(tmp_path / f"mc_k-{k}_labels.tsv", sep="\t")
        assert assign["id"].tolist() == list(small.ids)
        assert sorted(assign["cluster"].unique()) == list(range(1, k + 1))
        means = nib.load(tmp_path / f"mc_k-{k}_means.nii.gz")
        assert means.shape == (*inside.shape, k)
        np.testing.assert_allclose(means.affine, small.masker.mask_img_.affine)
        data = means.get_fdata()
        for c in range(1, k + 1):
            expected = ma[assign["cluster"].to_numpy() == c].mean(axis=0)
            np.testing.assert_allclose(data[..., c - 1][inside], expected, rtol=1e-5, atol=1e-7)
    text = (tmp_path / "mc_boilerplate.txt").read_text()
    assert "k-means" in text and "Wager" in text and "silhouette" in text


@pytest.mark.parametrize("algorithm", ["dbscan", "spectral"])
def test_other_algorithms(small, tmp_path, algorithm):
    table, files = metacluster_workflow(
        small, clust_range=(2, 3), kernel="KDAKernel", algorithm=algorithm, output_dir=tmp_path
    )
    assert table["k"].tolist() == [2, 3]
    assign = pd.read_csv(tmp_path / "k-2_labels.tsv", sep="\t")
    assert len(assign) == len(small.ids)
    assert set(assign["cluster"]) <= {-1, 1, 2, 3, 4, 5, 6, 7, 8}
    if algorithm == "spectral":
        assert table["n_clusters"].tolist() == [2, 3]


@pytest.mark.slow
def test_cli_runs_on_json(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "metacluster",
            str(LAIRD),
            "--clust_range",
            "2",
            "3",
            "--coord",
            "--kernel",
            "MKDAKernel",
            "--output_dir",
            str(out),
            "--prefix",
            "laird",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert (out / "laird_silhouette.tsv").is_file()
    assert (out / "laird_k-3_means.nii.gz").is_file()
    assert "silhouette" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message", "status"),
    [
        (["--clust_range", "2", "17"], "only 17 experiments", 1),
        (["--clust_range", "2", "40"], "only 17 experiments", 1),
        (["--clust_range", "1", "3"], "start at 2", 2),
        (["--clust_range", "4", "3"], "increasing", 2),
        (["--clust_range", "2", "3", "--kernel", "GaussKernel"], "invalid choice", 2),
        (["--clust_range", "2", "3", "--algorithm", "hdbscan"], "invalid choice", 2),
    ],
)
def test_cli_errors_leave_nothing(tmp_path, capsys, args, message, status):
    out = tmp_path / "out"
    argv = ["metacluster", str(LAIRD), "--coord", "--output_dir", str(out), *args]
    if status == 2:  # usage errors: argparse exits
        with pytest.raises(SystemExit) as exc:
            main(argv)
        code = exc.value.code
    else:
        code = main(argv)
    err = capsys.readouterr().err
    assert code == status
    lines = [line for line in err.splitlines() if line.startswith("nimare-jax: error")]
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_needs_one_source(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["metacluster", str(LAIRD), "--clust_range", "2", "3"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["metacluster", str(LAIRD), "--clust_range", "2", "3", "--coord", "--img"])
    assert exc.value.code == 2


def test_workflow_argument_errors(small, tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        metacluster_workflow(small, (2, 3), coord=True, img="z", output_dir=tmp_path)
    with pytest.raises(ValueError, match="smaller than the number"):
        metacluster_workflow(small, (2, 8), output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []

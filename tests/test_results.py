import re
from pathlib import Path

import jax
import jax.numpy as jnp
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nimare_jax.correct import FDRCorrector, FWECorrector
from nimare_jax.io import convert_sleuth_to_dataset
from nimare_jax.meta.cbma import ALE
from nimare_jax.reports import bibtex, cited_keys, format_boilerplate, load_references
from nimare_jax.results import MetaResult
from nimare_jax.spatial import get_resource_path

SLEUTH = Path(__file__).parent / "data" / "sleuth" / "test_sleuth_file.txt"
AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])


@pytest.fixture
def result():
    inside = np.zeros((4, 5, 6), np.uint8)
    inside[1:3, 1:4, 2:5] = 1
    inside[0, 0, 0] = 1
    mask = nib.Nifti1Image(inside, AFFINE)
    n = int(inside.sum())
    rng = np.random.default_rng(0)
    maps = {"stat": jnp.asarray(rng.random(n), jnp.float32), "z": jnp.arange(n, dtype=jnp.float32)}
    nulls = {"values_desc-max": jnp.linspace(0, 1, 7)}
    tables = {"clusters": pd.DataFrame({"size": [3, 1], "peak_z": [2.5, 1.0]})}
    description = "An ALE [Turkeltaub2002; Eickhoff2009] was corrected [Benjamini1995]."
    return MetaResult(
        None,
        mask=mask,
        maps=maps,
        tables=tables,
        description=description,
        null_distributions=nulls,
        citations=("Turkeltaub2002", "Salo2023"),
    )


def test_pytree_round_trip(result):
    leaves, treedef = jax.tree_util.tree_flatten(result)
    assert len(leaves) == 3
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(back, MetaResult)
    assert set(back.maps) == set(result.maps)
    for name in result.maps:
        np.testing.assert_array_equal(back.maps[name], result.maps[name])
    np.testing.assert_array_equal(
        back.null_distributions["values_desc-max"], result.null_distributions["values_desc-max"]
    )
    assert back.mask is result.mask and back.tables is result.tables
    assert (back.description, back.citations) == (result.description, result.citations)


def test_passes_through_jit(result):
    @jax.jit
    def double(res):
        return jax.tree_util.tree_map(lambda x: 2 * x, res)

    out = double(result)
    assert isinstance(out, MetaResult)
    np.testing.assert_allclose(out.maps["stat"], 2 * np.asarray(result.maps["stat"]), rtol=1e-6)
    np.testing.assert_allclose(out.maps["z"], 2 * np.asarray(result.maps["z"]))
    assert out.description == result.description and out.mask is result.mask
    # a second call with the same structure reuses the compiled function
    assert double(result).citations == result.citations


def test_jit_over_equal_results_traces_once(result):
    traces = []

    @jax.jit
    def total(res):
        traces.append(1)
        return sum(jnp.sum(v) for v in res.maps.values())

    twin = MetaResult(
        None,
        mask=nib.Nifti1Image(np.asanyarray(result.mask.dataobj).copy(), result.mask.affine),
        maps={k: v + 1 for k, v in result.maps.items()},
        tables={k: t.copy() for k, t in result.tables.items()},
        description=result.description,
        null_distributions=result.null_distributions,
        citations=result.citations,
    )
    total(result), total(result), total(twin)
    assert len(traces) == 1
    other = result.copy()
    other.description = "another description"
    total(other)
    assert len(traces) == 2


def test_get_map_image_matches_array(result):
    inside = np.asanyarray(result.mask.dataobj) > 0
    for name in result.maps:
        img = result.get_map(name)
        arr = result.get_map(name, return_type="array")
        data = img.get_fdata()
        np.testing.assert_array_equal(img.affine, AFFINE)
        np.testing.assert_array_equal(data[inside], arr)
        assert np.all(data[~inside] == 0)


def test_get_map_errors(result):
    with pytest.raises(KeyError, match="no map 'p'"):
        result.get_map("p")
    with pytest.raises(ValueError, match="return_type must be 'image' or 'array'"):
        result.get_map("z", return_type="niimg")


def test_save_maps_names_and_reload(result, tmp_path):
    files = result.save_maps(tmp_path, prefix="study")
    assert sorted(f.name for f in files) == ["study_stat.nii.gz", "study_z.nii.gz"]
    for name in result.maps:
        img = nib.load(tmp_path / f"study_{name}.nii.gz")
        np.testing.assert_array_equal(img.affine, AFFINE)
        np.testing.assert_array_equal(img.get_fdata(), result.get_map(name).get_fdata())
    assert [f.name for f in result.save_maps(tmp_path / "noprefix", names=["z"])] == ["z.nii.gz"]


def test_save_tables(result, tmp_path):
    (path,) = result.save_tables(tmp_path, prefix="study")
    assert path.name == "study_clusters.tsv"
    pd.testing.assert_frame_equal(pd.read_csv(path, sep="\t"), result.tables["clusters"])


def test_boilerplate_resolves_citations(result, tmp_path):
    text = result.boilerplate()
    paragraph, references = text.split("\n\nReferences\n\n")
    assert "(Turkeltaub et al., 2002; Eickhoff et al., 2009)" in paragraph
    assert "(Benjamini & Hochberg, 1995)" in paragraph
    assert "[" not in paragraph
    assert len(references.strip().splitlines()) == 4  # 3 cited in the text + Salo2023
    files = result.save_boilerplate(tmp_path, prefix="study")
    assert [f.name for f in files] == ["study_boilerplate.txt", "study_references.bib"]
    assert files[0].read_text() == text
    keys = re.findall(r"^@\w+\{(\w+),", files[1].read_text(), re.MULTILINE)
    assert keys == ["Turkeltaub2002", "Eickhoff2009", "Benjamini1995", "Salo2023"]


def test_unknown_citation_key():
    with pytest.raises(KeyError, match=r"\['Nobody1999'\] not found in references.bib"):
        format_boilerplate("As shown [Nobody1999].")
    with pytest.raises(KeyError, match="Nobody1999"):
        bibtex(["Salo2023", "Nobody1999"])


def test_references_bib_entries_are_complete():
    refs = load_references()
    text = (get_resource_path() / "references.bib").read_text()
    assert len(refs) == len(re.findall(r"^@\w+\{", text, flags=re.M))
    for key, entry in refs.items():
        assert {"author", "title", "year"} <= set(entry), key
        assert entry["bibtex"].startswith("@") and entry["bibtex"].endswith("}"), key


def _descriptions():
    dset = convert_sleuth_to_dataset(SLEUTH)
    results = []
    for estimator in (ALE(), ALE(kernel__fwhm=10), ALE(kernel__sample_size=20)):
        res = estimator.fit(dset)
        results += [
            res,
            FDRCorrector(method="indep").transform(res),
            FDRCorrector(method="negcorr").transform(res),
            FWECorrector(method="bonferroni").transform(res),
        ]
    return results


def test_every_cited_key_is_in_references_bib():
    refs = load_references()
    for res in _descriptions():
        keys = cited_keys(res.description, res.citations)
        assert keys, res.description
        assert set(keys) <= set(refs), set(keys) - set(refs)
        format_boilerplate(res.description, res.citations)


def test_montecarlo_fwe_citations_are_in_references_bib():
    dset = convert_sleuth_to_dataset(SLEUTH)
    res = ALE(random_state=0).fit(dset)
    corrected = FWECorrector(method="montecarlo", n_iters=20).transform(res)
    keys = cited_keys(corrected.description, corrected.citations)
    assert set(keys) <= set(load_references())
    assert "[" not in corrected.boilerplate().split("\n\nReferences")[0]

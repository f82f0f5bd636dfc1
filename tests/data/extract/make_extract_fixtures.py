"""Write the fetcher fixtures of tests/test_extract.py with NiMARE 0.22.1.

Run once with the oracle's interpreter (it needs ``nimare``, ``cognitiveatlas``,
``fuzzywuzzy`` and ``pyarrow``), from any directory:

    PYTHONPATH=<folder with pyarrow> /work/venv-nimare/bin/python \
        tests/data/extract/make_extract_fixtures.py

It writes, beside this script:

* ``neurostore-release.tar.gz``: a NeuroStore studyset release as NiMARE 0.22.1 writes one
  (``Studyset.to_parquet``), of ``tests/data/nimads`` (studyset and annotation) with point
  values (Z) and a T map added to its first analysis (:func:`release_document`), nested one
  folder deep as the published archives are;
* ``neurostore-release-expected.json``: NiMARE 0.22.1's reading of that release
  (``Studyset(folder)``): foci (id, x, y, z, z_stat), sample sizes and the annotation's
  ``include`` per analysis;
* ``neurostore-real-release.tar.gz`` and ``neurostore-real-release-expected.json``: the
  NeuroStore release NiMARE 0.22.1 ships (``nimare/resources/neurostore_parquet_studyset``:
  4 studies, 8 analyses, 47 foci in Talairach space, point kinds, an ``other__source``
  image column) with its annotation table cut to 40 columns and its metadata to the columns
  some analysis fills (the full tables are 500 KB), and NiMARE's reading of the cut release:
  foci (id, x, y, z in MNI) and the numeric annotation values;
* ``neurovault-expected.json``: NiMARE 0.22.1's ``convert_neurovault_to_dataset`` on the
  recorded listing of collection 2000 (``neurovault_images.json``; one page, as NiMARE reads
  only the first): experiment ids, image file names per type, sample sizes;
* ``cogat_aliases.csv`` and ``cogat_relationships.csv``: NiMARE 0.22.1's
  ``download_cognitive_atlas`` fed the recorded API answers of ``cogat_responses.json``
  (written by hand after the Cognitive Atlas API's format) instead of the network.
"""

import json
import shutil
import tarfile
import tempfile
import warnings
from pathlib import Path

import cognitiveatlas.api
import nimare
import nimare.extract.extract as nimare_extract
import pandas as pd
from nimare.studyset import Studyset

assert nimare.__version__.startswith("0.22.1"), nimare.__version__
HERE = Path(__file__).parent
NIMADS = HERE.parent / "nimads"


def release_document():
    """The NIMADS studyset of tests/data/nimads, with Z values and a T map on one analysis.

    tests/test_extract.py builds the same document to compare the images (NiMARE 0.22.1
    writes them as ``t`` columns but reads only ``t__source`` ones, so its reading of the
    release has none).
    """
    document = json.loads((NIMADS / "nimads_studyset.json").read_text())
    analysis = next(s for s in document["studies"] if s["analyses"])["analyses"][0]
    for k, point in enumerate(analysis["points"]):
        point["values"] = [{"kind": "Z", "value": 3.0 + k / 4}]
    analysis["images"] = [
        {"url": "https://neurovault.org/media/images/1/tstat.nii.gz", "value_type": "T"}
    ]
    return document


def write_release():
    annotation = json.loads((NIMADS / "nimads_annotation.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        studyset = Studyset(release_document(), annotations=annotation)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "neurostore-studyset-2026-09"
        studyset.to_parquet(str(folder))
        with tarfile.open(HERE / "neurostore-release.tar.gz", "w:gz") as tar:
            for path in sorted(folder.iterdir()):
                tar.add(path, arcname=f"{folder.name}/{path.name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read = Studyset(str(folder), target="mni152_2mm")
            coords = read.coordinates[["id", "x", "y", "z", "z_stat"]]
            metadata = read.metadata.set_index("id")
            notes = read.annotations_df.set_index("id").filter(like="include").iloc[:, 0]
        expected = {
            "nimare_version": nimare.__version__,
            "coordinates": [
                [i, float(x), float(y), float(z), None if v is None else float(v)]
                for i, x, y, z, v in coords.itertuples(index=False)
            ],
            "sample_sizes": {i: [int(n) for n in v] for i, v in metadata["sample_sizes"].items()},
            "include": {i: float(v) for i, v in notes.items()},
        }
        text = json.dumps(expected)
        (HERE / "neurostore-release-expected.json").write_text(text + "\n")


def write_real_release():
    source = Path(nimare.__file__).parent / "resources" / "neurostore_parquet_studyset"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "neurostore-studyset-2026-10"
        shutil.copytree(source, folder)
        annotations = pd.read_parquet(folder / "annotations.parquet")
        annotations.iloc[:, :43].to_parquet(folder / "annotations.parquet", index=False)
        metadata = pd.read_parquet(folder / "metadata.parquet")
        metadata.dropna(axis=1, how="all").to_parquet(folder / "metadata.parquet", index=False)
        with tarfile.open(HERE / "neurostore-real-release.tar.gz", "w:gz") as tar:
            for path in sorted(folder.iterdir()):
                tar.add(path, arcname=f"{folder.name}/{path.name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read = Studyset(str(folder), target="mni152_2mm")
            coords = read.coordinates[["id", "x", "y", "z"]]
            notes = read.annotations_df.set_index("id").drop(columns=["study_id", "contrast_id"])
        numeric = notes.select_dtypes("number")
        expected = {
            "nimare_version": nimare.__version__,
            "coordinates": [[i, float(x), float(y), float(z)] for i, x, y, z in coords.values],
            "annotations": {
                column: {i: float(v) for i, v in numeric[column].dropna().items()}
                for column in numeric.columns
            },
        }
        text = json.dumps(expected)
        (HERE / "neurostore-real-release-expected.json").write_text(text + "\n")


def write_neurovault():
    import nimare.io as nimare_io

    listings = json.loads((HERE / "neurovault_images.json").read_text())
    base = "https://neurovault.org"

    class Answer:
        def __init__(self, payload=None, content=b""):
            self.payload, self.content, self.status_code = payload, content, 200

        def json(self):
            return self.payload

        def raise_for_status(self):
            pass

    def get(url, timeout=None):
        path = url.removeprefix(base)
        if path in listings:
            return Answer(json.loads(json.dumps(listings[path]).replace("{base}", base)))
        return Answer(content=b"image " + path.encode())

    nimare_io.requests.get = get
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dset = nimare_io.convert_neurovault_to_dataset(
            {"two": 2000}, {"animal": "as-Animal", "tool": "as-Tool"}, img_dir=tmp
        )
    images = dset.images.set_index("id")
    expected = {
        "nimare_version": nimare.__version__,
        "ids": list(dset.ids),
        "images": {
            i: {
                c: Path(v).name
                for c, v in images.loc[i].items()
                if isinstance(v, str)
                and c not in ("study_id", "contrast_id")
                and not c.endswith("__relative")
            }
            for i in dset.ids
        },
        "sample_sizes": {
            i: list(v) for i, v in dset.metadata.set_index("id")["sample_sizes"].items()
        },
    }
    (HERE / "neurovault-expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def write_cogat():
    responses = json.loads((HERE / "cogat_responses.json").read_text())

    def recorded(url):
        return json.dumps(responses[url.split("/v-alpha/", 1)[1].rstrip("?")])

    cognitiveatlas.utils.get_json = recorded  # DataJson reads through this function
    assert cognitiveatlas.api.DataJson.__init__.__globals__["get_json"] is recorded
    nimare_extract.time.sleep = lambda seconds: None
    with tempfile.TemporaryDirectory() as tmp:
        out = nimare_extract.download_cognitive_atlas(data_dir=tmp)
        for path in out.values():
            shutil.copy(path, HERE / Path(path).name)


if __name__ == "__main__":
    write_release()
    write_real_release()
    write_neurovault()
    write_cogat()

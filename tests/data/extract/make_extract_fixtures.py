"""Write the fetcher fixtures of tests/test_extract.py with NiMARE 0.22.1.

Run once with the oracle's interpreter (it needs ``nimare``, ``cognitiveatlas``,
``fuzzywuzzy`` and ``pyarrow``), from any directory:

    PYTHONPATH=<folder with pyarrow> /work/venv-nimare/bin/python \
        tests/data/extract/make_extract_fixtures.py

It writes, beside this script:

* ``neurostore-release.tar.gz``: a NeuroStore studyset release as NiMARE 0.22.1 writes one
  (``Studyset.to_parquet``), of ``tests/data/nimads`` (studyset and annotation), nested one
  folder deep as the published archives are;
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
from nimare.studyset import Studyset

assert nimare.__version__.startswith("0.22.1"), nimare.__version__
HERE = Path(__file__).parent
NIMADS = HERE.parent / "nimads"


def write_release():
    annotation = json.loads((NIMADS / "nimads_annotation.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        studyset = Studyset(str(NIMADS / "nimads_studyset.json"), annotations=annotation)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "neurostore-studyset-2026-09"
        studyset.to_parquet(str(folder))
        with tarfile.open(HERE / "neurostore-release.tar.gz", "w:gz") as tar:
            for path in sorted(folder.iterdir()):
                tar.add(path, arcname=f"{folder.name}/{path.name}")


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
    write_cogat()

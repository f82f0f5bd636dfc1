"""Time a NeuroStore studyset release read into nimare_jax's and NiMARE 0.22.1's Studyset.

A synthetic release (``--studies`` studies x 3 analyses x 8 foci, the layout NeuroStore
publishes) is written to a temporary folder. nimare_jax reads its parquet tables into a
NIMADS document; both packages then build their Studyset from that same document (saved as
JSON for NiMARE, loaded before its clock starts) and produce the ``coordinates`` and
``metadata`` tables. NiMARE runs in ``$NIMARE_PYTHON``.

    python benchmarks/bench_neurostore.py --studies 4000
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nimare_jax.io.neurostore import read_neurostore_release
from nimare_jax.studyset import Studyset

NIMARE_SNIPPET = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
from nimare.studyset import Studyset
with open(sys.argv[1]) as f:
    document = json.load(f)
start = time.perf_counter()
studyset = Studyset(document)
built = time.perf_counter()
n = len(studyset.coordinates)
coords = time.perf_counter()
m = len(studyset.metadata)
print(built - start, coords - built, time.perf_counter() - coords, n, m)
"""


def write_release(folder: Path, n_studies: int, per_study=3, per_analysis=8) -> int:
    rng = np.random.default_rng(0)
    study_ids = np.array([f"s{i}" for i in range(n_studies)])
    pd.DataFrame(
        {"study_id": study_ids, "name": "a study", "authors": "A B", "publication": "J"}
    ).to_parquet(folder / "studies.parquet")
    analyses = pd.DataFrame(
        {
            "study_id": np.repeat(study_ids, per_study),
            "contrast_id": np.tile([f"a{j}" for j in range(per_study)], n_studies),
        }
    )
    analyses.insert(0, "id", analyses["study_id"] + "-" + analyses["contrast_id"])
    analyses.assign(name="contrast").to_parquet(folder / "analyses.parquet")
    coords = analyses.loc[analyses.index.repeat(per_analysis), ["id", "study_id", "contrast_id"]]
    coords = coords.reset_index(drop=True)
    for axis in "xyz":
        coords[axis] = rng.integers(-60, 60, len(coords)).astype(float)
    coords.assign(space="MNI").to_parquet(folder / "coordinates.parquet")
    analyses[["id", "study_id", "contrast_id"]].assign(sample_size=20).to_parquet(
        folder / "metadata.parquet"
    )
    (folder / "studyset.json").write_text(json.dumps({"id": "synthetic", "name": "synthetic"}))
    return len(coords)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=4000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n_foci = write_release(folder, args.studies)
        start = time.perf_counter()
        document = read_neurostore_release(folder)
        read = time.perf_counter()
        studyset = Studyset(document)
        built = time.perf_counter()
        assert len(studyset.coordinates) == n_foci
        coords = time.perf_counter()
        assert len(studyset.metadata) == 3 * args.studies
        done = time.perf_counter()
        rows = [("nimare_jax", read - start, built - read, coords - built, done - coords)]
        nimads = folder / "nimads.json"
        nimads.write_text(json.dumps(document))
        nimare = os.environ.get("NIMARE_PYTHON", sys.executable)
        run = subprocess.run(
            [nimare, "-c", NIMARE_SNIPPET, str(nimads)], capture_output=True, text=True
        )
        if run.returncode == 0:
            load, table, meta, n, m = run.stdout.split()
            assert int(n) == n_foci and int(m) == 3 * args.studies
            rows.append(("NiMARE 0.22.1", float("nan"), float(load), float(table), float(meta)))
        else:
            print(f"NiMARE not run: {run.stderr.strip().splitlines()[-1]}")
    print(f"\n{args.studies} studies, {3 * args.studies} analyses, {n_foci} foci\n")
    print(
        "| package | read tables -> NIMADS (s) | Studyset from NIMADS (s) | .coordinates (s) "
        "| .metadata (s) | Studyset + tables (s) |"
    )
    print("|---|---|---|---|---|---|")
    for name, a, b, c, d in rows:
        first = "-" if np.isnan(a) else f"{a:.2f}"  # NiMARE is given the NIMADS document
        print(f"| {name} | {first} | {b:.2f} | {c:.2f} | {d:.2f} | {b + c + d:.2f} |")
    if len(rows) == 2:
        ratio = sum(rows[0][2:]) / sum(rows[1][2:])
        print(f"\nStudyset + tables: nimare_jax / NiMARE = {ratio:.2f}")


if __name__ == "__main__":
    main()

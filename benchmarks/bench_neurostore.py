"""Time reading a NeuroStore studyset release (parquet tables) in nimare_jax and NiMARE 0.22.1.

A synthetic release (``--studies`` studies x 3 analyses x 8 foci, the layout NeuroStore
publishes) is written to a temporary folder; each side reads it into its Studyset and asks
for the coordinates table. NiMARE runs in ``$NIMARE_PYTHON`` (it needs pyarrow there too).

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
import sys, time, warnings
warnings.simplefilter("ignore")
from nimare.studyset import Studyset
start = time.perf_counter()
studyset = Studyset(sys.argv[1])
loaded = time.perf_counter()
n = len(studyset.coordinates)
print(loaded - start, time.perf_counter() - loaded, n)
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
        done = time.perf_counter()
        rows = [("nimare_jax", read - start, built - read, done - built)]
        nimare = os.environ.get("NIMARE_PYTHON", sys.executable)
        run = subprocess.run(
            [nimare, "-c", NIMARE_SNIPPET, str(folder)], capture_output=True, text=True
        )
        if run.returncode == 0:
            load, table, n = run.stdout.split()
            assert int(n) == n_foci
            rows.append(("NiMARE 0.22.1", float("nan"), float(load), float(table)))
        else:
            print(f"NiMARE not run: {run.stderr.strip().splitlines()[-1]}")
    print(f"\n{args.studies} studies, {3 * args.studies} analyses, {n_foci} foci\n")
    print("| package | read tables -> NIMADS (s) | Studyset (s) | .coordinates (s) | total (s) |")
    print("|---|---|---|---|---|")
    for name, a, b, c in rows:
        total = np.nansum([a, b, c])
        first = "-" if np.isnan(a) else f"{a:.2f}"  # NiMARE reads the tables into its store
        print(f"| {name} | {first} | {b:.2f} | {c:.2f} | {total:.2f} |")


if __name__ == "__main__":
    main()

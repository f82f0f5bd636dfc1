"""Benchmark text annotation: nimare_jax vs NiMARE 0.22.1 on the bundled laird abstracts.

Usage::

    NIMARE_PYTHON=/path/to/nimare-env/bin/python python benchmarks/bench_annotate.py
    python benchmarks/bench_annotate.py --no-nimare --copies 20

Both packages run the same script in a fresh subprocess (``import nimare`` or
``import nimare_jax``): ``generate_counts`` (tf-idf, ``min_df=1, max_df=1.0``),
``LDAModel(5, random_state=0).fit`` with ``max_iter`` 100 and 1000 (both packages call
scikit-learn's batch LDA, so the times should match), and ``extract_cogat`` with the
hand-made ontology of ``tests/data/annotate/cogat_toy.json`` on the 17 abstracts repeated
``--copies`` times (NiMARE re-reads its spelling table for every document). Each row is the
best of ``--repeats`` runs in that process, in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CODE = """
import json, time, warnings
warnings.simplefilter("ignore")
import pandas as pd
from {pkg}.annotate.cogat import extract_cogat
from {pkg}.annotate.lda import LDAModel
from {pkg}.annotate.text import generate_counts
from {pkg}.dataset import Dataset

dset = Dataset({laird!r})
toy = json.load(open({toy!r}))
id_df = pd.DataFrame(toy["aliases"], columns=["id", "name", "alias"])
texts = dset.texts[["id", "abstract"]]
many = pd.concat([texts.assign(id=texts["id"] + f"-{{n}}") for n in range({copies})])

def best(fn):
    times = []
    for _ in range({repeats}):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)

out = {{
    "generate_counts": best(lambda: generate_counts(texts, min_df=1, max_df=1.0)),
    "LDAModel(5, max_iter=100)": best(
        lambda: LDAModel(5, max_iter=100, random_state=0).fit(dset)
    ),
    "LDAModel(5, max_iter=1000)": best(
        lambda: LDAModel(5, max_iter=1000, random_state=0).fit(dset)
    ),
    f"extract_cogat ({{len(many)}} docs)": best(lambda: extract_cogat(many, id_df=id_df)),
}}
print("RESULT" + json.dumps(out))
"""


def _run(python: str, pkg: str, args) -> dict:
    code = CODE.format(
        pkg=pkg,
        laird=str(ROOT / "nimare_jax" / "resources" / "data" / "laird_n20_dataset.json"),
        toy=str(ROOT / "tests" / "data" / "annotate" / "cogat_toy.json"),
        copies=args.copies,
        repeats=args.repeats,
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)} if pkg == "nimare_jax" else None
    proc = subprocess.run(
        [python, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[6:])
    raise RuntimeError(proc.stderr[-2000:])


def main():
    """Print the timing table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nimare-python", default=os.environ.get("NIMARE_PYTHON", sys.executable))
    parser.add_argument("--no-nimare", action="store_true", help="time nimare_jax only")
    parser.add_argument("--copies", type=int, default=20, help="copies of the abstracts")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (best kept)")
    args = parser.parse_args()

    ours = _run(sys.executable, "nimare_jax", args)
    theirs = {} if args.no_nimare else _run(args.nimare_python, "nimare", args)
    print("| task | nimare_jax s | NiMARE s | ratio |")
    print("|---|---|---|---|")
    for task, seconds in ours.items():
        other = theirs.get(task)
        ratio = f"{other / seconds:.1f}x" if other else "-"
        other = f"{other:.3f}" if other else "-"
        print(f"| {task} | {seconds:.3f} | {other} | {ratio} |")


if __name__ == "__main__":
    main()

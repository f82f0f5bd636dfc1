"""Benchmark HTML report generation: nimare_jax vs NiMARE 0.22.1 on the same analyses.

Usage::

    NIMARE_PYTHON=/path/to/nimare-env/bin/python python benchmarks/bench_reports.py
    python benchmarks/bench_reports.py --no-nimare

Each package runs the same script in a fresh subprocess (``import nimare`` or
``import nimare_jax``): ``CBMAWorkflow`` (ALE, Monte Carlo FWE with ``--n_iters``
iterations, FocusCounter) on the bundled laird dataset, and ``IBMAWorkflow`` (Stouffers,
FDR, Jackknife, ``voxel_thresh=0.3`` since nothing survives FDR at 0.05 there) on the
cropped IBMA test set; then ``run_reports`` on each result, timed twice (first call and a
second one). The workflow fit is not timed. Sizes are of everything the report wrote (for
NiMARE: ``report.html`` plus its ``figures/`` folder).
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
import json, tempfile, time, warnings
from pathlib import Path
warnings.simplefilter("ignore")
import logging; logging.disable(logging.CRITICAL)
from {pkg}.correct import FWECorrector
from {pkg}.dataset import Dataset
from {pkg}.reports import run_reports
from {pkg}.workflows import CBMAWorkflow, IBMAWorkflow

laird = Dataset({laird!r})
ibma = Dataset({ibma_json!r}, mask={ibma_mask!r})
ibma.update_path({ibma_dir!r})
fwe = FWECorrector(method="montecarlo", n_iters={n_iters})
runs = {{
    "ALE + FWE + FocusCounter": lambda: CBMAWorkflow(corrector=fwe, diagnostics="focuscounter")
    .fit(laird),
    "Stouffers + FDR + Jackknife": lambda: IBMAWorkflow(voxel_thresh=0.3).fit(ibma),
}}
out = {{}}
for name, fit in runs.items():
    result = fit()
    times, size = [], 0
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_reports(result, tmp)
            times.append(time.perf_counter() - t0)
            size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    out[name] = {{"first": times[0], "second": times[1], "size": size}}
print("RESULT" + json.dumps(out))
"""


def _run(python: str, pkg: str, args) -> dict:
    ibma = ROOT / "tests" / "data" / "ibma"
    code = CODE.format(
        pkg=pkg,
        laird=str(ROOT / "nimare_jax" / "resources" / "data" / "laird_n20_dataset.json"),
        ibma_json=str(ibma / "inputs" / "ibma_sim_dataset.json"),
        ibma_mask=str(ibma / "mask.nii.gz"),
        ibma_dir=str(ibma / "inputs"),
        n_iters=args.n_iters,
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
            return json.loads(line[len("RESULT") :])
    raise RuntimeError(f"{pkg} run failed:\n{proc.stderr[-3000:]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_iters", type=int, default=100, help="FWE iterations (100)")
    parser.add_argument("--no-nimare", action="store_true", help="skip NiMARE")
    args = parser.parse_args(argv)
    results = {"nimare_jax": _run(sys.executable, "nimare_jax", args)}
    nimare_python = os.environ.get("NIMARE_PYTHON")
    if nimare_python and not args.no_nimare:
        results["NiMARE 0.22.1"] = _run(nimare_python, "nimare", args)
    header = f"{'run_reports on':<30} {'package':<14} {'first s':>8} {'second s':>9} {'MB':>7}"
    print(header)
    print("-" * len(header))
    for run in results["nimare_jax"]:
        for pkg, res in results.items():
            r = res[run]
            print(
                f"{run:<30} {pkg:<14} {r['first']:>8.2f} {r['second']:>9.2f} "
                f"{r['size'] / 1e6:>7.2f}"
            )
        if len(results) == 2:
            ours, theirs = results["nimare_jax"][run], results["NiMARE 0.22.1"][run]
            print(f"{'':<30} {'ratio NiMARE/ours':<14} {theirs['first'] / ours['first']:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the IBMA estimators: nimare_jax vs NiMARE 0.22.1 on the 20-study reference set.

Usage::

    python benchmarks/bench_ibma.py            # timing table + parity + 500-study scale check
    python benchmarks/bench_ibma.py --no-nimare --no-scale

Each row runs in a fresh subprocess so its time includes loading and masking the 20-study
images (as NiMARE's does) and, for nimare_jax, jit compilation ("cold"); "warm" is a second
fit in the same process. NiMARE runs in the oracle environment (``--nimare-python``). The
parity column is the largest absolute difference from NiMARE's reference maps over all
maps the reference holds (float32-stored). The scale check fits 500 simulated studies of
full 2 mm maps (228,483 voxels) from arrays and reports the subprocess's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ESTIMATORS = {
    "fishers": "Fishers()",
    "stouffers": "Stouffers(use_sample_size=False)",
    "weightedleastsquares": "WeightedLeastSquares()",
    "dersimonianlaird": "DerSimonianLaird()",
    "hedges": "Hedges()",
    "variancebasedlikelihood": "VarianceBasedLikelihood(method='reml')",
    "samplesizebasedlikelihood": "SampleSizeBasedLikelihood(method='ml')",
    "permutedols": "PermutedOLS()",
    "permutedols_n": "PermutedOLS(use_sample_size=True)",
}

JAX_CODE = """
import json, os, resource, time, warnings
import numpy as np
from nimare_jax.dataset import Dataset
from nimare_jax.meta import ibma
from nimare_jax.correct import FWECorrector
d = Dataset("{dataset}", mask="{mask}")
t0 = time.perf_counter(); res = ibma.{est}.fit(d); cold = time.perf_counter() - t0
t0 = time.perf_counter(); res = ibma.{est}.fit(d); warm = time.perf_counter() - t0
out = {{"cold": cold, "warm": warm}}
path = "{outputs}/{name}_maps.npz"
if os.path.exists(path):
    with np.load(path) as f:
        out["parity"] = max(float(np.nanmax(np.abs(res.maps[k] - f[k]))) for k in f.files)
if "{name}".startswith("permutedols"):
    t0 = time.perf_counter()
    FWECorrector(method="montecarlo", n_iters=1000).transform(res)
    out["fwe1000"] = time.perf_counter() - t0
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT" + json.dumps(out))
"""

NIMARE_CODE = """
import json, time, warnings, logging
warnings.simplefilter("ignore"); logging.disable(logging.WARNING)
from nimare.dataset import Dataset
from nimare.meta import ibma
from nimare.correct import FWECorrector
d = Dataset("{dataset}", mask="{mask}")
d.update_path("{images}")
t0 = time.perf_counter(); res = ibma.{est}.fit(d); out = {{"fit": time.perf_counter() - t0}}
if "{name}".startswith("permutedols"):
    t0 = time.perf_counter()
    FWECorrector(method="montecarlo", n_iters=1000).transform(res)
    out["fwe1000"] = time.perf_counter() - t0
print("RESULT" + json.dumps(out))
"""

SCALE_CODE = """
import json, resource, time
import numpy as np
from nimare_jax.meta import ibma
from nimare_jax.spatial import load_mask
mask = load_mask("{mask}")
n_vox = int((np.asanyarray(mask.dataobj) > 0).sum())
rng = np.random.default_rng(0)
k = {k}
beta = rng.standard_normal((k, n_vox), dtype=np.float32) * 0.3 + 0.1
varcope = rng.uniform(0.01, 0.05, (k, n_vox)).astype(np.float32)
n = rng.integers(15, 40, k)
t0 = time.perf_counter()
est = ibma.{est}
res = est.fit_arrays({{"beta": beta, "varcope": varcope}}, mask, sample_sizes=n)
extra = {{}}
if "{est}".startswith("PermutedOLS"):
    from nimare_jax.correct import FWECorrector
    FWECorrector(method="montecarlo", n_iters=100).transform(res)
out = {{"time": time.perf_counter() - t0,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}
print("RESULT" + json.dumps(out))
"""


def _run(python, code):
    proc = subprocess.run(
        [python, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[6:])
    raise RuntimeError(proc.stderr[-2000:])


def _inputs(reference, folder):
    """Paths of the image dataset: the NiMARE reference set if given, else a simulated one."""
    if reference:
        ref = Path(reference)
        images = ref / "ibma_inputs"
        return {
            "dataset": images / "ibma_sim_dataset.json",
            "mask": ref / "ibma_mask.nii.gz",
            "images": images,
            "outputs": ref / "outputs",
        }
    from nimare_jax.generate import create_image_dataset
    from nimare_jax.spatial import get_template

    images = Path(folder) / "images"
    create_image_dataset(n_studies=20, seed=0, out_dir=images)
    get_template("mni152_2mm").to_filename(Path(folder) / "mask.nii.gz")
    return {
        "dataset": images / "dataset.json",
        "mask": Path(folder) / "mask.nii.gz",
        "images": images,
        "outputs": Path(folder) / "no-reference",
    }


def main():
    """Print the IBMA timing table (and the scale check)."""
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--reference",
        default=os.environ.get("NIMARE_JAX_IBMA_REFERENCE"),
        help="folder with ibma_inputs/, ibma_mask.nii.gz and outputs/ (NiMARE's reference "
        "set); default: 20 studies simulated with generate.create_image_dataset",
    )
    parser.add_argument("--nimare-python", default=os.environ.get("NIMARE_PYTHON", sys.executable))
    parser.add_argument("--no-nimare", action="store_true")
    parser.add_argument("--no-scale", action="store_true")
    parser.add_argument("--scale-studies", type=int, default=500)
    parser.add_argument(
        "--estimators", nargs="+", choices=list(ESTIMATORS), default=list(ESTIMATORS)
    )
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    paths = {k: str(v) for k, v in _inputs(args.reference, tmp.name).items()}

    print(
        "| estimator | NiMARE 0.22.1 fit (s) | nimare_jax cold (s) | nimare_jax warm (s) "
        "| max abs diff vs NiMARE ref | peak RSS (MB) |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.estimators:
        est = ESTIMATORS[name]
        ours = _run(sys.executable, JAX_CODE.format(est=est, name=name, **paths))
        theirs = (
            {"fit": float("nan")}
            if args.no_nimare
            else _run(args.nimare_python, NIMARE_CODE.format(est=est, name=name, **paths))
        )
        parity = f"{ours['parity']:.1e}" if "parity" in ours else "n/a (no ref)"
        print(
            f"| {est} | {theirs['fit']:.2f} | {ours['cold']:.2f} | {ours['warm']:.2f} "
            f"| {parity} | {ours['rss_mb']:.0f} |",
            flush=True,
        )
        if "fwe1000" in ours:
            print(
                f"| {est} FWE 1000 sign flips | {theirs.get('fwe1000', float('nan')):.2f} "
                f"| {ours['fwe1000']:.2f} | | | |",
                flush=True,
            )
    if args.no_scale:
        return
    print(f"\nScale check: {args.scale_studies} studies x 228,483 voxels (from arrays)")
    print("| estimator | time (s) | peak RSS (MB) |")
    print("|---|---|---|")
    for est in (
        "DerSimonianLaird()",
        "VarianceBasedLikelihood(method='reml')",
        "SampleSizeBasedLikelihood()",
        "PermutedOLS()",
        "PermutedOLS(use_sample_size=True)",
    ):
        if f"{est.split('(')[0]}" not in {ESTIMATORS[n].split("(")[0] for n in args.estimators}:
            continue
        out = _run(sys.executable, SCALE_CODE.format(est=est, k=args.scale_studies, **paths))
        print(f"| {est} | {out['time']:.1f} | {out['rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

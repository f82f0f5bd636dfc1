"""Coactivation-based parcellation (CoordCBP) at scale: batched MACMs vs one fit per voxel.

Workload (issue 16's goal): ``--studies`` simulated experiments (default 1,000) with 20
foci each drawn uniformly in the ``mni152_2mm`` mask, plus, for 10 % of the experiments, two
foci near the ROI centre (``generate.create_coordinate_dataset`` ground truth, FWHM 10 mm);
the ROI is the ``--roi_voxels`` brain voxels nearest to MNI (-40, -20, 10). ``CoordCBP``
with ``r`` = 6 mm, ALE, ``target_image`` z (``--target``), k = 2, 3, 4, ``--n_splits``
split-half resamples. Reported: the fit's wall time, the number of distinct MACMs
(per-voxel selections of the full data and the halves), the MACM rate, peak RSS, and the
process CPU time of the fit (steadier than wall time on a shared machine), the
time of one ``ALE().fit`` on a typical selection (nimare_jax, and NiMARE 0.22.1 when
``NIMARE_PYTHON`` is set): what a loop of one meta-analysis per voxel would cost.

Usage::

    NIMARE_PYTHON=/work/venv-nimare/bin/python python benchmarks/bench_parcellate.py
    python benchmarks/bench_parcellate.py --studies 200 --roi_voxels 300   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from nimare_jax.generate import create_coordinate_dataset
from nimare_jax.io.nimare_json import convert_dataset_to_json
from nimare_jax.meta.cbma import ALE
from nimare_jax.parcellate import CoordCBP
from nimare_jax.parcellate.base import target_voxels
from nimare_jax.parcellate.cbp import select_experiments
from nimare_jax.spatial import get_template, vox2mm

NIMARE_FIT = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
from nimare.dataset import Dataset
from nimare.meta.cbma import ALE
cfg = json.loads(sys.argv[1])
dset = Dataset(cfg["dataset"])
times = []
for ids in cfg["subsets"]:
    t = time.perf_counter()
    ALE().fit(dset.slice(ids))
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def _roi(n_voxels: int) -> nib.Nifti1Image:
    tpl = get_template("mni152_2mm")
    ijk = np.argwhere(np.asanyarray(tpl.dataobj) > 0)
    d = np.linalg.norm(vox2mm(ijk, tpl.affine) - np.array([-40.0, -20.0, 10.0]), axis=1)
    data = np.zeros(tpl.shape, np.int8)
    data[tuple(ijk[np.argsort(d, kind="stable")[:n_voxels]].T)] = 1
    return nib.Nifti1Image(data, tpl.affine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--roi_voxels", type=int, default=2000)
    parser.add_argument("--r", type=float, default=6.0)
    parser.add_argument("--target", default="z")
    parser.add_argument("--n_splits", type=int, default=1)
    parser.add_argument("--n_init", type=int, default=50)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    _, dset = create_coordinate_dataset(
        foci=[[-40, -20, 10], [-36, -24, 14]],
        foci_percentage=0.1,
        fwhm=10,
        sample_size=(15, 40),
        n_studies=args.studies,
        n_noise_foci=20,
        seed=0,
    )
    roi = _roi(args.roi_voxels)
    cbp = CoordCBP(
        roi,
        [2, 3, 4],
        r=args.r,
        target_image=args.target,
        n_splits=args.n_splits,
        n_init=args.n_init,
    )
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    result = cbp.fit(dset)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # one meta-analysis per voxel instead: time a few typical selections
    xyz = target_voxels(roi, dset).xyz
    sel = select_experiments(dset, xyz[:: max(1, len(xyz) // 3)][:3], r=args.r)
    subsets = [list(np.asarray(dset.ids)[row]) for row in sel]
    ALE().fit(dset.slice(subsets[0]))  # compile
    loop = []
    for ids in subsets:
        t = time.perf_counter()
        ALE().fit(dset.slice(ids))
        loop.append(time.perf_counter() - t)
    nimare = None
    if os.environ.get("NIMARE_PYTHON"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sim.json"
            convert_dataset_to_json(dset, path)
            cfg = json.dumps({"dataset": str(path), "subsets": subsets})
            out = subprocess.run(
                [os.environ["NIMARE_PYTHON"], "-c", NIMARE_FIT, cfg],
                capture_output=True,
                text=True,
                check=True,
            )
            nimare = json.loads(out.stdout.strip().splitlines()[-1])

    n_roi = len(result.roi)
    print(f"load average at the end: {os.getloadavg()}")
    print(
        "| studies | ROI voxels | r mm | target | splits | distinct MACMs | fit s | fit CPU s | "
        "MACMs/s | ROI voxels/s | peak RSS MB | ALE fit per voxel, nimare_jax s | "
        "same, NiMARE s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    nim = f"{np.mean(nimare):.2f}" if nimare else "-"
    print(
        f"| {len(dset.ids)} | {n_roi} | {args.r:g} | {args.target} | {args.n_splits} | "
        f"{cbp.n_macms_} | {fit_s:.1f} | {fit_cpu:.1f} | {cbp.n_macms_ / fit_s:.1f} | "
        f"{n_roi / fit_s:.1f} | "
        f"{rss_mb:.0f} | {np.mean(loop):.2f} | {nim} |"
    )
    print(
        "a loop of one ALE fit per ROI voxel (no halves): "
        f"nimare_jax ~{np.mean(loop) * n_roi:.0f} s"
        + (f", NiMARE ~{np.mean(nimare) * n_roi:.0f} s" if nimare else "")
    )
    print(result.metrics.to_string())
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Time MAPBOT on a random corpus: the profiles (selection and products) and the NMFs.

NiMARE has no MAPBOT (its draft was removed unimplemented), so there is no side-by-side
column. The corpus: ``--n_exp`` experiments with 3-14 foci drawn uniformly in a box of
the brain and ``--n_terms`` term weights (10% non-zero, uniform); the ROI is a box of
``--roi`` voxels (2 mm, rounded to whole slabs). Prints one row: the time of the profiles
of the full data and of the split halves, of the NMFs (every k on the full data and on
both halves of every split), and of the whole fit, the first (compiling) call separately.

Example (the issue's CBP scale): ``python benchmarks/bench_mapbot.py --roi 2000
--n_exp 1000 --n_terms 500``.
"""

import argparse
import logging
import os
import time

import nibabel as nib
import numpy as np

from nimare_jax.dataset import Dataset
from nimare_jax.parcellate import mapbot
from nimare_jax.spatial import load_mask, mm2vox


def corpus(n_exp: int, n_terms: int, n_roi: int, seed: int = 0):
    """Return a random dataset and a box ROI of about ``n_roi`` voxels."""
    rng = np.random.default_rng(seed)
    source = {}
    for e in range(n_exp):
        nf = int(rng.integers(3, 15))
        x, y, z = rng.uniform(-60, 60, nf), rng.uniform(-90, 60, nf), rng.uniform(-30, 60, nf)
        w = rng.random(n_terms) * (rng.random(n_terms) < 0.1)
        coords = {"space": "MNI", "x": x.tolist(), "y": y.tolist(), "z": z.tolist()}
        labels = {f"T__t{t}": float(v) for t, v in enumerate(w)}
        source[f"e{e}"] = {"contrasts": {"1": {"coords": coords, "labels": labels}}}
    dset = Dataset(source)
    mask = load_mask(dset.masker)
    nz = max(1, round(n_roi / 100))
    xs, ys, zs = np.arange(-20, 0, 2.0), np.arange(-30, -10, 2.0), np.arange(0, 2.0 * nz, 2.0)
    vox = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), -1).reshape(-1, 3)
    data = np.zeros(mask.shape, np.int8)
    data[tuple(mm2vox(vox, mask.affine).T)] = 1
    return dset, nib.Nifti1Image(data, mask.affine)


class _Timed(mapbot.MAPBOT):
    """MAPBOT recording the time spent in its profiles and its NMFs."""

    def _profiles(self, dataset, roi, groups):
        start = time.perf_counter()
        out = super()._profiles(dataset, roi, groups)
        self.seconds["profiles"] += time.perf_counter() - start
        return out

    def _factorize(self, features, k):
        start = time.perf_counter()
        out = super()._factorize(features, k)
        self.seconds["nmf"] += time.perf_counter() - start
        self.seconds["n_nmf"] += 1
        return out


def main(argv=None):
    """Run the benchmark and print its table row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roi", type=int, default=500)
    parser.add_argument("--n_exp", type=int, default=300)
    parser.add_argument("--n_terms", type=int, default=200)
    parser.add_argument("--r", type=float, default=10.0)
    parser.add_argument("--n_clusters", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--n_splits", type=int, default=2)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # non-converged NMFs on random data
    dset, roi = corpus(args.n_exp, args.n_terms, args.roi)
    n_roi = int(np.asarray(roi.dataobj).sum())
    print(
        "| ROI voxels | experiments | terms | k | splits | call | profiles (s) | NMFs (s) "
        "| fit (s) | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for call in ("first", "second"):
        model = _Timed(roi, args.n_clusters, r=args.r, feature_group="T", n_splits=args.n_splits)
        model.seconds = {"profiles": 0.0, "nmf": 0.0, "n_nmf": 0}
        start = time.perf_counter()
        model.fit(dset)
        total = time.perf_counter() - start
        s = model.seconds
        print(
            f"| {n_roi} | {args.n_exp} | {args.n_terms} | {args.n_clusters} | {args.n_splits} "
            f"| {call} | {s['profiles']:.2f} | {s['nmf']:.2f} ({s['n_nmf']} NMFs) "
            f"| {total:.2f} | {os.getloadavg()[0]:.1f} |"
        )


if __name__ == "__main__":
    main()

"""Neurosynth-scale ALE Monte Carlo FWE: per-permutation time and peak memory.

Simulates ``--n_studies`` experiments with ``--foci`` uniform foci each (default 14,000 x 36
= 504,000 foci, the size of Neurosynth), builds the ALE relocation null summary (max ALE,
max cluster size and mass at a fixed cluster-forming threshold) and times a few iterations
through the permutation engine. Prints one table row: per-permutation time, the projected
wall time of 10,000 iterations on the given devices, and peak RSS.

The approximate (analytic) null is not computed here: at this size every one of the
100,000 histogram bins is populated and the exact fold costs ~1e11 operations (NiMARE's as
well), so the threshold is fixed (``--threshold``) instead.

Usage::

    python benchmarks/bench_scale.py [--n_studies 14000] [--foci 36] [--iters 4] [--cores 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, warnings
    warnings.filterwarnings("ignore")
    cfg = json.loads(sys.argv[1])
    from nimare_jax.ops.permute import configure_cpu_devices, run_permutations
    configure_cpu_devices(cfg["cores"])
    import jax
    from nimare_jax.generate import create_coordinate_dataset
    from nimare_jax.meta.cbma.ale import relocation_maps
    from nimare_jax.meta.cbma.base import relocation_null
    from nimare_jax.meta.cbma.kernel import ALEKernel
    t = time.perf_counter()
    _, dset = create_coordinate_dataset(
        foci=cfg["foci"], foci_percentage="0%", n_noise_foci=cfg["foci"],
        n_studies=cfg["n_studies"], sample_size=20, seed=0)
    arrays = ALEKernel().prepare(dset)
    t_data = time.perf_counter() - t
    summary, operands = relocation_null(relocation_maps(arrays), cfg["threshold"], 6)
    def run(n):
        t = time.perf_counter()
        run_permutations(summary, jax.random.key(0), n, batch_size=1, n_devices=cfg["cores"],
                         progress=False, vectorize="map", operands=operands)
        return time.perf_counter() - t
    first = run(cfg["cores"])
    steady = run(cfg["iters"])
    print(json.dumps({"foci": int(arrays.ijk.shape[0]), "data_s": t_data, "first_s": first,
                      "per_perm_s": steady / cfg["iters"],
                      "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
    """
)


def main(argv=None) -> None:
    """Run the scale benchmark and print a table row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_studies", type=int, default=14000)
    parser.add_argument("--foci", type=int, default=36)
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args(argv)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(vars(args))], capture_output=True, text=True
    )
    if proc.returncode:
        sys.exit(proc.stderr)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    wall = time.perf_counter() - t
    print(
        "| experiments | foci | cores | s/perm | 10k iterations (projected) | data s | "
        "first call s | peak RSS GB | this run s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.n_studies} | {out['foci']} | {args.cores} | {out['per_perm_s']:.2f} | "
        f"{out['per_perm_s'] * 1e4 / 3600:.1f} h | {out['data_s']:.1f} | "
        f"{out['first_s']:.1f} | {out['rss_gb']:.2f} | {wall:.0f} |"
    )


if __name__ == "__main__":
    main()

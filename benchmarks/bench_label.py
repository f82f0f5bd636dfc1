"""Time max-cluster-size/mass labelling of realistic supra-threshold volumes.

Volumes are 91 x 109 x 91 (MNI 2 mm grid) Gaussian noise smoothed with sigma = 2.5 voxels
(FWHM ~ 12 mm, like an ALE map) and thresholded so that a given fraction of voxels is
active, which gives smooth blobs. Compared, per volume:

- ``jax``          : :func:`nimare_jax.ops.label.max_cluster_stats` (backend="jax") under jit
- ``jax vmap``     : the same, vmapped over a batch (per-volume time), as the permutation
                     engine runs it
- ``scipy cb``     : backend="scipy": the lines holding active voxels are gathered on the
                     device and labelled by a ``jax.pure_callback`` (NumPy union-find)
- ``scipy cb vmap``: the callback under vmap (one host call per batch, as the ALE Monte
                     Carlo FWE null runs it through ``BatchedSummary``)
- ``host``         : the host labelling alone on a dense numpy volume (no JAX)

Run: ``python benchmarks/bench_label.py [--batch 8] [--repeats 5]``. Times are medians in
ms per volume; compilation is reported separately. The winner on CPU sets
``nimare_jax.ops.label.AUTO_BACKEND_CPU``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from nimare_jax.ops.label import _host_max_stats, default_capacity, max_cluster_stats

SHAPE = (91, 109, 91)


def make_volumes(n, fraction, seed=0):
    rng = np.random.default_rng(seed)
    act, wts = [], []
    for _ in range(n):
        noise = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 2.5)
        thr = np.quantile(noise, 1 - fraction)
        act.append(noise > thr)
        wts.append(np.where(noise > thr, noise - thr, 0).astype(np.float32))
    return np.stack(act), np.stack(wts)


def timeit(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--connectivity", type=int, default=6)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.001, 0.005, 0.01, 0.03])
    args = parser.parse_args()
    conn, b = args.connectivity, args.batch
    print(f"jax {jax.__version__} on {jax.default_backend()}, {len(jax.devices())} device(s)")
    print(f"volume {SHAPE}, connectivity {conn}, batch {b}, capacity {default_capacity(SHAPE)}")

    one = {
        be: jax.jit(lambda a, w, be=be: max_cluster_stats(a, w, connectivity=conn, backend=be))
        for be in ("jax", "scipy")
    }
    many = {
        be: jax.jit(
            jax.vmap(lambda a, w, be=be: max_cluster_stats(a, w, connectivity=conn, backend=be))
        )
        for be in ("jax", "scipy")
    }
    header = f"{'active %':>9} {'n vox':>7} | " + " ".join(
        f"{c:>14}" for c in ("jax", "jax vmap", "scipy cb", "scipy cb vmap", "host")
    )
    print(header)
    print("-" * len(header))
    compile_times = {}
    for frac in args.fractions:
        act, wts = make_volumes(b, frac)
        a1, w1 = jnp.asarray(act[0]), jnp.asarray(wts[0])
        ab, wb = jnp.asarray(act), jnp.asarray(wts)
        row = []
        for be in ("jax", "scipy"):
            t0 = time.perf_counter()
            ref = jax.block_until_ready(one[be](a1, w1))
            compile_times.setdefault(f"{be} single", time.perf_counter() - t0)
            t0 = time.perf_counter()
            jax.block_until_ready(many[be](ab, wb))
            compile_times.setdefault(f"{be} vmap", time.perf_counter() - t0)
            row.append(timeit(lambda be=be, a1=a1, w1=w1: one[be](a1, w1), args.repeats))
            row.append(timeit(lambda be=be, ab=ab, wb=wb: many[be](ab, wb), args.repeats) / b)
            host = _host_max_stats(act[0], wts[0], conn)
            assert int(ref.max_size) == host[0], (be, ref, host)
        row.append(
            timeit(lambda act=act, wts=wts: _host_max_stats(act[0], wts[0], conn), args.repeats)
        )
        print(
            f"{100 * frac:>9.2f} {int(act[0].sum()):>7} | "
            + " ".join(f"{1e3 * t:>11.2f} ms" for t in row)
        )
    print(
        "compile (first call, s): " + ", ".join(f"{k} {v:.2f}" for k, v in compile_times.items())
    )


if __name__ == "__main__":
    main()

"""Where a Monte Carlo FWE permutation's time goes: CPU per thread and device overlap.

Runs one FWE null on laird through ``run_permutations`` on ``--devices`` CPU devices (the
estimator's own summary and operands, p < 0.001 cluster-forming threshold) and prints wall
and process CPU ms per permutation, the CPU ms per permutation of each busy thread
(``tf_XLAEigen`` are XLA's compute threads, ``python`` the host stage and the dispatch
loop), and how often 0, 1, 2... threads (all, and XLA's alone) were runnable at once
(sampled every millisecond from ``/proc``): with two devices running in parallel, two XLA
threads are runnable most of the time. Thread counts do not depend on the machine's load,
unlike wall time. Linux only.

Nulls (``--estimator``): ``ALE`` (relocation of the 17 experiments' foci); ``MKDAChi2``
(the 8 vs 9 split of ``tests/data/reference/laird_split.json``, ``--chi2_null``
label-permutation or random-foci); ``ALESubtraction`` (the same split, its cluster pass:
labels permuted, clusters of the difference beyond 0.017, about the split's p < 0.001
threshold). Run it with ``PYTHONPATH`` set to another checkout to profile that code.

Usage::

    python benchmarks/profile_fwe.py --devices 2 [--voxel_only] [--n_iters 256] [--batch 16]
    python benchmarks/profile_fwe.py --estimator MKDAChi2 --devices 2 --batch 8
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAIRD = ROOT / "nimare_jax/resources/data/laird_n20_dataset.json"
SPLIT = ROOT / "tests/data/reference/laird_split.json"


def _threads() -> dict:
    """Return ``{tid: (name, state, cpu ticks)}`` of this process's threads."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = open(f"/proc/self/task/{tid}/stat").read()  # noqa: SIM115
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (name, fields[0], int(fields[11]) + int(fields[12]))
    return out


def _null(args):
    """Return ``(summary, operands, vectorize)`` of the null ``args`` ask for."""
    from scipy import stats as sps

    from nimare_jax.dataset import Dataset
    from nimare_jax.meta.cbma import ALE, ALESubtraction, MKDAChi2
    from nimare_jax.meta.cbma.base import relocation_null
    from nimare_jax.meta.cbma.mkda import label_permutation_null, random_foci_null
    from nimare_jax.meta.cbma.subtraction import subtraction_null
    from nimare_jax.meta.fwe import map_name
    from nimare_jax.ops import nulls

    laird = Dataset(LAIRD)
    if args.estimator == "ALE":
        est = ALE(random_state=0)
        est.fit(laird)
        hist = est.null_distributions_[map_name("histweights", corr="none", method="approximate")]
        bins = est.null_distributions_["histogram_bins"]
        thresh = nulls.histogram_to_threshold(hist, bins, 1e-3)
        summary, operands = relocation_null(
            est._relocation(est.inputs_, est.weights_), thresh, 6, "auto", args.voxel_only
        )
        return summary, operands, "map"
    split = json.loads(SPLIT.read_text())
    groups = laird.slice(split["group1_first8"]), laird.slice(split["group2_remaining9"])
    if args.estimator == "MKDAChi2":
        est = MKDAChi2(random_state=0)
        est.fit(*groups)
        a, b = est.inputs1_, est.inputs2_
        cluster = (float(sps.chi2.isf(1e-3, 1)), 6, "auto", args.voxel_only)
        if args.chi2_null == "label-permutation":
            pooled = est.pooled_ma_matrix()
            null = label_permutation_null(pooled, len(a.ids), a.mask_index, a.shape, *cluster)
            return null.summary, null.operands, "vmap"
        null = random_foci_null(a, b, *cluster)
        return null.summary, null.operands, "map"
    est = ALESubtraction(n_iters=10, vfwe_only=True, random_state=0, progress=False)
    est.fit(*groups)
    a = est.inputs1_
    outputs = ("voxel",) if args.voxel_only else ("mass", "size")
    null = subtraction_null(
        est.terms_, est.scale_, len(a.ids), mask_index=a.mask_index, shape=a.shape,
        thresh=0.017, outputs=outputs,
    )  # fmt: skip
    return null.summary, null.operands, "vmap"


def main(argv=None) -> None:
    """Profile one configuration and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--voxel_only", action="store_true")
    parser.add_argument("--n_iters", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--estimator", choices=["ALE", "MKDAChi2", "ALESubtraction"], default="ALE"
    )
    parser.add_argument(
        "--chi2_null", choices=["label-permutation", "random-foci"], default="label-permutation"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    from nimare_jax.ops.permute import configure_cpu_devices, run_permutations

    configure_cpu_devices(args.devices)
    import jax

    summary, operands, vectorize = _null(args)

    def run(n):
        return run_permutations(
            summary, jax.random.key(1), n, batch_size=args.batch, n_devices=args.devices,
            progress=False, vectorize=vectorize, operands=operands,
        )  # fmt: skip

    run(args.batch * args.devices * 2)  # compile
    stop = threading.Event()
    runnable = collections.Counter()
    xla = collections.Counter()  # XLA compute threads alone: do the devices overlap?

    def sample():
        me = threading.get_native_id()
        while not stop.is_set():
            states = _threads()
            runnable[sum(s == "R" for t, (_, s, _) in states.items() if t != me)] += 1
            xla[sum(s == "R" and n.startswith("tf_XLA") for n, s, _ in states.values())] += 1
            time.sleep(0.001)

    before = _threads()
    sampler = threading.Thread(target=sample)
    sampler.start()
    wall = time.perf_counter()
    run(args.n_iters)
    wall = time.perf_counter() - wall
    after = _threads()  # the sampler (reading /proc costs CPU too) is left out
    stop.set()
    sampler.join()
    n = args.n_iters
    tick_ms = 1e3 / os.sysconf("SC_CLK_TCK")
    used = {
        tid: (name, (ticks - before.get(tid, (name, "", 0))[2]) * tick_ms / n)
        for tid, (name, _, ticks) in after.items()
        if tid != sampler.native_id
    }
    what = f"{args.estimator}{' ' + args.chi2_null if args.estimator == 'MKDAChi2' else ''}, "
    what += "voxel only" if args.voxel_only else "voxel + cluster"
    print(
        f"{args.devices} device(s), {what}: wall {wall / n * 1e3:.2f} ms/perm, CPU "
        f"{sum(ms for _, ms in used.values()):.2f} ms/perm, load {os.getloadavg()[0]:.1f}"
    )
    for name, ms in sorted(used.values(), key=lambda v: -v[1]):
        if ms > 0.01:
            print(f"  thread {name:16s} {ms:6.2f} CPU ms/perm")
    for what, counts in (("threads", runnable), ("XLA compute threads", xla)):
        total = sum(counts.values())
        share = ", ".join(f"{k}: {v / total:.0%}" for k, v in sorted(counts.items()))
        print(f"  {what} runnable at once (share of samples): {share}")


if __name__ == "__main__":
    main()

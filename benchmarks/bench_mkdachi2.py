"""MKDAChi2 FWE (label permutation) speed: nimare_jax vs NiMARE on the laird 8-vs-9 split.

Every configuration runs in a fresh subprocess (so the CPU device count can be set and peak
RSS is that run's own). nimare_jax's per-permutation time is the slope between a short and a
long run, so compilation is reported separately; NiMARE's is its total correction time over
``--nimare_iters`` permutations. NiMARE is looked for in ``$NIMARE_PYTHON`` (a Python
executable with ``nimare`` installed), else in the current interpreter.

Usage::

    python benchmarks/bench_mkdachi2.py [--n_iters 400] [--nimare_iters 10] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAIRD = HERE.parent / "nimare_jax" / "resources" / "data" / "laird_n20_dataset.json"
SPLIT = HERE.parent / "tests" / "data" / "reference" / "laird_split.json"

JAX_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, warnings
    warnings.filterwarnings("ignore")
    from nimare_jax.ops.permute import configure_cpu_devices
    cfg = json.loads(sys.argv[1])
    configure_cpu_devices(cfg["devices"])
    from nimare_jax.dataset import Dataset
    from nimare_jax.correct import FWECorrector
    from nimare_jax.meta.cbma import MKDAChi2
    dset = Dataset(cfg["dataset"])
    split = json.load(open(cfg["split"]))
    g1, g2 = dset.slice(split["group1_first8"]), dset.slice(split["group2_remaining9"])
    t = time.perf_counter(); res = MKDAChi2(random_state=0).fit(g1, g2)
    fit = time.perf_counter() - t
    def run(n):
        corr = FWECorrector(method="montecarlo", n_iters=n, n_cores=cfg["devices"],
                            progress=False, batch_size=cfg["batch"])
        t = time.perf_counter(); corr.transform(res); return time.perf_counter() - t
    small = cfg["batch"] * cfg["devices"] * 2
    t_small = run(small)
    t_big = run(cfg["n_iters"])
    per = (t_big - t_small) / (cfg["n_iters"] - small)
    print(json.dumps({"fit_s": fit, "per_perm_ms": per * 1e3,
                      "compile_s": t_small - small * per,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)

NIMARE_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, warnings, logging
    warnings.filterwarnings("ignore"); logging.disable(logging.WARNING)
    cfg = json.loads(sys.argv[1])
    from nimare.dataset import Dataset
    from nimare.correct import FWECorrector
    from nimare.meta.cbma import MKDAChi2
    dset = Dataset(cfg["dataset"])
    split = json.load(open(cfg["split"]))
    g1, g2 = dset.slice(split["group1_first8"]), dset.slice(split["group2_remaining9"])
    t = time.perf_counter(); res = MKDAChi2(random_state=0).fit(g1, g2)
    fit = time.perf_counter() - t
    corr = FWECorrector(method="montecarlo", n_iters=cfg["n_iters"], n_cores=cfg["devices"])
    t = time.perf_counter(); corr.transform(res); total = time.perf_counter() - t
    print(json.dumps({"fit_s": fit, "per_perm_ms": total / cfg["n_iters"] * 1e3,
                      "compile_s": 0.0,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def child(python: str, code: str, cfg: dict) -> dict | None:
    """Run one configuration; return its JSON line, or None if it failed."""
    proc = subprocess.run(
        [python, "-c", code, json.dumps(cfg)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        print(
            f"  ! {cfg['program']} failed: {proc.stderr.strip().splitlines()[-1:]}",
            file=sys.stderr,
        )
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_iters", type=int, default=400)
    parser.add_argument("--nimare_iters", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    nimare_python = os.environ.get("NIMARE_PYTHON", sys.executable)
    base = {"dataset": str(LAIRD), "split": str(SPLIT)}
    rows = []
    for devices in args.devices:
        ours = child(
            sys.executable,
            JAX_CHILD,
            {
                **base,
                "program": "nimare_jax",
                "devices": devices,
                "n_iters": args.n_iters,
                "batch": args.batch,
            },
        )
        theirs = child(
            nimare_python,
            NIMARE_CHILD,
            {**base, "program": "NiMARE", "devices": devices, "n_iters": args.nimare_iters},
        )
        ratio = theirs["per_perm_ms"] / ours["per_perm_ms"] if ours and theirs else float("nan")
        rows.append((devices, ours, theirs, ratio))
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    head = (
        "workload",
        "estimator",
        "cores",
        "jax ms/perm",
        "NiMARE ms/perm",
        "speed-up",
        "jax compile s",
        "jax fit s",
        "NiMARE fit s",
        "jax RSS MB",
        "NiMARE RSS MB",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))

    def g(d, k, fmt):
        return format(d[k], fmt) if d else "n/a"

    for devices, ours, theirs, ratio in rows:
        print(
            f"| laird 8 vs 9 | MKDAChi2 | {devices} | {g(ours, 'per_perm_ms', '.1f')} | "
            f"{g(theirs, 'per_perm_ms', '.1f')} | {ratio:.1f}x | {g(ours, 'compile_s', '.1f')} | "
            f"{g(ours, 'fit_s', '.2f')} | {g(theirs, 'fit_s', '.2f')} | "
            f"{g(ours, 'rss_mb', '.0f')} | {g(theirs, 'rss_mb', '.0f')} |"
        )


if __name__ == "__main__":
    main()

"""Monte Carlo FWE speed and memory: nimare_jax vs NiMARE on the same inputs.

Every configuration runs in a fresh subprocess (so the CPU device count can be set and peak
RSS is that run's own). nimare_jax's per-permutation time is the slope between a short and a
long run (best of two runs of each), so compilation is reported separately; NiMARE's is its
total correction time over ``n_iters`` (its per-call overhead is small). NiMARE is looked
for in ``$NIMARE_PYTHON`` (a Python executable with ``nimare`` installed), else in the
current interpreter.

Usage::

    python benchmarks/bench_cbma.py [--workloads laird sim1000 sim3000] [--n_iters 200]
    python benchmarks/bench_cbma.py --workloads sim1000 sim3000 --fit_only
    python benchmarks/bench_cbma.py --workloads laird --repeat 4
    python benchmarks/bench_cbma.py --workloads sim14000 --foci 36 --fit_only --skip_nimare

``simN`` is N simulated experiments of ``--foci`` foci (10 by default; Neurosynth's size is
14,000 experiments of ~36 foci, where NiMARE's fit would hold 14,000 x 100,002 float64
histograms, 11 GB, hence ``--skip_nimare``). ``--fit_only`` times the fit alone (no FWE
correction), so the peak RSS is the fit's: for ALE, the approximate null's histogram fold.
``--repeat N`` times N further fits in the same process (compiled, caches warm), wall and
process CPU time, for both programs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAIRD = HERE.parent / "nimare_jax" / "resources" / "data" / "laird_n20_dataset.json"

JAX_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time, warnings
    warnings.filterwarnings("ignore")
    from nimare_jax.ops.permute import configure_cpu_devices
    cfg = json.loads(sys.argv[1])
    configure_cpu_devices(cfg["devices"])
    from nimare_jax.dataset import Dataset
    from nimare_jax.correct import FWECorrector
    import nimare_jax.meta.cbma as cbma
    est = getattr(cbma, cfg["estimator"])
    dset = Dataset(cfg["dataset"])
    t = time.perf_counter(); res = est(random_state=0).fit(dset); fit = time.perf_counter() - t
    repeat = []  # (wall, process CPU) s of each further fit in this process
    for _ in range(cfg["repeat"]):
        t, c = time.perf_counter(), time.process_time(); est(random_state=0).fit(dset)
        repeat.append((time.perf_counter() - t, time.process_time() - c))
    if cfg["fit_only"]:
        print(json.dumps({"fit_s": fit, "per_perm_ms": float("nan"), "compile_s": float("nan"),
                          "cpu_ms": float("nan"),
                          "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          "repeat": repeat}))
        sys.exit()
    def run(n):
        corr = FWECorrector(method="montecarlo", n_iters=n, n_cores=cfg["devices"],
                            progress=False, batch_size=cfg["batch"])
        t = time.perf_counter(); c = time.process_time(); corr.transform(res)
        return time.perf_counter() - t, time.process_time() - c
    small = cfg["batch"] * cfg["devices"] * 2
    first = run(small)[0]  # compiles
    # best of two for each length: a slope from single runs swings with the machine's load
    t_small, c_small = min(run(small), run(small))
    t_big, c_big = min(run(cfg["n_iters"]), run(cfg["n_iters"]))
    n = cfg["n_iters"] - small
    print(json.dumps({"fit_s": fit, "per_perm_ms": (t_big - t_small) / n * 1e3,
                      "cpu_ms": (c_big - c_small) / n * 1e3,
                      "compile_s": first - t_small,
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
    import nimare.meta.cbma as cbma
    est = getattr(cbma, cfg["estimator"])
    dset = Dataset(cfg["dataset"])
    t = time.perf_counter(); res = est().fit(dset); fit = time.perf_counter() - t
    repeat = []
    for _ in range(cfg["repeat"]):
        t, c = time.perf_counter(), time.process_time(); est().fit(dset)
        repeat.append((time.perf_counter() - t, time.process_time() - c))
    if cfg["fit_only"]:
        print(json.dumps({"fit_s": fit, "per_perm_ms": float("nan"), "compile_s": float("nan"),
                          "cpu_ms": float("nan"),
                          "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          "repeat": repeat}))
        sys.exit()
    corr = FWECorrector(method="montecarlo", n_iters=cfg["n_iters"], n_cores=cfg["devices"])
    t = time.perf_counter(); c = time.process_time(); corr.transform(res)
    total, cpu = time.perf_counter() - t, time.process_time() - c
    # joblib's worker processes (n_cores > 1) are not this process: their CPU is not counted
    print(json.dumps({"fit_s": fit, "per_perm_ms": total / cfg["n_iters"] * 1e3,
                      "cpu_ms": cpu / cfg["n_iters"] * 1e3 if cfg["devices"] == 1
                                else float("nan"),
                      "compile_s": 0.0,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def simulated(n_studies: int, foci: int, folder: Path) -> Path:
    """Write a simulated dataset (uniform noise foci, sample size 20) as NiMARE JSON."""
    from nimare_jax.generate import create_coordinate_dataset
    from nimare_jax.io import convert_dataset_to_json

    _, dset = create_coordinate_dataset(
        foci=foci,
        foci_percentage="0%",
        n_noise_foci=foci,
        n_studies=n_studies,
        sample_size=20,
        seed=0,
    )
    path = folder / f"sim{n_studies}x{foci}.json"
    convert_dataset_to_json(dset, path)
    return path


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
    """Run the benchmark table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["laird", "sim1000"])
    parser.add_argument("--estimators", nargs="+", default=["ALE"])
    parser.add_argument("--n_iters", type=int, default=200)
    parser.add_argument("--nimare_iters", type=int, default=50)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--foci", type=int, default=10, help="foci per simulated experiment")
    parser.add_argument("--skip_nimare", action="store_true", help="run nimare_jax only")
    parser.add_argument(
        "--fit_only", action="store_true", help="time the fit alone (peak RSS of the fit)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=0,
        help="time this many further fits in the same process (implies --fit_only)",
    )
    args = parser.parse_args(argv)
    args.fit_only = args.fit_only or args.repeat > 0
    nimare_python = os.environ.get("NIMARE_PYTHON", sys.executable)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for workload in args.workloads:
            if workload == "laird":
                path = LAIRD
            elif workload.startswith("sim") and workload[3:].isdigit():
                path = simulated(int(workload[3:]), args.foci, Path(tmp))
            else:
                parser.error(f"unknown workload {workload!r} (laird or simN)")
            for estimator in args.estimators:
                results = {}
                for devices in (1,) if args.fit_only else (1, 2):
                    base = {
                        "dataset": str(path),
                        "estimator": estimator,
                        "devices": devices,
                        "fit_only": args.fit_only,
                        "repeat": args.repeat,
                    }
                    results[("nimare_jax", devices)] = child(
                        sys.executable,
                        JAX_CHILD,
                        {
                            **base,
                            "program": "nimare_jax",
                            "n_iters": args.n_iters,
                            "batch": args.batch,
                        },
                    )
                    results[("NiMARE", devices)] = (
                        None
                        if args.skip_nimare
                        else child(
                            nimare_python,
                            NIMARE_CHILD,
                            {**base, "program": "NiMARE", "n_iters": args.nimare_iters},
                        )
                    )
                for devices in (1,) if args.fit_only else (1, 2):
                    ours, theirs = results[("nimare_jax", devices)], results[("NiMARE", devices)]
                    ratio = (
                        theirs["per_perm_ms"] / ours["per_perm_ms"]
                        if ours and theirs
                        else float("nan")
                    )
                    rows.append((workload, estimator, devices, ours, theirs, ratio))
    print_table(rows)
    if args.repeat:
        print_repeats(rows)


def print_repeats(rows) -> None:
    """Print the median wall and process CPU time of the further fits (``--repeat``).

    Parameters
    ----------
    rows : list of tuple
        As :func:`print_table`; the JSON dicts hold ``repeat``, a list of (wall, CPU) s.
    """

    def median(d, k):
        return (
            float("nan")
            if not d or not d["repeat"]
            else statistics.median(r[k] for r in d["repeat"])
        )

    print("\nrepeated fits in one process (median of fits 2..N; CPU = process time, all threads)")
    head = ("workload", "estimator", "fits", "jax wall s", "jax CPU s", "NiMARE wall s")
    head += ("NiMARE CPU s", "speed-up wall", "speed-up CPU")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for workload, estimator, _, ours, theirs, _ in rows:
        w, c, nw, nc = median(ours, 0), median(ours, 1), median(theirs, 0), median(theirs, 1)
        n = len(ours["repeat"]) if ours else 0
        print(
            f"| {workload} | {estimator} | {n} | {w:.3f} | {c:.3f} | {nw:.3f} | {nc:.3f} | "
            f"{nw / w:.1f}x | {nc / c:.1f}x |"
        )


def print_table(rows) -> None:
    """Print the machine line and one Markdown row per (workload, estimator, cores) result.

    Parameters
    ----------
    rows : list of tuple
        ``(workload, estimator, cores, ours, theirs, ratio)`` with ``ours``/``theirs`` the
        child processes' JSON dicts (or None when a run failed).
    """
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
        "jax CPU ms/perm",
        "NiMARE CPU ms/perm",
        "jax compile s",
        "jax fit s",
        "NiMARE fit s",
        "jax RSS MB",
        "NiMARE RSS MB",
    )
    print(f"load average while the table ran: {os.getloadavg()[0]:.1f}")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))

    def g(d, k, fmt):
        if not d:
            return "n/a"
        return "-" if d[k] != d[k] else format(d[k], fmt)  # NaN: not measured (--fit_only)

    for workload, estimator, devices, ours, theirs, ratio in rows:
        speed_up = "-" if ratio != ratio else f"{ratio:.1f}x"
        print(
            f"| {workload} | {estimator} | {devices} | {g(ours, 'per_perm_ms', '.1f')} | "
            f"{g(theirs, 'per_perm_ms', '.1f')} | {speed_up} | {g(ours, 'cpu_ms', '.1f')} | "
            f"{g(theirs, 'cpu_ms', '.1f')} | {g(ours, 'compile_s', '.1f')} | "
            f"{g(ours, 'fit_s', '.2f')} | {g(theirs, 'fit_s', '.2f')} | "
            f"{g(ours, 'rss_mb', '.0f')} | {g(theirs, 'rss_mb', '.0f')} |"
        )


if __name__ == "__main__":
    main()

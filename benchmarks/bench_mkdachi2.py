"""MKDAChi2 FWE (label permutation) speed: nimare_jax vs NiMARE on the laird 8-vs-9 split.

Every configuration runs in a fresh subprocess (so the CPU device count can be set and peak
RSS is that run's own). nimare_jax's per-permutation time is the slope between a short and a
long run, so compilation is reported separately; NiMARE's is its total correction time over
``--nimare_iters`` permutations. NiMARE is looked for in ``$NIMARE_PYTHON`` (a Python
executable with ``nimare`` installed), else in the current interpreter.

The children (``python -c``) import ``nimare_jax`` from the current directory first, then
``PYTHONPATH``: run the script from another checkout's folder (with ``--skip_nimare``) to
time that code.

Usage::

    python benchmarks/bench_mkdachi2.py [--n_iters 400] [--nimare_iters 10] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cbma  # noqa: E402
from bench_cbma import HERE, LAIRD, child, print_table  # noqa: E402

SPLIT = HERE.parent / "tests" / "data" / "reference" / "laird_split.json"

_SPLIT_FIT = (
    'split = json.load(open(cfg["split"]))\n'
    'g1, g2 = dset.slice(split["group1_first8"]), dset.slice(split["group2_remaining9"])\n'
    "t = time.perf_counter(); res = est(random_state=0).fit(g1, g2)\n"
    "fit = time.perf_counter() - t\n"
)


def _two_group_child(code: str) -> str:
    """Return a :mod:`bench_cbma` child script that fits the laird 8-vs-9 split.

    Parameters
    ----------
    code : str
        ``bench_cbma.JAX_CHILD`` or ``bench_cbma.NIMARE_CHILD``, which fit one dataset.

    Returns
    -------
    str
        The same script with its first fit line replaced by a two-group fit (and any
        further fit, e.g. ``--repeat``'s, of the two groups too).
    """
    lines = code.splitlines(keepends=True)
    fits = [i for i, line in enumerate(lines) if ".fit(dset)" in line]
    lines[fits[0]] = _SPLIT_FIT
    for i in fits[1:]:
        lines[i] = lines[i].replace(".fit(dset)", ".fit(g1, g2)")
    return "".join(lines)


JAX_CHILD = _two_group_child(bench_cbma.JAX_CHILD)
NIMARE_CHILD = _two_group_child(bench_cbma.NIMARE_CHILD)


def main(argv=None) -> None:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_iters", type=int, default=400)
    parser.add_argument("--nimare_iters", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip_nimare", action="store_true", help="run nimare_jax only")
    args = parser.parse_args(argv)
    nimare_python = os.environ.get("NIMARE_PYTHON", sys.executable)
    base = {
        "dataset": str(LAIRD),
        "split": str(SPLIT),
        "estimator": "MKDAChi2",
        "repeat": 0,
        "fit_only": False,
    }
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
        theirs = None
        if not args.skip_nimare:
            theirs = child(
                nimare_python,
                NIMARE_CHILD,
                {**base, "program": "NiMARE", "devices": devices, "n_iters": args.nimare_iters},
            )
        ratio = theirs["per_perm_ms"] / ours["per_perm_ms"] if ours and theirs else float("nan")
        rows.append(("laird 8 vs 9", "MKDAChi2", devices, ours, theirs, ratio))
    print_table(rows)


if __name__ == "__main__":
    main()

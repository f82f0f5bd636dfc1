"""Per-permutation time of ALESubtraction and SCALE, nimare_jax vs NiMARE (laird 8 vs 9).

Run: ``python benchmarks/bench_subtraction.py``. NiMARE runs in a subprocess with the Python
named by ``NIMARE_PYTHON`` (skipped if unset). Each figure is the marginal cost of an
iteration: (time(n_hi) - time(n_lo)) / (n_hi - n_lo), so start-up, compilation and the
observed maps cancel out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAIRD = ROOT / "nimare_jax" / "resources" / "data" / "laird_n20_dataset.json"
SPLIT = ROOT / "tests" / "data" / "reference" / "laird_split.json"

_NIMARE = r"""
import json, sys, time, warnings, logging
warnings.filterwarnings("ignore"); logging.disable(logging.WARNING)
from nimare.dataset import Dataset
from nimare.meta.cbma.ale import ALESubtraction, SCALE
d = Dataset(sys.argv[1]); s = json.load(open(sys.argv[2]))
g1, g2 = d.slice(s["group1_first8"]), d.slice(s["group2_remaining9"])
xyz = d.coordinates[["x", "y", "z"]].values
def t(make, fit, n):
    t0 = time.perf_counter(); fit(make(n)); return time.perf_counter() - t0
out = {}
lo, hi = 20, 220
sub = lambda n: ALESubtraction(n_iters=n, random_state=0)
out["ALESubtraction"] = [t(sub, lambda e: e.fit(g1, g2), n) for n in (lo, hi)] + [lo, hi]
lo, hi = 5, 45
sc = lambda n: SCALE(xyz, n_iters=n, random_state=0)
out["SCALE"] = [t(sc, lambda e: e.fit(g1), n) for n in (lo, hi)] + [lo, hi]
print(json.dumps(out))
"""


def _ours():
    from nimare_jax.dataset import Dataset
    from nimare_jax.meta.cbma import SCALE, ALESubtraction

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = Dataset(str(LAIRD))
    split = json.loads(SPLIT.read_text())
    g1, g2 = d.slice(split["group1_first8"]), d.slice(split["group2_remaining9"])
    xyz = d.coordinates[["x", "y", "z"]].to_numpy()

    def timed(make, fit, n):
        t0 = time.perf_counter()
        fit(make(n))
        return time.perf_counter() - t0

    out = {}
    # warm-up: compile what every fit shares (kernels, ALE), so both timed runs pay the same
    ALESubtraction(n_iters=4, progress=False).fit(g1, g2)
    SCALE(xyz, n_iters=4, progress=False).fit(g1)
    lo, hi = 100, 1100
    out["ALESubtraction"] = [
        timed(
            lambda n: ALESubtraction(n_iters=n, random_state=0, progress=False),
            lambda e: e.fit(g1, g2),
            n,
        )
        for n in (lo, hi)
    ] + [lo, hi]
    lo, hi = 16, 216
    out["SCALE"] = [
        timed(
            lambda n: SCALE(xyz, n_iters=n, random_state=0, progress=False), lambda e: e.fit(g1), n
        )
        for n in (lo, hi)
    ] + [lo, hi]
    return out


def _per_iter(t_lo, t_hi, lo, hi):
    return (t_hi - t_lo) / (hi - lo) * 1e3


def main() -> None:
    """Print a table of milliseconds per iteration."""
    ours = _ours()
    theirs = {}
    python = os.environ.get("NIMARE_PYTHON")
    if python:
        proc = subprocess.run(
            [python, "-c", _NIMARE, str(LAIRD), str(SPLIT)], capture_output=True, text=True
        )
        if proc.returncode == 0:
            theirs = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            print(proc.stderr[-2000:], file=sys.stderr)
    print(f"{'estimator':16s} {'nimare_jax ms/it':>17s} {'NiMARE ms/it':>13s} {'speed-up':>9s}")
    for name in ("ALESubtraction", "SCALE"):
        mine = _per_iter(*ours[name])
        other = _per_iter(*theirs[name]) if name in theirs else float("nan")
        print(f"{name:16s} {mine:17.2f} {other:13.2f} {other / mine:8.1f}x")


if __name__ == "__main__":
    main()

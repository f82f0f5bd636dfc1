"""Seconds per GC-LDA Gibbs iteration, nimare_jax vs NiMARE 0.22.1 (numba sampler).

Run: ``NIMARE_PYTHON=/path/to/python python benchmarks/bench_gclda.py [--synthetic-scale F]``.
NiMARE runs in a subprocess with the Python named by ``NIMARE_PYTHON`` (skipped if unset).

Corpora: laird (the 17 bundled abstracts counted as in tests/data/gclda, 3721 word tokens,
1117 foci, 2520 terms) and, with ``--synthetic-scale F > 0``, a synthetic corpus with
``F`` times Neurosynth's size (14,371 studies, ~507,000 foci, 3,228 terms, ~50 word tokens
per study). A model is fitted to ``warm`` iterations (compilation, initialisation), then
``fit`` is timed for ``n`` more iterations; the time of one ``get_probability_distributions``
call (which ``fit`` ends with; also reported) is subtracted, and the rest divided by ``n``.
Log-likelihood every 10 iterations (the default), as in both libraries' ``fit``. Both wall
time and the process' CPU time (``time.process_time``, all threads) are reported: on a
shared machine the CPU time is the steadier measure of the work done.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "gclda" / "laird_corpus.npz"

_NIMARE = r"""
import json, logging, sys, time, warnings
warnings.filterwarnings("ignore"); logging.disable(logging.WARNING)
import numpy as np, pandas as pd
from nimare.annotate.gclda import GCLDAModel
cases = json.loads(sys.argv[1])
out = {}
for name, case in cases.items():
    f = np.load(case["path"])
    counts = pd.DataFrame(f["counts"], index=f["ids"], columns=f["vocabulary"])
    coords = pd.DataFrame(f["coords"], columns=["x", "y", "z"])
    coords.insert(0, "id", f["coord_ids"])
    m = GCLDAModel(counts, coords, n_topics=case["n_topics"], seed_init=1)
    m.fit(n_iters=case["warm"])
    t0, c0 = time.perf_counter(), time.process_time(); m.fit(n_iters=case["warm"] + case["n"])
    t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time(); m.get_probability_distributions()
    t_d, c_d = time.perf_counter() - t0, time.process_time() - c0
    out[name] = [(t_fit - t_d) / case["n"], t_d, (c_fit - c_d) / case["n"]]
print(json.dumps(out))
"""


def load_corpus(path):
    """Counts and foci DataFrames from a corpus .npz."""
    with np.load(path) as f:
        counts = pd.DataFrame(f["counts"], index=f["ids"], columns=f["vocabulary"])
        coords = pd.DataFrame(f["coords"], columns=["x", "y", "z"])
        coords.insert(0, "id", f["coord_ids"])
    return counts, coords


def synthetic_corpus(path, scale, seed=0):
    """Write a Neurosynth-like corpus scaled by ``scale`` (studies and foci; same vocabulary)."""
    rng = np.random.default_rng(seed)
    n_docs, n_words = max(int(14371 * scale), 20), 3228
    ids = np.array([f"s{i}" for i in range(n_docs)])
    popularity = 1.0 / (np.arange(n_words) + 10.0)  # Zipf-like term frequencies
    popularity /= popularity.sum()
    counts = rng.multinomial(50, popularity, size=n_docs).astype(np.int16)
    n_foci = rng.poisson(507000 / 14371, n_docs).clip(1)
    coord_ids = np.repeat(ids, n_foci)
    coords = rng.normal(0, 1, (coord_ids.size, 3)) * [30, 40, 25] + [0, -15, 15]
    np.savez(
        path,
        ids=ids,
        vocabulary=np.array([f"w{i}" for i in range(n_words)]),
        counts=counts,
        coord_ids=coord_ids,
        coords=coords,
    )
    return int(counts.sum()), coord_ids.size, n_docs


def ours(cases):
    """Marginal seconds per iteration of nimare_jax."""
    from nimare_jax.annotate.gclda import GCLDAModel

    out = {}
    for name, case in cases.items():
        counts, coords = load_corpus(case["path"])
        model = GCLDAModel(counts, coords, n_topics=case["n_topics"], seed_init=1)
        model.fit(n_iters=case["warm"])
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(n_iters=case["warm"] + case["n"])
        t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        model.get_probability_distributions()
        t_dists, c_dists = time.perf_counter() - t0, time.process_time() - c0
        out[name] = [(t_fit - t_dists) / case["n"], t_dists, (c_fit - c_dists) / case["n"]]
    return out


def main():
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic-scale", type=float, default=0.0)
    parser.add_argument("--topics", type=int, nargs="+", default=[10, 100])
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    cases, sizes = {}, {"laird": "3721 word tokens, 1117 foci, 17 studies"}
    for n_topics in args.topics:
        cases[f"laird T={n_topics}"] = {
            "path": str(CORPUS),
            "n_topics": n_topics,
            "warm": 10,
            "n": 50,
        }
    if args.synthetic_scale > 0:
        path = str(Path(tmp.name) / "synthetic.npz")
        n_tokens, n_foci, n_docs = synthetic_corpus(path, args.synthetic_scale)
        name = f"synthetic x{args.synthetic_scale:g} T=100"
        sizes["synthetic"] = f"{n_tokens} word tokens, {n_foci} foci, {n_docs} studies"
        cases[name] = {"path": path, "n_topics": 100, "warm": 1, "n": 3}
    theirs = {}
    python = os.environ.get("NIMARE_PYTHON")
    if python:
        proc = subprocess.run(
            [python, "-c", _NIMARE, json.dumps(cases)], capture_output=True, text=True, check=True
        )
        theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    mine = ours(cases)
    for key, value in sizes.items():
        print(f"{key}: {value}")
    print(f"load average {os.getloadavg()[0]:.1f}")
    header = ["case", "jax s/iter", "NiMARE s/iter", "ratio", "jax CPU s/iter"]
    header += ["NiMARE CPU s/it", "CPU ratio", "jax dists s", "NiMARE dists s"]
    print(f"{header[0]:<26}" + "".join(f"{h:>16}" for h in header[1:]))
    for name in cases:
        (it_jax, d_jax, c_jax) = mine[name]
        (it_nim, d_nim, c_nim) = theirs.get(name, (np.nan,) * 3)
        row = [it_jax, it_nim, it_nim / it_jax, c_jax, c_nim, c_nim / c_jax, d_jax, d_nim]
        print(f"{name:<26}" + "".join(f"{v:>16.4f}" for v in row))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Seconds per GC-LDA Gibbs iteration, nimare_jax vs NiMARE 0.22.1 (numba sampler).

Run: ``NIMARE_PYTHON=/path/to/python python benchmarks/bench_gclda.py [--synthetic-scale F]``.
NiMARE runs in a subprocess with the Python named by ``NIMARE_PYTHON`` (skipped if unset).

Corpora: laird (the 17 bundled abstracts counted as in tests/data/gclda, 3721 word tokens,
1117 foci, 2520 terms) and, with ``--synthetic-scale F > 0``, a synthetic corpus with
``F`` times Neurosynth's size (14,371 studies, ~507,000 foci, 3,228 terms, ~50 word tokens
per study). Each figure is the marginal cost of an iteration: a model is fitted to ``w``
iterations (compilation, initialisation), then timed to ``w + lo`` and to ``w + hi``
iterations; (t_hi - t_lo) / (hi - lo) cancels the final distributions and the start-up.
Log-likelihood every 10 iterations (the default), as in both libraries' ``fit``.
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
    w, lo, hi = case["warm"], case["lo"], case["hi"]
    m.fit(n_iters=w)
    t0 = time.perf_counter(); m.fit(n_iters=w + lo); t_lo = time.perf_counter() - t0
    t0 = time.perf_counter(); m.fit(n_iters=w + hi); t_hi = time.perf_counter() - t0
    out[name] = (t_hi - t_lo) / (hi - lo - lo)
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
        warm, lo, hi = case["warm"], case["lo"], case["hi"]
        model.fit(n_iters=warm)
        t0 = time.perf_counter()
        model.fit(n_iters=warm + lo)
        t_lo = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.fit(n_iters=warm + hi)
        t_hi = time.perf_counter() - t0
        out[name] = (t_hi - t_lo) / (hi - lo - lo)
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
            "lo": 10,
            "hi": 60,
        }
    if args.synthetic_scale > 0:
        path = str(Path(tmp.name) / "synthetic.npz")
        n_tokens, n_foci, n_docs = synthetic_corpus(path, args.synthetic_scale)
        name = f"synthetic x{args.synthetic_scale:g} T=100"
        sizes["synthetic"] = f"{n_tokens} word tokens, {n_foci} foci, {n_docs} studies"
        cases[name] = {"path": path, "n_topics": 100, "warm": 1, "lo": 1, "hi": 4}
    # the second fit runs (hi - lo) iterations after the first ran lo: marginal = hi - 2 lo
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
    print(f"{'case':<28}{'nimare_jax s/iter':>20}{'NiMARE s/iter':>16}{'NiMARE/jax':>12}")
    for name in cases:
        t_nimare = theirs.get(name)
        ratio = f"{t_nimare / mine[name]:.2f}" if t_nimare else "-"
        nimare_text = f"{t_nimare:.4f}" if t_nimare else "-"
        print(f"{name:<28}{mine[name]:>20.4f}{nimare_text:>16}{ratio:>12}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: whole-brain CBMR ``~ 1`` (laird, ``incidence_threshold=None``), nimare_jax vs NiMARE.

Each side runs in its own process: one full fit (for nimare_jax this "first fit" includes
compilation; its Poisson estimator fits by Newton's method, at most ``A`` iterations), then fits
capped at ``--iters A B`` L-BFGS iterations (``tol=0``: no early stop); the time per iteration
is ``(t_B - t_A) / (iterations_B - iterations_A)``, which cancels the per-fit setup (basis,
foci matrix, information matrix, maps). For nimare_jax the capped fits time the L-BFGS program
(``ops.cbmr.fit``, compiled before timing) on the estimator's prepared data.
Peak RSS is the process maximum.
NiMARE's CBMR needs PyTorch: its interpreter is ``$NIMARE_PYTHON`` (default
/work/venv-cbmr/bin/python, NiMARE 0.22.1 + torch CPU); NiMARE is skipped if that fails.

    python benchmarks/bench_cbmr.py --spacing 10 --iters 10 30

``--end-to-end`` instead times whole fits with the defaults, as a user runs them: laird
``CBMR("~ 1")`` and the 120 simulated experiments of ``tests/data/cbmr``
``CBMR("~ s(diagnosis)")`` (``--distributions`` poisson, negativebinomial,
clusterednegativebinomial). Each fit runs in a fresh process, so nimare_jax's time includes
tracing its programs and either compiling them (``cold``: compilation cache off) or loading
them from the persistent compilation cache (``warm``); a second fit in the same process is
also timed. Wall and CPU time (``time.process_time``, all threads) are both reported: on a
shared machine the CPU time is the steadier measure.

    python benchmarks/bench_cbmr.py --end-to-end

(``--skip-nimare`` leaves NiMARE's columns empty.)

``--programs`` breaks a cold first fit (compilation cache off, fresh process) into its
compiled programs: for each jitted ``ops.cbmr`` function the fit calls, the time to trace and
lower it, to compile it (``jax.stages``: ``.trace().lower()``, ``.compile()``) and to run it
(summed over calls), CPU / wall seconds.

    python benchmarks/bench_cbmr.py --programs --distributions poisson negativebinomial
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LAIRD = ROOT / "nimare_jax" / "resources" / "data" / "laird_n20_dataset.json"

JAX_CODE = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import jax
from nimare_jax.dataset import Dataset
from nimare_jax.meta.cbmr import CBMR
from nimare_jax.ops import cbmr as ops
cfg = json.loads(sys.argv[1])
dset = Dataset(cfg["laird"])
start = time.perf_counter()
est = CBMR("~ 1", incidence_threshold=None, spline_spacing=cfg["spacing"], n_iter=cfg["iters"][0])
est.fit(dset)
first = time.perf_counter() - start
times, iters = [], []
with jax.enable_x64(True):
    p0 = ops.initial_params(est.data_, "poisson")
    # compile the L-BFGS program first (the estimator's Poisson fit ran Newton's method)
    ops.fit(est.data_, p0, 1, 0.0, distribution="poisson", lr=1.0).params.block_until_ready()
    for n in cfg["iters"]:  # the L-BFGS loop alone (a Poisson estimator fit uses Newton)
        start = time.perf_counter()
        out = ops.fit(est.data_, p0, n, 0.0, distribution="poisson", lr=1.0)
        out.params.block_until_ready()
        times.append(time.perf_counter() - start)
        iters.append(int(out.n_iter))
print(json.dumps({"first": first, "times": times, "iters": iters, "n_vox": int(est.ijk_.shape[0]),
                  "n_bases": est.n_bases_,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

NIMARE_CODE = r"""
import json, logging, resource, sys, time, warnings
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)
import torch
from nimare.dataset import Dataset
from nimare.meta.cbmr import CBMR
torch.set_num_threads(2)
cfg = json.loads(sys.argv[1])
dset = Dataset(cfg["laird"])
def run(n):
    start = time.perf_counter()
    est = CBMR("~ 1", incidence_threshold=None, spline_spacing=cfg["spacing"], n_iter=n, tol=0.0)
    result = est.fit(dset)
    return time.perf_counter() - start, result
first, result = run(cfg["iters"][0])
runs = [run(n) for n in cfg["iters"]]
times = [t for t, _ in runs]
iters = [int(r.estimator.cbmr_model._iterations) for _, r in runs]
model = result.estimator.cbmr_model
print(json.dumps({"first": first, "times": times, "iters": iters,
                  "n_vox": int(model.predictor.n_voxels),
                  "n_bases": int(model.predictor.n_bases),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


SIM120 = ROOT / "tests" / "data" / "cbmr" / "sim120_dataset.json"

END_TO_END = r"""
import json, logging, sys, time, warnings
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)
cfg = json.loads(sys.argv[1])
if cfg["side"] == "nimare":
    import torch
    torch.set_num_threads(2)
    from nimare.dataset import Dataset
    from nimare.meta.cbmr import CBMR
else:
    from nimare_jax.dataset import Dataset
    from nimare_jax.meta.cbmr import CBMR
dset = Dataset(cfg["data"])
out = {}
for n in range(cfg["fits"]):
    wall, cpu = time.perf_counter(), time.process_time()
    CBMR(cfg["formula"], distribution=cfg["distribution"]).fit(dset)
    out[f"wall{n}"], out[f"cpu{n}"] = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps(out))
"""


PROGRAMS = r"""
import inspect, json, sys, time, warnings
warnings.simplefilter("ignore")
import jax
from nimare_jax.dataset import Dataset
from nimare_jax.meta.cbmr import CBMR
from nimare_jax.ops import cbmr as ops
cfg = json.loads(sys.argv[1])
dset = Dataset(cfg["data"])
stats = {}
STATIC = {"distribution", "lr", "batch_size"}
def wrap(name):
    jitted = getattr(ops, name)
    def timed(*args, **kwargs):
        st = stats.setdefault(name, {"calls": 0, "run": [0.0, 0.0]})
        if "compiled" not in st:
            c0, w0 = time.process_time(), time.perf_counter()
            lowered = jitted.trace(*args, **kwargs).lower()
            c1, w1 = time.process_time(), time.perf_counter()
            st["compiled"] = lowered.compile()
            c2, w2 = time.process_time(), time.perf_counter()
            st["lower"], st["compile"] = [c1 - c0, w1 - w0], [c2 - c1, w2 - w1]
        c0, w0 = time.process_time(), time.perf_counter()
        bound = inspect.signature(jitted).bind(*args, **kwargs).arguments
        dynamic = [v for k, v in bound.items() if k not in STATIC]  # statics are compiled in
        out = jax.block_until_ready(st["compiled"](*dynamic))
        st["run"][0] += time.process_time() - c0
        st["run"][1] += time.perf_counter() - w0
        st["calls"] += 1
        return out
    setattr(ops, name, timed)
for name in ("fit", "newton_direction", "overdispersed_direction",
             "overdispersed_direction_dense", "coefficient_maps", "autodiff_information"):
    wrap(name)
wall, cpu = time.perf_counter(), time.process_time()
est = CBMR(cfg["formula"], distribution=cfg["distribution"])
est.fit(dset)
out = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
       "n_iter": est.n_iter_, "solver": est.solver_,
       "programs": {k: {"lower": v["lower"], "compile": v["compile"], "run": v["run"],
                        "calls": v["calls"]} for k, v in stats.items()}}
print(json.dumps(out))
"""


def programs(distributions) -> None:
    """Per-program lower / compile / run times of cold first fits (see the module docstring)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NIMARE_JAX_CACHE_DIR": "off"}
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("| design | program | calls | lower CPU / wall s | compile CPU / wall s "
          "| run CPU / wall s |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, data, formula, dist in _designs(distributions):
        cfg = {"data": data, "formula": formula, "distribution": dist}
        out = child(sys.executable, PROGRAMS, cfg, env)
        if out is None:
            print(f"| {name} | failed | | | | |")
            continue
        for program, st in out["programs"].items():
            print(
                f"| {name} | {program} | {st['calls']} | {st['lower'][0]:.2f} / "
                f"{st['lower'][1]:.2f} | {st['compile'][0]:.2f} / {st['compile'][1]:.2f} | "
                f"{st['run'][0]:.2f} / {st['run'][1]:.2f} |"
            )
        print(
            f"| {name} | whole fit ({out['solver']}, {out['n_iter']} it) | | | | "
            f"{out['cpu']:.2f} / {out['wall']:.2f} |"
        )
    print(f"load average {os.getloadavg()[0]:.1f}")


def _designs(distributions):
    """The end-to-end designs: laird ~ 1 (Poisson) and sim120 ~ s(diagnosis) per model."""
    designs = [("laird ~ 1", str(LAIRD), "~ 1", "poisson")]
    return designs + [
        (f"sim120 ~ s(diagnosis) {d}", str(SIM120), "~ s(diagnosis)", d) for d in distributions
    ]


def end_to_end(distributions, skip_nimare: bool = False) -> None:
    """Time whole default fits in fresh processes (see the module docstring)."""
    nimare_python = os.environ.get("NIMARE_PYTHON", "/work/venv-cbmr/bin/python")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    designs = _designs(distributions)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(
        "| design | NiMARE wall / CPU s | nimare_jax cold wall / CPU s | warm wall / CPU s "
        "| second fit wall / CPU s | ratio cold wall / CPU | ratio warm wall / CPU |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, data, formula, dist in designs:
        cfg = {"data": data, "formula": formula, "distribution": dist}
        theirs = {"wall0": np.nan, "cpu0": np.nan}
        if not skip_nimare:
            theirs = child(nimare_python, END_TO_END, {**cfg, "side": "nimare", "fits": 1})
        cold = child(
            sys.executable,
            END_TO_END,
            {**cfg, "side": "jax", "fits": 1},
            {**env, "NIMARE_JAX_CACHE_DIR": "off"},
        )
        warm = child(sys.executable, END_TO_END, {**cfg, "side": "jax", "fits": 2}, env)
        if None in (theirs, cold, warm):
            print(f"| {name} | failed | | | | | |")
            continue
        print(
            f"| {name} | {theirs['wall0']:.1f} / {theirs['cpu0']:.1f} "
            f"| {cold['wall0']:.1f} / {cold['cpu0']:.1f} | {warm['wall0']:.1f} / "
            f"{warm['cpu0']:.1f} | {warm['wall1']:.1f} / {warm['cpu1']:.1f} "
            f"| {theirs['wall0'] / cold['wall0']:.1f}x / {theirs['cpu0'] / cold['cpu0']:.1f}x "
            f"| {theirs['wall0'] / warm['wall0']:.1f}x / {theirs['cpu0'] / warm['cpu0']:.1f}x |"
        )
    print(f"load average {os.getloadavg()[0]:.1f}")


def child(python: str, code: str, cfg: dict, env: dict | None = None) -> dict | None:
    """Run one side in a fresh process and return its JSON line (None on failure)."""
    proc = subprocess.run(
        [python, "-c", code, json.dumps(cfg)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        print(f"[{python}] failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    """Run both sides and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spacing", type=int, default=10)
    parser.add_argument("--iters", type=int, nargs=2, default=[10, 30])
    parser.add_argument("--skip-nimare", action="store_true")
    parser.add_argument("--end-to-end", action="store_true", help="whole default fits")
    parser.add_argument(
        "--programs", action="store_true", help="compile / run time per program, cold"
    )
    parser.add_argument(
        "--distributions",
        nargs="+",
        default=["poisson"],
        choices=["poisson", "negativebinomial", "clusterednegativebinomial"],
        help="sim120 models for --end-to-end",
    )
    args = parser.parse_args(argv)
    if args.end_to_end:
        end_to_end(args.distributions, args.skip_nimare)
        return
    if args.programs:
        programs(args.distributions)
        return
    cfg = {"laird": str(LAIRD), "spacing": args.spacing, "iters": args.iters}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = [("nimare_jax", child(sys.executable, JAX_CODE, cfg, env))]
    if not args.skip_nimare:
        python = os.environ.get("NIMARE_PYTHON", "/work/venv-cbmr/bin/python")
        rows.append(("NiMARE 0.22.1 + torch", child(python, NIMARE_CODE, cfg)))
    a, b = args.iters
    print(f"\nwhole-brain CBMR ~ 1, laird, spacing {args.spacing}, n_iter {a} -> {b}, tol 0\n")
    print("| implementation | voxels | bases | first fit (s) | fit A / B (s) | s per iteration "
          "| peak RSS (MB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    per_iter = {}
    for name, out in rows:
        if out is None:
            print(f"| {name} | failed | | | | | |")
            continue
        ran = out["iters"][1] - out["iters"][0]
        per_iter[name] = (out["times"][1] - out["times"][0]) / ran
        print(
            f"| {name} | {out['n_vox']} | {out['n_bases']} | {out['first']:.1f} | "
            f"{out['times'][0]:.1f} / {out['times'][1]:.1f} ({out['iters'][0]} / "
            f"{out['iters'][1]} it) | {per_iter[name]:.4f} | "
            f"{out['rss_mb']:.0f} |"
        )
    if len(per_iter) == 2:
        jax_s, nimare_s = per_iter["nimare_jax"], per_iter["NiMARE 0.22.1 + torch"]
        print(f"\nper-iteration ratio NiMARE / nimare_jax: {nimare_s / jax_s:.1f}x")


if __name__ == "__main__":
    main()

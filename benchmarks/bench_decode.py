"""CorrelationDecoder fit time: nimare_jax vs NiMARE 0.22.1, and a Neurosynth-size synthetic run.

Every run is a fresh subprocess, so peak RSS is that run's own.

``laird``: ``CorrelationDecoder(feature_group="Neurosynth_TFIDF")`` with ``MKDAChi2()`` on
NiMARE's 17-experiment laird dataset with Neurosynth TF-IDF labels (``--dataset``, default
the shared copy of NiMARE's ``testdata_laird``), on the 50 labels carried by 3 to 14
experiments, in NiMARE's (sorted) column order. nimare_jax fits all 50 (first fit, with
compilation, and a second fit); NiMARE fits the first ``--nimare-features`` of them (its
time is one meta-analysis per feature, so it is extrapolated linearly to 50 and marked so).
NiMARE is looked for in ``$NIMARE_PYTHON``. ``--estimator MKDADensity`` (or ``KDA``) decodes
their ``z`` map instead.

``synthetic``: ``--studies`` experiments with Poisson(35.3) foci each drawn uniformly in the
``mni152_2mm`` mask (Neurosynth: 14,371 studies, ~507,000 foci) and ``--features`` binary
labels whose prevalences are log-uniform between 0.5 % and 20 % of the experiments
(Neurosynth-like sparsity: most terms rare, a few common). Reported: the one MA pass over
the experiments, the chi-square maps of all features, the whole fit, and peak RSS; the
full-size figures are extrapolated from the measured run (MA pass linear in experiments;
counts linear in experiments x features) unless the full size is run.

Usage::

    NIMARE_PYTHON=/work/venv-nimare/bin/python python benchmarks/bench_decode.py laird
    NIMARE_PYTHON=... python benchmarks/bench_decode.py laird --estimator MKDADensity
    python benchmarks/bench_decode.py synthetic --studies 2000 --features 300
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAIRD = Path("/work/shared/data/datasets/neurosynth_laird_studies.json")
NEUROSYNTH = {"studies": 14371, "features": 3228}

FEATURES = textwrap.dedent(
    """
    import json
    import pandas as pd
    src = json.load(open(cfg["dataset"]))
    rows = {f"{s}-{c}": con["labels"] for s, st in src.items()
            for c, con in st["contrasts"].items()}
    counts = (pd.DataFrame(rows).T.fillna(0) >= 0.001).sum()
    counts = counts[sorted(counts.index)]
    features = [f for f, n in counts.items() if 3 <= n <= 14][:50]
    """
)

JAX_LAIRD = FEATURES + textwrap.dedent(
    """
    import resource, time, warnings
    warnings.filterwarnings("ignore")
    from nimare_jax.dataset import Dataset
    from nimare_jax.decode.continuous import CorrelationDecoder
    dset = Dataset(cfg["dataset"])
    times = []
    for _ in range(2):
        import nimare_jax.meta.cbma as cbma
        dec = CorrelationDecoder(feature_group="Neurosynth_TFIDF", features=features,
                                 meta_estimator=getattr(cbma, cfg["estimator"])(),
                                 target_image=cfg["target"])
        t = time.perf_counter(); dec.fit(dset); times.append(time.perf_counter() - t)
    print(json.dumps({"n": len(dec.features_), "first_s": times[0], "second_s": times[1],
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)

NIMARE_LAIRD = FEATURES + textwrap.dedent(
    """
    import logging, resource, time, warnings
    warnings.filterwarnings("ignore"); logging.disable(logging.WARNING)
    import nimare
    from nimare.dataset import Dataset
    from nimare.decode.continuous import CorrelationDecoder
    import nimare.meta.cbma as cbma
    dset = Dataset(cfg["dataset"])
    features = features[: cfg["n_nimare"]]
    dec = CorrelationDecoder(feature_group="Neurosynth_TFIDF", features=features,
                             meta_estimator=getattr(cbma, cfg["estimator"])(),
                             target_image=cfg["target"])
    t = time.perf_counter(); dec.fit(dset); fit = time.perf_counter() - t
    print(json.dumps({"n": len(dec.features_), "fit_s": fit, "version": nimare.__version__,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)

JAX_SYNTHETIC = textwrap.dedent(
    """
    import json, resource, time, warnings
    warnings.filterwarnings("ignore")
    import numpy as np
    import pandas as pd
    from nimare_jax.dataset import Dataset
    from nimare_jax.decode import continuous
    from nimare_jax.decode.base import label_matrix
    from nimare_jax.spatial import get_template
    from nimare_jax.meta.cbma.kernel import MKDAKernel
    rng = np.random.default_rng(0)
    mask = get_template("mni152_2mm", mask="brain")
    vox = np.argwhere(np.asanyarray(mask.dataobj) > 0)
    n_s, n_f = cfg["studies"], cfg["features"]
    n_foci = np.maximum(rng.poisson(35.3, n_s), 1)
    source = {}
    for s in range(n_s):
        ijk = vox[rng.integers(0, len(vox), n_foci[s])]
        xyz = (mask.affine[:3, :3] @ ijk.T).T + mask.affine[:3, 3]
        source[f"s{s}"] = {"contrasts": {"1": {"coords": {
            "space": "MNI", "x": xyz[:, 0].tolist(), "y": xyz[:, 1].tolist(),
            "z": xyz[:, 2].tolist()}}}}
    t = time.perf_counter(); dset = Dataset(source); t_dataset = time.perf_counter() - t
    prevalence = np.exp(rng.uniform(np.log(0.005), np.log(0.2), n_f))
    labels = (rng.random((n_s, n_f)) < prevalence).astype(np.float32)
    labels[rng.integers(0, n_s, n_f), np.arange(n_f)] = 1.0  # every feature used
    names = [f"syn__f{k}" for k in range(n_f)]
    table = pd.concat([dset.annotations[["id", "study_id", "contrast_id"]],
                       pd.DataFrame(labels, columns=names)], axis=1)
    object.__setattr__(dset, "annotations", table)  # Dataset is frozen; labels too many for JSON
    t = time.perf_counter()
    n_vox = len(vox)
    chunk = continuous._layout(n_s, n_f, n_vox)[2]
    continuous.activation_pairs(MKDAKernel(), dset, chunk)
    t_ma = time.perf_counter() - t
    dec = continuous.CorrelationDecoder(feature_group="syn")
    t = time.perf_counter(); dec.fit(dset); t_fit = time.perf_counter() - t
    print(json.dumps({"foci": int(n_foci.sum()), "dataset_s": t_dataset, "ma_s": t_ma,
                      "fit_s": t_fit, "n": len(dec.features_),
                      "mean_prevalence": float(labels.mean()),
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def _run(python, code, cfg):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [
            python,
            "-c",
            "import json, sys; cfg = json.loads(sys.argv[1])\n" + code,
            json.dumps(cfg),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def laird(args):
    target = {"MKDAChi2": "z_desc-association"}.get(args.estimator, "z")
    cfg = {
        "dataset": str(args.dataset),
        "n_nimare": args.nimare_features,
        "estimator": args.estimator,
        "target": target,
    }
    print(f"CorrelationDecoder({args.estimator}(), target_image={target!r}) on laird\n")
    jx = _run(sys.executable, JAX_LAIRD, cfg)
    print("| implementation | features fitted | fit (s) | per feature (s) | peak RSS (MB) |")
    print("|---|---|---|---|---|")
    print(
        f"| nimare_jax (first fit, incl. compilation) | {jx['n']} | {jx['first_s']:.2f} | "
        f"{jx['first_s'] / jx['n']:.3f} | {jx['rss_mb']:.0f} |"
    )
    print(
        f"| nimare_jax (second fit) | {jx['n']} | {jx['second_s']:.2f} | "
        f"{jx['second_s'] / jx['n']:.3f} | |"
    )
    if args.no_nimare:
        return
    nm = _run(args.nimare_python, NIMARE_LAIRD, cfg)
    per = nm["fit_s"] / nm["n"]
    print(
        f"| NiMARE {nm['version']} | {nm['n']} | {nm['fit_s']:.2f} | {per:.3f} | "
        f"{nm['rss_mb']:.0f} |"
    )
    est = per * jx["n"]
    print(
        f"| NiMARE, extrapolated to {jx['n']} features | ({jx['n']}) | {est:.1f} | {per:.3f} | |"
    )
    print(
        f"\nratio NiMARE (extrapolated) / nimare_jax: {est / jx['first_s']:.0f}x (first fit), "
        f"{est / jx['second_s']:.0f}x (second fit)"
    )


def synthetic(args):
    cfg = {"studies": args.studies, "features": args.features}
    r = _run(sys.executable, JAX_SYNTHETIC, cfg)
    counts_s = r["fit_s"] - r["ma_s"]
    print(
        "| experiments | foci | features | mean prevalence | MA pass (s) | fit (s) | "
        "peak RSS (MB) |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.studies} | {r['foci']} | {r['n']} | {r['mean_prevalence']:.3f} | "
        f"{r['ma_s']:.1f} | {r['fit_s']:.1f} | {r['rss_mb']:.0f} |"
    )
    s_ratio = NEUROSYNTH["studies"] / args.studies
    f_ratio = NEUROSYNTH["features"] / r["n"]
    if s_ratio != 1 or f_ratio != 1:
        est = r["ma_s"] * s_ratio + max(counts_s, 0.0) * s_ratio * f_ratio
        print(
            f"\nextrapolated to {NEUROSYNTH['studies']} experiments x {NEUROSYNTH['features']} "
            f"features: MA pass {r['ma_s'] * s_ratio:.0f} s + counts and maps "
            f"{max(counts_s, 0.0) * s_ratio * f_ratio:.0f} s = {est / 60:.1f} min "
            "(not run; maps alone hold 3228 x 228483 float32 = 2.95 GB)"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="workload", required=True)
    p = sub.add_parser("laird")
    p.add_argument("--dataset", type=Path, default=LAIRD)
    p.add_argument("--nimare-features", type=int, default=5)
    p.add_argument("--estimator", default="MKDAChi2", choices=["MKDAChi2", "MKDADensity", "KDA"])
    p.add_argument("--nimare-python", default=os.environ.get("NIMARE_PYTHON", sys.executable))
    p.add_argument("--no-nimare", action="store_true")
    p = sub.add_parser("synthetic")
    p.add_argument("--studies", type=int, default=2000)
    p.add_argument("--features", type=int, default=300)
    args = parser.parse_args()
    laird(args) if args.workload == "laird" else synthetic(args)


if __name__ == "__main__":
    main()

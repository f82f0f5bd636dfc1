"""Discrete decoders: nimare_jax vs NiMARE on the amygdala-ROI laird case.

The data are the test fixture ``tests/data/decode_discrete`` (NiMARE's ``testdata_laird``:
17 experiments, 1117 foci, 740 ``Neurosynth_TFIDF`` columns of which 728 are retained); the
selection is the 6 experiments with a focus in the right-amygdala ROI. Each program runs in a
fresh subprocess. For nimare_jax the first ``transform`` (which compiles) is reported apart
from the median of the following calls, once with JAX's persistent compilation cache off
(cold) and once with it on (a second process reuses the compiled programs). NiMARE's
``transform`` is timed once per decoder (its BrainMap transform loops over features and
takes one to several minutes). NiMARE is looked for in ``$NIMARE_PYTHON``
(a Python executable with ``nimare`` installed), else in the current interpreter.

Usage::

    NIMARE_PYTHON=/path/to/python python benchmarks/bench_decode_discrete.py \
        [--decoders brainmap neurosynth roi] [--repeats 5] [--scale]
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
DATA = HERE.parent / "tests" / "data" / "decode_discrete"

# Both children build the same dataset: the coordinates JSON plus the annotation table.
LOAD = textwrap.dedent(
    """
    import json, logging, statistics, sys, time, warnings
    from pathlib import Path
    import numpy as np, pandas as pd
    warnings.filterwarnings("ignore"); logging.disable(logging.WARNING)
    cfg = json.loads(sys.argv[1])
    data = Path(cfg["data"])
    roi = str(data / "amygdala_roi.nii.gz")
    with np.load(data / "laird_annotations.npz") as f:
        columns, ann_ids, values = f["columns"].tolist(), f["ids"].tolist(), f["values"]
    def timed(fn):
        t = time.perf_counter(); out = fn(); return out, time.perf_counter() - t
    """
)

JAX_CHILD = LOAD + textwrap.dedent(
    """
    from nimare_jax.dataset import Dataset
    from nimare_jax.decode import discrete
    source = json.loads((data / "laird_coords.json").read_text())
    for ident, row in zip(ann_ids, values):
        study, contrast = ident.split("-")
        source[study]["contrasts"][contrast]["labels"] = dict(zip(columns, row.tolist()))
    dset = Dataset(source)
    ids = dset.get_studies_by_mask(roi)
    if cfg["decoder"] == "roi":
        dec, fit = timed(lambda: discrete.ROIAssociationDecoder(
            roi, feature_group="Neurosynth_TFIDF").fit(dset))
        call = dec.transform
    else:
        cls = {"brainmap": discrete.BrainMapDecoder, "neurosynth": discrete.NeurosynthDecoder}
        dec, fit = timed(lambda: cls[cfg["decoder"]](feature_group="Neurosynth_TFIDF").fit(dset))
        call = lambda: dec.transform(ids)
    _, first = timed(call)
    steady = statistics.median(timed(call)[1] for _ in range(cfg["repeats"]))
    print(json.dumps({"fit_s": fit, "first_s": first, "transform_s": steady,
                      "n_features": len(dec.features_), "n_selected": len(ids)}))
    """
)

NIMARE_CHILD = LOAD + textwrap.dedent(
    """
    from nimare.dataset import Dataset
    from nimare.decode import discrete
    dset = Dataset(str(data / "laird_coords.json"))
    table = pd.DataFrame(values, columns=columns)
    table.insert(0, "contrast_id", [i.split("-")[1] for i in ann_ids])
    table.insert(0, "study_id", [i.split("-")[0] for i in ann_ids])
    table.insert(0, "id", ann_ids)
    dset.annotations = table
    ids = dset.get_studies_by_mask(roi)
    if cfg["decoder"] == "roi":
        dec = discrete.ROIAssociationDecoder(roi, feature_group="Neurosynth_TFIDF")
        call = dec.transform
    else:
        cls = {"brainmap": discrete.BrainMapDecoder, "neurosynth": discrete.NeurosynthDecoder}
        dec = cls[cfg["decoder"]](feature_group="Neurosynth_TFIDF")
        call = lambda: dec.transform(ids)
    _, fit = timed(lambda: dec.fit(dset))
    _, once = timed(call)
    print(json.dumps({"fit_s": fit, "first_s": once, "transform_s": once,
                      "n_features": len(dec.features_), "n_selected": len(ids)}))
    """
)


# Neurosynth size (nimare_jax only: NiMARE's BrainMap loop would take hours): 14,371
# experiments of 1 + Poisson(35) foci, 3,228 features, each carried by 0.2-20 % of the
# experiments; 5 % of the experiments selected. The function forms are timed, so each call
# also binarizes the annotation table (a fitted decoder does that once, in ``fit``).
SCALE_CHILD = textwrap.dedent(
    """
    import json, resource, statistics, sys, time
    import numpy as np, pandas as pd
    from nimare_jax.decode.discrete import brainmap_decode, neurosynth_decode
    cfg = json.loads(sys.argv[1])
    rng = np.random.default_rng(0)
    n_exp, n_feat = 14371, 3228
    ids = np.array([f"s{i}-1" for i in range(n_exp)])
    coords = pd.DataFrame({"id": np.repeat(ids, rng.poisson(35, n_exp) + 1)})
    rate = rng.uniform(0.002, 0.2, n_feat)
    values = (rng.random((n_exp, n_feat)) < rate) * rng.random((n_exp, n_feat))
    ann = pd.DataFrame(values, columns=[f"Neurosynth_TFIDF__t{j}" for j in range(n_feat)])
    ann.insert(0, "id", ids)
    sel = ids[rng.random(n_exp) < 0.05].tolist()
    out = {"n_foci": len(coords), "n_selected": len(sel)}
    for name, decode in (("brainmap", brainmap_decode), ("neurosynth", neurosynth_decode)):
        t = time.perf_counter(); decode(coords, ann, sel); first = time.perf_counter() - t
        def once():
            t = time.perf_counter(); decode(coords, ann, sel); return time.perf_counter() - t
        steady = statistics.median(once() for _ in range(cfg["repeats"]))
        out[name + "_first_s"], out[name + "_s"] = first, steady
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
    """
)


def child(python: str, code: str, cfg: dict, env: dict | None = None) -> dict | None:
    """Run one configuration; return its JSON line, or None if it failed."""
    proc = subprocess.run(
        [python, "-c", code, json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        print(f"  ! {cfg['decoder']} failed: {proc.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--decoders",
        nargs="+",
        default=["brainmap", "neurosynth", "roi"],
        choices=["brainmap", "neurosynth", "roi"],
    )
    parser.add_argument("--repeats", type=int, default=5, help="nimare_jax steady-state calls")
    parser.add_argument(
        "--scale", action="store_true", help="also time a synthetic Neurosynth-size database"
    )
    args = parser.parse_args(argv)
    nimare_python = os.environ.get("NIMARE_PYTHON", sys.executable)
    rows = []
    for decoder in args.decoders:
        cfg = {"data": str(DATA), "decoder": decoder, "repeats": args.repeats}
        cold = child(sys.executable, JAX_CHILD, cfg, env={"NIMARE_JAX_CACHE_DIR": "off"})
        ours = child(sys.executable, JAX_CHILD, cfg)  # persistent compilation cache warm
        theirs = child(nimare_python, NIMARE_CHILD, cfg)
        rows.append((decoder, cold, ours, theirs))

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"
    )
    head = (
        "decoder",
        "features",
        "jax fit s",
        "NiMARE fit s",
        "jax 1st transform s (cold / cached compile)",
        "jax transform s",
        "NiMARE transform s",
        "speed-up (transform)",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    nan = float("nan")
    for decoder, cold, ours, theirs in rows:
        o = ours or {}
        t = theirs or {}
        c = cold or {}
        ratio = t.get("transform_s", nan) / o.get("transform_s", nan) if o and t else nan
        print(
            f"| {decoder} | {o.get('n_features', t.get('n_features', '?'))} "
            f"| {o.get('fit_s', nan):.2f} | {t.get('fit_s', nan):.2f} "
            f"| {c.get('first_s', nan):.4f} / {o.get('first_s', nan):.4f} "
            f"| {o.get('transform_s', nan):.4f} "
            f"| {t.get('transform_s', nan):.3f} | {ratio:.0f}x |"
        )
    if args.scale:
        scale = child(sys.executable, SCALE_CHILD, {"decoder": "scale", "repeats": args.repeats})
        if scale:
            print(
                f"\nNeurosynth size, nimare_jax only: 14,371 experiments, {scale['n_foci']:,} "
                f"foci, 3,228 features, {scale['n_selected']} selected; "
                f"peak RSS {scale['rss_mb']:.0f} MB"
            )
            print("| function (binarization + counts + statistics) | 1st call s | call s |")
            print("|---|---|---|")
            for name in ("brainmap", "neurosynth"):
                print(
                    f"| {name}_decode | {scale[name + '_first_s']:.2f} "
                    f"| {scale[name + '_s']:.2f} |"
                )


if __name__ == "__main__":
    main()

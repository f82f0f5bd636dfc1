"""Fit the ALE kernel's FWHM to the bundled 17-experiment dataset (docs/kernel_fitting.md).

Run from the repository root::

    python docs/examples/fit_kernel_laird.py

Prints the numbers quoted in docs/kernel_fitting.md and writes the loss-curve figure
``docs/kernel_fitting_loss.svg`` (plain SVG, no plotting library needed; with matplotlib
installed, ``docs/kernel_fitting_loss.png`` too).
"""

import time
import warnings
from pathlib import Path

import numpy as np

from nimare_jax.dataset import Dataset
from nimare_jax.fitting import fit_fwhm, foci_mm, held_out_log_likelihood
from nimare_jax.ops.kernels import fwhm_from_sample_size
from nimare_jax.spatial import get_resource_path

DOCS = Path(__file__).resolve().parents[1]
INITS = (5.0, 10.0, 20.0)
COLOURS = ("#1b9e77", "#d95f02", "#7570b3")


def svg_loss_curves(histories, path, width=640, height=400):
    """Write loss curves (a dict label -> (steps,) array) as a small labelled SVG."""
    left, right, top, bottom = 70, 20, 30, 50
    steps = max(len(h) for h in histories.values())
    lo = min(h.min() for h in histories.values())
    hi = max(h.max() for h in histories.values())
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad

    def xy(step, value):
        x = left + (width - left - right) * step / steps
        y = top + (height - top - bottom) * (hi - value) / (hi - lo)
        return round(x, 1), round(y, 1)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">'
        "fit_fwhm on the 17-experiment dataset: loss by step</text>",
    ]
    x0, y0 = xy(0, lo)
    x1, y1 = xy(steps, hi)
    out.append(
        f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" '
        'fill="none" stroke="black"/>'
    )
    for tick in np.linspace(0, steps, 5):
        x, _ = xy(tick, lo)
        out.append(f'<line x1="{x}" y1="{y0}" x2="{x}" y2="{y0 + 5}" stroke="black"/>')
        out.append(f'<text x="{x}" y="{y0 + 18}" text-anchor="middle">{int(tick)}</text>')
    for value in np.linspace(lo + pad, hi - pad, 5):
        _, y = xy(0, value)
        out.append(f'<line x1="{x0 - 5}" y1="{y}" x2="{x0}" y2="{y}" stroke="black"/>')
        out.append(f'<text x="{x0 - 8}" y="{y + 4}" text-anchor="end">{value:.3f}</text>')
    out.append(f'<text x="{(x0 + x1) / 2}" y="{height - 12}" text-anchor="middle">step</text>')
    out.append(
        f'<text x="16" y="{(y0 + y1) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {(y0 + y1) / 2})">loss (nats per scored pair)</text>'
    )
    for n, (label, h) in enumerate(histories.items()):
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(s, v) for s, v in enumerate(h)))
        colour = COLOURS[n % len(COLOURS)]
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.append(
            f'<text x="{x1 - 10}" y="{y1 + 20 + 16 * n}" text-anchor="end" '
            f'fill="{colour}">{label}</text>'
        )
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")


def main():
    """Fit, compare with Eickhoff et al.'s FWHM, jackknife, and draw the loss curves."""
    with warnings.catch_warnings():  # 3 experiments give no space; they are read as MNI
        warnings.filterwarnings("ignore", message=".*unknown space.*")
        dset = Dataset(get_resource_path() / "data" / "laird_n20_dataset.json")
    print(f"{len(dset.ids)} experiments, {len(dset.coordinates)} foci")

    results = {}
    for init in INITS:
        start = time.perf_counter()
        results[init] = fit_fwhm(dset, init=init, steps=200)
        print(
            f"init {init:4.1f} mm -> FWHM {results[init].fwhm:.2f} mm, "
            f"match probability {results[init].match_probability:.3f}, "
            f"loss {results[init].loss:.5f} ({time.perf_counter() - start:.1f} s)"
        )
    res = results[10.0]

    print("\nloss and FWHM by step (init 10 mm):")
    print("| step | loss | FWHM (mm) | match probability |")
    print("|---:|---:|---:|---:|")
    for step in (0, 5, 10, 20, 40, 80, 120, 160, 199):
        print(
            f"| {step} | {res.loss_history[step]:.5f} | {res.param_history['fwhm'][step]:.2f} "
            f"| {res.param_history['match_probability'][step]:.3f} |"
        )

    eickhoff = float(fwhm_from_sample_size(20))
    foci = foci_mm(dset)

    def loss_at(fwhm):
        var = np.full(len(foci.xyz), (fwhm / np.sqrt(8 * np.log(2))) ** 2)
        ll = held_out_log_likelihood(
            foci.xyz, foci.exp_index, foci.counts, var, res.match_probability, foci.volume
        )
        return -float(ll)

    print(f"\nEickhoff et al. (2009) FWHM for n = 20: {eickhoff:.2f} mm")
    print("| FWHM (mm) | loss (match probability at its fitted value) |")
    print("|---:|---:|")
    for fwhm in (6.0, 8.0, eickhoff, res.fwhm, 10.0, 12.0, 14.0):
        print(f"| {fwhm:.2f} | {loss_at(fwhm):.5f} |")

    # jackknife over experiments: refit without each one in turn
    start = time.perf_counter()
    loo = np.array(
        [
            fit_fwhm(dset.slice([i for i in dset.ids if i != drop]), init=res.fwhm, steps=100).fwhm
            for drop in dset.ids
        ]
    )
    n = len(loo)
    se = np.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum())
    print(
        f"\njackknife over experiments: SE {se:.2f} mm, leave-one-out fits "
        f"{loo.min():.2f}-{loo.max():.2f} mm ({time.perf_counter() - start:.0f} s)"
    )

    histories = {f"init {init:g} mm": results[init].loss_history for init in INITS}
    svg_loss_curves(histories, DOCS / "kernel_fitting_loss.svg")
    print(f"\nwrote {DOCS / 'kernel_fitting_loss.svg'}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG (pip install matplotlib)")
    else:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for label, h in histories.items():
            ax.plot(h, label=label)
        ax.set(xlabel="step", ylabel="loss (nats per scored pair)")
        ax.legend()
        fig.savefig(DOCS / "kernel_fitting_loss.png", dpi=100, bbox_inches="tight")
        print(f"wrote {DOCS / 'kernel_fitting_loss.png'}")


if __name__ == "__main__":
    main()

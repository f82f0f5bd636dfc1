"""
Fitting the ALE kernel width with optax
=======================================

ALE's kernel width usually comes from Eickhoff et al. (2009)'s formula of the sample
size. Because the kernel is a differentiable JAX function, the width can instead be fitted
to the data: ``nimare_jax.fitting.fit_fwhm`` maximises a held-out composite likelihood
(how well each experiment's foci are predicted by the others' kernels) with optax's Adam.
On the bundled dataset (every experiment has n = 20) the fit agrees with the formula;
``docs/kernel_fitting.md`` explains the objective.

The gallery runs one fit. ``python examples/plot_04_kernel_fitting.py --full`` also fits
from 5 and 20 mm and refits without each experiment in turn (a jackknife standard error),
about 2.5 minutes on 2 CPU cores: it prints every number quoted in
``docs/kernel_fitting.md`` and rewrites its figure, ``docs/kernel_fitting_loss.svg``.
"""

import sys
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from nimare_jax.dataset import Dataset
from nimare_jax.fitting import fit_fwhm, foci_mm, held_out_log_likelihood
from nimare_jax.ops.kernels import fwhm_from_sample_size
from nimare_jax.spatial import get_resource_path

FULL = "--full" in sys.argv

with warnings.catch_warnings():  # 3 experiments give no space; they are read as MNI
    warnings.filterwarnings("ignore", message=".*unknown space.*")
    dset = Dataset(get_resource_path() / "data" / "laird_n20_dataset.json")
print(f"{len(dset.ids)} experiments, {len(dset.coordinates)} foci")

# %%
# Fit from 10 mm
# --------------
# 200 Adam steps at learning rate 0.1 (the defaults); the history of the loss and of the
# parameters is kept.
inits = (5.0, 10.0, 20.0) if FULL else (10.0,)
results = {}
for init in inits:
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

# %%
# Compare with Eickhoff et al.'s width
# ------------------------------------
# The loss at fixed widths, with the match probability at its fitted value: flat around
# the optimum.
eickhoff = float(fwhm_from_sample_size(20))
foci = foci_mm(dset)


def loss_at(fwhm):
    """Loss (nats per scored pair) of a fixed FWHM at the fitted match probability."""
    var = np.full(len(foci.xyz), (fwhm / np.sqrt(8 * np.log(2))) ** 2)
    ll = held_out_log_likelihood(
        foci.xyz, foci.exp_index, foci.counts, var, res.match_probability, foci.volume
    )
    return -float(ll)


print(f"Eickhoff et al. (2009) FWHM for n = 20: {eickhoff:.2f} mm")
print("| FWHM (mm) | loss (match probability at its fitted value) |")
print("|---:|---:|")
for fwhm in (6.0, 8.0, eickhoff, res.fwhm, 10.0, 12.0, 14.0):
    print(f"| {fwhm:.2f} | {loss_at(fwhm):.5f} |")

# %%
# Loss curves
# -----------
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
for init, r in results.items():
    ax1.plot(r.loss_history, label=f"init {init:g} mm")
    ax2.plot(r.param_history["fwhm"], label=f"init {init:g} mm")
ax2.axhline(eickhoff, color="grey", linestyle="--", label="Eickhoff et al. (2009)")
ax1.set(xlabel="step", ylabel="loss (nats per scored pair)")
ax2.set(xlabel="step", ylabel="FWHM (mm)")
ax1.legend()
ax2.legend()
if FULL:  # the figure of docs/kernel_fitting.md
    fig.savefig(Path(__file__).resolve().parents[1] / "docs" / "kernel_fitting_loss.svg")
plt.show()

# %%
# Jackknife over experiments (``--full`` only)
# --------------------------------------------
# Refit without each experiment in turn, starting from the fitted width.
if FULL:
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
        f"jackknife over experiments: SE {se:.2f} mm, leave-one-out fits "
        f"{loo.min():.2f}-{loo.max():.2f} mm ({time.perf_counter() - start:.0f} s)"
    )

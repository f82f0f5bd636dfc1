"""
Image-based meta-analysis
=========================

When the studies share their statistical maps, the maps themselves can be combined.
Fisher's and Stouffer's methods combine z maps; ``PermutedOLS`` fits a one-sample
regression to the effect maps and corrects it by sign flipping.

The images are the test set of nimare_jax (20 simulated studies with z, beta and varcope
maps, cropped to a 20 x 20 x 10 voxel box of the brain so that the repository stays
small), read from ``tests/data/ibma`` of a source checkout.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from nilearn.plotting import plot_stat_map

import nimare_jax
from nimare_jax.correct import FDRCorrector, FWECorrector
from nimare_jax.dataset import Dataset
from nimare_jax.meta.ibma import Fishers, PermutedOLS, Stouffers

data = Path(nimare_jax.__file__).resolve().parents[1] / "tests" / "data" / "ibma"
dset = Dataset(data / "inputs" / "ibma_sim_dataset.json", mask=data / "mask.nii.gz")
kinds = [c for c in dset.images.columns if c in ("z", "beta", "varcope")]
print(f"{len(dset.ids)} studies with {kinds} images")

# %%
# Fisher's and Stouffer's methods
# -------------------------------
# Both read the ``z`` images. Stouffer's can weight each study by the square root of its
# sample size (``use_sample_size=True``).
fishers = Fishers().fit(dset)
stouffers = Stouffers(use_sample_size=True).fit(dset)
for name, res in [("Fishers", fishers), ("Stouffers", stouffers)]:
    z = res.get_map("z", return_type="array")
    print(f"{name}: z from {z.min():.2f} to {z.max():.2f} over {z.size} voxels")

# %%
# Benjamini-Hochberg FDR on Stouffer's map: the corrected maps hold the adjusted p-values
# (and their z), unthresholded.
corrected = FDRCorrector(method="indep", alpha=0.05).transform(stouffers)
p_fdr = corrected.get_map("p_corr-FDR_method-indep", return_type="array")
print(f"{np.count_nonzero(p_fdr < 0.05)} of {p_fdr.size} voxels have an adjusted p < 0.05")

# %%
# A permutation test on the effect maps
# -------------------------------------
# ``PermutedOLS`` reads ``beta`` maps; its Monte Carlo FWE correction multiplies each
# study's map by a random sign in every iteration (200 here).
ols = PermutedOLS(two_sided=True).fit(dset)
ols_fwe = FWECorrector(method="montecarlo", n_iters=200, progress=False).transform(ols)
print([name for name in ols_fwe.maps if "corr-FWE" in name])

# %%
fig, axes = plt.subplots(3, 1, figsize=(8, 8))
for ax, (title, img) in zip(
    axes,
    [
        ("Fisher's z", fishers.get_map("z")),
        ("Stouffer's z (weighted)", stouffers.get_map("z")),
        (
            "PermutedOLS z, voxel-level FWE",
            ols_fwe.get_map("z_level-voxel_corr-FWE_method-montecarlo"),
        ),
    ],
    strict=True,
):
    plot_stat_map(img, axes=ax, title=title, cut_coords=(0, 0, 20), draw_cross=False)
plt.show()

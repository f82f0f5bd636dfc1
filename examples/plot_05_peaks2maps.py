"""
peaks2maps: maps reconstructed from peaks
=========================================

``Peaks2MapsKernel`` replaces ALE's Gaussian kernel by a 3-D U-Net that reconstructs each
experiment's unthresholded z map from its peak coordinates (after Freyberg et al., OHBM
2018). The bundled network was trained in JAX on simulated studies only (see its model
card in ``nimare_jax/resources/peaks2maps/``): treat its maps as a modelling choice, not
as recovered data.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from nilearn.plotting import plot_stat_map

from nimare_jax.dataset import Dataset
from nimare_jax.meta.cbma import ALE
from nimare_jax.meta.kernel import ALEKernel, Peaks2MapsKernel
from nimare_jax.spatial import get_resource_path

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*unknown space.*")
    dset = Dataset(get_resource_path() / "data" / "laird_n20_dataset.json")

# %%
# One experiment's reconstructed map
# ----------------------------------
# ``reconstruct`` gives the network's z map of every experiment over the dataset's mask;
# the kernel's modelled activation (MA) value is the probability that the true map
# exceeds z = 3.1 there.
kernel = Peaks2MapsKernel()
z_hat = kernel.reconstruct(dset)  # (n_experiments, n_voxels)
print(f"reconstructed maps: {z_hat.shape}, z from {z_hat.min():.2f} to {z_hat.max():.2f}")

first = dset.slice(dset.ids[:1])
fig, axes = plt.subplots(2, 1, figsize=(8, 6))
plot_stat_map(
    dset.masker.inverse_transform(z_hat[0]), axes=axes[0], draw_cross=False,
    title=f"peaks2maps reconstruction of {dset.ids[0]}",
)  # fmt: skip
plot_stat_map(
    ALEKernel().transform(first)[0], axes=axes[1], draw_cross=False,
    title="ALE kernel MA map of the same experiment",
)  # fmt: skip
plt.show()

# %%
# ALE with the peaks2maps kernel
# ------------------------------
# Any estimator that takes probabilities (ALE, ALESubtraction, SCALE) accepts the kernel;
# MKDADensity and KDA take ``Peaks2MapsKernel(binary=True)``.
p2m = ALE(kernel_transformer=Peaks2MapsKernel()).fit(dset)
ale = ALE().fit(dset)
a = p2m.get_map("stat", return_type="array")
b = ale.get_map("stat", return_type="array")
print(f"correlation of the two ALE maps: {np.corrcoef(a, b)[0, 1]:.3f}")

plot_stat_map(p2m.get_map("z"), title="ALE z with the peaks2maps kernel", draw_cross=False)
plt.show()

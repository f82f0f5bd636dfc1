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
# The ALE statistic with the peaks2maps kernel
# --------------------------------------------
# ALE's statistic is the union of the experiments' MA maps, ``1 - prod(1 - MA)``; here it
# is computed from the kernel's MA maps and compared with ALE's Gaussian kernel. The
# estimators take the kernel directly, ``ALE(kernel_transformer=Peaks2MapsKernel())``
# (also ALESubtraction and SCALE; MKDADensity and KDA take
# ``Peaks2MapsKernel(binary=True)``), but their p-values need the null distribution of
# whole-brain MA maps, much slower than the rest of this example on a CPU.
ma = kernel.transform(dset, return_type="array")  # (n_experiments, n_voxels)
stat_p2m = 1.0 - np.prod(1.0 - ma, axis=0)
stat_ale = ALE().fit(dset).get_map("stat", return_type="array")
print(f"correlation with the Gaussian-kernel ALE map: {np.corrcoef(stat_p2m, stat_ale)[0, 1]:.3f}")

plot_stat_map(
    dset.masker.inverse_transform(stat_p2m), title="ALE statistic with the peaks2maps kernel",
    draw_cross=False,
)  # fmt: skip
plt.show()

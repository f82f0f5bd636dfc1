"""
Comparing two groups: MKDA chi-square and ALE subtraction
=========================================================

Two ways to ask where two groups of experiments differ. ``MKDAChi2`` tests, voxel by
voxel, whether the proportion of experiments reporting activation nearby differs between
the groups (and whether it is above chance in the pooled sample); ``ALESubtraction``
compares the two groups' ALE maps against a null made by reassigning experiments to
groups at random.

The groups here are an arbitrary split of the bundled dataset, so no real difference is
expected: the point is the API. The estimator's null and the FWE correction use few
permutations to stay quick (use 5,000 to 10,000).
"""

import warnings

import matplotlib.pyplot as plt
from nilearn.plotting import plot_stat_map

from nimare_jax.correct import FDRCorrector, FWECorrector
from nimare_jax.dataset import Dataset
from nimare_jax.meta.cbma import ALESubtraction, MKDAChi2
from nimare_jax.spatial import get_resource_path

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*unknown space.*")
    dset = Dataset(get_resource_path() / "data" / "laird_n20_dataset.json")

ids = list(dset.ids)
group1, group2 = dset.slice(ids[:8]), dset.slice(ids[8:])
print(f"group 1: {len(group1.ids)} experiments, group 2: {len(group2.ids)} experiments")

# %%
# MKDA chi-square
# ---------------
# ``fit(dataset1, dataset2)`` gives the uniformity test (is activation above chance in
# group 1?) and the association test (does it differ between the groups?).
mkda = MKDAChi2(kernel__r=10)
result = mkda.fit(group1, group2)
print([name for name in result.maps if name.startswith("z_")])

# %%
# FDR correction needs no permutations; the Monte Carlo FWE correction permutes the
# group labels (100 permutations here).
fdr = FDRCorrector(method="indep", alpha=0.05).transform(result)
fwe = FWECorrector(method="montecarlo", n_iters=100, progress=False).transform(result)
p_assoc = fdr.get_map("p_desc-association_level-voxel_corr-FDR_method-indep", return_type="array")
print(f"association: {(p_assoc < 0.05).sum()} voxels with an FDR-adjusted p < 0.05")
print([name for name in fwe.maps if "corr-FWE" in name])

# %%
fig, axes = plt.subplots(2, 1, figsize=(8, 6))
plot_stat_map(
    result.get_map("z_desc-uniformity"), axes=axes[0], title="uniformity z (group 1)",
    draw_cross=False,
)  # fmt: skip
plot_stat_map(
    result.get_map("z_desc-association"), axes=axes[1], title="association z (group 1 vs group 2)",
    draw_cross=False,
)  # fmt: skip
plt.show()

# %%
# ALE subtraction
# ---------------
# The difference ALE1 - ALE2 at every voxel against 200 random reassignments of the
# experiments (NiMARE's default is 5000).
sub = ALESubtraction(n_iters=200, random_state=0, progress=False)
diff = sub.fit(group1, group2)
z = diff.get_map("z_desc-group1MinusGroup2", return_type="array")
print(f"group1 - group2: z from {z.min():.2f} to {z.max():.2f}")

plot_stat_map(
    diff.get_map("z_desc-group1MinusGroup2"), title="ALE subtraction z (group 1 - group 2)",
    draw_cross=False,
)  # fmt: skip
plt.show()

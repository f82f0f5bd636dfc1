"""MAPBOT's recovery of planted parcels on simulated corpora (the table of docs/parcellation.md).

For 2 and 3 planted subregions and seeds 0-9, builds the corpus of
``tests/test_mapbot.py::planted_corpus`` (slabs 16 mm wide, 40 experiments each with 3 foci
in their slab and weights on the slab's own 3 terms plus 3 common terms), runs MAPBOT with
``n_clusters=[2, 3, 4]`` and prints, per radius, the adjusted Rand index of the planted k's
solution (min / median), the k with the highest silhouette, and whether every parcel's 3
heaviest terms are the planted terms of its subregion. A seed whose corpus leaves a target
voxel without an experiment in reach is counted as an error (MAPBOT refuses such voxels).

Run from the repository root: ``python docs/examples/mapbot_recovery.py`` (about a minute).
"""

import logging
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from test_mapbot import GROUP, N_TERMS, planted_corpus  # noqa: E402

from nimare_jax.exceptions import DatasetError  # noqa: E402
from nimare_jax.parcellate.mapbot import MAPBOT  # noqa: E402

logging.disable(logging.WARNING)  # NMF with more components than subregions: not converged


def recovery(k: int, r: float, seeds=range(10)) -> str:
    """Return one table row: MAPBOT on ``k`` planted subregions with radius ``r``."""
    aris, picks, terms_ok, errors = [], [], 0, 0
    for seed in seeds:
        dset, roi, truth = planted_corpus(k, seed=seed)
        try:
            result = MAPBOT(roi, [2, 3, 4], r=r, feature_group=GROUP).fit(dset)
        except DatasetError:
            errors += 1
            continue
        labels = result.labels[k]
        aris.append(adjusted_rand_score(truth, labels))
        picks.append(int(result.metrics["silhouette"].idxmax()))
        top = result.top_terms(k, N_TERMS)
        terms_ok += all(
            set(top.loc[p])
            == {
                f"{GROUP}__region{np.bincount(truth[labels == p]).argmax()}_term{t}"
                for t in range(N_TERMS)
            }
            for p in range(1, k + 1)
        )
    n = len(aris)
    return (
        f"| {r:g} | {k} | {min(aris):.3f} / {np.median(aris):.3f} | "
        f"{picks.count(k)} of {n} | {terms_ok} of {n} | {errors} |"
    )


if __name__ == "__main__":
    print("| r (mm) | planted | ARI min / median | silhouette's best k | top terms | errors |")
    print("|---|---|---|---|---|---|")
    for r in (5.0, 6.0):
        for k in (2, 3):
            print(recovery(k, r))

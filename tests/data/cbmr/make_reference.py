"""Write reference_nimare.npz: NiMARE 0.22.1's CBMR on the bundled laird dataset.

NiMARE's CBMR needs PyTorch, so run it with an interpreter holding ``nimare==0.22.1`` and a
CPU build of ``torch`` (here torch 2.13.0+cpu), from any directory:

    /work/venv-cbmr/bin/python tests/data/cbmr/make_reference.py

Stored (all small):

* ``axis_*``: NiMARE's 1-D bases (``coef_spline_bases``) for a few axis ranges and spacings;
* ``laird_*``: ``CBMR("~ 1")`` with the defaults on laird_n20 (incidence filter 0.001,
  spacing 10, Poisson, n_iter 1000, tol 1e-8): analysis-voxel indices (i, j, k), basis width,
  L-BFGS iterations, log-likelihood at NiMARE's optimum, and ``spatialIntensity_group-Default``.

tests/test_cbmr.py compares nimare_jax's CBMR with these values.
"""

import logging
import time
from pathlib import Path

import nimare
import numpy as np
import torch
from nimare.dataset import Dataset
from nimare.meta.cbmr import CBMR
from nimare.meta.cbmr.basis import coef_spline_bases

HERE = Path(__file__).parent
LAIRD = HERE.parents[2] / "nimare_jax" / "resources" / "data" / "laird_n20_dataset.json"
AXIS_CASES = [(3, 70, 10), (0, 15, 5), (10, 60, 7), (12, 12, 10)]


def main():
    """Run NiMARE and save its outputs."""
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    out = {"nimare_version": nimare.__version__, "torch_version": torch.__version__}
    for n, (lo, hi, spacing) in enumerate(AXIS_CASES):
        out[f"axis_{n}_case"] = np.array([lo, hi, spacing])
        out[f"axis_{n}_basis"] = coef_spline_bases(np.arange(lo, hi + 1), spacing, 10)

    dset = Dataset(str(LAIRD))
    start = time.perf_counter()
    result = CBMR("~ 1").fit(dset)
    elapsed = time.perf_counter() - start
    estimator = result.estimator
    model = estimator.cbmr_model
    mask = np.asarray(estimator.masker.mask_img_.dataobj).astype(bool)
    out["laird_ijk"] = np.argwhere(mask).astype(np.int16)
    out["laird_n_bases"] = np.array(model.predictor.n_bases)
    out["laird_n_iter"] = np.array(model._iterations)
    out["laird_log_likelihood"] = np.array(float(model.log_likelihood().detach()))
    out["laird_intensity"] = np.asarray(result.get_map("spatialIntensity_group-Default", False))
    out["laird_seconds"] = np.array(elapsed)
    np.savez_compressed(HERE / "reference_nimare.npz", **out)
    print(
        f"laird: {mask.sum()} voxels, {model.predictor.n_bases} bases, "
        f"{model._iterations} iterations, LL {out['laird_log_likelihood']}, {elapsed:.1f} s"
    )


if __name__ == "__main__":
    main()

"""Write reference_nimare.npz: NiMARE 0.22.1's CBMR on the bundled laird dataset.

NiMARE's CBMR needs PyTorch, so run it with an interpreter holding ``nimare==0.22.1`` and a
CPU build of ``torch`` (here torch 2.13.0+cpu), from any directory:

    /work/venv-cbmr/bin/python tests/data/cbmr/make_reference.py

Stored (all small):

* ``axis_*``: NiMARE's 1-D bases (``coef_spline_bases``) for a few axis ranges and spacings;
* ``laird_*``: ``CBMR("~ 1")`` with the defaults on laird_n20 (incidence filter 0.001,
  spacing 10, Poisson, n_iter 1000, tol 1e-8): analysis-voxel indices (i, j, k), basis width,
  L-BFGS iterations, log-likelihood at NiMARE's optimum, and ``spatialIntensity_group-Default``.

With ``--sim`` it instead writes ``sim120_dataset.json`` (NiMARE's
``create_coordinate_dataset(foci=10, sample_size=(20, 40), n_studies=120, seed=100)`` with a
``diagnosis`` label alternating schizophrenia/depression) and ``reference_sim120.npz``:
``CBMR("~ s(diagnosis)")`` fitted from that JSON with each distribution (intensity maps,
overdispersion, iterations, log-likelihood), the Fisher z map of
``"schizophrenia = depression"`` and, for Poisson, its hc0 cluster-sandwich z map and the hc1
error message.

With ``--overdispersed`` it writes ``overdispersed_dataset.json`` and
``reference_overdispersed.npz``: 60 simulated experiments (two diagnosis groups of 30) on a
14 x 14 x 10 voxel box of the 2 mm MNI grid (:data:`BOX`), foci drawn with real overdispersion
- each experiment's intensity scaled by a gamma(4, 1/4) multiplier (the clustered model's
study-level overdispersion) and each group's voxel intensity by a gamma(2, 1/2) multiplier
(the negative binomial's voxel-level overdispersion) - and ``CBMR("~ s(diagnosis)",
mask=<the box>, incidence_threshold=None)`` fitted with NegativeBinomial and
ClusteredNegativeBinomial (float32 maps: intensity per group, Fisher z of
``"schizophrenia = depression"``; overdispersion, iterations, log-likelihood).

tests/test_cbmr.py compares nimare_jax's CBMR with these values.
"""

import json
import logging
import sys
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
BOX = (slice(38, 52), slice(46, 60), slice(32, 42))  # the overdispersed design's mask


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


def simulated():
    """Write the 120-experiment dataset and NiMARE's ~ s(diagnosis) fits."""
    from nimare.generate import create_coordinate_dataset

    _, dset = create_coordinate_dataset(foci=10, sample_size=(20, 40), n_studies=120, seed=100)
    source = {}
    for n, ident in enumerate(dset.ids):
        rows = dset.coordinates[dset.coordinates["id"] == ident]
        study, contrast = ident.rsplit("-", 1)
        source.setdefault(study, {"contrasts": {}})["contrasts"][contrast] = {
            "coords": {
                "space": "MNI",
                "x": rows["x"].tolist(),
                "y": rows["y"].tolist(),
                "z": rows["z"].tolist(),
            },
            "labels": {"diagnosis": ["schizophrenia", "depression"][n % 2]},
        }
    path = HERE / "sim120_dataset.json"
    path.write_text(json.dumps(source))
    sim = Dataset(str(path))
    out = {"nimare_version": nimare.__version__, "torch_version": torch.__version__}
    for dist in ("poisson", "negativebinomial", "clusterednegativebinomial"):
        start = time.perf_counter()
        result = CBMR("~ s(diagnosis)", distribution=dist).fit(sim)
        out[f"{dist}_seconds"] = np.array(time.perf_counter() - start)
        model = result.estimator.cbmr_model
        out[f"{dist}_n_iter"] = np.array(model._iterations)
        out[f"{dist}_log_likelihood"] = np.array(float(model.log_likelihood().detach()))
        for group in ("schizophrenia", "depression"):
            name = f"spatialIntensity_group-{group}"
            out[f"{dist}_{name}"] = np.asarray(result.maps[name])
        if "overdispersion" in result.tables:
            out[f"{dist}_overdispersion"] = result.tables["overdispersion"].to_numpy().ravel()
        tested = result.test("schizophrenia = depression")
        out[f"{dist}_z"] = np.asarray(tested.maps["z_schizophrenia_vs_depression"])
        if dist == "poisson":
            mask = np.asarray(result.estimator.masker.mask_img_.dataobj).astype(bool)
            out["ijk"] = np.argwhere(mask).astype(np.int16)
            hc0 = result.test("schizophrenia = depression", cov_type="sandwich", correction="hc0")
            out["poisson_z_hc0"] = np.asarray(hc0.maps["z_schizophrenia_vs_depression"])
            try:
                result.test("schizophrenia = depression", cov_type="sandwich")
            except ValueError as error:
                out["poisson_hc1_error"] = np.array(str(error))
        print(dist, out[f"{dist}_n_iter"], out[f"{dist}_seconds"])
    np.savez_compressed(HERE / "reference_sim120.npz", **out)


def box_mask():
    """The overdispersed design's mask: :data:`BOX` on the 2 mm MNI grid."""
    import nibabel as nib
    from nimare.utils import get_template

    template = get_template(space="mni152_2mm", mask="brain")
    data = np.zeros(template.shape, np.uint8)
    data[BOX] = 1
    return nib.Nifti1Image(data, template.affine)


def overdispersed():
    """Write the overdispersed 60-experiment design and NiMARE's NB / CNB fits."""
    rng = np.random.default_rng(2024)
    mask = box_mask()
    ijk = np.argwhere(np.asarray(mask.dataobj) > 0)
    local = (ijk - ijk.min(0)).astype(float)
    smooth = 0.8 * np.sin(local[:, 0] / 4.0) + 0.5 * np.cos(local[:, 1] / 5.0) - 0.05 * local[:, 2]
    groups = ("schizophrenia", "depression")
    voxel_noise = rng.gamma(2.0, 0.5, size=(2, len(ijk)))  # per group and voxel
    source = {}
    for e in range(60):
        group = e % 2
        log_rate = -3.9 + smooth + (0.4 * local[:, 0] / 13.0 if group else 0.0)
        rate = np.exp(log_rate) * voxel_noise[group] * rng.gamma(4.0, 0.25)
        counts = rng.poisson(rate)
        xyz = (np.repeat(ijk, counts, axis=0) @ mask.affine[:3, :3].T + mask.affine[:3, 3]).astype(
            int
        )
        source[f"od{e:02d}"] = {
            "contrasts": {
                "1": {
                    "coords": {
                        "space": "MNI",
                        "x": xyz[:, 0].tolist(),
                        "y": xyz[:, 1].tolist(),
                        "z": xyz[:, 2].tolist(),
                    },
                    "labels": {"diagnosis": groups[group]},
                }
            }
        }
    path = HERE / "overdispersed_dataset.json"
    path.write_text(json.dumps(source, separators=(",", ":")))
    dset = Dataset(str(path))
    out = {"nimare_version": nimare.__version__, "torch_version": torch.__version__}
    out["n_foci"] = np.array(len(dset.coordinates))
    for dist in ("negativebinomial", "clusterednegativebinomial"):
        start = time.perf_counter()
        result = CBMR(
            "~ s(diagnosis)", distribution=dist, mask=mask, incidence_threshold=None
        ).fit(dset)
        out[f"{dist}_seconds"] = np.array(time.perf_counter() - start)
        model = result.estimator.cbmr_model
        out[f"{dist}_n_iter"] = np.array(model._iterations)
        out[f"{dist}_log_likelihood"] = np.array(float(model.log_likelihood().detach()))
        for group in groups:
            name = f"spatialIntensity_group-{group}"
            out[f"{dist}_{name}"] = np.asarray(result.maps[name], np.float32)
        out[f"{dist}_overdispersion"] = result.tables["overdispersion"].to_numpy().ravel()
        tested = result.test("schizophrenia = depression")
        z = tested.maps["z_schizophrenia_vs_depression"]
        out[f"{dist}_z"] = np.asarray(z, np.float32)
        if dist == "negativebinomial":
            analysis = np.asarray(result.estimator.masker.mask_img_.dataobj).astype(bool)
            out["n_voxels"] = np.array(analysis.sum())
        print(dist, out[f"{dist}_n_iter"], out[f"{dist}_seconds"], out[f"{dist}_overdispersion"])
    np.savez_compressed(HERE / "reference_overdispersed.npz", **out)


if __name__ == "__main__":
    if "--sim" in sys.argv[1:]:
        simulated()
    elif "--overdispersed" in sys.argv[1:]:
        overdispersed()
    else:
        main()

"""Build the IBMA test data: a cropped copy of the 20-study reference set plus NiMARE outputs.

Run twice (the NiMARE part needs the oracle environment):

    /work/venv/bin/python tests/data/ibma/make_ibma_reference.py crop
    /work/venv-nimare/bin/python tests/data/ibma/make_ibma_reference.py nimare

``crop`` writes ``inputs/`` (the 20 studies' z, beta and varcope images cut to a box of the
brain, float32), ``mask.nii.gz`` and ``reference_closed_form.npz`` (NiMARE 0.22.1's
whole-brain reference maps of NiMARE's reference outputs restricted to the box; run as
``python make_ibma_reference.py REFERENCE_DIR`` with the folder holding ``ibma_inputs/``,
``ibma_mask.nii.gz`` and ``outputs/``).
``nimare`` runs NiMARE 0.22.1 on the cropped set for the estimators without whole-brain
references (likelihood-based, sample-size-weighted PermutedOLS, PermutedOLS FWE nulls)
and on a copy with missing data (``make_missing`` in tests/test_ibma.py's recipe),
writing ``reference_nimare.npz``.
"""

import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).parent
SHARED = Path(sys.argv[1]) if len(sys.argv) > 1 else None  # NiMARE reference folder
BOX = (slice(36, 56), slice(50, 70), slice(38, 48))  # 20 x 20 x 10 voxels
TYPES = ("z", "beta", "varcope")


def crop():
    full_mask = nib.load(SHARED / "ibma_mask.nii.gz")
    m = np.asarray(full_mask.dataobj) > 0
    origin = np.array([b.start for b in BOX] + [1.0])
    affine = full_mask.affine.copy()
    affine[:3, 3] = (full_mask.affine @ origin)[:3]
    sub = m[BOX]
    nib.Nifti1Image(sub.astype(np.uint8), affine).to_filename(HERE / "mask.nii.gz")
    (HERE / "inputs").mkdir(exist_ok=True)
    src = json.loads((SHARED / "ibma_inputs" / "ibma_sim_dataset.json").read_text())
    for study in src.values():
        for con in study["contrasts"].values():
            for t in TYPES:
                name = con["images"][t]
                img = nib.load(SHARED / "ibma_inputs" / name)
                data = np.asarray(img.dataobj, np.float32)[BOX]
                nib.Nifti1Image(data, affine).to_filename(HERE / "inputs" / name)
    shutil.copy(SHARED / "ibma_inputs" / "ibma_sim_dataset.json", HERE / "inputs")
    # Whole-brain reference maps restricted to the box (C order of the full mask restricted
    # to the box is the C order of the cropped mask).
    sel = np.zeros(m.shape, bool)
    sel[BOX] = True
    keep = sel[m]
    out = {}
    for name in (
        "fishers",
        "stouffers",
        "weightedleastsquares",
        "dersimonianlaird",
        "hedges",
        "permutedols",
    ):
        with np.load(SHARED / "outputs" / f"{name}_maps.npz") as f:
            for k in f.files:
                out[f"{name}__{k}"] = f[k][keep]
    np.savez_compressed(HERE / "reference_closed_form.npz", **out)
    print(keep.sum(), "voxels")


def make_missing(src: Path, dst: Path):
    """Copy the cropped inputs to ``dst`` with missing data (zeros and NaNs) in 3 studies."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    for t in TYPES:
        for study, region, value in (
            ("study-01", (slice(0, 10),), 0.0),
            ("study-02", (slice(None), slice(None), slice(0, 3)), np.nan),
            ("study-03", (slice(5, 15), slice(5, 15)), 0.0),
        ):
            img = nib.load(dst / f"{study}_{t}.nii.gz")
            data = np.asarray(img.dataobj, np.float32).copy()
            data[region] = value
            nib.Nifti1Image(data, img.affine).to_filename(dst / f"{study}_{t}.nii.gz")


def run_nimare():
    import tempfile

    from nimare.correct import FWECorrector
    from nimare.dataset import Dataset
    from nimare.meta import ibma

    def fit(est, path):
        dset = Dataset(str(path / "ibma_sim_dataset.json"), mask=str(HERE / "mask.nii.gz"))
        dset.update_path(str(path))
        return est.fit(dset)

    out = {}
    inputs = HERE / "inputs"
    for name, est in (
        ("vbl_ml", ibma.VarianceBasedLikelihood(method="ml")),
        ("vbl_reml", ibma.VarianceBasedLikelihood(method="reml")),
        ("ssbl_ml", ibma.SampleSizeBasedLikelihood(method="ml")),
        ("ssbl_reml", ibma.SampleSizeBasedLikelihood(method="reml")),
        ("stouffers_n", ibma.Stouffers(use_sample_size=True)),
        ("fishers_n", ibma.Fishers(use_sample_size=True)),
        ("fishers_one", ibma.Fishers(two_sided=False)),
        ("wls_tau2", ibma.WeightedLeastSquares(tau2=0.01)),
        ("permutedols_n", ibma.PermutedOLS(use_sample_size=True)),
        ("permutedols_n_one", ibma.PermutedOLS(use_sample_size=True, two_sided=False)),
    ):
        res = fit(est, inputs)
        for k, v in res.maps.items():
            out[f"{name}__{k}"] = np.asarray(v, np.float32)
    res = fit(ibma.PermutedOLS(), inputs)
    cres = FWECorrector(method="montecarlo", n_iters=1000).transform(res)
    out["permutedols_fwe__null"] = cres.estimator.null_distributions_[
        "values_level-voxel_corr-fwe_method-montecarlo"
    ]
    out["permutedols_fwe__p"] = cres.maps["p_level-voxel_corr-FWE_method-montecarlo"]
    res = fit(ibma.PermutedOLS(use_sample_size=True), inputs)
    cres = FWECorrector(method="montecarlo", n_iters=1000).transform(res)
    out["permutedols_n_fwe__null"] = cres.estimator.null_distributions_[
        "values_level-voxel_corr-fwe_method-montecarlo"
    ]
    with tempfile.TemporaryDirectory() as tmp:
        missing = Path(tmp)
        make_missing(inputs, missing)
        for name, est in (
            ("missing_stouffers", ibma.Stouffers()),
            ("missing_dersimonianlaird", ibma.DerSimonianLaird()),
            ("missing_permutedols", ibma.PermutedOLS()),
            ("missing_permutedols_n", ibma.PermutedOLS(use_sample_size=True)),
            ("missing_aggr_hedges", ibma.Hedges(aggressive_mask=True)),
        ):
            res = fit(est, missing)
            for k, v in res.maps.items():
                out[f"{name}__{k}"] = np.asarray(v, np.float32)
    np.savez_compressed(HERE / "reference_nimare.npz", **out)
    print(len(out), "arrays")


if __name__ == "__main__":
    {"crop": crop, "nimare": run_nimare}[sys.argv[1]]()

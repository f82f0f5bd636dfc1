"""Build the test data for foci outside the image volume, with NiMARE 0.22.1's outputs.

Run in an environment with nimare==0.22.1 (numpy, scipy, nibabel come with it):

    /work/venv-nimare/bin/python tests/data/outside/make_outside_reference.py

Writes, next to this script:

- ``outside_dataset.json``: 7 experiments (sample sizes 8 to 30) in MNI space. Each of the
  six faces of the 2 mm MNI152 volume (x -90..90, y -126..90, z -72..108 mm) has foci 1 to
  8 mm beyond it, among them (-12, 98, 12) mm from a real NeuroStore studyset and foci on
  half-voxel rounding boundaries; some foci are inside; experiment ``s7-c1`` has only a
  focus 52 mm beyond the top face, whose kernels cannot reach the volume.
- ``mask.nii.gz``: on the 2 mm MNI152 grid, the voxels within 5 voxels (along every
  axis) of a focus moved to the nearest voxel of the volume, so the parts of the kernels
  that NiMARE keeps at the volume's edge fall in the mask.
- ``reference_nimare.npz``: float32 maps over the mask voxels (C order): the MA maps of
  ``ALEKernel``, ``MKDAKernel`` and ``KDAKernel`` (``ma_{kernel}``, experiments in
  ``ids`` order), ``{ale,mkdadensity,kda}__{stat,p,z}`` from the estimators' defaults,
  and ``mkdachi2__{map}`` from ``MKDAChi2`` on experiments s1-s3 vs s4-s7.
"""

import json
import warnings
from pathlib import Path

import nibabel as nib
import nimare
import numpy as np
from nimare.dataset import Dataset
from nimare.meta.cbma import ALE, KDA, MKDAChi2, MKDADensity
from nimare.meta.kernel import ALEKernel, KDAKernel, MKDAKernel
from nimare.utils import get_template, mm2vox

HERE = Path(__file__).parent
GROUP1 = ["s1-c1", "s2-c1", "s3-c1"]

# (sample size, foci in MNI mm); the comments give how far each focus is beyond a face.
EXPERIMENTS = {
    "s1": (10, [(-93, -20, 10), (-12, 98, 12), (-40, -20, 10)]),  # x- 3 mm; y+ 8 mm
    "s2": (15, [(-98, -24, 14), (0, -30, -75), (-30, 60, 20)]),  # x- 8 mm; z- 3 mm
    "s3": (8, [(91, 10, 20), (20, -130, 0), (60, 10, 24)]),  # x+ 1 mm (rounds inside); y- 4
    "s4": (20, [(96, 14, 16), (-16, -127, 4), (0, -30, -80)]),  # x+ 6; y- 1 (inside); z- 8
    "s5": (25, [(-8, 92, 8), (10, 0, 110), (10, 40, 60)]),  # y+ 2; z+ 2
    "s6": (30, [(14, 4, 116), (-88, -16, 8), (4, -122, 2)]),  # z+ 8; two inside near faces
    "s7": (12, [(0, -20, 160)]),  # z+ 52 mm: no kernel reaches the volume
}


def dataset_dict() -> dict:
    return {
        study: {
            "contrasts": {
                "c1": {
                    "coords": {
                        "space": "MNI",
                        "x": [float(f[0]) for f in foci],
                        "y": [float(f[1]) for f in foci],
                        "z": [float(f[2]) for f in foci],
                    },
                    "metadata": {"sample_sizes": [n]},
                }
            }
        }
        for study, (n, foci) in EXPERIMENTS.items()
    }


def make_mask() -> nib.Nifti1Image:
    template = get_template("mni152_2mm", mask="brain")
    shape = template.shape
    foci = np.array([f for _, fs in EXPERIMENTS.values() for f in fs], float)
    ijk = np.clip(mm2vox(foci, template.affine), 0, np.array(shape) - 1)
    data = np.zeros(shape, np.uint8)
    for i, j, k in ijk:
        data[max(i - 5, 0) : i + 6, max(j - 5, 0) : j + 6, max(k - 5, 0) : k + 6] = 1
    return nib.Nifti1Image(data, template.affine)


def main():
    assert nimare.__version__ == "0.22.1", nimare.__version__
    warnings.simplefilter("ignore")
    (HERE / "outside_dataset.json").write_text(json.dumps(dataset_dict(), indent=1) + "\n")
    make_mask().to_filename(HERE / "mask.nii.gz")
    dset = Dataset(str(HERE / "outside_dataset.json"), mask=str(HERE / "mask.nii.gz"))
    out = {"ids": np.array(dset.ids, dtype=str)}
    for name, kernel in (("ale", ALEKernel()), ("mkda", MKDAKernel()), ("kda", KDAKernel())):
        out[f"ma_{name}"] = np.asarray(kernel.transform(dset, return_type="array"), np.float32)
    for name, est in (("ale", ALE()), ("mkdadensity", MKDADensity()), ("kda", KDA())):
        res = est.fit(dset)
        for m in ("stat", "p", "z"):
            out[f"{name}__{m}"] = np.asarray(res.get_map(m, return_type="array"), np.float32)
    group2 = [i for i in dset.ids if i not in GROUP1]
    res = MKDAChi2().fit(dset.slice(GROUP1), dset.slice(group2))
    for m in res.maps:
        out[f"mkdachi2__{m}"] = np.asarray(res.get_map(m, return_type="array"), np.float32)
    np.savez_compressed(HERE / "reference_nimare.npz", **out)
    print(int(np.asarray(make_mask().dataobj).sum()), "mask voxels;", len(out), "arrays")


if __name__ == "__main__":
    main()

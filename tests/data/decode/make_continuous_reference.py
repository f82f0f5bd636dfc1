"""Build the continuous-decoding test data: a small annotated laird dataset and NiMARE outputs.

Run in two steps (the second needs the oracle environment, NiMARE 0.22.1):

    python tests/data/decode/make_continuous_reference.py dataset SOURCE_JSON
    /work/venv-nimare/bin/python tests/data/decode/make_continuous_reference.py nimare
    python tests/data/decode/make_continuous_reference.py ibma
    /work/venv-nimare/bin/python tests/data/decode/make_continuous_reference.py nimare-cdd

``dataset`` copies NiMARE's 17-experiment laird dataset with Neurosynth TF-IDF annotations
(``neurosynth_laird_studies.json``, NiMARE's ``testdata_laird``) keeping only the labels of
:data:`FEATURES`, without abstracts, and adds one synthetic label,
``Neurosynth_TFIDF__everywhere`` (0.5 in every experiment), so that the skip of a feature
present in every experiment is exercised. It writes ``laird_decode_dataset.json``.

``nimare`` runs NiMARE 0.22.1's ``CorrelationDecoder`` with ``MKDAChi2()`` (target
``z_desc-association``) and with ``MKDADensity()`` (target ``z``) on that dataset, then
``transform`` on the image of :func:`target_image`, and writes ``continuous_reference.npz``:
for each estimator the decoded feature names, every feature map over the ``mni152_2mm``
brain mask (C order) stored losslessly as its distinct values plus a code per voxel (a map
of counts takes few distinct values, so this compresses to a few kB), and NiMARE's ``r``.

``ibma`` writes ``ibma_labelled.json``: the 20 simulated studies of ``tests/data/ibma``
(images there) with five seeded random binary labels ``syn__a`` ... ``syn__e``.
``nimare-cdd`` runs NiMARE 0.22.1's ``CorrelationDistributionDecoder(feature_group="syn")``
on it (``z`` images, the cropped IBMA mask) and ``transform`` on :func:`cdd_target`, writing
``cdd_reference.npz`` (features, mean, std).
"""

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
DATASET = HERE / "laird_decode_dataset.json"
REFERENCE = HERE / "continuous_reference.npz"
GROUP = "Neurosynth_TFIDF__"
#: Labels kept; experiments carrying each (threshold 0.001): 0 (dropped by the frequency
#: threshold), 1, 2, 3, 5, 6 and 11; plus the synthetic one in all 17.
FEATURES = [
    "001",
    "abnormal",
    "action",
    "cognitive functions",
    "motor",
    "cognition",
    "connectivity",
]
EVERYWHERE = "everywhere"
IBMA = HERE.parent / "ibma"
IBMA_LABELLED = HERE / "ibma_labelled.json"
CDD_REFERENCE = HERE / "cdd_reference.npz"


def target_image(mask_img):
    """Return a smooth deterministic image on the mask's grid (the decoded input)."""
    import nibabel as nib

    shape = mask_img.shape[:3]
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    xyz = np.tensordot(mask_img.affine[:3, :3], np.stack([i, j, k]), axes=1)
    x, y, z = (xyz[a] + mask_img.affine[a, 3] for a in range(3))
    data = np.sin(x / 9.0) + np.cos(y / 13.0) + 0.02 * z + np.exp(-((x - 30) ** 2 + y**2) / 400.0)
    return nib.Nifti1Image(data.astype(np.float32), mask_img.affine)


def cdd_target(mask_img, first_z):
    """Return the image decoded in the distribution test: a ramp plus study 1's z map.

    ``first_z`` is study 1's z values over the mask voxels (C order).
    """
    import nibabel as nib

    mask = np.asanyarray(mask_img.dataobj) > 0
    data = np.zeros(mask.shape, np.float32)
    data[mask] = np.sin(np.arange(mask.sum()) / 17.0) + first_z
    return nib.Nifti1Image(data, mask_img.affine)


def make_ibma_labelled():
    src = json.loads((IBMA / "inputs" / "ibma_sim_dataset.json").read_text())
    rng = np.random.default_rng(7)
    for study in src.values():
        for con in study["contrasts"].values():
            con["labels"] = {f"syn__{n}": float(rng.random() < 0.4) for n in "abcde"}
    IBMA_LABELLED.write_text(json.dumps(src, indent=0))


def run_nimare_cdd():
    import nibabel as nib
    import nimare
    from nimare.dataset import Dataset
    from nimare.decode.continuous import CorrelationDistributionDecoder

    assert nimare.__version__ == "0.22.1", nimare.__version__
    mask_img = nib.load(IBMA / "mask.nii.gz")
    dset = Dataset(str(IBMA_LABELLED), mask=mask_img)
    dset.update_path(str(IBMA / "inputs"))
    decoder = CorrelationDistributionDecoder(feature_group="syn", target_image="z")
    decoder.fit(dset)
    first = nib.load(IBMA / "inputs" / "study-01_z.nii.gz")
    first_z = np.asarray(first.dataobj, np.float32)[np.asanyarray(mask_img.dataobj) > 0]
    table = decoder.transform(cdd_target(mask_img, first_z))
    np.savez_compressed(
        CDD_REFERENCE,
        features=np.array(table.index, dtype=str),
        mean=table["mean"].to_numpy(np.float64),
        std=table["std"].to_numpy(np.float64),
    )


def make_dataset(source):
    src = json.loads(Path(source).read_text())
    keep = [GROUP + f for f in FEATURES]
    out = {}
    for sid, study in src.items():
        contrasts = {}
        for cid, con in study["contrasts"].items():
            labels = {k: float(con["labels"].get(k, 0.0)) for k in keep}
            labels[GROUP + EVERYWHERE] = 0.5
            contrasts[cid] = {
                "coords": con["coords"],
                "labels": labels,
                "metadata": {"sample_sizes": [20]},
            }
        out[sid] = {"contrasts": contrasts}
    DATASET.write_text(json.dumps(out, indent=0))


def encode(maps):
    """Distinct values and per-voxel codes of each map (lossless)."""
    out = {}
    for n, arr in enumerate(maps):
        values, codes = np.unique(np.asarray(arr, np.float32), return_inverse=True)
        out[f"values_{n}"] = values
        out[f"codes_{n}"] = codes.astype(np.uint8 if values.size <= 256 else np.uint16)
    return out


def run_nimare():
    import nimare
    from nimare.dataset import Dataset
    from nimare.decode.continuous import CorrelationDecoder
    from nimare.meta.cbma.mkda import MKDAChi2, MKDADensity

    assert nimare.__version__ == "0.22.1", nimare.__version__
    dset = Dataset(str(DATASET))
    img = target_image(dset.masker.mask_img)
    out = {}
    for tag, estimator, target in (
        ("mkdachi2", MKDAChi2(), "z_desc-association"),
        ("mkdadensity", MKDADensity(), "z"),
    ):
        decoder = CorrelationDecoder(
            feature_group="Neurosynth_TFIDF",
            meta_estimator=estimator,
            target_image=target,
        )
        decoder.fit(dset)
        names = list(decoder.results_.maps)
        table = decoder.transform(img)
        out[f"{tag}_features"] = np.array(names)
        out[f"{tag}_r"] = table.loc[names, "r"].to_numpy(np.float64)
        for key, value in encode(decoder.results_.maps[f] for f in names).items():
            out[f"{tag}_{key}"] = value
    np.savez_compressed(REFERENCE, **out)


if __name__ == "__main__":
    if sys.argv[1] == "dataset":
        make_dataset(sys.argv[2])
    elif sys.argv[1] == "nimare":
        run_nimare()
    elif sys.argv[1] == "ibma":
        make_ibma_labelled()
    elif sys.argv[1] == "nimare-cdd":
        run_nimare_cdd()
    else:
        raise SystemExit(__doc__)

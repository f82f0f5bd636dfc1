"""Generate the GCLDA reference outputs of NiMARE 0.22.1 used by the GCLDA tests.

Run with the interpreter of an environment holding ``nimare==0.22.1``::

    /work/venv-nimare/bin/python tests/data/gclda/make_reference.py

It writes, next to this script:

``laird_corpus.npz``
    The corpus every GCLDA test uses: word counts of the bundled laird abstracts (NiMARE's
    ``generate_counts(tfidf=False, min_df=1, max_df=1.0)``), their vocabulary and study ids,
    and the foci of the same studies as NiMARE's ``Dataset`` reads them.
``state_*.npz``
    The complete state of a NiMARE model after a short fit (assignments, count matrices,
    region means and covariances), the outputs of ``get_probability_distributions`` at a fixed
    subset of rows, ``compute_log_likelihood`` and the decoders/encoder on that model.
``loglikelihood.json``
    Total log-likelihood after 200 iterations for several seeds (statistical comparison) and
    NiMARE's seconds per iteration.

The ROI, the image to decode and the text to encode are built by functions the tests repeat.
"""

import json
import time
from pathlib import Path

import nibabel as nib
import nimare
import numpy as np
from nimare.annotate.gclda import GCLDAModel
from nimare.annotate.text import generate_counts
from nimare.dataset import Dataset
from nimare.decode.continuous import gclda_decode_map
from nimare.decode.discrete import gclda_decode_roi
from nimare.decode.encode import gclda_encode

assert nimare.__version__ == "0.22.1", nimare.__version__

HERE = Path(__file__).parent
LAIRD = HERE.parents[2] / "nimare_jax" / "resources" / "data" / "laird_n20_dataset.json"

#: Every VOXEL_STEP-th mask voxel and WORD_STEP-th word are stored (the full arrays are large).
VOXEL_STEP = 229
WORD_STEP = 7
SEEDS = (1, 2, 3, 4, 5)
N_ITERS_STAT = 200
N_TOPICS_STAT = 10
ENCODE_TEXT = "working memory task prefrontal cortex memory load and emotion faces"


def roi_image(mask_img, center=(-24.0, -4.0, -18.0), radius=15.0):
    """Binary sphere in the grid of ``mask_img`` (the tests build the same)."""
    ijk = np.indices(mask_img.shape).reshape(3, -1).T
    xyz = nib.affines.apply_affine(mask_img.affine, ijk)
    inside = np.linalg.norm(xyz - np.asarray(center), axis=1) <= radius
    return nib.Nifti1Image(inside.reshape(mask_img.shape).astype(np.int8), mask_img.affine)


def map_image(mask_img):
    """Smooth signed test image in the grid of ``mask_img`` (the tests build the same)."""
    ijk = np.indices(mask_img.shape).reshape(3, -1).T
    xyz = nib.affines.apply_affine(mask_img.affine, ijk)
    d1 = np.sum((xyz - np.array([40.0, 20.0, 30.0])) ** 2, axis=1)
    d2 = np.sum((xyz - np.array([-30.0, -60.0, 10.0])) ** 2, axis=1)
    values = np.exp(-d1 / (2 * 15.0**2)) - 0.5 * np.exp(-d2 / (2 * 20.0**2))
    return nib.Nifti1Image(values.reshape(mask_img.shape), mask_img.affine)


def save_state(name, model, decode=False):
    """Save a fitted model's state and its deterministic outputs."""
    topics = model.topics
    dists = model.get_probability_distributions()
    x_ll, w_ll, tot_ll = model.compute_log_likelihood(update_vectors=False)
    n_vox = dists[0].shape[0]
    vox_rows = np.arange(0, n_vox, VOXEL_STEP)
    word_rows = np.arange(0, dists[2].shape[0], WORD_STEP)
    out = {
        "n_topics": model.params["n_topics"],
        "n_regions": model.params["n_regions"],
        "symmetric": model.params["symmetric"],
        "seed_init": model.params["seed_init"],
        "n_iters": model.iter,
        "n_mask_voxels": n_vox,
        "wtoken_topic_idx": topics["wtoken_topic_idx"],
        "peak_topic_idx": topics["peak_topic_idx"],
        "peak_region_idx": topics["peak_region_idx"],
        "regions_mu": topics["regions_mu"][:, :, 0, :],
        "regions_sigma": topics["regions_sigma"],
        "vox_rows": vox_rows,
        "word_rows": word_rows,
        "p_topic_g_voxel": dists[0][vox_rows],
        "p_voxel_g_topic": dists[1][vox_rows],
        "p_topic_g_word": dists[2][word_rows],
        "p_word_g_topic": dists[3][word_rows],
        "loglikelihood": np.array([x_ll, w_ll, tot_ll]),
        "loglikelihood_history": np.array(model.loglikelihood["total"]),
    }
    if decode:
        model.p_topic_g_voxel_, model.p_voxel_g_topic_ = dists[0], dists[1]
        model.p_topic_g_word_, model.p_word_g_topic_ = dists[2], dists[3]
        priors = np.linspace(1.0, 2.0, model.params["n_topics"])
        roi = roi_image(model.mask)
        df, tw = gclda_decode_roi(model, roi)
        out["roi_word_weights"], out["roi_topic_weights"] = df["Weight"].to_numpy(), tw
        df, tw = gclda_decode_roi(model, roi, topic_priors=priors.copy(), prior_weight=0.5)
        out["roi_prior_word_weights"], out["roi_prior_topic_weights"] = df["Weight"].to_numpy(), tw
        img = map_image(model.mask)
        df, tw = gclda_decode_map(model, img)
        out["map_word_weights"], out["map_topic_weights"] = df["Weight"].to_numpy(), tw
        df, tw = gclda_decode_map(model, img, topic_priors=priors.copy(), prior_weight=0.25)
        out["map_prior_word_weights"], out["map_prior_topic_weights"] = df["Weight"].to_numpy(), tw
        enc_img, tw = gclda_encode(model, ENCODE_TEXT)
        mask = model.mask.get_fdata() > 0
        out["encode_voxel_weights"] = enc_img.get_fdata()[mask][vox_rows]
        out["encode_topic_weights"] = tw
        enc_img, tw = gclda_encode(
            model, ENCODE_TEXT.split(), topic_priors=priors.copy(), prior_weight=1.0
        )
        out["encode_prior_voxel_weights"] = enc_img.get_fdata()[mask][vox_rows]
        out["encode_prior_topic_weights"] = tw
    np.savez_compressed(HERE / f"state_{name}.npz", **out)


def main():
    dset = Dataset(str(LAIRD))
    counts = generate_counts(dset.texts, text_column="abstract", tfidf=False, min_df=1, max_df=1.0)
    coords = dset.coordinates[["id", "x", "y", "z"]].reset_index(drop=True)
    np.savez_compressed(
        HERE / "laird_corpus.npz",
        ids=np.array([str(i) for i in counts.index], dtype=str),
        vocabulary=np.array([str(c) for c in counts.columns], dtype=str),
        counts=counts.to_numpy(dtype=np.int16),
        coord_ids=np.array([str(i) for i in coords["id"]], dtype=str),
        coords=coords[["x", "y", "z"]].to_numpy(dtype=np.float64),
    )

    model = GCLDAModel(counts, coords, n_topics=8, n_regions=2, symmetric=True, seed_init=1)
    model.fit(n_iters=20, loglikely_freq=10)
    save_state("symmetric", model, decode=True)

    model = GCLDAModel(counts, coords, n_topics=4, n_regions=3, symmetric=False, seed_init=2)
    model.fit(n_iters=10, loglikely_freq=5)
    save_state("asymmetric", model)

    stats = {"nimare_version": nimare.__version__, "n_topics": N_TOPICS_STAT}
    stats["n_iters"] = N_ITERS_STAT
    totals, seconds = [], []
    for seed in SEEDS:
        model = GCLDAModel(counts, coords, n_topics=N_TOPICS_STAT, seed_init=seed)
        model.fit(n_iters=1, loglikely_freq=N_ITERS_STAT)  # numba compilation happens here
        start = time.perf_counter()
        model.fit(n_iters=N_ITERS_STAT, loglikely_freq=N_ITERS_STAT)
        seconds.append((time.perf_counter() - start) / (N_ITERS_STAT - 1))
        totals.append(model.loglikelihood["total"][-1])
    stats["seeds"] = list(SEEDS)
    stats["total_loglikelihood"] = totals
    stats["seconds_per_iteration"] = seconds
    (HERE / "loglikelihood.json").write_text(json.dumps(stats, indent=2) + "\n")


if __name__ == "__main__":
    main()

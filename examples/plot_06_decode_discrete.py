"""
Decoding a region with term annotations
=======================================

Which terms are reported more often by the experiments that activate a region than by
the others? The discrete decoders answer with a table of terms: ``NeurosynthDecoder``
(chi-square tests of the term given activation and of activation given the term) and
``BrainMapDecoder`` (binomial and chi-square tests of the term's frequency).

The data are the bundled 17 experiments with the Neurosynth TF-IDF weights of 740 terms
(NiMARE's ``testdata_laird``), as stored in ``tests/data/decode_discrete`` of a source
checkout, and a right-amygdala region.
"""

import json
import warnings
from pathlib import Path

import numpy as np

import nimare_jax
from nimare_jax.dataset import Dataset
from nimare_jax.decode.discrete import BrainMapDecoder, NeurosynthDecoder

data = Path(nimare_jax.__file__).resolve().parents[1] / "tests" / "data" / "decode_discrete"

# %%
# Coordinates and term weights
# ----------------------------
# The annotations become each experiment's ``labels`` (columns ``Neurosynth_TFIDF__term``).
source = json.loads((data / "laird_coords.json").read_text())
with np.load(data / "laird_annotations.npz") as f:
    columns, ids, values = f["columns"].tolist(), f["ids"], f["values"]
for ident, row in zip(ids, values, strict=True):
    study, contrast = str(ident).split("-")
    source[study]["contrasts"][contrast]["labels"] = dict(zip(columns, row, strict=True))

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*unknown space.*")
    dset = Dataset(source)
print(f"{len(dset.ids)} experiments, {dset.annotations.shape[1] - 3} term columns")

# %%
# The experiments with a focus in the region
# ------------------------------------------
selected = dset.get_studies_by_mask(data / "amygdala_roi.nii.gz")
print(f"{len(selected)} experiments report a focus in the right amygdala")

# %%
# Neurosynth-style decoding
# -------------------------
# A term counts as present in an experiment when its weight exceeds
# ``frequency_threshold`` (0.001). p-values are corrected for the number of terms
# (Benjamini-Hochberg by default).
neurosynth = NeurosynthDecoder(feature_group="Neurosynth_TFIDF").fit(dset)
table = neurosynth.transform(selected)
print(table.sort_values("probReverse", ascending=False).head(10).to_string())

# %%
# BrainMap-style decoding
# -----------------------
brainmap = BrainMapDecoder(feature_group="Neurosynth_TFIDF").fit(dset)
table = brainmap.transform(selected)
print(table.sort_values("likelihoodForward", ascending=False).head(10).to_string())

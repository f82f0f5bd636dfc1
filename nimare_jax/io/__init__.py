"""Readers and writers: Sleuth, NiMARE JSON, NIMADS and Neurosynth files <-> datasets.

The converters keep NiMARE's names and signatures (``nimare.io``), so scripts transfer.
Image files of a dataset are read by :mod:`nimare_jax.io.images`, network weight files by
:mod:`nimare_jax.io.weights`.
"""

from nimare_jax.io.neurostore import fetch_neurostore_studyset
from nimare_jax.io.neurosynth import (
    convert_neurosynth_to_dataset,
    convert_neurosynth_to_dict,
    convert_neurosynth_to_json,
)
from nimare_jax.io.neurovault import convert_neurovault_to_dataset
from nimare_jax.io.nimads import (
    convert_dataset_to_nimads_dict,
    convert_nimads_to_dataset,
    convert_nimads_to_dict,
    convert_sleuth_to_nimads_dict,
)
from nimare_jax.io.nimare_json import convert_dataset_to_dict, convert_dataset_to_json
from nimare_jax.io.sleuth import (
    convert_sleuth_to_dataset,
    convert_sleuth_to_dict,
    convert_sleuth_to_json,
)
from nimare_jax.io.studyset import (
    convert_dataset_to_studyset,
    convert_neurosynth_to_studyset,
    convert_nimads_to_sleuth,
    convert_sleuth_to_studyset,
)
from nimare_jax.parsing import load_json

__all__ = [
    "convert_dataset_to_dict",
    "convert_dataset_to_json",
    "convert_dataset_to_nimads_dict",
    "convert_dataset_to_studyset",
    "convert_nimads_to_sleuth",
    "convert_sleuth_to_nimads_dict",
    "convert_sleuth_to_studyset",
    "convert_neurosynth_to_dataset",
    "convert_neurosynth_to_dict",
    "convert_neurosynth_to_json",
    "convert_neurosynth_to_studyset",
    "convert_neurovault_to_dataset",
    "fetch_neurostore_studyset",
    "convert_nimads_to_dataset",
    "convert_nimads_to_dict",
    "convert_sleuth_to_dataset",
    "convert_sleuth_to_dict",
    "convert_sleuth_to_json",
    "load_json",
]

"""Run NiMARE 0.22.1's own test suite against nimare_jax and print one table.

Usage::

    python scripts/run_nimare_tests.py [--modules dataset io ...] [--workdir DIR]
        [--cache DIR] [--keep] [-- extra pytest arguments]

What it does, without ever importing NiMARE:

1. ``pip download nimare==0.22.1 --no-deps`` into a cache folder
   (``~/.cache/nimare_jax/nimare-tests`` unless ``--cache``/``NIMARE_JAX_TEST_CACHE``), once.
2. Installs PyMARE (:data:`TEST_DEPS`, an independent reference some tests compare with)
   into ``<cache>/deps`` without dependencies.
3. Unzips ``nimare/tests/**`` (the test modules, ``conftest.py``, ``utils.py`` and ``data/``)
   from the wheel into a fresh work folder, as the package ``nimare_tests``.
4. Restores the ``test_pain_dataset`` images that the wheel does not ship, from the copy kept
   in this repository (``tests/data/nimare_test_pain_dataset``, NiMARE's MIT files).
5. Rewrites the *import statements only* (``import nimare``, ``from nimare.x import y``,
   ``import nimare.x as y``, at any indentation): ``nimare.tests`` becomes the copied
   ``nimare_tests`` package and every other ``nimare`` module becomes ``nimare_jax``. Each
   name is bound through a small shim (written next to the tests) that returns a stand-in
   when nimare_jax lacks the name; the stand-in raises ``ImportError: nimare_jax lacks
   <dotted name>`` when a test uses it. One missing private helper therefore fails only the
   tests that use it rather than the whole module, and the table names it as the cause. The
   replacement keeps the statement's line numbers. Test bodies are not edited.
6. Runs pytest once (single process, ``-p no:cacheprovider``, junit XML) on the modules, with
   the tests in :data:`EXCLUDED` deselected, from a run folder holding a
   ``nimare/tests/data`` link (some NiMARE tests open ``"nimare/tests/data/..."`` relative to
   NiMARE's repository root).
7. Prints one row per module: passed, failed, errors, skipped, excluded, and the most
   frequent causes (exception type and the start of its message).

Exit status: 0 when the run completed (whatever the pass rate), 1 when pytest could not run.
"""

from __future__ import annotations

import argparse
import ast
import collections
import os
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

NIMARE_VERSION = "0.22.1"
REPO = Path(__file__).resolve().parents[1]
PAIN_IMAGES = REPO / "tests" / "data" / "nimare_test_pain_dataset"
DEFAULT_CACHE = Path(
    os.environ.get("NIMARE_JAX_TEST_CACHE", Path.home() / ".cache" / "nimare_jax" / "nimare-tests")
)
PACKAGE = "nimare_tests"
#: Third-party packages NiMARE's tests import beyond nimare_jax's own dependencies: PyMARE
#: supplies the reference FDR/Bonferroni that test_stats and test_correct compare against.
#: Installed without dependencies into ``<cache>/deps`` (its own needs, numpy, scipy, pandas
#: and sympy, come with the environment), so the active environment is left unchanged.
TEST_DEPS = ["pymare==0.0.13"]

#: Short module names (issue 12) -> NiMARE's test file in ``nimare/tests/``.
MODULES = {
    "dataset": "test_dataset.py",
    "io": "test_io.py",
    "sleuth_conversion": "test_sleuth_conversion.py",
    "nimads": "test_nimads.py",
    "utils": "test_utils.py",
    "stats": "test_stats.py",
    "generate": "test_generate.py",
    "transforms": "test_transforms.py",
    "meta_kernel": "test_meta_kernel.py",
    "meta_ale": "test_meta_ale.py",
    "meta_mkda": "test_meta_mkda.py",
    "meta_ibma": "test_meta_ibma.py",
    "correct": "test_correct.py",
    "diagnostics": "test_diagnostics.py",
    "results": "test_results.py",
    "workflows": "test_workflows.py",
    "reproducibility": "test_reproducibility.py",
    "logspace_p_values": "test_logspace_p_values.py",
}

_NET = "needs the network (live NeuroStore/NeuroVault API); not a nimare_jax feature to test"
_MOCKED_REQUESTS = (
    "replaces `nimare.io.requests.get` with a fake NeuroVault server; nimare_jax does not use "
    "the requests library (its downloads go through urllib), so the patch cannot reach them"
)
_NEUROSTORE_SDK = (
    "patches `neurostore_sdk`, NiMARE's optional NeuroStore client; nimare_jax does not depend "
    "on it (not installed, so the test cannot import it)"
)
_DATASET_FIRST_CLASS = (
    "deliberate difference: NiMARE 0.22 deprecates Dataset (FutureWarning on every Dataset "
    "and every Dataset passed to an estimator); nimare_jax keeps Dataset as its first-class "
    "container (estimators run on it, a Studyset converts to it) and does not warn"
)
_SAMPLE_SIZE_LOG = (
    "deliberate difference: the test looks for NiMARE's per-value log records about sample "
    "sizes; nimare_jax reports unusable sample sizes in the one UserWarning that lists every "
    "problem of a NIMADS conversion (and reads numbers written as strings, such as '12', "
    "without complaint); the resulting metadata are NiMARE's (tests/test_io.py)"
)
_T1_1MM = (
    "deliberate difference: the 1 mm T1-weighted template (11 MB) is not bundled; "
    "get_template('mni152_1mm', mask=None) raises a ValueError saying so. The 1 mm brain "
    "mask (68 KB) is bundled and get_template is tested in tests/test_nimare_compat.py"
)
_JALE_ENTRY = (
    "checks NiMARE's own BibTeX text of the JALE entry (its key and its title 'Juaml/Jale'); "
    "nimare_jax's references.bib writes its entries its own way; citation keys with "
    "underscores are tested in tests/test_nimare_compat_data.py"
)
_LABELS = (
    "not implemented: region-averaging maskers (nilearn NiftiLabelsMasker); nimare_jax analyses "
    "voxels and refuses them with a ValueError naming the masker (tests/test_nimare_compat.py)"
)


def _private(name: str) -> str:
    """Reason for a test of one of NiMARE's private helpers or private methods."""
    return (
        f"tests NiMARE's private `{name}`: an internal of NiMARE's implementation that "
        "nimare_jax does not reproduce (its numerics are jitted ops tested against NiMARE's "
        "outputs in tests/)"
    )


#: Deselected tests, node id (relative to the copied package; a function name covers all of
#: its parametrisations) -> reason. Four kinds: tests needing the network, or patching a
#: network client nimare_jax does not use; tests whose subject is a private helper or
#: private method of NiMARE (the helper named in the reason is what the test calls or
#: patches; found by running the suite, every entry checked by hand); features deliberately
#: not implemented, with the clear error nimare_jax gives; deliberate differences from
#: NiMARE, each with what nimare_jax does instead.
EXCLUDED: dict[str, str] = {
    "test_io.py::test_fetch_neurostore_studyset": _NET,
    "test_io.py::test_fetch_neurostore_studyset_with_annotation": _NET,
    "test_generate.py::test_create_neurovault_dataset": _NET,
    "test_generate.py::test_create_neurovault_studyset": _NET,
    "test_io.py::test_convert_neurovault_to_dataset": _MOCKED_REQUESTS,
    "test_io.py::test_convert_neurovault_to_dataset_retries_collection_json": _MOCKED_REQUESTS,
    "test_io.py::test_fetch_neurostore_studyset_wraps_api_errors": _NEUROSTORE_SDK,
    "test_io.py::test_fetch_neurostore_studyset_wraps_annotation_api_errors": _NEUROSTORE_SDK,
    "test_dataset.py::test_instantiating_a_dataset_warns": _DATASET_FIRST_CLASS,
    "test_dataset.py::test_dataset_deprecation_blames_the_caller": _DATASET_FIRST_CLASS,
    "test_dataset.py::test_passing_a_dataset_to_an_algorithm_warns": _DATASET_FIRST_CLASS,
    "test_dataset.py::test_kernel_transformer_warns_on_a_dataset": _DATASET_FIRST_CLASS,
    "test_dataset.py::test_dataset_producing_helpers_still_warn": _DATASET_FIRST_CLASS,
    "test_io.py::test_analysis_to_dict_sample_size[5-None-False-True]": _SAMPLE_SIZE_LOG,
    "test_io.py::test_analysis_to_dict_sample_size[sample_sizes_val1-None-False-True]": (
        _SAMPLE_SIZE_LOG
    ),
    "test_io.py::test_analysis_to_dict_sample_size[None-12-True-True]": _SAMPLE_SIZE_LOG,
    "test_io.py::test_analysis_to_dict_sample_size[None-13.5-True-True]": _SAMPLE_SIZE_LOG,
    "test_io.py::test_analysis_to_dict_sample_size[None-not_a_number-False-True]": (
        _SAMPLE_SIZE_LOG
    ),
    "test_io.py::test_analysis_to_dict_annotation_sample_size_falls_back_to_metadata": (
        _SAMPLE_SIZE_LOG
    ),
    "test_utils.py::test_get_template": _T1_1MM,
    "test_utils.py::test_description_references_support_underscore_keys": _JALE_ENTRY,
    "test_meta_ibma.py::test_ibma_with_custom_masker[WeightedLeastSquares-warning-estimator]": _LABELS,  # noqa: E501
    "test_meta_ibma.py::test_ibma_with_custom_masker[DerSimonianLaird-warning-estimator]": _LABELS,
    "test_meta_ibma.py::test_ibma_with_custom_masker[Hedges-warning-estimator]": _LABELS,
    "test_meta_ibma.py::test_ibma_with_custom_masker[SampleSizeBasedLikelihood-no warning-estimator]": _LABELS,  # noqa: E501
    "test_meta_ibma.py::test_ibma_with_custom_masker[VarianceBasedLikelihood-warning-estimator]": _LABELS,  # noqa: E501
    "test_meta_ibma.py::test_ibma_with_custom_masker[PermutedOLS-no warning-estimator]": _LABELS,
    "test_diagnostics.py::test_jackknife_with_custom_masker_smoke": _LABELS,
    "test_correct.py::test_correction_carries_a_tail_the_p_map_cannot_hold": _private(
        "_name_suffix"
    ),
    "test_correct.py::test_corrector_leaves_nan_p_values_as_nan": _private("_transform"),
    "test_dataset.py::test_quiet_dataset_deprecation_restores_state": _private(
        "dataset._quiet_dataset_deprecation"
    ),
    "test_diagnostics.py::test_cluster_ids_excludes_background": _private("_cluster_ids"),
    "test_diagnostics.py::test_cluster_ids_survive_a_map_with_no_background": _private(
        "_needs_background_border"
    ),
    "test_diagnostics.py::test_count_foci_per_cluster_matches_all_pairs_distances": _private(
        "_cluster_ids"
    ),
    "test_diagnostics.py::test_count_foci_per_cluster_with_no_foci": _private(
        "_count_foci_per_cluster"
    ),
    "test_diagnostics.py::test_get_target_value_map_prefers_deterministic_priority": _private(
        "_get_target_value_map"
    ),
    "test_diagnostics.py::test_get_target_value_map_raises_for_unsupported_maps": _private(
        "_get_target_value_map"
    ),
    "test_diagnostics.py::test_is_voxelwise_masker_uses_round_trip_when_mask_count_mismatches": _private(  # noqa: E501
        "_is_voxelwise_masker"
    ),
    "test_diagnostics.py::test_peak_value_map_is_derived_from_target_image": _private(
        "_peak_value_map_from_cluster_target"
    ),
    "test_diagnostics.py::test_summarize_cluster_values_image_mode": _private(
        "_cluster_masker_kwargs"
    ),
    "test_diagnostics.py::test_summarize_cluster_values_masked_array": _private(
        "_summarize_cluster_values"
    ),
    "test_generate.py::test_create_foci": _private("generate._create_foci"),
    "test_generate.py::test_create_source": _private("generate._create_source"),
    "test_io.py::test_resolve_sample_sizes": _private("_resolve_sample_size"),
    "test_io.py::test_supported_image_types_are_still_normalized": _private(
        "_normalize_image_type"
    ),
    "test_io.py::test_unsupported_image_type_warns_once_per_type": _private(
        "_warn_unsupported_image_type"
    ),
    "test_meta_ale.py::test_ALESubtraction_low_memory_auto_activates": _private("_csr_to_memmap"),
    "test_meta_ale.py::test_ALESubtraction_low_memory_chunk_rows_scale_with_available_ram": _private(  # noqa: E501
        "_determine_chunk_rows"
    ),
    "test_meta_ale.py::test_ALESubtraction_pairwise_store_close_releases_refs_before_cleanup": _private(  # noqa: E501
        "meta.cbma.pairwise_utils._PairwiseMAStore"
    ),
    "test_meta_ale.py::test_ALESubtraction_partitioned_summarystat_matches_combined_path": _private(  # noqa: E501
        "_compute_ale_summarystat"
    ),
    "test_meta_ale.py::test_ALESubtraction_partitioned_summarystat_validates_inputs": _private(
        "meta.cbma.pairwise_utils._compute_partition_ale_summarystat"
    ),
    "test_meta_ale.py::test_ALESubtraction_restrict_to_inference_mask_slices_permutation_voxels": _private(  # noqa: E501
        "_run_null_permutations"
    ),
    "test_meta_ale.py::test_ALESubtraction_streamed_tail_counts_match_chunked_path": _private(
        "_finalize_alediff_tail_counts"
    ),
    "test_meta_ale.py::test_ALE_csr_approximate_null_matches_dense_reference": _private(
        "_compute_summarystat_est"
    ),
    "test_meta_ale.py::test_ALE_csr_summarystat_matches_dense_reference": _private(
        "_compute_summarystat_est"
    ),
    "test_meta_ale.py::test_ALE_masked_csr_kernel_matches_masked_array": _private(
        "_collect_inputs"
    ),
    "test_meta_ale.py::test_ALE_montecarlo_histogram_reduction_matches_batch": _private(
        "_collect_inputs"
    ),
    "test_meta_ale.py::test_ALE_nearest_bin_agrees_with_the_p_value_lookup": _private(
        "meta.cbma.null_utils._nearest_bin"
    ),
    "test_meta_ale.py::test_ALE_study_ma_histogram_edge_bins": _private("_study_ma_histogram"),
    "test_meta_ale.py::test_ALE_update_histogram_edge_bins": _private("_update_ale_histogram"),
    "test_meta_ale.py::test_SCALE_optimized_permutation_matches_dataframe_path": _private(
        "_clear_precomputed_ma_inputs"
    ),
    "test_meta_ale.py::test_calculate_cluster_measures_matches_reference": _private(
        "meta.utils._calculate_cluster_measures"
    ),
    "test_meta_ale.py::test_close_csr_memmaps_detaches_memmap_backing": _private("_csr_to_memmap"),
    "test_meta_ale.py::test_close_memmap_array_closes_nested_memmap_base": _private(
        "meta.cbma.io_utils._close_memmap_array"
    ),
    "test_meta_ale.py::test_montecarlo_histogram_bin_edges_straddle_centres": _private(
        "meta.cbma.base._histogram_bin_edges"
    ),
    "test_meta_ale.py::test_pairwise_ma_store_close_skips_gc_without_temp_files": _private(
        "meta.cbma.pairwise_utils._PairwiseMAStore"
    ),
    "test_meta_ibma.py::test_combination_tests_report_a_tail_the_p_map_cannot_hold": _private(
        "_fit_model"
    ),
    "test_meta_ibma.py::test_combination_tests_report_no_evidence_as_zero": _private("_fit_model"),
    "test_meta_ibma.py::test_mask_images_keeps_one_4d_transform_when_the_masker_does_more_than_select": _private(  # noqa: E501
        "_mask_images"
    ),
    "test_meta_ibma.py::test_mask_images_matches_a_single_4d_transform": _private("_mask_images"),
    "test_meta_ibma.py::test_mask_images_rejects_an_empty_input": _private("_mask_images"),
    "test_meta_ibma.py::test_masked_image_cache_is_off_by_default": _private("_load_image"),
    "test_meta_ibma.py::test_shared_masked_image_cache_reuses_rows": _private("_load_image"),
    "test_meta_kernel.py::test_kernel_transform_attributes": _private("_infer_names"),
    "test_meta_mkda.py::test_MKDADensity_csr_summarystat_matches_dense": _private(
        "_collect_inputs"
    ),
    "test_meta_mkda.py::test_get_last_bin_scans_from_the_end": _private(
        "meta.utils._get_last_bin"
    ),
    "test_meta_mkda.py::test_nullhist_to_summarystat_accumulates_tail": _private(
        "meta.cbma.base._nullhist_to_summarystat"
    ),
    "test_meta_mkda.py::test_uniform_bin_counts_matches_rounding_used_for_observed_map": _private(
        "meta.cbma.mkda._uniform_bin_counts"
    ),
    "test_meta_mkda.py::test_weighted_null_grid_is_bounded_and_normalised": _private(
        "meta.cbma.mkda._weighted_histogram_bins"
    ),
    "test_meta_mkda.py::test_weighted_null_matches_brute_force_enumeration": _private(
        "meta.cbma.mkda._weighted_histogram_bins"
    ),
    "test_reproducibility.py::test_check_random_state_accepts_negative_seeds": _private(
        "utils._check_random_state"
    ),
    "test_reproducibility.py::test_check_random_state_rejects_generator_objects": _private(
        "utils._check_random_state"
    ),
    "test_reproducibility.py::test_check_random_state_rejects_unusable_seeds": _private(
        "utils._check_random_state"
    ),
    "test_reproducibility.py::test_check_random_state_repeats_a_seeded_sequence": _private(
        "utils._check_random_state"
    ),
    "test_reproducibility.py::test_check_random_state_streams_are_independent": _private(
        "utils._check_random_state"
    ),
    "test_reproducibility.py::test_estimator_streams_do_not_collide": _private("_get_rng"),
    "test_reproducibility.py::test_estimators_reject_generator_objects_consistently": _private(
        "_get_rng"
    ),
    "test_reproducibility.py::test_iteration_seeds_default_to_iteration_indices": _private(
        "_iteration_seeds"
    ),
    "test_reproducibility.py::test_iteration_seeds_follow_the_seed": _private("_iteration_seeds"),
    "test_reproducibility.py::test_mkdachi2_random_foci_fwe_is_reproducible": _private(
        "_run_fwe_permutation"
    ),
    "test_reproducibility.py::test_scale_random_state_selects_the_sampled_voxels": _private(
        "_prepare_permutations"
    ),
    "test_reproducibility.py::test_seed_sequence_spawns_distinct_children": _private(
        "utils._seed_sequence"
    ),
    "test_reproducibility.py::test_unseeded_random_state_varies_between_calls": _private(
        "utils._check_random_state"
    ),
    "test_utils.py::test_apply_liberal_mask": _private("meta.utils._apply_liberal_mask"),
    "test_utils.py::test_apply_liberal_mask_groups_voxels_that_are_not_adjacent": _private(
        "meta.utils._apply_liberal_mask"
    ),
    "test_utils.py::test_apply_liberal_mask_partitions_every_covered_voxel": _private(
        "meta.utils._apply_liberal_mask"
    ),
    "test_utils.py::test_apply_liberal_mask_treats_zeros_as_missing_and_drops_thin_bags": _private(
        "meta.utils._apply_liberal_mask"
    ),
    "test_utils.py::test_bibtex_reference_list_is_cached": _private("_bibtex_reference_list"),
    "test_utils.py::test_clip_logp_values_keeps_values_a_p_value_could_not_hold": _private(
        "_clip_logp_values"
    ),
    "test_utils.py::test_clip_logp_values_still_bounds_the_non_finite_ends": _private(
        "_clip_logp_values"
    ),
    "test_utils.py::test_clip_p_values_copy_parameter_controls_mutation": _private(
        "_clip_p_values"
    ),
    "test_utils.py::test_find_stem": _private("_find_stem"),
    "test_utils.py::test_get_voxel_values_marks_out_of_bounds_indices": _private(
        "_get_voxel_values"
    ),
    "test_utils.py::test_liberal_mask_bags_and_values_compose_to_apply_liberal_mask": _private(
        "meta.utils._apply_liberal_mask"
    ),
    "test_utils.py::test_mask_coverage_gm_uses_probability_template_with_binary_masker": _private(
        "_mask_coverage_to_null_ijk"
    ),
    "test_utils.py::test_nlogp_to_logp_values_converts_nlogp_to_logp": _private(
        "_nlogp_to_logp_values"
    ),
    "test_utils.py::test_p_to_logp_values_can_reuse_owned_array": _private("_p_to_logp_values"),
    "test_utils.py::test_validate_images_df_preserves_existing_relative_columns": _private(
        "_validate_images_df"
    ),
    "test_workflows.py::test_holds_default": _private("workflows.base._holds_default"),
    "test_workflows.py::test_holds_default_survives_an_uncomparable_type": _private(
        "workflows.base._holds_default"
    ),
}

SHIM = '''\
"""Bind names for the rewritten NiMARE tests (written by scripts/run_nimare_tests.py)."""

import importlib


class Missing:
    """Stand-in for a name nimare_jax lacks; using it raises ImportError naming it."""

    def __init__(self, name):
        object.__setattr__(self, "_name", name)

    def _fail(self, *args, **kwargs):
        raise ImportError(f"nimare_jax lacks {self._name}")

    @property
    def __name__(self):
        return self._name.rsplit(".", 1)[-1]

    def __getattr__(self, attr):
        if attr == "__qualname__":
            return self.__name__
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Missing(f"{self._name}.{attr}")

    __call__ = _fail
    __iter__ = _fail
    __getitem__ = _fail
    __enter__ = _fail
    __fspath__ = _fail

    def __repr__(self):
        return f"<missing {self._name}>"


def module(name):
    """Import module ``name`` or return a stand-in."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return Missing(name)


def name(modname, attr):
    """``from modname import attr`` or a stand-in."""
    mod = module(modname)
    if not isinstance(mod, Missing):
        if hasattr(mod, attr):
            return getattr(mod, attr)
        sub = module(f"{modname}.{attr}")
        if not isinstance(sub, Missing):
            return sub
    return Missing(f"{modname}.{attr}")
'''


#: pytest plugin (written next to the tests): deselects the excluded tests by exact node id
#: (an entry without ``[...]`` covers that function's parametrisations, and nothing else;
#: pytest's own ``--deselect`` matches prefixes) and records what it deselected.
REPORT_PLUGIN = '''\
"""Deselect the excluded tests and record them (written by scripts/run_nimare_tests.py)."""

import os


def pytest_collection_modifyitems(config, items):
    with open(os.environ["NIMARE_JAX_EXCLUDED"]) as f:
        excluded = set(f.read().split("\\n")) - {""}
    keep, gone = [], []
    for item in items:
        node = item.nodeid.split("/")[-1]
        (gone if node in excluded or node.split("[")[0] in excluded else keep).append(item)
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = keep
        with open(os.environ["NIMARE_JAX_DESELECTED"], "w") as f:
            f.write("\\n".join(item.nodeid for item in gone))
'''


def _target(modname: str) -> str:
    """Map a NiMARE module path to the module the rewritten test imports."""
    if modname == "nimare.tests" or modname.startswith("nimare.tests."):
        return PACKAGE + modname[len("nimare.tests") :]
    return "nimare_jax" + modname[len("nimare") :]


def _is_nimare(modname: str | None) -> bool:
    return modname is not None and (modname == "nimare" or modname.startswith("nimare."))


def rewrite_imports(source: str) -> str:
    """Rewrite NiMARE import statements in ``source``; every other line is kept verbatim."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(_is_nimare(a.name) for a in node.names):
            stmts = []
            for alias in node.names:
                if not _is_nimare(alias.name):
                    stmts.append(
                        f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                    )
                elif alias.asname:
                    stmts.append(f"{alias.asname} = _nj_shim.module({_target(alias.name)!r})")
                else:  # ``import nimare.x.y`` binds ``nimare`` after importing the submodule
                    stmts.append(f"_nj_shim.module({_target(alias.name)!r})")
                    stmts.append(f"{alias.name.split('.')[0]} = _nj_shim.module('nimare_jax')")
            edits.append((node, stmts))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_nimare(node.module):
            target = _target(node.module)
            stmts = [
                f"{a.asname or a.name} = _nj_shim.name({target!r}, {a.name!r})" for a in node.names
            ]
            edits.append((node, stmts))
    for node, stmts in sorted(edits, key=lambda e: e[0].lineno, reverse=True):
        first = lines[node.lineno - 1]
        indent = first[: len(first) - len(first.lstrip())]
        new = indent + f"import {PACKAGE}._nj_shim as _nj_shim; " + "; ".join(stmts) + "\n"
        n_lines = node.end_lineno - node.lineno + 1
        lines[node.lineno - 1 : node.end_lineno] = [new] + ["\n"] * (n_lines - 1)
    return "".join(lines)


def fetch_wheel(cache: Path) -> Path:
    """Return NiMARE's wheel, downloading it (no dependencies, nothing installed) if needed."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob(f"nimare-{NIMARE_VERSION}-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"nimare=={NIMARE_VERSION}"]
            + ["--no-deps", "--only-binary", ":all:", "-d", str(cache)],
            check=True,
        )
        wheels = sorted(cache.glob(f"nimare-{NIMARE_VERSION}-*.whl"))
    return wheels[0]


def fetch_test_deps(cache: Path) -> Path:
    """Install :data:`TEST_DEPS` into ``cache/deps`` once; return that folder."""
    deps = cache / "deps"
    stamp = deps / ".installed"
    if not stamp.exists() or stamp.read_text() != " ".join(TEST_DEPS):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--upgrade", "--quiet"]
            + ["--target", str(deps), *TEST_DEPS],
            check=True,
        )
        stamp.write_text(" ".join(TEST_DEPS))
    return deps


def prepare(wheel: Path, workdir: Path) -> Path:
    """Lay out ``workdir/nimare_tests`` (rewritten tests + data) and ``workdir/run``."""
    if workdir.exists():
        shutil.rmtree(workdir)
    pkg = workdir / PACKAGE
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            if not member.startswith("nimare/tests/") or member.endswith("/"):
                continue
            if "__pycache__" in member:
                continue
            dest = pkg / member[len("nimare/tests/") :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = zf.read(member)
            if dest.suffix == ".py":
                data = rewrite_imports(data.decode()).encode()
            dest.write_bytes(data)
    (pkg / "__init__.py").touch()
    (pkg / "_nj_shim.py").write_text(SHIM)
    (pkg / "_nj_report.py").write_text(REPORT_PLUGIN)
    pain = pkg / "data" / "test_pain_dataset"
    pain.mkdir(parents=True, exist_ok=True)
    for f in PAIN_IMAGES.iterdir():
        shutil.copy(f, pain / f.name)
    (workdir / "pytest.ini").write_text("[pytest]\n")
    run = workdir / "run"
    (run / "nimare" / "tests").mkdir(parents=True)
    (run / "nimare" / "tests" / "data").symlink_to(pkg / "data", target_is_directory=True)
    return run


def _cause(elem: ET.Element) -> str:
    """``ExceptionType: message prefix`` from a junit failure/error element."""
    msg = (elem.get("message") or "").strip().splitlines()
    text = msg[0] if msg else ""
    if not text or text == "collection failure":
        body = (elem.text or "").strip().splitlines()
        errs = [ln[2:].strip() for ln in body if ln.startswith("E ")]
        errs = [e for e in errs if re.match(r"[\w.]+(Error|Exception|Warning)\b", e)] or errs
        text = errs[0] if errs else (body[-1] if body else elem.tag)
        if msg and msg[0] == "collection failure":
            text = "collection: " + text
    text = re.sub(r"0x[0-9a-f]+", "0x..", text)
    text = re.sub(r"/\S+/", ".../", text)
    return text[:90]


def _count_tests(path: Path) -> int:
    """Test functions defined in ``path`` (parametrised cases not expanded)."""
    tree = ast.parse(path.read_text())
    return sum(
        isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test")
        for n in ast.walk(tree)
    )


def summarise(junit: Path, modules: list[str], files_dir: Path, deselected: Path) -> list[dict]:
    """Count outcomes per module from pytest's junit XML.

    A module that fails to import counts one error per test function it defines.
    """
    files = {MODULES[m][:-3]: m for m in modules}
    rows = {m: collections.Counter() for m in modules}
    causes = {m: collections.Counter() for m in modules}
    for case in ET.parse(junit).getroot().iter("testcase"):
        cls = case.get("classname", "") or case.get("name", "")
        parts = cls.split(".")
        mod = next((files[p] for p in parts if p in files), None)
        if mod is None:
            continue
        kinds = {child.tag: child for child in case}
        if "error" in kinds and (kinds["error"].get("message") or "") == "collection failure":
            # the module did not import: count each of its test functions as an error
            n = _count_tests(files_dir / MODULES[mod])
            rows[mod]["errors"] += n
            causes[mod][_cause(kinds["error"])] += n
        elif "error" in kinds:
            rows[mod]["errors"] += 1
            causes[mod][_cause(kinds["error"])] += 1
        elif "failure" in kinds:
            rows[mod]["failed"] += 1
            causes[mod][_cause(kinds["failure"])] += 1
        elif "skipped" in kinds:
            rows[mod]["skipped"] += 1
        else:
            rows[mod]["passed"] += 1
    gone = deselected.read_text().split("\n") if deselected.exists() else []
    out = []
    for m in modules:
        excluded = sum(1 for k in gone if k.split("::")[0].endswith("/" + MODULES[m]))
        out.append({"module": m, **rows[m], "excluded": excluded, "causes": causes[m]})
    return out


def table(rows: list[dict], n_causes: int = 2) -> str:
    """Markdown table: one row per module, then totals."""
    head = "| module | passed | failed | errors | skipped | excluded | top causes |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---|"]
    total = collections.Counter()
    for r in rows:
        top = "; ".join(f"{n}x `{c}`" for c, n in r["causes"].most_common(n_causes))
        for k in ("passed", "failed", "errors", "skipped", "excluded"):
            total[k] += r.get(k, 0)
        lines.append(
            f"| {r['module']} | {r.get('passed', 0)} | {r.get('failed', 0)} | "
            f"{r.get('errors', 0)} | {r.get('skipped', 0)} | {r['excluded']} | {top} |"
        )
    lines.append(
        f"| **total** | {total['passed']} | {total['failed']} | {total['errors']} | "
        f"{total['skipped']} | {total['excluded']} | |"
    )
    ran = total["passed"] + total["failed"] + total["errors"]
    if ran:
        lines.append("")
        lines.append(
            f"{total['passed']} of {ran} non-excluded, non-skipped tests pass "
            f"({100 * total['passed'] / ran:.1f} %)."
        )
    return "\n".join(lines)


def overall_causes(rows: list[dict], n: int = 15) -> str:
    """Return the most frequent causes over all modules, one per line."""
    agg = collections.Counter()
    for r in rows:
        agg.update(r["causes"])
    return "\n".join(f"{k:5d}  {c}" for c, k in agg.most_common(n))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, prepare the tests, run pytest and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", nargs="+", choices=sorted(MODULES), default=list(MODULES))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--workdir", type=Path, default=None, help="default: <cache>/work")
    parser.add_argument("--causes", type=int, default=2, help="causes listed per module")
    parser.add_argument(
        "--repo",
        type=Path,
        default=REPO,
        help="checkout whose nimare_jax is tested (default: this one), e.g. to compare branches",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest after '--'")
    args = parser.parse_args(argv)

    workdir = (args.workdir or args.cache / "work").resolve()
    run = prepare(fetch_wheel(args.cache), workdir)
    deps = fetch_test_deps(args.cache)
    junit = workdir / "junit.xml"
    pkg = workdir / PACKAGE
    cmd = [sys.executable, "-P", "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist"]
    cmd += [
        "-p",
        f"{PACKAGE}._nj_report",
        "-p",
        "no:randomly",
        "--continue-on-collection-errors",
        "-q",
        "--no-header",
        "-rN",
        "--tb=short",
    ]
    cmd += ["--rootdir", str(workdir), "-c", str(workdir / "pytest.ini")]
    cmd += ["--junitxml", str(junit), "-o", "junit_family=xunit1"]
    (workdir / "excluded.txt").write_text("\n".join(EXCLUDED))
    cmd += [str(pkg / MODULES[m]) for m in args.modules] + list(args.pytest_args)
    env = dict(os.environ)
    env["NIMARE_JAX_DESELECTED"] = str(workdir / "deselected.txt")
    env["NIMARE_JAX_EXCLUDED"] = str(workdir / "excluded.txt")
    env["PYTHONPATH"] = os.pathsep.join([str(args.repo.resolve()), str(workdir), str(deps)])
    print("+", " ".join(cmd[:8]), "...", flush=True)
    proc = subprocess.run(cmd, cwd=run, env=env)
    if not junit.exists():
        print(f"pytest did not produce {junit} (exit {proc.returncode})", file=sys.stderr)
        return 1
    rows = summarise(junit, args.modules, pkg, workdir / "deselected.txt")
    print()
    print(f"NiMARE {NIMARE_VERSION} test suite against nimare_jax ({args.repo.resolve()})")
    print(table(rows, args.causes))
    print("\nMost frequent causes overall:")
    print(overall_causes(rows))
    print("\nExcluded tests:")
    for node, reason in EXCLUDED.items():
        print(textwrap.fill(f"{node}: {reason}", 100, subsequent_indent="    "))
    return 0


if __name__ == "__main__":
    sys.exit(main())

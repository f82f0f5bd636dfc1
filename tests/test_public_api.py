"""Every public path of the seed's API reference imports under ``nimare_jax``.

The table lists, per module, the names a NiMARE script imports (``import nimare`` becomes
``import nimare_jax``). Paths that do not exist yet are strict expected failures naming the
issue that brings them: when that issue lands, the test passes, strict xfail turns it into a
failure, and the marker must go.
"""

import importlib

import pytest

#: (module under nimare_jax, public names, open issue that brings them or None if present)
API = [
    ("dataset", ["Dataset"], None),
    ("base", ["NiMAREBase"], None),
    ("correct", ["FWECorrector", "FDRCorrector"], None),
    ("correct", ["Corrector"], None),
    ("meta.esma", ["fisher", "stouffer", "weighted_least_squares", "dersimonian_laird"], None),
    ("meta.esma", ["hedges", "variance_based_likelihood", "sample_size_based_likelihood"], None),
    (
        "meta.ibma",
        ["Fishers", "Stouffers", "WeightedLeastSquares", "DerSimonianLaird", "Hedges"],
        None,
    ),
    (
        "meta.ibma",
        ["SampleSizeBasedLikelihood", "VarianceBasedLikelihood", "PermutedOLS"],
        None,
    ),
    ("meta.ibma", ["FixedEffectsHedges"], None),
    ("meta.cbma.kernel", ["ALEKernel", "MKDAKernel", "KDAKernel", "Peaks2MapsKernel"], None),
    ("meta.kernel", ["ALEKernel", "MKDAKernel", "KDAKernel", "Peaks2MapsKernel"], None),
    ("meta.cbma", ["ALE", "ALESubtraction", "SCALE", "MKDADensity", "MKDAChi2", "KDA"], None),
    ("meta.cbma.ale", ["ALE"], None),
    ("meta.cbma.ale", ["ALESubtraction", "SCALE"], None),
    ("meta.cbma.mkda", ["MKDADensity", "MKDAChi2", "KDA"], None),
    ("meta.cbma.model", ["CBMR"], None),
    ("meta.cbmr", ["CBMR", "CBMRInference"], 14),
    ("annotate.text", ["generate_counts"], None),
    ("annotate.lda", ["LDAModel"], None),
    ("annotate.gclda", ["GCLDAModel"], None),
    ("annotate.cogat", ["CogAtLemmatizer", "extract_cogat", "expand_counts"], None),
    ("annotate", ["CogAtLemmatizer", "expand_counts", "extract_cogat", "LDAModel"], None),
    ("annotate", ["generate_counts"], None),
    ("annotate.ontology", ["CogAtLemmatizer", "extract_cogat", "expand_counts"], None),
    ("annotate.topic", ["LDAModel", "GCLDAModel"], None),
    ("annotate", ["GCLDAModel"], None),
    ("annotate.vector", ["generate_term_vectors", "term_similarity"], None),
    (
        "decode.continuous",
        ["CorrelationDecoder", "CorrelationDistributionDecoder", "gclda_decode_map"],
        None,
    ),
    (
        "decode.discrete",
        ["BrainMapDecoder", "NeurosynthDecoder", "ROIAssociationDecoder", "gclda_decode_roi"],
        None,
    ),
    ("decode.discrete", ["brainmap_decode", "neurosynth_decode"], None),
    ("decode.encode", ["gclda_encode"], None),
    ("parcellate.cbp", ["CoordCBP"], None),
    ("parcellate.mamp", ["MAMP"], None),
    ("parcellate.mapbot", ["MAPBOT"], None),
    (
        "io",
        ["convert_sleuth_to_dataset", "convert_sleuth_to_json", "convert_sleuth_to_dict"],
        None,
    ),
    (
        "io",
        [
            "convert_neurosynth_to_dataset",
            "convert_neurosynth_to_json",
            "convert_nimads_to_dataset",
        ],
        None,
    ),
    (
        "io",
        [
            "convert_nimads_to_sleuth",
            "convert_sleuth_to_nimads_dict",
            "convert_dataset_to_nimads_dict",
            "convert_dataset_to_studyset",
            "convert_sleuth_to_studyset",
        ],
        None,
    ),
    ("nimads", ["Studyset"], None),
    ("studyset", ["Studyset", "normalize_collection", "as_dataset"], None),
    ("io", ["convert_neurovault_to_dataset", "fetch_neurostore_studyset"], None),
    (
        "extract",
        [
            "fetch_neurosynth",
            "fetch_neuroquery",
            "fetch_neurostore",
            "fetch_neurostore_releases",
            "download_nidm_pain",
            "download_cognitive_atlas",
            "download_abstracts",
        ],
        None,
    ),
    ("extract.utils", ["get_data_dirs"], None),
    ("stats", ["one_way", "two_way", "pearson", "null_to_p", "nullhist_to_p"], None),
    ("stats", ["two_way_counts", "nlogp_bonferroni", "nlogp_fdr"], None),
    (
        "utils",
        ["get_resource_path", "get_template", "mm2vox", "vox2mm", "tal2mni", "mni2tal"],
        None,
    ),
    ("utils", ["get_masker", "load_json"], None),
    (
        "workflows",
        ["ale_sleuth_workflow", "macm_workflow", "scale_workflow", "conperm_workflow"],
        None,
    ),
    ("workflows", ["peaks2maps_workflow"], None),
    ("peaks2maps", ["Peaks2MapsKernel"], None),
    ("workflows", ["CBMAWorkflow", "PairwiseCBMAWorkflow", "IBMAWorkflow"], None),
    ("results", ["MetaResult"], None),
    ("diagnostics", ["Jackknife", "FocusCounter"], None),
    ("generate", ["create_coordinate_dataset"], None),
]


def _cases():
    for module, names, issue in API:
        marks = []
        if issue is not None:
            marks = pytest.mark.xfail(
                raises=(ImportError, AttributeError),
                strict=True,
                reason=f"brought by issue {issue}",
            )
        yield pytest.param(module, names, marks=marks, id=f"{module}:{','.join(names)}")


@pytest.mark.parametrize(("module", "names"), _cases())
def test_public_path_imports(module, names):
    mod = importlib.import_module(f"nimare_jax.{module}")
    missing = [name for name in names if not hasattr(mod, name)]
    if missing:
        raise AttributeError(f"nimare_jax.{module} lacks {missing}")
    for name in names:
        assert getattr(mod, name).__module__.startswith("nimare_jax")

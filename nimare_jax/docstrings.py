"""Docstring sections shared by many public objects, filled in with :func:`fill_doc`.

A docstring names a shared section as ``%(name)s`` on a line of its own; :func:`fill_doc`
replaces it with ``docdict[name]``, indented like the placeholder. One definition per
parameter keeps the descriptions of, e.g., ``n_iters`` or ``random_state`` identical
wherever they appear (the pattern of nilearn's ``fill_doc``).

Examples
--------
>>> @fill_doc
... def save(output_dir="."):
...     '''Save something.
...
...     Parameters
...     ----------
...     %(output_dir)s
...     '''
>>> "Folder, created if needed." in save.__doc__
True
"""

from __future__ import annotations

import re
import textwrap

__all__ = ["docdict", "fill_doc"]

#: Shared sections, keyed by placeholder name. Entries start at column 0; continuation
#: lines are indented by four spaces relative to the first line.
docdict: dict[str, str] = {
    "small_sample_correction": """small_sample_correction : {None, "knapp-hartung", "wald"}
    None means Knapp-Hartung, PyMARE's default.""",
    "two_sided_combination": """two_sided : bool
    Concordant two-sided test (default) or one-sided test of positive effects.""",
    "likelihood_method": """method : {"ml", "reml"}
    Estimation method (default ``"ml"``).""",
    "ibma_kwargs": """aggressive_mask, mask, **kwargs
    See :class:`IBMAEstimator`.""",
    "regression_maps": (
        "Needs ``beta`` and ``varcope`` images. Output maps: ``z``, ``p``, ``logp``, ``est``,\n"
        "``se``, ``tau2``, ``dof``."
    ),
    "output_dir": """output_dir : str or pathlib.Path
    Folder, created if needed.""",
    "prefix": """prefix : str
    File-name prefix.""",
    "count_decoder_attributes": """features_ : list of str
    After ``fit``: the features decoded.
labels_ : object
    After ``fit``: the binarized features and foci per experiment, shared by every
    ``transform`` (NiMARE recomputes them on each call).""",
    "gclda_priors": """topic_priors : array-like, shape (n_topics,), optional
    Topic weights to apply. Default None (none).
prior_weight : float, optional
    Weight of ``topic_priors`` against a uniform distribution. Default 1.0.""",
    "gclda_decoded": """decoded_df : pandas.DataFrame
    Column ``Weight``, index ``Term`` (the model's vocabulary).
topic_weights : numpy.ndarray, shape (n_topics,)
    The topic weights.""",
    # ------------------------------------------------ coordinate-based estimators
    "ale_kernel": """kernel_transformer : ALEKernel or Peaks2MapsKernel, class or instance
    Kernel; ``kernel__fwhm=...`` or ``kernel__sample_size=...`` configure the default.
    :class:`~nimare_jax.meta.cbma.kernel.Peaks2MapsKernel` (``binary=False``) models
    each experiment by its peaks2maps reconstruction.""",
    "null_method": """null_method : {"approximate", "montecarlo"}
    Voxel-wise null: the convolution of the experiments' histograms of MA values
    (default), or ``n_iters`` random relocations of all foci.""",
    "n_iters_relocation": """n_iters : int
    Relocations of all foci for ``null_method="montecarlo"``, and the default of
    :meth:`correct_fwe_montecarlo` (NiMARE's default 5000).""",
    "n_cores": """n_cores : int
    Devices to spread the permutations over; ``<= 0``: all cores, as NiMARE. Never
    ignored silently: on CPU, cores become JAX devices only before JAX's first
    computation (:func:`nimare_jax.ops.permute.configure_cpu_devices`); a later, larger
    request runs on the devices JAX has, with a warning
    (:func:`nimare_jax.ops.permute.resolve_n_devices`).""",
    "random_state_montecarlo": """random_state : int or None
    Seed of the Monte Carlo null and of :meth:`correct_fwe_montecarlo`.""",
    "batch_progress": """batch_size : int
    Iterations per device per dispatch (sets peak memory).
progress : bool
    Show a progress bar.""",
    "cbma_drop_invalid": """drop_invalid : bool
    NiMARE's option; only True (leave out experiments without foci, with a warning) is
    supported.""",
    "cluster_options": """connectivity : {6, 18, 26}
    Cluster neighbourhood.
label_backend : {"auto", "jax", "scipy"}
    See :func:`nimare_jax.ops.label.max_cluster_stats`.""",
    "kernel_memory": """memory, memory_level : object, int
    NiMARE's joblib caching options, accepted and ignored (nimare_jax caches compiled
    programs, not maps).""",
    "kernel_kwargs": """**kwargs
    ``kernel__*`` arguments configuring the default kernel class (with a kernel instance
    they are ignored, with a warning, as NiMARE).""",
    # ------------------------------------------------ Monte Carlo FWE protocol
    "fwe_montecarlo_returns": """maps : dict
    Corrected ``p``/``z``/``logp`` maps under NiMARE's names
    (:func:`nimare_jax.meta.fwe.fwe_map`).
nulls : dict
    Null distributions (:func:`nimare_jax.meta.fwe.fwe_null`).
description : str
    Methods text.
citations : tuple of str
    BibTeX keys.""",
    # ------------------------------------------------ correctors and containers
    "corrector_result": """result : MetaResult
    Output of an estimator's ``fit``.""",
    "save_params": """filename : str or pathlib.Path
    File to write.
compress : bool
    Gzip the pickle (default True; read it back with ``compressed=True``).""",
    "load_params": """filename : str or pathlib.Path
    File written by :meth:`save`.
compressed : bool
    Whether the file is gzipped (:meth:`save`'s default).""",
    # ------------------------------------------------ NiMARE's stats and transforms
    "t_values_dof": """t_values : float or array-like
    T-statistics.
dof : int or array-like
    Degrees of freedom, broadcastable against ``t_values``.""",
    # ------------------------------------------------ workflows
    "workflow_dataset": """dataset : str, os.PathLike or Dataset
    NiMARE JSON or Sleuth text file, or a loaded dataset.""",
    "workflow_output_dir": """output_dir : str, os.PathLike or None
    Output folder (None: the dataset file's folder, or the working folder). It is created
    and checked before the work; files are written into a hidden folder inside it and
    moved into place, replacing files of the same names, only once everything succeeded.""",
    "workflow_prefix": """prefix : str or None
    File-name prefix (None: the dataset file's name without extension; for a loaded
    dataset, the analysis' short name, e.g. ``"macm"``).""",
    "workflow_fwhm": """fwhm : float or None
    Fixed kernel FWHM in mm; None derives it from each experiment's sample size.""",
    "workflow_options": """voxel_thresh, cluster_threshold, output_dir, n_cores
    See :class:`~nimare_jax.workflows.base.Workflow`.""",
    # ------------------------------------------------ decoders
    "frequency_threshold": """frequency_threshold : float
    An experiment carries a feature when its value is ``>=`` this.""",
    "decode_tables": """coordinates : pandas.DataFrame
    One row per focus with an ``id`` column (experiment id).
annotations : pandas.DataFrame
    One row per experiment with an ``id`` column and one column per feature.""",
    "decode_ids2": """ids2 : list of str or None
    The experiments to compare with. None uses every experiment of ``coordinates`` not
    in ``ids``.""",
    "decode_features": """features : list of str or None
    Annotation columns to decode; None uses every column except the id columns.""",
    "decode_correction": """correction : {None, "bh", "by", "bonferroni"}
    Multiple-comparisons correction across features.""",
    "decode_transform_ids2": """ids2 : list of str or None
    The experiments to compare with; None uses all the others.""",
    "decode_u": """u : float
    Alpha level (kept for NiMARE's signature; not used by the computation).""",
    # ------------------------------------------------ parcellations
    "parcellation_region": """target_mask : str, os.PathLike or nibabel.Nifti1Image
    Region to parcellate: its non-zero voxels, resampled to the dataset mask's grid
    (nearest neighbour) if needed.
n_clusters : int or sequence of int
    Numbers of clusters (parcels) to compute, each at least 2.""",
    "parcellation_selection": """r : float or None
    Radius in mm: a voxel's experiments are those with a focus within ``r`` mm of it.
n : int or None
    Or a voxel's experiments are its ``n`` nearest (an experiment's distance: that of its
    nearest focus; ties go to the earlier experiment). Give exactly one of ``r`` and
    ``n``.""",
}

#: The ALE-with-FWE options of the ALE and MACM workflows (after their ``n_iters``).
docdict["workflow_ale_fwe"] = "\n".join(
    (
        """v_thr : float
    Uncorrected p-value of the cluster-forming threshold.""",
        docdict["workflow_fwhm"],
        docdict["n_cores"],
        """random_state : int or None
    Seed of the permutations.
progress : bool
    Show progress bars.""",
    )
)

#: Every ``correct_fwe_montecarlo`` takes these (:class:`nimare_jax.meta.fwe.MonteCarloFWE`).
docdict["fwe_montecarlo_parameters"] = "\n".join(
    (
        """result : MetaResult
    The estimator's fit.
voxel_thresh : float
    Uncorrected p-value of the cluster-forming threshold (0.001). Voxel-level-only
    estimators (SCALE, PermutedOLS) do not use it.
n_iters : int or None
    Iterations; None takes the estimator's own default, as NiMARE (its ``n_iters``
    for estimators that have one, 1000 for MKDAChi2, 5000 for PermutedOLS).""",
        docdict["n_cores"],
        """vfwe_only : bool or None
    Voxel-level inference only. None: the estimator's default (False where
    cluster-level inference exists; True for SCALE and PermutedOLS, for which
    False is an error).
connectivity : {6, 18, 26}
    Cluster neighbourhood (NiMARE: 6, faces).
batch_size : int or None
    Iterations per device per dispatch (sets peak memory); None: the estimator's
    tuned default.
tolerance : float or None
    Early stopping (NiMARE issue 866): stop once the Maritz-Jarrett standard error
    of the 95th percentile of the voxel-level null maxima is below this fraction
    of it (checked after each batch, from 1000 iterations on).
label_backend : {"auto", "jax", "scipy"}
    Cluster labelling implementation.
progress : bool or None
    Progress bar; None: the estimator's ``progress`` setting if it has one,
    else True.""",
    )
)

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<name>\w+)\)s[ \t]*$", re.MULTILINE)


def fill_doc(obj):
    """Replace ``%(name)s`` lines of ``obj.__doc__`` with :data:`docdict` entries.

    Parameters
    ----------
    obj : function or class
        Object whose docstring holds placeholders, each on a line of its own.

    Returns
    -------
    obj
        The same object, docstring filled in.

    Raises
    ------
    KeyError
        If a placeholder names no :data:`docdict` entry (caught at import time).
    """
    doc = obj.__doc__
    if doc:

        def expand(match):
            return textwrap.indent(docdict[match["name"]], match["indent"])

        obj.__doc__ = _PLACEHOLDER.sub(expand, doc)
    return obj

"""ALE with Monte Carlo family-wise error correction, from a Sleuth or NiMARE JSON file.

The command ``nimare-jax ale`` runs :func:`ale_sleuth_workflow`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nimare_jax.correct import FWECorrector
from nimare_jax.dataset import Dataset
from nimare_jax.docstrings import fill_doc
from nimare_jax.io import convert_sleuth_to_dataset
from nimare_jax.meta.cbma import ALE, ALESubtraction
from nimare_jax.ops.validate import check_n_iters
from nimare_jax.results import MetaResult
from nimare_jax.spatial import load_mask
from nimare_jax.workflows.base import add_cluster_tables, write_outputs
from nimare_jax.workflows.staging import staged_dir


def load_dataset(path) -> Dataset:
    """Read a NiMARE JSON file (``.json``) or a Sleuth text file (anything else).

    Parameters
    ----------
    path : str or os.PathLike
        Input file. JSON datasets use NiMARE's default ``mni152_2mm`` template; Sleuth files
        use ``ale_2mm``, as :func:`~nimare_jax.io.convert_sleuth_to_dataset` does.

    Returns
    -------
    Dataset
        The studies.
    """
    if Path(path).suffix.lower() == ".json":
        return Dataset(str(path))
    return convert_sleuth_to_dataset(str(path))


def output_location(dataset, output_dir, prefix, default_prefix: str = ""):
    """Resolve where a workflow writes and under which file-name prefix.

    Parameters
    ----------
    dataset : str, os.PathLike or Dataset
        The workflow's input: a file, or a loaded dataset.
    output_dir : str, os.PathLike or None
        None: the input file's folder, or the working folder for a loaded dataset.
    prefix : str or None
        None: the input file's name without extension, or ``default_prefix`` for a loaded
        dataset.
    default_prefix : str
        Prefix of a loaded dataset's outputs.

    Returns
    -------
    source : pathlib.Path or None
        The input file (None for a loaded dataset).
    output_dir : pathlib.Path
        Output folder.
    prefix : str
        File-name prefix.
    """
    source = Path(dataset) if isinstance(dataset, str | os.PathLike) else None
    if output_dir is None:
        output_dir = source.parent if source is not None else "."
    if prefix is None:
        prefix = source.stem if source is not None else default_prefix
    return source, Path(output_dir), prefix


@fill_doc
def ale_with_fwe(n_iters, v_thr, fwhm, n_cores, random_state, progress):
    """Build the ALE estimator and Monte Carlo FWE corrector of the ALE and MACM workflows.

    Parameters
    ----------
    n_iters : int
        Monte Carlo iterations of the correction.
    %(workflow_ale_fwe)s

    Returns
    -------
    estimator : ALE
        Unfitted.
    corrector : FWECorrector
        ``method="montecarlo"`` with these options.
    """
    kernel = {} if fwhm is None else {"kernel__fwhm": fwhm}
    estimator = ALE(n_cores=n_cores, random_state=random_state, **kernel)
    corrector = FWECorrector(
        method="montecarlo",
        voxel_thresh=v_thr,
        n_iters=check_n_iters(n_iters),
        n_cores=n_cores,
        progress=progress,
    )
    return estimator, corrector


@fill_doc
def ale_sleuth_workflow(
    sleuth_file,
    output_dir=None,
    prefix=None,
    n_iters: int = 10000,
    v_thr: float = 0.001,
    fwhm: float | None = None,
    n_cores: int = 1,
    random_state: int | None = 0,
    progress: bool = True,
    file2=None,
) -> tuple[MetaResult, list[Path]]:
    """Run ALE and Monte Carlo FWE correction and write every map, table and citation.

    With ``file2``, also run each group's ALE with FWE and an ALE subtraction
    (:class:`~nimare_jax.meta.cbma.ALESubtraction`, FWE-corrected by the same label
    permutations) of group 1 (``sleuth_file``) minus group 2 (``file2``).

    Parameters
    ----------
    sleuth_file : str or os.PathLike
        Sleuth text file, or a NiMARE JSON dataset (``.json``).
    %(workflow_output_dir)s
    %(workflow_prefix)s
    n_iters : int
        Monte Carlo iterations of the FWE correction.
    %(workflow_ale_fwe)s
    file2 : str, os.PathLike or None
        Second group's Sleuth or JSON file: run a subtraction analysis.

    Returns
    -------
    result : MetaResult
        The corrected result (with ``file2``: the subtraction, whose maps also hold each
        group's FWE-corrected maps as ``..._desc-group1...`` / ``..._desc-group2...``).
    files : list of pathlib.Path
        Written files: ``{prefix}_{map}.nii.gz`` for every map (uncorrected, voxel- and
        cluster-level FWE), ``{prefix}_{table}.tsv``, ``{prefix}_boilerplate.txt`` and
        ``{prefix}_references.bib``, the cluster tables and foci counts of the
        cluster-mass FWE map (``..._tab-clust.tsv``, ``..._diag-FocusCounter_...tsv``) and
        ``{prefix}_report.html``. With ``file2``, the maps of group ``g`` are
        ``{prefix}_{g}_{map}.nii.gz`` and the difference ``{prefix}_{map}.nii.gz`` with
        ``desc-group1MinusGroup2`` in the map name.
    """
    if file2 is not None:
        return _ale_subtraction(
            sleuth_file, file2, output_dir, prefix, n_iters, v_thr, fwhm, n_cores,
            random_state, progress,
        )  # fmt: skip
    sleuth_file, output_dir, prefix = output_location(sleuth_file, output_dir, prefix)
    estimator, corrector = ale_with_fwe(n_iters, v_thr, fwhm, n_cores, random_state, progress)
    with staged_dir(output_dir) as tmp:  # checks the output folder before the work
        dataset = load_dataset(sleuth_file)
        result = add_cluster_tables(corrector.transform(estimator.fit(dataset)))
        result.corrector = corrector
        staged = write_outputs(result, tmp, prefix)
    return result, [output_dir / path.name for path in staged]


def _ale_subtraction(
    file1, file2, output_dir, prefix, n_iters, v_thr, fwhm, n_cores, random_state, progress
):
    """``ale_sleuth_workflow`` with ``file2``: each group's ALE + FWE and their subtraction."""
    file1, output_dir, prefix = output_location(file1, output_dir, prefix)
    n_iters = check_n_iters(n_iters)
    kernel = {} if fwhm is None else {"kernel__fwhm": fwhm}
    estimator = ALESubtraction(
        n_iters=n_iters, voxel_thresh=v_thr, n_cores=n_cores, random_state=random_state,
        progress=progress, **kernel,
    )  # fmt: skip
    corrector = FWECorrector(
        method="montecarlo", voxel_thresh=v_thr, n_iters=n_iters, n_cores=n_cores,
        target="all", progress=progress,
    )  # fmt: skip
    with staged_dir(output_dir) as tmp:  # checks the output folder before the work
        dset1, dset2 = load_dataset(file1), load_dataset(file2)
        mask1, mask2 = load_mask(dset1.masker), load_mask(dset2.masker)
        if not (mask2.shape == mask1.shape and np.allclose(mask2.affine, mask1.affine)):
            dset2 = dset2.with_mask(dset1.masker)  # e.g. a Sleuth file and a JSON file
        result = add_cluster_tables(corrector.transform(estimator.fit(dset1, dset2)))
        result.corrector = corrector
        staged = []
        for name in sorted(result.maps):
            group = next((g for g in ("group1", "group2") if f"desc-{g}" in name), None)
            if group is not None and "MinusGroup2" not in name:
                stem = f"{prefix}_{group}" if prefix else group
                path = tmp / f"{stem}_{_ale_name(name, group)}.nii.gz"
            else:
                path = tmp / f"{prefix + '_' if prefix else ''}{name}.nii.gz"
            result.get_map(name).to_filename(path)
            staged.append(path)
        staged += write_outputs(result, tmp, prefix, maps=False)
    return result, [output_dir / path.name for path in staged]


def _ale_name(name: str, group: str) -> str:
    """Return the one-sample ALE name of a group's map in a subtraction result."""
    kind, _, rest = name.partition(f"_desc-{group}")
    rest = rest.lstrip("_")
    for level in ("Size", "Mass"):
        if rest.startswith(level):
            rest = f"desc-{level.lower()}_" + rest[len(level) :].lstrip("_")
    return f"{kind}_{rest}" if rest else kind

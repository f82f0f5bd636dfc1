"""ALE with Monte Carlo family-wise error correction, from a Sleuth or NiMARE JSON file.

The command ``nimare-jax ale`` runs :func:`ale_sleuth_workflow`.
"""

from __future__ import annotations

from pathlib import Path

from nimare_jax.correct import FWECorrector
from nimare_jax.dataset import Dataset
from nimare_jax.io import convert_sleuth_to_dataset
from nimare_jax.meta.cbma import ALE
from nimare_jax.meta.cbma.base import check_n_iters
from nimare_jax.results import MetaResult
from nimare_jax.workflows._staging import staged_dir


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
) -> tuple[MetaResult, list[Path]]:
    """Run ALE and Monte Carlo FWE correction and write every map, table and citation.

    Parameters
    ----------
    sleuth_file : str or os.PathLike
        Sleuth text file, or a NiMARE JSON dataset (``.json``).
    output_dir : str, os.PathLike or None
        Output folder; None uses the input file's folder. Files are written into a
        temporary folder and moved into place only once everything succeeded.
    prefix : str or None
        File-name prefix; None uses the input file's name without its extension.
    n_iters : int
        Monte Carlo iterations of the FWE correction.
    v_thr : float
        Uncorrected p-value of the cluster-forming threshold.
    fwhm : float or None
        Fixed kernel FWHM in mm; None derives it from each experiment's sample size.
    n_cores : int
        Devices to spread the permutations over.
    random_state : int or None
        Seed of the permutations.
    progress : bool
        Show a progress bar during the permutations.

    Returns
    -------
    result : MetaResult
        The corrected result.
    files : list of pathlib.Path
        Written files: ``{prefix}_{map}.nii.gz`` for every map (uncorrected, voxel- and
        cluster-level FWE), ``{prefix}_{table}.tsv``, ``{prefix}_boilerplate.txt`` and
        ``{prefix}_references.bib``.
    """
    sleuth_file = Path(sleuth_file)
    output_dir = sleuth_file.parent if output_dir is None else Path(output_dir)
    prefix = sleuth_file.stem if prefix is None else prefix
    kernel = {} if fwhm is None else {"kernel__fwhm": fwhm}
    estimator = ALE(n_cores=n_cores, random_state=random_state, **kernel)
    corrector = FWECorrector(
        method="montecarlo",
        voxel_thresh=v_thr,
        n_iters=check_n_iters(n_iters),
        n_cores=n_cores,
        progress=progress,
    )
    dataset = load_dataset(sleuth_file)
    result = corrector.transform(estimator.fit(dataset))
    with staged_dir(output_dir) as tmp:
        staged = [
            *result.save_maps(tmp, prefix),
            *result.save_tables(tmp, prefix),
            *result.save_boilerplate(tmp, prefix),
        ]
    return result, [output_dir / path.name for path in staged]

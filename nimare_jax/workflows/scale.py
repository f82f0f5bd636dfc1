"""SCALE with voxel-level FWE correction. The command ``nimare-jax scale`` runs it.

Langner et al. (2014) NeuroImage 98:8.
"""

from __future__ import annotations

from pathlib import Path

from nimare_jax.correct import FWECorrector
from nimare_jax.docstrings import fill_doc
from nimare_jax.meta.cbma.scale import SCALE, read_baseline
from nimare_jax.ops.validate import check_n_iters
from nimare_jax.results import MetaResult
from nimare_jax.workflows.ale import load_dataset, output_location
from nimare_jax.workflows.arguments import add_common_arguments, run_workflow
from nimare_jax.workflows.base import add_cluster_tables, write_outputs
from nimare_jax.workflows.staging import staged_dir

__all__ = ["scale_workflow"]


@fill_doc
def scale_workflow(
    dataset,
    baseline=None,
    output_dir=None,
    prefix=None,
    n_iters: int = 5000,
    fwhm: float | None = None,
    n_cores: int = 1,
    random_state: int | None = 0,
    progress: bool = True,
) -> tuple[MetaResult, list[Path]]:
    """Run SCALE and voxel-level Monte Carlo FWE correction; write maps and boilerplate.

    Parameters
    ----------
    %(workflow_dataset)s
    baseline : str, os.PathLike, array-like of shape (n, 3) or None
        Baseline pool: a text file of ``x y z`` rows (MNI mm) or an array; None uses the
        dataset's own foci.
    %(workflow_output_dir)s
    %(workflow_prefix)s
    n_iters : int
        Null iterations (NiMARE's default 5000); the FWE correction reuses them.
    %(workflow_fwhm)s
    %(n_cores)s
    random_state : int or None
        Seed.
    progress : bool
        Show progress bars.

    Returns
    -------
    result : MetaResult
        The corrected result.
    files : list of pathlib.Path
        Written files.
    """
    source, output_dir, prefix = output_location(dataset, output_dir, prefix, "scale")
    kernel = {} if fwhm is None else {"kernel__fwhm": fwhm}
    n_iters = check_n_iters(n_iters)
    with staged_dir(output_dir) as tmp:  # checks the output folder before the work
        xyz = read_baseline(baseline) if isinstance(baseline, str | Path) else baseline
        dset = load_dataset(source) if source is not None else dataset
        own = xyz is None
        if own:
            xyz = dset.coordinates[["x", "y", "z"]].to_numpy()
        estimator = SCALE(
            xyz,
            n_iters=n_iters,
            n_cores=n_cores,
            random_state=random_state,
            progress=progress,
            **kernel,
        )
        fitted = estimator.fit(dset)
        corrector = FWECorrector(method="montecarlo", n_cores=n_cores)
        result = add_cluster_tables(corrector.transform(fitted))
        result.corrector = corrector
        if own:
            result.description += " The baseline pool was the data set's own foci."
        staged = write_outputs(result, tmp, prefix)
    return result, [output_dir / path.name for path in staged]


def add_scale_arguments(parser) -> None:
    """Add the ``nimare-jax scale`` arguments to an argparse (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Parser to extend; its namespace is accepted by :func:`run_scale`.
    """
    parser.add_argument("dataset", metavar="DATASET", help="NiMARE JSON file or Sleuth text file")
    parser.add_argument(
        "--baseline",
        metavar="FILE",
        default=None,
        help="text file of x y z rows (MNI mm) to redraw foci from (default: the dataset's "
        "own foci)",
    )
    add_common_arguments(parser)


def run_scale(args) -> None:
    """Run :func:`scale_workflow` from parsed command-line arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Namespace from a parser set up by :func:`add_scale_arguments`.
    """
    run_workflow(
        scale_workflow,
        args.n_cores,
        args.output_dir,
        args.dataset,
        baseline=args.baseline,
        prefix=args.prefix,
        n_iters=args.n_iters,
        fwhm=args.fwhm,
        random_state=args.seed,
    )

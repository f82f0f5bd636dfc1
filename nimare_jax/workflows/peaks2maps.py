"""The ``peaks2maps`` workflow: reconstruct maps from peaks, then a one-sample permutation test.

``nimare-jax peaks2maps SLEUTH_FILE [--output_dir DIR] [--prefix P] [--n_iters 10000]``
reconstructs each experiment's unthresholded map from its peaks with
:class:`~nimare_jax.meta.cbma.kernel.Peaks2MapsKernel`, runs
:class:`~nimare_jax.meta.ibma.PermutedOLS` (sign flipping) on the reconstructed maps with
voxel-level FWE correction, and writes the maps (``{prefix}_{name}.nii.gz``), the cluster
table of the voxel-level FWE z map (``..._tab-clust.tsv``), a methods paragraph
(``{prefix}_boilerplate.txt``), its references (``{prefix}_references.bib``) and an HTML
report (``{prefix}_report.html``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nimare_jax.correct import FWECorrector
from nimare_jax.docstrings import fill_doc
from nimare_jax.meta.cbma.kernel import Peaks2MapsKernel
from nimare_jax.meta.ibma import PermutedOLS
from nimare_jax.ops.permute import configure_cpu_devices
from nimare_jax.ops.validate import check_n_iters
from nimare_jax.results import MetaResult
from nimare_jax.spatial import load_mask
from nimare_jax.workflows.ale import load_dataset, output_location
from nimare_jax.workflows.arguments import add_prefix_argument, positive_int, random_seed
from nimare_jax.workflows.base import add_cluster_tables, write_outputs
from nimare_jax.workflows.staging import staged_dir

__all__ = ["add_peaks2maps_arguments", "peaks2maps_workflow", "run_peaks2maps"]

_CAVEAT = (
    "Each experiment's unthresholded map was reconstructed from its reported peak "
    "coordinates with a peaks2maps network [Freyberg2018], a 3-D U-Net re-implemented and "
    "trained in nimare_jax. The network was trained on simulated data only (smooth "
    "Gaussian random fields with Gaussian activation blobs, whose local maxima above "
    "z = 3.1 and at least 8 mm apart served as the reported peaks), not on real "
    "statistical maps; the reconstructions are model-based estimates, and how well they "
    "approximate real unthresholded maps has not been validated. "
)


@fill_doc
def peaks2maps_workflow(
    sleuth_file,
    output_dir=None,
    prefix=None,
    n_iters: int = 10000,
    random_state: int | None = 0,
    n_cores: int = 1,
    weights=None,
    progress: bool = True,
) -> tuple[MetaResult, list[Path]]:
    """Reconstruct each experiment's map from its peaks and test them across experiments.

    Parameters
    ----------
    sleuth_file : str or os.PathLike
        Sleuth text file, or a NiMARE JSON dataset (``.json``); at least 2 experiments.
    %(workflow_output_dir)s
    %(workflow_prefix)s
    n_iters : int
        Sign-flip iterations of the voxel-level FWE correction (default 10000).
    random_state : int or None
        Seed of the sign flips.
    %(n_cores)s
    weights : str, os.PathLike or None
        Network weights; None uses the bundled ones.
    progress : bool
        Show a progress bar during the permutations.

    Returns
    -------
    result : MetaResult
        Maps ``t``, ``z``, ``p``, ``logp``, ``dof`` and the voxel-level FWE maps.
    files : list of pathlib.Path
        Written files.
    """
    sleuth_file, output_dir, prefix = output_location(sleuth_file, output_dir, prefix)
    n_iters = check_n_iters(n_iters)
    with staged_dir(output_dir) as tmp:  # checks the output folder before the work
        dataset = load_dataset(sleuth_file)
        maps = Peaks2MapsKernel(weights=weights).reconstruct(dataset)
        estimator = PermutedOLS(two_sided=True, random_state=random_state)
        result = estimator.fit_arrays(
            {"beta": maps}, load_mask(dataset.masker), ids=list(dataset.ids)
        )
        corrector = FWECorrector(
            method="montecarlo", n_iters=n_iters, n_cores=n_cores, progress=progress
        )
        result = add_cluster_tables(corrector.transform(result))
        result.corrector = corrector
        result.description = (
            _CAVEAT + f"A one-sample permutation test was then performed on the "
            f"{len(dataset.ids)} reconstructed maps. " + result.description
        )
        result.citations = tuple(dict.fromkeys(("Freyberg2018", *result.citations)))
        staged = write_outputs(result, tmp, prefix)
    return result, [output_dir / path.name for path in staged]


def add_peaks2maps_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``peaks2maps`` arguments to a parser (for the ``nimare-jax`` CLI).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Parser (or sub-parser) to extend.

    Returns
    -------
    argparse.ArgumentParser
        The same parser.
    """
    parser.add_argument("sleuth_file", metavar="SLEUTH_FILE", help="Sleuth text or NiMARE JSON")
    parser.add_argument(
        "--output_dir", default=None, help="output folder (default: the input file's folder)"
    )
    add_prefix_argument(parser)
    parser.add_argument(
        "--n_iters", type=positive_int, default=10000, help="sign-flip iterations (10000)"
    )
    parser.add_argument(
        "--n_cores", type=positive_int, default=1, help="devices for the permutations (1)"
    )
    parser.add_argument(
        "--seed", dest="random_state", type=random_seed, default=0, help="seed (0)"
    )
    return parser


def run_peaks2maps(args) -> None:
    """Run :func:`peaks2maps_workflow` from parsed ``nimare-jax peaks2maps`` arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (see :func:`add_peaks2maps_arguments`).
    """
    if args.n_cores > 1:  # cores become JAX devices only if asked before JAX starts
        configure_cpu_devices(args.n_cores)
    result, files = peaks2maps_workflow(
        args.sleuth_file,
        output_dir=args.output_dir,
        prefix=args.prefix,
        n_iters=args.n_iters,
        random_state=args.random_state,
        n_cores=args.n_cores,
    )
    print(result.boilerplate())
    print(f"Wrote {len(files)} files to {files[0].parent if files else args.output_dir}")

"""Meta-analytic coactivation modelling (MACM): ALE on the studies that activate a region.

Robinson et al. (2010) HBM 31:173. The command ``nimare-jax macm`` runs :func:`macm_workflow`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError
from nimare_jax.results import MetaResult
from nimare_jax.workflows.ale import ale_with_fwe, load_dataset, output_location
from nimare_jax.workflows.arguments import add_common_arguments, probability, run_workflow
from nimare_jax.workflows.base import add_cluster_tables, write_outputs
from nimare_jax.workflows.staging import staged_dir

__all__ = ["macm_workflow"]


@fill_doc
def macm_workflow(
    dataset,
    mask,
    output_dir=None,
    prefix=None,
    n_iters: int = 5000,
    v_thr: float = 0.001,
    fwhm: float | None = None,
    n_cores: int = 1,
    random_state: int | None = 0,
    progress: bool = True,
) -> tuple[MetaResult, list[Path]]:
    """Select the experiments with a focus inside a mask, run ALE with FWE, write outputs.

    Parameters
    ----------
    %(workflow_dataset)s
    mask : str, os.PathLike or nibabel.Nifti1Image
        Region of interest; an experiment is kept if at least one focus lies in it.
    %(workflow_output_dir)s
    %(workflow_prefix)s
    n_iters : int
        Monte Carlo iterations of the FWE correction (NiMARE's default 5000).
    %(workflow_ale_fwe)s

    Returns
    -------
    result : MetaResult
        The corrected ALE result; ``result.tables["selected_experiments"]`` lists the ids.
    files : list of pathlib.Path
        Written files (maps, the tables including the cluster tables, ``boilerplate.txt``,
        ``references.bib`` and ``report.html``, each with the prefix).

    Raises
    ------
    DatasetError
        If no experiment has a focus inside the mask.
    """
    source, output_dir, prefix = output_location(dataset, output_dir, prefix, "macm")
    estimator, corrector = ale_with_fwe(n_iters, v_thr, fwhm, n_cores, random_state, progress)
    with staged_dir(output_dir) as tmp:  # checks the output folder before the work
        dset = load_dataset(source) if source is not None else dataset
        ids = dset.get_studies_by_mask(mask)
        if not ids:
            where = f" {mask}" if isinstance(mask, str | Path) else ""
            raise DatasetError(
                f"no experiment has a focus inside the mask{where} "
                f"({len(dset.ids)} experiments searched)"
            )
        selected = dset.slice(ids)
        result = add_cluster_tables(corrector.transform(estimator.fit(selected)))
        result.corrector = corrector
        result.tables["selected_experiments"] = pd.DataFrame({"id": list(ids)})
        result.description = (
            "A meta-analytic coactivation modelling (MACM) analysis [Robinson2010] was "
            f"performed: of {len(dset.ids)} experiments ({len(dset.coordinates)} foci), the "
            f"{len(ids)} with at least one focus inside the seed region were selected "
            f"({len(selected.coordinates)} foci). " + result.description
        )
        result.citations = tuple(dict.fromkeys(("Robinson2010", *result.citations)))
        staged = write_outputs(result, tmp, prefix)
    return result, [output_dir / path.name for path in staged]


def add_macm_arguments(parser) -> None:
    """Add the ``nimare-jax macm`` arguments to an argparse (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Parser to extend; its namespace is accepted by :func:`run_macm`.
    """
    parser.add_argument("dataset", metavar="DATASET", help="NiMARE JSON file or Sleuth text file")
    parser.add_argument(
        "--mask",
        required=True,
        metavar="MASK_FILE",
        help="NIfTI region: experiments with at least one focus inside it are analysed",
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--v_thr",
        type=probability,
        default=0.001,
        help="voxel-level p-value of the cluster-forming threshold (0.001)",
    )


def run_macm(args) -> None:
    """Run :func:`macm_workflow` from parsed command-line arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Namespace from a parser set up by :func:`add_macm_arguments`.
    """
    run_workflow(
        macm_workflow,
        args.n_cores,
        args.output_dir,
        args.dataset,
        args.mask,
        prefix=args.prefix,
        n_iters=args.n_iters,
        v_thr=args.v_thr,
        fwhm=args.fwhm,
        random_state=args.seed,
    )

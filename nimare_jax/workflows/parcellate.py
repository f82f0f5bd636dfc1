"""Meta-analytic parcellation of a region: the ``nimare-jax cbp`` command.

:func:`parcellate_workflow` runs one of the parcellation methods of
:mod:`nimare_jax.parcellate` for several numbers of clusters and writes a label image per
number, the criteria table, a figure of the criteria, the methods paragraph and its
references. :data:`METHODS` maps each ``--method`` name to a function building the
parcellator; a method is added to the command by adding an entry.
"""

from __future__ import annotations

from pathlib import Path

from nimare_jax.docstrings import fill_doc
from nimare_jax.meta.cbma import ALE, MKDADensity
from nimare_jax.parcellate.base import ParcellationResult
from nimare_jax.parcellate.cbp import CoordCBP
from nimare_jax.parcellate.mamp import MAMP
from nimare_jax.parcellate.mapbot import MAPBOT
from nimare_jax.workflows.ale import load_dataset, output_location
from nimare_jax.workflows.arguments import (
    add_prefix_argument,
    number,
    positive_float,
    positive_int,
    random_seed,
)
from nimare_jax.workflows.staging import staged_dir

__all__ = ["METHODS", "parcellate_workflow"]


def _cbp(roi, n_clusters, options):
    estimator = MKDADensity() if options.get("estimator") == "mkda" else ALE()
    return CoordCBP(
        roi,
        n_clusters,
        r=options.get("r"),
        n=options.get("n"),
        meta_estimator=estimator,
        target_image=options.get("target_image", "z"),
        n_splits=options.get("n_splits", 2),
        random_state=options.get("random_state", 0),
    )


def _mamp(roi, n_clusters, options):
    return MAMP(
        roi,
        n_clusters,
        n_splits=options.get("n_splits", 2),
        random_state=options.get("random_state", 0),
    )


def _mapbot(roi, n_clusters, options):
    return MAPBOT(
        roi,
        n_clusters,
        r=options.get("r"),
        n=options.get("n"),
        feature_group=options.get("feature_group"),
        n_splits=options.get("n_splits", 2),
        random_state=options.get("random_state", 0),
    )


#: ``--method`` name -> ``build(roi, n_clusters, options) -> Parcellator``; ``options``
#: holds the command's settings (``r``, ``n``, ``estimator``, ``target_image``,
#: ``feature_group``, ``n_splits``, ``random_state``), each method reading those it uses.
METHODS = {"cbp": _cbp, "mamp": _mamp, "mapbot": _mapbot}


@fill_doc
def parcellate_workflow(
    dataset,
    roi,
    n_clusters,
    method: str = "cbp",
    output_dir=None,
    prefix=None,
    **options,
) -> tuple[ParcellationResult, list[Path]]:
    """Parcellate a region with CBP, MAMP or MAPBOT and write the results.

    Parameters
    ----------
    %(workflow_dataset)s
    roi : str, os.PathLike or nibabel.Nifti1Image
        Region to parcellate.
    n_clusters : sequence of int
        Numbers of clusters.
    method : str
        A key of :data:`METHODS` (``"cbp"``, ``"mamp"`` or ``"mapbot"``).
    %(workflow_output_dir)s
    %(workflow_prefix)s
    **options
        Settings of the method: ``r`` or ``n`` (CBP's experiment selection; default
        ``r=6``), ``estimator`` (``"ale"`` or ``"mkda"``), ``target_image``, ``n_splits``,
        ``random_state``; MAPBOT's ``feature_group`` (annotation columns used as terms).

    Returns
    -------
    result : ParcellationResult
        Labels, criteria and methods text.
    files : list of pathlib.Path
        ``{prefix}_k-{k}_labels.nii.gz`` per k, ``{prefix}_metrics.tsv``,
        ``{prefix}_metrics.png``, ``{prefix}_boilerplate.txt``, ``{prefix}_references.bib``.
    """
    if method not in METHODS:
        raise ValueError(
            f"method {method!r} is not available; choose one of {', '.join(sorted(METHODS))}"
        )
    if options.get("r") is None and options.get("n") is None:
        options["r"] = 6.0
    source, output_dir, prefix = output_location(dataset, output_dir, prefix, method)
    parcellator = METHODS[method](roi, list(n_clusters), options)
    with staged_dir(output_dir) as tmp:  # checks the output folder before the work
        dset = load_dataset(source) if source is not None else dataset
        result = parcellator.fit(dset)
        staged = result.save(tmp, prefix)
    return result, [output_dir / path.name for path in staged]


def add_parcellate_arguments(parser) -> None:
    """Add the ``nimare-jax cbp`` arguments to an argparse (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Parser to extend; its namespace is accepted by :func:`run_parcellate`.
    """
    parser.add_argument("dataset", metavar="DATASET", help="NiMARE JSON file or Sleuth text file")
    parser.add_argument(
        "--roi", required=True, metavar="MASK_FILE", help="NIfTI image of the region"
    )
    parser.add_argument(
        "--n_clusters",
        type=number(int, 1, what="a whole number of clusters, at least 2"),
        nargs="+",
        required=True,
        metavar="K",
        help="numbers of clusters (each at least 2)",
    )
    parser.add_argument(
        "--method",
        default="cbp",
        help="cbp (coactivation-based, default), mamp (activation modelling-based) or mapbot "
        "(text-based); the methods registered in nimare_jax.workflows.parcellate.METHODS",
    )
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument(
        "--r", type=positive_float, default=None, help="CBP: experiments within R mm (6)"
    )
    selection.add_argument(
        "--n", type=positive_int, default=None, help="CBP: the N nearest experiments instead"
    )
    parser.add_argument(
        "--estimator", choices=("ale", "mkda"), default="ale", help="CBP's meta-analysis (ale)"
    )
    parser.add_argument(
        "--feature_group",
        default=None,
        metavar="GROUP",
        help="MAPBOT: annotation columns used as terms, e.g. Neurosynth_TFIDF (all columns)",
    )
    parser.add_argument(
        "--n_splits", type=positive_int, default=2, help="split-half resamples (2)"
    )
    parser.add_argument("--output_dir", metavar="PATH", default=".", help="output folder (.)")
    add_prefix_argument(parser)
    parser.add_argument(
        "--seed", type=random_seed, default=0, help="seed of splits and k-means (0)"
    )


def run_parcellate(args) -> None:
    """Run :func:`parcellate_workflow` from parsed command-line arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Namespace from a parser set up by :func:`add_parcellate_arguments`.
    """
    result, files = parcellate_workflow(
        args.dataset,
        args.roi,
        args.n_clusters,
        method=args.method,
        output_dir=args.output_dir,
        prefix=args.prefix,
        r=args.r,
        n=args.n,
        estimator=args.estimator,
        feature_group=args.feature_group,
        n_splits=args.n_splits,
        random_state=args.seed,
    )
    print(result.metrics.to_string())
    print(result.boilerplate())
    print(f"Wrote {len(files)} files to {args.output_dir}")

"""The ``nimare-jax`` command: ALE with Monte Carlo FWE, and file conversions.

Errors about the input (malformed files, missing files, bad numbers) are printed as one
line, ``nimare-jax: error: <message>``, with exit status 1 (2 for bad command-line usage);
no output file is left behind.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from nimare_jax import __version__
from nimare_jax.exceptions import NiMAREJaxError
from nimare_jax.workflows._args import positive_float, positive_int, probability, run_workflow

PROG = "nimare-jax"


class _Parser(argparse.ArgumentParser):
    """Argument parser whose usage errors are one line on stderr."""

    def error(self, message):
        """Print ``nimare-jax: error: <message>`` and exit with status 2."""
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _get_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Neuroimaging meta-analysis with jit-compiled JAX numerics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ale = sub.add_parser(
        "ale",
        help="ALE meta-analysis with Monte Carlo FWE correction (writes maps and boilerplate)",
        description=(
            "Run an activation likelihood estimation (ALE) meta-analysis with voxel- and "
            "cluster-level Monte Carlo family-wise error correction, and write every map, "
            "table, a methods paragraph (boilerplate.txt) and its references (references.bib)."
        ),
    )
    ale.add_argument("dataset", metavar="DATASET", help="Sleuth text file or NiMARE JSON file")
    ale.add_argument("--output_dir", metavar="PATH", default=".", help="output folder (.)")
    ale.add_argument(
        "--prefix", default=None, help="file-name prefix (default: the input file's name)"
    )
    ale.add_argument(
        "--n_iters", type=positive_int, default=10000, help="Monte Carlo iterations (10000)"
    )
    ale.add_argument(
        "--v_thr",
        type=probability,
        default=0.001,
        help="voxel-level p-value of the cluster-forming threshold (0.001)",
    )
    ale.add_argument(
        "--fwhm",
        type=positive_float,
        default=None,
        help="fixed kernel FWHM in mm (default: from each experiment's sample size)",
    )
    ale.add_argument(
        "--n_cores", type=positive_int, default=1, help="devices for the permutations (1)"
    )
    ale.add_argument("--seed", type=int, default=0, help="seed of the permutations (0)")
    ale.add_argument(
        "--file2",
        metavar="SLEUTH2",
        default=None,
        help="second group's file: also run an ALE subtraction (DATASET minus SLEUTH2)",
    )
    ale.set_defaults(run=_run_ale)

    sleuth = sub.add_parser(
        "sleuth2nimare",
        help="convert a Sleuth text file to a NiMARE JSON dataset",
        description="Convert a Sleuth text file to a NiMARE JSON dataset.",
    )
    sleuth.add_argument("text_file", help="Sleuth text file")
    sleuth.add_argument("out_file", help="output JSON file")
    sleuth.set_defaults(run=_run_sleuth2nimare)

    neurosynth = sub.add_parser(
        "neurosynth2nimare",
        help="convert Neurosynth database files to a NiMARE JSON dataset",
        description="Convert Neurosynth (version 7) database files to a NiMARE JSON dataset.",
    )
    neurosynth.add_argument("coordinates_file", help="coordinates table (.tsv or .tsv.gz)")
    neurosynth.add_argument("metadata_file", help="metadata table (.tsv or .tsv.gz)")
    neurosynth.add_argument("out_file", help="output JSON file")
    neurosynth.add_argument(
        "--annotations_file",
        nargs=2,
        action="append",
        metavar=("FEATURES", "VOCABULARY"),
        default=None,
        help="a features .npz file and its vocabulary .txt file (repeatable)",
    )
    neurosynth.set_defaults(run=_run_neurosynth2nimare)

    from nimare_jax.workflows.conperm import add_conperm_arguments

    conperm = sub.add_parser(
        "conperm",
        help="one-sample permutation test (sign flipping) of contrast images, voxel-level FWE",
        description="One-sample sign-flipping permutation test of contrast images with "
        "voxel-level Monte Carlo FWE correction; writes maps and boilerplate.",
    )
    add_conperm_arguments(conperm)
    conperm.set_defaults(run=_run_conperm)

    from nimare_jax.workflows.metacluster import add_metacluster_arguments, run_metacluster

    metacluster = sub.add_parser(
        "metacluster",
        help="cluster experiments by their activation maps, for a range of cluster numbers",
        description="Meta-analytic clustering: group experiments by the similarity of their "
        "modelled-activation maps (or images) with scikit-learn for every number of clusters "
        "in a range; writes assignments, cluster-mean maps, silhouettes and boilerplate.",
    )
    add_metacluster_arguments(metacluster)
    metacluster.set_defaults(run=run_metacluster)
    from nimare_jax.workflows.macm import add_macm_arguments, run_macm

    macm = sub.add_parser(
        "macm",
        help="meta-analytic coactivation modelling: ALE of the experiments active in a mask",
        description="Meta-analytic coactivation modelling (MACM): ALE with Monte Carlo FWE "
        "correction of the experiments with at least one focus inside a mask; writes maps, "
        "the selected experiments and boilerplate.",
    )
    add_macm_arguments(macm)
    macm.set_defaults(run=run_macm)

    from nimare_jax.workflows.scale import add_scale_arguments, run_scale

    scale = sub.add_parser(
        "scale",
        help="SCALE: ALE against foci redrawn from a baseline pool, voxel-level FWE",
        description="Specific coactivation likelihood estimation (SCALE) with voxel-level "
        "Monte Carlo FWE correction; writes maps and boilerplate.",
    )
    add_scale_arguments(scale)
    scale.set_defaults(run=run_scale)
    from nimare_jax.workflows.peaks2maps import add_peaks2maps_arguments, run_peaks2maps

    peaks2maps = sub.add_parser(
        "peaks2maps",
        help="reconstruct maps from peaks (network trained on simulated data), then a "
        "one-sample permutation test with voxel-level FWE",
        description="Reconstruct each experiment's unthresholded map from its peaks with a "
        "peaks2maps network trained on simulated data, then run a one-sample sign-flipping "
        "permutation test with voxel-level FWE correction; writes maps and boilerplate.",
    )
    add_peaks2maps_arguments(peaks2maps)
    peaks2maps.set_defaults(run=run_peaks2maps)
    return parser


def _run_ale(args) -> None:
    run_workflow(
        "ale_sleuth_workflow",
        args.n_cores,
        args.output_dir,
        args.dataset,
        prefix=args.prefix,
        n_iters=args.n_iters,
        v_thr=args.v_thr,
        fwhm=args.fwhm,
        random_state=args.seed,
        file2=args.file2,
    )


def _run_conperm(args) -> None:
    from nimare_jax.workflows.conperm import conperm_workflow

    options = {k: v for k, v in vars(args).items() if k not in ("command", "run")}
    conperm_workflow(**options)


def _run_sleuth2nimare(args) -> None:
    from nimare_jax.io import convert_sleuth_to_json
    from nimare_jax.workflows._staging import staged_file

    with staged_file(args.out_file) as tmp:
        convert_sleuth_to_json(args.text_file, tmp)


def _run_neurosynth2nimare(args) -> None:
    from nimare_jax.io import convert_neurosynth_to_json
    from nimare_jax.workflows._staging import staged_file

    annotations = [
        {"features": features, "vocabulary": vocabulary}
        for features, vocabulary in args.annotations_file or ()
    ]
    with staged_file(args.out_file) as tmp:
        convert_neurosynth_to_json(
            args.coordinates_file, args.metadata_file, tmp, annotations or None
        )


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    """Run the ``nimare-jax`` command.

    Parameters
    ----------
    argv : list of str or None
        Arguments without the program name; None reads ``sys.argv``.

    Returns
    -------
    int
        Exit status: 0 on success, 1 for bad input, 2 for bad usage, 130 if interrupted.
    """
    args = _get_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default", UserWarning)
            warnings.showwarning = _show_warning
            args.run(args)
    except (NiMAREJaxError, ValueError, OSError) as exc:
        message = " ".join(str(exc).splitlines()) or type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

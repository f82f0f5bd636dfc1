"""The ``nimare-jax`` command: ALE with Monte Carlo FWE, and file conversions.

Every error is printed as one line, ``nimare-jax: error: <message>`` (at most
:data:`MAX_MESSAGE` characters), with exit status 2 for bad command-line usage (options,
numbers, prefixes, an output file that is an input) and 1 for everything else (bad input
files, an output folder that cannot be written, unexpected errors); no output file is left
behind. ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import warnings

from nimare_jax import __version__
from nimare_jax.exceptions import NiMAREJaxError
from nimare_jax.io import convert_neurosynth_to_json, convert_sleuth_to_json
from nimare_jax.workflows import ale_sleuth_workflow, conperm_workflow
from nimare_jax.workflows.arguments import (
    add_common_arguments,
    probability,
    run_workflow,
)
from nimare_jax.workflows.conperm import add_conperm_arguments
from nimare_jax.workflows.macm import add_macm_arguments, run_macm
from nimare_jax.workflows.metacluster import add_metacluster_arguments, run_metacluster
from nimare_jax.workflows.parcellate import add_parcellate_arguments, run_parcellate
from nimare_jax.workflows.peaks2maps import add_peaks2maps_arguments, run_peaks2maps
from nimare_jax.workflows.scale import add_scale_arguments, run_scale
from nimare_jax.workflows.staging import staged_file

PROG = "nimare-jax"
#: Longest error message printed (a message quoting a huge input line is cut).
MAX_MESSAGE = 500
_REPLACES = (
    " Files of an earlier run with the same names (same --prefix) in the output folder are "
    "replaced, all or nothing, once the run succeeded; other files are left alone."
)
_OUT_OF_MEMORY = (
    "out of memory. Memory grows with the input (experiments or images, times the mask's "
    "voxels) and with --n_cores (each core holds its own batch of permuted maps), not with "
    "--n_iters: analyse fewer experiments, use a smaller --n_cores, or a machine with more "
    "memory"
)


class _UsageError(Exception):
    """Bad command-line usage found after parsing (reported with exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """Argument parser whose usage errors are one line on stderr."""

    def error(self, message):
        """Print ``nimare-jax: error: <message>`` and exit with status 2."""
        self.exit(2, _error_line(f"{message} (see '{self.prog} --help')"))


def _error_line(message: str) -> str:
    """Return ``nimare-jax: error: <message>`` on one line, cut to :data:`MAX_MESSAGE`."""
    message = " ".join(message.split())
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return f"{PROG}: error: {message}\n"


def _get_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Neuroimaging meta-analysis with jit-compiled JAX numerics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    debug = "on an error, show the traceback instead of a one-line message"
    parser.add_argument("--debug", action="store_true", help=debug)
    common = argparse.ArgumentParser(add_help=False)  # --debug also after the command
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = functools.partial(sub.add_parser, parents=[common])

    ale = add(
        "ale",
        help="ALE meta-analysis with Monte Carlo FWE correction (writes maps and boilerplate)",
        description=(
            "Run an activation likelihood estimation (ALE) meta-analysis with voxel- and "
            "cluster-level Monte Carlo family-wise error correction, and write every map, "
            "table (with the cluster table and foci counts of the cluster-mass FWE map), a "
            "methods paragraph (boilerplate.txt), its references (references.bib) and an HTML "
            "report "
            "(report.html, self-contained and offline)." + _REPLACES
        ),
    )
    ale.add_argument("dataset", metavar="DATASET", help="Sleuth text file or NiMARE JSON file")
    add_common_arguments(ale, n_iters=10000)
    ale.add_argument(
        "--v_thr",
        type=probability,
        default=0.001,
        help="voxel-level p-value of the cluster-forming threshold (0.001)",
    )
    ale.add_argument(
        "--file2",
        metavar="SLEUTH2",
        default=None,
        help="second group's file: also run an ALE subtraction (DATASET minus SLEUTH2)",
    )
    ale.set_defaults(run=_run_ale)

    sleuth = add(
        "sleuth2nimare",
        help="convert a Sleuth text file to a NiMARE JSON dataset",
        description="Convert a Sleuth text file to a NiMARE JSON dataset. An existing "
        "out_file is replaced (it must not be the input file).",
    )
    sleuth.add_argument("text_file", help="Sleuth text file")
    sleuth.add_argument("out_file", help="output JSON file")
    sleuth.set_defaults(run=_run_sleuth2nimare)

    neurosynth = add(
        "neurosynth2nimare",
        help="convert Neurosynth database files to a NiMARE JSON dataset",
        description="Convert Neurosynth (version 7) database files to a NiMARE JSON dataset. "
        "An existing out_file is replaced (it must not be one of the input files).",
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

    conperm = add(
        "conperm",
        help="one-sample permutation test (sign flipping) of contrast images, voxel-level FWE",
        description="One-sample sign-flipping permutation test of contrast images with "
        "voxel-level Monte Carlo FWE correction; writes maps and boilerplate." + _REPLACES,
    )
    add_conperm_arguments(conperm)
    conperm.set_defaults(run=_run_conperm)

    metacluster = add(
        "metacluster",
        help="cluster experiments by their activation maps, for a range of cluster numbers",
        description="Meta-analytic clustering: group experiments by the similarity of their "
        "modelled-activation maps (or images) with scikit-learn for every number of clusters "
        "in a range; writes assignments, cluster-mean maps, silhouettes and boilerplate."
        + _REPLACES,
    )
    add_metacluster_arguments(metacluster)
    metacluster.set_defaults(run=run_metacluster)

    macm = add(
        "macm",
        help="meta-analytic coactivation modelling: ALE of the experiments active in a mask",
        description="Meta-analytic coactivation modelling (MACM): ALE with Monte Carlo FWE "
        "correction of the experiments with at least one focus inside a mask; writes maps, "
        "the selected experiments and boilerplate." + _REPLACES,
    )
    add_macm_arguments(macm)
    macm.set_defaults(run=run_macm)
    cbp = add(
        "cbp",
        help="meta-analytic parcellation of a region (CBP or MAMP) for several cluster numbers",
        description="Parcellate a region by the coactivation of its voxels (CBP: one "
        "meta-analysis per voxel of the experiments near it) or by their modelled activation "
        "across experiments (MAMP); writes a label image per number of clusters, the "
        "criteria (silhouette, split-half stability, hierarchy), a figure and boilerplate."
        + _REPLACES,
    )
    add_parcellate_arguments(cbp)
    cbp.set_defaults(run=run_parcellate)

    scale = add(
        "scale",
        help="SCALE: ALE against foci redrawn from a baseline pool, voxel-level FWE",
        description="Specific coactivation likelihood estimation (SCALE) with voxel-level "
        "Monte Carlo FWE correction; writes maps and boilerplate." + _REPLACES,
    )
    add_scale_arguments(scale)
    scale.set_defaults(run=run_scale)

    peaks2maps = add(
        "peaks2maps",
        help="reconstruct maps from peaks (network trained on simulated data), then a "
        "one-sample permutation test with voxel-level FWE",
        description="Reconstruct each experiment's unthresholded map from its peaks with a "
        "peaks2maps network trained on simulated data, then run a one-sample sign-flipping "
        "permutation test with voxel-level FWE correction; writes maps and boilerplate."
        + _REPLACES,
    )
    add_peaks2maps_arguments(peaks2maps)
    peaks2maps.set_defaults(run=run_peaks2maps)
    return parser


def _run_ale(args) -> None:
    run_workflow(
        ale_sleuth_workflow,
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
    conperm_workflow(
        args.contrast_images,
        mask_image=args.mask_image,
        output_dir=args.output_dir,
        prefix=args.prefix or "",
        n_iters=args.n_iters,
        random_state=args.random_state,
        n_cores=args.n_cores,
    )


def _refuse_overwriting_inputs(out_file, inputs) -> None:
    """Raise a usage error if ``out_file`` is one of ``inputs`` (also via links)."""
    for path in inputs:
        if os.path.exists(out_file) and os.path.exists(path) and os.path.samefile(out_file, path):
            raise _UsageError(
                f"the output file {out_file} is the input file {path}; it would be replaced: "
                "give another output file"
            )


def _run_sleuth2nimare(args) -> None:
    _refuse_overwriting_inputs(args.out_file, [args.text_file])
    with staged_file(args.out_file) as tmp:
        convert_sleuth_to_json(args.text_file, tmp)


def _run_neurosynth2nimare(args) -> None:
    pairs = args.annotations_file or ()
    inputs = [
        args.coordinates_file,
        args.metadata_file,
        *(path for pair in pairs for path in pair),
    ]
    _refuse_overwriting_inputs(args.out_file, inputs)
    annotations = [
        {"features": features, "vocabulary": vocabulary} for features, vocabulary in pairs
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
        Exit status: 0 on success, 1 for bad input or an unexpected error, 2 for bad usage
        (argparse's errors exit through :class:`SystemExit`), 130 if interrupted.
    """
    args = _get_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default", UserWarning)
            warnings.showwarning = _show_warning
            args.run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        status, message = _describe(exc, args.command)
        sys.stderr.write(_error_line(message))
        return status
    return 0


def _describe(exc: Exception, command: str) -> tuple[int, str]:
    """Return the exit status and one-line message of an error raised by a command."""
    if isinstance(exc, _UsageError):
        return 2, f"{exc} (see '{PROG} {command} --help')"
    if isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in str(exc):  # JAX's own
        return 1, _OUT_OF_MEMORY
    if isinstance(exc, NiMAREJaxError | ValueError | OSError):
        return 1, str(exc) or type(exc).__name__
    return 1, f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())

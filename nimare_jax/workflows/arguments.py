"""Command-line helpers shared by the workflows and ``nimare-jax``.

Argument types, options common to several commands, and :func:`run_workflow`, which runs a
workflow on the requested number of CPU devices.
"""

from __future__ import annotations

import argparse
import math

from nimare_jax.ops.permute import configure_cpu_devices


def number(kind, low, high=math.inf, what="a number"):
    """Return an argparse type accepting ``kind(text)`` strictly between ``low`` and ``high``.

    Parameters
    ----------
    kind : type
        ``int`` or ``float``.
    low, high : float
        Exclusive bounds.
    what : str
        Description used in the error message.

    Returns
    -------
    callable
        ``parse(text) -> kind``; raises :class:`argparse.ArgumentTypeError`.
    """

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not low < value < high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = number(int, 0, what="a positive whole number")
positive_float = number(float, 0, what="a positive number")
probability = number(float, 0, 1, what="a p-value between 0 and 1 (exclusive)")
random_seed = number(int, -1, 2**32, what="a whole number from 0 to 4294967295")


def file_prefix(text: str) -> str:
    """Argparse type of ``--prefix``: a bare file-name prefix, so files stay in the folder.

    Parameters
    ----------
    text : str
        The argument.

    Returns
    -------
    str
        The same.

    Raises
    ------
    argparse.ArgumentTypeError
        If it is empty, ``.`` or ``..``, or holds a path separator.
    """
    if text in ("", ".", "..") or any(sep in text for sep in "/\\"):
        raise argparse.ArgumentTypeError(
            f"expected a file-name prefix without a path separator (files are written into "
            f"--output_dir), got {text!r}"
        )
    return text


def add_prefix_argument(parser, default: str = "the input file's name") -> None:
    """Add ``--prefix`` (checked by :func:`file_prefix`; None if not given) to a parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Parser to extend.
    default : str
        What the help says is used without the option.
    """
    parser.add_argument(
        "--prefix", type=file_prefix, default=None, help=f"file-name prefix (default: {default})"
    )


def add_common_arguments(parser, n_iters: int = 5000) -> None:
    """Add the options shared by ``nimare-jax ale``, ``scale`` and ``macm`` to a parser.

    ``--output_dir``, ``--prefix``, ``--n_iters``, ``--fwhm``, ``--n_cores`` and ``--seed``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Parser to extend.
    n_iters : int
        Default number of Monte Carlo iterations.
    """
    parser.add_argument("--output_dir", metavar="PATH", default=".", help="output folder (.)")
    add_prefix_argument(parser)
    parser.add_argument(
        "--n_iters",
        type=positive_int,
        default=n_iters,
        help=f"Monte Carlo iterations ({n_iters})",
    )
    parser.add_argument(
        "--fwhm",
        type=positive_float,
        default=None,
        help="fixed kernel FWHM in mm (default: from each experiment's sample size)",
    )
    parser.add_argument(
        "--n_cores", type=positive_int, default=1, help="devices for the permutations (1)"
    )
    parser.add_argument("--seed", type=random_seed, default=0, help="seed of the permutations (0)")


def run_workflow(workflow, n_cores: int, output_dir, *args, **kwargs) -> None:
    """Run a workflow for the command line: expose cores as devices, run, print a summary.

    Parameters
    ----------
    workflow : callable
        A function of :mod:`nimare_jax.workflows` returning ``(result, files)``.
    n_cores : int
        CPU cores to expose as JAX devices; this takes effect because JAX starts its backend
        only at the first computation (importing nimare_jax computes nothing).
    output_dir : str or pathlib.Path
        Output folder (passed on as ``output_dir``).
    *args, **kwargs
        The workflow's other arguments.
    """
    configure_cpu_devices(n_cores)
    result, files = workflow(*args, output_dir=output_dir, n_cores=n_cores, **kwargs)
    print(result.boilerplate())
    print(f"Wrote {len(files)} files to {output_dir}")

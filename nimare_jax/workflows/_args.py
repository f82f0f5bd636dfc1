"""Argument types shared by the command-line parsers of the workflows and ``nimare-jax``."""

from __future__ import annotations

import argparse
import math


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


def run_workflow(workflow_name: str, n_cores: int, output_dir, *args, **kwargs) -> None:
    """Run a workflow for the command line: expose cores as devices, run, print a summary.

    Parameters
    ----------
    workflow_name : str
        Name of a function in :mod:`nimare_jax.workflows` returning ``(result, files)``.
    n_cores : int
        CPU cores to expose as JAX devices; set before JAX starts its backend, which is
        why the workflows are imported only after it.
    output_dir : str or pathlib.Path
        Output folder (passed on as ``output_dir``).
    *args, **kwargs
        The workflow's other arguments.
    """
    from nimare_jax.ops.permute import configure_cpu_devices

    configure_cpu_devices(n_cores)
    import nimare_jax.workflows

    workflow = getattr(nimare_jax.workflows, workflow_name)
    result, files = workflow(*args, output_dir=output_dir, n_cores=n_cores, **kwargs)
    print(result.boilerplate())
    print(f"Wrote {len(files)} files to {output_dir}")

"""nimare_jax: neuroimaging meta-analysis with jit-compiled JAX numerics.

Importing the package turns on JAX's persistent compilation cache, so a new process reuses
the programs an earlier one compiled (the first fit in a fresh process skips most of its
compilation). The cache lives in ``$NIMARE_JAX_CACHE_DIR``, else
``$XDG_CACHE_HOME/nimare_jax/jax`` (``~/.cache/nimare_jax/jax``); set
``NIMARE_JAX_CACHE_DIR=off`` to turn it off. A cache folder already configured for JAX
(``JAX_COMPILATION_CACHE_DIR``) is left as it is.
"""

import os
from pathlib import Path

import jax

__version__ = "0.1.0"


def _enable_compilation_cache() -> None:
    """Point JAX's persistent compilation cache at the user cache folder (see module doc)."""
    if jax.config.jax_compilation_cache_dir:
        return
    folder = os.environ.get("NIMARE_JAX_CACHE_DIR")
    if folder is None:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = str(Path(base) / "nimare_jax" / "jax")
    if folder.strip().lower() in {"", "0", "off", "false", "no"}:
        return
    jax.config.update("jax_compilation_cache_dir", folder)
    # Cache every program: JAX's default (> 1 s) misses most of ours, which compile in
    # 0.01-1 s each but add up (laird's first ALE fit: 4.5 s uncached, 1.5 s cached).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


_enable_compilation_cache()

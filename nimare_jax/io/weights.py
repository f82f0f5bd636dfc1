"""Network weights <-> ``.npz`` files: the peaks2maps parameters, bundled or trained.

Parameters are the pytree of :mod:`nimare_jax.ops.unet` (``{layer: {"w": ..., "b": ...}}``);
a file stores each leaf as ``"{layer}/{name}"`` and scalar training metadata as
``"meta/{name}"``. The bundled weights are ``resources/peaks2maps/peaks2maps_weights.npz``
(model card beside them).
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from nimare_jax.spatial import get_resource_path

__all__ = ["default_weights_path", "load_params", "load_weights", "save_params"]


def default_weights_path() -> Path:
    """Path of the bundled network weights (``resources/peaks2maps/peaks2maps_weights.npz``).

    Returns
    -------
    pathlib.Path
        The ``.npz`` file.
    """
    return get_resource_path() / "peaks2maps" / "peaks2maps_weights.npz"


@lru_cache(maxsize=4)
def load_weights(path=None):
    """Load (and cache) network parameters.

    Parameters
    ----------
    path : str, os.PathLike or None
        Weights file; None uses :func:`default_weights_path`.

    Returns
    -------
    params : dict
        Network parameters.
    metadata : dict
        Training metadata stored with them.
    """
    path = default_weights_path() if path is None else Path(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"peaks2maps weights not found: {path}")
    return load_params(path)


def save_params(params: dict, path, **metadata) -> None:
    """Write parameters (and scalar metadata) to a compressed ``.npz`` file.

    Parameters
    ----------
    params : dict
        Network parameters.
    path : str or os.PathLike
        Output file.
    **metadata
        Extra scalars or small arrays stored under ``meta/<name>``.
    """
    flat = {f"{layer}/{k}": np.asarray(v) for layer, d in params.items() for k, v in d.items()}
    flat.update({f"meta/{k}": np.asarray(v) for k, v in metadata.items()})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **flat)
    Path(path).write_bytes(buffer.getvalue())


def load_params(path) -> tuple[dict, dict]:
    """Read parameters written by :func:`save_params`.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npz`` file.

    Returns
    -------
    params : dict
        Network parameters as JAX arrays.
    metadata : dict
        The stored metadata (NumPy values).
    """
    params, meta = {}, {}
    with np.load(path) as data:
        for name in data.files:
            group, key = name.split("/", 1)
            if group == "meta":
                meta[key] = data[name][()]
            else:
                params.setdefault(group, {})[key] = jnp.asarray(data[name])
    return params, meta

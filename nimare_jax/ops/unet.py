"""The peaks2maps network, a small 3-D U-Net, as pure functions: parameters are a pytree.

The architecture follows the idea of Freyberg et al. (2018), scaled down so it trains on a
laptop CPU. The 32^3 input has four channels: the peak indicator image, the same image
blurred by fixed (not learned) Gaussians of 1 and 2 voxels' standard deviation (so every
layer sees where the peaks are and how dense they are), and the coarse brain mask. It is
folded losslessly into a 16^3 grid of 32 channels (space-to-depth, 2x2x2 blocks), so no
convolution runs at full resolution. A U-Net with three resolution levels (16^3, 8^3, 4^3;
3x3x3 convolutions with ReLU, 2x average-pool down, nearest-neighbour up-sampling, skip
connections by concatenation) ends in a linear 3x3x3 convolution to 8 channels that are
unfolded (depth-to-space) into the 32^3 output: the predicted unthresholded z map, set to 0
outside the mask. Parameters are read and written by :mod:`nimare_jax.io.weights`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CHANNELS", "apply", "features", "init", "n_parameters"]

CHANNELS = (16, 32, 64)
IN_CHANNELS = 4
BLUR_SIGMAS = (1.0, 2.0)  # voxels
_DIMS = ("NDHWC", "DHWIO", "NDHWC")


def _conv_params(key, k, c_in, c_out):
    std = np.sqrt(2.0 / (k**3 * c_in))  # He initialisation for ReLU
    w = std * jax.random.normal(key, (k, k, k, c_in, c_out), jnp.float32)
    return {"w": w, "b": jnp.zeros((c_out,), jnp.float32)}


def _layout(channels=CHANNELS, in_channels=IN_CHANNELS):
    c1, c2, c3 = channels
    return {
        "enc1": (3, 8 * in_channels, c1),
        "enc2a": (3, c1, c2),
        "enc2b": (3, c2, c2),
        "bota": (3, c2, c3),
        "botb": (3, c3, c3),
        "dec2a": (3, c3 + c2, c2),
        "dec2b": (3, c2, c2),
        "head": (3, c2 + c1, 8),
    }


def init(key, channels=CHANNELS) -> dict:
    """Initialise the network's parameters.

    Parameters
    ----------
    key : jax.Array
        PRNG key.
    channels : tuple of 3 int
        Feature channels at the three resolution levels.

    Returns
    -------
    dict of str to dict
        ``{layer: {"w": (k, k, k, c_in, c_out), "b": (c_out,)}}``.
    """
    layout = _layout(tuple(channels))
    keys = jax.random.split(key, len(layout))
    return {
        name: _conv_params(k, *shape)
        for k, (name, shape) in zip(keys, layout.items(), strict=True)
    }


def _conv(p, x):
    y = jax.lax.conv_general_dilated(x, p["w"], (1, 1, 1), "SAME", dimension_numbers=_DIMS)
    return y + p["b"]


def _block(params, a, b, x):
    return jax.nn.relu(_conv(params[b], jax.nn.relu(_conv(params[a], x))))


def _down(x):
    n, d, h, w, c = x.shape
    return x.reshape(n, d // 2, 2, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4, 6))


def _blur(x, sigma):
    """Separable Gaussian blur (peak value 1 per isolated peak) of (n, d, h, w) volumes."""
    r = int(np.ceil(3 * sigma))
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    y = x[..., None]
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[axis] = 2 * r + 1
        y = jax.lax.conv_general_dilated(
            y, jnp.asarray(g.reshape(shape)), (1, 1, 1), "SAME", dimension_numbers=_DIMS
        )
    return y[..., 0]


def features(peaks, mask) -> jax.Array:
    """Compute the network's input channels from peak images and the mask.

    Parameters
    ----------
    peaks : array, shape (n, 32, 32, 32)
        Peak indicator images.
    mask : array, shape (32, 32, 32)
        Coarse brain mask (0/1).

    Returns
    -------
    jax.Array, shape (n, 32, 32, 32, 4)
        Peaks, peaks blurred by each of ``BLUR_SIGMAS``, and the mask.
    """
    peaks = jnp.asarray(peaks, jnp.float32)
    mask = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), peaks.shape)
    return jnp.stack([peaks, *(_blur(peaks, s) for s in BLUR_SIGMAS), mask], axis=-1)


def _space_to_depth(x):
    n, d, h, w, c = x.shape
    x = x.reshape(n, d // 2, 2, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(n, d // 2, h // 2, w // 2, 8 * c)


def _depth_to_space(x):
    n, d, h, w, _ = x.shape
    x = x.reshape(n, d, h, w, 2, 2, 2).transpose(0, 1, 4, 2, 5, 3, 6)
    return x.reshape(n, 2 * d, 2 * h, 2 * w)


def _up(x):
    for axis in (1, 2, 3):
        x = jnp.repeat(x, 2, axis=axis)
    return x


def apply(params: dict, peaks, mask) -> jax.Array:
    """Predict z maps from peak images.

    Parameters
    ----------
    params : dict
        Network parameters (from :func:`init` or :func:`load_params`).
    peaks : array, shape (n, 32, 32, 32)
        Peak indicator images on the coarse grid.
    mask : array, shape (32, 32, 32)
        Coarse brain mask (0/1).

    Returns
    -------
    jax.Array, shape (n, 32, 32, 32)
        Predicted maps, 0 outside the mask.
    """
    mask = jnp.asarray(mask, jnp.float32)
    x = features(peaks, mask)
    e1 = jax.nn.relu(_conv(params["enc1"], _space_to_depth(x)))
    e2 = _block(params, "enc2a", "enc2b", _down(e1))
    b = _block(params, "bota", "botb", _down(e2))
    d2 = _block(params, "dec2a", "dec2b", jnp.concatenate([_up(b), e2], axis=-1))
    out = _conv(params["head"], jnp.concatenate([_up(d2), e1], axis=-1))
    return _depth_to_space(out) * mask


def n_parameters(params) -> int:
    """Count the scalar parameters.

    Parameters
    ----------
    params : pytree
        Network parameters.

    Returns
    -------
    int
        Total size of all leaves.
    """
    return int(sum(np.size(v) for v in jax.tree_util.tree_leaves(params)))

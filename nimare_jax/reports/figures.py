"""Static report figures as PNG bytes: brain maps, foci, contribution heat maps.

Every function returns the PNG file's bytes (for embedding in a page as base64) and, given
``out_filename``, also writes them there. Figures are drawn on their own
:class:`matplotlib.figure.Figure` (no pyplot state, any backend) with nilearn's plotting
functions; nilearn's MNI152 background ships with nilearn, so nothing is downloaded.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from nilearn import datasets, plotting

__all__ = ["plot_coordinates", "plot_heatmap", "plot_static_brain"]

#: Resolution of the report's figures (dots per inch).
DPI = 72


def _png(fig: Figure, out_filename=None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor=fig.get_facecolor())
    data = buf.getvalue()
    if out_filename is not None:
        Path(out_filename).write_bytes(data)
    return data


def plot_static_brain(img, out_filename=None, threshold: float = 1e-6, title=None) -> bytes:
    """Draw a statistical map on axial slices of the MNI152 template (2 mm).

    Parameters
    ----------
    img : nibabel.Nifti1Image
        3-D map.
    out_filename : str, os.PathLike or None
        Also write the PNG there.
    threshold : float
        Values with ``abs(value) <= threshold`` are transparent.
    title : str or None
        Title drawn on the figure.

    Returns
    -------
    bytes
        The PNG file.
    """
    data = np.asanyarray(img.dataobj)
    fig = Figure(figsize=(12, 2.4))
    vmax = float(np.nanmax(np.abs(data))) if data.size else 0.0
    if not np.isfinite(vmax) or vmax <= threshold:
        vmax = threshold + 1.0  # nothing above threshold: an empty (but valid) overlay
    with warnings.catch_warnings():  # e.g. "empty mask" when nothing exceeds the threshold
        warnings.simplefilter("ignore", UserWarning)
        _stat_map(img, threshold, fig, vmax, title)
    return _png(fig, out_filename)


def _stat_map(img, threshold: float, fig: Figure, vmax: float, title) -> None:
    plotting.plot_stat_map(
        img,
        threshold=threshold,
        display_mode="z",
        cut_coords=_cuts(img, threshold),
        figure=fig,
        vmax=vmax,
        title=title,
        annotate=True,
        draw_cross=False,
        bg_img=datasets.load_mni152_template(resolution=2),
    )  # the figure is not pyplot's: nothing to close


def _cuts(img, threshold: float, n: int = 8) -> list[float]:
    """Axial cuts (mm) spread over the slices holding supra-threshold voxels (else the volume)."""
    data = np.abs(np.nan_to_num(np.asanyarray(img.dataobj, dtype=float)))
    if data.ndim == 4:
        data = data[..., 0]
    ks = np.flatnonzero((data > threshold).any(axis=(0, 1)))
    if ks.size == 0:
        ks = np.arange(data.shape[2])
    picks = np.unique(np.linspace(ks.min(), ks.max(), n).round().astype(int))
    return [float((img.affine @ np.array([0.0, 0.0, k, 1.0]))[2]) for k in picks]


def plot_coordinates(xyz, out_filename=None, max_coordinates: int = 2000) -> bytes:
    """Draw foci on a glass brain.

    Parameters
    ----------
    xyz : array-like, shape (n, 3)
        MNI coordinates in mm.
    out_filename : str, os.PathLike or None
        Also write the PNG there.
    max_coordinates : int
        At most this many foci are drawn (evenly spaced through the list).

    Returns
    -------
    bytes
        The PNG file.
    """
    xyz = np.asarray(xyz, float).reshape(-1, 3)
    if len(xyz) > max_coordinates:
        xyz = xyz[np.linspace(0, len(xyz) - 1, max_coordinates).astype(int)]
    fig = Figure(figsize=(7, 2.6))
    display = plotting.plot_glass_brain(None, figure=fig, display_mode="ortho")
    if len(xyz):
        display.add_markers(xyz, marker_color="tab:red", marker_size=6)
    return _png(fig, out_filename)  # the figure is not pyplot's: nothing to close


def plot_heatmap(table: pd.DataFrame, out_filename=None, cmap: str = "Reds") -> bytes:
    """Draw a table of experiments by clusters (column ``id`` labels the rows) as a heat map.

    Parameters
    ----------
    table : pandas.DataFrame
        Contribution table of a diagnostic: ``id`` and one numeric column per cluster.
    out_filename : str, os.PathLike or None
        Also write the PNG there.
    cmap : str
        Matplotlib colour map.

    Returns
    -------
    bytes
        The PNG file.
    """
    frame = table.set_index("id") if "id" in table.columns else table
    values = frame.to_numpy(float)
    n_rows, n_cols = values.shape
    fig = Figure(figsize=(min(2.5 + 0.35 * n_cols, 16), min(1.5 + 0.22 * n_rows, 30)))
    ax = fig.add_subplot()
    image = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_xticks(range(n_cols), [str(c).replace("Tail ", " ") for c in frame.columns])
    ax.set_yticks(range(n_rows), [str(i) for i in frame.index])
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.tick_params(axis="y", labelsize=7)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return _png(fig, out_filename)

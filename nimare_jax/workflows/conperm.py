"""The ``conperm`` workflow: a one-sample sign-flipping permutation test of contrast images.

``nimare-jax conperm FILE [FILE ...] [--output_dir DIR] [--prefix P] [--n_iters 10000]``
takes one 4-D image (one volume per study) or several 3-D images, runs
:class:`~nimare_jax.meta.ibma.PermutedOLS` with voxel-level FWE correction by sign flipping,
and writes the maps (``{prefix}_{name}.nii.gz``), the cluster table of the voxel-level FWE
z map (``..._tab-clust.tsv``), a methods paragraph (``{prefix}_boilerplate.txt``) and an
HTML report (``{prefix}_report.html``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nimare_jax.correct import FWECorrector
from nimare_jax.exceptions import ImageError
from nimare_jax.io.images import load_image, mask_image
from nimare_jax.meta.ibma import PermutedOLS
from nimare_jax.spatial import load_mask
from nimare_jax.workflows.arguments import add_prefix_argument, positive_int, random_seed
from nimare_jax.workflows.base import add_cluster_tables, write_outputs
from nimare_jax.workflows.staging import staged_dir

__all__ = ["add_conperm_arguments", "conperm_workflow"]


def _load_contrasts(contrast_images, mask_img):
    rows, names = [], []
    for path in contrast_images:
        img = load_image(path, f"contrast image {path}")
        if len(img.shape) == 4 and img.shape[3] > 1:
            data = np.asanyarray(img.dataobj)
            for v in range(img.shape[3]):
                vol = type(img)(data[..., v], img.affine, img.header)
                what = f"volume {v} of {path}"
                rows.append(mask_image(vol, mask_img, what))
                names.append(f"{Path(str(path)).name}[{v}]")
        else:
            rows.append(mask_image(img, mask_img, f"contrast image {path}"))
            names.append(Path(str(path)).name)
    if len(rows) < 2:
        raise ImageError(
            f"conperm needs at least 2 contrast images (a 4-D file or several 3-D files), "
            f"got {len(rows)}"
        )
    return np.stack(rows), names


def conperm_workflow(
    contrast_images,
    mask_image=None,
    output_dir=None,
    prefix: str = "",
    n_iters: int = 10000,
    random_state=42,
    n_cores: int = 1,
):
    """Run a one-sample permutation test on contrast images and write the results.

    Parameters
    ----------
    contrast_images : str, pathlib.Path or list
        One 4-D image (volumes = studies) or a list of 3-D images.
    mask_image : str, pathlib.Path or nibabel image, optional
        Mask (default: the ``mni152_2mm`` brain mask). Images on other grids are resampled.
    output_dir : str or pathlib.Path, optional
        Where to write maps (default: the current directory).
    prefix : str
        File-name prefix.
    n_iters : int
        Sign-flip iterations (default 10000).
    random_state : int or None
        Seed.
    n_cores : int
        Devices for the permutation engine (-1: all).

    Returns
    -------
    nimare_jax.results.MetaResult
        Maps ``t``, ``z``, ``p``, ``logp``, ``dof`` and the voxel-level FWE maps.
    """
    if isinstance(contrast_images, str | Path):
        contrast_images = [contrast_images]
    with staged_dir(output_dir or ".") as tmp:  # checks the output folder before the work
        mask_img = load_mask("mni152_2mm" if mask_image is None else mask_image)
        data, names = _load_contrasts(list(contrast_images), mask_img)
        est = PermutedOLS(two_sided=True, random_state=random_state)
        result = est.fit_arrays({"beta": data}, mask_img, ids=names)
        corrector = FWECorrector(method="montecarlo", n_iters=n_iters, n_cores=n_cores)
        result = add_cluster_tables(corrector.transform(result))
        result.corrector = corrector
        result.description = (
            f"A one-sample permutation test was performed with nimare_jax on {len(names)} "
            "contrast images. " + result.description
        )
        write_outputs(result, tmp, prefix)
    return result


def add_conperm_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``conperm`` arguments to a parser (for the ``nimare-jax`` CLI).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        Parser (or sub-parser) to extend.

    Returns
    -------
    argparse.ArgumentParser
        The same parser.
    """
    parser.add_argument("contrast_images", nargs="+", help="4-D image or 3-D images")
    parser.add_argument("--mask", dest="mask_image", default=None, help="mask image")
    parser.add_argument("--output_dir", default=None, help="output folder (.)")
    add_prefix_argument(parser, "none")
    parser.add_argument(
        "--n_iters", type=positive_int, default=10000, help="sign-flip iterations (10000)"
    )
    parser.add_argument("--n_cores", type=positive_int, default=1, help="devices (1)")
    parser.add_argument(
        "--seed", dest="random_state", type=random_seed, default=42, help="seed (42)"
    )
    return parser

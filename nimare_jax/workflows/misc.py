"""Small workflows on images: :func:`conjunction_analysis` (NiMARE's ``workflows.misc``)."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from nimare_jax.spatial import load_image

__all__ = ["conjunction_analysis"]


def conjunction_analysis(imgs) -> nib.Nifti1Image:
    """Minimum-statistic conjunction of statistical images (Nichols et al. 2005).

    Parameters
    ----------
    imgs : list of 3-D nibabel images or paths
        At least two images on the same grid.

    Returns
    -------
    nibabel.Nifti1Image
        The voxel-wise minimum where every image is positive, 0 elsewhere, on the first
        image's grid. (NiMARE keeps the minimum where the product of the images is positive,
        which also admits voxels where an even number of images is negative; nimare_jax
        keeps only the voxels active in every image.)

    Raises
    ------
    ValueError
        With fewer than two images, an input that is neither an image nor a path, or
        images that are not 3-D or not on the same grid.
    """
    if len(imgs) < 2:
        raise ValueError(f"a conjunction needs at least two images, got {len(imgs)}")
    loaded = []
    for n, img in enumerate(imgs):
        if isinstance(img, str | bytes) or hasattr(img, "__fspath__"):
            img = load_image(img, what=f"conjunction image {n}")
        elif not isinstance(img, nib.spatialimages.SpatialImage):
            raise ValueError(
                f"conjunction image {n} must be a NIfTI image or a path, got {type(img).__name__}"
            )
        data = np.squeeze(np.asanyarray(img.dataobj))
        if data.ndim != 3:
            raise ValueError(f"conjunction image {n} must be 3-D, got shape {img.shape}")
        loaded.append((data, img.affine))
    shape, affine = loaded[0][0].shape, loaded[0][1]
    for n, (data, aff) in enumerate(loaded[1:], start=1):
        if data.shape != shape or not np.allclose(aff, affine):
            raise ValueError(f"conjunction image {n} is not on the grid of image 0")
    stack = np.stack([d for d, _ in loaded]).astype(np.float64)
    out = np.where((stack > 0).all(axis=0), stack.min(axis=0), 0.0)
    return nib.Nifti1Image(out, affine)

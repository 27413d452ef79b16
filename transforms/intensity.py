"""Intensity augmentation: MONAI's own random intensity transforms, on the image only.

Nothing is rewritten here; this module only picks MONAI transforms and defaults that
suit a tomogram patch normalised to zero mean and unit standard deviation. They touch
the image key only, never keypoints or the heatmap. MONAI returns a ``MetaTensor``
(on the image's device); the keypoint transforms and the renderer accept it.
"""

from __future__ import annotations

from typing import Sequence

from monai.config import KeysCollection
from monai.transforms import (
    RandAdjustContrastd,
    RandCoarseDropoutd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

__all__ = ["default_intensity_transforms"]


def default_intensity_transforms(
    keys: KeysCollection = "image",
    prob: float = 0.3,
    noise_std: float = 0.1,
    scale_factors: float = 0.1,
    shift_offsets: float = 0.1,
    gamma: tuple[float, float] = (0.7, 1.5),
    smooth_sigma: tuple[float, float] = (0.25, 1.0),
    dropout_holes: int = 2,
    dropout_size: int | Sequence[int] = 8,
    dropout_prob: float = 0.2,
) -> list:
    """MONAI intensity transforms for a normalised image, in a sensible order.

    Args:
        keys: image keys (only images: never the heatmap).
        prob: probability of each of noise, scale, shift, contrast and smoothing.
        noise_std: upper bound of the Gaussian noise std (``RandGaussianNoised``, in image units).
        scale_factors: ``RandScaleIntensityd`` factors: intensity times ``1 + U(-f, f)``.
        shift_offsets: ``RandShiftIntensityd`` offsets: plus ``U(-o, o)``.
        gamma: ``RandAdjustContrastd`` gamma range (mean and std retained).
        smooth_sigma: ``RandGaussianSmoothd`` sigma range in voxels, each axis.
        dropout_holes: ``RandCoarseDropoutd`` number of holes (filled with 0, the normalised mean).
        dropout_size: ``RandCoarseDropoutd`` hole size in voxels.
        dropout_prob: ``RandCoarseDropoutd`` probability.

    Returns:
        A list of MONAI dictionary transforms (put them in a ``Compose``).

    Example:
        >>> from monai.transforms import Compose
        >>> t = Compose(default_intensity_transforms("image", prob=0.3))
    """
    return [
        RandGaussianNoised(keys, prob=prob, std=noise_std),
        RandScaleIntensityd(keys, factors=scale_factors, prob=prob),
        RandShiftIntensityd(keys, offsets=shift_offsets, prob=prob),
        RandAdjustContrastd(keys, prob=prob, gamma=gamma, retain_stats=True),
        RandGaussianSmoothd(keys, sigma_x=smooth_sigma, sigma_y=smooth_sigma, sigma_z=smooth_sigma, prob=prob),
        RandCoarseDropoutd(keys, holes=dropout_holes, spatial_size=dropout_size, fill_value=0.0, prob=dropout_prob),
    ]

"""The default training and validation pipelines: spatial (exact on keypoints) + intensity + render.

Training::

    [EnsureTyped to `device`]  (only when a device is given: then everything below runs
                                on it, CuPy for CUDA)
    [RandKeypointSpatialCropd] (only when roi_size is given)
    RandKeypointFlipd x 3      (one per axis, independent)
    RandKeypointRotate90d      (quarter turns in the y-x plane; z is the missing-wedge axis)
    RandKeypointAffined        (one resampling; rotation, scale, shear, translation)
    MONAI intensity transforms (image only)
    RenderHeatmapd             (heatmap drawn from the moved keypoints)

Quarter turns in the y-x plane swap the y and x lengths: batch patches whose y and x
sizes are equal (or set ``rot90_prob=0``). Validation renders the heatmap only. Both
return a ``monai.transforms.Compose``, usable from a bundle as
``_target_: cryo3d_transforms.default_train_transforms``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from monai.transforms import Compose, EnsureTyped

from cryo3d_transforms.crop import RandKeypointSpatialCropd
from cryo3d_transforms.flips import RandKeypointFlipd, RandKeypointRotate90d
from cryo3d_transforms.intensity import default_intensity_transforms
from cryo3d_transforms.keypoints import DEFAULT_MARGIN_SIGMAS, KeypointKeys
from cryo3d_transforms.render import RenderHeatmapd
from cryo3d_transforms.spatial import RandKeypointAffined

__all__ = ["default_train_transforms", "default_val_transforms"]


def _to_device(image_key: str, device: Any) -> list:
    if device is None:
        return []
    return [EnsureTyped(keys=image_key, data_type="tensor", dtype=torch.float32, device=device, track_meta=False)]


def default_train_transforms(
    roi_size: Sequence[int] | None = None,
    flip_prob: float = 0.5,
    rot90_prob: float = 0.5,
    affine_prob: float = 0.8,
    rotate_range: Any = (math.pi, 0.15, 0.15),
    scale_range: Any = (0.1, 0.1, 0.1),
    shear_range: Any = None,
    translate_range: Any = (4, 4, 4),
    isotropic_scale: bool = False,
    uniform_rotation: bool = False,
    transform_covariance: bool = False,
    padding_mode: str = "zeros",
    margin_sigmas: float | None = DEFAULT_MARGIN_SIGMAS,
    intensity: bool = True,
    intensity_prob: float = 0.3,
    ds_sigma: Sequence[float] | None = None,
    ds_factor: int | None = None,
    device: Any = None,
    keypoint_keys: KeypointKeys | Mapping[str, str] | None = None,
) -> Compose:
    """The default training transforms for a patch sample dictionary.

    Args:
        roi_size: crop a random window of this size first (patches stored larger than
            the network input); ``None`` keeps the patch.
        flip_prob: probability of a flip, per axis.
        rot90_prob: probability of 1-3 quarter turns in the y-x plane.
        affine_prob: probability of the random affine.
        rotate_range: :class:`cryo3d_transforms.RandKeypointAffined` (MONAI ``RandAffine``
            meaning); the default turns freely about z and tilts up to 0.15 rad about y and x.
        scale_range: as ``rotate_range``; the default scales each axis by up to 10 %.
        shear_range: as ``rotate_range``; none by default.
        translate_range: as ``rotate_range``, in voxels; the default shifts up to 4 voxels.
        isotropic_scale: one scale factor for all axes.
        uniform_rotation: draw the rotation uniformly from SO(3).
        transform_covariance: let each Gaussian follow the affine (anisotropic targets).
        padding_mode: padding of the affine warp (``"zeros"``, ``"border"``, ``"reflection"``).
        margin_sigmas: border margin for dropping keypoints, in standard deviations.
        intensity: add MONAI's intensity transforms.
        intensity_prob: probability of each intensity transform.
        ds_sigma: overrides the samples' ``ds_sigma`` (downsampled voxels).
        ds_factor: overrides the samples' ``ds_factor``.
        device: e.g. ``"cuda:0"``: move the image there first, so that every spatial
            transform and the renderer run on the GPU (CuPy); ``None`` stays on the CPU.
        keypoint_keys: field names (:class:`cryo3d_transforms.KeypointKeys`; ``None``: defaults).

    Returns:
        A ``monai.transforms.Compose`` (``set_random_state`` seeds every step).

    Example:
        ``{_target_: cryo3d_transforms.default_train_transforms, flip_prob: 0.5, affine_prob: 0.8}``
        in a bundle.
    """
    keys = KeypointKeys.of(keypoint_keys)
    image_key = keys.image
    kw = dict(margin_sigmas=margin_sigmas, ds_sigma=ds_sigma, ds_factor=ds_factor, keypoint_keys=keys)
    ts: list = _to_device(image_key, device)
    if roi_size is not None:
        ts.append(RandKeypointSpatialCropd(image_key, roi_size=roi_size, **kw))
    if flip_prob > 0:
        ts += [RandKeypointFlipd(image_key, prob=flip_prob, spatial_axis=a, **kw) for a in range(3)]
    if rot90_prob > 0:
        ts.append(RandKeypointRotate90d(image_key, prob=rot90_prob, max_k=3, spatial_axes=(1, 2), **kw))
    if affine_prob > 0:
        ts.append(
            RandKeypointAffined(
                image_key,
                prob=affine_prob,
                rotate_range=rotate_range,
                shear_range=shear_range,
                translate_range=translate_range,
                scale_range=scale_range,
                isotropic_scale=isotropic_scale,
                uniform_rotation=uniform_rotation,
                padding_mode=padding_mode,
                transform_covariance=transform_covariance,
                **kw,
            )
        )
    if intensity:
        ts += default_intensity_transforms(image_key, prob=intensity_prob)
    ts.append(RenderHeatmapd(image_key, ds_sigma=ds_sigma, ds_factor=ds_factor, keypoint_keys=keys))
    return Compose(ts)


def default_val_transforms(
    use_precomputed: bool = False,
    device: Any = None,
    keypoint_keys: KeypointKeys | Mapping[str, str] | None = None,
    ds_sigma: Sequence[float] | None = None,
    ds_factor: int | None = None,
) -> Compose:
    """Validation transforms: render the heatmap (no augmentation).

    Args:
        use_precomputed: keep a heatmap already stored in the sample (the patch store's
            cheap path) instead of rendering it again.
        device: as :func:`default_train_transforms`.
        keypoint_keys: as :func:`default_train_transforms`.
        ds_sigma: as :func:`default_train_transforms`.
        ds_factor: as :func:`default_train_transforms`.

    Returns:
        A ``monai.transforms.Compose``.

    Example:
        ``{_target_: cryo3d_transforms.default_val_transforms, use_precomputed: true}``
    """
    keys = KeypointKeys.of(keypoint_keys)
    render = RenderHeatmapd(
        keys.image, ds_sigma=ds_sigma, ds_factor=ds_factor, overwrite=not use_precomputed, keypoint_keys=keys
    )
    return Compose(_to_device(keys.image, device) + [render])

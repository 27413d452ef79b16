"""Keypoint-aware MONAI transforms for cryo3d (``_target_: cryo3d_transforms.<Name>`` in bundles).

Every spatial augmentation moves the sample's keypoints exactly with the image, and the
heatmap is rendered again from them at the end (:class:`RenderHeatmapd`): nothing ever
interpolates a heatmap. Intensity augmentation is MONAI's own, on the image only.
Batch-level MixUp / CutMix / CutMixUp work on collated torch tensors on the training
device. The same code runs on NumPy/SciPy (CPU) and CuPy/cupyx (GPU), by where the image
lives.

Modules: :mod:`~cryo3d_transforms.affine` (matrices, point maps, warp), :mod:`~cryo3d_transforms.spatial`
(random / fixed affine), :mod:`~cryo3d_transforms.flips` (flips, quarter turns),
:mod:`~cryo3d_transforms.crop` (crops, integer shifts), :mod:`~cryo3d_transforms.render` (heatmap),
:mod:`~cryo3d_transforms.intensity`, :mod:`~cryo3d_transforms.mixing`, :mod:`~cryo3d_transforms.pipeline`
(default pipelines), :mod:`~cryo3d_transforms.keypoints` / :mod:`~cryo3d_transforms.keypoint_transform` (shared
keypoint rules), :mod:`~cryo3d_transforms.arrays` (array types).
"""

from cryo3d_transforms.affine import affine_point_map, compose_affine, warp_image
from cryo3d_transforms.crop import KeypointSpatialCropd, KeypointWindow, RandKeypointShiftd, RandKeypointSpatialCropd
from cryo3d_transforms.flips import (
    KeypointFlip,
    KeypointFlipd,
    KeypointRotate90,
    KeypointRotate90d,
    RandKeypointFlipd,
    RandKeypointRotate90d,
)
from cryo3d_transforms.intensity import default_intensity_transforms
from cryo3d_transforms.mixing import (
    BatchMixer,
    CutMix,
    CutMixUp,
    MixUp,
    PrepareMixedBatch,
    collate_keypoints,
    cutmix,
    cutmixup,
    mixup,
    render_batch_heatmap,
)
from cryo3d_transforms.pipeline import default_train_transforms, default_val_transforms
from cryo3d_transforms.render import RenderHeatmap, RenderHeatmapd, render_sample_heatmap
from cryo3d_transforms.spatial import KeypointAffine, KeypointAffined, RandKeypointAffine, RandKeypointAffined

__all__ = [
    "affine_point_map",
    "compose_affine",
    "warp_image",
    "KeypointAffine",
    "RandKeypointAffine",
    "KeypointAffined",
    "RandKeypointAffined",
    "KeypointFlip",
    "KeypointRotate90",
    "KeypointFlipd",
    "RandKeypointFlipd",
    "KeypointRotate90d",
    "RandKeypointRotate90d",
    "KeypointWindow",
    "KeypointSpatialCropd",
    "RandKeypointSpatialCropd",
    "RandKeypointShiftd",
    "RenderHeatmap",
    "RenderHeatmapd",
    "render_sample_heatmap",
    "default_intensity_transforms",
    "default_train_transforms",
    "default_val_transforms",
    "collate_keypoints",
    "render_batch_heatmap",
    "mixup",
    "cutmix",
    "cutmixup",
    "MixUp",
    "CutMix",
    "CutMixUp",
    "BatchMixer",
    "PrepareMixedBatch",
]

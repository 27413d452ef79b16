"""Keypoint-aware MONAI transforms for cryo3d (``_target_: cryo3d_transforms.<Name>`` in bundles).

Every spatial augmentation moves the sample's keypoints exactly with the image, and the
heatmap is rendered again from them at the end (:class:`RenderHeatmapd`): nothing ever
interpolates a heatmap. Intensity augmentation is MONAI's own, on the image only.
Batch-level mixing (:class:`HeatmapMixUp`, :class:`HeatmapCutMix`, :class:`HeatmapCutMixUp`,
:class:`BatchMixer`) works on collated torch tensors on the training device. The same
code runs on NumPy/SciPy (CPU) and CuPy/cupyx (GPU), by where the image lives.

As in MONAI, each dictionary transform (``...d``) holds its array transform and
delegates to it; the field names that travel together are one
:class:`~cryo3d_transforms.keypoints.KeypointKeys`.

Modules: :mod:`~cryo3d_transforms.affine` (matrices, point maps, warp),
:mod:`~cryo3d_transforms.spatial` (random / fixed affine), :mod:`~cryo3d_transforms.flips`
(flips, quarter turns), :mod:`~cryo3d_transforms.crop` (crops, integer shifts),
:mod:`~cryo3d_transforms.render` (heatmap), :mod:`~cryo3d_transforms.intensity`,
:mod:`~cryo3d_transforms.mixing` (collate and mixing with given draws),
:mod:`~cryo3d_transforms.mixers` (random mixers, trainer hooks),
:mod:`~cryo3d_transforms.pipeline` (default pipelines), :mod:`~cryo3d_transforms.keypoints`
(keypoint fields, border rule), :mod:`~cryo3d_transforms.keypoint_transform` (the array
and dictionary bases), :mod:`~cryo3d_transforms.arrays` (array types).

The public names are each module's ``__all__``, re-exported here.
"""

from cryo3d_transforms import affine, crop, flips, intensity, keypoint_transform, keypoints, mixers, mixing, pipeline
from cryo3d_transforms import render, spatial
from cryo3d_transforms.affine import *  # noqa: F401,F403
from cryo3d_transforms.crop import *  # noqa: F401,F403
from cryo3d_transforms.flips import *  # noqa: F401,F403
from cryo3d_transforms.intensity import *  # noqa: F401,F403
from cryo3d_transforms.keypoint_transform import *  # noqa: F401,F403
from cryo3d_transforms.keypoints import *  # noqa: F401,F403
from cryo3d_transforms.mixers import *  # noqa: F401,F403
from cryo3d_transforms.mixing import *  # noqa: F401,F403
from cryo3d_transforms.pipeline import *  # noqa: F401,F403
from cryo3d_transforms.render import *  # noqa: F401,F403
from cryo3d_transforms.spatial import *  # noqa: F401,F403

_MODULES = (affine, crop, flips, intensity, keypoint_transform, keypoints, mixers, mixing, pipeline, render, spatial)
__all__ = [name for module in _MODULES for name in module.__all__]

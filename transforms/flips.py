"""Flips and 90-degree rotations: exact on the image (no interpolation) and on keypoints.

The image is reordered with ``xp.flip`` / ``xp.rot90`` (NumPy or CuPy, the same
orderings as MONAI's ``Flip`` / ``Rotate90`` which call ``torch.flip`` / ``torch.rot90``);
keypoints move by the matching exact map:

* flip along axis ``a`` of ``n`` voxels: ``p_a -> (n - 1) - p_a``;
* one quarter turn in the plane ``(a, b)`` (``np.rot90`` direction, from ``a`` towards
  ``b``): ``p_a' = (n_b - 1) - p_b``, ``p_b' = p_a``, and the two axis lengths swap.

Covariances follow as ``L S L^T`` (a signed permutation). Voxel centres map to voxel
centres, so a voxel marked at a keypoint is still under the moved keypoint.

Why by hand: MONAI's ``Flipd`` / ``Rotate90d`` know nothing of keypoints, and their
image half is one ``xp`` call that must also run on CuPy arrays.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from monai.config import KeysCollection

from cryo3d.array_module import get_xp
from cryo3d_transforms.arrays import image_to_xp
from cryo3d_transforms.keypoint_transform import (
    KeypointMapTransform,
    KeypointTransform,
    PointMap,
    RandKeypointMapTransform,
)

__all__ = [
    "flip_point_map",
    "rot90_point_map",
    "KeypointFlip",
    "KeypointRotate90",
    "KeypointFlipd",
    "RandKeypointFlipd",
    "KeypointRotate90d",
    "RandKeypointRotate90d",
]


def _axes(spatial_axis: int | Sequence[int] | None) -> tuple[int, ...]:
    if spatial_axis is None:
        return (0, 1, 2)
    ax = (spatial_axis,) if np.isscalar(spatial_axis) else tuple(spatial_axis)
    ax = tuple(int(a) % 3 for a in ax)
    if len(set(ax)) != len(ax):
        raise ValueError(f"spatial_axis: repeated axis in {spatial_axis!r}")
    return ax


def _plane(spatial_axes: Sequence[int]) -> tuple[int, int]:
    a, b = (int(x) % 3 for x in spatial_axes)
    if len(tuple(spatial_axes)) != 2 or a == b:
        raise ValueError(f"spatial_axes: expected two different spatial axes, got {spatial_axes!r}")
    return a, b


def flip_point_map(shape: Sequence[int], spatial_axis: int | Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Point map ``o = L p + b`` of a flip of the given spatial axes.

    Args:
        shape: (Z, Y, X) of the image.
        spatial_axis: spatial axes to flip (0 = z); ``None`` for all three.

    Returns:
        ``(L, b)`` in full-resolution voxels.
    """
    L = np.eye(3)
    b = np.zeros(3)
    for a in _axes(spatial_axis):
        L[a, a] = -1.0
        b[a] = shape[a] - 1.0
    return L, b


def rot90_point_map(shape: Sequence[int], k: int, spatial_axes: Sequence[int] = (1, 2)) -> PointMap:
    """Point map and output shape of ``k`` quarter turns in the plane ``spatial_axes``.

    Args:
        shape: (Z, Y, X) of the image.
        k: number of quarter turns (``np.rot90`` direction).
        spatial_axes: the plane, two spatial axes (default y-x).

    Returns:
        ``(L, b, out_shape)``: ``o = L p + b`` and the spatial shape after the rotation.
    """
    a, b_ax = _plane(spatial_axes)
    L = np.eye(3)
    t = np.zeros(3)
    n = list(int(s) for s in shape)
    for _ in range(int(k) % 4):
        step = np.eye(3)
        step[a, a], step[a, b_ax], step[b_ax, b_ax], step[b_ax, a] = 0.0, -1.0, 0.0, 1.0
        off = np.zeros(3)
        off[a] = n[b_ax] - 1.0
        L, t = step @ L, step @ t + off
        n[a], n[b_ax] = n[b_ax], n[a]
    return L, t, tuple(n)  # type: ignore[return-value]


class KeypointFlip(KeypointTransform):
    """Flip an image ``[C, Z, Y, X]`` and its keypoints (array form).

    Args:
        spatial_axis: spatial axes to flip (0 = z), ``None`` for all three.

    Example:
        >>> import numpy as np
        >>> img, kp, _ = KeypointFlip(spatial_axis=2)(np.zeros((1, 4, 4, 8)), np.array([[1.0, 2.0, 3.0]]))
        >>> kp.tolist()
        [[1.0, 2.0, 4.0]]
    """

    def __init__(self, spatial_axis: int | Sequence[int] | None = None) -> None:
        self.spatial_axis = _axes(spatial_axis)

    def point_map(self, spatial_shape: Sequence[int]) -> PointMap:
        L, b = flip_point_map(spatial_shape, self.spatial_axis)
        return L, b, tuple(int(s) for s in spatial_shape)  # type: ignore[return-value]

    def apply_image(self, img: Any, **options: Any) -> Any:
        arr, restore = image_to_xp(img)
        xp = get_xp(arr)
        return restore(xp.ascontiguousarray(xp.flip(arr, tuple(a + 1 for a in self.spatial_axis))))


class KeypointRotate90(KeypointTransform):
    """``k`` quarter turns of an image ``[C, Z, Y, X]`` and its keypoints (array form).

    Args:
        k: number of quarter turns (``np.rot90`` direction, from the first axis of the
            plane towards the second).
        spatial_axes: the plane; the default ``(1, 2)`` (y-x) keeps z, the missing-wedge
            axis of a tomogram, in place.

    Example:
        >>> import numpy as np
        >>> img, kp, _ = KeypointRotate90(1)(np.zeros((1, 4, 6, 8)), np.array([[1.0, 2.0, 3.0]]))
        >>> img.shape, kp.tolist()
        ((1, 4, 8, 6), [[1.0, 4.0, 2.0]])
    """

    def __init__(self, k: int = 1, spatial_axes: Sequence[int] = (1, 2)) -> None:
        self.k = int(k) % 4
        self.spatial_axes = _plane(spatial_axes)

    def point_map(self, spatial_shape: Sequence[int]) -> PointMap:
        return rot90_point_map(spatial_shape, self.k, self.spatial_axes)

    def apply_image(self, img: Any, **options: Any) -> Any:
        arr, restore = image_to_xp(img)
        xp = get_xp(arr)
        axes = (self.spatial_axes[0] + 1, self.spatial_axes[1] + 1)
        return restore(xp.ascontiguousarray(xp.rot90(arr, self.k, axes=axes)))


class KeypointFlipd(KeypointMapTransform):
    """Flip image keys and keypoints along ``spatial_axis`` (dictionary form of :class:`KeypointFlip`).

    Args:
        keys: image keys (``"image"``).
        spatial_axis: spatial axes to flip (0 = z), ``None`` for all three.
        map_options: as :class:`~cryo3d_transforms.keypoint_transform.KeypointMapTransform`
            (a flip or turn keeps each keypoint's distance to the border).

    Example:
        ``{_target_: cryo3d_transforms.KeypointFlipd, keys: image, spatial_axis: 0}`` in a bundle;
        ``KeypointFlipd(spatial_axis=(1, 2))(sample)`` in Python.
    """

    def __init__(
        self, keys: KeysCollection = "image", spatial_axis: int | Sequence[int] | None = None, **map_options: Any
    ) -> None:
        super().__init__(keys, KeypointFlip(spatial_axis), **map_options)


class RandKeypointFlipd(RandKeypointMapTransform):
    """With probability ``prob`` flip all of ``spatial_axis`` together (MONAI ``RandFlipd``).

    Chain one per axis for independent flips (as :func:`cryo3d_transforms.default_train_transforms` does).

    Args:
        keys: image keys (``"image"``).
        prob: probability of flipping.
        spatial_axis: spatial axes to flip (0 = z), ``None`` for all three.
        map_options: as :class:`~cryo3d_transforms.keypoint_transform.KeypointMapTransform`
            (a flip or turn keeps each keypoint's distance to the border).

    Example:
        >>> import numpy as np
        >>> d = {"image": np.zeros((1, 4, 4, 8)), "keypoints": [[1.0, 2.0, 3.0]], "labels": [0]}
        >>> RandKeypointFlipd(prob=1.0, spatial_axis=2, margin_sigmas=None)(d)["keypoints"].tolist()
        [[1.0, 2.0, 4.0]]
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        prob: float = 0.5,
        spatial_axis: int | Sequence[int] | None = None,
        **map_options: Any,
    ) -> None:
        super().__init__(keys, prob, **map_options)
        self.flipper = KeypointFlip(spatial_axis)

    def draw_transform(self, spatial_shape: Sequence[int]) -> KeypointTransform:
        return self.flipper


class KeypointRotate90d(KeypointMapTransform):
    """``k`` quarter turns of image keys and keypoints (dictionary form of :class:`KeypointRotate90`).

    Args:
        keys: image keys (``"image"``).
        k: number of quarter turns.
        spatial_axes: the plane (default y-x, which keeps z in place).
        map_options: as :class:`~cryo3d_transforms.keypoint_transform.KeypointMapTransform`
            (a flip or turn keeps each keypoint's distance to the border).

    Example:
        ``KeypointRotate90d(k=1)(sample)`` turns the y-x plane once; the y and x lengths swap.
    """

    def __init__(
        self, keys: KeysCollection = "image", k: int = 1, spatial_axes: Sequence[int] = (1, 2), **map_options: Any
    ) -> None:
        super().__init__(keys, KeypointRotate90(k, spatial_axes), **map_options)


class RandKeypointRotate90d(RandKeypointMapTransform):
    """With probability ``prob``, ``k`` quarter turns with ``k`` uniform in ``1..max_k`` (MONAI ``RandRotate90d``).

    Args:
        keys: image keys (``"image"``).
        prob: probability of turning.
        max_k: the largest number of quarter turns drawn.
        spatial_axes: the plane (default y-x, which keeps z in place).
        map_options: as :class:`~cryo3d_transforms.keypoint_transform.KeypointMapTransform`
            (a flip or turn keeps each keypoint's distance to the border).

    Example:
        ``{_target_: cryo3d_transforms.RandKeypointRotate90d, keys: image, prob: 0.5, max_k: 3}``
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        prob: float = 0.5,
        max_k: int = 3,
        spatial_axes: Sequence[int] = (1, 2),
        **map_options: Any,
    ) -> None:
        super().__init__(keys, prob, **map_options)
        if int(max_k) < 1:
            raise ValueError(f"max_k: expected at least 1, got {max_k!r}")
        self.max_k = int(max_k)
        self.spatial_axes = _plane(spatial_axes)

    def draw_transform(self, spatial_shape: Sequence[int]) -> KeypointTransform:
        return KeypointRotate90(int(self.R.randint(self.max_k)) + 1, self.spatial_axes)


"""Crops and integer shifts: exact windows of the image, keypoints offset by the window corner.

A window of ``size`` voxels starting at ``start`` (which may lie outside the image; the
part outside is filled with ``fill``, 0 by default) maps a keypoint ``p`` to
``p - start``. A crop is a window inside the image; a shift by ``s`` voxels is the
window starting at ``-s`` with the image's own size (content moves by ``+s``, the
uncovered border is padded). Integer steps only: no interpolation anywhere.

Why by hand: MONAI's ``SpatialCropd`` / ``RandSpatialCropd`` crop images only and do not
run on CuPy arrays; the window copy is one slice assignment here.
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
    "extract_window",
    "KeypointWindow",
    "KeypointSpatialCropd",
    "RandKeypointSpatialCropd",
    "RandKeypointShiftd",
]


def _triple(v: Any, name: str) -> tuple[int, int, int]:
    t = (int(v),) * 3 if np.isscalar(v) else tuple(int(x) for x in v)
    if len(t) != 3:
        raise ValueError(f"{name}: expected one integer or three (z, y, x), got {v!r}")
    return t  # type: ignore[return-value]


def extract_window(img: Any, start: Sequence[int], size: Sequence[int], fill: float = 0.0) -> Any:
    """Copy the window ``[start, start + size)`` of a ``[C, Z, Y, X]`` image, ``fill`` outside it.

    Args:
        img: NumPy / CuPy array or torch tensor ``[C, Z, Y, X]``.
        start: (z, y, x) corner in input voxels (may be negative).
        size: (Z, Y, X) of the window.
        fill: value where the window leaves the image.

    Returns:
        ``[C, *size]`` of the same type and device as ``img``.

    Raises:
        ValueError: a size is not positive.
    """
    arr, restore = image_to_xp(img)
    xp = get_xp(arr)
    start = _triple(start, "start")
    size = _triple(size, "size")
    if min(size) < 1:
        raise ValueError(f"window size must be positive, got {size}")
    shape = arr.shape[1:]
    out = xp.full((arr.shape[0],) + size, fill, dtype=arr.dtype)
    src, dst = [slice(None)], [slice(None)]
    for s0, n, m in zip(start, size, shape):
        lo, hi = max(s0, 0), min(s0 + n, m)
        if hi <= lo:
            return restore(out)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s0, hi - s0))
    out[tuple(dst)] = arr[tuple(src)]
    return restore(out)


class KeypointWindow(KeypointTransform):
    """A window of an image ``[C, Z, Y, X]``; keypoints move by ``p - start`` (array form).

    Args:
        start: (z, y, x) corner of the window in input voxels (may be negative).
        size: (Z, Y, X) of the window.
        fill: value outside the input.

    Example:
        >>> import numpy as np
        >>> img, kp, _ = KeypointWindow((1, 1, 1), (2, 2, 2))(np.zeros((1, 4, 4, 4)), np.array([[1.0, 2.0, 3.0]]))
        >>> img.shape, kp.tolist()
        ((1, 2, 2, 2), [[0.0, 1.0, 2.0]])
    """

    def __init__(self, start: Sequence[int], size: Sequence[int], fill: float = 0.0) -> None:
        self.start = _triple(start, "start")
        self.size = _triple(size, "size")
        self.fill = float(fill)

    def point_map(self, spatial_shape: Sequence[int]) -> PointMap:
        return np.eye(3), -np.asarray(self.start, np.float64), self.size

    def apply_image(self, img: Any, **options: Any) -> Any:
        return extract_window(img, self.start, self.size, self.fill)


class KeypointSpatialCropd(KeypointMapTransform):
    """Crop image keys to ``[roi_start, roi_start + roi_size)`` and offset the keypoints.

    Dictionary form of :class:`KeypointWindow`.

    Args:
        keys: image keys (``"image"``).
        roi_start: (z, y, x) corner in input voxels.
        roi_size: (Z, Y, X) of the crop.
        fill: value where the window leaves the image.
        map_options: as :class:`~cryo3d_transforms.keypoint_transform.KeypointMapTransform`
            (``margin_sigmas``, ``keypoint_keys``, ``ds_sigma``, ``ds_factor``, ...).

    Example:
        >>> import numpy as np
        >>> d = {"image": np.zeros((1, 20, 20, 20)), "keypoints": [[5.0, 6.0, 7.0]], "labels": [0]}
        >>> KeypointSpatialCropd(roi_start=(4, 2, 5), roi_size=(8, 8, 8), margin_sigmas=None)(d)["keypoints"].tolist()
        [[1.0, 4.0, 2.0]]
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        roi_start: Sequence[int] = (0, 0, 0),
        roi_size: Sequence[int] = (64, 64, 64),
        fill: float = 0.0,
        **map_options: Any,
    ) -> None:
        super().__init__(keys, KeypointWindow(roi_start, roi_size, fill), **map_options)


class RandKeypointSpatialCropd(RandKeypointMapTransform):
    """Crop a ``roi_size`` window at a uniformly random position inside the image.

    An axis shorter than ``roi_size`` is taken whole and padded with ``fill`` at its end.

    Args:
        keys: image keys (``"image"``).
        roi_size: (Z, Y, X) of the crop.
        fill: value where the window leaves the image.
        map_options: as :class:`~cryo3d_transforms.keypoint_transform.KeypointMapTransform`.

    Example:
        ``{_target_: cryo3d_transforms.RandKeypointSpatialCropd, keys: image, roi_size: [64, 64, 64]}``
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        roi_size: Sequence[int] = (64, 64, 64),
        fill: float = 0.0,
        **map_options: Any,
    ) -> None:
        super().__init__(keys, 1.0, **map_options)
        self.roi_size = _triple(roi_size, "roi_size")
        self.fill = float(fill)
        self._start: tuple[int, ...] = (0, 0, 0)

    def draw_transform(self, spatial_shape: Sequence[int]) -> KeypointTransform:
        self._start = tuple(int(self.R.randint(max(n - r, 0) + 1)) for n, r in zip(spatial_shape, self.roi_size))
        return KeypointWindow(self._start, self.roi_size, self.fill)


class RandKeypointShiftd(RandKeypointMapTransform):
    """With probability ``prob`` translate images and keypoints by a random whole number of voxels.

    The shift along each axis is uniform in ``[-max_shift, max_shift]``; the content moves
    by ``+shift`` (a keypoint at ``p`` goes to ``p + shift``), the shape is kept and the
    uncovered border is filled with ``fill``. The last shift is kept in ``self.shift``.

    Args:
        keys: image keys (``"image"``).
        prob: probability of shifting.
        max_shift: one integer or (z, y, x), in voxels.
        fill: value of the uncovered border.
        map_options: as :class:`~cryo3d_transforms.keypoint_transform.KeypointMapTransform`.

    Example:
        >>> import numpy as np
        >>> t = RandKeypointShiftd(max_shift=3, margin_sigmas=None).set_random_state(2)
        >>> d = {"image": np.zeros((1, 8, 8, 8)), "keypoints": [[4.0, 4.0, 4.0]], "labels": [0]}
        >>> bool(np.all(t(d)["keypoints"] == 4.0 + np.array(t.shift)))
        True
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        prob: float = 1.0,
        max_shift: int | Sequence[int] = 8,
        fill: float = 0.0,
        **map_options: Any,
    ) -> None:
        super().__init__(keys, prob, **map_options)
        self.max_shift = _triple(max_shift, "max_shift")
        if min(self.max_shift) < 0:
            raise ValueError(f"max_shift: expected non-negative voxels, got {max_shift!r}")
        self.fill = float(fill)
        self.shift: tuple[int, ...] = (0, 0, 0)

    def draw_transform(self, spatial_shape: Sequence[int]) -> KeypointTransform:
        self.shift = tuple(int(self.R.randint(-m, m + 1)) for m in self.max_shift)
        return KeypointWindow(tuple(-s for s in self.shift), spatial_shape, self.fill)

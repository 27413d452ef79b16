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

from typing import Any, Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import RandomizableTransform, Transform

from cryo3d.array_module import get_xp
from cryo3d_transforms.arrays import host_array, image_to_xp
from cryo3d_transforms.keypoints import DEFAULT_MARGIN_SIGMAS
from cryo3d_transforms.motion import KeypointMapTransform

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

    Works on NumPy and CuPy arrays (and torch tensors, returned as the same type).
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


class KeypointWindow(Transform):
    """Array form: ``t(img, keypoints=None, covariances=None)`` -> window ``(img, keypoints, covariances)``.

    Parameters
    ----------
    start : (z, y, x) corner of the window in input voxels (may be negative).
    size : (Z, Y, X) of the window.
    fill : value outside the input.
    """

    def __init__(self, start: Sequence[int], size: Sequence[int], fill: float = 0.0) -> None:
        self.start = _triple(start, "start")
        self.size = _triple(size, "size")
        self.fill = float(fill)

    def __call__(self, img: Any, keypoints: Any = None, covariances: Any = None):
        kp = None if keypoints is None else host_array(keypoints, np.float64, "keypoints", (3,)) - np.asarray(self.start)
        cov = None if covariances is None else host_array(covariances, np.float64, "covariances", (3, 3))
        return extract_window(img, self.start, self.size, self.fill), kp, cov


class _WindowDict(KeypointMapTransform):
    def __init__(self, keys: KeysCollection, fill: float, margin_sigmas: float | None, **kw: Any) -> None:
        super().__init__(keys, margin_sigmas=margin_sigmas, **kw)
        self.fill = float(fill)

    def _window(self, d: dict, start: Sequence[int], size: Sequence[int]) -> dict:
        self.spatial_shape(d)  # checks that the images agree
        for key in self.key_iterator(d):
            d[key] = extract_window(d[key], start, size, self.fill)
        return self.move_keypoints(d, np.eye(3), -np.asarray(start, np.float64), size)


class KeypointSpatialCropd(_WindowDict):
    """Crop image keys to ``[roi_start, roi_start + roi_size)`` and offset the keypoints.

    Parameters
    ----------
    keys : image keys.
    roi_start : (z, y, x) corner in input voxels; roi_size : (Z, Y, X).
    fill : value where the window leaves the image.
    margin_sigmas, keypoints_key, labels_key, covariances_key, heatmap_key, ds_sigma,
    ds_factor, allow_missing_keys : see :class:`cryo3d_transforms.motion.KeypointMapTransform`.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        roi_start: Sequence[int] = (0, 0, 0),
        roi_size: Sequence[int] = (64, 64, 64),
        fill: float = 0.0,
        margin_sigmas: float | None = DEFAULT_MARGIN_SIGMAS,
        **kw: Any,
    ) -> None:
        super().__init__(keys, fill, margin_sigmas, **kw)
        self.roi_start = _triple(roi_start, "roi_start")
        self.roi_size = _triple(roi_size, "roi_size")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        return self._window(dict(data), self.roi_start, self.roi_size)


class RandKeypointSpatialCropd(RandomizableTransform, _WindowDict):
    """Crop a ``roi_size`` window at a uniformly random position inside the image.

    An axis shorter than ``roi_size`` is taken whole and padded with ``fill`` at its end.
    Other parameters as :class:`KeypointSpatialCropd`.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        roi_size: Sequence[int] = (64, 64, 64),
        fill: float = 0.0,
        margin_sigmas: float | None = DEFAULT_MARGIN_SIGMAS,
        **kw: Any,
    ) -> None:
        RandomizableTransform.__init__(self, 1.0)
        _WindowDict.__init__(self, keys, fill, margin_sigmas, **kw)
        self.roi_size = _triple(roi_size, "roi_size")
        self._start: tuple[int, ...] = (0, 0, 0)

    def randomize(self, shape: Sequence[int]) -> None:  # type: ignore[override]
        self._start = tuple(int(self.R.randint(max(n - r, 0) + 1)) for n, r in zip(shape, self.roi_size))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        self.randomize(self.spatial_shape(d))
        return self._window(d, self._start, self.roi_size)


class RandKeypointShiftd(RandomizableTransform, _WindowDict):
    """With probability ``prob`` translate images and keypoints by a random whole number of voxels.

    The shift along each axis is uniform in ``[-max_shift, max_shift]``; the content moves
    by ``+shift`` (a keypoint at ``p`` goes to ``p + shift``), the shape is kept and the
    uncovered border is filled with ``fill``.

    Parameters
    ----------
    keys : image keys.
    prob : probability of shifting.
    max_shift : one integer or (z, y, x) in voxels.
    fill, margin_sigmas, ... : as :class:`KeypointSpatialCropd`.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        prob: float = 1.0,
        max_shift: int | Sequence[int] = 8,
        fill: float = 0.0,
        margin_sigmas: float | None = DEFAULT_MARGIN_SIGMAS,
        **kw: Any,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        _WindowDict.__init__(self, keys, fill, margin_sigmas, **kw)
        self.max_shift = _triple(max_shift, "max_shift")
        if min(self.max_shift) < 0:
            raise ValueError(f"max_shift: expected non-negative voxels, got {max_shift!r}")
        self.shift: tuple[int, ...] = (0, 0, 0)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.shift = tuple(int(self.R.randint(-m, m + 1)) for m in self.max_shift)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        self.randomize()
        d = dict(data)
        if not self._do_transform:
            return d
        shape = self.spatial_shape(d)
        return self._window(d, tuple(-s for s in self.shift), shape)

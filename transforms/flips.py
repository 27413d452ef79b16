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

from typing import Any, Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import RandomizableTransform, Transform

from cryo3d.array_module import get_xp
from cryo3d_transforms.arrays import host_array, image_to_xp
from cryo3d_transforms.keypoints import DEFAULT_MARGIN_SIGMAS
from cryo3d_transforms.motion import KeypointMapTransform

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
    """Point map ``o = L p + b`` of a flip of the given spatial axes (None: all three)."""
    L = np.eye(3)
    b = np.zeros(3)
    for a in _axes(spatial_axis):
        L[a, a] = -1.0
        b[a] = shape[a] - 1.0
    return L, b


def rot90_point_map(
    shape: Sequence[int], k: int, spatial_axes: Sequence[int] = (1, 2)
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Point map and output shape of ``k`` quarter turns in the plane ``spatial_axes``.

    Returns
    -------
    L, b : ``o = L p + b``.
    out_shape : spatial shape after the rotation.
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


def _flip_image(img: Any, axes: tuple[int, ...]) -> Any:
    arr, restore = image_to_xp(img)
    xp = get_xp(arr)
    return restore(xp.ascontiguousarray(xp.flip(arr, tuple(a + 1 for a in axes))))


def _rot90_image(img: Any, k: int, plane: tuple[int, int]) -> Any:
    arr, restore = image_to_xp(img)
    xp = get_xp(arr)
    return restore(xp.ascontiguousarray(xp.rot90(arr, int(k) % 4, axes=(plane[0] + 1, plane[1] + 1))))


def _move_arrays(keypoints: Any, covariances: Any, L: np.ndarray, b: np.ndarray):
    kp = None if keypoints is None else host_array(keypoints, np.float64, "keypoints", (3,)) @ L.T + b
    cov = None
    if covariances is not None:
        cov = np.einsum("ij,kjl,ml->kim", L, host_array(covariances, np.float64, "covariances", (3, 3)), L)
    return kp, cov


class KeypointFlip(Transform):
    """Array form: ``t(img, keypoints=None, covariances=None)`` -> flipped ``(img, keypoints, covariances)``.

    Parameters
    ----------
    spatial_axis : spatial axes to flip (0 = z), ``None`` for all three.
    """

    def __init__(self, spatial_axis: int | Sequence[int] | None = None) -> None:
        self.spatial_axis = _axes(spatial_axis)

    def __call__(self, img: Any, keypoints: Any = None, covariances: Any = None):
        L, b = flip_point_map(img.shape[1:], self.spatial_axis)
        return (_flip_image(img, self.spatial_axis), *_move_arrays(keypoints, covariances, L, b))


class KeypointRotate90(Transform):
    """Array form: ``k`` quarter turns in the plane ``spatial_axes`` of image and keypoints.

    ``spatial_axes`` defaults to ``(1, 2)`` (the y-x plane), which keeps z, the
    missing-wedge axis of a tomogram, in place.
    """

    def __init__(self, k: int = 1, spatial_axes: Sequence[int] = (1, 2)) -> None:
        self.k = int(k) % 4
        self.spatial_axes = _plane(spatial_axes)

    def __call__(self, img: Any, keypoints: Any = None, covariances: Any = None):
        L, b, _ = rot90_point_map(img.shape[1:], self.k, self.spatial_axes)
        return (_rot90_image(img, self.k, self.spatial_axes), *_move_arrays(keypoints, covariances, L, b))


_DICT_DOC = """
    Parameters (shared)
    -------------------
    keys : image keys (``"image"``).
    margin_sigmas, keypoints_key, labels_key, covariances_key, heatmap_key, ds_sigma,
    ds_factor, allow_missing_keys : see :class:`cryo3d_transforms.motion.KeypointMapTransform`
    (a flip keeps every keypoint's distance to the border, so nothing is dropped that
    was not already past the margin).
"""


class KeypointFlipd(KeypointMapTransform):
    """Flip image keys and keypoints along ``spatial_axis`` (None: all three)."""

    __doc__ = (__doc__ or "") + _DICT_DOC

    def __init__(
        self,
        keys: KeysCollection = "image",
        spatial_axis: int | Sequence[int] | None = None,
        margin_sigmas: float | None = DEFAULT_MARGIN_SIGMAS,
        **kw: Any,
    ) -> None:
        super().__init__(keys, margin_sigmas=margin_sigmas, **kw)
        self.spatial_axis = _axes(spatial_axis)

    def _flip(self, d: dict, axes: tuple[int, ...]) -> dict:
        shape = self.spatial_shape(d)
        for key in self.key_iterator(d):
            d[key] = _flip_image(d[key], axes)
        L, b = flip_point_map(shape, axes)
        return self.move_keypoints(d, L, b, shape)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        return self._flip(dict(data), self.spatial_axis)


class RandKeypointFlipd(RandomizableTransform, KeypointFlipd):
    """With probability ``prob`` flip all of ``spatial_axis`` together (MONAI ``RandFlipd``).

    Chain one per axis for independent flips (as :func:`cryo3d_transforms.default_train_transforms` does).
    """

    __doc__ = (__doc__ or "") + _DICT_DOC

    def __init__(
        self,
        keys: KeysCollection = "image",
        prob: float = 0.5,
        spatial_axis: int | Sequence[int] | None = None,
        margin_sigmas: float | None = DEFAULT_MARGIN_SIGMAS,
        **kw: Any,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        KeypointFlipd.__init__(self, keys, spatial_axis, margin_sigmas, **kw)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        self.randomize(None)
        d = dict(data)
        return self._flip(d, self.spatial_axis) if self._do_transform else d


class KeypointRotate90d(KeypointMapTransform):
    """``k`` quarter turns of image keys and keypoints in the plane ``spatial_axes`` (default y-x)."""

    __doc__ = (__doc__ or "") + _DICT_DOC

    def __init__(
        self,
        keys: KeysCollection = "image",
        k: int = 1,
        spatial_axes: Sequence[int] = (1, 2),
        margin_sigmas: float | None = DEFAULT_MARGIN_SIGMAS,
        **kw: Any,
    ) -> None:
        super().__init__(keys, margin_sigmas=margin_sigmas, **kw)
        self.k = int(k) % 4
        self.spatial_axes = _plane(spatial_axes)

    def _rotate(self, d: dict, k: int) -> dict:
        shape = self.spatial_shape(d)
        for key in self.key_iterator(d):
            d[key] = _rot90_image(d[key], k, self.spatial_axes)
        L, b, out_shape = rot90_point_map(shape, k, self.spatial_axes)
        return self.move_keypoints(d, L, b, out_shape)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        return self._rotate(dict(data), self.k)


class RandKeypointRotate90d(RandomizableTransform, KeypointRotate90d):
    """With probability ``prob``, ``k`` quarter turns with ``k`` uniform in ``1..max_k`` (MONAI ``RandRotate90d``)."""

    __doc__ = (__doc__ or "") + _DICT_DOC

    def __init__(
        self,
        keys: KeysCollection = "image",
        prob: float = 0.5,
        max_k: int = 3,
        spatial_axes: Sequence[int] = (1, 2),
        margin_sigmas: float | None = DEFAULT_MARGIN_SIGMAS,
        **kw: Any,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        KeypointRotate90d.__init__(self, keys, 1, spatial_axes, margin_sigmas, **kw)
        if int(max_k) < 1:
            raise ValueError(f"max_k: expected at least 1, got {max_k!r}")
        self.max_k = int(max_k)
        self._rand_k = 0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._rand_k = int(self.R.randint(self.max_k)) + 1

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        self.randomize()
        d = dict(data)
        return self._rotate(d, self._rand_k) if self._do_transform else d

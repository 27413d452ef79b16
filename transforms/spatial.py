"""Affine augmentation that resamples the image once and moves the keypoints exactly.

One matrix (rotation about any axis, isotropic or anisotropic scale, shear, translation,
composed about the patch centre in MONAI's convention, :mod:`cryo3d_transforms.affine`) warps
the image with one trilinear resampling and moves every keypoint through the same
matrix without interpolation. The heatmap is not warped: it is rendered afterwards from
the moved keypoints (:class:`cryo3d_transforms.RenderHeatmapd`).

Array forms (:class:`KeypointAffine`, :class:`RandKeypointAffine`) take an image and
optional keypoints; dictionary forms (:class:`KeypointAffined`, :class:`RandKeypointAffined`)
work on the sample dictionary (``image``, ``keypoints``, ``labels``, ...) and can be
named in a bundle as ``_target_: cryo3d_transforms.RandKeypointAffined``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import RandomizableTransform
from monai.utils import ensure_tuple_rep

from cryo3d_transforms.affine import affine_point_map, check_affine, compose_affine, draw_range, random_rotation, warp_image
from cryo3d_transforms.arrays import image_to_xp
from cryo3d_transforms.keypoint_transform import (
    KeypointMapTransform,
    KeypointTransform,
    PointMap,
    RandKeypointMapTransform,
    move_keypoint_arrays,
    split_map_options,
)

__all__ = ["KeypointAffine", "RandKeypointAffine", "KeypointAffined", "RandKeypointAffined"]

RangeT = Any  # MONAI-style range: number, (lo, hi), or a sequence of those per axis


class KeypointAffine(KeypointTransform):
    """Warp an image ``[C, Z, Y, X]`` by a given affine and move keypoints exactly (array form).

    Args:
        affine: ``[4, 4]`` (or ``[3, 3]``) in MONAI's convention: output voxel -> input
            voxel, about the centres.
        spatial_size: output (Z, Y, X) (default: the input's), centred as in MONAI.
        mode: ``"bilinear"`` (trilinear), ``"nearest"`` or a spline order.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.
        threads: CPU threads for the warp (default: torch's thread count).

    Call ``t(img, keypoints=None, covariances=None)`` -> ``(img, keypoints, covariances)``:
    keypoints ``[K, 3]`` z-y-x full-resolution voxels, covariances ``[K, 3, 3]`` (become
    ``L S L^T``); the image keeps its type and device, the keypoint outputs are NumPy
    (``None`` when not given). No keypoint is dropped here.

    Example:
        >>> import numpy as np
        >>> A = np.eye(4); A[0, 3] = 2.0  # output o samples input o + 2: content moves by -2 in z
        >>> img, kp, _ = KeypointAffine(A)(np.zeros((1, 8, 8, 8), np.float32), np.array([[4.0, 4.0, 4.0]]))
        >>> kp.tolist()
        [[2.0, 4.0, 4.0]]
    """

    def __init__(
        self,
        affine: Any,
        spatial_size: Sequence[int] | None = None,
        mode: str | int = "bilinear",
        padding_mode: str = "zeros",
        threads: int | None = None,
    ) -> None:
        self.affine = check_affine(affine)
        self.spatial_size = None if spatial_size is None else tuple(int(s) for s in spatial_size)
        self.mode = mode
        self.padding_mode = padding_mode
        self.threads = threads

    def point_map(self, spatial_shape: Sequence[int]) -> PointMap:
        out_shape = tuple(int(s) for s in spatial_shape) if self.spatial_size is None else self.spatial_size
        L, b = affine_point_map(self.affine, spatial_shape, out_shape)
        return L, b, out_shape  # type: ignore[return-value]

    def apply_image(self, img: Any, mode: Any = None, padding_mode: Any = None, **options: Any) -> Any:
        """Resample ``img`` once; ``mode`` / ``padding_mode`` override the transform's own."""
        arr, restore = image_to_xp(img)
        mode = self.mode if mode is None else mode
        padding_mode = self.padding_mode if padding_mode is None else padding_mode
        return restore(warp_image(arr, self.affine, self.spatial_size, mode, padding_mode, self.threads))


class RandKeypointAffine(RandomizableTransform, KeypointAffine):
    """Random affine about the patch centre, applied to an image and its keypoints (array form).

    The parameters follow ``monai.transforms.RandAffine`` (same meaning, same composition
    ``R @ Sh @ T @ Sc``), so the same arguments give the same distribution of motions.
    The drawn matrix is kept in ``self.affine`` (MONAI's convention) after each call.

    Args:
        prob: probability of applying the transform.
        rotate_range: MONAI range of Euler angles (radians) about array axes 0, 1, 2; a
            bare number covers axis 0 only, as in MONAI: give three entries for all axes.
        shear_range: MONAI range of up to 6 shear coefficients.
        translate_range: MONAI range of translations in voxels per axis.
        scale_range: MONAI range added to 1 per axis (``0.1`` -> factor in ``[0.9, 1.1]``).
        isotropic_scale: one scale factor for all axes, drawn from the first entry of
            ``scale_range``.
        uniform_rotation: draw the rotation uniformly from all of SO(3) (any axis, any
            angle) instead of from ``rotate_range``.
        spatial_size: as :class:`KeypointAffine`.
        mode: as :class:`KeypointAffine`.
        padding_mode: as :class:`KeypointAffine`.
        threads: as :class:`KeypointAffine`.

    Example:
        >>> t = RandKeypointAffine(rotate_range=(3.14, 0.2, 0.2), scale_range=(0.1, 0.1, 0.1))
        >>> _ = t.set_random_state(0)
        >>> img, kp, cov = t(np.zeros((1, 16, 16, 16), np.float32), np.array([[8.0, 8.0, 8.0]]))
        >>> t.affine.shape
        (4, 4)
    """

    def __init__(
        self,
        prob: float = 1.0,
        rotate_range: RangeT = None,
        shear_range: RangeT = None,
        translate_range: RangeT = None,
        scale_range: RangeT = None,
        isotropic_scale: bool = False,
        uniform_rotation: bool = False,
        spatial_size: Sequence[int] | None = None,
        mode: str | int = "bilinear",
        padding_mode: str = "zeros",
        threads: int | None = None,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        KeypointAffine.__init__(self, np.eye(4), spatial_size, mode, padding_mode, threads)
        self.rotate_range = rotate_range
        self.shear_range = shear_range
        self.translate_range = translate_range
        self.scale_range = scale_range
        self.isotropic_scale = bool(isotropic_scale)
        self.uniform_rotation = bool(uniform_rotation)

    def randomize(self, data: Any = None) -> None:
        """Decide whether to apply, then draw the matrix into ``self.affine``."""
        super().randomize(None)
        if not self._do_transform:
            self.affine = np.eye(4)
            return
        rot = random_rotation(self.R) if self.uniform_rotation else None
        rotate = [] if self.uniform_rotation else draw_range(self.R, self.rotate_range)
        shear = draw_range(self.R, self.shear_range)
        translate = draw_range(self.R, self.translate_range)
        if self.isotropic_scale and self.scale_range is not None:
            first = self.scale_range if np.isscalar(self.scale_range) else self.scale_range[0]
            scale = draw_range(self.R, (first,), add=1.0) * 3
        else:
            scale = draw_range(self.R, self.scale_range, add=1.0)
        self.affine = compose_affine(rotate, shear, translate, scale, rotation_matrix=rot)

    def __call__(  # type: ignore[override]
        self, img: Any, keypoints: Any = None, covariances: Any = None, randomize: bool = True
    ) -> tuple[Any, Any, Any]:
        """Return ``(img, keypoints, covariances)`` as :class:`KeypointAffine` does.

        With probability ``1 - prob`` the image is returned as it is (no resampling).
        """
        if randomize:
            self.randomize()
        if not self._do_transform:
            return (img, *move_keypoint_arrays(keypoints, covariances, np.eye(3), np.zeros(3)))
        return KeypointAffine.__call__(self, img, keypoints, covariances)


def _per_key_options(n_keys: int, mode: Any, padding_mode: Any) -> list[dict]:
    """One ``{mode, padding_mode}`` per image key (a single value is repeated, as in MONAI)."""
    modes, pads = ensure_tuple_rep(mode, n_keys), ensure_tuple_rep(padding_mode, n_keys)
    return [dict(mode=m, padding_mode=p) for m, p in zip(modes, pads)]


class KeypointAffined(KeypointMapTransform):
    """A fixed affine on image keys and keypoints (dictionary form of :class:`KeypointAffine`).

    Args:
        keys: image keys to warp (``"image"``).
        affine: ``[4, 4]`` MONAI-convention matrix (output voxel -> input voxel, about the centres).
        spatial_size: output (Z, Y, X) (default: the input's).
        mode: interpolation, one value or one per key (MONAI names).
        padding_mode: padding, one value or one per key (MONAI names).
        threads: CPU threads for the warp.
        map_options: as :class:`~cryo3d_transforms.keypoint_transform.KeypointMapTransform`:
            ``margin_sigmas`` (border rule; ``None`` keeps all), ``transform_covariance``
            (when True each keypoint's Gaussian follows the matrix: a ``covariances`` field
            in full-resolution voxels is created as ``(ds_sigma[c] * ds_factor)^2 I`` if absent
            and becomes ``L S L^T``; when False an isotropic keypoint keeps its class sigma;
            covariances already present always follow the matrix), ``keypoint_keys``,
            ``ds_sigma``, ``ds_factor``, ``allow_missing_keys``.

    Raises:
        ValueError: no ``affine`` was given, or it is not a finite invertible matrix.

    Example:
        >>> import numpy as np
        >>> A = np.eye(4); A[0, 3] = 10.0  # content moves by -10 voxels in z
        >>> d = {"image": np.zeros((1, 30, 30, 30), np.float32), "keypoints": [[12.0, 15, 15]], "labels": [0],
        ...      "ds_sigma": [1.0], "ds_factor": 2}
        >>> KeypointAffined(affine=A)(d)["keypoints"].tolist()
        [[2.0, 15.0, 15.0]]
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        affine: Any = None,
        spatial_size: Sequence[int] | None = None,
        mode: Any = "bilinear",
        padding_mode: Any = "zeros",
        threads: int | None = None,
        **map_options: Any,
    ) -> None:
        if affine is None:
            raise ValueError("KeypointAffined: 'affine' (a 4x4 matrix in MONAI's convention) is required")
        super().__init__(keys, KeypointAffine(affine, spatial_size, threads=threads), **map_options)
        self.key_options = _per_key_options(len(self.keys), mode, padding_mode)

    @property
    def affine(self) -> np.ndarray:
        """The matrix (MONAI's convention)."""
        return self.transform.affine  # type: ignore[union-attr]


class RandKeypointAffined(RandKeypointMapTransform):
    """Random affine on image keys and keypoints together (dictionary form of :class:`RandKeypointAffine`).

    With probability ``1 - prob`` the sample is returned unchanged (no resampling, no
    keypoint dropped). The drawn matrix is ``self.affine`` after each call.

    Args:
        keys: image keys to warp (``"image"``).
        prob: probability of applying the transform.
        mode: interpolation, one value or one per key (MONAI names).
        padding_mode: padding, one value or one per key (MONAI names).
        kwargs: the random parameters, passed to :class:`RandKeypointAffine`
            (``rotate_range``, ``shear_range``, ``translate_range``, ``scale_range``,
            ``isotropic_scale``, ``uniform_rotation``, ``spatial_size``, ``threads``;
            MONAI ``RandAffine`` meaning), and the map options of :class:`KeypointAffined`
            (``margin_sigmas``, ``transform_covariance``, ``keypoint_keys``, ``ds_sigma``,
            ``ds_factor``, ``allow_missing_keys``).

    Example:
        In a bundle's transforms::

            - _target_: cryo3d_transforms.RandKeypointAffined
              keys: image
              prob: 0.8
              rotate_range: [3.1416, 0.2, 0.2]
              scale_range: [0.1, 0.1, 0.1]
              translate_range: [8, 8, 8]
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        prob: float = 1.0,
        mode: Any = "bilinear",
        padding_mode: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        map_options, affine_args = split_map_options(kwargs)
        super().__init__(keys, prob, **map_options)
        self.rand_affine = RandKeypointAffine(1.0, **affine_args)
        self.key_options = _per_key_options(len(self.keys), mode, padding_mode)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> "RandKeypointAffined":
        """Seed this transform and its :class:`RandKeypointAffine` (as MONAI's ``RandAffined``)."""
        super().set_random_state(seed, state)
        self.rand_affine.set_random_state(seed, state)
        return self

    @property
    def affine(self) -> np.ndarray:
        """The matrix drawn at the last call (MONAI's convention)."""
        return self.rand_affine.affine

    def draw_transform(self, spatial_shape: Sequence[int]) -> KeypointTransform:
        self.rand_affine.randomize()
        return self.rand_affine

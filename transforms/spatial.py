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

from typing import Any, Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import RandomizableTransform, Transform
from monai.utils import ensure_tuple_rep

from cryo3d_transforms.affine import affine_point_map, compose_affine, draw_range, random_rotation, warp_image, check_affine
from cryo3d_transforms.arrays import host_array, image_to_xp
from cryo3d_transforms.keypoints import DEFAULT_MARGIN_SIGMAS
from cryo3d_transforms.motion import KeypointMapTransform

__all__ = ["KeypointAffine", "RandKeypointAffine", "KeypointAffined", "RandKeypointAffined"]

RangeT = Any  # MONAI-style range: number, (lo, hi), or a sequence of those per axis


def _apply_affine(
    img: Any,
    keypoints: Any,
    covariances: Any,
    affine: np.ndarray,
    spatial_size: Sequence[int] | None,
    mode: Any,
    padding_mode: str,
    threads: int | None,
) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
    arr, restore = image_to_xp(img)
    in_shape = tuple(int(s) for s in arr.shape[1:])
    out = restore(warp_image(arr, affine, spatial_size, mode, padding_mode, threads))
    if keypoints is None:
        return out, None, None
    L, b = affine_point_map(affine, in_shape, spatial_size)
    pts = host_array(keypoints, np.float64, "keypoints", (3,)) @ L.T + b
    cov = None
    if covariances is not None:
        cov = np.einsum("ij,kjl,ml->kim", L, host_array(covariances, np.float64, "covariances", (3, 3)), L)
    return out, pts, cov


class KeypointAffine(Transform):
    """Warp an image ``[C, Z, Y, X]`` by a given affine and move keypoints exactly.

    Parameters
    ----------
    affine : ``[4, 4]`` (or ``[3, 3]``)
        MONAI's convention: output voxel -> input voxel, about the centres.
    spatial_size : (Z, Y, X), optional
        Output shape (default: the input's), centred as in MONAI.
    mode : ``"bilinear"`` (trilinear), ``"nearest"`` or a spline order.
    padding_mode : ``"zeros"``, ``"border"`` or ``"reflection"``.
    threads : CPU threads for the warp (default: torch's thread count).

    Call ``t(img, keypoints=None, covariances=None)`` -> ``(img, keypoints, covariances)``:
    keypoints ``[K, 3]`` z-y-x full-resolution voxels, covariances ``[K, 3, 3]``; the image
    keeps its type and device, the keypoint outputs are NumPy (``None`` when not given).
    No keypoint is dropped here (the dictionary form applies the border rule).
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
        self.spatial_size = spatial_size
        self.mode = mode
        self.padding_mode = padding_mode
        self.threads = threads

    def __call__(self, img: Any, keypoints: Any = None, covariances: Any = None):
        return _apply_affine(
            img, keypoints, covariances, self.affine, self.spatial_size, self.mode, self.padding_mode, self.threads
        )


class RandKeypointAffine(RandomizableTransform):
    """Random affine about the patch centre, applied to an image and its keypoints.

    The parameters follow ``monai.transforms.RandAffine`` (same meaning, same composition
    ``R @ Sh @ T @ Sc``), so the same arguments give the same distribution of motions.

    Parameters
    ----------
    prob : probability of applying the transform.
    rotate_range : MONAI range of Euler angles (radians) about array axes 0, 1, 2; a bare
        number covers axis 0 only, as in MONAI: give three entries for all axes.
    shear_range : MONAI range of up to 6 shear coefficients.
    translate_range : MONAI range of translations in voxels per axis.
    scale_range : MONAI range added to 1 per axis (``0.1`` -> factor in ``[0.9, 1.1]``).
    isotropic_scale : one scale factor for all axes, drawn from the first entry of
        ``scale_range``.
    uniform_rotation : draw the rotation uniformly from all of SO(3) (any axis, any
        angle) instead of from ``rotate_range``.
    spatial_size, mode, padding_mode, threads : as :class:`KeypointAffine`.

    The drawn matrix is kept in ``self.affine`` (MONAI's convention) after each call.
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
        self.rotate_range = rotate_range
        self.shear_range = shear_range
        self.translate_range = translate_range
        self.scale_range = scale_range
        self.isotropic_scale = bool(isotropic_scale)
        self.uniform_rotation = bool(uniform_rotation)
        self.spatial_size = spatial_size
        self.mode = mode
        self.padding_mode = padding_mode
        self.threads = threads
        self.affine = np.eye(4)

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

    def __call__(self, img: Any, keypoints: Any = None, covariances: Any = None, randomize: bool = True):
        """Return ``(img, keypoints, covariances)`` as :class:`KeypointAffine` does."""
        if randomize:
            self.randomize()
        if not self._do_transform:
            kp = None if keypoints is None else host_array(keypoints, np.float64, "keypoints", (3,))
            cov = None if covariances is None else host_array(covariances, np.float64, "covariances", (3, 3))
            return img, kp, cov
        return _apply_affine(
            img, keypoints, covariances, self.affine, self.spatial_size, self.mode, self.padding_mode, self.threads
        )


class _AffineDictBase(KeypointMapTransform):
    """Shared by the two dictionary forms: warp each image key, then move the keypoints."""

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int] | None,
        mode: Any,
        padding_mode: Any,
        transform_covariance: bool,
        threads: int | None,
        **kw: Any,
    ) -> None:
        super().__init__(keys, **kw)
        self.spatial_size = None if spatial_size is None else tuple(int(s) for s in spatial_size)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.padding_mode = ensure_tuple_rep(padding_mode, len(self.keys))
        self.transform_covariance = bool(transform_covariance)
        self.threads = threads

    def _apply(self, data: Mapping[Hashable, Any], affine: np.ndarray) -> dict:
        d = dict(data)
        in_shape = self.spatial_shape(d)
        out_shape = in_shape if self.spatial_size is None else self.spatial_size
        for key, mode, pad in self.key_iterator(d, self.mode, self.padding_mode):
            arr, restore = image_to_xp(d[key], str(key))
            d[key] = restore(warp_image(arr, affine, out_shape, mode, pad, self.threads))
        L, b = affine_point_map(affine, in_shape, out_shape)
        return self.move_keypoints(d, L, b, out_shape, create_covariances=self.transform_covariance)


class KeypointAffined(_AffineDictBase):
    """Dictionary form of :class:`KeypointAffine`: a fixed matrix on images and keypoints.

    Parameters
    ----------
    keys : image keys to warp (``"image"``).
    affine : ``[4, 4]`` MONAI-convention matrix (output voxel -> input voxel, about the centres).
    spatial_size : output shape (default: the input's).
    mode, padding_mode : one value or one per key (MONAI names).
    transform_covariance : when True, each keypoint's Gaussian follows the matrix: a
        ``covariances`` field (full-resolution voxels) is created from ``ds_sigma`` if absent,
        ``(ds_sigma[c] * ds_factor)^2 I``, and becomes ``L S L^T``. When False an isotropic
        keypoint keeps its class sigma. Covariances already present always follow the
        matrix (they describe the sample's geometry).
    margin_sigmas : border margin for dropping keypoints (:mod:`cryo3d_transforms.keypoints`);
        ``None`` keeps all.
    threads : CPU threads for the warp.
    keypoints_key, labels_key, covariances_key, heatmap_key, ds_sigma, ds_factor,
    allow_missing_keys : see :class:`cryo3d_transforms.motion.KeypointMapTransform`.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        affine: Any = None,
        spatial_size: Sequence[int] | None = None,
        mode: Any = "bilinear",
        padding_mode: Any = "zeros",
        transform_covariance: bool = False,
        margin_sigmas: float | None = DEFAULT_MARGIN_SIGMAS,
        threads: int | None = None,
        keypoints_key: str = "keypoints",
        labels_key: str = "labels",
        covariances_key: str = "covariances",
        heatmap_key: str | None = "heatmap",
        ds_sigma: Sequence[float] | None = None,
        ds_factor: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        if affine is None:
            raise ValueError("KeypointAffined: 'affine' (a 4x4 matrix in MONAI's convention) is required")
        super().__init__(
            keys,
            spatial_size,
            mode,
            padding_mode,
            transform_covariance,
            threads,
            keypoints_key=keypoints_key,
            labels_key=labels_key,
            covariances_key=covariances_key,
            heatmap_key=heatmap_key,
            margin_sigmas=margin_sigmas,
            ds_sigma=ds_sigma,
            ds_factor=ds_factor,
            allow_missing_keys=allow_missing_keys,
        )
        self.affine = check_affine(affine)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        return self._apply(data, self.affine)


class RandKeypointAffined(RandomizableTransform, _AffineDictBase):
    """Random affine on images and keypoints together (dictionary form).

    The random parameters are those of :class:`RandKeypointAffine` (MONAI ``RandAffine``
    meaning); the other parameters those of :class:`KeypointAffined`. With probability
    ``1 - prob`` the sample is returned unchanged (no resampling, no keypoint dropped).

    Example (bundle YAML)::

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
        rotate_range: RangeT = None,
        shear_range: RangeT = None,
        translate_range: RangeT = None,
        scale_range: RangeT = None,
        isotropic_scale: bool = False,
        uniform_rotation: bool = False,
        spatial_size: Sequence[int] | None = None,
        mode: Any = "bilinear",
        padding_mode: Any = "zeros",
        transform_covariance: bool = False,
        margin_sigmas: float | None = DEFAULT_MARGIN_SIGMAS,
        threads: int | None = None,
        keypoints_key: str = "keypoints",
        labels_key: str = "labels",
        covariances_key: str = "covariances",
        heatmap_key: str | None = "heatmap",
        ds_sigma: Sequence[float] | None = None,
        ds_factor: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        _AffineDictBase.__init__(
            self,
            keys,
            spatial_size,
            mode,
            padding_mode,
            transform_covariance,
            threads,
            keypoints_key=keypoints_key,
            labels_key=labels_key,
            covariances_key=covariances_key,
            heatmap_key=heatmap_key,
            margin_sigmas=margin_sigmas,
            ds_sigma=ds_sigma,
            ds_factor=ds_factor,
            allow_missing_keys=allow_missing_keys,
        )
        self.rand_affine = RandKeypointAffine(
            1.0, rotate_range, shear_range, translate_range, scale_range, isotropic_scale, uniform_rotation
        )

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.rand_affine.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self.rand_affine.randomize()

    @property
    def affine(self) -> np.ndarray:
        """The matrix drawn at the last call (MONAI's convention)."""
        return self.rand_affine.affine

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        self.randomize()
        if not self._do_transform:
            return dict(data)
        return self._apply(data, self.rand_affine.affine)


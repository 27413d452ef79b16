"""Render the training target at the end of the pipeline, from the (moved) keypoints.

The heatmap is never interpolated: after every spatial augmentation it is drawn again,
analytically, from the keypoints (``cryo3d.heatmap.render_heatmap``) at 1/``ds_factor``
of the image's resolution. The rendering runs where the image lives: NumPy for a host
image, CuPy for a CUDA tensor or CuPy array (keypoints are copied to the device once;
the heatmap crosses to torch by DLPack without a copy).
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from cryo3d import coords
from cryo3d.heatmap import DEFAULT_TRUNCATE, render_heatmap
from cryo3d_transforms.arrays import host_array, image_to_xp, keypoints_to_xp, like_image
from cryo3d_transforms.keypoints import read_keypoints, sample_ds_params

__all__ = ["RenderHeatmap", "RenderHeatmapd", "render_sample_heatmap"]


def render_sample_heatmap(
    keypoints: Any,
    labels: Any,
    spatial_shape: Sequence[int],
    ds_sigma: Sequence[float],
    ds_factor: int,
    covariances: Any = None,
    like: Any = None,
    truncate: float = DEFAULT_TRUNCATE,
) -> Any:
    """Heatmap ``[C, ceil(Z/f), ceil(Y/f), ceil(X/f)]`` float32 for full-resolution keypoints.

    Parameters
    ----------
    keypoints : ``[K, 3]`` z-y-x in full-resolution patch voxels.
    labels : ``[K]`` class ids in ``[0, C)``.
    spatial_shape : full-resolution (Z, Y, X) of the image.
    ds_sigma : ``[C]`` per-class sigma in downsampled voxels.
    ds_factor : downsampling factor ``f``.
    covariances : ``[K, 3, 3]`` in full-resolution voxels, optional (divided by ``f^2``).
    like : array or tensor, optional
        The result takes its array module / type and device (NumPy by default).
    truncate : box half-width in standard deviations (``cryo3d.heatmap``).
    """
    kp = host_array(keypoints, np.float64, "keypoints", (3,))
    lab = host_array(labels, np.int64, "labels")
    ref = np.empty(0) if like is None else image_to_xp(like, "like")[0]  # torch -> NumPy / CuPy view
    kp_x = keypoints_to_xp(coords.voxel_to_ds(kp, ds_factor), ref)
    lab_x = keypoints_to_xp(lab, ref)
    cov_x = None
    if covariances is not None:
        cov_x = keypoints_to_xp(coords.voxel_to_ds_covariance(host_array(covariances, np.float64, "covariances", (3, 3)), ds_factor), ref)
    shape_ds = coords.ds_shape(tuple(spatial_shape), ds_factor)
    hm = render_heatmap(kp_x, lab_x, shape_ds, ds_sigma, cov_x, truncate=truncate)
    return hm if like is None else like_image(hm, like)


class RenderHeatmap(Transform):
    """Array form: ``t(keypoints, labels, spatial_shape, covariances=None, like=None)`` -> heatmap.

    Parameters
    ----------
    ds_sigma : ``[C]`` per-class sigma in downsampled voxels.
    ds_factor : downsampling factor.
    truncate : box half-width in standard deviations.
    """

    def __init__(self, ds_sigma: Sequence[float], ds_factor: int, truncate: float = DEFAULT_TRUNCATE) -> None:
        self.ds_sigma = np.asarray(ds_sigma, np.float64)
        self.ds_factor = int(ds_factor)
        self.truncate = float(truncate)

    def __call__(self, keypoints: Any, labels: Any, spatial_shape: Sequence[int], covariances: Any = None, like: Any = None):
        return render_sample_heatmap(
            keypoints, labels, spatial_shape, self.ds_sigma, self.ds_factor, covariances, like, self.truncate
        )


class RenderHeatmapd(MapTransform):
    """Render ``heatmap`` from ``keypoints`` / ``labels`` (and ``covariances``) of a sample.

    Keypoints in full-resolution patch voxels go through ``coords.voxel_to_ds``; sigma is
    the sample's ``ds_sigma`` (downsampled voxels), or each keypoint's covariance divided
    by ``ds_factor**2`` when the sample has ``covariances``. The output shape is
    ``coords.ds_shape(image spatial shape, ds_factor)``, the type and device those of the
    image: NumPy for a NumPy image, a torch tensor (CPU, or CUDA rendered with CuPy) for a
    torch image.

    Parameters
    ----------
    keys : the image key whose shape and device the heatmap follows (one key).
    heatmap_key : where to store the heatmap.
    ds_sigma, ds_factor : override the sample's ``ds_sigma`` / ``ds_factor`` fields.
    overwrite : when False, a heatmap already in the sample is kept (the precomputed
        cheap path for samples that no spatial transform has touched; spatial transforms
        remove a stale heatmap).
    truncate : box half-width in standard deviations.
    keypoints_key, labels_key, covariances_key : names of the keypoint fields.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        heatmap_key: str = "heatmap",
        ds_sigma: Sequence[float] | None = None,
        ds_factor: int | None = None,
        overwrite: bool = True,
        truncate: float = DEFAULT_TRUNCATE,
        keypoints_key: str = "keypoints",
        labels_key: str = "labels",
        covariances_key: str = "covariances",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"RenderHeatmapd: give one image key, got {list(self.keys)}")
        self.heatmap_key = heatmap_key
        self.ds_sigma = ds_sigma
        self.ds_factor = ds_factor
        self.overwrite = bool(overwrite)
        self.truncate = float(truncate)
        self.keypoints_key = keypoints_key
        self.labels_key = labels_key
        self.covariances_key = covariances_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        if not self.overwrite and d.get(self.heatmap_key) is not None:
            return d
        for key in self.key_iterator(d):
            img = d[key]
            if len(img.shape) != 4:
                raise ValueError(f"{key}: expected channels-first [C, Z, Y, X], got shape {tuple(img.shape)}")
            fields = read_keypoints(d, self.keypoints_key, self.labels_key, self.covariances_key)
            sig, fac = sample_ds_params(d, self.ds_sigma, self.ds_factor)
            d[self.heatmap_key] = render_sample_heatmap(
                fields.points, fields.labels, img.shape[1:], sig, fac, fields.covariances, like=img, truncate=self.truncate
            )
        return d

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
from cryo3d_transforms.keypoint_transform import image_spatial_shape
from cryo3d_transforms.keypoints import KeypointKeys, read_keypoints, sample_ds_params

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

    Args:
        keypoints: ``[K, 3]`` z-y-x in full-resolution patch voxels.
        labels: ``[K]`` class ids in ``[0, C)``.
        spatial_shape: full-resolution (Z, Y, X) of the image.
        ds_sigma: ``[C]`` per-class sigma in downsampled voxels.
        ds_factor: downsampling factor ``f``.
        covariances: optional ``[K, 3, 3]`` in full-resolution voxels (divided by ``f^2``).
        like: optional array or tensor whose array module / type and device the result
            takes (NumPy by default).
        truncate: box half-width in standard deviations (``cryo3d.heatmap``).

    Returns:
        The heatmap, peak 1 at each keypoint, background 0.
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
    """Render a sample's heatmap from its keypoints (array form of :class:`RenderHeatmapd`).

    Args:
        ds_sigma: ``[C]`` per-class sigma in downsampled voxels (or give it per call).
        ds_factor: downsampling factor (or give it per call).
        truncate: box half-width in standard deviations.

    Example:
        >>> import numpy as np
        >>> hm = RenderHeatmap([1.0], 2)(np.array([[4.5, 6.5, 8.5]]), np.array([0]), (16, 16, 16))
        >>> hm.shape, float(hm[0, 2, 3, 4])
        ((1, 8, 8, 8), 1.0)
    """

    def __init__(
        self, ds_sigma: Sequence[float] | None = None, ds_factor: int | None = None, truncate: float = DEFAULT_TRUNCATE
    ) -> None:
        self.ds_sigma = None if ds_sigma is None else np.asarray(ds_sigma, np.float64)
        self.ds_factor = None if ds_factor is None else int(ds_factor)
        self.truncate = float(truncate)

    def __call__(
        self,
        keypoints: Any,
        labels: Any,
        spatial_shape: Sequence[int],
        covariances: Any = None,
        like: Any = None,
        ds_sigma: Sequence[float] | None = None,
        ds_factor: int | None = None,
    ) -> Any:
        """Heatmap of :func:`render_sample_heatmap`; ``ds_sigma`` / ``ds_factor`` override the transform's.

        Raises:
            ValueError: neither the call nor the transform gives ``ds_sigma`` and ``ds_factor``.
        """
        sig = self.ds_sigma if ds_sigma is None else ds_sigma
        fac = self.ds_factor if ds_factor is None else ds_factor
        if sig is None or fac is None:
            raise ValueError("RenderHeatmap: give ds_sigma and ds_factor to the transform or to the call")
        return render_sample_heatmap(keypoints, labels, spatial_shape, sig, fac, covariances, like, self.truncate)


class RenderHeatmapd(MapTransform):
    """Render ``heatmap`` from ``keypoints`` / ``labels`` (and ``covariances``) of a sample.

    Keypoints in full-resolution patch voxels go through ``coords.voxel_to_ds``; sigma is
    the sample's ``ds_sigma`` (downsampled voxels), or each keypoint's covariance divided
    by ``ds_factor**2`` when the sample has ``covariances``. The output shape is
    ``coords.ds_shape(image spatial shape, ds_factor)``, the type and device those of the
    image: NumPy for a NumPy image, a torch tensor (CPU, or CUDA rendered with CuPy) for a
    torch image. Holds a :class:`RenderHeatmap` and delegates to it.

    Args:
        keys: the image key whose shape and device the heatmap follows (one key).
        ds_sigma: overrides the sample's ``ds_sigma`` field (downsampled voxels).
        ds_factor: overrides the sample's ``ds_factor`` field.
        overwrite: when False, a heatmap already in the sample is kept (the precomputed
            cheap path for samples that no spatial transform has touched; spatial
            transforms remove a stale heatmap).
        truncate: box half-width in standard deviations.
        keypoint_keys: names of the heatmap, keypoint and ``ds_*`` fields
            (:class:`~cryo3d_transforms.keypoints.KeypointKeys`; ``None``: defaults).
        allow_missing_keys: as in MONAI.

    Raises:
        ValueError: more than one image key.

    Example:
        ``{_target_: cryo3d_transforms.RenderHeatmapd, keys: image}`` last in a bundle's
        transforms; ``RenderHeatmapd()(sample)["heatmap"]`` in Python.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        ds_sigma: Sequence[float] | None = None,
        ds_factor: int | None = None,
        overwrite: bool = True,
        truncate: float = DEFAULT_TRUNCATE,
        keypoint_keys: KeypointKeys | Mapping[str, str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"RenderHeatmapd: give one image key, got {list(self.keys)}")
        self.renderer = RenderHeatmap(ds_sigma, ds_factor, truncate)
        self.overwrite = bool(overwrite)
        self.keypoint_keys = KeypointKeys.of(keypoint_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        """Return a new sample dictionary with the heatmap added."""
        d = dict(data)
        keys = self.keypoint_keys
        if not self.overwrite and d.get(keys.heatmap) is not None:
            return d
        for key in self.key_iterator(d):
            shape = image_spatial_shape(d[key], str(key))
            fields = read_keypoints(d, keys)
            sig, fac = sample_ds_params(d, self.renderer.ds_sigma, self.renderer.ds_factor, keys)
            d[keys.heatmap] = self.renderer(
                fields.points, fields.labels, shape, fields.covariances, like=d[key], ds_sigma=sig, ds_factor=fac
            )
        return d

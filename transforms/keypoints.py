"""Per-sample keypoint fields and the rule that keeps or drops a keypoint near the border.

Units: keypoints are ``[K, 3]`` z-y-x in **full-resolution patch voxels** (voxel ``i``
centred at ``i``); covariances ``[K, 3, 3]`` in full-resolution voxels squared; per-class
``ds_sigma`` in **downsampled** voxels at factor ``ds_factor`` (``ARCHITECTURE.md``).

Border rule (every spatial transform applies it after moving the points): the patch
covers ``[-0.5, n - 0.5]`` along an axis of ``n`` voxels (the voxels' extents). A
keypoint is kept while it lies within a margin of that box, by default 3 sigma of its
class in full-resolution voxels (``3 * ds_sigma[c] * ds_factor``; with a covariance,
3 standard deviations along that axis, ``3 * sqrt(cov[a, a])``), so that the tail of a
particle just outside the patch is still drawn, and a later shift can bring it back.
Keypoints that move in are kept like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from cryo3d import coords
from cryo3d_transforms.arrays import host_array

__all__ = [
    "KeypointFields",
    "read_keypoints",
    "write_keypoints",
    "sample_ds_params",
    "isotropic_covariances",
    "keypoint_margins",
    "inside_with_margin",
    "DEFAULT_MARGIN_SIGMAS",
]

#: Default border margin in standard deviations of each keypoint's Gaussian.
DEFAULT_MARGIN_SIGMAS = coords.KEYPOINT_MARGIN_SIGMAS


@dataclass(frozen=True)
class KeypointFields:
    """The keypoint fields of one sample, on the host.

    Attributes
    ----------
    points : float64 ``[K, 3]``
        z-y-x, full-resolution patch voxels.
    labels : int64 ``[K]``
        Class ids.
    covariances : float64 ``[K, 3, 3]`` or None
        Per-keypoint covariance in full-resolution voxels (z-y-x), when the sample has one.
    """

    points: np.ndarray
    labels: np.ndarray
    covariances: np.ndarray | None = None

    def select(self, keep: np.ndarray) -> "KeypointFields":
        """The keypoints where the boolean mask ``keep`` ``[K]`` is True."""
        cov = None if self.covariances is None else self.covariances[keep]
        return KeypointFields(self.points[keep], self.labels[keep], cov)

    def with_points(self, points: np.ndarray, covariances: np.ndarray | None = None) -> "KeypointFields":
        """Same labels, new positions (and covariances, when given)."""
        return replace(self, points=points, covariances=self.covariances if covariances is None else covariances)


def read_keypoints(
    d: Mapping[str, Any],
    keypoints_key: str = "keypoints",
    labels_key: str = "labels",
    covariances_key: str | None = "covariances",
) -> KeypointFields:
    """Read and check a sample's keypoint fields (host NumPy, float64 / int64).

    Raises
    ------
    ValueError
        When a field is missing or its shape is not ``[K, 3]`` / ``[K]`` / ``[K, 3, 3]``
        with one ``K``.
    """
    for key in (keypoints_key, labels_key):
        if key not in d:
            raise ValueError(f"sample has no {key!r} field (keys: {sorted(d)})")
    pts = host_array(d[keypoints_key], np.float64, keypoints_key, (3,))
    lab = host_array(d[labels_key], np.int64, labels_key)
    if lab.shape[0] != pts.shape[0]:
        raise ValueError(f"{labels_key}: {lab.shape[0]} labels for {pts.shape[0]} keypoints in {keypoints_key!r}")
    cov = None
    if covariances_key is not None and d.get(covariances_key) is not None:
        cov = host_array(d[covariances_key], np.float64, covariances_key, (3, 3))
        if cov.shape[0] != pts.shape[0]:
            raise ValueError(f"{covariances_key}: {cov.shape[0]} covariances for {pts.shape[0]} keypoints")
    return KeypointFields(pts, lab, cov)


def write_keypoints(
    d: dict,
    fields: KeypointFields,
    keypoints_key: str = "keypoints",
    labels_key: str = "labels",
    covariances_key: str | None = "covariances",
) -> dict:
    """Store ``fields`` into the dictionary ``d`` (in place; returns ``d``)."""
    d[keypoints_key] = fields.points
    d[labels_key] = fields.labels
    if covariances_key is not None and fields.covariances is not None:
        d[covariances_key] = fields.covariances
    return d


def sample_ds_params(
    d: Mapping[str, Any],
    ds_sigma: Sequence[float] | None = None,
    ds_factor: int | None = None,
    ds_sigma_key: str = "ds_sigma",
    ds_factor_key: str = "ds_factor",
) -> tuple[np.ndarray, int]:
    """Per-class ``ds_sigma`` ``[C]`` (downsampled voxels) and ``ds_factor`` of a sample.

    Explicit arguments win over the sample's fields.

    Raises
    ------
    ValueError
        When neither the argument nor the field is there, or the values are invalid.
    """
    if ds_sigma is None:
        if ds_sigma_key not in d:
            raise ValueError(f"sample has no {ds_sigma_key!r} field and no ds_sigma was given to the transform")
        ds_sigma = d[ds_sigma_key]
    if ds_factor is None:
        if ds_factor_key not in d:
            raise ValueError(f"sample has no {ds_factor_key!r} field and no ds_factor was given to the transform")
        ds_factor = d[ds_factor_key]
    sig = host_array(ds_sigma, np.float64, ds_sigma_key)
    if sig.size == 0 or np.any(~np.isfinite(sig)) or np.any(sig <= 0):
        raise ValueError(f"{ds_sigma_key}: expected positive per-class sigmas in downsampled voxels, got {sig.tolist()}")
    f_arr = host_array(ds_factor, np.float64, ds_factor_key)
    if f_arr.size != 1 or f_arr[0] < 1 or f_arr[0] != int(f_arr[0]):
        raise ValueError(f"{ds_factor_key}: expected one positive integer, got {f_arr.tolist()}")
    return sig, int(f_arr[0])


def isotropic_covariances(labels: np.ndarray, ds_sigma: np.ndarray, ds_factor: int) -> np.ndarray:
    """``(ds_sigma[label] * ds_factor)^2 I``: each keypoint's class Gaussian as a covariance.

    Returns
    -------
    float64 ``[K, 3, 3]`` in full-resolution voxels squared.
    """
    s = coords.ds_to_voxel_length(np.asarray(ds_sigma, np.float64)[np.asarray(labels, np.int64)], ds_factor)
    return (s**2)[:, None, None] * np.eye(3)[None]


def keypoint_margins(
    fields: KeypointFields,
    ds_sigma: np.ndarray,
    ds_factor: int,
    margin_sigmas: float = DEFAULT_MARGIN_SIGMAS,
) -> np.ndarray:
    """Per-keypoint, per-axis border margin in full-resolution voxels, ``[K, 3]``.

    ``margin_sigmas`` standard deviations of each keypoint's Gaussian along each axis:
    ``sqrt(cov[a, a])`` when the keypoint has a covariance, else ``ds_sigma[c] * ds_factor``.
    """
    lab = fields.labels
    if lab.size and (lab.min() < 0 or lab.max() >= len(ds_sigma)):
        raise ValueError(f"labels must lie in [0, {len(ds_sigma)}) for ds_sigma of {len(ds_sigma)} classes")
    if fields.covariances is not None:
        sd = np.sqrt(np.clip(np.diagonal(fields.covariances, axis1=1, axis2=2), 0.0, None))
    else:
        sd = np.repeat(coords.ds_to_voxel_length(np.asarray(ds_sigma)[lab], ds_factor)[:, None], 3, axis=1)
    return float(margin_sigmas) * sd


def inside_with_margin(points: np.ndarray, shape: Sequence[int], margins: np.ndarray | float) -> np.ndarray:
    """Boolean ``[K]``: the keypoint lies within ``margins`` of the patch ``[-0.5, n - 0.5]``.

    Parameters
    ----------
    points : ``[K, 3]`` full-resolution voxels.
    shape : (Z, Y, X) of the patch.
    margins : ``[K, 3]``, ``[K, 1]`` or a float, full-resolution voxels.
    """
    return coords.in_voxel_extent(np.asarray(points), shape, margins)

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
    "KeypointKeys",
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
class KeypointKeys:
    """The names of the fields that travel together in a sample or a batch.

    One bundle instead of a list of ``*_key`` arguments per transform; every transform
    and mixer takes it as ``keypoint_keys`` (``None`` means these defaults).

    Args:
        image: the network input ``[C, Z, Y, X]`` (batch ``[B, C, Z, Y, X]``).
        keypoints: float ``[K, 3]`` z-y-x, full-resolution patch voxels.
        labels: int ``[K]`` class ids (``-1`` marks padding in a batch).
        covariances: optional float ``[K, 3, 3]``, full-resolution voxels squared.
        heatmap: the rendered target ``[C, z, y, x]`` at 1/``ds_factor``; ``None`` lets
            spatial transforms keep a stale precomputed heatmap.
        ds_sigma: per-class sigma ``[C]`` in downsampled voxels.
        ds_factor: the downsampling factor (an integer).
        count: number of real (unpadded) keypoints per sample in a collated batch.

    Example:
        >>> KeypointKeys(heatmap="target").heatmap
        'target'

        In a bundle: ``keypoint_keys: {_target_: cryo3d_transforms.KeypointKeys, heatmap: target}``.
    """

    image: str = "image"
    keypoints: str = "keypoints"
    labels: str = "labels"
    covariances: str = "covariances"
    heatmap: str | None = "heatmap"
    ds_sigma: str = "ds_sigma"
    ds_factor: str = "ds_factor"
    count: str = "num_keypoints"

    @classmethod
    def of(cls, value: "KeypointKeys | Mapping[str, str] | None") -> "KeypointKeys":
        """``value`` as a :class:`KeypointKeys` (``None``: the defaults; a mapping: its fields).

        Raises:
            TypeError: a mapping names a field that does not exist.
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        return cls(**dict(value))


@dataclass(frozen=True)
class KeypointFields:
    """The keypoint fields of one sample, on the host.

    Args:
        points: float64 ``[K, 3]``, z-y-x, full-resolution patch voxels.
        labels: int64 ``[K]`` class ids.
        covariances: float64 ``[K, 3, 3]`` per-keypoint covariance in full-resolution
            voxels (z-y-x), or ``None`` when the sample has none.
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


def read_keypoints(d: Mapping[str, Any], keys: KeypointKeys | None = None) -> KeypointFields:
    """Read and check a sample's keypoint fields (host NumPy, float64 / int64).

    Args:
        d: the sample dictionary.
        keys: the field names (default :class:`KeypointKeys`).

    Returns:
        The sample's :class:`KeypointFields` (covariances ``None`` when absent).

    Raises:
        ValueError: a field is missing or its shape is not ``[K, 3]`` / ``[K]`` /
            ``[K, 3, 3]`` with one ``K``.
    """
    k = KeypointKeys.of(keys)
    for key in (k.keypoints, k.labels):
        if key not in d:
            raise ValueError(f"sample has no {key!r} field (keys: {sorted(d)})")
    pts = host_array(d[k.keypoints], np.float64, k.keypoints, (3,))
    lab = host_array(d[k.labels], np.int64, k.labels)
    if lab.shape[0] != pts.shape[0]:
        raise ValueError(f"{k.labels}: {lab.shape[0]} labels for {pts.shape[0]} keypoints in {k.keypoints!r}")
    cov = None
    if d.get(k.covariances) is not None:
        cov = host_array(d[k.covariances], np.float64, k.covariances, (3, 3))
        if cov.shape[0] != pts.shape[0]:
            raise ValueError(f"{k.covariances}: {cov.shape[0]} covariances for {pts.shape[0]} keypoints")
    return KeypointFields(pts, lab, cov)


def write_keypoints(d: dict, fields: KeypointFields, keys: KeypointKeys | None = None) -> dict:
    """Store ``fields`` into the dictionary ``d`` in place.

    Returns:
        ``d``, with keypoints, labels and (when ``fields`` has them) covariances set.
    """
    k = KeypointKeys.of(keys)
    d[k.keypoints] = fields.points
    d[k.labels] = fields.labels
    if fields.covariances is not None:
        d[k.covariances] = fields.covariances
    return d


def sample_ds_params(
    d: Mapping[str, Any],
    ds_sigma: Sequence[float] | None = None,
    ds_factor: int | None = None,
    keys: KeypointKeys | None = None,
) -> tuple[np.ndarray, int]:
    """Per-class ``ds_sigma`` ``[C]`` (downsampled voxels) and ``ds_factor`` of a sample.

    Args:
        d: the sample dictionary.
        ds_sigma: explicit per-class sigma; wins over the sample's field.
        ds_factor: explicit factor; wins over the sample's field.
        keys: the field names (default :class:`KeypointKeys`).

    Returns:
        ``(sigma, factor)``: float64 ``[C]`` and an int.

    Raises:
        ValueError: neither the argument nor the field is there, or the values are invalid.
    """
    k = KeypointKeys.of(keys)
    if ds_sigma is None:
        if k.ds_sigma not in d:
            raise ValueError(f"sample has no {k.ds_sigma!r} field and no ds_sigma was given to the transform")
        ds_sigma = d[k.ds_sigma]
    if ds_factor is None:
        if k.ds_factor not in d:
            raise ValueError(f"sample has no {k.ds_factor!r} field and no ds_factor was given to the transform")
        ds_factor = d[k.ds_factor]
    sig = host_array(ds_sigma, np.float64, k.ds_sigma)
    if sig.size == 0 or np.any(~np.isfinite(sig)) or np.any(sig <= 0):
        raise ValueError(f"{k.ds_sigma}: expected positive per-class sigmas in downsampled voxels, got {sig.tolist()}")
    f_arr = host_array(ds_factor, np.float64, k.ds_factor)
    if f_arr.size != 1 or f_arr[0] < 1 or f_arr[0] != int(f_arr[0]):
        raise ValueError(f"{k.ds_factor}: expected one positive integer, got {f_arr.tolist()}")
    return sig, int(f_arr[0])


def isotropic_covariances(labels: np.ndarray, ds_sigma: np.ndarray, ds_factor: int) -> np.ndarray:
    """``(ds_sigma[label] * ds_factor)^2 I``: each keypoint's class Gaussian as a covariance.

    Returns:
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

    Raises:
        ValueError: a label lies outside ``[0, len(ds_sigma))``.
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

    Args:
        points: ``[K, 3]`` full-resolution voxels.
        shape: (Z, Y, X) of the patch.
        margins: ``[K, 3]``, ``[K, 1]`` or a float, full-resolution voxels.
    """
    return coords.in_voxel_extent(np.asarray(points), shape, margins)

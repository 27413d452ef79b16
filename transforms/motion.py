"""Moving a sample's keypoints together with its image: the part every spatial transform shares.

Every spatial transform here (affine, flip, 90-degree rotation, crop, shift) moves points
by an exact affine map ``o = L @ p + b`` (``L`` ``[3, 3]``, ``b`` ``[3]``, full-resolution
voxels, z-y-x). :class:`KeypointMapTransform` applies that map to ``keypoints`` (and to
``covariances``: ``L S L^T``), drops keypoints past the border margin
(:mod:`cryo3d_transforms.keypoints`), and removes a precomputed ``heatmap``, which no longer
matches the moved image (render it again with :class:`cryo3d_transforms.RenderHeatmapd`).
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from cryo3d_transforms.keypoints import (
    DEFAULT_MARGIN_SIGMAS,
    KeypointFields,
    inside_with_margin,
    isotropic_covariances,
    keypoint_margins,
    read_keypoints,
    sample_ds_params,
    write_keypoints,
)

__all__ = ["move_points", "KeypointMapTransform"]


def move_points(fields: KeypointFields, linear: np.ndarray, shift: np.ndarray) -> KeypointFields:
    """Apply ``o = linear @ p + shift`` to the points and ``linear S linear^T`` to covariances."""
    L = np.asarray(linear, np.float64)
    pts = fields.points @ L.T + np.asarray(shift, np.float64)[None, :]
    cov = None
    if fields.covariances is not None:
        cov = np.einsum("ij,kjl,ml->kim", L, fields.covariances, L)
    return KeypointFields(pts, fields.labels, cov)


class KeypointMapTransform(MapTransform):
    """Base of the dictionary transforms that move image keys and keypoints together.

    Parameters
    ----------
    keys : keys of the channels-first images to transform (``"image"``; several keys
        must share a spatial shape, e.g. an image and a mask).
    keypoints_key, labels_key, covariances_key : names of the keypoint fields.
    heatmap_key : name of a precomputed heatmap, removed once the image moves (``None``
        keeps it).
    margin_sigmas : float or None
        Border margin in standard deviations (:mod:`cryo3d_transforms.keypoints`); ``None`` keeps
        every keypoint wherever it lands.
    ds_sigma, ds_factor : optional
        Per-class sigma (downsampled voxels) and factor; default the sample's ``ds_sigma`` /
        ``ds_factor`` fields. Needed for the margin and for new covariances.
    allow_missing_keys : bool
        As in MONAI: image keys absent from a sample are skipped.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        keypoints_key: str = "keypoints",
        labels_key: str = "labels",
        covariances_key: str = "covariances",
        heatmap_key: str | None = "heatmap",
        margin_sigmas: float | None = DEFAULT_MARGIN_SIGMAS,
        ds_sigma: Sequence[float] | None = None,
        ds_factor: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.keypoints_key = keypoints_key
        self.labels_key = labels_key
        self.covariances_key = covariances_key
        self.heatmap_key = heatmap_key
        self.margin_sigmas = None if margin_sigmas is None else float(margin_sigmas)
        self.ds_sigma = ds_sigma
        self.ds_factor = ds_factor

    def spatial_shape(self, d: Mapping[Hashable, Any]) -> tuple[int, int, int]:
        """Spatial shape (Z, Y, X) shared by the present image keys."""
        shapes = {tuple(int(s) for s in d[k].shape[1:]) for k in self.key_iterator(d)}
        if len(shapes) != 1:
            raise ValueError(f"keys {list(self.keys)}: expected one spatial shape among the images, got {sorted(shapes)}")
        shape = shapes.pop()
        if len(shape) != 3:
            raise ValueError(f"keys {list(self.keys)}: expected channels-first [C, Z, Y, X] images, got spatial {shape}")
        return shape  # type: ignore[return-value]

    def read_fields(self, d: Mapping[Hashable, Any]) -> KeypointFields:
        return read_keypoints(d, self.keypoints_key, self.labels_key, self.covariances_key)  # type: ignore[arg-type]

    def move_keypoints(
        self,
        d: dict,
        linear: np.ndarray,
        shift: np.ndarray,
        out_shape: Sequence[int],
        create_covariances: bool = False,
    ) -> dict:
        """Move the sample's keypoints by ``o = linear @ p + shift`` and apply the border rule.

        Parameters
        ----------
        d : the (already copied) sample dictionary; updated in place and returned.
        linear, shift : the exact point map in full-resolution voxels.
        out_shape : spatial shape of the moved image (border rule).
        create_covariances : give isotropic keypoints a covariance from ``ds_sigma``
            first (``(ds_sigma[c] * ds_factor)^2 I``), so that it follows ``linear``.
        """
        fields = self.read_fields(d)
        need_ds = self.margin_sigmas is not None or (create_covariances and fields.covariances is None)
        sig, fac = sample_ds_params(d, self.ds_sigma, self.ds_factor) if need_ds else (None, None)
        if create_covariances and fields.covariances is None:
            fields = fields.with_points(fields.points, isotropic_covariances(fields.labels, sig, fac))
        moved = move_points(fields, linear, shift)
        if self.margin_sigmas is not None:
            margins = keypoint_margins(moved, sig, fac, self.margin_sigmas)
            moved = moved.select(inside_with_margin(moved.points, out_shape, margins))
        write_keypoints(d, moved, self.keypoints_key, self.labels_key, self.covariances_key)
        if self.heatmap_key is not None:
            d.pop(self.heatmap_key, None)
        return d

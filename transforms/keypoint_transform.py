"""The bases of every spatial transform here: one exact point map for image and keypoints.

Every spatial transform (affine, flip, 90-degree rotation, crop, shift) moves points by
an exact affine map ``o = L @ p + b`` (``L`` ``[3, 3]``, ``b`` ``[3]``, full-resolution
voxels, z-y-x), and covariances by ``L S L^T``.

* :class:`KeypointTransform` is the array form (MONAI's ``Transform``): a subclass says
  how the image changes (:meth:`~KeypointTransform.apply_image`) and how points move
  (:meth:`~KeypointTransform.point_map`); ``t(img, keypoints, covariances)`` does both.
* :class:`KeypointMapTransform` is the dictionary form (MONAI's ``MapTransform``): it
  holds an array transform and delegates to it, for every image key of the sample,
  then moves the sample's keypoints (:class:`~cryo3d_transforms.keypoints.KeypointKeys`),
  drops those past the border margin (:mod:`cryo3d_transforms.keypoints`) and removes a
  precomputed heatmap, which no longer matches the moved image (render it again with
  :class:`cryo3d_transforms.RenderHeatmapd`).
* :class:`RandKeypointMapTransform` is the random dictionary form: with probability
  ``prob`` it draws an array transform (:meth:`~RandKeypointMapTransform.draw_transform`)
  and applies it as above; otherwise the sample comes back untouched.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform, Transform

from cryo3d_transforms.arrays import host_array
from cryo3d_transforms.keypoints import (
    DEFAULT_MARGIN_SIGMAS,
    KeypointFields,
    KeypointKeys,
    inside_with_margin,
    isotropic_covariances,
    keypoint_margins,
    read_keypoints,
    sample_ds_params,
    write_keypoints,
)

__all__ = [
    "PointMap",
    "move_points",
    "move_keypoint_arrays",
    "image_spatial_shape",
    "KeypointTransform",
    "KeypointMapTransform",
    "RandKeypointMapTransform",
    "MAP_OPTIONS",
    "split_map_options",
]

#: ``(L, b, out_shape)``: points move as ``o = L @ p + b``; the image's new spatial shape.
PointMap = tuple[np.ndarray, np.ndarray, tuple[int, int, int]]

#: Parameters of :class:`KeypointMapTransform` (see :func:`split_map_options`).
MAP_OPTIONS = ("keypoint_keys", "margin_sigmas", "ds_sigma", "ds_factor", "transform_covariance", "allow_missing_keys")


def _move_covariances(linear: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """``L S L^T`` for each ``S`` of ``[K, 3, 3]``."""
    return np.einsum("ij,kjl,ml->kim", linear, covariances, linear)


def move_points(fields: KeypointFields, linear: np.ndarray, shift: np.ndarray) -> KeypointFields:
    """Apply ``o = linear @ p + shift`` to the points and ``linear S linear^T`` to covariances.

    Args:
        fields: the keypoints of one sample (full-resolution voxels, z-y-x).
        linear: ``[3, 3]``.
        shift: ``[3]`` in full-resolution voxels.

    Returns:
        The moved :class:`~cryo3d_transforms.keypoints.KeypointFields` (same labels).
    """
    L = np.asarray(linear, np.float64)
    pts = fields.points @ L.T + np.asarray(shift, np.float64)[None, :]
    cov = None if fields.covariances is None else _move_covariances(L, fields.covariances)
    return KeypointFields(pts, fields.labels, cov)


def move_keypoint_arrays(
    keypoints: Any, covariances: Any, linear: np.ndarray, shift: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """:func:`move_points` for loose arrays (the array forms' keypoint half).

    Args:
        keypoints: ``[K, 3]`` z-y-x full-resolution voxels (any array type), or ``None``.
        covariances: ``[K, 3, 3]`` full-resolution voxels squared, or ``None``.
        linear: ``[3, 3]``.
        shift: ``[3]``.

    Returns:
        ``(keypoints, covariances)`` moved, as host float64 NumPy (``None`` where not given).
    """
    L = np.asarray(linear, np.float64)
    kp = None if keypoints is None else host_array(keypoints, np.float64, "keypoints", (3,)) @ L.T + shift
    cov = None
    if covariances is not None:
        cov = _move_covariances(L, host_array(covariances, np.float64, "covariances", (3, 3)))
    return kp, cov


def image_spatial_shape(img: Any, name: str = "image") -> tuple[int, int, int]:
    """(Z, Y, X) of a channels-first image ``[C, Z, Y, X]``.

    Raises:
        ValueError: the image is not 4-dimensional.
    """
    if len(img.shape) != 4:
        raise ValueError(f"{name}: expected channels-first [C, Z, Y, X], got shape {tuple(img.shape)}")
    return tuple(int(s) for s in img.shape[1:])  # type: ignore[return-value]


class KeypointTransform(Transform):
    """Array base: an image ``[C, Z, Y, X]`` and its keypoints moved by one exact map.

    Subclasses implement :meth:`point_map` and :meth:`apply_image`. Calling the transform
    gives ``(img, keypoints, covariances)``: the image keeps its type and device, the
    keypoint outputs are host NumPy (``None`` when not given). No keypoint is dropped
    here (the dictionary form applies the border rule).
    """

    @abstractmethod
    def point_map(self, spatial_shape: Sequence[int]) -> PointMap:
        """The map ``o = L @ p + b`` of full-resolution voxels and the output spatial shape.

        Args:
            spatial_shape: (Z, Y, X) of the input image.

        Returns:
            ``(L, b, out_shape)``.
        """

    @abstractmethod
    def apply_image(self, img: Any, **options: Any) -> Any:
        """The transformed image (same type and device as ``img``).

        Args:
            img: channels-first ``[C, Z, Y, X]`` NumPy / CuPy array or torch tensor.
            options: per-key overrides a dictionary form passes (e.g. the affine's ``mode``).
        """

    def __call__(self, img: Any, keypoints: Any = None, covariances: Any = None) -> tuple[Any, Any, Any]:
        """Transform ``img`` and move ``keypoints`` ``[K, 3]`` / ``covariances`` ``[K, 3, 3]``.

        Returns:
            ``(img, keypoints, covariances)``.
        """
        L, b, _ = self.point_map(image_spatial_shape(img))
        return (self.apply_image(img), *move_keypoint_arrays(keypoints, covariances, L, b))


def split_map_options(kwargs: dict) -> tuple[dict, dict]:
    """Split keyword arguments into :class:`KeypointMapTransform`'s (:data:`MAP_OPTIONS`) and the rest.

    A dictionary form whose array transform takes many parameters (the random affine)
    passes the rest to it unchanged instead of repeating its signature.

    Returns:
        ``(map_options, rest)``.
    """
    rest = dict(kwargs)
    return {k: rest.pop(k) for k in MAP_OPTIONS if k in rest}, rest


class KeypointMapTransform(MapTransform):
    """Dictionary base: delegate the image keys to an array transform and move the keypoints.

    Args:
        keys: keys of the channels-first images to transform (``"image"``; several keys
            must share a spatial shape, e.g. an image and a mask).
        transform: the :class:`KeypointTransform` applied (``None`` for random forms,
            which draw one per call).
        keypoint_keys: names of the keypoint, heatmap and ``ds_*`` fields
            (:class:`~cryo3d_transforms.keypoints.KeypointKeys` or a mapping; ``None``: defaults).
            The heatmap is removed once the image moves (``heatmap=None`` keeps it).
        margin_sigmas: border margin in standard deviations
            (:mod:`cryo3d_transforms.keypoints`); ``None`` keeps every keypoint wherever it lands.
        ds_sigma: per-class sigma in downsampled voxels; default the sample's ``ds_sigma``.
        ds_factor: downsampling factor; default the sample's ``ds_factor``. Both are
            needed for the margin and for new covariances.
        transform_covariance: give isotropic keypoints a covariance
            ``(ds_sigma[c] * ds_factor)^2 I`` (full-resolution voxels) first, so that each
            Gaussian follows the map (anisotropic targets). Covariances already present
            always follow the map.
        allow_missing_keys: as in MONAI: image keys absent from a sample are skipped.

    Example:
        >>> import numpy as np
        >>> from cryo3d_transforms import KeypointFlip, KeypointMapTransform
        >>> t = KeypointMapTransform("image", KeypointFlip(spatial_axis=2), margin_sigmas=None)
        >>> d = {"image": np.zeros((1, 4, 4, 8)), "keypoints": [[1.0, 2.0, 3.0]], "labels": [0]}
        >>> t(d)["keypoints"].tolist()
        [[1.0, 2.0, 4.0]]
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        transform: KeypointTransform | None = None,
        keypoint_keys: KeypointKeys | Mapping[str, str] | None = None,
        margin_sigmas: float | None = DEFAULT_MARGIN_SIGMAS,
        ds_sigma: Sequence[float] | None = None,
        ds_factor: int | None = None,
        transform_covariance: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.transform = transform
        self.keypoint_keys = KeypointKeys.of(keypoint_keys)
        self.margin_sigmas = None if margin_sigmas is None else float(margin_sigmas)
        self.ds_sigma = ds_sigma
        self.ds_factor = ds_factor
        self.transform_covariance = bool(transform_covariance)
        #: per image key: keyword options for :meth:`KeypointTransform.apply_image`
        self.key_options: list[dict] = [{} for _ in self.keys]

    def spatial_shape(self, d: Mapping[Hashable, Any]) -> tuple[int, int, int]:
        """Spatial shape (Z, Y, X) shared by the present image keys.

        Raises:
            ValueError: the images disagree, or are not channels-first 3D.
        """
        shapes = {tuple(int(s) for s in d[k].shape[1:]) for k in self.key_iterator(d)}
        if len(shapes) != 1:
            raise ValueError(f"keys {list(self.keys)}: expected one spatial shape among the images, got {sorted(shapes)}")
        shape = shapes.pop()
        if len(shape) != 3:
            raise ValueError(f"keys {list(self.keys)}: expected channels-first [C, Z, Y, X] images, got spatial {shape}")
        return shape  # type: ignore[return-value]

    def move_keypoints(self, d: dict, linear: np.ndarray, shift: np.ndarray, out_shape: Sequence[int]) -> dict:
        """Move the sample's keypoints by ``o = linear @ p + shift`` and apply the border rule.

        Args:
            d: the (already copied) sample dictionary; updated in place.
            linear: ``[3, 3]`` of the exact point map in full-resolution voxels.
            shift: ``[3]`` of the same map.
            out_shape: spatial shape of the moved image (border rule).

        Returns:
            ``d``.
        """
        keys = self.keypoint_keys
        fields = read_keypoints(d, keys)
        create = self.transform_covariance and fields.covariances is None
        need_ds = self.margin_sigmas is not None or create
        sig, fac = sample_ds_params(d, self.ds_sigma, self.ds_factor, keys) if need_ds else (None, None)
        if create:
            fields = fields.with_points(fields.points, isotropic_covariances(fields.labels, sig, fac))
        moved = move_points(fields, linear, shift)
        if self.margin_sigmas is not None:
            margins = keypoint_margins(moved, sig, fac, self.margin_sigmas)
            moved = moved.select(inside_with_margin(moved.points, out_shape, margins))
        write_keypoints(d, moved, keys)
        if keys.heatmap is not None:
            d.pop(keys.heatmap, None)
        return d

    def apply_transform(self, d: dict, transform: KeypointTransform) -> dict:
        """Apply ``transform`` to every image key of ``d`` (in place), then move the keypoints."""
        L, b, out_shape = transform.point_map(self.spatial_shape(d))
        for key, options in self.key_iterator(d, self.key_options):
            d[key] = transform.apply_image(d[key], **options)
        return self.move_keypoints(d, L, b, out_shape)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        """Return a new sample dictionary with images and keypoints transformed."""
        if self.transform is None:
            raise ValueError(f"{type(self).__name__}: no array transform to apply")
        return self.apply_transform(dict(data), self.transform)


class RandKeypointMapTransform(RandomizableTransform, KeypointMapTransform):
    """Random dictionary base: with probability ``prob``, draw an array transform and apply it.

    Subclasses implement :meth:`draw_transform`; a subclass holding a random array
    transform forwards :meth:`set_random_state` to it (as MONAI's ``RandAffined`` does).
    With probability ``1 - prob`` the sample is returned unchanged (no copy of the
    image, no keypoint dropped, a precomputed heatmap kept).

    Args:
        keys: image keys.
        prob: probability of applying the transform.
        map_options: :class:`KeypointMapTransform`'s parameters (``keypoint_keys``,
            ``margin_sigmas``, ``ds_sigma``, ``ds_factor``, ``transform_covariance``,
            ``allow_missing_keys``).
    """

    def __init__(self, keys: KeysCollection = "image", prob: float = 1.0, **map_options: Any) -> None:
        RandomizableTransform.__init__(self, prob)
        KeypointMapTransform.__init__(self, keys, None, **map_options)

    @abstractmethod
    def draw_transform(self, spatial_shape: Sequence[int]) -> KeypointTransform:
        """Draw the parameters (with ``self.R``) and return the array transform to apply."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        """Return the transformed sample, or a shallow copy with probability ``1 - prob``."""
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        return self.apply_transform(d, self.draw_transform(self.spatial_shape(d)))

"""How transforms read and write the arrays of a sample, whatever type they arrive as.

A sample's ``image`` may be a NumPy array, a CuPy array, a torch tensor (CPU or CUDA) or
a MONAI ``MetaTensor``. Every transform in this package works on the array module of
the data (NumPy/SciPy on the host, CuPy/cupyx on the GPU) and hands back the type it was
given: torch tensors cross to and from CuPy by DLPack (``cryo3d.array_module``), without
copies and without a round trip through the host.

Keypoint fields (``keypoints``, ``labels``, ``covariances``) are small and always kept on
the host as NumPy (float64 / int64): moving 30 points costs nothing, and the renderer
copies them to the image's device once (:func:`keypoints_to_xp`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from monai.data import MetaTensor

from cryo3d.array_module import get_xp, is_cupy_array, to_numpy, torch_to_xp, xp_to_torch

__all__ = [
    "image_to_xp",
    "like_image",
    "host_array",
    "keypoints_to_xp",
]


def image_to_xp(img: Any, name: str = "image") -> tuple[Any, Callable[[Any], Any]]:
    """View an image as a NumPy or CuPy array and return a function that restores its type.

    Args:
        img: the channels-first image ``[C, Z, Y, X]``: NumPy / CuPy array, torch tensor
            or MONAI ``MetaTensor``.
        name: field name for error messages.

    Returns:
        ``(arr, restore)``: ``arr`` is a NumPy or CuPy array on the same memory as ``img``
        where the type allows it (torch CPU -> NumPy view, torch CUDA -> CuPy view by
        DLPack); ``restore(out)`` turns an array of the same module back into the input's
        type: a torch tensor on the same device (a ``MetaTensor`` keeps the input's
        metadata, whose spatial ``affine`` is *not* updated: a patch's geometry lives in
        its keypoints), or the array itself for NumPy / CuPy input.

    Raises:
        ValueError: ``img`` is none of these types.
    """
    if isinstance(img, torch.Tensor):
        if isinstance(img, MetaTensor):
            arr = torch_to_xp(img.as_tensor())

            def restore(out: Any, _src: Any = img) -> Any:
                return MetaTensor(xp_to_torch(out), meta=_src.meta, applied_operations=list(_src.applied_operations))

        else:
            arr = torch_to_xp(img)

            def restore(out: Any) -> Any:
                return xp_to_torch(out)

        return arr, restore
    if isinstance(img, np.ndarray) or is_cupy_array(img):
        return img, lambda out: out
    raise ValueError(
        f"{name}: expected a NumPy/CuPy array or a torch tensor [C, Z, Y, X], got {type(img).__name__}"
    )


def like_image(arr: Any, img: Any) -> Any:
    """Return the NumPy/CuPy array ``arr`` as the type of ``img`` (plain torch for any tensor).

    Used for new fields derived from the image (the heatmap): a torch image gives a plain
    ``torch.Tensor`` on the same device, an array image gives the array.
    """
    if isinstance(img, torch.Tensor):
        return xp_to_torch(arr)
    return arr


def host_array(x: Any, dtype: Any, name: str, trailing: tuple[int, ...] = ()) -> np.ndarray:
    """A keypoint field as a NumPy array of ``dtype`` with the given trailing shape.

    Args:
        x: the field's value, array-like (NumPy, CuPy, torch, list).
        dtype: wanted dtype (float64 for coordinates and covariances, int64 for labels).
        name: field name for error messages.
        trailing: required trailing shape, e.g. ``(3,)`` for keypoints ``[K, 3]``.

    Returns:
        Host array ``[K, *trailing]``.

    Raises:
        ValueError: the size does not fit ``trailing`` after flattening the leading axes.
    """
    a = np.asarray(to_numpy(x), dtype=dtype)
    n = int(np.prod(trailing)) if trailing else 1
    if a.size % n:
        raise ValueError(f"{name}: expected shape [K{''.join(', ' + str(t) for t in trailing)}], got {a.shape}")
    return a.reshape((-1,) + tuple(trailing))


def keypoints_to_xp(x: np.ndarray, like: Any) -> Any:
    """Copy a small host array to the array module of ``like`` (NumPy: no copy)."""
    xp = get_xp(like)
    return x if xp is np else xp.asarray(x)

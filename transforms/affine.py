"""Affine matrices in MONAI's convention, their exact action on points, and the image warp.

Convention (``ARCHITECTURE.md``, checked against ``monai.transforms.Affine`` 1.6.1): a
4x4 matrix ``A`` in array-index order maps an OUTPUT voxel ``o`` to the INPUT voxel it
samples, about the centres ``c_in = (in_shape - 1) / 2`` and ``c_out = (out_shape - 1) / 2``::

    p = A[:3, :3] @ (o - c_out) + A[:3, 3] + c_in

so a keypoint at input position ``p`` lands at ``o = inv(A[:3, :3]) @ (p - c_in - A[:3, 3]) + c_out``
and a covariance ``S`` becomes ``L S L^T`` with ``L = inv(A[:3, :3])``. One matrix means
one motion here and in MONAI (``tests/test_transforms_affine.py`` checks the warp against
``monai.transforms.Affine``).

The warp is ``scipy.ndimage.affine_transform`` (CPU) or ``cupyx.scipy.ndimage.affine_transform``
(GPU), chosen by where the image lives. Why not MONAI's own ``Affine`` for the image:
it runs on torch ``grid_sample`` only, builds a dense coordinate grid per call, and cannot
take CuPy arrays; the SciPy call with ``order=1`` on float32 is the fast path measured in
``scripts/bench_augment.py`` and is split over threads on the CPU (it releases the GIL).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import torch
from monai.transforms.utils import create_rotate, create_scale, create_shear, create_translate

from cryo3d.array_module import get_ndimage, get_xp

__all__ = [
    "compose_affine",
    "random_rotation",
    "draw_range",
    "affine_point_map",
    "warp_image",
    "check_affine",
    "PADDING_MODES",
    "INTERP_MODES",
]

#: MONAI padding names -> SciPy modes. "zeros" is MONAI's (torch ``grid_sample``) zero
#: padding, which interpolates towards 0 over the half voxel past the edge; SciPy's
#: ``grid-constant`` does the same, and is computed as a 1-voxel zero pad + ``constant``
#: (identical values, about twice as fast in SciPy 1.17).
PADDING_MODES = {"zeros": "zeros", "border": "nearest", "reflection": "reflect"}
#: MONAI interpolation names -> spline order.
INTERP_MODES = {"nearest": 0, "bilinear": 1, "trilinear": 1}


def compose_affine(
    rotate: Sequence[float] = (),
    shear: Sequence[float] = (),
    translate: Sequence[float] = (),
    scale: Sequence[float] = (),
    rotation_matrix: np.ndarray | None = None,
) -> np.ndarray:
    """Compose a 4x4 affine the way ``monai.transforms.RandAffine`` does: ``R @ Sh @ T @ Sc``.

    Args:
        rotate: up to 3 Euler angles in radians about array axes 0, 1, 2
            (``monai.transforms.utils.create_rotate``).
        shear: up to 6 shear coefficients (``create_shear``).
        translate: up to 3 values in voxels (input voxels sampled per output voxel offset).
        scale: up to 3 factors; a factor > 1 samples the input more sparsely, so the
            content shrinks in the output (MONAI's meaning).
        rotation_matrix: optional ``[3, 3]`` rotation used instead of ``rotate`` (e.g.
            :func:`random_rotation`).

    Returns:
        float64 ``[4, 4]`` in MONAI's output-to-input convention (module docstring).

    Example:
        >>> float(compose_affine(translate=(2.0, 0.0, 0.0))[0, 3])
        2.0
    """
    A = np.eye(4)
    if rotation_matrix is not None:
        Rm = np.eye(4)
        Rm[:3, :3] = np.asarray(rotation_matrix, np.float64)
        A = A @ Rm
    elif len(rotate):
        A = A @ np.asarray(create_rotate(3, list(rotate)), np.float64)
    if len(shear):
        A = A @ np.asarray(create_shear(3, list(shear)), np.float64)
    if len(translate):
        A = A @ np.asarray(create_translate(3, list(translate)), np.float64)
    if len(scale):
        A = A @ np.asarray(create_scale(3, list(scale)), np.float64)
    return A


def random_rotation(rng: np.random.RandomState) -> np.ndarray:
    """A rotation matrix ``[3, 3]`` drawn uniformly from SO(3) (a normalised Gaussian quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def draw_range(rng: np.random.RandomState, param_range: Any, add: float = 0.0) -> list[float]:
    """Draw one value per entry of a MONAI-style range (as ``RandAffineGrid._get_rand_param``).

    Each entry is a number ``r`` (uniform on ``[-r, r]``) or a pair ``(lo, hi)``; ``None``
    entries are skipped; ``add`` is added to each draw (1.0 for scales). A bare number
    is one entry, i.e. the first axis only, as in MONAI.
    """
    if param_range is None:
        return []
    if np.isscalar(param_range):
        param_range = (param_range,)
    out = []
    for r in param_range:
        if r is None:
            continue
        if np.ndim(r) == 1:
            if len(r) != 2:
                raise ValueError(f"a range entry must be a number or (min, max), got {r!r}")
            out.append(float(rng.uniform(r[0], r[1])) + add)
        else:
            out.append(float(rng.uniform(-r, r)) + add)
    return out


def _centres(in_shape: Sequence[int], out_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(in_shape, np.float64) - 1) / 2, (np.asarray(out_shape, np.float64) - 1) / 2


def check_affine(affine: Any) -> np.ndarray:
    """Return ``affine`` as a finite, invertible float64 ``[4, 4]`` (a ``[3, 3]`` is embedded).

    Raises:
        ValueError: another shape, a non-finite entry or a singular linear part.
    """
    A = np.asarray(affine, np.float64)
    if A.shape == (3, 3):
        A3 = np.eye(4)
        A3[:3, :3] = A
        A = A3
    if A.shape != (4, 4):
        raise ValueError(f"affine: expected a 4x4 (or 3x3) matrix in array-index order, got shape {A.shape}")
    if not np.all(np.isfinite(A)) or abs(np.linalg.det(A[:3, :3])) < 1e-12:
        raise ValueError("affine: the matrix must be finite and invertible")
    return A


def affine_point_map(
    affine: Any, in_shape: Sequence[int], out_shape: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The exact motion of points under ``affine``: ``o = L @ p + b``.

    Args:
        affine: ``[4, 4]`` (or ``[3, 3]``) in MONAI's output-to-input convention.
        in_shape: input spatial shape (Z, Y, X).
        out_shape: output spatial shape; defaults to ``in_shape``.

    Returns:
        ``(L, b)``: ``L`` ``[3, 3]`` is ``inv(A[:3, :3])`` (also the map of covariances:
        ``L S L^T``), ``b`` ``[3]`` is ``c_out - L @ (c_in + A[:3, 3])``.
    """
    A = check_affine(affine)
    out_shape = in_shape if out_shape is None else out_shape
    c_in, c_out = _centres(in_shape, out_shape)
    L = np.linalg.inv(A[:3, :3])
    return L, c_out - L @ (c_in + A[:3, 3])


def default_threads() -> int:
    """Threads for the CPU warp: torch's intra-op thread count (1 inside DataLoader workers)."""
    return max(1, int(torch.get_num_threads()))


def warp_image(
    img: Any,
    affine: Any,
    out_shape: Sequence[int] | None = None,
    mode: str | int = "bilinear",
    padding_mode: str = "zeros",
    threads: int | None = None,
    dtype: Any = None,
) -> Any:
    """Resample a channels-first image once through ``affine`` (MONAI's convention).

    Args:
        img: NumPy or CuPy array ``[C, Z, Y, X]``; the array module picks SciPy or cupyx.
        affine: ``[4, 4]`` output-to-input matrix about the centres (module docstring).
        out_shape: output spatial shape (Z, Y, X) (default: the input's).
        mode: ``"bilinear"`` (trilinear, order 1), ``"nearest"`` or a spline order 0-5.
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"`` (MONAI's names).
        threads: CPU threads (output slabs along z); default :func:`default_threads`.
            Ignored on GPU.
        dtype: output dtype; default the input's floating dtype (float32 stays float32).

    Returns:
        Array ``[C, *out_shape]`` of the same module as ``img``.

    Raises:
        ValueError: the image is not 4-dimensional, or ``mode`` / ``padding_mode`` is unknown.
    """
    xp = get_xp(img)
    ndi = get_ndimage(xp)
    if img.ndim != 4:
        raise ValueError(f"image: expected channels-first [C, Z, Y, X], got shape {tuple(img.shape)}")
    A = check_affine(affine)
    in_shape = tuple(int(s) for s in img.shape[1:])
    out_shape = in_shape if out_shape is None else tuple(int(s) for s in out_shape)
    order = INTERP_MODES.get(mode, mode) if isinstance(mode, str) else int(mode)
    if not isinstance(order, int) or not 0 <= order <= 5:
        raise ValueError(f"mode: expected 'bilinear', 'nearest' or a spline order 0-5, got {mode!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode: expected one of {sorted(PADDING_MODES)}, got {padding_mode!r}")
    if dtype is None:
        dtype = img.dtype if np.issubdtype(img.dtype, np.floating) else np.float32
    c_in, c_out = _centres(in_shape, out_shape)
    H = np.eye(4)  # homogeneous output->input matrix for ndimage: p = M o + offset
    H[:3, :3] = A[:3, :3]
    H[:3, 3] = c_in + A[:3, 3] - A[:3, :3] @ c_out
    src = xp.ascontiguousarray(img)
    mode_nd = PADDING_MODES[padding_mode]
    if mode_nd == "zeros":
        # grid-constant semantics = zero-pad one voxel and sample with 'constant'
        src = xp.pad(src, ((0, 0), (1, 1), (1, 1), (1, 1)))
        H[:3, 3] += 1.0
        mode_nd = "constant"
    out = xp.empty((img.shape[0],) + out_shape, dtype=dtype)
    kw = dict(order=order, mode=mode_nd, cval=0.0, prefilter=order > 1)
    if xp is not np:
        Hx = xp.asarray(H)
        for c in range(img.shape[0]):  # channels: 1 for an image
            ndi.affine_transform(src[c], Hx, output_shape=out_shape, output=out[c], **kw)
        return out
    nthreads = max(1, min(default_threads() if threads is None else int(threads), out_shape[0]))
    bounds = np.linspace(0, out_shape[0], nthreads + 1).round().astype(int)
    jobs = []
    for c in range(img.shape[0]):
        for z0, z1 in zip(bounds[:-1], bounds[1:]):
            Hs = H.copy()
            Hs[:3, 3] += H[:3, 0] * z0  # output slab starting at z0
            jobs.append((c, z0, z1, Hs))

    def run(job: tuple) -> None:
        c, z0, z1, Hs = job
        ndi.affine_transform(src[c], Hs, output_shape=(z1 - z0,) + out_shape[1:], output=out[c, z0:z1], **kw)

    if nthreads == 1:
        for j in jobs:
            run(j)
    else:
        with ThreadPoolExecutor(nthreads) as pool:
            list(pool.map(run, jobs))
    return out


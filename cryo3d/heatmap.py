"""Analytic Gaussian heatmaps rendered from keypoints at 1/ds resolution.

Why by hand: MONAI has no keypoint-to-heatmap renderer that works at a downsampled
grid with per-class sigma, per-keypoint covariance and max-combination; interpolating a
warped heatmap instead loses the peak position (see ``scripts/bench_augment.py``).

Definition (``ARCHITECTURE.md``): channel ``c`` at downsampled voxel ``v`` is the
maximum over keypoints ``k`` of class ``c`` of ``exp(-0.5 (v-k)^T S_k^-1 (v-k))`` where
``S_k = ds_sigma_c^2 I`` unless a per-keypoint covariance is given. Only voxels within
``truncate`` standard deviations (per axis) of a keypoint are touched; with the default
``truncate`` every voxel left out would hold less than ``1e-6``, so the result equals the
dense definition within ``1e-6``.

One implementation serves NumPy and CuPy: the array module is taken from the keypoints.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from cryo3d.array_module import get_xp, scatter_max

#: Half-width of the rendered box in standard deviations; exp(-TRUNCATE^2/2) < 1e-6.
DEFAULT_TRUNCATE = 5.3


def _axis_offsets(xp, half: int):
    return xp.arange(-half, half + 1, dtype=xp.int64)


def render_heatmap(
    keypoints: Any,
    labels: Any,
    shape: Sequence[int],
    sigmas: Sequence[float] | Any,
    covariances: Any | None = None,
    truncate: float = DEFAULT_TRUNCATE,
    dtype: Any = np.float32,
    xp: Any | None = None,
) -> Any:
    """Render a ``[C, z, y, x]`` heatmap from keypoints in downsampled voxels.

    Args:
        keypoints (array ``[K, 3]``):
            Keypoint positions ``[z, y, x]`` in **downsampled voxels** of the output grid
            (float; may lie outside the grid, their tails are still drawn).
        labels (int array ``[K]``): Class id of each keypoint, ``0 <= label < C``.
        shape ((Z, Y, X)): Spatial shape of the heatmap (downsampled voxels).
        sigmas (``[C]`` floats): Per-class isotropic sigma in downsampled voxels (``coords.ds_sigma``).
        covariances (array ``[K, 3, 3]``, optional):
            Per-keypoint covariance in downsampled voxels (z-y-x order), e.g. after an
            anisotropic affine; replaces ``sigmas`` for those keypoints.
        truncate (float): Box half-width in standard deviations along each axis.
        dtype (dtype): Output dtype (float32 by default).
        xp (module, optional): ``numpy`` or ``cupy``; by default the module of ``keypoints``.

    Returns:
        array ``[C, Z, Y, X]``: Values in ``[0, 1]``, 1 exactly at a keypoint lying on a voxel centre.

    Example:
        >>> hm = render_heatmap(np.array([[4.0, 5.0, 6.0]]), np.array([0]), (10, 10, 10), [1.5])
        >>> np.unravel_index(hm[0].argmax(), hm[0].shape)
        (4, 5, 6)
    """
    xp = xp or get_xp(keypoints)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"heatmap shape must be (Z, Y, X), got {shape}")
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    C = sig.size
    if np.any(~np.isfinite(sig)) or np.any(sig <= 0):
        raise ValueError(f"sigmas must be positive and finite, got {sig.tolist()}")
    out = xp.zeros((C,) + shape, dtype=dtype)
    kp = xp.asarray(keypoints, dtype=xp.float64).reshape(-1, 3)
    lab = xp.asarray(labels, dtype=xp.int64).reshape(-1)
    if kp.shape[0] != lab.shape[0]:
        raise ValueError(f"{kp.shape[0]} keypoints but {lab.shape[0]} labels")
    if kp.shape[0] == 0:
        return out
    if bool(xp.any((lab < 0) | (lab >= C))):
        raise ValueError(f"labels must lie in [0, {C}), got {xp.unique(lab).tolist()}")
    if bool(xp.any(~xp.isfinite(kp))):
        raise ValueError("keypoints contain NaN or Inf")
    cov = None if covariances is None else xp.asarray(covariances, dtype=xp.float64).reshape(-1, 3, 3)
    flat = out.reshape(-1)
    lab_host = lab.get() if hasattr(lab, "get") else lab
    spatial = shape[0] * shape[1] * shape[2]
    for c in np.unique(lab_host):  # loop over classes (few), never over keypoints
        sel = xp.nonzero(lab == int(c))[0]
        pts = kp[sel]
        if cov is None:
            vals, idx = _isotropic_boxes(xp, pts, float(sig[c]), shape, truncate)
        else:
            vals, idx = _covariance_boxes(xp, pts, cov[sel], shape, truncate)
        if idx is None:
            continue
        scatter_max(flat, idx + int(c) * spatial, vals.astype(dtype, copy=False))
    return out


def _axis_grid(xp, pts, halves, shape):
    """Per-axis integer positions, offsets from the keypoints and in-grid masks.

    Returns lists over the 3 axes of ``pos [K, B_a]`` (clipped into the grid), ``d [K, B_a]``
    (float, voxel minus keypoint) and ``inside [K, B_a]``.
    """
    base = xp.rint(pts).astype(xp.int64)  # [K, 3]
    pos, d, inside = [], [], []
    for a in range(3):
        p = base[:, a, None] + _axis_offsets(xp, halves[a])[None, :]
        d.append(p - pts[:, a, None])
        inside.append((p >= 0) & (p < shape[a]))
        pos.append(xp.clip(p, 0, shape[a] - 1))
    return pos, d, inside


def _flat_index(pos, shape):
    return (pos[0][:, :, None, None] * (shape[1] * shape[2]) + pos[1][:, None, :, None] * shape[2]
            + pos[2][:, None, None, :])


def _isotropic_boxes(xp, pts, sigma: float, shape, truncate: float):
    """Separable Gaussian boxes for isotropic sigma: ``[K, B, B, B]`` values and flat indices."""
    half = int(math.ceil(truncate * sigma))
    pos, d, inside = _axis_grid(xp, pts, (half,) * 3, shape)
    g = [xp.where(inside[a], xp.exp(-0.5 * (d[a] / sigma) ** 2), 0.0).astype(xp.float32) for a in range(3)]
    vals = g[0][:, :, None, None] * g[1][:, None, :, None] * g[2][:, None, None, :]
    idx = _flat_index(pos, shape)
    keep = vals > 0  # out-of-grid rows/cols carry 0 and must not be scattered (clipped index)
    return vals[keep], idx[keep]


def _covariance_boxes(xp, pts, cov, shape, truncate: float):
    """Anisotropic Gaussians: the quadratic form assembled from per-axis offsets by broadcasting.

    ``q = d^T P d`` with ``P = inv(cov)`` is expanded into its six terms, each an outer
    product of per-axis offset vectors, so no ``[K, M, 3]`` offset array is materialised.
    The box half-width along axis ``a`` is ``truncate * sqrt(max_k cov_k[a, a])``: outside it
    every value is below ``exp(-truncate^2 / 2)``.
    """
    try:
        prec = xp.linalg.inv(cov)
    except Exception as e:  # numpy LinAlgError / cupy equivalents
        raise ValueError("keypoint covariance is singular") from e
    ext = xp.sqrt(xp.max(xp.diagonal(cov, axis1=1, axis2=2), axis=0))  # per-axis extent
    ext_h = ext.get() if hasattr(ext, "get") else ext
    halves = [int(math.ceil(truncate * float(e))) for e in ext_h]
    pos, d, inside = _axis_grid(xp, pts, halves, shape)
    f32 = xp.float32
    dz, dy, dx = (v.astype(f32) for v in d)
    P = prec.astype(f32)
    z = (slice(None), slice(None), None, None)
    y = (slice(None), None, slice(None), None)
    x = (slice(None), None, None, slice(None))
    c = lambda i, j: P[:, i, j][:, None, None, None]  # noqa: E731
    q = (c(0, 0) * (dz * dz)[z] + c(1, 1) * (dy * dy)[y] + c(2, 2) * (dx * dx)[x]
         + 2 * c(0, 1) * dz[z] * dy[y] + 2 * c(0, 2) * dz[z] * dx[x] + 2 * c(1, 2) * dy[y] * dx[x])
    vals = xp.exp(-0.5 * q)
    mask = inside[0][z] & inside[1][y] & inside[2][x]
    keep = mask & (vals > 0)
    if not bool(keep.any()):
        return None, None
    return vals[keep], _flat_index(pos, shape)[keep]


def render_dense_reference(
    keypoints: np.ndarray,
    labels: np.ndarray,
    shape: Sequence[int],
    sigmas: Sequence[float],
    covariances: np.ndarray | None = None,
) -> np.ndarray:
    """Brute-force heatmap over every voxel and keypoint (tests and debugging only).

    Same arguments and units as :func:`render_heatmap`; no truncation. Slow by design.
    """
    shape = tuple(int(s) for s in shape)
    sig = np.asarray(sigmas, dtype=np.float64)
    out = np.zeros((sig.size,) + shape, dtype=np.float64)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float64)
    for k, (p, c) in enumerate(zip(np.asarray(keypoints, float), np.asarray(labels, int))):
        d = grid - p
        if covariances is None:
            q = (d**2).sum(-1) / sig[c] ** 2
        else:
            q = np.einsum("...i,ij,...j->...", d, np.linalg.inv(covariances[k]), d)
        out[c] = np.maximum(out[c], np.exp(-0.5 * q))
    return out

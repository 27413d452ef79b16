"""Resampling tomograms to another voxel spacing without moving voxel centres.

Voxel ``i`` is centred at ``i * voxel_spacing`` Angstrom before and after, so picks in
Angstrom stay valid and no coordinate needs converting (``scipy.ndimage.zoom`` would
stretch the grid so that the last voxels coincide, shifting every centre slightly).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage as ndi

from cryo3d import coords

#: Relative difference of voxel spacings below which no resampling is done.
SPACING_TOLERANCE = 0.01


def resampled_shape(shape: tuple[int, ...], spacing: float, target: float) -> tuple[int, ...]:
    """Voxels per axis after resampling: every output centre ``i * target`` lies inside the input."""
    scale = coords.voxel_scale(spacing, target)
    return tuple(int(math.floor((int(n) - 1) / scale + 1e-9)) + 1 for n in shape)


def needs_resampling(spacing: float, target: float | None) -> bool:
    """True when ``target`` is given and differs from ``spacing`` by more than 1 %."""
    return target is not None and abs(float(spacing) - float(target)) / float(target) > SPACING_TOLERANCE


def resample_to_spacing(data: np.ndarray, spacing: float, target: float) -> np.ndarray:
    """Resample a ``[z, y, x]`` volume from ``spacing`` to ``target`` Angstrom per voxel.

    Output voxel ``i`` takes the input at ``i * target / spacing`` (trilinear). When
    coarsening by more than 1.5x the input is first smoothed with a Gaussian of
    ``sigma = 0.5 * (scale^2 - 1)^0.5`` input voxels, so that noise does not alias.

    Args:
        data: volume ``[z, y, x]``.
        spacing: its voxel spacing (Angstrom per voxel).
        target: the wanted voxel spacing (Angstrom per voxel).

    Returns:
        float32 array of :func:`resampled_shape`.
    """
    scale = coords.voxel_scale(coords.check_voxel_spacing(spacing, "source voxel spacing"), target)
    src = np.asarray(data, np.float32)
    if scale > 1.5:
        src = ndi.gaussian_filter(src, 0.5 * math.sqrt(scale**2 - 1), mode="nearest")
    shape = resampled_shape(src.shape, spacing, target)
    return ndi.affine_transform(src, np.full(3, scale), output_shape=shape, order=1, mode="nearest")


def to_spacing(data: np.ndarray, spacing: float, target: float | None) -> tuple[np.ndarray, float]:
    """A ``[z, y, x]`` volume at ``target`` Angstrom per voxel, as every reader of tomograms wants it.

    Args:
        data: volume ``[z, y, x]`` (memory-mapped or not).
        spacing: its voxel spacing (Angstrom per voxel).
        target: the wanted voxel spacing; ``None`` keeps ``spacing``.

    Returns:
        ``(data, spacing)``: ``data`` itself and ``float(spacing)`` when :func:`needs_resampling`
        says no, else the float32 :func:`resample_to_spacing` result and ``float(target)``.
    """
    if not needs_resampling(spacing, target):
        return data, float(spacing)
    return resample_to_spacing(data, spacing, target), float(target)

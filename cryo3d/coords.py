"""Every conversion between physical and array coordinates; nowhere else converts by hand.

Three frames (``ARCHITECTURE.md``):

* **Angstrom**: ``(x, y, z)`` physical coordinates of picks, shape ``[..., 3]``.
* **Voxels**: full-resolution array indices ``[z, y, x]`` (floats allowed). Voxel ``i``
  has its centre at ``i * voxel_spacing`` Angstrom.
* **Downsampled voxels**: heatmap indices ``[z, y, x]`` at factor ``f``. Heatmap voxel
  ``j`` covers full-resolution voxels ``j*f ... j*f+f-1`` and is centred at
  ``j*f + (f-1)/2``; so full-resolution ``r`` is at downsampled ``(r - (f-1)/2) / f``.

Patch-local coordinates subtract the patch origin (its corner, in tomogram voxels).
All functions are pure, vectorised over leading axes, and accept NumPy or CuPy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cryo3d.backend import get_xp

__all__ = [
    "check_voxel_spacing",
    "angstrom_to_voxel",
    "voxel_to_angstrom",
    "voxel_to_ds",
    "ds_to_voxel",
    "angstrom_to_ds",
    "ds_to_angstrom",
    "global_to_local",
    "local_to_global",
    "ds_sigma",
    "length_to_voxels",
    "ds_shape",
    "angstrom_sigma_from_radius",
]


def check_voxel_spacing(voxel_spacing: Any, where: str = "voxel_spacing") -> float:
    """Return ``voxel_spacing`` as a positive finite float or raise ``ValueError``.

    Parameters
    ----------
    voxel_spacing : float
        Angstrom per voxel.
    where : str
        Names the file / field in the error message.
    """
    try:
        s = float(voxel_spacing)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: voxel spacing must be a number in Angstrom, got {voxel_spacing!r}")
    if not np.isfinite(s) or s <= 0:
        raise ValueError(
            f"{where}: voxel spacing must be a positive number of Angstrom per voxel, got {s!r}"
        )
    return s


def _check_factor(ds_factor: int) -> int:
    f = int(ds_factor)
    if f < 1 or f != ds_factor:
        raise ValueError(f"ds_factor must be a positive integer, got {ds_factor!r}")
    return f


def angstrom_to_voxel(xyz: Any, voxel_spacing: float) -> Any:
    """Angstrom ``(x, y, z)`` -> full-resolution voxel indices ``[z, y, x]`` (float).

    Parameters
    ----------
    xyz : array ``[..., 3]``
        Physical coordinates in Angstrom, x first.
    voxel_spacing : float
        Angstrom per voxel.

    Returns
    -------
    array ``[..., 3]``
        Float voxel indices, z first.
    """
    xp = get_xp(xyz)
    s = check_voxel_spacing(voxel_spacing)
    xyz = xp.asarray(xyz, dtype=xp.float64)
    return xyz[..., ::-1] / s


def voxel_to_angstrom(zyx: Any, voxel_spacing: float) -> Any:
    """Full-resolution voxel indices ``[z, y, x]`` -> Angstrom ``(x, y, z)``."""
    xp = get_xp(zyx)
    s = check_voxel_spacing(voxel_spacing)
    zyx = xp.asarray(zyx, dtype=xp.float64)
    return zyx[..., ::-1] * s


def voxel_to_ds(zyx: Any, ds_factor: int) -> Any:
    """Full-resolution voxels -> downsampled voxels: ``(r - (f-1)/2) / f`` (axis order kept)."""
    xp = get_xp(zyx)
    f = _check_factor(ds_factor)
    return (xp.asarray(zyx, dtype=xp.float64) - (f - 1) / 2.0) / f


def ds_to_voxel(ds_zyx: Any, ds_factor: int) -> Any:
    """Downsampled voxels -> full-resolution voxels: ``j*f + (f-1)/2`` (axis order kept)."""
    xp = get_xp(ds_zyx)
    f = _check_factor(ds_factor)
    return xp.asarray(ds_zyx, dtype=xp.float64) * f + (f - 1) / 2.0


def angstrom_to_ds(xyz: Any, voxel_spacing: float, ds_factor: int) -> Any:
    """Angstrom ``(x, y, z)`` -> downsampled voxels ``[z, y, x]``."""
    return voxel_to_ds(angstrom_to_voxel(xyz, voxel_spacing), ds_factor)


def ds_to_angstrom(ds_zyx: Any, voxel_spacing: float, ds_factor: int) -> Any:
    """Downsampled voxels ``[z, y, x]`` -> Angstrom ``(x, y, z)``."""
    return voxel_to_angstrom(ds_to_voxel(ds_zyx, ds_factor), voxel_spacing)


def global_to_local(zyx: Any, origin: Any) -> Any:
    """Tomogram voxels -> patch voxels, ``origin`` being the patch corner ``[z, y, x]``."""
    xp = get_xp(zyx)
    return xp.asarray(zyx, dtype=xp.float64) - xp.asarray(origin, dtype=xp.float64)


def local_to_global(zyx: Any, origin: Any) -> Any:
    """Patch voxels -> tomogram voxels."""
    xp = get_xp(zyx)
    return xp.asarray(zyx, dtype=xp.float64) + xp.asarray(origin, dtype=xp.float64)


def length_to_voxels(length: Any, voxel_spacing: float, ds_factor: int = 1) -> Any:
    """A length (radius, sigma, distance) in Angstrom as voxels at factor ``ds_factor``.

    ``length / (voxel_spacing * ds_factor)``; ``ds_factor=1`` gives full-resolution voxels.
    """
    s = check_voxel_spacing(voxel_spacing)
    f = _check_factor(ds_factor)
    return np.asarray(length, dtype=np.float64) / (s * f)


def voxels_to_length(n_voxels: Any, voxel_spacing: float, ds_factor: int = 1) -> Any:
    """A length in voxels at factor ``ds_factor`` as Angstrom: the inverse of :func:`length_to_voxels`."""
    s = check_voxel_spacing(voxel_spacing)
    f = _check_factor(ds_factor)
    return np.asarray(n_voxels, dtype=np.float64) * (s * f)


def ds_sigma(angstrom_sigma: Any, voxel_spacing: float, ds_factor: int) -> Any:
    """Gaussian sigma in downsampled voxels: ``angstrom_sigma / (voxel_spacing * ds_factor)``."""
    return length_to_voxels(angstrom_sigma, voxel_spacing, ds_factor)


def ds_shape(shape: tuple[int, ...], ds_factor: int) -> tuple[int, ...]:
    """Heatmap shape for a full-resolution spatial shape (each axis ``ceil(n / f)``)."""
    f = _check_factor(ds_factor)
    return tuple(int(-(-int(n) // f)) for n in shape)


def angstrom_sigma_from_radius(radius: Any, fraction: float) -> Any:
    """Default per-class sigma in Angstrom: a fixed ``fraction`` of the particle radius."""
    return np.asarray(radius, dtype=np.float64) * float(fraction)

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

from typing import Any, Sequence

import numpy as np

from cryo3d.array_module import get_xp

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
    "voxels_to_length",
    "ds_shape",
    "ds_padded_shape",
    "ds_voxel_spacing",
    "ds_factor_between",
    "ds_origin",
    "ds_to_voxel_length",
    "voxel_to_ds_covariance",
    "voxel_extent",
    "in_voxel_extent",
    "voxel_xyz_to_angstrom",
    "angstrom_to_voxel_xyz",
    "angstrom_sigma_from_radius",
    "KEYPOINT_MARGIN_SIGMAS",
]

#: Keypoints within this many standard deviations of their Gaussian outside a patch's
#: :func:`voxel_extent` are kept (so that a shift or rotation brings them in correctly);
#: the patch store and every spatial transform share the rule.
KEYPOINT_MARGIN_SIGMAS = 3.0


def check_voxel_spacing(voxel_spacing: Any, where: str = "voxel_spacing") -> float:
    """Return ``voxel_spacing`` as a positive finite float or raise ``ValueError``.

    Args:
        voxel_spacing: Angstrom per voxel.
        where: names the file / field in the error message.

    Raises:
        ValueError: if it is not a number, not finite or not positive.
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

    Args:
        xyz: array ``[..., 3]``, physical coordinates in Angstrom, x first.
        voxel_spacing: Angstrom per voxel.

    Returns:
        array ``[..., 3]``: float voxel indices, z first.
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


def voxels_to_volume(shape: Sequence[int], voxel_spacing: float, ds_factor: int = 1) -> float:
    """Volume in cubic Angstrom of a grid of ``shape`` voxels at factor ``ds_factor``.

    ``prod(shape) * (voxel_spacing * ds_factor)^3``: each voxel is a cube of side
    :func:`voxels_to_length` of one voxel.
    """
    side = float(voxels_to_length(1.0, voxel_spacing, ds_factor))
    return float(np.prod(np.asarray(shape, dtype=np.float64))) * side**3


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


def ds_padded_shape(shape: Sequence[int], ds_factor: int) -> tuple[int, ...]:
    """Full-resolution voxels that the heatmap grid of ``shape`` covers: each axis ``ceil(n / f) * f``.

    The smallest multiple of ``f`` at least ``n``: a volume padded at the far end to this
    shape has exactly :func:`ds_shape` heatmap voxels, each covering ``f`` voxels.
    """
    f = _check_factor(ds_factor)
    return tuple(n * f for n in ds_shape(tuple(shape), f))


def ds_voxel_spacing(voxel_spacing: float, ds_factor: int) -> float:
    """Angstrom per downsampled (heatmap) voxel: ``voxel_spacing * ds_factor``."""
    return float(voxels_to_length(1.0, voxel_spacing, ds_factor))


def ds_factor_between(ds_voxel_spacing: float, voxel_spacing: float) -> float:
    """How many full-resolution voxels of ``voxel_spacing`` one voxel of ``ds_voxel_spacing`` spans.

    The inverse of :func:`ds_voxel_spacing` (e.g. the factor of a heatmap read back from its
    MRC file); not rounded, so a caller can check it is a whole number.
    """
    return voxel_scale(voxel_spacing, check_voxel_spacing(ds_voxel_spacing, "downsampled voxel spacing"))


def ds_origin(voxel_spacing: float, ds_factor: int) -> np.ndarray:
    """Angstrom ``(x, y, z)`` of the centre of heatmap voxel ``(0, 0, 0)``: ``(f-1)/2 * voxel_spacing`` per axis.

    A heatmap written as a volume of its own (spacing :func:`ds_voxel_spacing`) with this
    origin overlays its tomogram exactly.
    """
    return ds_to_angstrom(np.zeros(3), voxel_spacing, ds_factor)


def ds_to_voxel_length(length_ds: Any, ds_factor: int) -> Any:
    """A length (sigma, radius) in downsampled voxels as full-resolution voxels: ``length * f``.

    Lengths scale without the half-voxel offset of positions (:func:`ds_to_voxel`). NumPy,
    CuPy and torch arrays keep their type.
    """
    return length_ds * float(_check_factor(ds_factor))


def voxel_to_ds_covariance(cov: Any, ds_factor: int) -> Any:
    """A covariance ``[..., 3, 3]`` in full-resolution voxels^2 as downsampled voxels^2: ``cov / f^2``.

    The inverse of scaling by :func:`ds_to_voxel_length` twice. NumPy, CuPy and torch
    arrays keep their type.
    """
    f = float(_check_factor(ds_factor))
    return cov / (f * f)


def voxel_box_to_ds(lo: Any, hi: Any, ds_factor: int) -> tuple[Any, Any]:
    """The downsampled voxels ``[lo_ds, hi_ds)`` that touch a full-resolution box ``[lo, hi)``.

    Integer voxel indices per axis: ``lo_ds = floor(lo / f)``, ``hi_ds = ceil(hi / f)``
    (downsampled voxel ``j`` covers full-resolution voxels ``j*f ... j*f + f - 1``). NumPy,
    CuPy and torch integer arrays keep their type.
    """
    f = _check_factor(ds_factor)
    return lo // f, -((-hi) // f)


def voxel_scale(voxel_spacing: float, target_spacing: float) -> float:
    """Source voxels per target voxel when a grid at ``voxel_spacing`` is resampled to ``target_spacing``.

    Both grids keep voxel ``i`` centred at ``i * spacing`` Angstrom, so target voxel ``i``
    is centred on source voxel ``i * voxel_scale`` (a continuous index).
    """
    return check_voxel_spacing(target_spacing, "target voxel spacing") / check_voxel_spacing(voxel_spacing)


def voxel_extent(start: Any, stop: Any, margin: Any = 0.0) -> tuple[Any, Any]:
    """Continuous extent ``[start - 0.5 - margin, stop - 0.5 + margin]`` of voxels ``start ... stop - 1``.

    Voxel ``i`` is centred at ``i`` and spans ``[i - 0.5, i + 0.5]``; so a volume of ``n``
    voxels along an axis spans ``[-0.5, n - 0.5]`` (``start=0, stop=n``). Works
    element-wise on numbers, NumPy, CuPy and torch arrays (any units of voxels).

    Args:
        start: first voxel index (per axis).
        stop: one past the last voxel index (per axis).
        margin: widens the extent on both sides, in voxels.

    Returns:
        ``(lo, hi)`` bounds of the extent.
    """
    return start - 0.5 - margin, stop - 0.5 + margin


def in_voxel_extent(zyx: Any, shape: Sequence[int] | Any, margin: Any = 0.0) -> Any:
    """Whether points lie in a volume's :func:`voxel_extent` (borders included), on every axis.

    Args:
        zyx: ``[..., 3]`` voxel coordinates ``[z, y, x]`` (NumPy or CuPy; any axis order
            works when ``shape`` is given in the same order).
        shape: ``(Z, Y, X)`` of the volume, in the same voxels.
        margin: scalar, ``[..., 1]`` or ``[..., 3]`` widening in voxels (e.g. 3 sigma of
            each keypoint's Gaussian).

    Returns:
        bool ``[...]``: ``-0.5 - margin <= zyx <= n - 0.5 + margin`` on all three axes.
    """
    xp = get_xp(zyx)
    lo, hi = voxel_extent(0.0, xp.asarray(shape, dtype=xp.float64), xp.asarray(margin, dtype=xp.float64))
    return xp.all((zyx >= lo) & (zyx <= hi), axis=-1)


def voxel_xyz_to_angstrom(xyz_vox: Any, voxel_spacing: float) -> Any:
    """Voxel coordinates written x first ``(x, y, z)`` (as voxel-unit files hold them) -> Angstrom ``(x, y, z)``."""
    return voxel_to_angstrom(get_xp(xyz_vox).asarray(xyz_vox)[..., ::-1], voxel_spacing)


def angstrom_to_voxel_xyz(xyz: Any, voxel_spacing: float) -> Any:
    """Angstrom ``(x, y, z)`` -> voxel coordinates written x first ``(x, y, z)``: :func:`voxel_xyz_to_angstrom` inverted."""
    return angstrom_to_voxel(xyz, voxel_spacing)[..., ::-1]

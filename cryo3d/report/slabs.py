"""The array side of the report's images: slabs, crops, contrast, and which picks a slab shows.

A *slab* is a run of whole voxel planes along one array axis: planes ``lo .. hi``
inclusive (array indices), shown as their mean. Axis 0 (z) gives an x-y image ``[y, x]``,
axis 1 (y) an x-z image ``[z, x]``, axis 2 (x) a y-z image ``[z, y]``. A pick belongs to a
slab when its voxel coordinate along that axis, rounded to the nearest plane, lies in
``lo .. hi``; its voxel coordinate comes from :func:`cryo3d.coords.angstrom_to_voxel`.
Physical extents (Angstrom, voxel edges at ``(i -/+ 0.5) * spacing``) come from
:func:`cryo3d.coords.voxel_to_angstrom` too, so an image and its picks share one mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cryo3d import coords

__all__ = ["Slab", "plan_slabs", "slab_image", "in_slab", "cut_radius", "robust_limits", "extent_angstrom",
           "crop_slab", "slab_half_width"]

#: Voxels sampled to set an image's contrast.
_CONTRAST_SAMPLE = 200_000


@dataclass(frozen=True)
class Slab:
    """Planes ``lo .. hi`` (inclusive, array indices) along array ``axis`` (0 = z, 1 = y, 2 = x)."""

    axis: int
    lo: int
    hi: int

    @property
    def centre(self) -> float:
        return (self.lo + self.hi) / 2.0

    def angstrom_range(self, voxel_spacing: float) -> tuple[float, float]:
        """Physical range covered (voxel edges), Angstrom along the slab's axis."""
        v = np.zeros((2, 3))
        v[:, self.axis] = [self.lo - 0.5, self.hi + 0.5]
        a = coords.voxel_to_angstrom(v, voxel_spacing)  # (x, y, z)
        k = 2 - self.axis
        return float(a[0, k]), float(a[1, k])


def slab_half_width(thickness_angstrom: float, voxel_spacing: float) -> int:
    """Half width ``h`` (planes) of a slab about ``thickness_angstrom`` thick: ``2h + 1`` planes."""
    n = float(coords.length_to_voxels(thickness_angstrom, voxel_spacing))
    return max(0, int(round((n - 1) / 2.0)))


def plan_slabs(n: int, half: int, fractions: Sequence[float] = (0.5, 0.2, 0.35, 0.65, 0.8), axis: int = 0) -> list[Slab]:
    """Slabs of ``2 * half + 1`` planes centred at ``fractions`` of an axis of ``n`` planes, in axis order.

    Slabs are clipped to the volume; duplicates are dropped; the result runs from the lowest
    plane to the highest, whatever the order of ``fractions``.
    """
    out: list[Slab] = []
    for f in fractions:
        c = int(round(f * (n - 1)))
        lo, hi = max(0, c - half), min(n - 1, c + half)
        s = Slab(axis, lo, hi)
        if s not in out:
            out.append(s)
    return sorted(out, key=lambda s: (s.lo, s.hi))


def slab_image(data: np.ndarray, slab: Slab) -> np.ndarray:
    """Mean over the slab's planes (float32): ``[y, x]`` for axis 0, ``[z, x]`` for 1, ``[z, y]`` for 2."""
    idx: list = [slice(None)] * 3
    idx[slab.axis] = slice(slab.lo, slab.hi + 1)
    return np.asarray(data[tuple(idx)], dtype=np.float32).mean(axis=slab.axis)


def in_slab(xyz: np.ndarray, voxel_spacing: float, slab: Slab) -> np.ndarray:
    """Boolean ``[N]``: which picks (Angstrom ``(x, y, z)``) the slab shows (module docstring)."""
    if len(xyz) == 0:
        return np.zeros(0, dtype=bool)
    v = coords.angstrom_to_voxel(np.asarray(xyz, np.float64), voxel_spacing)[:, slab.axis]
    plane = np.floor(v + 0.5)
    return (plane >= slab.lo) & (plane <= slab.hi)


def cut_radius(xyz: np.ndarray, radii: np.ndarray, voxel_spacing: float, slab: Slab) -> np.ndarray:
    """Radius (Angstrom) of the disc where each pick's sphere meets the slab; 0 where it does not.

    ``d`` = distance along the slab's axis from the centre to the slab's physical range
    (:meth:`Slab.angstrom_range`, 0 inside it); the disc radius is ``sqrt(r^2 - d^2)`` for ``d < r``.
    """
    if len(xyz) == 0:
        return np.zeros(0)
    a0, a1 = slab.angstrom_range(voxel_spacing)
    p = np.asarray(xyz, np.float64)[:, 2 - slab.axis]
    d = np.maximum(0.0, np.maximum(a0 - p, p - a1))
    r = np.asarray(radii, np.float64)
    return np.where(d < r, np.sqrt(np.maximum(r * r - d * d, 0.0)), 0.0)


def extent_angstrom(shape_zyx: Sequence[int], voxel_spacing: float) -> np.ndarray:
    """Per array axis ``[z, y, x]`` the physical span ``(first edge, last edge)`` in Angstrom, ``[3, 2]``.

    Voxel ``i`` spans ``(i - 0.5) * spacing .. (i + 0.5) * spacing``.
    """
    n = np.asarray(shape_zyx, np.float64)
    corners = np.stack([np.full(3, -0.5), n - 0.5])  # [2, (z, y, x)]
    xyz = coords.voxel_to_angstrom(corners, voxel_spacing)  # [2, (x, y, z)]
    return xyz[:, ::-1].T.copy()  # [(z, y, x), 2]


def robust_limits(img: np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """Display range: the ``low`` and ``high`` percentiles of the finite values (a sample of them if many)."""
    a = np.asarray(img, np.float32).reshape(-1)
    if a.size > _CONTRAST_SAMPLE:
        a = a[:: a.size // _CONTRAST_SAMPLE + 1]
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(a, [low, high])
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def crop_slab(data: np.ndarray, centre_zyx: np.ndarray, half_yx: int, half_z: int) -> np.ndarray:
    """x-y crop ``[2*half_yx+1, 2*half_yx+1]`` centred on a voxel, mean over ``2*half_z+1`` z planes.

    Out-of-volume pixels are NaN (float32).
    """
    c = np.floor(np.asarray(centre_zyx, np.float64) + 0.5).astype(int)
    size = 2 * half_yx + 1
    out = np.full((size, size), np.nan, dtype=np.float32)
    Z, Y, X = data.shape
    z0, z1 = max(0, c[0] - half_z), min(Z, c[0] + half_z + 1)
    y0, y1 = max(0, c[1] - half_yx), min(Y, c[1] + half_yx + 1)
    x0, x1 = max(0, c[2] - half_yx), min(X, c[2] + half_yx + 1)
    if z0 >= z1 or y0 >= y1 or x0 >= x1:
        return out
    block = np.asarray(data[z0:z1, y0:y1, x0:x1], dtype=np.float32).mean(axis=0)
    oy, ox = y0 - (c[1] - half_yx), x0 - (c[2] - half_yx)
    out[oy:oy + block.shape[0], ox:ox + block.shape[1]] = block
    return out

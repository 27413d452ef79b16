"""Picks against their tomograms: every pick inside, with a guess at what went wrong if not.

:func:`validate_picks` checks class names against the particle set and every centre against
its tomogram's extent (:func:`cryo3d.coords.in_voxel_extent`), and names the first pick
outside with a hint (axes swapped, coordinates scaled by the voxel spacing, a tomogram
stored with its axes swapped).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from cryo3d.coords import (
    angstrom_to_voxel,
    angstrom_to_voxel_xyz,
    check_voxel_spacing,
    in_voxel_extent,
    length_to_voxels,
    voxel_extent,
    voxels_to_length,
)
from cryo3d.errors import Cryo3DError
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks

__all__ = ["validate_picks"]

_AXES = ("x", "y", "z")


def _inside(xyz: np.ndarray, shape_zyx: np.ndarray, spacing: float) -> np.ndarray:
    """Per pick: inside the tomogram, i.e. voxel coordinate in [-0.5, n - 0.5] on every axis."""
    return in_voxel_extent(angstrom_to_voxel(xyz, spacing), shape_zyx)


def _axis_hint(xyz_out: np.ndarray, shape_zyx: np.ndarray, spacing: float, n_total: int) -> str:
    """A guess at why picks are outside: swapped axes or coordinates scaled by the spacing.

    The swap hint is given when every pick outside would fit with two axes swapped; the
    scale hint only when at least half of the tomogram's picks are outside (a few picks
    just past the border are no sign of a unit mix-up).
    """
    swaps = [
        ("x and z swapped (the file may hold (z, y, x) instead of (x, y, z))", [2, 1, 0]),
        ("x and y swapped", [1, 0, 2]),
        ("y and z swapped", [0, 2, 1]),
    ]
    for text, perm in swaps:
        if _inside(xyz_out[:, perm], shape_zyx, spacing).all():
            return (
                f" Axes swapped? Every pick outside would fit with {text}; picks must be "
                "(x, y, z) in Angstrom."
            )
    if 2 * len(xyz_out) >= n_total and _inside(length_to_voxels(xyz_out, spacing), shape_zyx, spacing).all():
        return (
            f" Every pick outside would fit if divided by the voxel spacing ({spacing} Angstrom): "
            "were Angstrom coordinates read as voxels (units='voxel'), or converted twice?"
        )
    return ""


def validate_picks(
    picks: Picks,
    particles: ParticleSet,
    shapes: Mapping[str, tuple[int, int, int]] | None = None,
    voxel_spacings: Mapping[str, float] | None = None,
    source: str = "picks",
    tomogram_files: Mapping[str, str] | None = None,
) -> None:
    """Check picks against the particle classes and, optionally, the tomograms.

    Args:
        picks (Picks): Centres ``(x, y, z)`` in Angstrom.
        particles (ParticleSet): Known classes.
        shapes (mapping of tomogram name -> ``(Z, Y, X)``, optional):
            Tomogram shapes in voxels. When given, every tomogram in ``picks`` must be in it
            and every pick must lie inside its tomogram: voxel coordinate in
            ``[-0.5, n - 0.5]`` along each axis.
        voxel_spacings (mapping of tomogram name -> float, optional):
            Angstrom per voxel; required with ``shapes``.
        source (str): Names the picks (e.g. the file) in error messages.
        tomogram_files (mapping of tomogram name -> file, optional):
            Names a tomogram's file when the error blames the tomogram (axes stored swapped).

    Warns:
        UserWarning: Every pick of every tomogram lies within the first ``1/spacing`` of its volume
            (coordinates below the voxel counts): voxel indices written as Angstrom.

    Raises:
        ValueError: Unknown class (naming the row, counted from 1 in table order as the CSV reader's
            ``row N`` is, and the known classes),
            NaN/Inf coordinates, a tomogram missing from ``shapes`` or ``voxel_spacings``, or
            picks outside their tomogram (naming the tomogram, the pick, the axis and the
            valid Angstrom range, with a hint when swapping axes would make them fit).
    """
    known = particles.names
    cls = np.asarray(picks.cls, dtype=str)
    unknown = ~np.isin(cls, np.asarray(known, dtype=str))
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        names = list(dict.fromkeys(cls[unknown].tolist()))
        raise Cryo3DError(
            f"{source}: row {i + 1} (tomogram {str(picks.tomo[i])!r}) has unknown particle class "
            f"{str(cls[i])!r} ({int(unknown.sum())} rows with unknown classes {names}); "
            f"known classes are {known}"
        )
    finite = np.isfinite(picks.xyz).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise Cryo3DError(
            f"{source}: row {i + 1} (tomogram {str(picks.tomo[i])!r}, class {str(cls[i])!r}) has non-finite "
            f"coordinates (x, y, z) = {tuple(picks.xyz[i].tolist())}; "
            f"{int((~finite).sum())} rows affected"
        )
    if shapes is None:
        return
    if voxel_spacings is None:
        raise Cryo3DError(f"{source}: validate_picks needs voxel_spacings together with shapes")
    tomos = picks.tomograms
    absent = [t for t in tomos if t not in shapes]
    if absent:
        raise Cryo3DError(
            f"{source}: picks refer to tomogram(s) {absent} that are not among the tomograms "
            f"given ({sorted(shapes)[:20]}{' ...' if len(shapes) > 20 else ''})"
        )
    no_spacing = [t for t in tomos if t not in voxel_spacings]
    if no_spacing:
        raise Cryo3DError(f"{source}: no voxel spacing for tomogram(s) {no_spacing}")
    bad_tomos: list[tuple] = []
    fits = {}  # tomogram -> every pick inside as given
    small = []  # tomograms whose picks all lie within the first 1/spacing of the volume
    for t in tomos:
        rows = np.flatnonzero(picks.tomo == t)
        s = check_voxel_spacing(voxel_spacings[t], where=f"{source}: voxel spacing of {t!r}")
        shape = np.asarray(shapes[t], dtype=np.float64).reshape(-1)
        if shape.shape != (3,):
            raise Cryo3DError(f"{source}: shape of tomogram {t!r} must be (Z, Y, X), got {shapes[t]!r}")
        xyz = picks.xyz[rows]
        vox = angstrom_to_voxel_xyz(xyz, s)  # (x, y, z) order for reporting
        n_xyz = shape[::-1]
        lo_vox, hi_vox = voxel_extent(0.0, n_xyz)
        out = (vox < lo_vox) | (vox > hi_vox)
        bad = out.any(axis=1)
        fits[t] = not bad.any()
        if not bad.any():
            # voxel indices written as Angstrom: every pick within [0, n) Angstrom, i.e. the first 1/spacing
            if s >= 2.0 and len(rows) >= 3 and bool(in_voxel_extent(xyz, n_xyz).all()):
                small.append((t, s, len(rows)))
            continue
        bad_tomos.append((t, rows, s, shape, xyz, vox, n_xyz, out, bad))
    if small and len(small) == len(tomos):
        t, s, n = small[0]
        warnings.warn(
            f"{source}: all picks of {len(small)} tomogram(s) (e.g. {n} in {t!r}) lie within the first 1/{s:g} "
            f"of the volume along x, y and z: are they voxel indices written as Angstrom? Coordinates must be "
            f"(x, y, z) in Angstrom (voxel index x {s:g} for this tomogram's spacing of {s:g} Angstrom); "
            "read voxel tables with units='voxel'",
            UserWarning, stacklevel=2,
        )
    if not bad_tomos:
        return
    t, rows, s, shape, xyz, vox, n_xyz, out, bad = bad_tomos[0]
    j = int(np.flatnonzero(bad)[0])
    a = int(np.flatnonzero(out[j])[0])
    lo, hi = (float(v) for v in voxels_to_length(voxel_extent(0.0, n_xyz[a]), s))
    row = int(rows[j])
    hint = _axis_hint(xyz[bad], shape, s, len(rows))
    files = dict(tomogram_files or {})
    others_fit = [u for u in tomos if u != t and fits[u]]
    if hint.startswith(" Axes swapped") and others_fit:
        where = f" ({files[t]})" if t in files else ""
        hint = (
            f" The tomogram {t!r}{where} looks stored with its axes swapped (e.g. an array [x, y, z] written as "
            f"[z, y, x]: an MRC's nx must be the x size): the picks of {len(others_fit)} other tomogram(s) from "
            f"the same picks fit as (x, y, z), and every pick outside would fit with two axes of this "
            f"tomogram swapped. Rewrite the tomogram with its axes in [z, y, x] order."
        )
    elif hint.startswith(" Axes swapped"):
        where = f" ({files[t]})" if t in files else ""
        hint += (f" Or the tomogram {t!r}{where} was stored with its axes swapped "
                 "(an array [x, y, z] written as [z, y, x]).")
    raise Cryo3DError(
        f"{source}: {int(bad.sum())} of {len(rows)} picks in tomogram {t!r} lie outside it. "
        f"The first, row {row + 1} (class {str(cls[row])!r}, (x, y, z) = "
        f"{tuple(xyz[j].tolist())} Angstrom), has {_AXES[a]} = {float(xyz[j, a])!r} Angstrom "
        f"outside the valid range [{lo!r}, {hi!r}] Angstrom (tomogram shape [z, y, x] = "
        f"{tuple(int(v) for v in shape)}, voxel spacing {s!r} Angstrom)." + hint
    )

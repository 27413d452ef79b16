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
from scipy.spatial import cKDTree

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

__all__ = ["MAX_COORDINATE", "check_coordinates", "coordinate_limit_error", "scale_mismatch_note", "validate_picks",
           "voxel_index_note"]

#: The largest coordinate magnitude a pick may have, in Angstrom (1 cm; a tomogram spans a few micrometres,
#: 1e4-1e5 Angstrom). Beyond it a value is a typo or another unit, and distances would overflow.
MAX_COORDINATE = 1e8

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


def coordinate_limit_error(where: str, column: str, value: float) -> Cryo3DError:
    """The error for a coordinate beyond :data:`MAX_COORDINATE`: ``where`` names the file and row."""
    return Cryo3DError(
        f"{where}, column {column!r}: {value!r} Angstrom is beyond any tomogram; expected a coordinate in Angstrom "
        f"with |{column}| <= {MAX_COORDINATE:g} (1 cm)"
    )


def check_coordinates(picks: Picks, source: str = "picks") -> None:
    """Refuse non-finite coordinates and coordinates beyond :data:`MAX_COORDINATE` Angstrom, as read.

    Args:
        picks (Picks): Centres ``(x, y, z)`` in Angstrom.
        source (str): Names the picks (the file) in the message.

    Raises:
        Cryo3DError: Naming ``source``, the first bad row (counted from 1 in table order) and its column.
    """
    xyz = np.asarray(picks.xyz, dtype=np.float64).reshape(-1, 3)
    bad = ~np.isfinite(xyz) | (np.abs(xyz) > MAX_COORDINATE)
    if not bad.any():
        return
    i, a = (int(v) for v in np.argwhere(bad)[0])
    where = f"{source}, row {i + 1} (tomogram {str(picks.tomo[i])!r}, class {str(picks.cls[i])!r})"
    if not np.isfinite(xyz[i, a]):
        raise Cryo3DError(f"{where}, column {_AXES[a]!r}: expected a finite number of Angstrom, got {xyz[i, a]!r}")
    raise coordinate_limit_error(where, _AXES[a], float(xyz[i, a]))


def voxel_index_note(
    picks: Picks,
    shapes: Mapping[str, tuple[int, int, int]],
    voxel_spacings: Mapping[str, float],
    source: str = "picks",
) -> str | None:
    """A warning when picks look like voxel indices written as Angstrom, else None.

    The sign: every pick of every tomogram (those in ``shapes``, each with 3 picks or more and
    a spacing of 2 Angstrom or more) lies within ``[-0.5, n - 0.5]`` Angstrom along each axis, i.e.
    within the first ``1/spacing`` of its volume. ``prepare`` (through :func:`validate_picks`),
    ``evaluate --tomograms`` and ``report`` all ask this one function.

    Args:
        picks (Picks): Centres ``(x, y, z)``, supposedly in Angstrom.
        shapes (mapping of tomogram name -> ``(Z, Y, X)``): Tomogram shapes in voxels.
        voxel_spacings (mapping of tomogram name -> float): Angstrom per voxel.
        source (str): Names the picks (e.g. the file) in the message.

    Returns:
        str or None: One line naming ``source``, the tomogram and the spacing, or None.
    """
    small = []
    tomos = [t for t in picks.tomograms if t in shapes and t in voxel_spacings]
    for t in tomos:
        xyz = picks.xyz[picks.tomo == t]
        s = float(voxel_spacings[t])
        n_xyz = np.asarray(shapes[t], dtype=np.float64).reshape(-1)[::-1]
        if not (s >= 2.0 and len(xyz) >= 3 and bool(in_voxel_extent(xyz, n_xyz).all())):
            return None
        small.append((t, s, len(xyz)))
    if not small:
        return None
    t, s, n = small[0]
    return (
        f"{source}: all picks of {len(small)} tomogram(s) (e.g. {n} in {t!r}) lie within the first 1/{s:g} "
        f"of the volume along x, y and z: are they voxel indices written as Angstrom? Coordinates must be "
        f"(x, y, z) in Angstrom (voxel index x {s:g} for this tomogram's spacing of {s:g} Angstrom); "
        "read voxel tables with units='voxel'"
    )


def _matched_fraction(pred: Picks, gt: Picks, particles: ParticleSet, distance_multiplier: float,
                      scale: float = 1.0) -> float:
    """Fraction of ground-truth picks with a prediction of their tomogram and class within the match
    distance (``distance_multiplier`` x radius), the ground truth's coordinates multiplied by ``scale``."""
    if not len(gt) or not len(pred):
        return 0.0
    tomos = {t: i for i, t in enumerate(dict.fromkeys(np.asarray(gt.tomo, dtype=str).tolist()))}
    gt_t = np.array([tomos[t] for t in np.asarray(gt.tomo, dtype=str).tolist()], dtype=np.float64)
    pr_t = np.array([tomos.get(t, -1) for t in np.asarray(pred.tomo, dtype=str).tolist()], dtype=np.float64)
    gt_c, pr_c = np.asarray(gt.cls, dtype=str), np.asarray(pred.cls, dtype=str)
    hits = 0
    for name, radius in zip(particles.names, particles.radii * distance_multiplier):  # classes (few)
        g, q = (gt_c == name), (pr_c == name) & (pr_t >= 0)
        if not (g.any() and q.any()):
            continue
        sep = 2.0 * radius + 1.0  # a 4th coordinate keeps tomograms apart, as the metric does
        p4 = np.column_stack([pred.xyz[q], pr_t[q] * sep])
        g4 = np.column_stack([gt.xyz[g] * scale, gt_t[g] * sep])
        d, _ = cKDTree(p4).query(g4, distance_upper_bound=radius)
        hits += int(np.isfinite(d).sum())
    return hits / len(gt)


def _scale_ratio(pred: Picks, gt: Picks) -> float | None:
    """How many times the predictions' coordinates exceed the ground truth's (the ratio of their 90th
    percentiles over the shared tomograms, the same along x, y and z within a factor 1.5), or None."""
    shared = np.intersect1d(np.asarray(pred.tomo, dtype=str), np.asarray(gt.tomo, dtype=str))
    p = pred.xyz[np.isin(np.asarray(pred.tomo, dtype=str), shared)]
    g = gt.xyz[np.isin(np.asarray(gt.tomo, dtype=str), shared)]
    if len(p) < 3 or len(g) < 3:
        return None
    hp, hg = np.percentile(p, 90, axis=0), np.percentile(g, 90, axis=0)
    if not ((hp > 0).all() and (hg > 0).all()):
        return None
    r = hp / hg
    if r.max() > 1.5 * r.min():
        return None
    return float(np.exp(np.log(r).mean()))


def scale_mismatch_note(
    pred: Picks,
    gt: Picks,
    particles: ParticleSet,
    pred_source: str = "predictions",
    gt_source: str = "ground truth",
    distance_multiplier: float = 0.5,
) -> str | None:
    """A warning when predictions and ground truth look like different units (voxels and Angstrom).

    The sign: the coordinates of one table are 2 to 100 times those of the other along x, y and
    z alike (about a voxel spacing), and no ground-truth pick has a prediction of its class within
    the match distance, or under 5% do and rescaling by that ratio at least doubles it (to 10% or
    more): one of them holds voxel indices, or was converted twice.

    Args:
        pred, gt (Picks): Predicted and ground-truth centres, supposedly in Angstrom.
        particles (ParticleSet): Radii for the match distance.
        pred_source, gt_source (str): Name the two tables (their files) in the message.
        distance_multiplier (float): Match distance / particle radius.

    Returns:
        str or None: One line naming both tables, the ratio and how many picks would match
        rescaled, or None.
    """
    f0 = _matched_fraction(pred, gt, particles, distance_multiplier)
    if f0 >= 0.05:
        return None
    r = _scale_ratio(pred, gt)
    if r is None or not (2.0 <= max(r, 1 / r) <= 100.0):
        return None
    if r > 1:  # the ground truth is the small one
        small, big, k = gt_source, pred_source, r
        f = _matched_fraction(pred, gt, particles, distance_multiplier, scale=r)
    else:
        small, big, k = pred_source, gt_source, 1 / r
        f = _matched_fraction(gt, pred, particles, distance_multiplier, scale=k)
    if f0 > 0 and f < max(2 * f0, 0.1):  # a few matches by chance are no sign unless rescaling finds many more
        return None
    now = "no ground-truth pick has" if f0 == 0 else f"only {100 * f0:.2g}% of the ground-truth picks have"
    rescaled = f" (multiplied by {k:.3g}, {f:.0%} of its picks would have one)" if f > 0 else ""
    return (
        f"{small}: its coordinates are about 1/{k:.3g} of those of {big} along x, y and z, and {now} a prediction "
        f"within the match distance{rescaled}: are they voxel indices (a voxel spacing of about {k:.3g} Angstrom) "
        "instead of Angstrom? Both tables must be (x, y, z) in Angstrom"
    )


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
        if bad.any():
            bad_tomos.append((t, rows, s, shape, xyz, vox, n_xyz, out, bad))
    note = voxel_index_note(picks, shapes, voxel_spacings, source)
    if note:
        warnings.warn(note, UserWarning, stacklevel=2)
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

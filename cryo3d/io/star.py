"""RELION STAR picks through ``starfile``: RELION 4 pixel and RELION 5 centred coordinates.

:func:`read_star` returns a :class:`~cryo3d.picks.Picks` with centres ``(x, y, z)`` in
Angstrom; :func:`write_star` writes one. ``starfile`` does the STAR syntax; this module maps
RELION's labels onto cryo3d's picks and checks every value, because ``starfile`` accepts a
ragged or non-numeric row without complaint (it fills it with empty strings).

Coordinates, in the order tried (one particle table; ``data_particles`` when there is one):

* ``_rlnCoordinateX/Y/ZAngst`` -- Angstrom (cryo3d and some older tools).
* ``_rlnCenteredCoordinateX/Y/ZAngst`` -- RELION 5: Angstrom from the tomogram's centre. The
  centre is half the tomogram's size (RELION's ``rlnTomoSize / 2 * rlnTomoTiltSeriesPixelSize``,
  as copick reads it), so each tomogram's size is needed: ``tomogram_sizes`` (``(X, Y, Z)``
  Angstrom per tomogram), or a tomograms table (``_rlnTomoSizeX/Y/Z``, ``_rlnTomoTiltSeriesPixelSize``)
  in the same file or in RELION 5's ``tomograms.star`` (``tomograms_star``, ``--tomograms-star``).
  With cryo3d's pixel convention (pixel ``i`` at ``i * spacing``) the centre is pixel
  ``size / 2``, as RELION 5 places it. Pixel coordinates, when present, serve when a size is
  unknown; else only the rows of tomograms with a known size are read (a warning counts the rest).
* ``_rlnCoordinateX/Y/Z`` -- RELION 4 pixels: pixel ``i`` is at ``i * spacing`` Angstrom (the
  cryo3d voxel-centre convention, and copick's). The spacing is ``voxel_spacing`` (a number
  or ``{tomogram: spacing}``, e.g. ``--voxel-spacing``) or, when not given, the optics
  table's ``_rlnTomoTiltSeriesPixelSize`` of each particle's optics group.

Tomogram name: ``_rlnTomoName`` (or ``_rlnMicrographName``), a path losing its folder and
known ending. Class: ``_cryo3dClassName`` or ``_rlnClassName`` (RELION has no class-name
label), else ``_rlnClassNumber`` mapped 1-based onto a ParticleSet, else ``class_name``.
Score: ``_rlnAutopickFigureOfMerit`` (1.0 when absent). Origin shifts (``_rlnOrigin*Angst``)
are not applied; non-zero ones give a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryo3d import coords
from cryo3d.io.atomic import atomic_path
from cryo3d.io.tomogram import MRC_SUFFIXES, NIFTI_SUFFIXES, tomogram_name
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks

__all__ = ["read_star", "read_tomograms_star", "write_star", "STAR_CLASS_LABEL"]

#: STAR label that holds the class name (RELION has none); written without the leading ``_``.
STAR_CLASS_LABEL = "_cryo3dClassName"
_CLASS = STAR_CLASS_LABEL[1:]
_NAME_LABELS = ["rlnTomoName", "rlnMicrographName", _CLASS, "rlnClassName", "rlnOpticsGroupName"]
_ANGST = [f"rlnCoordinate{a}Angst" for a in "XYZ"]
_CENTRED = [f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]
_PIXEL = [f"rlnCoordinate{a}" for a in "XYZ"]
_SIZE = [f"rlnTomoSize{a}" for a in "XYZ"]

Spacing = float | Mapping[str, float]


def _label(col: str) -> str:
    return "_" + col


def _row(df, i: int) -> int:
    """1-based row number in the file of the table's ``i``-th row (rows may have been selected)."""
    label = df.index[i]
    return int(label) + 1 if isinstance(label, (int, np.integer)) else i + 1


def _numbers(df, col: str, where: str, what: str, finite: bool = True) -> np.ndarray:
    """Column ``col`` as float64; ``ValueError`` naming file, row and label of a bad value."""
    raw = df[col]
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(vals) if finite else np.isnan(vals)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{where}, particle row {_row(df, i)}, label {_label(col)}: expected {what}, got {raw.iloc[i]!r}"
        )
    return vals


def _names(df, col: str, where: str) -> np.ndarray:
    vals = ["" if v is None else str(v).strip() for v in df[col].tolist()]
    for i, v in enumerate(vals):
        if not v or v.lower() in ("nan", "<na>"):
            raise ValueError(f"{where}, particle row {_row(df, i)}, label {_label(col)}: expected a name, got {v!r}")
    return np.array(vals, dtype=object)


def _tomo_name(value: str) -> str:
    """Tomogram name from a STAR cell: a path or a file name loses folder and known ending."""
    low = value.lower()
    if "/" in value or low.endswith(MRC_SUFFIXES + NIFTI_SUFFIXES + (".tomostar",)):
        return tomogram_name(value)
    return value


def _read_blocks(p: Path) -> dict:
    try:
        blocks = starfile.read(p, always_dict=True, parse_as_string=_NAME_LABELS)
    except Exception as exc:  # starfile/pandas raise many types for a broken file
        raise ValueError(f"{p}: not a readable STAR file ({type(exc).__name__}: {exc})") from None
    if not isinstance(blocks, dict) or not blocks:
        raise ValueError(f"{p}: no data_ block found; expected a STAR file with a data_particles loop")
    return blocks


def _particle_table(blocks: dict, where: str):
    tables = [(k, v) for k, v in blocks.items() if isinstance(v, pd.DataFrame)]
    ordered = [t for t in tables if t[0] == "particles"] + [t for t in tables if t[0] != "particles"]
    for _, df in ordered:
        cols = set(df.columns)
        if any(set(c) <= cols for c in (_ANGST, _CENTRED, _PIXEL)):
            return df
    raise ValueError(
        f"{where}: no particles loop with coordinates; expected a data_particles block with _rlnTomoName and "
        "_rlnCoordinateX/Y/Z (RELION 4, pixels) or _rlnCenteredCoordinateX/Y/ZAngst (RELION 5, Angstrom)"
    )


def _optics_spacing(blocks: dict, df, where: str) -> np.ndarray | None:
    """Per-particle ``_rlnTomoTiltSeriesPixelSize`` from the optics table, or None."""
    optics = blocks.get("optics")
    if not isinstance(optics, pd.DataFrame) or "rlnTomoTiltSeriesPixelSize" not in optics.columns or not len(optics):
        return None
    size = _numbers(optics, "rlnTomoTiltSeriesPixelSize", f"{where} (data_optics)", "a pixel size > 0 in Angstrom")
    if (size <= 0).any():
        raise ValueError(f"{where}, data_optics, label _rlnTomoTiltSeriesPixelSize: expected > 0, got {size.tolist()}")
    if len(optics) == 1:
        return np.full(len(df), size[0])
    if "rlnOpticsGroup" not in optics.columns or "rlnOpticsGroup" not in df.columns:
        raise ValueError(
            f"{where}: {len(optics)} optics groups but no _rlnOpticsGroup to tell which pixel size a particle has"
        )
    table = dict(zip(_numbers(optics, "rlnOpticsGroup", where, "an optics group number").tolist(), size.tolist()))
    group = _numbers(df, "rlnOpticsGroup", where, "an optics group number")
    missing = sorted(set(group.tolist()) - set(table))
    if missing:
        raise ValueError(f"{where}, label _rlnOpticsGroup: groups {missing} are not in data_optics ({sorted(table)})")
    return np.array([table[g] for g in group.tolist()], dtype=np.float64)


def _per_spacing(convert, xyz: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """``convert(rows, s)`` (a :mod:`cryo3d.coords` pixel <-> Angstrom conversion) applied to each spacing's rows."""
    out = np.empty(xyz.shape, dtype=np.float64)
    for s in dict.fromkeys(spacing.tolist()):
        sel = spacing == s
        out[sel] = convert(xyz[sel], s)
    return out


def _pixel_spacing(voxel_spacing: Spacing | None, optics: np.ndarray | None, tomo: np.ndarray, where: str) -> np.ndarray:
    """Per-particle Angstrom per pixel: the argument wins over the optics table (warning when they differ)."""
    if voxel_spacing is None:
        if optics is None:
            raise ValueError(
                f"{where}: _rlnCoordinateX/Y/Z are pixels and the file states no pixel size (data_optics "
                "_rlnTomoTiltSeriesPixelSize); pass voxel_spacing=<Angstrom per pixel> (--voxel-spacing)"
            )
        return optics
    if isinstance(voxel_spacing, Mapping):
        missing = sorted(set(tomo.tolist()) - set(voxel_spacing))
        if missing:
            raise ValueError(f"{where}: no voxel spacing for tomogram(s) {missing}; the mapping has {sorted(voxel_spacing)}")
        per = np.array([coords.check_voxel_spacing(voxel_spacing[t], where=f"{where}: voxel spacing of {t!r}")
                        for t in tomo.tolist()], dtype=np.float64)
    else:
        per = np.full(len(tomo), coords.check_voxel_spacing(voxel_spacing, where=f"{where}: voxel_spacing"))
    if optics is not None and not np.allclose(per, optics, rtol=1e-6, atol=0):
        warnings.warn(
            f"{where}: the given voxel spacing ({np.unique(per).tolist()} A) differs from the file's "
            f"_rlnTomoTiltSeriesPixelSize ({np.unique(optics).tolist()} A); using the given one",
            stacklevel=3,
        )
    return per


def _table_sizes(blocks: dict, where: str) -> dict[str, np.ndarray]:
    """``{tomogram: (X, Y, Z) Angstrom}`` from every tomograms table (RELION 5 ``tomograms.star``) in ``blocks``."""
    known: dict[str, np.ndarray] = {}
    for key, table in blocks.items():
        if isinstance(table, pd.DataFrame) and set(_SIZE + ["rlnTomoName", "rlnTomoTiltSeriesPixelSize"]) <= set(table.columns):
            w = f"{where} (data_{key})"
            pix = np.stack([_numbers(table, c, w, "a size in pixels") for c in _SIZE], axis=-1)
            spacing = _numbers(table, "rlnTomoTiltSeriesPixelSize", w, "a pixel size in Angstrom")
            if (pix <= 0).any() or (spacing <= 0).any():
                raise ValueError(f"{w}: _rlnTomoSizeX/Y/Z and _rlnTomoTiltSeriesPixelSize must be > 0")
            ext = np.stack([coords.voxels_to_length(pix[i], spacing[i]) for i in range(len(pix))]).reshape(-1, 3)
            for name, e in zip(_names(table, "rlnTomoName", w).tolist(), ext):
                known[_tomo_name(name)] = e
    return known


def read_tomograms_star(path: str | os.PathLike) -> dict[str, tuple[float, float, float]]:
    """Tomogram extents, what centred coordinates need, from a RELION 5 ``tomograms.star``.

    Args:
        path (path-like): A STAR file with ``_rlnTomoName``, ``_rlnTomoSizeX/Y/Z`` and
            ``_rlnTomoTiltSeriesPixelSize`` (RELION 5's ``data_global`` table).

    Returns:
        dict: ``{tomogram name: (X, Y, Z)}`` in Angstrom (size in pixels x pixel size).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Unreadable, no table with those labels, or a size that is no number > 0.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: tomograms STAR file not found")
    if p.is_dir():
        raise ValueError(f"{p}: is a folder, expected a RELION 5 tomograms.star")
    known = _table_sizes(_read_blocks(p), str(p))
    if not known:
        raise ValueError(
            f"{p}: no tomograms table; expected _rlnTomoName, _rlnTomoSizeX/Y/Z and _rlnTomoTiltSeriesPixelSize "
            "(RELION 5 tomograms.star)"
        )
    return {k: tuple(float(x) for x in v) for k, v in known.items()}


def _centres(blocks: dict, tomo: np.ndarray, sizes: Mapping | None, where: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(centres (x, y, z) Angstrom of the rows whose tomogram size is known, mask of those rows)``, or None."""
    known = _table_sizes(blocks, where)  # a tomograms table in the same file
    for name, e in (sizes or {}).items():
        e = np.asarray(e, dtype=np.float64).reshape(-1)
        if e.shape != (3,) or not np.isfinite(e).all() or (e <= 0).any():
            raise ValueError(f"{where}: tomogram size of {name!r} must be (X, Y, Z) Angstrom > 0, got {e.tolist()}")
        known[str(name)] = e
    mask = np.array([t in known for t in tomo.tolist()], dtype=bool)
    if not mask.any():
        return None
    return np.stack([known[t] for t in tomo[mask].tolist()]).reshape(-1, 3) / 2.0, mask


def read_star(
    path: str | os.PathLike,
    voxel_spacing: Spacing | None = None,
    particles: ParticleSet | None = None,
    class_name: str | None = None,
    tomogram_sizes: Mapping[str, tuple[float, float, float]] | None = None,
    tomograms_star: str | os.PathLike | None = None,
) -> Picks:
    """Read picks from a RELION STAR file (labels and conventions: module docstring).

    Args:
        path (path-like): STAR file with a particles loop.
        voxel_spacing (float or mapping of tomogram name -> float, optional):
            Angstrom per pixel of ``_rlnCoordinateX/Y/Z`` (RELION 4); else the optics table's
            ``_rlnTomoTiltSeriesPixelSize``.
        particles (ParticleSet, optional): Maps ``_rlnClassNumber`` k (1-based) onto ``particles.names[k - 1]``.
        class_name (str, optional): Class of every row when the file has no class column.
        tomogram_sizes (mapping of tomogram name -> (X, Y, Z) Angstrom, optional):
            Tomogram extents for RELION 5 centred coordinates (centre = size / 2).
        tomograms_star (path-like, optional): RELION 5 ``tomograms.star`` giving those extents
            (:func:`read_tomograms_star`); ``tomogram_sizes`` wins for a tomogram in both.

    Returns:
        Picks: Centres ``(x, y, z)`` in Angstrom.

    Raises:
        ValueError: Unreadable file, no particles loop, a missing label, a value that is no finite
            number (naming file, row and label), pixels without a pixel size, centred
            coordinates without tomogram sizes, an unknown class number.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: STAR file not found")
    if p.is_dir():
        raise ValueError(f"{p}: is a folder, expected a STAR file")
    where = str(p)
    if tomograms_star is not None:
        tomogram_sizes = {**read_tomograms_star(tomograms_star), **(tomogram_sizes or {})}
    blocks = _read_blocks(p)
    df = _particle_table(blocks, where)
    n = len(df)
    name_col = next((c for c in ("rlnTomoName", "rlnMicrographName") if c in df.columns), None)
    if name_col is None:
        raise ValueError(f"{where}: no _rlnTomoName (or _rlnMicrographName) label; found {[_label(c) for c in df.columns]}")
    tomo = np.array([_tomo_name(v) for v in _names(df, name_col, where).tolist()], dtype=object)
    cols = set(df.columns)

    if set(_ANGST) <= cols:
        xyz = np.stack([_numbers(df, c, where, "a finite number of Angstrom") for c in _ANGST], axis=-1)
    else:
        known = _centres(blocks, tomo, tomogram_sizes, where) if set(_CENTRED) <= cols else None
        if known is not None and (known[1].all() or not set(_PIXEL) <= cols):
            centres, keep = known
            if not keep.all():  # a full-dataset STAR and only some tomograms given: select those
                left = sorted(set(tomo[~keep].tolist()))
                warnings.warn(
                    f"{where}: {int((~keep).sum())} of {n} particle rows left out: no size known for tomogram(s) "
                    f"{left[:5]}{' ...' if len(left) > 5 else ''} ({len(left)} in all); reading the {int(keep.sum())} "
                    "rows of the tomograms given",
                    stacklevel=2,
                )
                df, tomo, n = df[keep], tomo[keep], int(keep.sum())  # the index keeps the file's row numbers
            rel = np.stack([_numbers(df, c, where, "a finite number of Angstrom") for c in _CENTRED], axis=-1)
            xyz = rel + centres
        elif set(_PIXEL) <= cols:
            pix = np.stack([_numbers(df, c, where, "a finite number of pixels") for c in _PIXEL], axis=-1)
            xyz = _per_spacing(coords.voxel_xyz_to_angstrom, pix,
                               _pixel_spacing(voxel_spacing, _optics_spacing(blocks, df, where), tomo, where))
        else:
            missing = sorted(set(tomo.tolist()) - set(tomogram_sizes or {}))
            raise ValueError(
                f"{where}: RELION 5 centred coordinates (_rlnCenteredCoordinateX/Y/ZAngst) need each tomogram's size; "
                f"none known for {missing}: pass RELION 5's tomograms.star (--tomograms-star), the tomograms "
                "(--tomograms) or a copick project, or add _rlnTomoSizeX/Y/Z and _rlnTomoTiltSeriesPixelSize"
            )
    xyz = xyz.reshape(-1, 3)
    origin = [c for c in (f"rlnOrigin{a}Angst" for a in "XYZ") if c in cols]
    if origin and any((_numbers(df, c, where, "a number") != 0).any() for c in origin):
        warnings.warn(f"{where}: origin shifts (_rlnOrigin*Angst) are ignored", stacklevel=2)

    name_label = next((c for c in (_CLASS, "rlnClassName") if c in cols), None)
    if name_label is not None:
        cls = _names(df, name_label, where)
    elif "rlnClassNumber" in cols and particles is not None:
        k = _numbers(df, "rlnClassNumber", where, "a class number")
        bad = (k != np.round(k)) | (k < 1) | (k > len(particles))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{where}, particle row {_row(df, i)}, label _rlnClassNumber: expected 1..{len(particles)} "
                f"(1-based into {particles.names}), got {df['rlnClassNumber'].iloc[i]!r}"
            )
        cls = np.array(particles.names, dtype=object)[k.astype(np.int64) - 1]
    elif class_name is not None:
        cls = np.full(n, str(class_name), dtype=object)
    else:
        raise ValueError(
            f"{where}: no class label ({STAR_CLASS_LABEL}, _rlnClassName, or _rlnClassNumber with particles=...); "
            "pass class_name=... for a single-class file"
        )
    score = None
    if "rlnAutopickFigureOfMerit" in cols:
        score = _numbers(df, "rlnAutopickFigureOfMerit", where, "a finite number")
    return Picks(tomo, cls, xyz, score)


def write_star(
    path: str | os.PathLike,
    picks: Picks,
    voxel_spacing: Spacing | None = None,
    particles: ParticleSet | None = None,
    tomogram_sizes: Mapping[str, tuple[float, float, float]] | None = None,
) -> None:
    """Write ``picks`` as a RELION STAR file through ``starfile``, atomically.

    A ``data_particles`` loop with ``_rlnTomoName``, ``_cryo3dClassName``,
    ``_rlnAutopickFigureOfMerit``, ``_rlnClassNumber`` (1-based, when ``particles`` is given)
    and the coordinates:

    * with ``voxel_spacing``: RELION 4 ``_rlnCoordinateX/Y/Z`` in pixels at that spacing,
      and a ``data_optics`` table with one group per spacing (``_rlnTomoTiltSeriesPixelSize``);
    * with ``tomogram_sizes`` (``(X, Y, Z)`` Angstrom per tomogram): RELION 5
      ``_rlnCenteredCoordinateX/Y/ZAngst`` (position minus half the size).

    At least one of the two is needed; with both, both are written.
    """
    p = Path(path)
    where = str(p)
    if voxel_spacing is None and tomogram_sizes is None:
        raise ValueError(
            f"{where}: give voxel_spacing (RELION 4 pixel coordinates) or tomogram_sizes (RELION 5 centred Angstrom)"
        )
    if not np.isfinite(picks.xyz).all():
        raise ValueError(f"{where}: coordinates must be finite")
    tomo = np.asarray(picks.tomo, dtype=object)
    data: dict = {"rlnTomoName": [str(t) for t in tomo.tolist()]}
    blocks: dict = {}
    if voxel_spacing is not None:
        per = _pixel_spacing(voxel_spacing, None, tomo, where)
        groups = {s: i + 1 for i, s in enumerate(dict.fromkeys(per.tolist()))}
        blocks["optics"] = pd.DataFrame({
            "rlnOpticsGroup": list(groups.values()),
            "rlnOpticsGroupName": [f"opticsGroup{g}" for g in groups.values()],
            "rlnTomoTiltSeriesPixelSize": list(groups),
        })
        pix = _per_spacing(coords.angstrom_to_voxel_xyz, picks.xyz, per)
        data.update({c: pix[:, i] for i, c in enumerate(_PIXEL)})
        data["rlnOpticsGroup"] = [groups[s] for s in per.tolist()]
    if tomogram_sizes is not None:
        known = _centres({}, tomo, tomogram_sizes, where)
        if known is None or not known[1].all():
            missing = sorted(set(tomo.tolist()) - set(tomogram_sizes))
            raise ValueError(f"{where}: no tomogram size for {missing}; tomogram_sizes has {sorted(tomogram_sizes)}")
        rel = picks.xyz - known[0]
        data.update({c: rel[:, i] for i, c in enumerate(_CENTRED)})
    data[_CLASS] = [str(c) for c in picks.cls.tolist()]
    data["rlnAutopickFigureOfMerit"] = picks.score.astype(np.float64)
    if particles is not None:
        data["rlnClassNumber"] = particles.indices(picks.cls.tolist(), where=where) + 1
    blocks["particles"] = pd.DataFrame(data)
    with atomic_path(p) as tmp:
        starfile.write(blocks, tmp, float_format="%.17g")

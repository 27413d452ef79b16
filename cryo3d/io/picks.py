"""Picks files: the CSV table, copick JSON and RELION STAR, plus validation.

Every reader returns a :class:`cryo3d.picks.Picks` with centres ``(x, y, z)`` in Angstrom;
every writer takes one. Formats (``ARCHITECTURE.md``, "What users hand us and get back"):

* **CSV** -- header ``tomo,class,x,y,z`` (x, y, z in Angstrom) and optional further
  columns, ``score`` first among them. One file may hold many tomograms. copick's own CSV
  export (``run_name,x,y,z,transform_00..33,score``) is recognised by its header and read by
  :func:`cryo3d.io.copick_files.read_copick_csv`.
* **copick JSON** -- one file per run, user, session and object,
  ``ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json``; a point's centre is its
  ``location`` plus the translation of its ``transformation_``. Parsed and serialised by
  copick's own model (:mod:`cryo3d.io.copick_files`); a copick *project* (config, runs,
  OME-Zarr tomograms, users and sessions) is :mod:`cryo3d.io.copick_project`.
* **STAR** -- RELION 4 pixel and RELION 5 centred coordinates through ``starfile``
  (:mod:`cryo3d.io.star`).

All writers are atomic (temporary file in the destination folder, then ``os.replace``).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cryo3d.coords import (
    angstrom_to_voxel,
    angstrom_to_voxel_xyz,
    check_voxel_spacing,
    in_voxel_extent,
    length_to_voxels,
    voxel_extent,
    voxel_xyz_to_angstrom,
    voxels_to_length,
)
from cryo3d.errors import Cryo3DError
from cryo3d.io.atomic import write_text_atomic
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks

__all__ = [
    "CSV_COLUMNS",
    "read_picks_csv",
    "write_picks_csv",
    "read_copick_json",
    "read_copick",
    "write_copick_json",
    "write_copick",
    "copick_picks_path",
    "read_star",
    "write_star",
    "read_picks",
    "write_picks",
    "validate_picks",
]

#: Required CSV columns, in the order they are written.
CSV_COLUMNS = ("tomo", "class", "x", "y", "z")

#: STAR label that holds the class name (RELION has none; see :mod:`cryo3d.io.star`).
STAR_CLASS_LABEL = "_cryo3dClassName"

Spacing = float | Mapping[str, float]


# --------------------------------------------------------------------------- helpers


def _check_file(p: Path, what: str) -> None:
    if not p.exists():
        raise FileNotFoundError(f"{p}: {what} not found")
    if p.is_dir():
        raise Cryo3DError(f"{p}: is a folder, expected a {what}")


def _parse_floats(
    values: list[str], where: str, column: str, lines: list[int], what: str, finite: bool = True,
    rows: list[int] | None = None,
) -> np.ndarray:
    """Parse strings as float64; :class:`Cryo3DError` naming the file, line (and row) and column of a bad one.

    ``rows``: 1-based data-row numbers (the CSV reader's wording, ``row N (line L)``).
    """

    def at(i: int) -> str:
        return f"line {lines[i]}" if rows is None else f"row {rows[i]} (line {lines[i]})"

    try:
        arr = np.array(values, dtype=str).astype(np.float64) if values else np.empty(0)
    except (ValueError, OverflowError):
        for i, v in enumerate(values):
            try:
                float(v)
            except (ValueError, OverflowError):
                raise Cryo3DError(
                    f"{where}, {at(i)}, column {column!r}: expected {what}, got {v!r}"
                ) from None
        raise Cryo3DError(f"{where}, column {column!r}: expected {what}")  # numpy and Python disagree on a spelling
    if finite:
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise Cryo3DError(
                f"{where}, {at(i)}, column {column!r}: expected {what}, got {values[i]!r}"
            )
    return arr


def _infer_column(values: list[str]) -> np.ndarray:
    """An extra column as int64 if every value is an integer, else float64, else str."""
    if not values:
        return np.empty(0, dtype=np.float64)
    arr = np.array(values, dtype=str)
    for dtype in (np.int64, np.float64):
        try:
            return arr.astype(dtype)
        except (ValueError, OverflowError):
            pass
    return np.array(values, dtype=object)


def _format_column(values: np.ndarray) -> list[str]:
    """Column values as text that reads back exactly (``repr`` for floats)."""
    kind = values.dtype.kind
    if kind == "f":
        return [repr(v) for v in values.astype(np.float64).tolist()]
    if kind in "iub":
        return [str(v) for v in values.tolist()]
    return ["" if v is None else str(v) for v in values.tolist()]


def _check_units(units: str) -> str:
    u = str(units).strip().lower()
    if u in ("angstrom", "angstroms", "a", "å"):
        return "angstrom"
    if u in ("voxel", "voxels", "pixel", "pixels"):
        return "voxel"
    raise Cryo3DError(f"units must be 'angstrom' or 'voxel', got {units!r}")


def _spacing_of(voxel_spacing: Spacing | None, tomo: str, where: str) -> float:
    """Voxel spacing of tomogram ``tomo`` from a number or a ``{tomo: spacing}`` mapping."""
    hint = "pass voxel_spacing=<Angstrom per voxel> (a number or a {tomogram: spacing} mapping)"
    if voxel_spacing is None:
        raise Cryo3DError(f"{where}: coordinates are in voxels, so a voxel spacing is needed; {hint}")
    if isinstance(voxel_spacing, Mapping):
        if tomo not in voxel_spacing:
            raise Cryo3DError(
                f"{where}: no voxel spacing for tomogram {tomo!r}; the mapping has "
                f"{sorted(voxel_spacing)}"
            )
        return check_voxel_spacing(voxel_spacing[tomo], where=f"{where}: voxel spacing of {tomo!r}")
    return check_voxel_spacing(voxel_spacing, where=f"{where}: voxel_spacing")


def _voxel_xyz_to_angstrom(xyz_vox: np.ndarray, tomo: np.ndarray, voxel_spacing, where: str) -> np.ndarray:
    """Voxel coordinates given as ``(x, y, z)`` -> Angstrom ``(x, y, z)`` (per tomogram)."""
    out = np.empty_like(xyz_vox, dtype=np.float64)
    for t in dict.fromkeys(tomo.tolist()):
        sel = tomo == t
        s = _spacing_of(voxel_spacing, t, where)
        out[sel] = voxel_xyz_to_angstrom(xyz_vox[sel], s)
    return out


def _angstrom_to_voxel_xyz(xyz: np.ndarray, tomo: np.ndarray, voxel_spacing, where: str) -> np.ndarray:
    """Angstrom ``(x, y, z)`` -> voxel coordinates in ``(x, y, z)`` order (per tomogram)."""
    out = np.empty_like(xyz, dtype=np.float64)
    for t in dict.fromkeys(tomo.tolist()):
        sel = tomo == t
        s = _spacing_of(voxel_spacing, t, where)
        out[sel] = angstrom_to_voxel_xyz(xyz[sel], s)
    return out


# --------------------------------------------------------------------------- CSV


def read_picks_csv(
    path: str | os.PathLike,
    voxel_spacing: Spacing | None = None,
    units: str = "angstrom",
    class_name: str | None = None,
) -> Picks:
    """Read a picks table ``tomo,class,x,y,z[,score,...]`` (or copick's CSV export).

    Parameters
    ----------
    path : path-like
        CSV file with a header line. ``tomo``, ``class``, ``x``, ``y``, ``z`` are
        required; ``score`` (float) is optional (1.0 when absent); any further column is
        kept in ``Picks.extra`` as int64, float64 or str (the narrowest that holds every
        value). Blank lines are skipped; values are stripped of surrounding spaces.
    voxel_spacing : float or mapping of tomogram name -> float, optional
        Angstrom per voxel; needed only when ``units="voxel"``.
    units : {"angstrom", "voxel"}
        Unit of x, y, z in the file. With ``"voxel"``, ``x`` is the voxel index along the
        array's last axis (voxel ``i`` centred at ``i * spacing``); converted to Angstrom.
    class_name : str, optional
        For copick's CSV export only (it has no class column): the class of every row;
        by default taken from its file name ``<run>_<object>_<user>_<session>.csv``.

    Returns
    -------
    Picks
        Centres ``(x, y, z)`` in Angstrom.

    Raises
    ------
    Cryo3DError
        (a ``ValueError``) A required column is missing, a row has the wrong number of
        fields, a coordinate or score is not a finite number, a tomo or class cell is
        empty, voxel units without a voxel spacing, text that is not UTF-8 (UTF-16 is
        named as such) or not CSV. The message names the file, ``row N (line L)`` (N
        counts data rows from 1, L is the file's line) and the column.
    """
    p = Path(path)
    _check_file(p, "picks table")
    units = _check_units(units)
    with open(p, "rb") as fb:
        head = fb.read(4)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise Cryo3DError(
            f"{p}: the file is UTF-16 text; expected UTF-8 (or ASCII) CSV: save it as 'CSV UTF-8' "
            "or convert it, e.g. iconv -f UTF-16 -t UTF-8"
        )
    try:
        return _read_picks_csv(p, voxel_spacing, units, class_name)
    except UnicodeDecodeError as exc:
        raise Cryo3DError(
            f"{p}: not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at offset {exc.start}); "
            "expected a UTF-8 CSV table tomo,class,x,y,z"
        ) from None
    except csv.Error as exc:
        raise Cryo3DError(f"{p}: not a readable CSV table ({exc}); expected tomo,class,x,y,z") from None


def _read_picks_csv(p: Path, voxel_spacing: Spacing | None, units: str, class_name: str | None = None) -> Picks:
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise Cryo3DError(f"{p}: empty file; expected a header line {','.join(CSV_COLUMNS)}")
        header = [h.strip() for h in header]
        from cryo3d.io.copick_files import is_copick_csv, read_copick_csv

        if is_copick_csv(header):  # copick's CSV export: run_name,x,y,z,transform_*,score
            return read_copick_csv(p, class_name=class_name)
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise Cryo3DError(
                f"{p}, line 1: missing column(s) {missing}; expected a header with "
                f"{','.join(CSV_COLUMNS)} (x, y, z in Angstrom) and optional further columns "
                f"(score first); found {header}"
            )
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise Cryo3DError(f"{p}, line 1: repeated column name(s) {dupes}")
        rows: list[list[str]] = []
        lines: list[int] = []
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise Cryo3DError(
                    f"{p}, row {len(rows) + 1} (line {reader.line_num}): {len(row)} fields, expected {len(header)} "
                    f"as in the header {header}"
                )
            rows.append([c.strip() for c in row])
            lines.append(reader.line_num)
    columns = {h: [r[i] for r in rows] for i, h in enumerate(header)}
    rownums = list(range(1, len(rows) + 1))
    where = str(p)
    for name in ("tomo", "class"):
        empty = [i for i, v in enumerate(columns[name]) if not v]
        if empty:
            raise Cryo3DError(
                f"{p}, row {empty[0] + 1} (line {lines[empty[0]]}), column {name!r}: expected a name, got an empty cell"
            )
    unit_word = "a finite number of voxels" if units == "voxel" else "a finite number of Angstrom"
    xyz = np.stack(
        [_parse_floats(columns[c], where, c, lines, unit_word, rows=rownums) for c in ("x", "y", "z")], axis=-1
    ).reshape(-1, 3)
    tomo = np.array(columns["tomo"], dtype=object)
    if units == "voxel":
        xyz = _voxel_xyz_to_angstrom(xyz, tomo, voxel_spacing, where)
    score = None
    if "score" in columns:
        score = _parse_floats(columns["score"], where, "score", lines, "a finite number", rows=rownums)
    extra = {
        h: _infer_column(columns[h]) for h in header if h not in CSV_COLUMNS and h != "score"
    }
    return Picks(tomo, np.array(columns["class"], dtype=object), xyz, score, extra)


def write_picks_csv(path: str | os.PathLike, picks: Picks) -> None:
    """Write ``picks`` as ``tomo,class,x,y,z,score[,extra...]`` (Angstrom), atomically.

    Floats are written with ``repr`` (the shortest text that reads back to the same
    float64), so a round trip is exact. Extra columns follow in ``picks.extra`` order.
    """
    p = Path(path)
    clash = [k for k in picks.extra if k in CSV_COLUMNS or k == "score"]
    if clash:
        raise ValueError(f"{p}: extra column name(s) {clash} clash with the standard columns")
    header = [*CSV_COLUMNS, "score", *picks.extra]
    cols = [
        _format_column(picks.tomo),
        _format_column(picks.cls),
        _format_column(picks.xyz[:, 0]),
        _format_column(picks.xyz[:, 1]),
        _format_column(picks.xyz[:, 2]),
        _format_column(picks.score),
        *(_format_column(v) for v in picks.extra.values()),
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(*cols))
    write_text_atomic(p, buf.getvalue())


# --------------------------------------------------------------------------- copick


def _load_copick(p: Path) -> tuple[dict, Picks]:
    """One copick picks file through copick's own model (:func:`cryo3d.io.copick_files.load_copick_file`)."""
    from cryo3d.io.copick_files import load_copick_file

    return load_copick_file(p)


def read_copick_json(path: str | os.PathLike) -> Picks:
    """Read one copick picks file.

    Parameters
    ----------
    path : path-like
        ``ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json`` holding
        ``pickable_object_name``, ``run_name`` (inferred from the path when missing),
        ``user_id``, ``session_id`` and ``points``; any further keys are ignored.

    Returns
    -------
    Picks
        One row per point: tomogram = run name, class = ``pickable_object_name``, centre
        = ``location + transformation_[:3, 3]`` in Angstrom, score (1.0 when missing).
        ``extra`` holds ``user_id``, ``session_id`` (str) and ``instance_id`` (int64).
    """
    return _load_copick(Path(path))[1]


def _as_filter(value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {value}
    return {str(v) for v in value}


def read_copick(
    root: str | os.PathLike,
    user_id: str | Iterable[str] | None = None,
    session_id: str | Iterable[str] | None = None,
    objects: Iterable[str] | None = None,
) -> Picks:
    """Read every copick picks file under ``root/ExperimentRuns/*/Picks/*.json``.

    Parameters
    ----------
    root : path-like
        copick overlay root (the folder holding ``ExperimentRuns``), or the
        ``ExperimentRuns`` folder itself.
    user_id, session_id : str or iterable of str, optional
        Keep only files of these users / sessions (as written inside each file).
    objects : iterable of str, optional
        Keep only these ``pickable_object_name`` values.

    Returns
    -------
    Picks
        All matching picks, files in sorted path order. Empty (with a warning) if no
        file matches.

    Raises
    ------
    ValueError
        Picks of several users (or of several sessions of one user) match and no
        ``user_id`` (``session_id``) was given: the message lists them. Picks are never
        merged across users or sessions silently.
    """
    r = Path(root)
    if not r.exists():
        raise FileNotFoundError(f"{r}: copick root not found")
    runs = r if r.name == "ExperimentRuns" else r / "ExperimentRuns"
    if not runs.is_dir():
        raise FileNotFoundError(
            f"{r}: no ExperimentRuns folder; expected a copick root holding "
            "ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json"
        )
    from cryo3d.io.copick_files import check_one_source

    users, sessions, objs = _as_filter(user_id), _as_filter(session_id), _as_filter(objects)
    parts, sources = [], []
    for f in sorted(runs.glob("*/Picks/*.json")):
        meta, picks = _load_copick(f)
        if users is not None and meta["user_id"] not in users:
            continue
        if sessions is not None and meta["session_id"] not in sessions:
            continue
        if objs is not None and meta["pickable_object_name"] not in objs:
            continue
        parts.append(picks)
        sources.append((meta["user_id"], meta["session_id"]))
    check_one_source(sources, user_id, session_id, str(r))
    if not parts:
        warnings.warn(
            f"{r}: no copick picks files match user_id={user_id!r}, session_id={session_id!r}, "
            f"objects={objects!r}",
            stacklevel=2,
        )
        return Picks.empty()
    return Picks.concat(parts)


_BAD_NAME_CHARS = set('/\\<>:"|?*') | {"\0"}


def _check_copick_name(value: str, field: str, allow_underscore: bool) -> str:
    v = str(value)
    bad = (
        not v
        or any(c in _BAD_NAME_CHARS or c.isspace() for c in v)
        or v in (".", "..")
        or (not allow_underscore and "_" in v)
    )
    if bad:
        extra = "" if allow_underscore else ", '_' (it separates user, session and object)"
        raise ValueError(
            f"copick {field} {v!r} is not usable in a file name: it must be non-empty, without "
            f"spaces, path separators or any of <>:\"|?*{extra}"
        )
    return v


def copick_picks_path(root: str | os.PathLike, run: str, user_id: str, session_id: str, obj: str) -> Path:
    """``root/ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json``."""
    return Path(root) / "ExperimentRuns" / run / "Picks" / f"{user_id}_{session_id}_{obj}.json"


def _copick_text(picks: Picks, run: str, obj: str, user_id: str, session_id: str) -> str:
    from cryo3d.io.copick_files import copick_file_text

    return copick_file_text(picks, run, obj, user_id, session_id, trust_orientation=False)


def write_copick_json(
    path: str | os.PathLike, picks: Picks, user_id: str = "cryo3d", session_id: str = "0"
) -> None:
    """Write picks of ONE run and ONE object as a single copick picks file, atomically.

    See :func:`write_copick` for the content. ``ValueError`` if ``picks`` spans several
    tomograms or classes (or none).
    """
    p = Path(path)
    tomos, classes = picks.tomograms, picks.classes
    if len(tomos) != 1 or len(classes) != 1:
        raise ValueError(
            f"{p}: a copick picks file holds one run and one object; got tomograms {tomos} and "
            f"classes {classes} (use write_copick(root, picks) for a whole project)"
        )
    user_id = _check_copick_name(user_id, "user_id", allow_underscore=False)
    session_id = _check_copick_name(session_id, "session_id", allow_underscore=False)
    doc = _copick_text(picks, tomos[0], classes[0], user_id, session_id)
    write_text_atomic(p, doc)


def write_copick(
    root: str | os.PathLike, picks: Picks, user_id: str = "cryo3d", session_id: str = "0"
) -> list[str]:
    """Write ``picks`` as copick picks files, one per run and object, atomically.

    Each file ``root/ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json`` holds
    ``pickable_object_name``, ``user_id``, ``session_id``, ``run_name``, ``voxel_spacing``
    (null), ``unit`` ("angstrom"), ``trust_orientation`` (false: no orientation is known) and ``points``, each with
    ``location`` {x, y, z} (Angstrom), ``transformation_`` (identity), ``instance_id``
    (``picks.extra["instance_id"]`` if present, else 0) and ``score``. Existing files of
    the same name are replaced; other files are left alone.

    Parameters
    ----------
    root : path-like
        copick overlay root (created if missing).
    picks : Picks
        Tomogram names become run names, class names object names.
    user_id, session_id : str
        Written into every file and its name (no ``_``, spaces or path separators).

    Returns
    -------
    list of str
        Paths written, in order of first appearance of (run, object).
    """
    user_id = _check_copick_name(user_id, "user_id", allow_underscore=False)
    session_id = _check_copick_name(session_id, "session_id", allow_underscore=False)
    written = []
    for run in picks.tomograms:
        _check_copick_name(run, "run name (tomogram)", allow_underscore=True)
        in_run = picks.for_tomo(run)
        for obj in in_run.classes:
            _check_copick_name(obj, "object name (class)", allow_underscore=True)
            sub = in_run.for_class(obj)
            path = copick_picks_path(root, run, user_id, session_id, obj)
            write_text_atomic(path, _copick_text(sub, run, obj, user_id, session_id))
            written.append(str(path))
    return written


# --------------------------------------------------------------------------- STAR (cryo3d.io.star)


def read_star(path: str | os.PathLike, **kw: Any) -> Picks:
    """Read RELION STAR picks: :func:`cryo3d.io.star.read_star` (through ``starfile``)."""
    from cryo3d.io.star import read_star as _read

    return _read(path, **kw)


def write_star(path: str | os.PathLike, picks: Picks, **kw: Any) -> None:
    """Write RELION STAR picks: :func:`cryo3d.io.star.write_star` (through ``starfile``)."""
    from cryo3d.io.star import write_star as _write

    _write(path, picks, **kw)


# --------------------------------------------------------------------------- dispatch


def read_picks(path: str | os.PathLike, **kw: Any) -> Picks:
    """Read picks by file ending: ``.csv``, ``.json`` (one copick file), ``.star``; or a
    folder (a copick root). Keyword arguments go to the reader that takes them (``None``
    values and options another format needs, such as ``voxel_spacing``, are dropped), so a
    command can pass every option it has for whatever file it is given."""
    p = Path(path)
    if p.is_dir():
        kw = {k: v for k, v in kw.items() if k in ("user_id", "session_id", "objects") and v is not None}
        return read_copick(p, **kw)
    if not p.exists():
        raise FileNotFoundError(f"{p}: picks file not found")
    readers = {".csv": read_picks_csv, ".json": read_copick_json, ".star": read_star}
    takes = {".csv": ("voxel_spacing", "units", "class_name"), ".json": (),
             ".star": ("voxel_spacing", "particles", "class_name", "tomogram_sizes")}
    reader = readers.get(p.suffix.lower())
    if reader is None:
        raise ValueError(
            f"{p}: unsupported picks file ending {p.suffix!r}; expected .csv, .json, .star or a "
            "copick root folder"
        )
    kw = {k: v for k, v in kw.items() if k in takes[p.suffix.lower()] and v is not None}
    return reader(p, **kw)


def write_picks(path: str | os.PathLike, picks: Picks, **kw: Any) -> list[str]:
    """Write picks by file ending: ``.csv``, ``.star`` (needs ``voxel_spacing``), ``.json``
    (one run and object); a folder or a path without ending is a copick root.

    Returns the paths written.
    """
    p = Path(path)
    if p.is_dir() or not p.suffix:
        return write_copick(p, picks, **kw)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        write_picks_csv(p, picks, **kw)
    elif suffix == ".star":
        write_star(p, picks, **kw)
    elif suffix == ".json":
        write_copick_json(p, picks, **kw)
    else:
        raise ValueError(
            f"{p}: unsupported picks file ending {p.suffix!r}; expected .csv, .json, .star or a "
            "folder (copick root)"
        )
    return [str(p)]


# --------------------------------------------------------------------------- validation

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

    Parameters
    ----------
    picks : Picks
        Centres ``(x, y, z)`` in Angstrom.
    particles : ParticleSet
        Known classes.
    shapes : mapping of tomogram name -> ``(Z, Y, X)``, optional
        Tomogram shapes in voxels. When given, every tomogram in ``picks`` must be in it
        and every pick must lie inside its tomogram: voxel coordinate in
        ``[-0.5, n - 0.5]`` along each axis.
    voxel_spacings : mapping of tomogram name -> float, optional
        Angstrom per voxel; required with ``shapes``.
    source : str
        Names the picks (e.g. the file) in error messages.
    tomogram_files : mapping of tomogram name -> file, optional
        Names a tomogram's file when the error blames the tomogram (axes stored swapped).

    Warns
    -----
    UserWarning
        Every pick of every tomogram lies within the first ``1/spacing`` of its volume
        (coordinates below the voxel counts): voxel indices written as Angstrom.

    Raises
    ------
    ValueError
        Unknown class (naming the row, counted from 1 in table order as the CSV reader's
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

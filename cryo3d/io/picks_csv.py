"""The picks table as CSV: ``tomo,class,x,y,z[,score,...]`` with x, y, z in Angstrom.

The file convention (``ARCHITECTURE.md``, "What users hand us and get back"): a header
``tomo,class,x,y,z`` and optional further columns, ``score`` first among them; one file may
hold many tomograms; ground truth and predictions use the same table. copick's own CSV
export (``run_name,x,y,z,transform_00..33,score``) is recognised by its header and read by
:func:`cryo3d.io.copick_files.read_copick_csv`. Writing is atomic and reads back exactly.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cryo3d.coords import check_voxel_spacing, voxel_xyz_to_angstrom
from cryo3d.errors import Cryo3DError
from cryo3d.io.atomic import write_text_atomic
from cryo3d.io.copick_files import is_copick_csv, read_copick_csv
from cryo3d.io.pick_validation import MAX_COORDINATE, coordinate_limit_error
from cryo3d.picks import Picks

__all__ = ["CSV_COLUMNS", "Spacing", "check_file", "read_picks_csv", "write_picks_csv"]

#: Required CSV columns, in the order they are written.
CSV_COLUMNS = ("tomo", "class", "x", "y", "z")


Spacing = float | Mapping[str, float]


def check_file(p: Path, what: str) -> None:
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


def read_picks_csv(
    path: str | os.PathLike,
    voxel_spacing: Spacing | None = None,
    units: str = "angstrom",
    class_name: str | None = None,
) -> Picks:
    """Read a picks table ``tomo,class,x,y,z[,score,...]`` (or copick's CSV export).

    Args:
        path (path-like): CSV file with a header line. ``tomo``, ``class``, ``x``, ``y``, ``z`` are
            required; ``score`` (float) is optional (1.0 when absent); any further column is
            kept in ``Picks.extra`` as int64, float64 or str (the narrowest that holds every
            value). Blank lines are skipped; values are stripped of surrounding spaces.
        voxel_spacing (float or mapping of tomogram name -> float, optional):
            Angstrom per voxel; needed only when ``units="voxel"``.
        units ({"angstrom", "voxel"}):
            Unit of x, y, z in the file. With ``"voxel"``, ``x`` is the voxel index along the
            array's last axis (voxel ``i`` centred at ``i * spacing``); converted to Angstrom.
        class_name (str, optional):
            For copick's CSV export only (it has no class column): the class of every row;
            by default taken from its file name ``<run>_<object>_<user>_<session>.csv``.

    Returns:
        Picks: Centres ``(x, y, z)`` in Angstrom.

    Raises:
        Cryo3DError: (a ``ValueError``) A required column is missing, a row has the wrong number of
            fields, a coordinate or score is not a finite number, a coordinate's magnitude exceeds
            :data:`~cryo3d.io.pick_validation.MAX_COORDINATE` Angstrom, a tomo or class cell is
            empty, voxel units without a voxel spacing, text that is not UTF-8 (UTF-16 is
            named as such) or not CSV. The message names the file, ``row N (line L)`` (N
            counts data rows from 1, L is the file's line) and the column.
    """
    p = Path(path)
    check_file(p, "picks table")
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
    huge = np.abs(xyz) > MAX_COORDINATE  # a typo or another unit: distances would overflow
    if huge.any():
        i, a = (int(v) for v in np.argwhere(huge)[0])
        raise coordinate_limit_error(f"{p}, row {rownums[i]} (line {lines[i]})", "xyz"[a], float(xyz[i, a]))
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

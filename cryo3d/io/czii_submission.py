"""The CZII cryo-ET challenge's ``submission.csv``: ``id,experiment,particle_type,x,y,z`` in Angstrom.

The Kaggle challenge ("CZII - CryoET Object Identification") scores one CSV per submission:
a row per predicted particle, ``id`` a running number (0..n-1), ``experiment`` the copick run
(cryo3d's tomogram name), ``particle_type`` the copick object (cryo3d's class), and the centre
``x, y, z`` in Angstrom -- the same frame as cryo3d's picks, so no conversion is needed. The
file has no score column: a submission holds the picks already thresholded. It is recognised
by its header (:func:`is_submission_csv`), so :func:`cryo3d.io.pick_formats.read_picks` reads
it wherever a picks file is taken; :func:`write_submission` writes it (``cryo3d export
--format czii-submission``, ``cryo3d predict --format czii-submission``).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from cryo3d.errors import Cryo3DError
from cryo3d.io.atomic import write_text_atomic
from cryo3d.picks import Picks

__all__ = ["SUBMISSION_COLUMNS", "is_submission_csv", "read_submission", "write_submission"]

#: The challenge's columns, in its order.
SUBMISSION_COLUMNS = ("id", "experiment", "particle_type", "x", "y", "z")


def _header(p: Path) -> list[str]:
    with open(p, newline="", encoding="utf-8-sig") as f:
        row = next(csv.reader(f), [])
    return [h.strip() for h in row]


def is_submission_csv(path: str | os.PathLike) -> bool:
    """True when the file's header holds the challenge's columns (``id,experiment,particle_type,x,y,z``)."""
    try:
        return set(SUBMISSION_COLUMNS) <= set(_header(Path(path)))
    except (OSError, UnicodeDecodeError, csv.Error):
        return False


def read_submission(path: str | os.PathLike) -> Picks:
    """Read a challenge ``submission.csv`` as picks (every score 1.0; ``id`` is not kept).

    Args:
        path (path-like): CSV with the columns ``id,experiment,particle_type,x,y,z`` (Angstrom).

    Returns:
        Picks: ``tomo`` from ``experiment``, ``cls`` from ``particle_type``, centres ``(x, y, z)``.

    Raises:
        FileNotFoundError: No such file.
        Cryo3DError: A missing column, a ragged row, an empty name or a coordinate that is no
            finite number (naming file, line and column).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: submission CSV not found")
    if p.is_dir():
        raise Cryo3DError(f"{p}: is a folder, expected a submission CSV")
    with open(p, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]] if rows else []
    missing = [c for c in SUBMISSION_COLUMNS if c not in header]
    if missing:
        raise Cryo3DError(f"{p}: missing column(s) {missing}; a challenge submission has {list(SUBMISSION_COLUMNS)}")
    col = {c: header.index(c) for c in SUBMISSION_COLUMNS}
    body = [(i + 2, r) for i, r in enumerate(rows[1:]) if any(v.strip() for v in r)]
    for line, r in body:
        if len(r) != len(header):
            raise Cryo3DError(f"{p}, line {line}: expected {len(header)} fields ({','.join(header)}), got {len(r)}")
    names = {}
    for c in ("experiment", "particle_type"):
        vals = [r[col[c]].strip() for _, r in body]
        for (line, _), v in zip(body, vals):
            if not v:
                raise Cryo3DError(f"{p}, line {line}, column {c!r}: expected a name, got an empty field")
        names[c] = np.array(vals, dtype=object)
    xyz = np.empty((len(body), 3), dtype=np.float64)
    for j, c in enumerate("xyz"):
        for i, (line, r) in enumerate(body):
            try:
                xyz[i, j] = float(r[col[c]])
            except ValueError:
                xyz[i, j] = np.nan
            if not np.isfinite(xyz[i, j]):
                raise Cryo3DError(
                    f"{p}, line {line}, column {c!r}: expected a finite number of Angstrom, got {r[col[c]]!r}"
                )
    return Picks(names["experiment"], names["particle_type"], xyz)


def write_submission(path: str | os.PathLike, picks: Picks) -> None:
    """Write ``picks`` as a challenge ``submission.csv`` (ids 0..n-1), atomically.

    Coordinates are written with ``repr`` (the shortest text that reads back to the same
    float64), so :func:`read_submission` gives back the same tomograms, classes and centres.
    Scores are not written (the challenge has no column for them): threshold first.

    Args:
        path (path-like): Output CSV.
        picks (Picks): Centres in Angstrom.

    Raises:
        ValueError: A coordinate that is not finite.
    """
    p = Path(path)
    xyz = np.asarray(picks.xyz, dtype=np.float64).reshape(-1, 3)
    if not np.isfinite(xyz).all():
        raise ValueError(f"{p}: coordinates must be finite to write a submission")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SUBMISSION_COLUMNS)
    w.writerows(
        (i, str(t), str(c), repr(float(x)), repr(float(y)), repr(float(z)))
        for i, (t, c, (x, y, z)) in enumerate(zip(picks.tomo.tolist(), picks.cls.tolist(), xyz.tolist()))
    )
    write_text_atomic(p, buf.getvalue())

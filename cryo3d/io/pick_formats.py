"""Picks files by their ending: one entry point for every format a user hands us.

``.csv`` (:mod:`cryo3d.io.picks_csv`; the CZII challenge's ``submission.csv``, recognised by
its header ``id,experiment,particle_type,x,y,z``, by :mod:`cryo3d.io.czii_submission`), ``.json`` (one copick file) or a folder (a copick
root; :mod:`cryo3d.io.copick_picks`), ``.star`` (RELION; :mod:`cryo3d.io.star`). Every reader
returns a :class:`cryo3d.picks.Picks` with centres ``(x, y, z)`` in Angstrom; every writer
takes one and writes atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryo3d.io.copick_picks import read_copick, read_copick_json, write_copick, write_copick_json
from cryo3d.io.czii_submission import is_submission_csv, read_submission
from cryo3d.io.pick_validation import check_coordinates
from cryo3d.io.picks_csv import read_picks_csv, write_picks_csv
from cryo3d.io.star import read_star, write_star
from cryo3d.picks import Picks

__all__ = ["read_picks", "write_picks"]

def read_picks(path: str | os.PathLike, **kw: Any) -> Picks:
    """Read picks by file ending: ``.csv``, ``.json`` (one copick file), ``.star``; or a
    folder (a copick root). Keyword arguments go to the reader that takes them (``None``
    values and options another format needs, such as ``voxel_spacing``, are dropped), so a
    command can pass every option it has for whatever file it is given.

    Raises:
        Cryo3DError: The reader's errors, and a coordinate that is not finite or beyond
            :data:`~cryo3d.io.pick_validation.MAX_COORDINATE` Angstrom (naming the file, row and column).
    """
    p = Path(path)
    if p.is_dir():
        kw = {k: v for k, v in kw.items() if k in ("user_id", "session_id", "objects") and v is not None}
        picks = read_copick(p, **kw)
        check_coordinates(picks, str(p))
        return picks
    if not p.exists():
        raise FileNotFoundError(f"{p}: picks file not found")
    if p.suffix.lower() == ".csv" and is_submission_csv(p):
        picks = read_submission(p)
        check_coordinates(picks, str(p))
        return picks
    readers = {".csv": read_picks_csv, ".json": read_copick_json, ".star": read_star}
    takes = {".csv": ("voxel_spacing", "units", "class_name"), ".json": (),
             ".star": ("voxel_spacing", "particles", "class_name", "tomogram_sizes", "tomograms_star")}
    reader = readers.get(p.suffix.lower())
    if reader is None:
        raise ValueError(
            f"{p}: unsupported picks file ending {p.suffix!r}; expected .csv, .json, .star or a "
            "copick root folder"
        )
    kw = {k: v for k, v in kw.items() if k in takes[p.suffix.lower()] and v is not None}
    picks = reader(p, **kw)
    check_coordinates(picks, str(p))  # every format: finite, within a sane magnitude, file and row named
    return picks


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

"""copick picks as files: one JSON file through copick's own data model, and copick's CSV export.

These are thin adapters between copick's formats and :class:`~cryo3d.picks.Picks`
(centres ``(x, y, z)`` in Angstrom). The JSON schema is copick's: a file is validated by
``copick.models.CopickPicksFile`` (strictly: no string read as a number, no float as an
integer id), so a file copick accepts we accept and what we write copick reads. What is
added here is what copick's model leaves open:

* errors name the file, the field and what was expected (pydantic's own message follows);
* a file without ``points`` (or ``points: null``) is an error, never silently no picks
  (copick's model would default it to an empty list);
* ``user_id``, ``session_id`` and ``pickable_object_name`` missing from the file are taken
  from its name ``<user>_<session>_<object>.json``, ``run_name`` from its path
  ``ExperimentRuns/<run>/Picks/``;
* a point's centre is its ``location`` plus its transformation's translation
  (``CopickPicks.full_positions``); coordinates and scores must be finite;
* files are written atomically (:mod:`cryo3d.io.atomic`), with ``trust_orientation``
  false: cryo3d finds centres, not orientations.

A whole project (config, runs, users, sessions) goes through :mod:`cryo3d.io.copick_project`.

copick's CSV export (``copick export picks --output-format csv``; one file per run, object,
user and session, named ``<run>_<object>_<user>_<session>.csv``) has the columns
``run_name, x, y, z, transform_00 .. transform_33, score[, instance_id]`` with x, y, z in
Angstrom and no class column: :func:`read_copick_csv` takes the class from ``class_name``
or from that file name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryo3d.io.atomic import write_text_atomic
from cryo3d.picks import Picks

__all__ = ["check_one_source", "load_copick_file", "write_copick_file", "store_copick_picks", "is_copick_csv", "copick_file_text", "read_copick_csv", "COPICK_CSV_COLUMNS"]

#: Columns a copick CSV export must have (besides the optional transforms, score, instance_id).
COPICK_CSV_COLUMNS = ("run_name", "x", "y", "z")


def _run_from_path(p: Path) -> str | None:
    """Run name from ``.../ExperimentRuns/<run>/Picks/<file>.json``."""
    parts = p.parts
    if len(parts) >= 3 and parts[-2] == "Picks":
        return parts[-3]
    return None


def _pydantic_message(exc, where: str) -> str:
    """``file: field <loc>: expected ... (got ...)`` for the first error of a pydantic ValidationError."""
    first = exc.errors()[0]
    loc = ".".join(str(x) for x in first.get("loc", ()))
    got = first.get("input")
    got_text = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    more = f" ({exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return (
        f"{where}: field {loc or '(top level)'!r}: {first.get('msg')} (got {got_text[:80]}); expected a copick picks "
        f"file: pickable_object_name, user_id, session_id, points [{{location {{x, y, z}} in Angstrom, "
        f"transformation_ 4x4, instance_id, score}}]{more}"
    )


def check_one_source(sources, user_id, session_id, where: str, user_option: str = "user_id",
                     session_option: str = "session_id") -> None:
    """Refuse picks of several users, or several sessions, unless the selection asked for them.

    ``sources`` holds the ``(user, session)`` of every matched pick set. With no ``user_id``
    filter, more than one user is an error; with no ``session_id`` filter, more than one
    session is. The message lists what there is, so the user can choose.
    """
    pairs = sorted(set((str(u), str(s)) for u, s in sources))
    users = sorted({u for u, _ in pairs})
    listing = "; ".join(f"{u} (sessions {', '.join(s for uu, s in pairs if uu == u)})" for u in users)
    if user_id is None and len(users) > 1:
        raise ValueError(
            f"{where}: picks of {len(users)} users match: {listing}; choose one with {user_option} "
            f"(and {session_option}) instead of merging them"
        )
    sessions = sorted({s for _, s in pairs})
    if session_id is None and len(sessions) > 1:
        raise ValueError(
            f"{where}: picks of {len(sessions)} sessions match: {listing}; choose one with {session_option} "
            "instead of merging them"
        )


def load_copick_file(path: str | os.PathLike) -> tuple[dict, Picks]:
    """Parse one copick picks file with copick's model; return its metadata and its picks.

    Returns:
        meta (dict): ``pickable_object_name``, ``run_name``, ``user_id``, ``session_id`` (str),
            ``trust_orientation`` (bool).
        picks (Picks): One row per point: tomogram = run name, class = object, centre = location +
            translation (Angstrom), score (1.0 when null); ``extra`` holds ``user_id``,
            ``session_id`` (str) and ``instance_id`` (int64).

    Raises:
        ValueError: Not JSON, not an object, no ``points``, a field of the wrong type (copick's model,
            strict), a unit other than Angstrom, non-finite values, no run name. The message
            names the file and the field.
    """
    from copick.models import CopickPicksFile  # lazy: copick is heavy, only copick files need it
    from pydantic import ValidationError  # with copick: its models are pydantic

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: copick picks file not found")
    if p.is_dir():
        raise ValueError(f"{p}: is a folder, expected a copick picks file")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{p}: expected a JSON object with pickable_object_name and points, got {type(doc).__name__}")
    if doc.get("points") is None:
        raise ValueError(
            f"{p}: field 'points' is {'missing' if 'points' not in doc else 'null'}; expected a list of points "
            "(an empty list [] for a file without picks)"
        )
    bits = p.stem.split("_", 2)
    defaults = dict(zip(("user_id", "session_id", "pickable_object_name"), bits)) if len(bits) == 3 else {}
    doc = {**{k: v for k, v in defaults.items() if k not in doc}, **doc}
    try:
        model = CopickPicksFile.model_validate(doc, strict=True)
    except ValidationError as exc:
        raise ValueError(_pydantic_message(exc, str(p))) from None
    if str(model.unit).lower() != "angstrom":
        raise ValueError(f"{p}: field 'unit' is {model.unit!r}; expected 'angstrom'")
    run = model.run_name or _run_from_path(p)
    if not run:
        raise ValueError(f"{p}: field 'run_name' is missing and the path is not ExperimentRuns/<run>/Picks/<file>.json")
    n = len(model.points)
    if n:
        loc = np.array([[q.location.x, q.location.y, q.location.z] for q in model.points], dtype=np.float64)
        shift = np.array([np.zeros(3) if q.transformation_ is None else np.asarray(q.transformation_, np.float64)[:3, 3]
                          for q in model.points])
        score = np.array([1.0 if q.score is None else q.score for q in model.points], dtype=np.float64)
        inst = np.array([0 if q.instance_id is None else q.instance_id for q in model.points], dtype=np.int64)
        xyz = loc + shift
    else:
        xyz, score, inst = np.empty((0, 3)), np.empty(0), np.empty(0, dtype=np.int64)
    bad = ~(np.isfinite(xyz).all(axis=1) & np.isfinite(score))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{p}: field 'points.{i}': location + translation {xyz[i].tolist()} and score {score[i]!r} must be finite"
        )
    meta = {
        "pickable_object_name": model.pickable_object_name,
        "run_name": str(run),
        "user_id": model.user_id,
        "session_id": model.session_id,
        "trust_orientation": bool(model.trust_orientation),
    }
    extra = {
        "user_id": np.full(n, model.user_id, dtype=object),
        "session_id": np.full(n, model.session_id, dtype=object),
        "instance_id": inst,
    }
    picks = Picks(np.full(n, str(run), dtype=object), np.full(n, model.pickable_object_name, dtype=object),
                  xyz, score, extra)
    return meta, picks


def copick_file_text(picks: Picks, run: str, obj: str, user_id: str, session_id: str,
                     trust_orientation: bool = False) -> str:
    """JSON text of one copick picks file (copick's model, serialised by copick's pydantic schema).

    ``location`` holds the centre (identity transformation), ``instance_id`` comes from
    ``picks.extra["instance_id"]`` when it holds integers (else 0).
    """
    from copick.models import CopickPicksFile  # lazy: copick is heavy, only copick files need it

    if not np.isfinite(picks.xyz).all() or not np.isfinite(picks.score).all():
        raise ValueError(f"copick run {run!r}, object {obj!r}: coordinates and scores must be finite")
    inst = picks.extra.get("instance_id")
    try:
        inst = np.zeros(len(picks), np.int64) if inst is None else np.asarray(inst).astype(np.int64)
    except (TypeError, ValueError):
        inst = np.zeros(len(picks), np.int64)
    points = [{"location": {"x": x, "y": y, "z": z}, "instance_id": i, "score": s}
              for (x, y, z), s, i in zip(picks.xyz.tolist(), picks.score.tolist(), inst.tolist())]
    model = CopickPicksFile.model_validate({
        "pickable_object_name": obj, "user_id": user_id, "session_id": session_id, "run_name": run,
        "voxel_spacing": None, "unit": "angstrom", "points": points, "trust_orientation": bool(trust_orientation),
    })
    return model.model_dump_json()


def write_copick_file(path: str | os.PathLike, picks: Picks, run: str, obj: str, user_id: str, session_id: str,
                      trust_orientation: bool = False) -> None:
    """Write one copick picks file atomically (see :func:`copick_file_text`)."""
    write_text_atomic(path, copick_file_text(picks, run, obj, user_id, session_id, trust_orientation))


def is_copick_csv(header: list[str]) -> bool:
    """A CSV header of copick's export: ``run_name, x, y, z, ...`` and no ``tomo``/``class``."""
    h = [c.strip() for c in header]
    return all(c in h for c in COPICK_CSV_COLUMNS) and "tomo" not in h


def read_copick_csv(path: str | os.PathLike, class_name: str | None = None) -> Picks:
    """Read picks exported by ``copick export picks --output-format csv``.

    Args:
        path (path-like): CSV with ``run_name, x, y, z`` (Angstrom), optionally ``transform_00`` ..
            ``transform_33``, ``score`` and ``instance_id``.
        class_name (str, optional): Class of every row. By default the object in the file name
            ``<run>_<object>_<user>_<session>.csv`` (copick's export naming).

    Returns:
        Picks: Centres = ``(x, y, z)`` + transformation translation, in Angstrom.
    """
    p = Path(path)
    where = str(p)
    try:
        df = pd.read_csv(p, dtype={"run_name": str})
    except Exception as exc:  # pandas raises several types for a broken file
        raise ValueError(f"{p}: not a readable CSV file ({type(exc).__name__}: {exc})") from None
    missing = [c for c in COPICK_CSV_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{p}: missing column(s) {missing}; a copick CSV export has run_name,x,y,z,transform_00..33,score")

    def numbers(col: str, what: str) -> np.ndarray:
        vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{where}, line {i + 2}, column {col!r}: expected {what}, got {df[col].iloc[i]!r}")
        return vals

    runs = df["run_name"].astype(str).str.strip().to_numpy(dtype=object)
    empty = [i for i, r in enumerate(runs.tolist()) if not r or r == "nan"]
    if empty:
        raise ValueError(f"{where}, line {empty[0] + 2}, column 'run_name': expected a run name, got an empty cell")
    xyz = np.stack([numbers(c, "a finite number of Angstrom") for c in ("x", "y", "z")], axis=-1).reshape(-1, 3)
    for i, a in enumerate("xyz"):
        col = f"transform_{i}3"
        if col in df.columns:
            xyz[:, i] += numbers(col, f"the {a} translation in Angstrom")
    score = numbers("score", "a finite number") if "score" in df.columns else None
    if class_name is None:
        names = sorted(set(runs.tolist()))
        stem = p.stem
        if len(names) == 1 and stem.startswith(names[0] + "_") and stem[len(names[0]) + 1:].count("_") >= 2:
            class_name = stem[len(names[0]) + 1:].rsplit("_", 2)[0]
        else:
            raise ValueError(
                f"{p}: a copick CSV has no class column and the file name is not <run>_<object>_<user>_<session>.csv; "
                "give the class (class_name=..., --class-name on the command line)"
            )
    extra = {}
    if "instance_id" in df.columns:
        extra["instance_id"] = numbers("instance_id", "an integer").astype(np.int64)
    return Picks(runs, np.full(len(df), str(class_name), dtype=object), xyz, score, extra)


def store_copick_picks(picks_obj: Any, points: np.ndarray, scores: np.ndarray) -> None:
    """Set a copick pick set's points and write its file whole (temporary file, fsync, rename).

    copick's own ``store`` truncates the file and then writes it, so a kill in between leaves
    an empty or half file. On a local project the file is written here through
    :func:`cryo3d.io.atomic.write_text_atomic` (after a kill it is the old or the new one);
    other file systems (fsspec remotes, whose writes are whole objects) go through copick.

    Args:
        picks_obj: A ``copick`` ``CopickPicks`` (from ``new_picks`` or ``get_picks``).
        points (ndarray): ``[N, 3]`` Angstrom.
        scores (ndarray): ``[N]``.
    """
    fs = getattr(picks_obj, "fs", None)
    protocol = getattr(fs, "protocol", ())
    local = "file" in ((protocol,) if isinstance(protocol, str) else tuple(protocol))
    if not local:
        picks_obj.from_numpy(points, scores=scores)
        return
    def _store_whole() -> None:
        write_text_atomic(picks_obj.path, json.dumps(picks_obj.meta.model_dump(), indent=4), durable=True,
                          keep_suffix=False)  # copick lists Picks/*.json: a left temporary is not a pick set

    picks_obj._store = _store_whole  # instead of copick's truncate-then-write, for this one call
    try:
        picks_obj.from_numpy(points, scores=scores)
    finally:
        del picks_obj._store  # back to copick's method

"""copick picks as files and folders: one JSON file, or every picks file under a copick root.

One file per run, user, session and object,
``ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json``; a point's centre is its
``location`` plus the translation of its ``transformation_``. Parsed and serialised by
copick's own model (:mod:`cryo3d.io.copick_files`); a copick *project* (config, runs,
OME-Zarr tomograms, users and sessions) is :mod:`cryo3d.io.copick_project`. Writing is
atomic.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

from cryo3d.io.atomic import write_text_atomic
from cryo3d.io.copick_files import check_one_source, copick_file_text, load_copick_file
from cryo3d.picks import Picks

__all__ = ["check_copick_names", "copick_picks_path", "read_copick", "read_copick_json", "write_copick", "write_copick_json"]

def read_copick_json(path: str | os.PathLike) -> Picks:
    """Read one copick picks file.

    Args:
        path (path-like): ``ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json`` holding
            ``pickable_object_name``, ``run_name`` (inferred from the path when missing),
            ``user_id``, ``session_id`` and ``points``; any further keys are ignored.

    Returns:
        Picks: One row per point: tomogram = run name, class = ``pickable_object_name``, centre
            = ``location + transformation_[:3, 3]`` in Angstrom, score (1.0 when missing).
            ``extra`` holds ``user_id``, ``session_id`` (str) and ``instance_id`` (int64).
    """
    return load_copick_file(Path(path))[1]


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

    Args:
        root (path-like): copick overlay root (the folder holding ``ExperimentRuns``), or the
            ``ExperimentRuns`` folder itself.
        user_id, session_id (str or iterable of str, optional):
            Keep only files of these users / sessions (as written inside each file).
        objects (iterable of str, optional): Keep only these ``pickable_object_name`` values.

    Returns:
        Picks: All matching picks, files in sorted path order. Empty (with a warning) if no
            file matches.

    Raises:
        ValueError: Picks of several users (or of several sessions of one user) match and no
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
    users, sessions, objs = _as_filter(user_id), _as_filter(session_id), _as_filter(objects)
    parts, sources = [], []
    for f in sorted(runs.glob("*/Picks/*.json")):
        meta, picks = load_copick_file(f)
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


def check_copick_names(runs: Iterable[str] = (), objects: Iterable[str] = (), user_id: str | None = None,
                       session_id: str | None = None) -> None:
    """Raise ``ValueError`` (naming the value) for any name copick cannot store in a file name.

    Commands call it before any work, so a bad run, object, user or session name is refused
    before inference rather than after it.
    """
    if user_id is not None:
        _check_copick_name(user_id, "user_id", allow_underscore=False)
    if session_id is not None:
        _check_copick_name(session_id, "session_id", allow_underscore=False)
    for run in runs:
        _check_copick_name(run, "run name (tomogram)", allow_underscore=True)
    for obj in objects:
        _check_copick_name(obj, "object name (class)", allow_underscore=True)


def copick_picks_path(root: str | os.PathLike, run: str, user_id: str, session_id: str, obj: str) -> Path:
    """``root/ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json``."""
    return Path(root) / "ExperimentRuns" / run / "Picks" / f"{user_id}_{session_id}_{obj}.json"


def _copick_text(picks: Picks, run: str, obj: str, user_id: str, session_id: str) -> str:
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

    Args:
        root (path-like): copick overlay root (created if missing).
        picks (Picks): Tomogram names become run names, class names object names.
        user_id, session_id (str): Written into every file and its name (no ``_``, spaces or path separators).

    Returns:
        list of str: Paths written, in order of first appearance of (run, object).
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

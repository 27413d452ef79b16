"""A copick project as cryo3d's data source and destination, through the copick library.

A project is a config JSON (``copick.from_file``): ``pickable_objects`` (name, radius,
label), runs, tomograms as OME-Zarr under ``VoxelSpacing<s>/<type>.zarr``, and picks by
user and session. This module turns a selection of it into cryo3d's parts and back:

* :func:`project_particles` -- the :class:`~cryo3d.particles.ParticleSet` from the
  particle objects (``is_particle``), in label order, radius in Angstrom;
* :func:`project_tomograms` -- lazily opened :class:`~cryo3d.io.tomogram.Tomogram` of the
  chosen runs at one voxel spacing and tomogram type (named by run);
* :func:`project_picks` -- picks of one user and session (several without a filter are an
  error that lists them, never a silent merge);
* :func:`write_project_picks` -- predictions as a user and session of their own, through
  copick's ``new_picks``, with scores and ``trust_orientation`` false; picks that are there
  already are never replaced unless asked, and other users' picks are never touched;
* :func:`training_inputs` -- what the training bundle needs (``ensure_data`` dispatches here).

Every selector that is left out is resolved when the project holds exactly one choice, and
is an error listing the choices otherwise. Tomograms are read through copick's own storage
(fsspec: local, S3, SSH), by every command (:func:`project_tomogram_sources` for ``predict``,
which also fingerprints them where they live). Picks as
the CZII challenge shipped them (``Picks/<object>.json``) are read as they are
(:mod:`cryo3d.io.copick_shipped`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cryo3d import coords
from cryo3d.io.copick_files import check_one_source, load_copick_file, store_copick_picks
from cryo3d.io.copick_tomogram import CopickTomogramSource, copick_tomogram_source, read_copick_tomogram
from cryo3d.io.picks_csv import write_picks_csv
from cryo3d.particles import CZII_PARTICLES, ParticleClass, ParticleSet
from cryo3d.picks import Picks

log = logging.getLogger(__name__)

__all__ = [
    "open_project",
    "project_particles",
    "select_runs",
    "project_tomogram_sources",
    "project_tomograms",
    "project_picks",
    "check_writable",
    "write_project_picks",
    "training_inputs",
    "tomogram_sizes",
]


def open_project(config: str | os.PathLike | Any) -> Any:
    """The copick root of a config file (``copick.from_file``); a root object passes through.

    Raises:
        FileNotFoundError: The config file does not exist.
        ValueError: It is not a copick config (naming the file and copick's complaint).
    """
    if not isinstance(config, (str, os.PathLike)):
        return config
    import copick  # lazy: copick is heavy, only a project needs it

    p = Path(config)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: copick config not found")
    try:
        root = copick.from_file(str(p))
    except Exception as exc:  # json, pydantic and fsspec errors
        raise ValueError(f"{p}: not a usable copick config ({type(exc).__name__}: {str(exc)[:300]})") from None
    root._cryo3d_config = str(p)  # for messages
    # copick (heavy; it also installs a rich handler on the root logger) only when a project is opened
    from cryo3d.io.copick_shipped import install_shipped_picks_view

    return install_shipped_picks_view(root)  # the challenge's Picks/<object>.json, read as shipped


def _where(root: Any) -> str:
    return getattr(root, "_cryo3d_config", "copick project")


def _the_one(have: list, several: str, none: str) -> Any:
    """The single element of ``have``; else a ``ValueError``: ``several`` when it holds more, ``none`` when empty."""
    if len(have) != 1:
        raise ValueError(several if have else none)
    return have[0]


def project_particles(config: Any, weights: ParticleSet | None = None) -> ParticleSet:
    """Particle classes from the project's ``pickable_objects`` with ``is_particle`` true.

    Ordered by ``label`` (copick's numeric id; the config's order among equal labels), so
    class ids follow the project's labels. Each needs a ``radius`` (Angstrom).

    Args:
        config (path or copick root): The project.
        weights (ParticleSet, optional): Where the metric weights come from (copick objects carry
            none), matched by name; classes it does not name weigh 1. Default: the CZII
            challenge's weights for classes named as in the challenge (logged), 1 for others.
    """
    root = open_project(config)
    objs = [o for o in root.pickable_objects if o.is_particle]
    if not objs:
        raise ValueError(f"{_where(root)}: field 'pickable_objects' has no object with is_particle true")
    no_radius = [o.name for o in objs if o.radius is None or not np.isfinite(o.radius) or o.radius <= 0]
    if no_radius:
        raise ValueError(
            f"{_where(root)}: pickable_objects {no_radius} have no radius; expected 'radius' > 0 in Angstrom "
            "(it sets the matching and peak distances)"
        )
    objs = sorted(objs, key=lambda o: (o.label if o.label is not None else 0))
    source = weights if weights is not None else CZII_PARTICLES
    by_name = dict(zip(source.names, source.weights.tolist()))
    matched = [o.name for o in objs if o.name in by_name]
    if weights is None and matched:
        log.info("%s: metric weights of the CZII challenge for %s (copick objects carry none; give --particles "
                 "to choose others)", _where(root), {n: by_name[n] for n in matched})
    return ParticleSet(tuple(ParticleClass(o.name, float(o.radius), float(by_name.get(o.name, 1.0))) for o in objs))


def select_runs(config: Any, runs: Sequence[str] | str | None = None) -> list[Any]:
    """The project's runs, or those named (in the given order); unknown names are an error."""
    root = open_project(config)
    all_runs = {r.name: r for r in root.runs}
    if not all_runs:
        raise ValueError(f"{_where(root)}: the project has no runs")
    if runs is None:
        return [all_runs[n] for n in sorted(all_runs)]
    names = [runs] if isinstance(runs, str) else [str(r) for r in runs]
    unknown = [n for n in names if n not in all_runs]
    if unknown:
        raise ValueError(f"{_where(root)}: run(s) {unknown} are not in the project; it has {sorted(all_runs)}")
    return [all_runs[n] for n in names]


def _chosen_tomograms(
    config: Any,
    tomo_type: str | None = None,
    voxel_spacing: float | None = None,
    runs: Sequence[str] | None = None,
) -> list[tuple[Any, Any]]:
    """``(run, copick tomogram)`` of the chosen runs at one spacing and type (run order).

    Args:
        config (path or copick root): the project.
        tomo_type (str, optional): e.g. ``wbp``, ``denoised``; needed when the runs hold several types.
        voxel_spacing (float, optional): Angstrom per voxel of the tomograms to read (a copick
            ``VoxelSpacing``); needed when the runs hold several.
        runs (names, optional): Default: every run.

    Raises:
        ValueError: Several spacings or types without a choice (listing them), or a run without the
            chosen tomogram (listing what it has).
    """
    root = open_project(config)
    where = _where(root)
    chosen = select_runs(root, runs)
    if voxel_spacing is None:
        have = sorted({vs.voxel_size for r in chosen for vs in r.voxel_spacings if vs.tomograms})
        voxel_spacing = _the_one(
            have, f"{where}: tomograms at {len(have)} voxel spacings {have} Angstrom; choose one "
            "(--copick-voxel-spacing / copick_voxel_spacing)", f"{where}: no run holds a tomogram")
    if tomo_type is None:
        have_t = sorted({t.tomo_type for r in chosen for vs in r.voxel_spacings
                         if np.isclose(vs.voxel_size, voxel_spacing) for t in vs.tomograms})
        tomo_type = _the_one(
            have_t, f"{where}: {len(have_t)} tomogram types {have_t} at {voxel_spacing} Angstrom; choose one "
            "(--tomo-type / tomo_type)", f"{where}: no tomogram at voxel spacing {voxel_spacing} Angstrom")
    out = []
    for r in chosen:
        vs = r.get_voxel_spacing(float(voxel_spacing))
        tomos = vs.get_tomograms(tomo_type) if vs is not None else []
        if not tomos:
            have = sorted((v.voxel_size, t.tomo_type) for v in r.voxel_spacings for t in v.tomograms)
            raise ValueError(
                f"{where}: run {r.name!r} has no {tomo_type!r} tomogram at {voxel_spacing} Angstrom; it has "
                f"{[f'{t}@{s:g}' for s, t in have] or 'none'}"
            )
        out.append((r, tomos[0]))
    return out


def project_tomogram_sources(
    config: Any,
    tomo_type: str | None = None,
    voxel_spacing: float | None = None,
    runs: Sequence[str] | None = None,
    trust_spacing: str | None = None,
    spacing_override: float | None = None,
) -> list[CopickTomogramSource]:
    """The chosen runs' tomograms as ``cryo3d predict`` takes them, on any copick storage (local, S3, SSH).

    Selection and spacing rule as in :func:`project_tomograms`; each is opened now (metadata only, so a
    spacing error comes before any work) and read, values checked, when its turn comes
    (:meth:`~cryo3d.io.copick_tomogram.CopickTomogramSource.read`).

    Args:
        spacing_override (float, optional): Angstrom per voxel for every tomogram (``--voxel-spacing``),
            whatever the OME-Zarr scale and the folder say.

    Raises:
        ValueError: As :func:`project_tomograms`.
    """
    root = open_project(config)
    return [copick_tomogram_source(tomo, r.name, trust_spacing, spacing_override)
            for r, tomo in _chosen_tomograms(root, tomo_type, voxel_spacing, runs)]


def project_tomograms(config: Any, tomo_type: str | None = None, voxel_spacing: float | None = None,
                      runs: Sequence[str] | None = None, check_values: bool = True,
                      trust_spacing: str | None = None) -> list:
    """:class:`~cryo3d.io.tomogram.Tomogram` of the chosen runs, opened lazily (``data`` is a zarr array).

    Read through copick's storage (local, S3, SSH). When the OME-Zarr scale and the copick
    folder (``VoxelSpacing<s>``) differ, a relative difference up to 2% is the folder name's
    rounding (a warning; the OME-Zarr scale is used), a larger one an error unless
    ``trust_spacing`` names which to use (:func:`cryo3d.io.copick_tomogram.read_copick_tomogram`).

    Args:
        trust_spacing (str, optional): ``zarr`` (the OME-Zarr scale) or ``copick`` (the folder's
            spacing), used whatever the difference.

    Raises:
        ValueError: An unknown ``trust_spacing``, or the two spacings differ by more than rounding
            and ``trust_spacing`` is not given.
    """
    root = open_project(config)
    return [read_copick_tomogram(tomo, r.name, check_values, trust_spacing)
            for r, tomo in _chosen_tomograms(root, tomo_type, voxel_spacing, runs)]


def tomogram_sizes(tomograms: Iterable[Any]) -> dict[str, tuple[float, float, float]]:
    """``{name: (X, Y, Z)}`` extents in Angstrom (shape x spacing), as RELION 5 centring needs."""
    return {t.name: tuple(float(coords.voxels_to_length(n, t.voxel_spacing)) for n in t.shape[::-1]) for t in tomograms}


def project_picks(
    config: Any,
    user_id: str | None = None,
    session_id: str | None = None,
    runs: Sequence[str] | None = None,
    objects: Sequence[str] | None = None,
    user_option: str = "--user",
    session_option: str = "--session",
    allow_empty: bool = False,
) -> Picks:
    """Picks of one user and session in the chosen runs, through copick's API.

    Args:
        user_id, session_id (str, optional):
            Which picks; may be left out only when the matching picks are of one user (one
            session).
        runs (names, optional): Default: every run.
        objects (names, optional): Default: every particle object of the project.
        user_option, session_option (str): How the caller names the two selectors (in the error message).
        allow_empty (bool): If False, no matching picks at all is an error.

    Returns:
        Picks: Tomogram = run name, class = object, centre = location + translation (Angstrom),
            score; ``extra`` holds ``user_id``, ``session_id`` and ``instance_id``.
    """

    root = open_project(config)
    where = _where(root)
    user_id = None if user_id is None else str(user_id)
    session_id = None if session_id is None else str(session_id)
    objs = list(objects) if objects is not None else project_particles(root).names
    parts, sources = [], []
    for r in select_runs(root, runs):
        for cp in r.get_picks(object_name=objs, user_id=user_id, session_id=session_id):
            sources.append((cp.user_id, cp.session_id))
            parts.append(cp)
    check_one_source(sources, user_id, session_id, where, user_option, session_option)
    if not parts:
        if allow_empty:
            return Picks.empty()
        raise ValueError(
            f"{where}: no picks of user {user_id!r}, session {session_id!r} for objects {objs} in runs "
            f"{[r.name for r in select_runs(root, runs)]}"
        )
    return Picks.concat([_to_picks(cp, where) for cp in parts])


def _to_picks(cp: Any, where: str) -> Picks:
    """One copick pick set as Picks (copick's ``full_positions``, ``scores``, ``instance_ids``)."""
    from pydantic import ValidationError  # with copick: its models are pydantic

    try:
        cp.load()
        xyz = cp.full_positions().reshape(-1, 3)
        score = cp.scores()
        inst = cp.instance_ids()
    except (ValidationError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{where}: picks {cp.user_id}_{cp.session_id}_{cp.pickable_object_name} of run {cp.run.name!r} are not "
            f"readable ({type(exc).__name__}: {str(exc)[:300]})"
        ) from None
    n = len(xyz)
    path = getattr(cp, "path", None)
    if n == 0 and isinstance(path, str) and os.path.isfile(path):

        load_copick_file(path)  # copick reads a file without 'points' as empty: that is an error here
    bad = ~(np.isfinite(xyz).all(axis=1) & np.isfinite(score))
    if bad.any():
        raise ValueError(f"{where}: picks {cp.user_id}_{cp.session_id}_{cp.pickable_object_name} of run "
                         f"{cp.run.name!r}: point {int(np.flatnonzero(bad)[0])} is not finite")
    extra = {"user_id": np.full(n, cp.user_id, dtype=object), "session_id": np.full(n, cp.session_id, dtype=object),
             "instance_id": inst.astype(np.int64)}
    return Picks(np.full(n, cp.run.name, dtype=object), np.full(n, cp.pickable_object_name, dtype=object),
                 xyz, score, extra)


def check_writable(config: Any, user_id: str, session_id: str, runs: Sequence[str] | None = None,
                   objects: Sequence[str] | None = None, overwrite: bool = False) -> list[Any]:
    """Refuse, before any work, to write picks where the project holds some of that user and session.

    Also checks the names (copick's rules, no ``_``) and that the runs exist. Returns the runs.
    """
    from copick.util.escape import sanitize_name  # lazy: copick is heavy

    root = open_project(config)
    where = _where(root)
    for value, field in ((user_id, "user"), (session_id, "session")):
        if not value or sanitize_name(str(value)) != str(value) or "_" in str(value):
            raise ValueError(
                f"copick {field} {value!r} is not usable: copick names must be non-empty, without '_' (it separates "
                "user, session and object), spaces or path separators"
            )
    objs = list(objects) if objects is not None else project_particles(root).names
    chosen = select_runs(root, runs)
    exist = [f"{r.name}/{p.user_id}_{p.session_id}_{p.pickable_object_name}"
             for r in chosen for p in r.get_picks(object_name=objs, user_id=str(user_id), session_id=str(session_id))]
    if exist and not overwrite:
        raise ValueError(
            f"{where}: the project already holds picks of user {user_id!r}, session {session_id!r}: "
            f"{exist[:6]}{' ...' if len(exist) > 6 else ''}; choose another session (--session) or pass "
            "--overwrite to replace them"
        )
    return chosen


def _pick_set(run: Any, obj: str, user_id: str, session_id: str) -> Any:
    """The run's pick set of ``obj`` by ``user_id``/``session_id``; a new one is not stored yet
    (copick's ``new_picks`` writes an empty file first, which a kill would leave behind)."""
    found = run.get_picks(object_name=obj, user_id=user_id, session_id=session_id)
    if found:
        return found[0]
    from copick.models import CopickPicksFile  # lazy: copick is heavy

    return run._picks_factory()(run=run, file=CopickPicksFile(pickable_object_name=obj, user_id=user_id,
                                                               session_id=session_id, run_name=run.name))


def write_project_picks(
    config: Any,
    picks: Picks,
    user_id: str = "cryo3d",
    session_id: str = "0",
    runs: Sequence[str] | None = None,
    objects: Sequence[str] | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Write picks into the project as ``user_id``/``session_id``, through copick's ``new_picks``.

    One pick set per run and object (empty when nothing was found, so a reader can tell
    "searched, none" from "not searched"), each point with its score, identity
    transformation and ``trust_orientation`` false (cryo3d finds centres, not
    orientations). Nothing is written when any of these pick sets exists already and
    ``overwrite`` is False: the error names them. Picks of other users or sessions are
    never touched.

    Args:
        picks (Picks): Tomogram names must be runs of the project, classes its objects.
        runs (names, optional): The runs searched (default: the runs in ``picks``).
        objects (names, optional): The objects searched (default: the particle objects of the project).

    Returns:
        list of str: ``<run>/<user>_<session>_<object>`` of every pick set written.
    """
    root = open_project(config)
    where = _where(root)
    user_id, session_id = str(user_id), str(session_id)
    objs = list(objects) if objects is not None else project_particles(root).names
    unknown = sorted(set(picks.classes) - set(objs))
    if unknown:
        raise ValueError(f"{where}: classes {unknown} are not particle objects of the project ({objs})")
    names = list(dict.fromkeys(list(runs) if runs is not None else picks.tomograms))
    chosen = check_writable(root, user_id, session_id, names, objs, overwrite)
    written = []
    for r in chosen:
        in_run = picks.for_tomo(r.name)
        for obj in objs:
            sub = in_run.for_class(obj)
            cp = _pick_set(r, obj, user_id, session_id)
            cp.meta.trust_orientation = False
            cp.meta.run_name = r.name
            store_copick_picks(cp, sub.xyz.reshape(-1, 3), sub.score)  # whole: old or new after a kill
            written.append(f"{r.name}/{user_id}_{session_id}_{obj}")
    return written


def training_inputs(
    config: Any,
    dataset_dir: str | os.PathLike,
    tomo_type: str | None = None,
    voxel_spacing: float | None = None,
    gt_user: str | None = None,
    gt_session: str | None = None,
    runs: Sequence[str] | None = None,
    particles: ParticleSet | None = None,
    trust_spacing: str | None = None,
) -> tuple[dict, Picks, ParticleSet, str]:
    """Tomograms, ground truth, particle set and a ground-truth CSV for the training bundle.

    The ground truth of ``gt_user``/``gt_session`` is also written (atomically) as
    ``dataset_dir/ground_truth_<user>_<session>.csv`` (the picks table), which the
    validation metric reads.

    Args:
        particles (ParticleSet, optional): Where the metric weights come from (by name; see
            :func:`project_particles`).
        trust_spacing (str, optional): See :func:`project_tomograms`.

    Returns:
        (tomograms by name, picks, particles, ground-truth CSV path).
    """

    root = open_project(config)
    particles = project_particles(root, particles)
    voxel_spacing = None if voxel_spacing is None else float(voxel_spacing)
    runs = None if runs is None else ([runs] if isinstance(runs, str) else [str(r) for r in runs])
    tomos = {t.name: t for t in project_tomograms(root, tomo_type, voxel_spacing, runs, trust_spacing=trust_spacing)}
    picks = project_picks(root, gt_user, gt_session, list(tomos), particles.names,
                          user_option="gt_user", session_option="gt_session")
    user = "-".join(sorted(set(picks.extra["user_id"].tolist())))
    session = "-".join(sorted(set(picks.extra["session_id"].tolist())))
    gt = Path(dataset_dir) / f"ground_truth_{user}_{session}.csv"
    write_picks_csv(gt, Picks(picks.tomo, picks.cls, picks.xyz, picks.score))
    return tomos, picks, particles, str(gt)

"""The copick side of ``cryo3d prepare``, ``predict`` and ``evaluate``: their inputs and outputs.

:mod:`cryo3d.cli` adds the project options (``--copick-config`` and its selectors); the
commands call in here when ``--copick-config`` is given; the project itself is read and
written by :mod:`cryo3d.io.copick_project`. Selectors left out are resolved when the project
holds one choice, an error listing the choices otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

from cryo3d.io.copick_project import (
    check_writable,
    project_particles,
    project_picks,
    project_tomogram_sources,
    project_tomograms,
    tomogram_sizes,
    write_project_picks,
)
from cryo3d.io.copick_tomogram import CopickTomogramSource, input_name
from cryo3d.io.pick_formats import read_picks
from cryo3d.io.tomogram import find_tomograms, read_tomogram
from cryo3d.particles import load_particles

__all__ = ["prepare_inputs", "predict_tomograms", "check_predictions_writable", "write_predictions", "evaluate_inputs",
           "command_particles", "report_inputs", "view_inputs"]


def command_particles(a: argparse.Namespace) -> Any:
    """``--particles`` (a built-in set's name or a file); with ``--copick-config`` the project's objects,
    their metric weights from ``--particles`` by name (default: the CZII challenge's, where names match)."""
    cfg = getattr(a, "copick_config", None)
    given = getattr(a, "particles", None)
    if cfg is None:
        return load_particles(given)
    return project_particles(cfg, load_particles(given) if given else None)


def _project_tomograms(a: argparse.Namespace, check_values: bool = True) -> list:
    return project_tomograms(a.copick_config, a.tomo_type, a.copick_voxel_spacing, a.runs,
                             check_values=check_values, trust_spacing=getattr(a, "trust_spacing", None))


def prepare_inputs(a: argparse.Namespace) -> tuple[list, Any, Any]:
    """Tomograms, picks and particles for ``cryo3d prepare --copick-config``.

    ``--tomograms``, ``--picks`` and ``--particles``, when given, replace the project's.
    """
    cfg = a.copick_config
    particles = load_particles(a.particles) if a.particles else project_particles(cfg)
    if a.tomograms:
        tomos = [read_tomogram(f, voxel_spacing=a.voxel_spacing) for f in find_tomograms(a.tomograms)]
    else:
        tomos = _project_tomograms(a)
    if a.picks:
        spacing = a.picks_voxel_spacing if a.picks_voxel_spacing is not None else a.voxel_spacing
        picks = read_picks(a.picks, voxel_spacing=spacing, particles=particles, class_name=a.class_name,
                           tomogram_sizes=tomogram_sizes(tomos), tomograms_star=a.tomograms_star)
    else:
        picks = project_picks(cfg, a.gt_user, a.gt_session, [t.name for t in tomos], particles.names,
                              user_option="--gt-user", session_option="--gt-session")
    return tomos, picks, particles


def predict_tomograms(a: argparse.Namespace) -> list[CopickTomogramSource | str]:
    """The tomograms ``cryo3d predict --copick-config`` runs on (plus any given files).

    The project's are read where they live (local, S3, SSH: copick's storage), each opened now
    (a spacing error comes before any inference) with ``--trust-spacing`` and ``--voxel-spacing``.
    """
    sources = project_tomogram_sources(a.copick_config, a.tomo_type, a.copick_voxel_spacing, a.runs,
                                       trust_spacing=getattr(a, "trust_spacing", None),
                                       spacing_override=getattr(a, "voxel_spacing", None))
    return sources + (find_tomograms(a.tomograms) if a.tomograms else [])


def check_predictions_writable(a: argparse.Namespace, paths: list) -> None:
    """Refuse before inference when the project already holds picks of ``--user``/``--session``."""
    check_writable(a.copick_config, a.user_id, a.session_id, [input_name(p) for p in paths],
                   overwrite=a.overwrite)


def write_predictions(a: argparse.Namespace, picks: Any, paths: list) -> list[str]:
    """Write ``predict``'s picks into the project as ``--user``/``--session`` (copick's API)."""
    return write_project_picks(a.copick_config, picks, a.user_id, a.session_id,
                               runs=[input_name(p) for p in paths], overwrite=a.overwrite)


def _report_tomogram_sizes(a: argparse.Namespace) -> dict | None:
    """RELION 5 tomogram sizes for ``evaluate`` from ``--tomograms``: a ``.star`` there is taken as
    ``--tomograms-star`` (and removed from the report's tomograms); tomogram files give their extents
    (header and shape only, no values read)."""
    specs = list(getattr(a, "report_tomograms", None) or [])
    stars = [s for s in specs if str(s).lower().endswith(".star")]
    if stars:
        if len(stars) > 1 or a.tomograms_star:
            raise ValueError(f"evaluate: give one RELION 5 tomograms.star (--tomograms-star), got {stars}")
        a.tomograms_star, a.report_tomograms = stars[0], [s for s in specs if s not in stars] or None
        specs = a.report_tomograms or []
    if not specs or not any(str(f).lower().endswith(".star") for f in (a.pred, a.gt) if f):
        return None
    return tomogram_sizes(read_tomogram(f, check_finite=False, check_constant=False) for f in find_tomograms(specs))


def evaluate_inputs(a: argparse.Namespace) -> tuple[Any, Any, Any, list[str] | None]:
    """Predictions, ground truth, particles and runs for ``cryo3d evaluate``.

    Without ``--copick-config`` the two files are read (with ``--voxel-spacing`` for pixel
    STAR). With it, a missing prediction file means the project's picks of
    ``--user``/``--session``, a missing ground-truth file those of ``--gt-user``/``--gt-session``;
    RELION 5 STAR files get their tomogram sizes from the project.
    """
    cfg = getattr(a, "copick_config", None)
    pred_sel = dict(user_id=a.user_id, session_id=a.session_id)  # for a copick root folder given as a file
    gt_sel = dict(user_id=a.gt_user, session_id=a.gt_session)
    if cfg is None:
        if not a.pred or not a.gt:
            raise ValueError("evaluate: give PRED and GT picks files, or --copick-config with --user/--session "
                             "and --gt-user/--gt-session")
        ps = load_particles(a.particles)
        sizes = _report_tomogram_sizes(a)  # first: a .star among --tomograms becomes --tomograms-star
        kw = dict(voxel_spacing=a.voxel_spacing, particles=ps, class_name=a.class_name,
                  tomograms_star=a.tomograms_star, tomogram_sizes=sizes)
        return read_picks(a.pred, **kw, **pred_sel), read_picks(a.gt, **kw, **gt_sel), ps, None

    ps = command_particles(a)
    sizes = None
    if any(str(f).lower().endswith(".star") for f in (a.pred, a.gt) if f):
        sizes = tomogram_sizes(_project_tomograms(a, check_values=False))
    kw = dict(voxel_spacing=a.voxel_spacing, particles=ps, class_name=a.class_name, tomogram_sizes=sizes,
              tomograms_star=a.tomograms_star)
    pred = read_picks(a.pred, **kw, **pred_sel) if a.pred else project_picks(
        cfg, a.user_id, a.session_id, a.runs, ps.names, allow_empty=True)
    gt = read_picks(a.gt, **kw, **gt_sel) if a.gt else project_picks(
        cfg, a.gt_user, a.gt_session, a.runs, ps.names, user_option="--gt-user", session_option="--gt-session")
    return pred, gt, ps, a.runs


def _project_picks_if_any(a: argparse.Namespace, user: str | None, session: str | None, runs: list[str],
                          names: list[str], what: str) -> Any:
    """The project's picks of one user and session, or None when it holds none."""
    picks = project_picks(a.copick_config, user, session, runs, names, user_option=f"--{what}user",
                          session_option=f"--{what}session", allow_empty=True)
    return picks if len(picks) else None


def _picks_arg(path: Any, user: str | None, session: str | None) -> Any:
    """A copick root folder read with its user/session selection; other files stay paths (the report
    reads them with the tomograms' sizes, for STAR)."""
    from pathlib import Path

    if path is not None and Path(path).is_dir():
        return read_picks(path, user_id=user, session_id=session)
    return path


def report_inputs(a: argparse.Namespace) -> tuple[list, Any, Any, Any]:
    """Tomograms, picks, ground truth and particles of ``cryo3d report``.

    Without ``--copick-config``: ``INPUTS`` are tomograms then one picks file (returned as paths for
    :func:`cryo3d.commands.report.report_files`). With it: the project's tomograms (opened where they
    live, as :class:`~cryo3d.io.tomogram.Tomogram`), and picks of
    ``--user``/``--session`` unless a picks file is the one input; ``--gt`` or the project's picks of
    ``--gt-user``/``--gt-session`` when it holds any.
    """
    ps = command_particles(a)
    gt = _picks_arg(a.gt, a.gt_user, a.gt_session)
    if a.copick_config is None:
        if len(a.inputs) < 2:
            raise ValueError("report: give tomograms and then a picks file (or --copick-config for a project's)")
        return a.inputs[:-1], _picks_arg(a.inputs[-1], a.user_id, a.session_id), gt, ps
    if len(a.inputs) > 1:
        raise ValueError("report: with --copick-config the tomograms come from the project; give at most a picks file")
    tomos = _project_tomograms(a)
    runs = [t.name for t in tomos]
    picks = (_picks_arg(a.inputs[0], a.user_id, a.session_id) if a.inputs
             else project_picks(a.copick_config, a.user_id, a.session_id, runs, ps.names))
    if gt is None:
        gt = _project_picks_if_any(a, a.gt_user, a.gt_session, runs, ps.names, "gt-")
    return tomos, picks, gt, ps


def view_inputs(a: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """Tomogram, picks, ground truth (each None when absent) and particles of ``cryo3d view``.

    With ``--copick-config`` the tomogram is that of the one run chosen (``--runs``, or the
    project's only one) and picks default to the project's of ``--user``/``--session`` and
    ``--gt-user``/``--gt-session``.
    """
    ps = command_particles(a)
    if a.copick_config is None:
        if not a.tomogram:
            raise ValueError("view: give a tomogram file (or --copick-config with one run in --runs)")
        t = read_tomogram(a.tomogram, voxel_spacing=a.voxel_spacing)
        return t, _picks_arg(a.picks, a.user_id, a.session_id), _picks_arg(a.gt, a.gt_user, a.gt_session), ps
    if a.tomogram:
        t = read_tomogram(a.tomogram, voxel_spacing=a.voxel_spacing)
    else:
        tomos = _project_tomograms(a)
        if len(tomos) != 1:
            raise ValueError(f"view: the project gives {len(tomos)} tomograms {[x.name for x in tomos]}; choose one "
                             "run with --runs")
        t = tomos[0]
    picks = (_picks_arg(a.picks, a.user_id, a.session_id) if a.picks
             else _project_picks_if_any(a, a.user_id, a.session_id, [t.name], ps.names, ""))
    gt = (_picks_arg(a.gt, a.gt_user, a.gt_session) if a.gt
          else _project_picks_if_any(a, a.gt_user, a.gt_session, [t.name], ps.names, "gt-"))
    return t, picks, gt, ps

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
    project_tomogram_paths,
    project_tomograms,
    tomogram_sizes,
    write_project_picks,
)
from cryo3d.io.pick_formats import read_picks
from cryo3d.io.tomogram import find_tomograms, read_tomogram, tomogram_name
from cryo3d.particles import load_particles

__all__ = ["prepare_inputs", "predict_tomograms", "check_predictions_writable", "write_predictions", "evaluate_inputs"]


def prepare_inputs(a: argparse.Namespace) -> tuple[list, Any, Any]:
    """Tomograms, picks and particles for ``cryo3d prepare --copick-config``.

    ``--tomograms``, ``--picks`` and ``--particles``, when given, replace the project's.
    """
    cfg = a.copick_config
    particles = load_particles(a.particles) if a.particles else project_particles(cfg)
    if a.tomograms:
        tomos = [read_tomogram(f, voxel_spacing=a.voxel_spacing) for f in find_tomograms(a.tomograms)]
    else:
        tomos = project_tomograms(cfg, a.tomo_type, a.copick_voxel_spacing, a.runs)
    if a.picks:
        spacing = a.picks_voxel_spacing if a.picks_voxel_spacing is not None else a.voxel_spacing
        picks = read_picks(a.picks, voxel_spacing=spacing, particles=particles, class_name=a.class_name,
                           tomogram_sizes=tomogram_sizes(tomos), tomograms_star=a.tomograms_star)
    else:
        picks = project_picks(cfg, a.gt_user, a.gt_session, [t.name for t in tomos], particles.names,
                              user_option="--gt-user", session_option="--gt-session")
    return tomos, picks, particles


def predict_tomograms(a: argparse.Namespace) -> list[str]:
    """The OME-Zarr folders ``cryo3d predict --copick-config`` runs on (plus any given files)."""
    paths = project_tomogram_paths(a.copick_config, a.tomo_type, a.copick_voxel_spacing, a.runs)
    return paths + (find_tomograms(a.tomograms) if a.tomograms else [])


def check_predictions_writable(a: argparse.Namespace, paths: list[str]) -> None:
    """Refuse before inference when the project already holds picks of ``--user``/``--session``."""
    check_writable(a.copick_config, a.user_id, a.session_id, [tomogram_name(p) for p in paths],
                   overwrite=a.overwrite)


def write_predictions(a: argparse.Namespace, picks: Any, paths: list[str]) -> list[str]:
    """Write ``predict``'s picks into the project as ``--user``/``--session`` (copick's API)."""
    return write_project_picks(a.copick_config, picks, a.user_id, a.session_id,
                               runs=[tomogram_name(p) for p in paths], overwrite=a.overwrite)


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
    if cfg is None:
        if not a.pred or not a.gt:
            raise ValueError("evaluate: give PRED and GT picks files, or --copick-config with --user/--session "
                             "and --gt-user/--gt-session")
        ps = load_particles(a.particles)
        sizes = _report_tomogram_sizes(a)  # first: a .star among --tomograms becomes --tomograms-star
        kw = dict(voxel_spacing=a.voxel_spacing, particles=ps, class_name=a.class_name,
                  tomograms_star=a.tomograms_star, tomogram_sizes=sizes)
        return read_picks(a.pred, **kw), read_picks(a.gt, **kw), ps, None

    ps = load_particles(a.particles) if a.particles else project_particles(cfg)
    sizes = None
    if any(str(f).lower().endswith(".star") for f in (a.pred, a.gt) if f):
        sizes = tomogram_sizes(project_tomograms(cfg, a.tomo_type, a.copick_voxel_spacing, a.runs, check_values=False))
    kw = dict(voxel_spacing=a.voxel_spacing, particles=ps, class_name=a.class_name, tomogram_sizes=sizes,
              tomograms_star=a.tomograms_star)
    pred = read_picks(a.pred, **kw) if a.pred else project_picks(
        cfg, a.user_id, a.session_id, a.runs, ps.names, allow_empty=True)
    gt = read_picks(a.gt, **kw) if a.gt else project_picks(
        cfg, a.gt_user, a.gt_session, a.runs, ps.names, user_option="--gt-user", session_option="--gt-session")
    return pred, gt, ps, a.runs

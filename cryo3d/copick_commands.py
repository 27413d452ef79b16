"""The copick side of ``cryo3d prepare``, ``predict`` and ``evaluate`` (options and their use).

:mod:`cryo3d.cli` adds these options and calls in here when ``--copick-config`` is given;
the project itself is read and written by :mod:`cryo3d.io.copick_project`. Selectors left
out are resolved when the project holds one choice, an error listing the choices otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_project_options", "prepare_inputs", "predict_tomograms", "check_predictions_writable",
           "write_predictions", "evaluate_inputs"]


def add_project_options(p: argparse.ArgumentParser, gt: bool = True) -> None:
    """``--copick-config`` and the selectors of tomograms (and ground truth when ``gt``)."""
    g = p.add_argument_group("copick project")
    g.add_argument("--copick-config", help="a copick project's config JSON: tomograms (OME-Zarr), picks and "
                   "particle classes (pickable_objects) come from it")
    g.add_argument("--tomo-type", help="copick tomogram type, e.g. wbp (default: the project's only one)")
    g.add_argument("--copick-voxel-spacing", type=float, metavar="A",
                   help="copick voxel spacing of the tomograms to read (default: the project's only one)")
    g.add_argument("--runs", nargs="+", help="copick runs to use (default: all)")
    if gt:
        g.add_argument("--gt-user", help="copick user of the ground-truth picks (default: the only one)")
        g.add_argument("--gt-session", help="copick session of the ground-truth picks (default: the only one)")


def prepare_inputs(a: argparse.Namespace) -> tuple[list, Any, Any]:
    """Tomograms, picks and particles for ``cryo3d prepare --copick-config``.

    ``--tomograms``, ``--picks`` and ``--particles``, when given, replace the project's.
    """
    from cryo3d.io.copick_project import project_particles, project_picks, project_tomograms, tomogram_sizes
    from cryo3d.io.pick_formats import read_picks
    from cryo3d.io.tomogram import find_tomograms, read_tomogram
    from cryo3d.particles import load_particles

    cfg = a.copick_config
    particles = load_particles(a.particles) if a.particles else project_particles(cfg)
    if a.tomograms:
        tomos = [read_tomogram(f, voxel_spacing=a.voxel_spacing) for f in find_tomograms(a.tomograms)]
    else:
        tomos = project_tomograms(cfg, a.tomo_type, a.copick_voxel_spacing, a.runs)
    if a.picks:
        spacing = a.picks_voxel_spacing if a.picks_voxel_spacing is not None else a.voxel_spacing
        picks = read_picks(a.picks, voxel_spacing=spacing, particles=particles, class_name=a.class_name,
                           tomogram_sizes=tomogram_sizes(tomos))
    else:
        picks = project_picks(cfg, a.gt_user, a.gt_session, [t.name for t in tomos], particles.names,
                              user_option="--gt-user", session_option="--gt-session")
    return tomos, picks, particles


def predict_tomograms(a: argparse.Namespace) -> list[str]:
    """The OME-Zarr folders ``cryo3d predict --copick-config`` runs on (plus any given files)."""
    from cryo3d.io.copick_project import project_tomogram_paths
    from cryo3d.io.tomogram import find_tomograms

    paths = project_tomogram_paths(a.copick_config, a.tomo_type, a.copick_voxel_spacing, a.runs)
    return paths + (find_tomograms(a.tomograms) if a.tomograms else [])


def check_predictions_writable(a: argparse.Namespace, paths: list[str]) -> None:
    """Refuse before inference when the project already holds picks of ``--user``/``--session``."""
    from cryo3d.io.copick_project import check_writable
    from cryo3d.io.tomogram import tomogram_name

    check_writable(a.copick_config, a.user_id, a.session_id, [tomogram_name(p) for p in paths],
                   overwrite=a.overwrite)


def write_predictions(a: argparse.Namespace, picks: Any, paths: list[str]) -> list[str]:
    """Write ``predict``'s picks into the project as ``--user``/``--session`` (copick's API)."""
    from cryo3d.io.copick_project import write_project_picks
    from cryo3d.io.tomogram import tomogram_name

    return write_project_picks(a.copick_config, picks, a.user_id, a.session_id,
                               runs=[tomogram_name(p) for p in paths], overwrite=a.overwrite)


def evaluate_inputs(a: argparse.Namespace) -> tuple[Any, Any, Any, list[str] | None]:
    """Predictions, ground truth, particles and runs for ``cryo3d evaluate``.

    Without ``--copick-config`` the two files are read (with ``--voxel-spacing`` for pixel
    STAR). With it, a missing prediction file means the project's picks of
    ``--user``/``--session``, a missing ground-truth file those of ``--gt-user``/``--gt-session``;
    RELION 5 STAR files get their tomogram sizes from the project.
    """
    from cryo3d.io.pick_formats import read_picks
    from cryo3d.particles import load_particles

    cfg = getattr(a, "copick_config", None)
    if cfg is None:
        if not a.pred or not a.gt:
            raise ValueError("evaluate: give PRED and GT picks files, or --copick-config with --user/--session "
                             "and --gt-user/--gt-session")
        ps = load_particles(a.particles)
        kw = dict(voxel_spacing=a.voxel_spacing, particles=ps, class_name=a.class_name)
        return read_picks(a.pred, **kw), read_picks(a.gt, **kw), ps, None
    from cryo3d.io.copick_project import project_particles, project_picks, project_tomograms, tomogram_sizes

    ps = load_particles(a.particles) if a.particles else project_particles(cfg)
    sizes = None
    if any(str(f).lower().endswith(".star") for f in (a.pred, a.gt) if f):
        sizes = tomogram_sizes(project_tomograms(cfg, a.tomo_type, a.copick_voxel_spacing, a.runs, check_values=False))
    kw = dict(voxel_spacing=a.voxel_spacing, particles=ps, class_name=a.class_name, tomogram_sizes=sizes)
    pred = read_picks(a.pred, **kw) if a.pred else project_picks(
        cfg, a.user_id, a.session_id, a.runs, ps.names, allow_empty=True)
    gt = read_picks(a.gt, **kw) if a.gt else project_picks(
        cfg, a.gt_user, a.gt_session, a.runs, ps.names, user_option="--gt-user", session_option="--gt-session")
    return pred, gt, ps, a.runs

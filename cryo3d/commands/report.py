"""``cryo3d report`` and ``cryo3d view``, and the ``--report`` of ``predict`` and ``evaluate``.

The report itself is built by :mod:`cryo3d.report`; this module reads the files a user
names (tomograms, picks in any format, heatmaps, a checkpoint's classes) for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path
from typing import Any, Sequence

from cryo3d.coords import check_voxel_spacing
from cryo3d.io.copick_project import tomogram_sizes
from cryo3d.io.copick_tomogram import CopickTomogramSource
from cryo3d.io.output_guard import refuse_input_as_output
from cryo3d.io.pick_formats import read_picks
from cryo3d.io.pick_validation import scale_mismatch_note, voxel_index_note
from cryo3d.io.tomogram import Tomogram, find_tomograms, read_tomogram
from cryo3d.particles import ParticleSet, load_particles
from cryo3d.report.build import load_heatmaps, write_report
from cryo3d.report.viewer import import_napari, view

__all__ = ["report_files", "run", "run_view"]


def _read_picks(path: str, vols: Sequence[Any], particles: Any, tomograms_star: str | None = None) -> Any:
    """A picks file; STAR gets the tomograms' spacings and sizes (pixels, RELION 5 centring; sizes also
    from a RELION 5 ``tomograms.star``)."""
    if str(path).lower().endswith(".star"):
        return read_picks(path, voxel_spacing={v.name: float(v.voxel_spacing) for v in vols}, particles=particles,
                          tomogram_sizes=tomogram_sizes(vols), tomograms_star=tomograms_star)
    return read_picks(path)


def _open_tomograms(tomograms: Sequence[Any], voxel_spacing: float | None) -> list[Tomogram]:
    """Files, folders and globs read; tomograms already opened (a copick project's, on any storage) as
    they are; ``voxel_spacing`` overrides every one's spacing when given."""
    vols = [t.tomogram if isinstance(t, CopickTomogramSource) else t for t in tomograms
            if isinstance(t, (Tomogram, CopickTomogramSource))]
    if voxel_spacing is not None:
        vols = [dataclasses.replace(t, voxel_spacing=check_voxel_spacing(voxel_spacing)) for t in vols]
    files = [f for f in tomograms if not isinstance(f, (Tomogram, CopickTomogramSource))]
    return vols + ([read_tomogram(f, voxel_spacing=voxel_spacing) for f in find_tomograms(files)] if files else [])


def report_files(
    out: str,
    tomograms: Sequence[Any],
    picks: str | Any,
    gt: str | Any = None,
    heatmaps: str | None = None,
    particles: Any = None,
    voxel_spacing: float | None = None,
    thresholds: Any = None,
    title: str | None = None,
    notes: Sequence[str] = (),
    tomograms_star: str | None = None,
) -> Path:
    """``cryo3d report`` from files: tomogram files / folders / globs (or tomograms already opened:
    :class:`~cryo3d.io.tomogram.Tomogram`, a copick project's
    :class:`~cryo3d.io.copick_tomogram.CopickTomogramSource`), a picks file (or a
    :class:`~cryo3d.picks.Picks`), optional ground truth (file or ``Picks``) and heatmap folder.
    Returns ``index.html``."""
    ps = particles if isinstance(particles, ParticleSet) else load_particles(particles)
    vols = _open_tomograms(list(tomograms or []), voxel_spacing)
    p = _read_picks(picks, vols, ps, tomograms_star) if isinstance(picks, (str, Path)) else picks
    g = _read_picks(gt, vols, ps, tomograms_star) if isinstance(gt, (str, Path)) else gt
    _warn_units(p, g, ps, vols, picks, gt)
    hm = load_heatmaps(heatmaps, vols, ps) if heatmaps else None
    return write_report(out, vols, p, ps, gt=g, heatmaps=hm, thresholds=thresholds,
                        title=title or f"cryo3d report: {', '.join(v.name for v in vols) or 'picks'}",
                        notes=notes)


def _warn_units(p: Any, g: Any, particles: ParticleSet, vols: Sequence[Any], picks: Any, gt: Any) -> None:
    """Warn when picks or ground truth look like voxel indices, as ``prepare`` and ``evaluate`` do."""
    label = (lambda x, default: str(x) if isinstance(x, (str, Path)) else default)  # noqa: E731
    shapes, spacings = {v.name: v.shape for v in vols}, {v.name: float(v.voxel_spacing) for v in vols}
    notes = [n for x, src, what in ((p, picks, "picks"), (g, gt, "ground truth"))
             if x is not None and (n := voxel_index_note(x, shapes, spacings, label(src, what)))]
    if not notes and g is not None and len(p) and len(g):  # one unit warning is enough
        notes = [n for n in [scale_mismatch_note(p, g, particles, label(picks, "picks"), label(gt, "ground truth"))]
                 if n]
    for n in notes:
        warnings.warn(n, UserWarning, stacklevel=3)


def run(a: argparse.Namespace) -> int:
    """Write the report of the given tomograms and picks to ``--out``."""
    thr = None
    if a.threshold is not None:
        thr = a.threshold[0] if len(a.threshold) == 1 else a.threshold
    from cryo3d.commands.copick_inputs import report_inputs  # files, or a copick project's tomograms and picks

    refuse_input_as_output("report", [("--out", a.out)], [*(a.inputs or []), a.gt, a.heatmaps, a.particles])
    tomos, picks, gt, ps = report_inputs(a)
    index = report_files(a.out, tomos, picks, gt=gt, heatmaps=a.heatmaps, particles=ps,
                         voxel_spacing=a.voxel_spacing, thresholds=thr, tomograms_star=a.tomograms_star)
    print(f"wrote {index} (open it in a browser)")
    return 0


def run_view(a: argparse.Namespace) -> int:
    """Open a tomogram with its picks in napari (the optional ``view`` extra)."""
    try:
        import_napari()
    except ImportError as e:
        print(f"cryo3d view: error: {e}", flush=True)
        return 2
    from cryo3d.commands.copick_inputs import view_inputs  # files, or a copick project's tomogram and picks

    t, picks, gt, ps = view_inputs(a)
    picks, gt = (_read_picks(x, [t], ps, a.tomograms_star) if isinstance(x, (str, Path)) else x for x in (picks, gt))
    view(t, picks, gt, ps)
    return 0

"""Command-line glue of the report: ``cryo3d report``, ``cryo3d view``, and the ``--report``
options of ``cryo3d predict`` and ``cryo3d evaluate`` (their parsers live in :mod:`cryo3d.cli`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

__all__ = ["add_report_parsers", "report_files", "checkpoint_particles", "cmd_report", "cmd_view"]


def _read_picks(path: str, vols: Sequence[Any], particles: Any) -> Any:
    """A picks file; STAR gets the tomograms' spacings and sizes (pixels, RELION 5 centring)."""
    from cryo3d.io.pick_formats import read_picks

    if str(path).lower().endswith(".star"):
        return read_picks(path, voxel_spacing={v.name: float(v.voxel_spacing) for v in vols}, particles=particles,
                          tomogram_sizes={v.name: tuple(float(n) * float(v.voxel_spacing) for n in v.shape[::-1])
                                          for v in vols})
    return read_picks(path)


def report_files(
    out: str,
    tomograms: Sequence[str],
    picks: str | Any,
    gt: str | Any = None,
    heatmaps: str | None = None,
    particles: Any = None,
    voxel_spacing: float | None = None,
    thresholds: Any = None,
    title: str | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """``cryo3d report`` from files: tomogram files / folders / globs, a picks file (or a
    :class:`~cryo3d.picks.Picks`), optional ground truth (file or ``Picks``) and heatmap folder.
    Returns ``index.html``."""
    from cryo3d.io.tomogram import find_tomograms, read_tomogram
    from cryo3d.particles import ParticleSet, load_particles
    from cryo3d.report.build import load_heatmaps, write_report

    ps = particles if isinstance(particles, ParticleSet) else load_particles(particles)
    vols = [read_tomogram(p, voxel_spacing=voxel_spacing) for p in find_tomograms(list(tomograms))] if tomograms else []
    p = _read_picks(picks, vols, ps) if isinstance(picks, (str, Path)) else picks
    g = _read_picks(gt, vols, ps) if isinstance(gt, (str, Path)) else gt
    hm = load_heatmaps(heatmaps, vols, ps) if heatmaps else None
    return write_report(out, vols, p, ps, gt=g, heatmaps=hm, thresholds=thresholds,
                        title=title or f"cryo3d report: {', '.join(v.name for v in vols) or 'picks'}",
                        notes=notes)


def checkpoint_particles(checkpoint: str) -> Any:
    """The particle set a checkpoint was trained with (the report's radii and colours)."""
    import torch

    from cryo3d.particles import ParticleSet

    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return ParticleSet.from_dict(ck["cryo3d"]["particles"])


def cmd_report(a: argparse.Namespace) -> int:
    thr = None
    if a.threshold is not None:
        thr = a.threshold[0] if len(a.threshold) == 1 else a.threshold
    index = report_files(a.out, a.tomograms, a.picks, gt=a.gt, heatmaps=a.heatmaps, particles=a.particles,
                         voxel_spacing=a.voxel_spacing, thresholds=thr)
    print(f"wrote {index} (open it in a browser)")
    return 0


def cmd_view(a: argparse.Namespace) -> int:
    from cryo3d.io.tomogram import read_tomogram
    from cryo3d.particles import load_particles
    from cryo3d.report.viewer import import_napari, view

    try:
        import_napari()
    except ImportError as e:
        print(f"cryo3d view: error: {e}", flush=True)
        return 2
    ps = load_particles(a.particles)
    t = read_tomogram(a.tomogram, voxel_spacing=a.voxel_spacing)
    view(t, _read_picks(a.picks, [t], ps) if a.picks else None, _read_picks(a.gt, [t], ps) if a.gt else None, ps)
    return 0


def add_report_parsers(sub: Any) -> None:
    """Add ``report`` and ``view`` to the ``cryo3d`` sub-command parsers."""
    s = sub.add_parser(
        "report", help="write an HTML report (slabs with picks, gallery, curves, confusion) to open in a browser",
        description="Render tomograms and their picks into a folder with a static index.html and its PNGs "
        "(no server, no internet): z-slabs and x-z / y-z views with picks as circles of the particle radius "
        "(coloured by outcome against --gt: true positive, false positive, missed; else by class), a gallery "
        "of the top picks, worst false positives and misses, per-class precision-recall, F-beta against "
        "threshold, score histograms and the class confusion.")
    s.add_argument("tomograms", nargs="+", help="tomogram files, folders or globs (.mrc .rec .map .nii .nii.gz)")
    s.add_argument("picks", help="picks: CSV (tomo,class,x,y,z[,score] in Angstrom), copick JSON or root, or STAR")
    s.add_argument("--gt", help="ground-truth picks (same formats): colour picks by outcome")
    s.add_argument("--heatmaps", help="folder of heatmaps from cryo3d predict --write-heatmaps (<tomo>_<class>.mrc)")
    s.add_argument("--out", required=True, help="report folder (created, or replaced if it holds a report)")
    s.add_argument("--particles", help="YAML/JSON particle set with radii and weights (default: the 6 CZII classes)")
    s.add_argument("--voxel-spacing", type=float, help="override the tomograms' voxel spacing (Angstrom)")
    s.add_argument("--threshold", type=float, nargs="+",
                   help="show picks with score at or above this (one, or one per class); curves use every pick")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("view", help="open a tomogram with picks and ground truth in napari (optional extra)",
                       description="napari layers: the tomogram (Angstrom world units), picks and ground truth as "
                       "points sized by the particle radius and coloured by class. Needs napari "
                       "(pip install 'cryo3d[view]') and a display.")
    s.add_argument("tomogram", help="a tomogram file")
    s.add_argument("--picks", help="predicted picks file")
    s.add_argument("--gt", help="ground-truth picks file")
    s.add_argument("--particles", help="YAML/JSON particle set (default: the 6 CZII classes)")
    s.add_argument("--voxel-spacing", type=float, help="override the tomogram's voxel spacing (Angstrom)")
    s.set_defaults(func=cmd_view)

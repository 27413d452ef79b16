"""``cryo3d export``: write picks (any format cryo3d reads) in another format, e.g. a CZII challenge submission."""

from __future__ import annotations

import argparse

from cryo3d.io.czii_submission import write_submission
from cryo3d.io.pick_formats import read_picks, write_picks
from cryo3d.io.star import read_tomograms_star
from cryo3d.particles import load_particles

__all__ = ["EXPORT_FORMATS", "run"]

#: ``--format`` choices: the challenge's ``submission.csv``, cryo3d's CSV, RELION STAR.
EXPORT_FORMATS = ("czii-submission", "csv", "star")


def run(a: argparse.Namespace) -> int:
    """Read ``PICKS``, keep those at or above ``--min-score``, write them to ``--out`` as ``--format``."""
    if a.format != "czii-submission" and not str(a.out).lower().endswith(f".{a.format}"):
        raise ValueError(f"export: --out {a.out}: expected a .{a.format} file for --format {a.format}")
    particles = load_particles(a.particles) if a.particles else None
    picks = read_picks(a.picks, voxel_spacing=a.voxel_spacing, particles=particles, class_name=a.class_name,
                       tomograms_star=a.tomograms_star)
    n = len(picks)
    if a.min_score is not None:
        picks = picks.select(picks.score >= a.min_score)
    if a.format == "czii-submission":
        write_submission(a.out, picks)
    elif a.format == "star":  # RELION 4 pixels with --voxel-spacing, RELION 5 centred Angstrom with --tomograms-star
        if a.voxel_spacing is None and a.tomograms_star is None:
            raise ValueError("export: --format star needs --voxel-spacing (RELION 4 pixel coordinates) or "
                             "--tomograms-star (RELION 5 centred Angstrom)")
        sizes = read_tomograms_star(a.tomograms_star) if a.tomograms_star else None
        write_picks(a.out, picks, voxel_spacing=a.voxel_spacing, particles=particles, tomogram_sizes=sizes)
    else:
        write_picks(a.out, picks)
    kept = f" ({n - len(picks)} below --min-score {a.min_score:g} left out)" if len(picks) < n else ""
    print(f"wrote {len(picks)} picks of {len(picks.tomograms)} tomograms to {a.out} as {a.format}{kept}")
    return 0

"""``cryo3d synth``: simulate tomograms with known particles (the built-in data)."""

from __future__ import annotations

import argparse

from cryo3d.particles import load_particles
from cryo3d.synth import SynthConfig, synthesize


def run(a: argparse.Namespace) -> int:
    """Simulate ``--n`` tomograms of ``--preset`` into ``--out``; print what was written."""
    over = dict(seed=a.seed)
    if a.shape:
        over["shape"] = tuple(a.shape)
    for key in ("voxel_spacing", "snr", "tilt_range", "particles_per_class", "defocus_um"):
        v = getattr(a, key)
        if v is not None:
            over[key] = v[0] if len(v) == 1 else tuple(v)
    if a.structures is not None:
        over["structures"] = a.structures
    cfg = SynthConfig.preset(a.preset, **over)
    particles = load_particles(a.particles) if a.particles else None  # None: the preset's own set
    man = synthesize(a.out, a.n, cfg, particles, prefix=a.prefix, overwrite=a.overwrite, progress=not a.quiet)
    n = sum(sum(t["counts"].values()) for t in man["tomograms"])
    print(f"wrote {len(man['tomograms'])} tomograms with {n} particles of {len(man['particles']['classes'])} "
          f"classes (preset {man['preset']}) to {a.out} (tomograms/, picks.csv, copick/, manifest.json"
          + (", particles.yaml)" if man.get("structures") and "classes" in man["structures"] else ")"))
    return 0

"""``cryo3d prepare``: cut tomograms and their picks into a patch store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cryo3d.commands.copick_inputs import prepare_inputs
from cryo3d.errors import Cryo3DError
from cryo3d.io.copick_project import tomogram_sizes
from cryo3d.io.pick_formats import read_picks
from cryo3d.io.tomogram import find_tomograms, read_tomogram
from cryo3d.particles import ParticleSet, load_particles
from cryo3d.store import StoreSettings, prepare_store


def run(a: argparse.Namespace) -> int:
    """Read the inputs (a synth folder, files, or a copick project) and write the store."""
    tomo_specs, picks_path, particles_path = a.tomograms, a.picks, a.particles
    if a.copick_config:  # a copick project: tomograms, ground truth and classes from it
        tomos, picks, particles = prepare_inputs(a)
    elif a.data:
        d = Path(a.data)
        tomo_specs = tomo_specs or [str(d / "tomograms")]
        picks_path = picks_path or str(d / "picks.csv")
        if particles_path is None and (d / "manifest.json").exists():
            particles = ParticleSet.from_dict(json.loads((d / "manifest.json").read_text())["particles"],
                                              source=f"{d / 'manifest.json'}: particles")
        else:
            particles = load_particles(particles_path)
    else:
        particles = load_particles(particles_path)
    if not a.copick_config:
        if not tomo_specs or not picks_path:
            raise Cryo3DError("give --data FOLDER (synth layout), both --tomograms and --picks, or --copick-config")
        tomos = [read_tomogram(f, voxel_spacing=a.voxel_spacing) for f in find_tomograms(tomo_specs)]
        spacings = sorted({float(t.voxel_spacing) for t in tomos})
        if a.target_spacing is None and len(spacings) > 1:  # e.g. the default synth preset draws one per tomogram
            a.target_spacing = spacings[0]
            print(f"prepare: the tomograms have voxel spacings {spacings[0]:g}-{spacings[-1]:g} A; resampling them "
                  f"all to the finest, {spacings[0]:g} A (choose with --target-spacing)", file=sys.stderr)
        picks = read_picks(picks_path, voxel_spacing=a.picks_voxel_spacing or a.voxel_spacing, particles=particles,
                           class_name=a.class_name, tomogram_sizes=tomogram_sizes(tomos), tomograms_star=a.tomograms_star)
    settings = StoreSettings(
        patch_size=a.patch_size if len(a.patch_size) == 3 else a.patch_size[0],
        stride=a.stride if len(a.stride) == 3 else a.stride[0],
        ds_factor=a.ds_factor,
        precompute_heatmaps=a.precompute_heatmaps,
        normalization=a.normalization,
        voxel_spacing=a.target_spacing,
    )
    man = prepare_store(tomos, picks, particles, a.out, settings, overwrite=a.overwrite, progress=not a.quiet,
                        source=str(picks_path or a.copick_config))
    print(f"store {a.out}: {man['n_patches']} patches of {man['patch_size']} voxels, "
          f"{man['n_keypoints']} keypoint rows, ds_factor {man['ds_factor']}")
    return 0

"""Write simulated tomograms, their picks and a manifest into a folder (resumable)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import yaml

from cryo3d.io.atomic import write_json_atomic, write_text_atomic
from cryo3d.io.copick_picks import write_copick
from cryo3d.io.picks_csv import read_picks_csv, write_picks_csv
from cryo3d.io.tomogram import write_mrc
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks
from cryo3d.synth.config import SynthConfig
from cryo3d.synth.structures import PSEUDO_ATOMIC, RADIUS_RULE, class_name, structure_files
from cryo3d.synth.tomogram import simulate_tomogram


def synthesize(
    out_dir: str | os.PathLike,
    n_tomograms: int = 4,
    config: SynthConfig | None = None,
    particles: ParticleSet | None = None,
    prefix: str = "synth",
    start_index: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Simulate ``n_tomograms`` and write them with their picks. Resumable.

    Writes into ``out_dir``: ``tomograms/<name>.mrc``, ``picks/<name>.csv`` (one per tomogram,
    written after its MRC, so a finished tomogram is never redone), ``picks.csv`` (all of
    them), the same picks as copick JSON under ``copick/ExperimentRuns/<name>/Picks/`` and
    ``manifest.json`` (preset, config, particle set and each tomogram's drawn parameters;
    the training bundle reads its particle set from there). With a ``structures`` folder
    (``config.structures``) also ``particles.yaml``: the particle set derived from the
    structures (names, radii by :data:`cryo3d.synth.structures.RADIUS_RULE`, weight 1),
    which ``prepare``, ``train`` and ``evaluate`` read; the manifest records the rule and
    each class's file.

    Args:
        particles (ParticleSet, optional):
            Classes to simulate; default: the config's built-in ``particle_set`` (the 6 CZII
            classes, or the preset's own set for ``ood`` and ``crowded12``).

    Returns:
        dict: The manifest.
    """
    config = config or SynthConfig()
    particles = particles if particles is not None else config.particles()
    out = Path(out_dir)
    (out / "tomograms").mkdir(parents=True, exist_ok=True)
    (out / "picks").mkdir(parents=True, exist_ok=True)
    man_path = out / "manifest.json"
    old = json.loads(man_path.read_text()) if man_path.exists() and not overwrite else {}
    if old and (old.get("config") != _jsonable(asdict(config)) or old.get("particles") != particles.to_dict()):
        raise ValueError(
            f"{man_path}: this folder holds synthetic data made with other settings; "
            "use another --out folder or --overwrite"
        )
    entries = {t["name"]: t for t in old.get("tomograms", [])}
    if _user_structures(config):
        write_text_atomic(out / "particles.yaml", "# particle set derived from the structures of "
                          f"{config.structures}\n# {RADIUS_RULE}\n" + yaml.safe_dump(particles.to_dict(), sort_keys=False))
    all_picks = []
    names = [f"{prefix}_{i:03d}" for i in range(start_index, start_index + n_tomograms)]
    it = enumerate(names, start=start_index)
    if progress:
        it = tqdm(list(it), desc="synth", unit="tomo")
    for i, name in it:
        mrc, csv = out / "tomograms" / f"{name}.mrc", out / "picks" / f"{name}.csv"
        if not overwrite and mrc.exists() and csv.exists() and name in entries:
            all_picks.append(read_picks_csv(csv))
            continue
        t0 = time.perf_counter()
        vol, picks, params = simulate_tomogram(config, i, particles, name)
        write_mrc(mrc, vol, params["voxel_spacing"])
        write_picks_csv(csv, picks)
        params["seconds"] = round(time.perf_counter() - t0, 3)
        params["shape"] = list(vol.shape)
        params["tomogram"] = f"tomograms/{name}.mrc"
        entries[name] = params
        all_picks.append(picks)
        write_json_atomic(man_path, _manifest(config, particles, entries))
    picks = Picks.concat(all_picks)
    write_picks_csv(out / "picks.csv", picks)
    write_copick(out / "copick", picks, user_id="synth", session_id="0")
    manifest = _manifest(config, particles, entries)
    write_json_atomic(man_path, manifest)
    return manifest


def _user_structures(config: SynthConfig) -> bool:
    return config.structures not in (None, PSEUDO_ATOMIC)


def _structures_entry(config: SynthConfig, particles: ParticleSet) -> dict | None:
    """What the particles are made of, for the manifest (with the radius rule)."""
    if config.structures is None:
        return None
    entry: dict[str, Any] = {"source": config.structures, "radius_rule": RADIUS_RULE}
    if _user_structures(config):
        files = {class_name(p): p.name for p in structure_files(config.structures)}
        entry["classes"] = [{"name": c.name, "file": files.get(c.name), "radius": c.radius} for c in particles.classes]
    return entry


def _manifest(config: SynthConfig, particles: ParticleSet, entries: dict) -> dict:
    return {
        "kind": "cryo3d-synth",
        "version": 2,
        "preset": config.preset or "custom",
        "particle_set": "structures" if _user_structures(config) else (
            config.particle_set if particles == config.particles() else "custom"),
        "config": _jsonable(asdict(config)),
        "particles": particles.to_dict(),
        "structures": _structures_entry(config, particles),
        "tomograms": [entries[k] for k in sorted(entries)],
        "picks": "picks.csv",
        "copick_root": "copick",
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x

"""The built-in tomogram simulator: the default data, so every command works offline.

A tomogram is built in three steps:

1. **Scene**: particles of several classes (each with its own shape from
   :mod:`cryo3d.shapes`), random orientations, non-overlapping placement; optional
   distractors: vesicle membranes (lipid bilayers on spheres), flat membrane sheets and
   high-contrast gold beads. Distractors are never picked.
2. **Imaging**: in Fourier space, a missing wedge (tilt range ``+/-tilt_range`` degrees
   about the y axis: frequencies with ``|kz| > tan(tilt) |kx|`` are lost), a phase-flipped
   CTF-like band-pass (defocus, amplitude contrast, B-factor envelope) and wedge-filtered
   Gaussian noise at a chosen SNR (signal variance / noise variance over the volume).
3. **Contrast**: particles dark on a lighter background, with a random intensity scale and
   offset so that readers must normalise.

Every setting may be a number or a ``(low, high)`` range drawn per tomogram, so the
default data is *varied* (SNR, wedge, defocus, crowding, distractors, voxel size):
a model trained on it must not rely on one imaging condition. Deterministic for a seed:
tomogram ``i`` uses ``numpy.random.default_rng([seed, i])``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.fft

from cryo3d.coords import voxel_to_angstrom
from cryo3d.io.atomic import write_json_atomic
from cryo3d.particles import CZII_PARTICLES, ParticleSet
from cryo3d.picks import Picks
from cryo3d.shapes import get_shape, random_rotations

Range = float | Sequence[float]

#: Electron wavelength at 300 kV in Angstrom.
WAVELENGTH_300KV = 0.0197
#: Amplitude contrast fraction of the CTF.
AMPLITUDE_CONTRAST = 0.07
#: Density of protein, lipid and gold relative to each other (arbitrary units).
PROTEIN_DENSITY = 1.0
LIPID_DENSITY = 0.9
GOLD_DENSITY = 6.0
#: Width of the logistic edge of every object, as a fraction of the voxel spacing.
EDGE_FRACTION = 0.35
#: Bilayer: two leaflets this far from the mid-plane (Angstrom), each this thick.
LEAFLET_OFFSET = 18.0
LEAFLET_HALF_THICKNESS = 9.0
#: Particles are kept at least this far (Angstrom) from each other and from distractors.
MIN_GAP = 8.0


@dataclass
class SynthConfig:
    """Settings of the simulator. A ``(low, high)`` pair is drawn uniformly per tomogram.

    Attributes
    ----------
    shape : (Z, Y, X)
        Tomogram size in voxels.
    voxel_spacing : float or (low, high)
        Angstrom per voxel.
    particles_per_class : int or (low, high)
        Number of particles of each class (fewer if the volume is full).
    snr : float or (low, high)
        Signal variance / noise variance over the whole volume after filtering.
    tilt_range : float or (low, high)
        Maximum tilt (degrees) about the y axis; the rest of Fourier space is missing.
    defocus_um : float or (low, high)
        Defocus in micrometres of the phase-flipped CTF band-pass (0 disables the CTF).
    bfactor : float or (low, high)
        Envelope B-factor in Angstrom^2.
    vesicles, sheets, gold : int or (low, high)
        Number of vesicle membranes, flat membrane sheets and gold beads.
    seed : int
        Base seed; tomogram ``i`` uses ``default_rng([seed, i])``.
    """

    shape: tuple[int, int, int] = (184, 256, 256)
    voxel_spacing: Range = 10.0
    particles_per_class: Range = (8, 16)
    snr: Range = (0.4, 2.0)
    tilt_range: Range = (45.0, 65.0)
    defocus_um: Range = (2.0, 5.0)
    bfactor: Range = (50.0, 300.0)
    vesicles: Range = (0, 2)
    sheets: Range = (0, 1)
    gold: Range = (0, 6)
    seed: int = 0

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "SynthConfig":
        """Named presets: ``default`` (varied), ``clean`` (high SNR, no distractors),
        ``hard`` (low SNR, narrow wedge, crowded, many distractors)."""
        presets = {
            "default": {},
            "clean": dict(snr=8.0, tilt_range=60.0, defocus_um=3.0, bfactor=100.0,
                          vesicles=0, sheets=0, gold=0),
            "hard": dict(snr=(0.2, 0.5), tilt_range=(40.0, 50.0), particles_per_class=(20, 30),
                         vesicles=(1, 3), sheets=(0, 2), gold=(4, 10)),
        }
        if name not in presets:
            raise ValueError(f"unknown synth preset {name!r}; choose one of {sorted(presets)}")
        d = dict(presets[name])
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**d)


def _draw(rng: np.random.Generator, v: Range, integer: bool = False) -> float:
    if isinstance(v, (int, float, np.number)):
        return int(v) if integer else float(v)
    lo, hi = v
    if integer:
        return int(rng.integers(int(lo), int(hi) + 1))
    return float(rng.uniform(lo, hi))


def _logistic(sdf: np.ndarray, width: float) -> np.ndarray:
    return 0.5 * (1.0 - np.tanh(sdf / (2.0 * width)))


@dataclass
class _Obstacle:
    kind: str  # "ball" (particles, gold) or "vesicle" or "sheet"
    centre: np.ndarray  # Angstrom zyx (ball, vesicle) or a point on the sheet
    radius: float = 0.0  # ball / vesicle radius, Angstrom
    normal: np.ndarray = field(default_factory=lambda: np.zeros(3))


def _place(rng, n: int, radius: float, shape_a: np.ndarray, obstacles: list[_Obstacle],
           balls: np.ndarray, ball_r: np.ndarray, tries: int = 60) -> np.ndarray:
    """Rejection-sample ``n`` centres (Angstrom, zyx) that keep clear of everything placed.

    Candidates are drawn in vectorised batches; only accepted centres are appended one
    by one (they must also keep clear of each other).
    """
    out: list[np.ndarray] = []
    margin = 0.5 * radius
    for _ in range(tries):
        if len(out) >= n:
            break
        cand = rng.uniform(margin, shape_a - margin, size=(4 * n, 3))
        ok = np.ones(len(cand), bool)
        if len(balls):
            d = np.linalg.norm(cand[:, None, :] - balls[None], axis=-1)
            ok &= np.all(d > ball_r[None] + radius + MIN_GAP, axis=1)
        for ob in obstacles:
            if ob.kind == "vesicle":
                d = np.abs(np.linalg.norm(cand - ob.centre, axis=1) - ob.radius)
                ok &= d > radius + LEAFLET_OFFSET + LEAFLET_HALF_THICKNESS + MIN_GAP
            elif ob.kind == "sheet":
                d = np.abs((cand - ob.centre) @ ob.normal)
                ok &= d > radius + LEAFLET_OFFSET + LEAFLET_HALF_THICKNESS + MIN_GAP
        for c in cand[ok]:
            if len(out) >= n:
                break
            if out:
                if np.min(np.linalg.norm(np.asarray(out) - c, axis=1)) <= 2 * radius + MIN_GAP:
                    continue
            out.append(c)
    return np.asarray(out, dtype=np.float64).reshape(-1, 3)


def _splat(volume: np.ndarray, centres_a: np.ndarray, rotations: np.ndarray, sdf, radius: float,
           spacing: float, density: float, chunk_voxels: int = 4_000_000) -> None:
    """Add rotated copies of one shape into ``volume`` (in place), vectorised over particles.

    Each particle is evaluated on a cube of voxels around its centre; particles are processed
    in chunks bounded by ``chunk_voxels`` evaluated voxels to keep memory flat.
    """
    if len(centres_a) == 0:
        return
    edge = EDGE_FRACTION * spacing
    half = int(math.ceil((radius + 3 * edge) / spacing)) + 1
    off = np.arange(-half, half + 1)
    grid = np.stack(np.meshgrid(off, off, off, indexing="ij"), -1).reshape(-1, 3)  # [M,3] zyx
    shape = np.asarray(volume.shape)
    flat = volume.reshape(-1)
    per = max(1, chunk_voxels // len(grid))
    for s in range(0, len(centres_a), per):
        c_vox = centres_a[s:s + per] / spacing  # [n,3] zyx voxels
        base = np.rint(c_vox).astype(np.int64)
        pos = base[:, None, :] + grid[None]  # [n,M,3]
        local = (pos - c_vox[:, None, :]) * spacing  # Angstrom, zyx
        # particle frame: p = R^T (x) ; rows of R are the frame axes
        p = np.einsum("nij,nmj->nmi", rotations[s:s + per].transpose(0, 2, 1), local)
        vals = density * _logistic(sdf(p, radius), edge)
        inside = np.all((pos >= 0) & (pos < shape), axis=-1) & (vals > 1e-4)
        pos = pos[inside]
        idx = (pos[:, 0] * shape[1] + pos[:, 1]) * shape[2] + pos[:, 2]
        np.add.at(flat, idx, vals[inside].astype(volume.dtype))


def _bilayer(dist: np.ndarray, edge: float) -> np.ndarray:
    """Two leaflets at +/- LEAFLET_OFFSET from a mid-surface, given distance to it (Angstrom)."""
    a = _logistic(np.abs(dist - LEAFLET_OFFSET) - LEAFLET_HALF_THICKNESS, edge)
    b = _logistic(np.abs(dist + LEAFLET_OFFSET) - LEAFLET_HALF_THICKNESS, edge)
    return LIPID_DENSITY * (a + b)


def _imaging_filter(shape: tuple[int, int, int], spacing: float, tilt_deg: float,
                    defocus_um: float, bfactor: float) -> tuple[np.ndarray, np.ndarray]:
    """(signal filter, noise filter) on the ``rfftn`` grid: wedge x |CTF| x envelope, wedge x envelope."""
    kz = scipy.fft.fftfreq(shape[0], d=spacing)[:, None, None]
    ky = scipy.fft.fftfreq(shape[1], d=spacing)[None, :, None]
    kx = scipy.fft.rfftfreq(shape[2], d=spacing)[None, None, :]
    k2 = kz**2 + ky**2 + kx**2
    wedge = (np.abs(kz) <= math.tan(math.radians(tilt_deg)) * np.abs(kx)).astype(np.float32)
    wedge[0, :, 0] = 1.0  # the ky axis (and DC) is on every tilt's central slice
    env = np.exp(-bfactor * k2 / 4.0).astype(np.float32)
    if defocus_um > 0:
        chi = math.pi * WAVELENGTH_300KV * defocus_um * 1e4 * k2
        ctf = np.abs(math.sqrt(1 - AMPLITUDE_CONTRAST**2) * np.sin(chi) + AMPLITUDE_CONTRAST * np.cos(chi))
    else:
        ctf = np.ones_like(k2)
    return (wedge * ctf * env).astype(np.float32), (wedge * np.sqrt(env)).astype(np.float32)


def simulate_tomogram(
    config: SynthConfig,
    index: int = 0,
    particles: ParticleSet = CZII_PARTICLES,
    name: str | None = None,
) -> tuple[np.ndarray, Picks, dict]:
    """Simulate one tomogram.

    Parameters
    ----------
    config : SynthConfig
        Settings (ranges are drawn with ``default_rng([config.seed, index])``).
    index : int
        Tomogram number (sets the random stream and the default name ``synth_{index:03d}``).
    particles : ParticleSet
        Classes to place; each class's ``shape`` names its signed-distance shape.
    name : str, optional
        Tomogram name written into the picks.

    Returns
    -------
    volume : float32 ``[z, y, x]``
    picks : Picks
        True centres ``(x, y, z)`` in Angstrom.
    params : dict
        The values drawn for this tomogram (spacing, SNR, wedge, ...), for the manifest.
    """
    rng = np.random.default_rng([int(config.seed), int(index)])
    name = name or f"synth_{index:03d}"
    shape = tuple(int(s) for s in config.shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"synth shape must be three sizes >= 8 voxels (z, y, x), got {config.shape}")
    spacing = _draw(rng, config.voxel_spacing)
    params = dict(
        name=name, voxel_spacing=spacing, snr=_draw(rng, config.snr),
        tilt_range=_draw(rng, config.tilt_range), defocus_um=_draw(rng, config.defocus_um),
        bfactor=_draw(rng, config.bfactor), vesicles=_draw(rng, config.vesicles, True),
        sheets=_draw(rng, config.sheets, True), gold=_draw(rng, config.gold, True),
        intensity_scale=float(rng.uniform(0.5, 3.0)), intensity_offset=float(rng.uniform(-2, 2)),
    )
    shape_a = np.asarray(shape, float) * spacing  # extent in Angstrom (zyx), voxel centres 0..n-1
    shape_a_max = (np.asarray(shape, float) - 1) * spacing
    edge = EDGE_FRACTION * spacing
    vol = np.zeros(shape, np.float32)
    obstacles: list[_Obstacle] = []

    # distractors first: membranes are big and particles must avoid them
    zz, yy, xx = (np.arange(n, dtype=np.float32) * spacing for n in shape)
    for _ in range(params["vesicles"]):
        r = float(rng.uniform(0.15, 0.45) * shape_a.min() + 150)
        c = rng.uniform(0, shape_a)
        d = np.sqrt((zz[:, None, None] - c[0]) ** 2 + (yy[None, :, None] - c[1]) ** 2
                    + (xx[None, None, :] - c[2]) ** 2) - r
        vol += _bilayer(d, edge)
        obstacles.append(_Obstacle("vesicle", c, r))
    for _ in range(params["sheets"]):
        nrm = rng.normal(size=3)
        nrm[0] *= 0.3  # sheets lie mostly across the slab, as membranes do in lamellae
        nrm /= np.linalg.norm(nrm)
        c = rng.uniform(0.2, 0.8, 3) * shape_a
        d = ((zz[:, None, None] - c[0]) * nrm[0] + (yy[None, :, None] - c[1]) * nrm[1]
             + (xx[None, None, :] - c[2]) * nrm[2])
        vol += _bilayer(d, edge)
        obstacles.append(_Obstacle("sheet", c, 0.0, nrm))

    balls = np.zeros((0, 3))
    ball_r = np.zeros(0)
    gold_r = float(rng.uniform(40.0, 70.0))
    gold_c = _place(rng, params["gold"], gold_r, shape_a_max, obstacles, balls, ball_r)
    if len(gold_c):
        _splat(vol, gold_c, np.tile(np.eye(3), (len(gold_c), 1, 1)), get_shape("sphere"), gold_r,
               spacing, GOLD_DENSITY)
        balls, ball_r = gold_c, np.full(len(gold_c), gold_r)

    # particles: largest classes first so the small ones fill the gaps
    rows_cls, rows_xyz = [], []
    order = np.argsort(-particles.radii)
    counts = {}
    for ci in order:
        pc = particles.classes[ci]
        n = _draw(rng, config.particles_per_class, True)
        c = _place(rng, n, pc.radius, shape_a_max, obstacles, balls, ball_r)
        counts[pc.name] = int(len(c))
        if len(c) == 0:
            continue
        rots = random_rotations(rng, len(c))
        density = PROTEIN_DENSITY * rng.uniform(0.85, 1.15, size=len(c))
        for dens_val in np.unique(np.round(density, 2)):  # few groups: density varies per particle
            sel = np.round(density, 2) == dens_val
            _splat(vol, c[sel], rots[sel], get_shape(pc.shape), pc.radius, spacing, float(dens_val))
        balls = np.concatenate([balls, c])
        ball_r = np.concatenate([ball_r, np.full(len(c), pc.radius)])
        rows_cls += [pc.name] * len(c)
        rows_xyz.append(voxel_to_angstrom(c / spacing, spacing))
    params["counts"] = counts

    # imaging: wedge, CTF band-pass, noise; all in one Fourier pass
    sig_filter, noise_filter = _imaging_filter(shape, spacing, params["tilt_range"],
                                               params["defocus_um"], params["bfactor"])
    F = scipy.fft.rfftn(vol, workers=-1)
    F[0, 0, 0] = 0.0
    signal = scipy.fft.irfftn(F * sig_filter, s=shape, workers=-1).astype(np.float32)
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise = scipy.fft.irfftn(scipy.fft.rfftn(noise, workers=-1) * noise_filter, s=shape,
                             workers=-1).astype(np.float32)
    s_std = float(signal.std()) or 1.0
    noise *= s_std / math.sqrt(params["snr"]) / (float(noise.std()) or 1.0)
    img = -(signal + noise)  # dark particles on a lighter background
    img = img / float(img.std()) * params["intensity_scale"] + params["intensity_offset"]

    xyz = np.concatenate(rows_xyz) if rows_xyz else np.zeros((0, 3))
    picks = Picks(np.full(len(xyz), name, dtype=object), np.asarray(rows_cls, dtype=object), xyz)
    return img.astype(np.float32), picks, params


def synthesize(
    out_dir: str | os.PathLike,
    n_tomograms: int = 4,
    config: SynthConfig | None = None,
    particles: ParticleSet = CZII_PARTICLES,
    prefix: str = "synth",
    start_index: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Simulate ``n_tomograms`` and write them with their picks. Resumable.

    Writes into ``out_dir``: ``tomograms/<name>.mrc``, ``picks/<name>.csv`` (one per tomogram,
    written after its MRC, so a finished tomogram is never redone), ``picks.csv`` (all of
    them), the same picks as copick JSON under ``copick/ExperimentRuns/<name>/Picks/`` and
    ``manifest.json`` (config, particle set and each tomogram's drawn parameters).

    Returns
    -------
    dict
        The manifest.
    """
    from cryo3d.io.picks import read_picks_csv, write_copick, write_picks_csv
    from cryo3d.io.tomogram import write_mrc

    config = config or SynthConfig()
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
    all_picks = []
    names = [f"{prefix}_{i:03d}" for i in range(start_index, start_index + n_tomograms)]
    it = enumerate(names, start=start_index)
    if progress:
        from tqdm import tqdm

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


def _manifest(config: SynthConfig, particles: ParticleSet, entries: dict) -> dict:
    return {
        "kind": "cryo3d-synth",
        "version": 1,
        "config": _jsonable(asdict(config)),
        "particles": particles.to_dict(),
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

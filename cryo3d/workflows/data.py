"""The training bundle's data set-up: tomograms, ground truth and the patch store, made when missing.

:func:`ensure_data` fills an empty dataset folder with the built-in simulator's tomograms,
or reads a user's ``tomograms/`` + ``picks.csv`` or a copick project, holds out the
validation tomograms (:func:`resolve_n_val`: two on the built-in data), chooses the
training geometry from the particle set (:func:`cryo3d.resolution.choose_geometry`) and
cuts the patch store of the training tomograms. Beside built-in data it simulates
held-out test tomograms (:mod:`cryo3d.workflows.heldout`) that nothing trains or
validates on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cryo3d.bundle_keys import parse_choice_key, parse_count_key
from cryo3d.dataset import split_tomograms
from cryo3d.io.copick_project import training_inputs
from cryo3d.io.copick_tomogram import SPACING_SOURCES
from cryo3d.io.pick_formats import read_picks
from cryo3d.io.tomogram import find_tomograms, read_tomogram
from cryo3d.coords import voxels_to_volume
from cryo3d.networks import build_network
from cryo3d.peak_selection import class_densities
from cryo3d.resolution import choose_geometry, parse_spacing_key
from cryo3d.store import StoreSettings, prepare_store
from cryo3d.synth import SynthConfig, synthesize
from cryo3d.workflows.heldout import ensure_heldout_set
from cryo3d.workflows.network_spec import bundle_particles, structures_key

logger = logging.getLogger("cryo3d")

#: Validation tomograms when ``n_val: auto`` on the built-in data: one held-out tomogram made
#: ``best.pt`` and its thresholds a lottery (issue 22) ...
AUTO_N_VAL_BUILTIN = 2
#: ... and on a user's own tomograms (few, and each one taken from training counts).
AUTO_N_VAL_USER = 1


def resolve_n_val(n_val: Any, builtin: bool, n_tomograms: int) -> int:
    """The number of validation tomograms from the bundle key ``n_val``.

    Args:
        n_val: a whole number >= 1, or ``"auto"``: :data:`AUTO_N_VAL_BUILTIN` on the built-in
            data, :data:`AUTO_N_VAL_USER` on a user's, but never all of ``n_tomograms`` (one
            at least is left to train on).
        builtin: whether the data is the built-in simulator's.
        n_tomograms: how many tomograms there are.

    Returns:
        The number of tomograms to hold out (a number given is returned as it is:
        :func:`cryo3d.dataset.split_tomograms` says when it does not fit).

    Raises:
        ValueError: ``n_val`` is neither ``auto`` nor a whole number >= 1.
    """
    v = parse_count_key(n_val, "n_val", "validation tomograms", minimum=1, auto=True)
    if v == "auto":
        return max(1, min(AUTO_N_VAL_BUILTIN if builtin else AUTO_N_VAL_USER, int(n_tomograms) - 1))
    return int(v)


def ensure_data(
    dataset_dir: str | os.PathLike,
    n_tomograms: int = 10,
    n_val: int | str = "auto",
    synth_shape: Sequence[int] = (184, 256, 256),
    synth_preset: str = "demo",
    seed: int = 0,
    patch_size: int | Sequence[int] = 64,
    stride: int | Sequence[int] = 48,
    ds_factor: int = 2,
    precompute_heatmaps: bool = False,
    val_tomograms: Sequence[str] | None = None,
    voxel_spacing: float | str | None = None,
    progress: bool = True,
    copick_config: str | None = None,
    tomo_type: str | None = None,
    copick_voxel_spacing: float | None = None,
    gt_user: str | None = None,
    gt_session: str | None = None,
    runs: Sequence[str] | None = None,
    batch_size: int | str = 8,
    network: str | dict | None = None,
    synth_structures: str | None = None,
    trust_spacing: str | bool | None = None,
    n_test: int = 4,
) -> dict:
    """Make sure ``dataset_dir`` holds tomograms, picks and a patch store of the training tomograms.

    Layout: ``dataset_dir/tomograms/*.mrc`` + ``dataset_dir/picks.csv`` (the synth layout, also
    what a user puts there) and ``dataset_dir/store/<geometry and split tag>/``. An empty or missing folder is filled
    with ``n_tomograms`` synthetic tomograms first. The last ``n_val`` tomograms by name (or
    ``val_tomograms``) are held out: they are not in the store and are validated whole
    (``n_val="auto"``: :func:`resolve_n_val`, two on the built-in data). Built-in data also
    gets ``n_test`` held-out test tomograms in ``dataset_dir/test/`` (another simulator seed,
    :func:`cryo3d.workflows.heldout.ensure_heldout_set`), never trained or validated on: the
    README's evaluate step scores them.
    ``voxel_spacing`` resamples the store (and so the model) to that spacing; ``"auto"``
    (and ``"auto"`` patch size, stride and batch size) follow the particle set
    (:func:`cryo3d.resolution.choose_geometry`; the choice and its reason are logged).
    ``network`` (name or config) gives the spatial divisor the patch must respect.
    ``synth_structures`` (a folder of density maps and atomic models, see
    :mod:`cryo3d.synth.structures`) makes the simulated tomograms of exactly those structures
    (one class per file; the particle set is derived from them and written as
    ``dataset_dir/particles.yaml``).

    With ``copick_config`` the tomograms, ground truth and particle classes come from that
    copick project instead (:func:`cryo3d.io.copick_project.training_inputs`): ``runs`` (all
    by default) at ``copick_voxel_spacing`` and ``tomo_type`` (needed only when the project
    has several), ground truth of ``gt_user``/``gt_session``; ``dataset_dir`` then holds only
    the store and the ground truth as a picks CSV. A tomogram whose OME-Zarr scale and copick
    folder (``VoxelSpacing<s>``) differ by up to 2% uses the scale (a warning), by more is an error
    unless ``trust_spacing`` names the one to use: ``zarr`` or ``copick`` (None, null or false:
    the rule; :func:`cryo3d.io.copick_tomogram.decide_spacing`).

    Returns:
        ``store`` (path), ``train`` and ``val`` (tomogram names), ``val_paths`` (files; for a copick
        project its tomograms as opened),
        ``gt`` (picks CSV path), ``particles`` (a :class:`ParticleSet`), ``voxel_spacing``,
        ``patch_size``, ``stride``, ``batch_size`` (as chosen), ``geometry_reason``,
        ``builtin`` (whether the data is the built-in simulator's), ``test`` (the folder of the
        held-out test tomograms, or None) and ``class_density``
        (annotated particles per cubic Angstrom of each class in the training tomograms, for
        the flood cap of validation and ``predict``).
    """
    dist = torch.distributed
    distributed = dist.is_available() and dist.is_initialized()
    if distributed and dist.get_rank() != 0:
        dist.barrier()  # rank 0 makes the data first; the others then find it ready
    try:
        trust_spacing = parse_choice_key(trust_spacing, "trust_spacing", SPACING_SOURCES)  # a typo fails now
        copick = None if copick_config is None else dict(
            config=copick_config, tomo_type=tomo_type, voxel_spacing=copick_voxel_spacing, gt_user=gt_user,
            gt_session=gt_session, runs=runs, trust_spacing=trust_spacing)
        return _ensure_data(dataset_dir, n_tomograms, n_val, synth_shape, synth_preset, seed, patch_size, stride,
                            ds_factor, precompute_heatmaps, val_tomograms, voxel_spacing,
                            progress and (not distributed or dist.get_rank() == 0), copick, batch_size, network,
                            synth_structures, n_test)
    finally:
        if distributed and dist.get_rank() == 0:
            dist.barrier()


def _ensure_data(dataset_dir, n_tomograms, n_val, synth_shape, synth_preset, seed, patch_size, stride,
                 ds_factor, precompute_heatmaps, val_tomograms, voxel_spacing, progress, copick=None, batch_size=8,
                 network=None, synth_structures=None, n_test=0) -> dict:
    d = Path(dataset_dir)
    n_val = parse_count_key(n_val, "n_val", "validation tomograms", minimum=1, auto=True)  # before any work
    n_test = parse_count_key(n_test, "n_test_tomograms", "test tomograms", minimum=0)
    if copick is not None:  # a copick project: tomograms, ground truth and classes from it
        tomos, picks, particles, gt = training_inputs(dataset_dir=d, **copick)
        builtin = False
    else:
        tomos, picks, particles, gt, builtin = _folder_inputs(d, n_tomograms, synth_shape, synth_preset, seed,
                                                              progress, synth_structures)
    n_held = resolve_n_val(n_val, builtin, len(tomos))
    if builtin and copick is None and val_tomograms is None and len(tomos) < int(n_tomograms):
        logger.warning("%s holds %d simulated tomograms, fewer than n_synth_tomograms (%d): training on %d, "
                       "validating on %d (an empty dataset_dir is simulated with %d)", d / "tomograms", len(tomos),
                       int(n_tomograms), len(tomos) - n_held, n_held, int(n_tomograms))
    train, val = split_tomograms(list(tomos), n_val=n_held, val=val_tomograms)
    test = ensure_heldout_set(d, n_test, progress) if builtin and copick is None else None
    geo = _choose_geometry(particles, [tomos[n] for n in train], voxel_spacing, patch_size, stride,
                           batch_size, network, ds_factor)
    voxel_spacing = geo.voxel_spacing
    settings = StoreSettings(patch_size=geo.patch_size, stride=geo.stride, ds_factor=ds_factor,
                             precompute_heatmaps=precompute_heatmaps, voxel_spacing=voxel_spacing)
    tag = "p{}_s{}_f{}_v{}".format(
        "x".join(map(str, settings.patch_size)), "x".join(map(str, settings.stride)), ds_factor,
        f"{float(voxel_spacing):g}",
    )
    tag += "_" + hashlib.sha256("|".join(sorted(train)).encode()).hexdigest()[:8]
    store = d / "store" / tag  # one store per geometry and training split, so experiments coexist
    train_picks = picks.select(np.isin(picks.tomo, train))
    volume = sum(voxels_to_volume(tomos[n].shape, tomos[n].voxel_spacing) for n in train)
    class_density = class_densities(
        np.bincount(particles.indices(train_picks.cls, where=str(gt)), minlength=len(particles)), volume)
    prepare_store([tomos[n] for n in train], train_picks, particles, store, settings, progress=progress,
                  source=str(gt))
    return {
        "store": str(store),
        "train": train,
        "val": val,
        "val_paths": [tomos[n] if copick is not None else tomos[n].path for n in val],  # copick: as opened
        "gt": str(gt),
        "particles": particles,
        "voxel_spacing": float(voxel_spacing),
        "patch_size": geo.patch_size,
        "stride": geo.stride,
        "batch_size": geo.batch_size,
        "geometry_reason": geo.reason,
        "builtin": builtin,
        "test": None if test is None else str(test),
        "class_density": class_density,
    }


def is_builtin_data(dataset_dir: str | os.PathLike) -> bool:
    """Whether a dataset folder holds the built-in simulator's data (its ``manifest.json`` says so)."""
    man = Path(dataset_dir) / "manifest.json"
    try:
        return json.loads(man.read_text()).get("kind") == "cryo3d-synth" if man.exists() else False
    except ValueError:
        return False


def _folder_inputs(d: Path, n_tomograms, synth_shape, synth_preset, seed, progress, synth_structures=None) -> tuple:
    """Tomograms, picks, particles, picks CSV and whether it is built-in data, of a dataset folder
    (``tomograms/`` + ``picks.csv``), simulated first when the folder is empty."""
    tdir = d / "tomograms"
    has_tomos = tdir.is_dir() and any(tdir.iterdir())
    if not has_tomos:
        cfg = SynthConfig.preset(synth_preset, shape=tuple(synth_shape), seed=seed,
                                 structures=structures_key(synth_structures))
        synthesize(d, n_tomograms, cfg, progress=progress)
    gt = d / "picks.csv"
    if not gt.exists():
        raise FileNotFoundError(f"{gt}: the dataset folder needs picks.csv (tomo,class,x,y,z in Angstrom)")
    builtin = is_builtin_data(d)  # the built-in simulator's data (time_budget: auto, n_val: auto)
    particles = bundle_particles("auto", d, synth_preset)  # the rule network_def is built with
    paths = find_tomograms([str(tdir)])
    tomos = {t.name: t for t in (read_tomogram(p) for p in paths)}
    return tomos, read_picks(gt), particles, str(gt), builtin


def _choose_geometry(particles, tomograms, voxel_spacing, patch_size, stride, batch_size, network, ds_factor):
    """:func:`cryo3d.resolution.choose_geometry` for these tomograms and network; logs the choice."""
    spacings = sorted({round(float(t.voxel_spacing), 6) for t in tomograms})
    native = max(spacings)
    if len(spacings) > 1 and parse_spacing_key(voxel_spacing) is None:
        voxel_spacing = native = spacings[0]
        logger.warning(
            "voxel_spacing null, but the tomograms have different voxel spacings (%s A): resampling all to the "
            "finest, %g A", ", ".join(f"{x:g}" for x in spacings), native)
    divisor = 1
    if network is not None:
        cfg = {"name": network} if isinstance(network, str) else dict(network)
        cfg.update(in_channels=1, out_channels=1, ds_factor=ds_factor)
        divisor = int(getattr(build_network(cfg), "spatial_divisor", 1))
    geo = choose_geometry(particles, native, voxel_spacing, patch_size, stride, batch_size,
                          divisor=divisor, ds_factor=ds_factor)
    logger.info("training geometry: %s", geo.reason)
    return geo

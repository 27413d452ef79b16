"""Whole-tomogram picking: resample, normalise, heatmap, peaks, picks; and ``cryo3d predict``.

:func:`pick_tomogram` runs one tomogram through :mod:`cryo3d.sliding_window` (the heatmap at the
output stride) and :func:`cryo3d.peak_selection.heatmap_to_picks`; :func:`predict` does it for
every tomogram of a call (sharded across ``torchrun`` ranks), reusing results made from the
same inputs, and writes ``picks.csv``, copick JSON and optionally the heatmaps as MRC.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from cryo3d import coords
from cryo3d.checkpoints import load_checkpoint
from cryo3d.errors import Cryo3DError
from cryo3d.io.copick_picks import check_copick_names, write_copick
from cryo3d.io.copick_tomogram import CopickTomogramSource, input_name
from cryo3d.io.picks_csv import read_picks_csv, write_picks_csv
from cryo3d.io.tomogram import Tomogram, read_tomogram, write_mrc
from cryo3d.normalization import normalize, robust_stats
from cryo3d.particles import ParticleSet
from cryo3d.peak_selection import CLASS_DECISIONS, DENSITY_CAP_FACTOR, LEGACY_CLASS_DECISION, heatmap_to_picks
from cryo3d.picks import Picks
from cryo3d.resample import to_spacing
from cryo3d.results import ResultStore, check_output_folder, run_key, write_record
from cryo3d.sharding import init_ranks, shard_tomograms
from cryo3d.sliding_window import TTA_MODES, InferenceSettings, is_prepared, predict_heatmap, prepare_network


def pick_tomogram(
    model: torch.nn.Module,
    tomogram: Any,
    particles: ParticleSet,
    settings: InferenceSettings,
    device: str | torch.device | None = None,
    progress: bool = False,
    return_heatmap: bool = False,
) -> Picks | tuple[Picks, np.ndarray, float]:
    """Picks (Angstrom, class, score) of one :class:`~cryo3d.io.tomogram.Tomogram`.

    The tomogram is resampled to ``settings.voxel_spacing`` when that differs, normalised
    like the patch store (robust z-score, clipped), run through :func:`predict_heatmap`,
    and peaks are extracted per class (threshold, NMS distance from the particle radius,
    sub-voxel refinement), then filtered by :func:`cryo3d.peak_selection.select_peaks` (cross-class suppression,
    at most as many picks per class as the volume can hold, with a warning naming the
    tomogram and class when that cap cuts; the annotation-density cap of
    ``settings.class_density``). Scores are probabilities computed from the logits in
    float64, so they rank where a float32 sigmoid would tie at 1.0. With ``return_heatmap``
    also returns the **logit** heatmap (NumPy, host; ``sigmoid`` of it is the probability
    map) and its voxel spacing at full resolution. On a GPU the heatmap is
    stitched and its peaks found there when it fits (:func:`predict_heatmap` with
    ``keep_on_device``). ``model`` may come from :func:`prepare_network` already (then it is
    used as is).
    """
    spacing = coords.check_voxel_spacing(tomogram.voxel_spacing, f"{tomogram.path or tomogram.name}")
    data, spacing = to_spacing(tomogram.data, spacing, settings.voxel_spacing)
    med, sc = robust_stats(data)
    vol = normalize(data, med, sc, settings.clip)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not is_prepared(model, settings, dev):
        model = prepare_network(model, settings, dev)
    hm = predict_heatmap(model, vol, settings, device=dev, progress=progress, keep_on_device=True, prepared=True)
    picks = heatmap_to_picks(hm, settings.thresholds, tomogram.name, particles, spacing, int(settings.ds_factor),
                             settings.min_distance_fraction, settings.cross_class_fraction,
                             where=f"tomogram {tomogram.name}", logits=True,
                             class_density=settings.class_density, density_factor=settings.density_factor,
                             class_decision=settings.class_decision, temperature=settings.score_temperature)
    if return_heatmap:
        return picks, hm.cpu().numpy().astype(np.float32, copy=False), spacing
    return picks


def warn_unlearned(meta: dict, checkpoint: Any = "") -> list[str]:
    """Warn about classes the checkpoint's validation found no true positive for.

    Training records them as ``unlearned_classes`` (their threshold is then
    :data:`cryo3d.metrics.UNLEARNED_THRESHOLD`, not the sweep's lowest). Returns their names.
    """
    names = [str(n) for n in meta.get("unlearned_classes") or []]
    if names:
        warnings.warn(
            f"{checkpoint}: validation found no true positive for {', '.join(names)} at any threshold "
            "(not learned, or absent from the validation tomograms); their picks are unreliable. "
            "Train longer or with more examples of these classes.",
            stacklevel=2,
        )
    return names


def load_checkpoint_model(checkpoint: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """A network and its training settings from a cryo3d checkpoint.

    The checkpoint holds ``network`` (state dict) and ``cryo3d`` (a dict with ``network``
    config, ``particles``, ``voxel_spacing``, ``patch_size``, ``ds_factor``), written by the
    training bundle's :class:`cryo3d.checkpoints.AtomicCheckpointSaver`. It is loaded as data
    (``weights_only=True``); anything else gets one :class:`~cryo3d.errors.Cryo3DError`.
    """
    from cryo3d.networks import build_network  # heavy (MONAI's networks, seconds): only to load a checkpoint

    ck = load_checkpoint(checkpoint, map_location=device)
    if "cryo3d" not in ck or "network" not in ck:
        raise Cryo3DError(
            f"{checkpoint}: no 'cryo3d' settings in this checkpoint (expected keys 'network' and 'cryo3d'); "
            "was it written by the cryo3d training bundle?"
        )
    meta = ck["cryo3d"]
    net = build_network(dict(meta["network"]))
    state = ck["network"]
    if any(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    net.load_state_dict(state)
    return net, meta


def _class_decision(given: str | None, meta: dict, checkpoint: Any) -> str:
    """The one-class-per-particle rule: ``given``, else the checkpoint's (the rule its thresholds
    were validated under), else :data:`~cryo3d.peak_selection.LEGACY_CLASS_DECISION`."""
    rule = given or meta.get("class_decision", LEGACY_CLASS_DECISION)
    if rule not in CLASS_DECISIONS:
        where = "--class-decision" if given else f"checkpoint {checkpoint}: field 'class_decision'"
        raise Cryo3DError(f"{where}: expected one of {list(CLASS_DECISIONS)}, got {rule!r}")
    return rule


#: The test-time augmentation of checkpoints that record none (validated before the checkpoint kept it).
LEGACY_TTA = "none"


def _tta(given: str | None, meta: dict, checkpoint: Any) -> str:
    """The test-time augmentation: ``given``, else the checkpoint's (the one its thresholds were
    validated under: scores are averages over its passes), else :data:`LEGACY_TTA`."""
    tta = given or meta.get("tta", LEGACY_TTA)
    if tta not in TTA_MODES:
        where = "--tta" if given else f"checkpoint {checkpoint}: field 'tta'"
        raise Cryo3DError(f"{where}: expected one of {list(TTA_MODES)}, got {tta!r}")
    return tta


def predict(
    checkpoint: str | os.PathLike,
    tomogram_paths: Sequence[str | os.PathLike | CopickTomogramSource],
    out_dir: str | os.PathLike,
    voxel_spacing: float | None = None,
    thresholds: float | Sequence[float] | None = None,
    tta: str | None = None,
    overlap: float = 0.25,
    sw_batch_size: int | str = "auto",
    device: str | None = None,
    write_heatmaps: bool = False,
    user_id: str = "cryo3d",
    session_id: str = "0",
    progress: bool = True,
    compile: bool | str = False,
    force: bool = False,
    density_factor: float | None = None,
    class_decision: str | None = None,
) -> Picks:
    """``cryo3d predict``: pick every tomogram and write ``picks.csv`` + copick JSON (+ heatmap MRC).

    Each tomogram's picks are also written to ``out_dir/per_tomogram/<name>.csv`` as soon as
    it is done, with a record of what they were made from (:mod:`cryo3d.results`: the
    tomogram's content fingerprint, the checkpoint, every setting, the outputs made). A
    repeated call reuses a result only when all of that matches, so a killed run resumes
    without losing results and nothing stale is reused. Outputs of tomograms not in this
    call are removed. An output folder holding files predict did not write (ground truth,
    a copick project, tomograms) is refused unless ``force``. ``sw_batch_size="auto"`` fills
    the device (:func:`cryo3d.sliding_window.auto_sw_batch_size`); ``compile`` runs the network through
    ``torch.compile`` (see :class:`InferenceSettings`). Each class reports at most
    ``density_factor`` (default :data:`cryo3d.peak_selection.DENSITY_CAP_FACTOR`; 0: off) times
    the particle density of the checkpoint's training annotations; ``class_decision`` is
    ``"independent"`` or ``"strongest"`` (:func:`cryo3d.peak_selection.strongest_class_keep`);
    None: the rule the checkpoint's thresholds were validated under (its ``class_decision``;
    ``"independent"`` for a checkpoint that records none). ``tta`` likewise: None applies the
    test-time augmentation the checkpoint's thresholds were validated under (its ``tta``;
    ``"none"`` for a checkpoint that records none); ``"none"`` is about 3.5 times faster, with
    the thresholds then chosen on other scores.

    Under ``torchrun`` (``torchrun --nproc-per-node=N -m cryo3d.cli predict ...``, any number
    of nodes) the tomograms are shared among the ranks (:func:`cryo3d.sharding.shard_tomograms`),
    each rank writes its per-tomogram results, and when all are done rank 0 merges them into
    ``picks.csv``, the copick picks and ``predict.json`` (the same files, byte for byte, as one
    process writes). A rerun after a killed rank redoes that rank's unfinished tomograms. Rank 0
    returns all picks, the others their own.

    ``tomogram_paths`` holds files (or OME-Zarr folders) and copick tomograms as
    :class:`~cryo3d.io.copick_tomogram.CopickTomogramSource` (any storage: local, S3, SSH; their
    fingerprint as :func:`cryo3d.fingerprints.tomogram_fingerprint` says). ``out_dir`` is local.
    """
    out = Path(out_dir)
    names = [input_name(p) for p in tomogram_paths]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise Cryo3DError(f"tomograms {dupes} share a name (file stem); names key the output files, rename them")
    ranks = init_ranks()  # torchrun: this rank's place; alone: rank 0 of 1
    if ranks.is_main:
        check_output_folder(out, _local_paths(tomogram_paths), user_id, session_id, force=force)
    dev = ranks.device(device)
    net, meta = load_checkpoint_model(checkpoint, dev)
    particles = ParticleSet.from_dict(meta["particles"])
    check_copick_names(names, particles.names, user_id, session_id)  # before any inference, not after it
    warn_unlearned(meta, checkpoint)
    settings = InferenceSettings(
        roi_size=tuple(meta["patch_size"]), ds_factor=int(meta["ds_factor"]), overlap=overlap,
        sw_batch_size=sw_batch_size, tta=_tta(tta, meta, checkpoint), voxel_spacing=float(meta["voxel_spacing"]),
        thresholds=thresholds if thresholds is not None else meta.get("thresholds", 0.3), compile=compile,
        class_density=meta.get("class_density"), class_decision=_class_decision(class_decision, meta, checkpoint),
        density_factor=DENSITY_CAP_FACTOR if density_factor is None else density_factor,
        score_temperature=meta.get("score_temperature"),
    )
    net = prepare_network(net, settings, dev)  # once: channels-last weights, the compiled graph
    settings_d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.__dict__.items()}
    store = ResultStore(out, run_key(checkpoint, settings_d, voxel_spacing))
    base = {"checkpoint": str(checkpoint), "tomograms": [str(p) for p in tomogram_paths], "settings": settings_d}
    with ranks.main_first():
        if ranks.is_main:  # until the end: the folder's outputs are not this call's yet
            write_record(out, {**base, "complete": False})
    wanted = ["picks"] + (["heatmaps"] if write_heatmaps else [])
    results, n_reused = [], 0
    mine = shard_tomograms(list(zip(tomogram_paths, names)), ranks)
    desc = f"predict (rank {ranks.rank}/{ranks.world_size})" if ranks.distributed else "predict"
    it = tqdm(mine, desc=desc, unit="tomo", disable=not progress, position=ranks.local_rank)
    for path, name in it:
        done = store.lookup(name, path, wanted)
        if done is not None:  # made from this very tomogram with this checkpoint and these settings
            results.append(read_picks_csv(done))
            n_reused += 1
            continue
        t = _read(path, voxel_spacing)
        p, hm, sp = pick_tomogram(net, t, particles, settings, device=dev, return_heatmap=True)
        made: dict[str, list[Path]] = {"picks": [store.csv_path(name)]}
        if write_heatmaps:
            made["heatmaps"] = store.heatmap_paths(t.name, particles.names)
            origin = tuple(coords.ds_origin(sp, settings.ds_factor).tolist())  # heatmap voxel 0's centre (Angstrom)
            for ci, hpath in enumerate(made["heatmaps"]):
                prob = 1.0 / (1.0 + np.exp(-hm[ci]))  # the probability map (hm holds logits)
                write_mrc(hpath, prob.astype(np.float32, copy=False), coords.ds_voxel_spacing(sp, settings.ds_factor),
                          origin=origin)
        write_picks_csv(store.csv_path(name), p)
        store.record(name, path, made)
        results.append(p)
    counts = {"n_reused": n_reused, "n_computed": len(names) - n_reused}
    if ranks.distributed:
        ranks.barrier()  # every rank's tomograms are written
        if not ranks.is_main:
            ranks.close()
            return Picks.concat(results)
        missing = [n for n, pth in zip(names, tomogram_paths) if store.lookup(n, pth, wanted) is None]
        if missing:
            raise Cryo3DError(f"{out / 'per_tomogram'}: results of {missing} missing or not made from these inputs "
                              "after every rank finished; run the same command again to redo them")
        results = gather_per_tomogram(out / "per_tomogram", names)
        counts = {}  # each rank knows only its own reuse
    picks = Picks.concat(results)
    write_picks_csv(out / "picks.csv", picks)
    (out / "copick" / "ExperimentRuns").mkdir(parents=True, exist_ok=True)  # there even when nothing was found
    written = write_copick(out / "copick", picks, user_id=user_id, session_id=session_id)
    removed = store.remove_stale(names, user_id, session_id, written or ())
    write_record(out, {**base, "complete": True, "n_picks": len(picks), **counts, "removed_stale": removed,
                       "heatmaps": bool(write_heatmaps), "user_id": user_id, "session_id": session_id})
    ranks.close()
    return picks


def _local_paths(tomograms: Sequence[Any]) -> list[str]:
    """The local files and folders among predict's inputs (a copick tomogram elsewhere has none)."""
    out = []
    for p in tomograms:
        local = p.local if isinstance(p, CopickTomogramSource) else os.fspath(p)
        if local is not None:
            out.append(str(local))
    return out


def _read(tomogram: str | os.PathLike | CopickTomogramSource, voxel_spacing: float | None) -> Tomogram:
    """One of predict's inputs read (values checked), with ``voxel_spacing`` overriding its own when given."""
    if not isinstance(tomogram, CopickTomogramSource):
        return read_tomogram(tomogram, voxel_spacing=voxel_spacing)
    t = tomogram.read()
    if voxel_spacing is not None:
        t = dataclasses.replace(t, voxel_spacing=coords.check_voxel_spacing(voxel_spacing, where="voxel_spacing"))
    return t


def gather_per_tomogram(folder: str | os.PathLike, names: Sequence[str]) -> list[Picks]:
    """The per-tomogram picks files ``folder/<name>.csv``, in the order of ``names`` (what rank 0
    merges once every rank is done; the CSV round trip is exact, so the merge equals one process's)."""
    folder = Path(folder)
    missing = [str(folder / f"{n}.csv") for n in names if not (folder / f"{n}.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"per-tomogram results missing after every rank finished: {missing}; "
                                "run the same command again to redo them")
    return [read_picks_csv(folder / f"{n}.csv") for n in names]

"""Across-epoch evaluation: every per-epoch checkpoint of a run on its validation and on out-of-distribution tomograms.

``scripts/eval_epochs.py`` -> :func:`evaluate_epochs` (CSV, PNG, TensorBoard), on
:class:`EvalSet` s made by :func:`run_eval_set`, :func:`dataset_eval_set` and
:func:`ensure_ood`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from cryo3d.dataset import split_tomograms
from cryo3d.inference import load_checkpoint_model, pick_tomogram
from cryo3d.io.pick_formats import read_picks
from cryo3d.io.tomogram import Tomogram, find_tomograms, read_tomogram, tomogram_name
from cryo3d.particles import ParticleSet
from cryo3d.resample import to_spacing
from cryo3d.sliding_window import InferenceSettings
from cryo3d.synth import SynthConfig, synthesize
from cryo3d.metric_ignite import ParticleFBeta
from cryo3d.workflows.data import is_builtin_data, resolve_n_val
from cryo3d.workflows.experiments.handlers import checkpoint_paths
from cryo3d.workflows.experiments.plots import plot_epoch_curves
from cryo3d.workflows.experiments.runs import bundle_values
from cryo3d.workflows.experiments.tables import as_float, class_columns, read_csv, write_csv

#: Out-of-distribution default for across-epoch evaluation: lower SNR, narrower wedge, more crowded.
OOD_DEFAULTS = {"snr": (0.2, 0.4), "tilt_range": (40.0, 45.0), "particles_per_class": (20, 28), "seed": 1000}


@dataclass
class EvalSet:
    """Tomograms with ground truth to evaluate checkpoints on.

    Attributes:
        name: Label in tables and plots (``"val"``, ``"ood"``).
        paths: Tomogram files.
        gt: Picks file of their ground truth (CSV / copick / STAR; Angstrom).
    """

    name: str
    paths: list[str]
    gt: str


def dataset_eval_set(name: str, dataset_dir: str | os.PathLike, tomograms: Sequence[str] | None = None) -> EvalSet:
    """An :class:`EvalSet` of a dataset folder (``tomograms/`` + ``picks.csv``), optionally only some tomograms."""
    d = Path(dataset_dir)
    tdir = d / "tomograms" if (d / "tomograms").is_dir() else d
    paths = find_tomograms([str(tdir)])
    if tomograms is not None:
        want = set(tomograms)
        paths = [p for p in paths if tomogram_name(p) in want]
        missing = sorted(want - {tomogram_name(p) for p in paths})
        if missing:
            raise ValueError(f"{tdir}: tomograms {missing} not found")
    gt = d / "picks.csv"
    if not gt.exists():
        raise FileNotFoundError(f"{gt}: an evaluation folder needs picks.csv (tomo,class,x,y,z in Angstrom)")
    return EvalSet(name, [str(p) for p in paths], str(gt))


def ensure_ood(out_dir: str | os.PathLike, n: int = 2, shape: Sequence[int] = (184, 256, 256),
               progress: bool = True, **overrides: Any) -> Path:
    """Synthesise ``n`` out-of-distribution tomograms into ``out_dir`` once (resumable).

    Defaults (:data:`OOD_DEFAULTS`): SNR 0.2-0.4, tilt range 40-45 degrees, 20-28
    particles per class, seed 1000 (the training data uses SNR 0.4-2, 45-65 degrees,
    8-16 per class, seed 0); ``overrides`` change any :class:`~cryo3d.synth.SynthConfig` field.
    """
    cfg = dict(OOD_DEFAULTS)
    cfg.update(overrides)
    synthesize(out_dir, n, SynthConfig.preset("default", shape=tuple(int(s) for s in shape), **cfg),
               prefix="ood", progress=progress)
    return Path(out_dir)


def experiment_root(train_dir: str | os.PathLike) -> Path:
    """The experiment folder of a training output folder: the nearest ancestor with ``folds.json`` (else its parent)."""
    d = Path(train_dir).resolve()
    for p in d.parents:
        if (p / "folds.json").exists():
            return p
    return d.parent


def run_eval_set(train_dir: str | os.PathLike) -> EvalSet:
    """The in-fold validation tomograms of a run trained by :func:`~cryo3d.workflows.experiments.runs.train_run`.

    Read from the run's ``experiment.json``.
    """
    p = Path(train_dir) / "experiment.json"
    if not p.exists():
        raise FileNotFoundError(f"{p}: not a run made by the experiment scripts; name --val-dir and --val-tomograms")
    ov = json.loads(p.read_text())["overrides"]
    v = bundle_values(ov, ["dataset_dir", "val_tomograms", "n_val"])
    d = Path(v["dataset_dir"])
    val = v["val_tomograms"]
    if val is None:  # the bundle's default split
        names = [tomogram_name(x) for x in find_tomograms([str(d / "tomograms")])]
        val = split_tomograms(names, n_val=resolve_n_val(v["n_val"], is_builtin_data(d), len(names)))[1]
    return dataset_eval_set("val", d, val)


def _load_tomograms(paths: Sequence[str], spacing: float) -> list[Any]:
    """Tomograms read and resampled to ``spacing`` once (they are then picked by every checkpoint)."""
    out = []
    for p in paths:
        t = read_tomogram(p)
        data, sp = to_spacing(np.asarray(t.data), float(t.voxel_spacing), spacing)
        out.append(Tomogram(t.name, data, sp, t.path))
    return out


def score_checkpoint(
    checkpoint: str | os.PathLike,
    sets: Sequence[tuple[str, list[Any], Any]],
    beta: float = 4.0,
    base_threshold: float = 0.05,
    overlap: float = 0.25,
    sw_batch_size: int = 8,
    device: str | None = None,
) -> list[dict]:
    """Score one checkpoint on loaded tomogram sets, with its own thresholds and with a sweep.

    ``sets`` are ``(name, tomograms, gt Picks)``. Each tomogram's heatmap is computed once
    (:func:`cryo3d.inference.pick_tomogram`) and scored by the bundle's own validation
    metric (:class:`cryo3d.metric_ignite.ParticleFBeta`, same peaks, grid and matching) twice:
    ``mode="checkpoint"`` with the per-class thresholds stored in the checkpoint (chosen on
    the validation tomograms at that epoch; 0.3 if it has none) -- the honest number on
    data they were not chosen on -- and ``mode="sweep"`` with each class at its best
    threshold on these very tomograms (optimistic; the gap shows threshold miscalibration).

    Returns:
        Rows ``set, mode, score, n_pred, f_<class>..., thresholds``.
    """
    net, meta = load_checkpoint_model(checkpoint, device or "cpu")
    particles = ParticleSet.from_dict(meta["particles"])
    f = int(meta["ds_factor"])
    spacing = float(meta["voxel_spacing"])
    settings = InferenceSettings(roi_size=tuple(meta["patch_size"]), ds_factor=f, overlap=overlap,
                                 sw_batch_size=sw_batch_size, thresholds=0.5, voxel_spacing=spacing)
    thr = [float(t) for t in np.broadcast_to(np.asarray(meta.get("thresholds", 0.3), float), (len(particles),))]
    rows = []
    for name, tomos, gt in sets:
        names = [t.name for t in tomos]
        heat = [pick_tomogram(net, t, particles, settings, device=device, return_heatmap=True)[1] for t in tomos]
        for mode in ("checkpoint", "sweep"):
            metric = ParticleFBeta(gt, names, particles, spacing, f, beta=beta, sweep=mode == "sweep",
                                   thresholds=thr, base_threshold=base_threshold,
                                   temperature=meta.get("score_temperature") if mode == "checkpoint" else None)
            metric.reset()
            for i, hm in enumerate(heat):
                metric.update((torch.from_numpy(hm)[None], torch.tensor([[i]])))
            score = metric.compute()
            pc = metric.last["per_class"]
            row = {"set": name, "mode": mode, "score": float(score),
                   "n_pred": int(sum(v["tp"] + v["fp"] for v in pc.values()))}
            row.update({f"f_{c}": float(v["fbeta"]) for c, v in pc.items()})
            row["thresholds"] = [float(x) for x in metric.last["thresholds"]]
            rows.append(row)
    return rows


def evaluate_epochs(
    train_dir: str | os.PathLike,
    sets: Sequence[EvalSet],
    out_dir: str | os.PathLike | None = None,
    beta: float = 4.0,
    base_threshold: float = 0.05,
    overlap: float = 0.25,
    sw_batch_size: int = 8,
    device: str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Evaluate every per-epoch checkpoint of a run on each set. Resumable.

    Reads ``train_dir/epochs/epoch_<N>.pt``
    (:class:`~cryo3d.workflows.experiments.handlers.EpochCheckpointer`) and writes into
    ``out_dir`` (default ``train_dir/epoch_eval``): ``epoch_metrics.csv`` (one row per
    epoch, set and mode, see :func:`score_checkpoint`), ``epoch_curves.png`` (score against
    epoch, with the bundle's own validation curve) and TensorBoard scalars
    ``<set>/<mode>`` and ``<set>/<mode>/<class>`` at step = epoch in ``out_dir/tensorboard``.
    Epochs already in the CSV are skipped.

    Returns:
        All rows (earlier and new), sorted by epoch, set and mode.
    """
    train_dir = Path(train_dir)
    out = Path(out_dir) if out_dir is not None else train_dir / "epoch_eval"
    ckpts = checkpoint_paths(train_dir / "epochs")
    if not ckpts:
        raise FileNotFoundError(
            f"{train_dir / 'epochs'}: no epoch_<N>.pt checkpoints; train with the experiment scripts "
            "(they save one per epoch)"
        )
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"evaluation set names must be unique, got {names}")
    csv_path = out / "epoch_metrics.csv"
    rows = [_typed_row(r) for r in read_csv(csv_path)]
    done = {(r["epoch"], r["set"]) for r in rows}
    todo = [(e, p) for e, p in ckpts if any((e, s.name) not in done for s in sets)]
    if todo:
        _, meta = load_checkpoint_model(todo[0][1])
        spacing = float(meta["voxel_spacing"])
        loaded = {s.name: (_load_tomograms(s.paths, spacing), read_picks(s.gt)) for s in sets}
        writer = SummaryWriter(str(out / "tensorboard"))
        it = tqdm(todo, desc="eval epochs", unit="ckpt") if progress else todo
        try:
            for epoch, path in it:
                want = [(s.name, *loaded[s.name]) for s in sets if (epoch, s.name) not in done]
                new = score_checkpoint(path, want, beta, base_threshold, overlap, sw_batch_size, device)
                for r in new:
                    r["epoch"] = epoch
                    writer.add_scalar(f"{r['set']}/{r['mode']}", r["score"], epoch)
                    for k, v in r.items():
                        if k.startswith("f_"):
                            writer.add_scalar(f"{r['set']}/{r['mode']}/{k[2:]}", v, epoch)
                rows += new
                rows.sort(key=lambda r: (r["epoch"], r["set"], r["mode"]))
                _write_epoch_outputs(out, rows, train_dir, beta)
                writer.flush()
        finally:
            writer.close()
    _write_epoch_outputs(out, rows, train_dir, beta)
    return rows


def _typed_row(r: Mapping[str, str]) -> dict:
    out: dict[str, Any] = dict(r)
    out["epoch"] = int(r["epoch"])
    for k, v in r.items():
        if k in ("score", "n_pred") or k.startswith("f_"):
            out[k] = as_float(v)
        elif k == "thresholds" and v:
            out[k] = json.loads(v)
    return out


def _write_epoch_outputs(out: Path, rows: Sequence[Mapping[str, Any]], train_dir: Path, beta: float) -> None:
    if not rows:
        return
    classes = class_columns(rows)
    write_csv(out / "epoch_metrics.csv", rows, ["epoch", "set", "mode", "score", "n_pred"] + classes + ["thresholds"])
    plot_epoch_curves(rows, train_dir, out / "epoch_curves.png", beta)

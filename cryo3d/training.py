"""Pieces the training bundle wires together (``bundles/cryo3d_picker/configs/train.yaml``).

* :func:`ensure_data`: make the built-in synthetic data and the patch store when the
  dataset folder is empty, or prepare a user's ``tomograms/`` + ``picks.csv``.
* :class:`ValidationTomograms`: held-out whole tomograms, normalised like the store, as
  ``{"image": [1, z, y, x], "label": [tomogram index]}`` items for ``SupervisedEvaluator``.
* :class:`ParticleFBeta`: the validation key metric, an ignite ``Metric``: peaks from the
  stitched heatmaps -> picks -> CZII F-beta against the ground truth, with a per-class
  threshold sweep whose best thresholds are kept for inference.
* :func:`make_loss`, :class:`MetricTableHandler`: the loss from top-level keys, and the
  per-class validation table in the log, a JSON-lines file and TensorBoard.
* :class:`CheckpointMeta`: what a checkpoint must carry for ``cryo3d predict``.
* :func:`latest_checkpoint`: the newest complete checkpoint in a folder, for resuming
  (the savers and the resume handler are in :mod:`cryo3d.checkpoints`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from ignite.metrics import Metric

from cryo3d import coords
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks
from cryo3d.store import NORM_CLIP, normalize, robust_stats
from cryo3d.workflows.bundle import config_files, config_path


def ensure_data(
    dataset_dir: str | os.PathLike,
    n_tomograms: int = 5,
    n_val: int = 1,
    synth_shape: Sequence[int] = (184, 256, 256),
    synth_preset: str = "default",
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
) -> dict:
    """Make sure ``dataset_dir`` holds tomograms, picks and a patch store of the training tomograms.

    Layout: ``dataset_dir/tomograms/*.mrc`` + ``dataset_dir/picks.csv`` (the synth layout, also
    what a user puts there) and ``dataset_dir/store/<geometry and split tag>/``. An empty or missing folder is filled
    with ``n_tomograms`` synthetic tomograms first. The last ``n_val`` tomograms by name (or
    ``val_tomograms``) are held out: they are not in the store and are validated whole.
    ``voxel_spacing`` resamples the store (and so the model) to that spacing; ``"auto"``
    (and ``"auto"`` patch size, stride and batch size) follow the particle set
    (:func:`cryo3d.resolution.choose_geometry`; the choice and its reason are logged).
    ``network`` (name or config) gives the spatial divisor the patch must respect.

    With ``copick_config`` the tomograms, ground truth and particle classes come from that
    copick project instead (:func:`cryo3d.io.copick_project.training_inputs`): ``runs`` (all
    by default) at ``copick_voxel_spacing`` and ``tomo_type`` (needed only when the project
    has several), ground truth of ``gt_user``/``gt_session``; ``dataset_dir`` then holds only
    the store and the ground truth as a picks CSV.

    Returns
    -------
    dict
        ``store`` (path), ``train`` and ``val`` (tomogram names), ``val_paths`` (files),
        ``gt`` (picks CSV path), ``particles`` (a :class:`ParticleSet`), ``voxel_spacing``,
        ``patch_size``, ``stride``, ``batch_size`` (as chosen), ``geometry_reason``, and
        ``builtin`` (whether the data is the built-in simulator's).
    """
    dist = torch.distributed
    distributed = dist.is_available() and dist.is_initialized()
    if distributed and dist.get_rank() != 0:
        dist.barrier()  # rank 0 makes the data first; the others then find it ready
    try:
        copick = None if copick_config is None else dict(
            config=copick_config, tomo_type=tomo_type, voxel_spacing=copick_voxel_spacing, gt_user=gt_user,
            gt_session=gt_session, runs=runs)
        return _ensure_data(dataset_dir, n_tomograms, n_val, synth_shape, synth_preset, seed, patch_size, stride,
                            ds_factor, precompute_heatmaps, val_tomograms, voxel_spacing,
                            progress and (not distributed or dist.get_rank() == 0), copick, batch_size, network)
    finally:
        if distributed and dist.get_rank() == 0:
            dist.barrier()


def _ensure_data(dataset_dir, n_tomograms, n_val, synth_shape, synth_preset, seed, patch_size, stride,
                 ds_factor, precompute_heatmaps, val_tomograms, voxel_spacing, progress, copick=None, batch_size=8,
                 network=None) -> dict:
    from cryo3d.dataset import split_tomograms
    from cryo3d.store import StoreSettings, prepare_store

    d = Path(dataset_dir)
    if copick is not None:  # a copick project: tomograms, ground truth and classes from it
        from cryo3d.io.copick_project import training_inputs

        tomos, picks, particles, gt = training_inputs(dataset_dir=d, **copick)
        builtin = False
    else:
        tomos, picks, particles, gt, builtin = _folder_inputs(d, n_tomograms, synth_shape, synth_preset, seed,
                                                              progress)
    train, val = split_tomograms(list(tomos), n_val=n_val, val=val_tomograms)
    geo = _choose_geometry(particles, [tomos[n] for n in train], voxel_spacing, patch_size, stride,
                           batch_size, network, ds_factor)
    voxel_spacing = geo.voxel_spacing
    settings = StoreSettings(patch_size=geo.patch_size, stride=geo.stride, ds_factor=ds_factor,
                             precompute_heatmaps=precompute_heatmaps, voxel_spacing=voxel_spacing)
    tag = "p{}_s{}_f{}_v{}".format(
        "x".join(map(str, settings.patch_size)), "x".join(map(str, settings.stride)), ds_factor,
        f"{float(voxel_spacing):g}",
    )
    import hashlib

    tag += "_" + hashlib.sha256("|".join(sorted(train)).encode()).hexdigest()[:8]
    store = d / "store" / tag  # one store per geometry and training split, so experiments coexist
    train_picks = picks.select(np.isin(picks.tomo, train))
    prepare_store([tomos[n] for n in train], train_picks, particles, store, settings, progress=progress,
                  source=str(gt))
    return {
        "store": str(store),
        "train": train,
        "val": val,
        "val_paths": [tomos[n].path for n in val],
        "gt": str(gt),
        "particles": particles,
        "voxel_spacing": float(voxel_spacing),
        "patch_size": geo.patch_size,
        "stride": geo.stride,
        "batch_size": geo.batch_size,
        "geometry_reason": geo.reason,
        "builtin": builtin,
    }


def _folder_inputs(d: Path, n_tomograms, synth_shape, synth_preset, seed, progress) -> tuple:
    """Tomograms, picks, particles, picks CSV and whether it is built-in data, of a dataset folder
    (``tomograms/`` + ``picks.csv``), simulated first when the folder is empty."""
    from cryo3d.io.picks import read_picks
    from cryo3d.io.tomogram import find_tomograms, read_tomogram
    from cryo3d.particles import CZII_PARTICLES, load_particles
    from cryo3d.synth import SynthConfig, synthesize

    tdir = d / "tomograms"
    has_tomos = tdir.is_dir() and any(tdir.iterdir())
    if not has_tomos:
        cfg = SynthConfig.preset(synth_preset, shape=tuple(synth_shape), seed=seed)
        synthesize(d, n_tomograms, cfg, progress=progress)
    gt = d / "picks.csv"
    if not gt.exists():
        raise FileNotFoundError(f"{gt}: the dataset folder needs picks.csv (tomo,class,x,y,z in Angstrom)")
    particles = CZII_PARTICLES
    man = json.loads((d / "manifest.json").read_text()) if (d / "manifest.json").exists() else {}
    builtin = man.get("kind") == "cryo3d-synth"  # the built-in simulator's data (time_budget: auto)
    if (d / "particles.yaml").exists():
        particles = load_particles(str(d / "particles.yaml"))
    elif "particles" in man:
        particles = ParticleSet.from_dict(man["particles"])
    paths = find_tomograms([str(tdir)])
    tomos = {t.name: t for t in (read_tomogram(p) for p in paths)}
    return tomos, read_picks(gt), particles, str(gt), builtin


def _choose_geometry(particles, tomograms, voxel_spacing, patch_size, stride, batch_size, network, ds_factor):
    """:func:`cryo3d.resolution.choose_geometry` for these tomograms and network; logs the choice."""
    import logging

    from cryo3d.networks import build_network
    from cryo3d.resolution import choose_geometry, parse_spacing_key

    spacings = sorted({round(float(t.voxel_spacing), 6) for t in tomograms})
    native = max(spacings)
    if len(spacings) > 1 and parse_spacing_key(voxel_spacing) is None:
        voxel_spacing = native = spacings[0]
        logging.getLogger("cryo3d").warning(
            "voxel_spacing null, but the tomograms have different voxel spacings (%s A): resampling all to the "
            "finest, %g A", ", ".join(f"{x:g}" for x in spacings), native)
    divisor = 1
    if network is not None:
        cfg = {"name": network} if isinstance(network, str) else dict(network)
        cfg.update(in_channels=1, out_channels=1, ds_factor=ds_factor)
        divisor = int(getattr(build_network(cfg), "spatial_divisor", 1))
    geo = choose_geometry(particles, native, voxel_spacing, patch_size, stride, batch_size,
                          divisor=divisor, ds_factor=ds_factor)
    logging.getLogger("cryo3d").info("training geometry: %s", geo.reason)
    return geo


class ValidationTomograms(torch.utils.data.Dataset):
    """Whole held-out tomograms for ``SupervisedEvaluator``, normalised like the patch store.

    Items are ``{"image": float32 tensor [1, z, y, x], "label": int64 tensor [1] (tomogram index)}``;
    the index lets :class:`ParticleFBeta` look up the tomogram's name and ground truth.
    Volumes are read and normalised once and kept in memory.

    Args:
        paths: tomogram files.
        voxel_spacing: the training voxel spacing (Angstrom); other spacings are resampled.
    """

    def __init__(self, paths: Sequence[str], voxel_spacing: float | None = None) -> None:
        from cryo3d.resample import needs_resampling, resample_to_spacing
        from cryo3d.io.tomogram import read_tomogram

        self.names: list[str] = []
        self.spacings: list[float] = []
        self.volumes: list[torch.Tensor] = []
        for p in paths:
            t = read_tomogram(p)
            data, sp = t.data, float(t.voxel_spacing)
            if needs_resampling(sp, voxel_spacing):
                data, sp = resample_to_spacing(data, sp, voxel_spacing), float(voxel_spacing)
            med, sc = robust_stats(data)
            self.volumes.append(torch.from_numpy(normalize(data, med, sc, NORM_CLIP))[None])
            self.names.append(t.name)
            self.spacings.append(sp)

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.volumes[i], "label": torch.tensor([i], dtype=torch.int64)}


class ParticleFBeta(Metric):
    """CZII particle F-beta of whole-tomogram heatmaps, as an ignite metric.

    ``update`` takes ``(y_pred, y)`` with ``y_pred`` the stitched sigmoid heatmaps
    ``[B, C, z/f, y/f, x/f]`` and ``y`` the tomogram indices ``[B, 1]`` of
    :class:`ValidationTomograms`; peaks are found at ``base_threshold`` and converted to
    Angstrom picks, filtered like inference does (:func:`cryo3d.inference.select_peaks`:
    cross-class suppression, at most as many picks per class as the tomogram can hold).
    ``compute`` sweeps per-class thresholds (CZII matching) and returns the weighted F-beta
    at each class's best threshold (``sweep=True``) or at ``thresholds``. A class without
    any true positive keeps :data:`cryo3d.metrics.UNLEARNED_THRESHOLD` (never the lowest,
    which floods unseen data) and is listed in ``last["unlearned"]`` (and so in the
    checkpoint, for ``predict`` to warn). The per-class table and the best thresholds are
    kept in :attr:`last` for logging and for the checkpoint.

    Args:
        gt: ground-truth picks (CSV path or :class:`Picks`).
        names: tomogram name of each validation index.
        particles: classes (radii, weights).
        voxel_spacing: Angstrom per full-resolution voxel of the validation volumes.
        ds_factor: the network's output stride.
        beta: F-beta's beta (4 in the challenge).
        sweep: pick the best threshold per class (else use ``thresholds``).
        tie_break: which of equally good thresholds to keep (``metrics.sweep_thresholds``).
        cross_class_fraction: cross-class suppression distance (0: off); default: inference's
            (:data:`cryo3d.peaks.CROSS_CLASS_FRACTION`).
        matching: ``"czii"`` (the challenge's rule) or ``"greedy"``.
    """

    def __init__(
        self,
        gt: str | Picks,
        names: Sequence[str],
        particles: ParticleSet,
        voxel_spacing: float,
        ds_factor: int,
        beta: float = 4.0,
        sweep: bool = True,
        thresholds: float | Sequence[float] = 0.3,
        base_threshold: float = 0.05,
        min_distance_fraction: float = 0.6,
        max_peaks: int = 5000,
        tie_break: str = "low",
        cross_class_fraction: float | None = None,
        matching: str = "czii",
        output_transform: Callable = lambda out: (out["pred"], out["label"]),
        device: str | torch.device = "cpu",
    ) -> None:
        from cryo3d.io.picks import read_picks

        self.gt = read_picks(gt) if not isinstance(gt, Picks) else gt
        self.names = list(names)
        self.particles = particles
        self.voxel_spacing = float(voxel_spacing)
        self.ds_factor = int(ds_factor)
        self.beta = float(beta)
        self.sweep = sweep
        self.thresholds = thresholds
        self.base_threshold = float(base_threshold)
        self.min_distance_fraction = float(min_distance_fraction)
        self.max_peaks = max_peaks
        self.tie_break = tie_break
        if cross_class_fraction is None:  # the same as inference's default
            from cryo3d.peaks import CROSS_CLASS_FRACTION as cross_class_fraction
        self.cross_class_fraction = float(cross_class_fraction)
        self.matching = matching
        # thresholds tried per class: coarse below 0.95, fine above (confident models pile up there)
        self.sweep_grid = np.unique(np.round(np.r_[np.arange(base_threshold, 0.95, 0.025),
                                                   np.linspace(0.95, 0.995, 10)], 4))
        self.last: dict = {}
        self.last_picks: Picks | None = None
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self._picks: list[Picks] = []
        self._seen: list[str] = []

    def update(self, output: Any) -> None:
        from cryo3d.inference import select_peaks
        from cryo3d.peaks import find_peaks, peaks_to_picks

        y_pred, y = output
        min_dist = coords.length_to_voxels(self.min_distance_fraction * self.particles.radii,
                                           self.voxel_spacing, self.ds_factor)
        low = self.base_threshold if self.sweep else self.thresholds
        for b in range(y_pred.shape[0]):
            name = self.names[int(torch.as_tensor(y[b]).reshape(-1)[0])]
            hm = y_pred[b].detach().float()
            c, lab, sc = find_peaks(hm, low, min_dist)
            keep = select_peaks(c, lab, sc, tuple(hm.shape[1:]), self.particles, self.voxel_spacing, self.ds_factor,
                                self.cross_class_fraction, where=f"validation tomogram {name}",
                                max_peaks=self.max_peaks)
            c, lab, sc = c[keep], lab[keep], sc[keep]
            self._picks.append(peaks_to_picks(c, lab, sc, name, self.particles, self.voxel_spacing, self.ds_factor))
            self._seen.append(name)

    def compute(self) -> float:
        from cryo3d.metrics import score_picks, sweep_thresholds

        pred = Picks.concat(self._picks)
        gt = self.gt.select(np.isin(self.gt.tomo, self._seen))
        if self.sweep:
            sw = sweep_thresholds(pred, gt, self.particles, thresholds=self.sweep_grid, beta=self.beta,
                                  matching=self.matching, tomograms=self._seen, tie_break=self.tie_break)
            thr = [sw["best_threshold"][n] for n in self.particles.names]
            res = sw["result"]
            unlearned = list(sw["unlearned"])
        else:
            thr = list(np.broadcast_to(np.asarray(self.thresholds, float), (len(self.particles),)))
            keep = pred.score >= np.asarray(thr)[self.particles.indices(pred.cls)] if len(pred) else np.zeros(0, bool)
            res = score_picks(pred.select(keep), gt, self.particles, beta=self.beta, matching=self.matching,
                              tomograms=self._seen)
            unlearned = [c.name for c in res.per_class if c.tp == 0]
        self.last_picks = pred  # every peak of this validation (the training report draws them)
        self.last = {
            "score": float(res.score),
            "thresholds": [float(t) for t in thr],
            "per_class": {c.name: {"precision": c.precision, "recall": c.recall, "fbeta": c.fbeta,
                                   "tp": c.tp, "fp": c.fp, "fn": c.fn} for c in res.per_class},
            "table": res.table() + (f"\nnot learned (no true positive at any threshold): {', '.join(unlearned)}"
                                    if unlearned else ""),
            "unlearned": unlearned,
        }
        if unlearned:
            import logging

            logging.getLogger("cryo3d").warning(
                "validation: no true positive at any threshold for %s (not learned yet, or absent from the "
                "validation tomograms); threshold kept at %s", ", ".join(unlearned),
                ", ".join(f"{t:g}" for n, t in zip(self.particles.names, thr) if n in unlearned))
        return float(res.score)


def make_loss(kind: str = "combined", fuzzy_weight: float = 1.0, pos_weight: Any = None, beta: float = 1.0,
              **kwargs: Any) -> torch.nn.Module:
    """:func:`cryo3d.losses.build_loss` given only the arguments its kind takes.

    A bundle names every loss setting once at the top; this drops the ones that do not
    apply (``fuzzy_weight`` for ``bce``, ``pos_weight`` for ``fuzzy``, ``beta`` for ``bce``).
    """
    from cryo3d.losses import build_loss

    args: dict[str, Any] = dict(kwargs)
    if kind in ("fuzzy", "combined"):
        args["beta"] = beta
    if kind == "combined":
        args["fuzzy_weight"] = fuzzy_weight
    if kind in ("bce", "combined") and pos_weight is not None:
        args["pos_weight"] = pos_weight
    return build_loss(kind, **args)


class MetricTableHandler:
    """After each validation: log the per-class table, write it to ``val_metrics.jsonl`` and TensorBoard.

    Args:
        metric: the evaluator's :class:`ParticleFBeta` (its ``last`` result is read).
        output_dir: folder of ``val_metrics.jsonl`` (one JSON line per validation).
        summary_writer: optional TensorBoard ``SummaryWriter`` (else one in ``output_dir/tensorboard``).
        trainer: optional trainer engine, to record its epoch.
    """

    def __init__(self, metric: ParticleFBeta, output_dir: str, summary_writer: Any = None, trainer: Any = None) -> None:
        self.metric = metric
        self.output_dir = Path(output_dir)
        self.writer = summary_writer
        self.trainer = trainer

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        import logging

        last = self.metric.last
        if not last:
            return
        epoch = None
        if self.trainer is not None:
            epoch = int(self.trainer.state.epoch)
        elif getattr(engine.state, "epoch", None) is not None:
            epoch = int(engine.state.epoch)
        logging.getLogger("cryo3d").info("validation particle F-beta (epoch %s):\n%s", epoch, last["table"])
        self.output_dir.mkdir(parents=True, exist_ok=True)
        rec = {"epoch": epoch, "score": last["score"], "thresholds": last["thresholds"], "per_class": last["per_class"]}
        with open(self.output_dir / "val_metrics.jsonl", "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        step = epoch if epoch is not None else 0
        for name, v in last["per_class"].items():
            self.writer.add_scalar(f"val_fbeta/{name}", v["fbeta"], step)
        self.writer.flush()


class CheckpointMeta:
    """Settings a checkpoint carries for ``cryo3d predict`` (has ``state_dict`` for ``CheckpointSaver``).

    Args:
        network: the network config dict (as given to ``cryo3d.networks.build_network``).
        particles: the class set.
        voxel_spacing, patch_size, ds_factor: the training geometry.
        metric: a :class:`ParticleFBeta` whose best thresholds are saved when known.
    """

    def __init__(self, network: dict, particles: ParticleSet, voxel_spacing: float,
                 patch_size: int | Sequence[int], ds_factor: int, metric: ParticleFBeta | None = None) -> None:
        self.network = dict(network)
        self.particles = particles
        self.voxel_spacing = float(voxel_spacing)
        ps = patch_size
        self.patch_size = [int(ps)] * 3 if np.isscalar(ps) else [int(p) for p in ps]
        self.ds_factor = int(ds_factor)
        self.metric = metric

    def state_dict(self) -> dict:
        d = {
            "network": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.network.items()},
            "particles": self.particles.to_dict(),
            "voxel_spacing": self.voxel_spacing,
            "patch_size": self.patch_size,
            "ds_factor": self.ds_factor,
        }
        if self.metric is not None and self.metric.last.get("thresholds"):
            d["thresholds"] = self.metric.last["thresholds"]
            d["val_score"] = self.metric.last["score"]
            d["unlearned_classes"] = list(self.metric.last.get("unlearned", []))
        # plain JSON types only, so the checkpoint loads with torch.load(weights_only=True)
        from cryo3d.io.atomic import json_default

        return json.loads(json.dumps(d, default=json_default))

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore: the bundle config defines the settings."""


def latest_checkpoint(folder: str | os.PathLike, prefix: str = "last") -> str | None:
    """Path of the newest ``<prefix>*.pt`` checkpoint in ``folder`` (by iteration in its name), or None."""
    d = Path(folder)
    if not d.is_dir():
        return None
    from cryo3d.checkpoints import is_complete_checkpoint

    # a file cut short by a kill (older writers were not atomic) is skipped, not resumed from
    cands = [p for p in sorted(d.glob(f"{prefix}*.pt")) if is_complete_checkpoint(p)]
    if not cands:
        return None

    def it(p: Path) -> int:
        m = re.findall(r"(\d+)", p.stem)
        return int(m[-1]) if m else -1

    return str(max(cands, key=lambda p: (it(p), p.stat().st_mtime)))


def run_training(
    overrides: dict | None = None,
    config_file: str | Sequence[str] | None = None,
    meta_file: str | None = None,
    evaluator_handlers: Sequence[Any] = (),
    trainer_handlers: Sequence[Any] = (),
    logging_file: str | bool | None = None,
) -> dict:
    """Run the training bundle in this process with overrides; return its validation history.

    This is how experiments (Optuna trials, ablations, cross-validation folds) train: the
    same ``train.yaml`` as ``python -m monai.bundle run training``, with any top-level key
    overridden (``{"loss_kind": "bce", "output_dir": ...}``) and extra ignite handlers
    attached to the evaluator (e.g. an Optuna pruning handler) or the trainer.

    Returns
    -------
    dict
        ``best`` (best validation F-beta), ``history`` (the ``val_metrics.jsonl`` records of
        this output folder, one per validation), ``output_dir``, ``best_checkpoint``.
    """
    from monai.bundle import ConfigWorkflow

    overrides = dict(overrides or {})
    cfg = config_files(config_file)
    meta = meta_file or str(config_path("metadata.json"))
    wf = ConfigWorkflow(config_file=cfg, meta_file=meta, logging_file=logging_file, run_id="training",
                        workflow_type=None, **overrides)
    wf.initialize()
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    trainer = wf.parser.get_parsed_content("trainer")
    for h in evaluator_handlers:
        h.attach(evaluator)
    for h in trainer_handlers:
        h.attach(trainer)
    try:
        wf.run()
    finally:
        wf.finalize()
    out = Path(wf.parser.get_parsed_content("output_dir"))
    hist_path = out / "val_metrics.jsonl"
    history = [json.loads(x) for x in hist_path.read_text().splitlines() if x.strip()] if hist_path.exists() else []
    best = max((h["score"] for h in history), default=float("nan"))
    ck = out / "checkpoints" / "best.pt"
    return {"best": best, "history": history, "output_dir": str(out),
            "best_checkpoint": str(ck) if ck.exists() else None}

"""Experiments on the training bundle: k-fold splits, ablation grids, across-epoch evaluation.

The questions cryo3d exists to answer (does the combined BCE + fuzzy loss beat BCE, learn
faster and over-fit less; which beta and beta schedule; does SE help; which FPN fusion)
are each one command of ``scripts/`` built on this module:

* ``scripts/ablation.py`` -> :func:`run_ablation`: named groups of bundle overrides,
  all trained on fold 0 of the same data; one CSV row per run, a markdown table, plots.
* ``scripts/cross_validate.py`` -> :func:`run_cross_validation`: k folds by tomogram;
  per-class F-beta mean +/- std over folds.
* ``scripts/eval_epochs.py`` -> :func:`evaluate_epochs`: every per-epoch checkpoint of
  a run on its validation tomograms and on out-of-distribution ones (CSV, PNG, TensorBoard).

Every run trains through :func:`cryo3d.training.run_training` (the same ``train.yaml``
as ``python -m monai.bundle run training``) with two extra trainer handlers:
:class:`EpochLossRecorder` (mean training loss per epoch) and :class:`EpochCheckpointer`
(the network and its ``cryo3d`` settings after every epoch, for across-epoch evaluation).

Run folder layout (``RUN`` is the folder given to a script)::

    RUN/folds.json                 k, seed, tomograms, the validation tomograms of each fold
    RUN/data/fold_<i>/             the dataset folder of fold i: links to the source's
                                   tomograms/ and picks.csv, and its own patch store
    RUN/runs/<name>/ or RUN/fold_<i>/   one training output folder (bundle output_dir):
        experiment.json            the overrides it was trained with
        result.json                written when training finished (a rerun skips it)
        val_metrics.jsonl          the bundle's validation records (one per validation)
        train_loss.jsonl           mean training loss per epoch
        epochs/epoch_<N>.pt        per-epoch checkpoints (``cryo3d predict`` reads them)
        epoch_eval/                across-epoch evaluation: CSV, PNG, TensorBoard
    RUN/ood/                       default out-of-distribution tomograms (made once)

Why split views: the bundle's patch store is keyed by geometry only and holds the
training tomograms of one split, so each fold gets its own dataset folder whose
``tomograms/`` and ``picks.csv`` are links to one source folder (nothing is copied).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from cryo3d.io.atomic import json_default, write_json_atomic, write_text_atomic
from cryo3d.workflows.bundle import parse_bundle

logger = logging.getLogger("cryo3d.experiments")

#: Fraction of a run's best validation score that counts as converged.
CONVERGENCE_FRACTION = 0.95

#: Reduced training budget of experiments on a CPU (the bundle's own default is 15 x 40).
DEFAULT_BUDGET = {"max_epochs": 8, "epoch_length": 20, "val_interval": 1}

#: Out-of-distribution default for across-epoch evaluation: lower SNR, narrower wedge, more crowded.
OOD_DEFAULTS = {"snr": (0.2, 0.4), "tilt_range": (40.0, 45.0), "particles_per_class": (20, 28), "seed": 1000}

#: Files of a dataset folder that a split view links to (when the source has them).
VIEW_ITEMS = ("tomograms", "picks.csv", "particles.yaml", "manifest.json")

TrainFn = Callable[..., dict]


# =============================================================================== small I/O helpers




def _read_jsonl(path: str | os.PathLike) -> list[dict]:
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], fields: Sequence[str] | None = None) -> None:
    """Write ``rows`` as a CSV table atomically; columns are ``fields`` or the union of the rows' keys in order."""
    if fields is None:
        fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k)) for k in fields})
    write_text_atomic(path, buf.getvalue())


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=json_default)
    return v


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV table as dicts of strings (empty list when the file does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    with open(p, newline="") as fh:
        return list(csv.DictReader(fh))


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> overrides, each value read as YAML (``1e-3``, ``null``, ``{se: false}``)."""
    import yaml

    out: dict[str, Any] = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"--set expects KEY=VALUE (a bundle key and a YAML value), got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


# =============================================================================== data: source, folds, views


def source_tomograms(
    dataset_dir: str | os.PathLike,
    n_synth: int = 5,
    synth_shape: Sequence[int] = (184, 256, 256),
    synth_preset: str = "default",
    seed: int = 0,
    progress: bool = True,
) -> list[str]:
    """Names of the tomograms of a dataset folder, simulating them first when it has none.

    The folder is the bundle's layout (``tomograms/`` + ``picks.csv``). An empty or
    missing one is filled with ``n_synth`` synthetic tomograms exactly as the bundle's
    ``ensure_data`` would (same preset, shape and seed).

    Returns
    -------
    list of str
        Sorted tomogram names (file stems).
    """
    from cryo3d.io.tomogram import find_tomograms, tomogram_name
    from cryo3d.synth import SynthConfig, synthesize

    d = Path(dataset_dir)
    tdir = d / "tomograms"
    if not (tdir.is_dir() and any(tdir.iterdir())):
        cfg = SynthConfig.preset(synth_preset, shape=tuple(int(s) for s in synth_shape), seed=seed)
        synthesize(d, n_synth, cfg, progress=progress)
    if not (d / "picks.csv").exists():
        raise FileNotFoundError(f"{d / 'picks.csv'}: the dataset folder needs picks.csv (tomo,class,x,y,z in Angstrom)")
    names = [tomogram_name(p) for p in find_tomograms([str(tdir)])]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{tdir}: tomogram names must be unique, {dup} appear more than once")
    return sorted(names)


def make_folds(names: Sequence[str], k: int = 4, seed: int = 0) -> list[list[str]]:
    """Split tomograms into ``k`` folds: the validation tomograms of each fold.

    Every tomogram is in exactly one fold; fold sizes differ by at most one. The split is
    a seeded permutation of the sorted names, so it depends only on the set of names,
    ``k`` and ``seed``. Fold ``i`` trains on all other tomograms.

    Raises
    ------
    ValueError
        When ``k < 2``, names repeat, or there are fewer than ``k`` tomograms.
    """
    k = int(k)
    if k < 2:
        raise ValueError(f"k must be at least 2 for k-fold cross-validation, got {k}")
    uniq = sorted(set(names))
    if len(uniq) != len(names):
        raise ValueError(f"tomogram names must be unique, got {sorted(names)}")
    if len(uniq) < k:
        raise ValueError(
            f"{k}-fold cross-validation needs at least {k} tomograms (one per fold), got {len(uniq)}: {uniq}; "
            "lower --k or add tomograms (--n-synth for the built-in data, in a fresh --dataset-dir)"
        )
    order = np.random.default_rng(seed).permutation(len(uniq))
    return [sorted(uniq[i] for i in order[j::k]) for j in range(k)]


def check_folds(folds: Sequence[Sequence[str]], names: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``folds`` partition ``names`` (each in exactly one fold, none empty)."""
    seen: dict[str, int] = {}
    for i, f in enumerate(folds):
        if not f:
            raise ValueError(f"fold {i} has no validation tomogram")
        for n in f:
            if n in seen:
                raise ValueError(f"tomogram {n!r} is in folds {seen[n]} and {i}; each must be in exactly one")
            seen[n] = i
    unknown = sorted(set(seen) - set(names))
    missing = sorted(set(names) - set(seen))
    if unknown or missing:
        raise ValueError(f"folds do not partition the tomograms: unknown {unknown}, in no fold {missing}")


def ensure_folds(path: str | os.PathLike, names: Sequence[str], k: int = 4, seed: int = 0) -> list[list[str]]:
    """The folds stored at ``path`` (``folds.json``), made and stored first when absent.

    A stored file made from other tomograms, ``k`` or ``seed`` is an error (a run folder
    keeps one split so that resumed and added runs stay comparable).
    """
    p = Path(path)
    if p.exists():
        rec = json.loads(p.read_text())
        if rec.get("k") != int(k) or rec.get("seed") != int(seed) or sorted(rec.get("tomograms", [])) != sorted(names):
            raise ValueError(
                f"{p}: folds made with k={rec.get('k')}, seed={rec.get('seed')} of tomograms {rec.get('tomograms')}; "
                f"asked for k={k}, seed={seed} of {sorted(names)}; use another run folder"
            )
        folds = [list(f) for f in rec["folds"]]
        check_folds(folds, names)
        return folds
    folds = make_folds(names, k, seed)
    check_folds(folds, names)
    write_json_atomic(p, {"k": int(k), "seed": int(seed), "tomograms": sorted(names), "folds": folds})
    return folds


def split_view(source: str | os.PathLike, view: str | os.PathLike) -> Path:
    """A dataset folder for one split: links to ``source``'s tomograms and picks, its own store.

    The bundle cuts the patch store from the training tomograms of its split, so two
    splits of one folder need two stores; a view shares everything else. Idempotent; a
    link that points elsewhere is an error.
    """
    src, dst = Path(source).resolve(), Path(view)
    dst.mkdir(parents=True, exist_ok=True)
    for item in VIEW_ITEMS:
        s, d = src / item, dst / item
        if not s.exists():
            continue
        if d.is_symlink() or d.exists():
            if not d.is_symlink() or Path(os.readlink(d)).resolve() != s:
                raise ValueError(f"{d}: expected a link to {s}; this view belongs to another dataset, "
                                 "use another run folder")
            continue
        os.symlink(s, d, target_is_directory=s.is_dir())
    return dst


def fold_overrides(view: str | os.PathLike, val_tomograms: Sequence[str]) -> dict:
    """Bundle overrides that train on a split view, validating on ``val_tomograms``."""
    return {"dataset_dir": os.path.abspath(view), "val_tomograms": list(val_tomograms)}


def check_no_leak(view: str | os.PathLike, val_tomograms: Sequence[str]) -> None:
    """Raise ``ValueError`` if a patch store of the view holds a validation tomogram."""
    for man in sorted((Path(view) / "store").glob("*/manifest.json")):
        held = {t["name"] for t in json.loads(man.read_text()).get("tomograms", [])}
        leak = sorted(held & set(val_tomograms))
        if leak:
            raise ValueError(f"{man.parent}: validation tomograms {leak} are in the training store")


# =============================================================================== run summaries


def _by_epoch(history: Sequence[Mapping]) -> list[dict]:
    """Validation records in epoch order, one per epoch (a re-validated epoch keeps its last record)."""
    recs: dict[int, dict] = {}
    for i, h in enumerate(history):
        e = h.get("epoch")
        recs[int(e) if e is not None else i + 1] = dict(h)
    return [dict(recs[e], epoch=e) for e in sorted(recs)]


def epochs_to_convergence(history: Sequence[Mapping], fraction: float = CONVERGENCE_FRACTION) -> int | None:
    """First epoch whose validation score reaches ``fraction`` of the run's best; None if the best is not > 0."""
    recs = _by_epoch(history)
    if not recs:
        return None
    best = max(r["score"] for r in recs)
    if not best > 0:
        return None
    return next(r["epoch"] for r in recs if r["score"] >= fraction * best)


def summarize_history(history: Sequence[Mapping], fraction: float = CONVERGENCE_FRACTION) -> dict:
    """One run's validation history in a few numbers.

    Returns
    -------
    dict
        ``best`` (score) and ``best_epoch`` (first epoch reaching it), ``final`` and
        ``final_epoch`` (last validation), ``drop`` (``best - final``: over-fitting shows
        as a large drop), ``epochs_to_conv`` (:func:`epochs_to_convergence`),
        ``n_validations``, and ``f_<class>``: each class's F-beta at the best epoch.
        NaN / None when there was no validation.
    """
    recs = _by_epoch(history)
    if not recs:
        return {"best": float("nan"), "best_epoch": None, "final": float("nan"), "final_epoch": None,
                "drop": float("nan"), "epochs_to_conv": None, "n_validations": 0}
    best = max(recs, key=lambda r: r["score"])  # max keeps the first of equal scores
    out = {
        "best": float(best["score"]), "best_epoch": best["epoch"],
        "final": float(recs[-1]["score"]), "final_epoch": recs[-1]["epoch"],
        "drop": float(best["score"] - recs[-1]["score"]),
        "epochs_to_conv": epochs_to_convergence(recs, fraction),
        "n_validations": len(recs),
    }
    for cls, v in (best.get("per_class") or {}).items():
        out[f"f_{cls}"] = float(v["fbeta"])
    return out


# =============================================================================== trainer handlers


class EpochLossRecorder:
    """Trainer handler: the mean training loss of every epoch, appended to ``<output_dir>/train_loss.jsonl``.

    Records ``{"epoch": N, "loss": mean, "iterations": n}``; the loss is read from the
    trainer's output (``engine.state.output["loss"]`` for MONAI's ``SupervisedTrainer``).
    """

    def __init__(self, output_dir: str | os.PathLike,
                 output_transform: Callable[[Any], Any] = lambda out: out["loss"]) -> None:
        self.path = Path(output_dir) / "train_loss.jsonl"
        self.output_transform = output_transform
        self._sum, self._n = 0.0, 0

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Any) -> None:
        self._sum, self._n = 0.0, 0

    def _update(self, engine: Any) -> None:
        v = self.output_transform(engine.state.output)
        self._sum += float(v.item() if hasattr(v, "item") else v)
        self._n += 1

    def _write(self, engine: Any) -> None:
        if not self._n:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rec = {"epoch": int(engine.state.epoch), "loss": self._sum / self._n, "iterations": self._n}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")


class EpochCheckpointer:
    """Trainer handler: after every ``every``-th epoch, save ``<save_dir>/epoch_<N>.pt``.

    The file is what ``cryo3d.inference.load_checkpoint_model`` and ``cryo3d predict``
    read: ``{"network": state dict, "cryo3d": settings}``, the settings made by
    :class:`cryo3d.training.CheckpointMeta` like the bundle's own checkpoints. The bundle
    keeps only its last checkpoint, hence this handler.

    Where the settings come from: the geometry and classes from the trainer's patch store
    (``engine.data_loader.dataset.store``: particles, voxel spacing, patch size, ds_factor),
    the network from ``network`` (the bundle keys ``network_name``, ``prior`` and
    ``network_overrides``, see :func:`bundle_values`), and the per-class thresholds from the
    epoch's record in ``metrics_path`` (the bundle's ``val_metrics.jsonl``; the validation
    handler runs before this one) when that epoch was validated.

    Args:
        save_dir: folder of the checkpoints.
        network: ``{"name": ..., "prior": ..., **overrides}`` (without channels and ds_factor).
        metrics_path: the run's ``val_metrics.jsonl``.
        every: save every this many epochs (the last epoch is always saved).
    """

    def __init__(self, save_dir: str | os.PathLike, network: Mapping[str, Any],
                 metrics_path: str | os.PathLike | None = None, every: int = 1) -> None:
        self.save_dir = Path(save_dir)
        self.network = dict(network)
        self.metrics_path = Path(metrics_path) if metrics_path is not None else None
        self.every = max(1, int(every))

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def meta(self, engine: Any) -> dict:
        """The ``cryo3d`` settings dict of a checkpoint saved now."""
        from cryo3d.training import CheckpointMeta

        store = engine.data_loader.dataset.store
        net = {"name": self.network["name"], "in_channels": 1, "out_channels": len(store.particles),
               "ds_factor": store.ds_factor,
               **{k: v for k, v in self.network.items() if k != "name"}}
        meta = CheckpointMeta(net, store.particles, store.voxel_spacing, store.manifest["patch_size"],
                              store.ds_factor).state_dict()
        epoch = int(engine.state.epoch)
        recs = [r for r in _read_jsonl(self.metrics_path) if r.get("epoch") == epoch] if self.metrics_path else []
        if recs:
            meta["thresholds"] = [float(t) for t in recs[-1]["thresholds"]]
            meta["val_score"] = float(recs[-1]["score"])
        meta["epoch"] = epoch
        return meta

    def __call__(self, engine: Any) -> None:
        import torch

        epoch = int(engine.state.epoch)
        last = engine.state.max_epochs is not None and epoch >= engine.state.max_epochs
        if epoch % self.every and not last:
            return
        net = engine.network
        net = getattr(net, "module", net)  # DistributedDataParallel
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        self.save_dir.mkdir(parents=True, exist_ok=True)
        path = self.save_dir / f"epoch_{epoch}.pt"
        from cryo3d.checkpoints import save_checkpoint

        save_checkpoint({"network": state, "cryo3d": self.meta(engine)}, path)


def bundle_values(overrides: Mapping[str, Any], keys: Sequence[str], config_file: str | None = None) -> dict:
    """Values of plain top-level bundle keys after ``overrides`` (the bundle's defaults otherwise).

    Only keys that do not depend on the data (``network_name``, ``prior``, ``n_val``, ...).
    """
    p = parse_bundle(config_file)
    out = {}
    for k in keys:
        out[k] = overrides[k] if k in overrides else p.get_parsed_content(k)
    return out


def checkpoint_paths(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of the ``epoch_<N>.pt`` files in ``folder``, by epoch."""
    out = []
    for p in Path(folder).glob("epoch_*.pt"):
        try:
            out.append((int(p.stem.split("_", 1)[1]), p))
        except ValueError:
            continue
    return sorted(out)


# =============================================================================== one training run


def train_run(
    overrides: Mapping[str, Any],
    output_dir: str | os.PathLike,
    epoch_checkpoints: bool = True,
    train_fn: TrainFn | None = None,
) -> dict:
    """Train the bundle once into ``output_dir`` (skipped when it already finished there).

    Writes ``experiment.json`` (the overrides) first and ``result.json`` when done; a
    killed run resumes from the bundle's last checkpoint when called again.

    Parameters
    ----------
    overrides : dict
        Top-level bundle keys (``output_dir`` is set here).
    epoch_checkpoints : bool
        Attach :class:`EpochCheckpointer` (``output_dir/epochs/epoch_<N>.pt``).
    train_fn : callable, optional
        ``train_fn(overrides, trainer_handlers=[...]) -> {"history": [...], ...}``;
        default :func:`cryo3d.training.run_training` (tests pass a stand-in).

    Returns
    -------
    dict
        ``history`` (validation records), ``best``, ``best_checkpoint``, ``output_dir``,
        ``seconds`` (training time of the call that finished it), ``overrides``.
    """
    from cryo3d.training import run_training

    out = Path(output_dir)
    done = out / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    ov = dict(overrides)
    ov["output_dir"] = str(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "experiment.json", {"overrides": ov})
    handlers: list[Any] = [EpochLossRecorder(out)]
    if epoch_checkpoints:
        v = bundle_values(ov, ["network_name", "prior", "network_overrides"])
        net = {"name": v["network_name"], "prior": v["prior"], **dict(v["network_overrides"] or {})}
        handlers.append(EpochCheckpointer(out / "epochs", net, out / "val_metrics.jsonl"))
    t0 = time.perf_counter()
    res = (train_fn or run_training)(ov, trainer_handlers=handlers)
    history = list(res.get("history") or _read_jsonl(out / "val_metrics.jsonl"))
    result = {
        "history": history,
        "best": max((h["score"] for h in history), default=float("nan")),
        "best_checkpoint": res.get("best_checkpoint"),
        "output_dir": str(out),
        "seconds": round(time.perf_counter() - t0, 1),
        "overrides": ov,
    }
    write_json_atomic(done, result)
    return result


def base_overrides(budget: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> dict:
    """Shared overrides of an experiment: the reduced budget, early stopping off, a beta schedule that fits it.

    Early stopping is off (patience = max_epochs) so that every run's curve is complete
    and over-fitting is visible; the beta schedule ramps 1 -> 4 over the run (the bundle's
    ramp assumes 15 epochs). ``extra`` (e.g. from ``--set``) wins over everything.
    """
    b = dict(DEFAULT_BUDGET)
    b.update({k: v for k, v in (budget or {}).items() if v is not None})
    e = int(b["max_epochs"])
    out = dict(b)
    out["early_stop_patience"] = e
    out["beta_schedule"] = {"kind": "linear", "start": 1.0, "end": 4.0, "total": e, "warmup": min(2, e // 4)}
    out["beta_unit"] = "epoch"  # experiments compare runs of equal epochs, not of equal wall time
    out["time_budget"] = None
    out.update(dict(extra or {}))
    return out


# =============================================================================== ablation grid


@dataclass(frozen=True)
class GridRun:
    """One ablation run: a group (the question), a label (the setting) and its bundle overrides."""

    group: str
    label: str
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.group}-{self.label}"

    @property
    def key(self) -> str:
        """Canonical JSON of the overrides: equal keys train identical configurations."""
        return json.dumps(self.overrides, sort_keys=True, default=json_default)


#: Ablation groups and what they answer.
GROUPS = {
    "se": "does squeeze-and-excitation help? (SE-FPN with SE on / off)",
    "fusion": "which FPN fusion is best? (parallel, cascade, pc)",
    "loss": "BCE vs combined (BCE + fuzzy F-beta) vs fuzzy, constant beta sweep",
    "schedule": "which beta schedule? (combined loss; constant, linear, cosine, step, 1 -> 4)",
}
DEFAULT_GROUPS = ("se", "fusion", "loss")


def ablation_grid(
    groups: Sequence[str] = DEFAULT_GROUPS,
    betas: Sequence[float] = (1.0, 2.0, 4.0),
    network: str = "sefpn-tiny",
    max_epochs: int = DEFAULT_BUDGET["max_epochs"],
) -> list[GridRun]:
    """The built-in grid of the named groups (see :data:`GROUPS`), each run a few overrides.

    ``se`` and ``fusion`` train ``network`` (an SE-FPN preset) with the shared loss;
    ``loss`` and ``schedule`` train the shared network (the bundle's U-Net). SE on with
    ``pc`` fusion appears in both SE and fusion groups; :func:`run_ablation` trains it once.
    """
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown ablation group(s) {unknown}; choose from {sorted(GROUPS)}")
    e = int(max_epochs)
    runs: list[GridRun] = []
    for g in groups:
        if g == "se":
            for se in (True, False):
                runs.append(GridRun(g, "se_on" if se else "se_off",
                                    {"network_name": network, "network_overrides": {"fusion": "pc", "se": se}}))
        elif g == "fusion":
            for fu in ("parallel", "cascade", "pc"):
                runs.append(GridRun(g, fu, {"network_name": network, "network_overrides": {"fusion": fu, "se": True}}))
        elif g == "loss":
            runs.append(GridRun(g, "bce", {"loss_kind": "bce"}))
            for kind in ("combined", "fuzzy"):
                for b in betas:
                    runs.append(GridRun(g, f"{kind}_b{b:g}", {
                        "loss_kind": kind, "beta_schedule": {"kind": "constant", "start": float(b)}}))
        elif g == "schedule":
            warm = min(2, e // 4)
            scheds = {
                "constant": {"kind": "constant", "start": 2.0},
                "linear": {"kind": "linear", "start": 1.0, "end": 4.0, "total": e, "warmup": warm},
                "cosine": {"kind": "cosine", "start": 1.0, "end": 4.0, "total": e, "warmup": warm},
                "step": {"kind": "step", "start": 1.0, "end": 4.0, "total": e, "warmup": warm,
                         "step_size": max(1, (e - warm) // 3)},
            }
            for label, s in scheds.items():
                runs.append(GridRun(g, label, {"loss_kind": "combined", "beta_schedule": s}))
    return runs


def load_grid(path: str | os.PathLike) -> list[GridRun]:
    """A user grid from JSON or YAML: ``{group: {label: {bundle key: value, ...}, ...}, ...}``."""
    import yaml

    p = Path(path)
    spec = yaml.safe_load(p.read_text())
    if not isinstance(spec, dict) or not all(isinstance(v, dict) for v in spec.values()):
        raise ValueError(f"{p}: a grid maps group names to {{label: {{bundle key: value}}}} mappings")
    runs = []
    for g, labels in spec.items():
        for label, ov in labels.items():
            if not isinstance(ov, dict):
                raise ValueError(f"{p}: {g}/{label} must map bundle keys to values, got {ov!r}")
            runs.append(GridRun(str(g), str(label), ov))
    return runs


#: Columns of the ablation results CSV before the per-class ones.
ABLATION_FIELDS = ("group", "label", "run", "output_dir", "best", "best_epoch", "epochs_to_conv", "final",
                   "final_epoch", "drop", "n_validations", "seconds", "overrides")


def _class_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r if k.startswith("f_")))


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


#: Table columns shown as whole numbers.
_INT_KEYS = frozenset({"best_epoch", "final_epoch", "epochs_to_conv", "n_validations", "seconds", "fold", "epoch", "n"})


def _fmt(v: Any, key: str = "", digits: int = 3) -> str:
    x = _num(v)
    if math.isnan(x):
        return "" if v in (None, "") or isinstance(v, float) else str(v)
    if key in _INT_KEYS:
        return str(int(round(x)))
    return f"{x:.{digits}f}"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A GitHub markdown table of ``rows``; ``columns`` are ``(key, header)`` pairs."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    body = ["| " + " | ".join(_fmt(r.get(k), k) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def ablation_markdown(rows: Sequence[Mapping[str, Any]], beta: float = 4.0,
                      fraction: float = CONVERGENCE_FRACTION) -> str:
    """The ablation table: one section per group, best run of a group in bold."""
    classes = _class_columns(rows)
    fb = f"F{beta:g}"
    cols = [("label", "run"), ("best", f"best {fb}"), ("best_epoch", "best epoch"),
            ("epochs_to_conv", f"epochs to {fraction:.0%}"), ("final", f"final {fb}"), ("drop", "drop"),
            ("seconds", "s")] + [(c, c[2:]) for c in classes]
    parts = [f"# Ablation (fold 0)\n\nValidation particle {fb} on the fold-0 validation tomograms, "
             f"thresholds swept per class. `best`: best validation; `epochs to {fraction:.0%}`: first epoch "
             f"reaching {fraction:.0%} of the run's best; `drop`: best - final (over-fitting); per-class "
             f"columns: {fb} at the best epoch.\n"]
    for g in dict.fromkeys(r["group"] for r in rows):
        grp = [dict(r) for r in rows if r["group"] == g]
        scores = [_num(r.get("best")) for r in grp]
        valid = [s for s in scores if not math.isnan(s)]
        if valid and valid.count(max(valid)) == 1:  # bold a unique best only
            i = scores.index(max(valid))
            grp[i]["label"] = f"**{grp[i]['label']}**"
        title = GROUPS.get(g, "")
        parts.append(f"## {g}" + (f": {title}" if title else "") + "\n\n" + markdown_table(grp, cols) + "\n")
    return "\n".join(parts)


def _result_row(run: GridRun, result: Mapping[str, Any], run_dir: Path, fraction: float) -> dict:
    s = summarize_history(result.get("history", []), fraction)
    out_dir = Path(result["output_dir"])
    try:
        rel = str(out_dir.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        rel = str(out_dir)
    row = {"group": run.group, "label": run.label, "run": run.name, "output_dir": rel,
           "seconds": result.get("seconds"), "overrides": dict(run.overrides)}
    row.update(s)
    return row


def run_ablation(
    run_dir: str | os.PathLike,
    grid: Sequence[GridRun],
    base: Mapping[str, Any],
    dataset_dir: str | os.PathLike,
    k: int = 4,
    seed: int = 0,
    synth: Mapping[str, Any] | None = None,
    epoch_checkpoints: bool = True,
    train_fn: TrainFn | None = None,
    fraction: float = CONVERGENCE_FRACTION,
    metric_beta: float = 4.0,
    progress: bool = True,
) -> list[dict]:
    """Train every run of ``grid`` on fold 0 and write the table and plots. Resumable.

    Every run uses the same data, the same fold-0 split of :func:`make_folds` (``k``,
    ``seed``; stored in ``run_dir/folds.json``) and ``base`` under its own overrides.
    Runs whose row is in ``run_dir/results.csv`` are skipped; runs with identical overrides
    train once. Writes after every run: ``results.csv`` (atomically), ``results.md`` and
    ``plots/<group>.png`` (training loss and validation F-beta against epoch).

    Parameters
    ----------
    synth : dict, optional
        ``n_synth``, ``synth_shape``, ``synth_preset`` for :func:`source_tomograms` when
        ``dataset_dir`` is empty.

    Returns
    -------
    list of dict
        The result rows in grid order.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    names = dict.fromkeys(r.name for r in grid)
    if len(names) != len(grid):
        raise ValueError("ablation grid: run names (group-label) must be unique")
    synth = dict(synth or {})
    tomos = source_tomograms(dataset_dir, seed=seed, progress=progress, **synth)
    folds = ensure_folds(run_dir / "folds.json", tomos, k, seed)
    view = split_view(dataset_dir, run_dir / "data" / "fold_0")
    shared = dict(base)
    shared.update(fold_overrides(view, folds[0]))
    csv_path = run_dir / "results.csv"
    rows = {r["run"]: dict(r) for r in read_csv(csv_path)}
    first_dir: dict[str, Path] = {}
    errors = []
    for i, run in enumerate(grid):
        out = first_dir.setdefault(run.key, run_dir / "runs" / run.name)
        if run.name in rows:
            continue
        logger.info("ablation run %d/%d: %s %s", i + 1, len(grid), run.name, run.key)
        try:
            res = train_run({**shared, **run.overrides}, out, epoch_checkpoints, train_fn)
        except Exception as ex:  # keep going: one broken setting should not lose the grid
            logger.exception("ablation run %s failed", run.name)
            errors.append(f"{run.name}: {type(ex).__name__}: {ex}")
            continue
        check_no_leak(view, folds[0])
        rows[run.name] = _result_row(run, res, run_dir, fraction)
        _write_ablation_outputs(run_dir, grid, rows, metric_beta, fraction)
    _write_ablation_outputs(run_dir, grid, rows, metric_beta, fraction)
    if errors:
        write_text_atomic(run_dir / "errors.log", "\n".join(errors) + "\n")
        raise RuntimeError(f"{len(errors)} ablation run(s) failed (see {run_dir / 'errors.log'}): " + "; ".join(errors))
    return [rows[r.name] for r in grid if r.name in rows]


def _write_ablation_outputs(run_dir: Path, grid: Sequence[GridRun], rows: Mapping[str, dict],
                            metric_beta: float, fraction: float) -> None:
    ordered = [rows[r.name] for r in grid if r.name in rows]
    ordered += [r for n, r in rows.items() if n not in {g.name for g in grid}]  # rows of an earlier, larger grid
    if not ordered:
        return
    fields = list(ABLATION_FIELDS) + _class_columns(ordered)
    write_csv(run_dir / "results.csv", ordered, fields)
    write_text_atomic(run_dir / "results.md", ablation_markdown(ordered, metric_beta, fraction))
    for g in dict.fromkeys(r["group"] for r in ordered):
        curves = [(r["label"], run_dir / r["output_dir"] if not Path(r["output_dir"]).is_absolute()
                   else Path(r["output_dir"])) for r in ordered if r["group"] == g]
        plot_training_curves(curves, run_dir / "plots" / f"{g}.png", title=f"ablation: {g}", metric_beta=metric_beta)


# =============================================================================== plots


def _figure(ncols: int, width: float = 5.0, height: float = 3.8) -> tuple[Any, Any]:
    """A matplotlib figure drawn by the Agg canvas (no display, no global backend switch)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def plot_training_curves(runs: Sequence[tuple[str, str | os.PathLike]], path: str | os.PathLike,
                         title: str = "", metric_beta: float = 4.0) -> Path:
    """Training loss and validation F-beta against epoch, one line per run folder, as a PNG.

    ``runs`` are ``(label, output_dir)`` pairs (folders with ``train_loss.jsonl`` and
    ``val_metrics.jsonl``). Different losses have different scales (BCE ~0.01, the fuzzy
    term ~1), so each loss curve is divided by its first epoch's value (given in the
    legend): the shape (how fast, whether it flattens) is what to compare.
    """
    from matplotlib.ticker import MaxNLocator

    fig, (ax_l, ax_f) = _figure(2)
    for label, d in runs:
        tl = _read_jsonl(Path(d) / "train_loss.jsonl")
        if tl:
            by = {r["epoch"]: r["loss"] for r in tl}
            ep = sorted(by)
            ref = by[ep[0]] if by[ep[0]] else 1.0
            ax_l.plot(ep, [by[e] / ref for e in ep], marker=".", label=f"{label} (epoch {ep[0]}: {by[ep[0]]:.3g})")
        vh = _by_epoch(_read_jsonl(Path(d) / "val_metrics.jsonl"))
        if vh:
            ax_f.plot([r["epoch"] for r in vh], [r["score"] for r in vh], marker="o", label=label)
    ax_l.set(xlabel="epoch", ylabel="mean training loss / first epoch's", title="training loss (relative)")
    ax_f.set(xlabel="epoch", ylabel=f"validation F{metric_beta:g}", title=f"validation F{metric_beta:g}",
             ylim=(-0.02, 1.02))
    for ax in (ax_l, ax_f):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=100)
    return p


# =============================================================================== cross-validation


def cv_summary(fold_rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Mean and standard deviation over folds of the weighted score and each class's F-beta.

    Rows ``{"metric", "mean", "std", "n"}``: ``best`` and ``final`` scores and ``f_<class>``
    (at each fold's best epoch). ``std`` is the sample standard deviation (``ddof=1``;
    0 for one fold).
    """
    out = []
    for key in ["best", "final"] + _class_columns(fold_rows):
        v = np.array([_num(r.get(key)) for r in fold_rows], dtype=float)
        v = v[~np.isnan(v)]
        out.append({"metric": key, "mean": float(v.mean()) if v.size else float("nan"),
                    "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)})
    return out


def run_cross_validation(
    run_dir: str | os.PathLike,
    base: Mapping[str, Any],
    dataset_dir: str | os.PathLike,
    k: int = 4,
    seed: int = 0,
    synth: Mapping[str, Any] | None = None,
    folds_to_run: Sequence[int] | None = None,
    epoch_checkpoints: bool = True,
    train_fn: TrainFn | None = None,
    fraction: float = CONVERGENCE_FRACTION,
    metric_beta: float = 4.0,
    progress: bool = True,
) -> dict:
    """k-fold cross-validation by tomogram: train each fold, then the per-class mean +/- std. Resumable.

    Folds come from :func:`make_folds` and are stored in ``run_dir/folds.json``; fold
    ``i`` validates on its tomograms and trains on all others (checked: no validation
    tomogram is in its patch store). With the built-in data, an empty ``dataset_dir`` is
    filled with ``max(n_synth, k)`` synthetic tomograms.

    Writes ``cv_folds.csv`` (one row per fold), ``cv_summary.csv`` and ``cv.md`` (mean
    +/- std) and ``plots/cv_curves.png``.

    Returns
    -------
    dict
        ``folds`` (validation tomograms), ``rows`` (per fold), ``summary``, ``run_dir``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    synth = dict(synth or {})
    synth["n_synth"] = max(int(synth.get("n_synth", 5)), int(k))
    tomos = source_tomograms(dataset_dir, seed=seed, progress=progress, **synth)
    folds = ensure_folds(run_dir / "folds.json", tomos, k, seed)
    todo = list(range(len(folds))) if folds_to_run is None else [int(i) for i in folds_to_run]
    bad = [i for i in todo if not 0 <= i < len(folds)]
    if bad:
        raise ValueError(f"folds {bad} do not exist; k = {len(folds)}")
    rows = []
    for i in todo:
        view = split_view(dataset_dir, run_dir / "data" / f"fold_{i}")
        ov = dict(base)
        ov.update(fold_overrides(view, folds[i]))
        logger.info("cross-validation fold %d/%d: validating on %s", i + 1, len(folds), folds[i])
        res = train_run(ov, run_dir / f"fold_{i}", epoch_checkpoints, train_fn)
        check_no_leak(view, folds[i])
        row = {"fold": i, "val_tomograms": " ".join(folds[i]), "output_dir": f"fold_{i}",
               "seconds": res.get("seconds")}
        row.update(summarize_history(res.get("history", []), fraction))
        rows.append(row)
    summary = cv_summary(rows)
    write_csv(run_dir / "cv_folds.csv", rows)
    write_csv(run_dir / "cv_summary.csv", summary, ["metric", "mean", "std", "n"])
    write_text_atomic(run_dir / "cv.md", cv_markdown(rows, summary, folds, metric_beta))
    plot_training_curves([(f"fold {r['fold']}", run_dir / r["output_dir"]) for r in rows],
                         run_dir / "plots" / "cv_curves.png", title=f"{len(folds)}-fold cross-validation",
                         metric_beta=metric_beta)
    return {"folds": folds, "rows": rows, "summary": summary, "run_dir": str(run_dir)}


def cv_markdown(rows: Sequence[Mapping[str, Any]], summary: Sequence[Mapping[str, Any]],
                folds: Sequence[Sequence[str]], beta: float = 4.0) -> str:
    """The cross-validation report: per-class mean +/- std, then one row per fold."""
    fb = f"F{beta:g}"
    lines = [f"# {len(folds)}-fold cross-validation by tomogram\n",
             f"Validation particle {fb} of each fold's held-out tomograms at its best epoch (thresholds swept "
             f"per class on those tomograms, so optimistic); mean +/- sample std over {len(rows)} fold(s).\n",
             "| metric | mean | std |", "|---|---:|---:|"]
    for s in summary:
        name = {"best": "score (best epoch)", "final": "score (final epoch)"}.get(s["metric"], s["metric"][2:])
        lines.append(f"| {name} | {_fmt(s['mean'])} | {_fmt(s['std'])} |")
    cols = [("fold", "fold"), ("val_tomograms", "validation tomograms"), ("best", f"best {fb}"),
            ("best_epoch", "best epoch"), ("final", f"final {fb}"), ("epochs_to_conv", "epochs to 95%")]
    cols += [(c, c[2:]) for c in _class_columns(rows)]
    lines += ["", "## Folds", "", markdown_table(rows, cols), ""]
    return "\n".join(lines)


# =============================================================================== across-epoch evaluation


@dataclass
class EvalSet:
    """Tomograms with ground truth to evaluate checkpoints on.

    Attributes
    ----------
    name : str
        Label in tables and plots (``"val"``, ``"ood"``).
    paths : list of str
        Tomogram files.
    gt : str
        Picks file of their ground truth (CSV / copick / STAR; Angstrom).
    """

    name: str
    paths: list[str]
    gt: str


def dataset_eval_set(name: str, dataset_dir: str | os.PathLike, tomograms: Sequence[str] | None = None) -> EvalSet:
    """An :class:`EvalSet` of a dataset folder (``tomograms/`` + ``picks.csv``), optionally only some tomograms."""
    from cryo3d.io.tomogram import find_tomograms, tomogram_name

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
    from cryo3d.synth import SynthConfig, synthesize

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
    """The in-fold validation tomograms of a run trained by :func:`train_run` (from its ``experiment.json``)."""
    from cryo3d.dataset import split_tomograms
    from cryo3d.io.tomogram import find_tomograms, tomogram_name

    p = Path(train_dir) / "experiment.json"
    if not p.exists():
        raise FileNotFoundError(f"{p}: not a run made by the experiment scripts; name --val-dir and --val-tomograms")
    ov = json.loads(p.read_text())["overrides"]
    v = bundle_values(ov, ["dataset_dir", "val_tomograms", "n_val"])
    d = Path(v["dataset_dir"])
    val = v["val_tomograms"]
    if val is None:  # the bundle's default split
        names = [tomogram_name(x) for x in find_tomograms([str(d / "tomograms")])]
        val = split_tomograms(names, n_val=int(v["n_val"]))[1]
    return dataset_eval_set("val", d, val)


def _load_tomograms(paths: Sequence[str], spacing: float) -> list[Any]:
    """Tomograms read and resampled to ``spacing`` once (they are then picked by every checkpoint)."""
    from cryo3d.io.tomogram import Tomogram, read_tomogram
    from cryo3d.resample import needs_resampling, resample_to_spacing

    out = []
    for p in paths:
        t = read_tomogram(p)
        if needs_resampling(float(t.voxel_spacing), spacing):
            t = Tomogram(t.name, resample_to_spacing(np.asarray(t.data), float(t.voxel_spacing), spacing),
                         float(spacing), t.path)
        else:
            t = Tomogram(t.name, np.asarray(t.data), float(t.voxel_spacing), t.path)
        out.append(t)
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
    metric (:class:`cryo3d.training.ParticleFBeta`, same peaks, grid and matching) twice:
    ``mode="checkpoint"`` with the per-class thresholds stored in the checkpoint (chosen on
    the validation tomograms at that epoch; 0.3 if it has none) -- the honest number on
    data they were not chosen on -- and ``mode="sweep"`` with each class at its best
    threshold on these very tomograms (optimistic; the gap shows threshold miscalibration).

    Returns
    -------
    list of dict
        Rows ``set, mode, score, n_pred, f_<class>..., thresholds``.
    """
    import torch

    from cryo3d.inference import InferenceSettings, load_checkpoint_model, pick_tomogram
    from cryo3d.particles import ParticleSet
    from cryo3d.training import ParticleFBeta

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
                                   thresholds=thr, base_threshold=base_threshold)
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

    Reads ``train_dir/epochs/epoch_<N>.pt`` (:class:`EpochCheckpointer`) and writes into
    ``out_dir`` (default ``train_dir/epoch_eval``): ``epoch_metrics.csv`` (one row per
    epoch, set and mode, see :func:`score_checkpoint`), ``epoch_curves.png`` (score against
    epoch, with the bundle's own validation curve) and TensorBoard scalars
    ``<set>/<mode>`` and ``<set>/<mode>/<class>`` at step = epoch in ``out_dir/tensorboard``.
    Epochs already in the CSV are skipped.

    Returns
    -------
    list of dict
        All rows (earlier and new), sorted by epoch, set and mode.
    """
    from cryo3d.io.picks import read_picks
    from cryo3d.inference import load_checkpoint_model

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
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))
        it = todo
        if progress:
            from tqdm import tqdm

            it = tqdm(todo, desc="eval epochs", unit="ckpt")
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
            out[k] = _num(v)
        elif k == "thresholds" and v:
            out[k] = json.loads(v)
    return out


def _write_epoch_outputs(out: Path, rows: Sequence[Mapping[str, Any]], train_dir: Path, beta: float) -> None:
    if not rows:
        return
    classes = _class_columns(rows)
    write_csv(out / "epoch_metrics.csv", rows, ["epoch", "set", "mode", "score", "n_pred"] + classes + ["thresholds"])
    from matplotlib.ticker import MaxNLocator

    fig, (ax,) = _figure(1, width=6.5, height=4.2)
    for k, s in enumerate(dict.fromkeys(r["set"] for r in rows)):
        for mode, style in (("checkpoint", "-"), ("sweep", "--")):
            rs = [r for r in rows if r["set"] == s and r["mode"] == mode]
            if rs:
                ax.plot([r["epoch"] for r in rs], [r["score"] for r in rs], style, color=f"C{k}",
                        marker="o" if mode == "checkpoint" else "x",
                        label=f"{s} ({'checkpoint thresholds' if mode == 'checkpoint' else 'best thresholds'})")
    vh = _by_epoch(_read_jsonl(train_dir / "val_metrics.jsonl"))
    if vh:
        ax.plot([r["epoch"] for r in vh], [r["score"] for r in vh], ":", color="grey", label="bundle validation")
    ax.set(xlabel="epoch (checkpoint)", ylabel=f"particle F{beta:g}", ylim=(-0.02, 1.02),
           title=f"across-epoch evaluation: {train_dir.name}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(out / "epoch_curves.png", dpi=100)


# =============================================================================== command-line helpers (scripts/)


def add_common_arguments(ap: Any, run_default: str) -> None:
    """Arguments every experiment script shares: run folder, data, split and training budget."""
    ap.add_argument("--run", default=run_default,
                    help="run folder: results, folds, data views (default: %(default)s)")
    ap.add_argument("--dataset-dir", default="data/picker",
                    help="tomograms/ + picks.csv; simulated there when empty, like the bundle (default: %(default)s)")
    ap.add_argument("--n-synth", type=int, default=5,
                    help="built-in data: tomograms to simulate (default: %(default)s)")
    ap.add_argument("--synth-shape", type=int, nargs=3, default=[184, 256, 256], metavar=("Z", "Y", "X"))
    ap.add_argument("--synth-preset", default="default", choices=["default", "clean", "hard"])
    ap.add_argument("--k", type=int, default=4,
                    help="folds; fold 0 validates on about 1/k of the tomograms (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the folds, the simulator and training (default: %(default)s)")
    ap.add_argument("--max-epochs", type=int, default=DEFAULT_BUDGET["max_epochs"], help="(default: %(default)s)")
    ap.add_argument("--epoch-length", type=int, default=DEFAULT_BUDGET["epoch_length"],
                    help="iterations per epoch (default: %(default)s)")
    ap.add_argument("--val-interval", type=int, default=DEFAULT_BUDGET["val_interval"],
                    help="validate every this many epochs (default: %(default)s)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="any other train.yaml key for every run, value as YAML, "
                         "e.g. batch_size=4 'network_overrides={se: false}'")
    ap.add_argument("--no-epoch-checkpoints", action="store_true",
                    help="do not save a checkpoint per epoch (eval_epochs.py needs them)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")


def common_settings(args: Any) -> dict:
    """``base`` overrides, ``synth`` settings and the shared keyword arguments from :func:`add_common_arguments`."""
    extra = parse_set(args.set)
    extra.setdefault("seed", args.seed)
    base = base_overrides({"max_epochs": args.max_epochs, "epoch_length": args.epoch_length,
                           "val_interval": args.val_interval}, extra)
    synth = {"n_synth": args.n_synth, "synth_shape": list(args.synth_shape), "synth_preset": args.synth_preset}
    return {"base": base, "synth": synth, "dataset_dir": args.dataset_dir, "k": args.k, "seed": args.seed,
            "epoch_checkpoints": not args.no_epoch_checkpoints, "progress": not args.quiet,
            "metric_beta": float(base.get("metric_beta", 4.0))}

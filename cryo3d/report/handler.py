"""The training run's report: an ignite handler that writes ``<output_dir>/report/``.

Attached to the trainer (and, through it, to the validation evaluator) by the bundle's
``train.yaml``. It

* records per epoch the mean training loss, the loss's beta and the learning rate in
  ``<output_dir>/train_metrics.jsonl`` (``val_metrics.jsonl`` holds the validation side),
* after a validation with a new best score, keeps that validation's picks (from
  :class:`cryo3d.metric_ignite.ParticleFBeta`) and writes the report once the epoch's loss is
  recorded,
* at the end of training writes the report of the best validation with all the curves.

The report shows the validation tomograms as validated (normalised, at the training
voxel spacing), the picks at the metric's chosen per-class thresholds, and the curves of
every peak above the metric's base threshold. Report errors are logged as warnings and
never stop training.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from cryo3d.io.atomic import write_text_atomic
from cryo3d.picks import Picks
from cryo3d.report.build import ReportVolume, write_report
from cryo3d.report.curves import read_jsonl

__all__ = ["TrainingReportHandler"]

log = logging.getLogger("cryo3d")


class TrainingReportHandler:
    """Write ``<output_dir>/report/index.html`` at each new best validation and at the end of training.

    Args:
        metric: the evaluator's :class:`cryo3d.metric_ignite.ParticleFBeta` (``last``, ``last_picks``,
            ``gt``, ``particles``, ``beta`` are read).
        dataset: the :class:`cryo3d.workflows.validation.ValidationTomograms` (names, volumes, spacings).
        output_dir: the run folder.
        evaluator: the validation engine (its ``EPOCH_COMPLETED`` is watched), or None.
        loss: the training loss (its ``beta`` is recorded when it has one), or None.
        optimizer: the optimizer (the first group's learning rate is recorded), or None.
        at_best: also write at each new best (else only at the end).
        enabled: False makes :meth:`attach` a no-op.
    """

    def __init__(self, metric: Any, dataset: Any, output_dir: str, evaluator: Any = None, loss: Any = None,
                 optimizer: Any = None, at_best: bool = True, enabled: bool = True) -> None:
        self.metric = metric
        self.dataset = dataset
        self.output_dir = Path(output_dir)
        self.evaluator = evaluator
        self.loss = loss
        self.optimizer = optimizer
        self.at_best = at_best
        self.enabled = enabled
        self.best = -np.inf
        self._best_snapshot: dict | None = None
        self._pending = False
        self._loss_sum = 0.0
        self._loss_n = 0
        self.seconds = 0.0  # time spent writing reports (for the log)

    # ------------------------------------------------------------------ wiring
    def attach(self, trainer: Any) -> None:
        from ignite.engine import Events  # here: cryo3d report / evaluate import this package without torch

        if not self.enabled:
            return
        trainer.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        trainer.add_event_handler(Events.COMPLETED, self._completed)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.EPOCH_COMPLETED, self._validated)
        hist = [r.get("score") for r in self._read("val_metrics.jsonl")]
        hist = [s for s in hist if isinstance(s, (int, float))]
        if hist:  # a resumed run: only a better validation is a new best
            self.best = max(hist)

    # ------------------------------------------------------------------ events
    def _epoch_started(self, engine: Any) -> None:
        self._loss_sum, self._loss_n = 0.0, 0

    def _iteration(self, engine: Any) -> None:
        out = engine.state.output
        loss = out.get("loss") if isinstance(out, dict) else None
        if loss is not None:
            self._loss_sum += float(loss.detach() if hasattr(loss, "detach") else loss)
            self._loss_n += 1

    def _validated(self, engine: Any) -> None:
        last = getattr(self.metric, "last", None) or {}
        score = last.get("score")
        if score is None or not score > self.best:
            return
        self.best = float(score)
        self._best_snapshot = self._snapshot(engine)
        self._pending = self.at_best

    def _epoch_completed(self, engine: Any) -> None:
        self._soft(self._record_epoch, engine)
        if self._pending:
            self._pending = False
            self._soft(self._write, self._best_snapshot, "new best")

    def _completed(self, engine: Any) -> None:
        snap = self._best_snapshot
        if snap is None and getattr(self.metric, "last", None):
            snap = self._snapshot(None)
        self._soft(self._write, snap, "end of training")
        log.info("training report: %s (%.1f s spent writing reports)", self.output_dir / "report" / "index.html",
                 self.seconds)

    # ------------------------------------------------------------------ work
    def _soft(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # a report must never stop training
            log.warning("training report not written: %s: %s", type(e).__name__, e)

    def _read(self, name: str) -> list[dict]:
        return read_jsonl(self.output_dir / name)

    def _snapshot(self, engine: Any) -> dict:
        last = dict(getattr(self.metric, "last", None) or {})
        epoch = None
        if engine is not None and getattr(engine.state, "epoch", None) is not None:
            epoch = int(engine.state.epoch)
        return {"last": last, "picks": getattr(self.metric, "last_picks", None), "epoch": epoch}

    def _record_epoch(self, engine: Any) -> None:
        rec: dict[str, Any] = {"epoch": int(engine.state.epoch),
                               "loss": self._loss_sum / self._loss_n if self._loss_n else None}
        beta = getattr(self.loss, "beta", None)
        rec["beta"] = float(beta) if isinstance(beta, (int, float)) or hasattr(beta, "__float__") else None
        if self.optimizer is not None:
            rec["lr"] = float(self.optimizer.param_groups[0]["lr"])
        path = self.output_dir / "train_metrics.jsonl"
        old = path.read_text() if path.exists() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        write_text_atomic(path, old + json.dumps(rec) + "\n")

    def _write(self, snap: dict | None, why: str) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        m = self.metric
        vols = [ReportVolume(n, v[0].numpy() if hasattr(v, "numpy") else np.asarray(v)[0], s)
                for n, v, s in zip(self.dataset.names, self.dataset.volumes, self.dataset.spacings)]
        picks = Picks.empty()
        thr = None
        notes = [f"validation tomograms {', '.join(self.dataset.names)} (normalised, as validated)"]
        if snap is not None:
            picks = snap["picks"] if snap["picks"] is not None else Picks.empty()
            last = snap["last"]
            if last.get("thresholds"):
                thr = last["thresholds"]
            notes.insert(0, f"{why}: validation of epoch {snap['epoch']}, score {last.get('score', float('nan')):.4f}"
                            f" (best so far {self.best:.4f}); picks at the validated per-class thresholds")
        else:
            notes.insert(0, f"{why}: no validation yet")
        names = list(self.dataset.names)
        gt = m.gt.select(np.isin(m.gt.tomo.astype(str), names))
        history = {"val": self._read("val_metrics.jsonl"), "train": self._read("train_metrics.jsonl")}
        light = why != "end of training"  # a new best mid-run: fewer slabs and tiles (cheaper)
        write_report(self.output_dir / "report", vols, picks, m.particles, gt=gt, thresholds=thr,
                     title=f"cryo3d training report: {self.output_dir.name}", notes=notes, beta=m.beta,
                     history=history, slab_fractions=(0.5, 0.3, 0.7) if light else (0.5, 0.2, 0.35, 0.65, 0.8),
                     gallery_n=6 if light else 8, matching=getattr(m, "matching", None))
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.seconds += dt
        log.info("training report (%s) written to %s in %.1f s (%.1f s CPU)", why, self.output_dir / "report", dt, cpu)

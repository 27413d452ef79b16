"""The training bundle's validation on whole held-out tomograms.

* :class:`ValidationTomograms`: held-out whole tomograms, normalised like the store, as
  ``{"image": [1, z, y, x], "label": [tomogram index]}`` items for ``SupervisedEvaluator``
  (scored by :class:`cryo3d.metric_ignite.ParticleFBeta`).
* :class:`MetricTableHandler`: the per-class validation table (and each tomogram's own
  score: the spread) in the log, a JSON-lines file and TensorBoard.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from ignite.engine import Events
from torch.utils.tensorboard import SummaryWriter

from cryo3d.io.tomogram import Tomogram, read_tomogram
from cryo3d.metric_ignite import ParticleFBeta
from cryo3d.normalization import NORM_CLIP, normalize, robust_stats
from cryo3d.resample import to_spacing

logger = logging.getLogger("cryo3d")


class ValidationTomograms(torch.utils.data.Dataset):
    """Whole held-out tomograms for ``SupervisedEvaluator``, normalised like the patch store.

    Items are ``{"image": float32 tensor [1, z, y, x], "label": int64 tensor [1] (tomogram index)}``;
    the index lets :class:`cryo3d.metric_ignite.ParticleFBeta` look up the tomogram's name and
    ground truth. Volumes are read and normalised once and kept in memory.

    Args:
        paths: tomogram files, or opened :class:`~cryo3d.io.tomogram.Tomogram` (a copick project's,
            read through its storage, with the spacing it was decided to have).
        voxel_spacing: the training voxel spacing (Angstrom); other spacings are resampled.
    """

    def __init__(self, paths: Sequence[Any], voxel_spacing: float | None = None) -> None:
        self.names: list[str] = []
        self.spacings: list[float] = []
        self.volumes: list[torch.Tensor] = []
        for p in paths:
            t = p if isinstance(p, Tomogram) else read_tomogram(p)
            data, sp = to_spacing(t.data, float(t.voxel_spacing), voxel_spacing)
            med, sc = robust_stats(data)
            self.volumes.append(torch.from_numpy(normalize(data, med, sc, NORM_CLIP))[None])
            self.names.append(t.name)
            self.spacings.append(sp)

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.volumes[i], "label": torch.tensor([i], dtype=torch.int64)}


class MetricTableHandler:
    """After each validation: log the per-class table, write it to ``val_metrics.jsonl`` and TensorBoard.

    Each record holds ``epoch``, ``score`` (pooled over the validation tomograms),
    ``thresholds``, ``per_class`` and ``per_tomogram`` (each tomogram scored alone at the
    same thresholds: the spread of the figure).

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
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        last = self.metric.last
        if not last:
            return
        epoch = None
        if self.trainer is not None:
            epoch = int(self.trainer.state.epoch)
        elif getattr(engine.state, "epoch", None) is not None:
            epoch = int(engine.state.epoch)
        logger.info("validation particle F-beta (epoch %s):\n%s", epoch, last["table"])
        self.output_dir.mkdir(parents=True, exist_ok=True)
        rec = {"epoch": epoch, "score": last["score"], "thresholds": last["thresholds"], "per_class": last["per_class"],
               "per_tomogram": last.get("per_tomogram", {})}
        with open(self.output_dir / "val_metrics.jsonl", "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if self.writer is None:
            self.writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        step = epoch if epoch is not None else 0
        for name, v in last["per_class"].items():
            self.writer.add_scalar(f"val_fbeta/{name}", v["fbeta"], step)
        for name, v in last.get("per_tomogram", {}).items():
            self.writer.add_scalar(f"val_fbeta_tomogram/{name}", v, step)
        self.writer.flush()

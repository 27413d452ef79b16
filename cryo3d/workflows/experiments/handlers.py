"""Trainer handlers of experiment runs: the mean training loss per epoch, a checkpoint per epoch.

The bundle keeps only its last checkpoint; across-epoch evaluation needs one per epoch
(:class:`EpochCheckpointer`, listed again by :func:`checkpoint_paths`), and the ablation
plots need the training loss of every epoch (:class:`EpochLossRecorder`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from ignite.engine import Events

from cryo3d.checkpoints import save_checkpoint
from cryo3d.workflows.checkpoint_meta import CheckpointMeta
from cryo3d.workflows.experiments.tables import read_jsonl


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
    :class:`cryo3d.workflows.checkpoint_meta.CheckpointMeta` like the bundle's own checkpoints. The bundle
    keeps only its last checkpoint, hence this handler.

    Where the settings come from: the geometry and classes from the trainer's patch store
    (``engine.data_loader.dataset.store``: particles, voxel spacing, patch size, ds_factor),
    the network from ``network`` (the bundle keys ``network_name``, ``prior`` and
    ``network_overrides``, see :func:`cryo3d.workflows.experiments.runs.bundle_values`), and
    the per-class thresholds from the epoch's record in ``metrics_path`` (the bundle's
    ``val_metrics.jsonl``; the validation handler runs before this one) when that epoch
    was validated.

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
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def meta(self, engine: Any) -> dict:
        """The ``cryo3d`` settings dict of a checkpoint saved now."""
        store = engine.data_loader.dataset.store
        net = {"name": self.network["name"], "in_channels": 1, "out_channels": len(store.particles),
               "ds_factor": store.ds_factor,
               **{k: v for k, v in self.network.items() if k != "name"}}
        meta = CheckpointMeta(net, store.particles, store.voxel_spacing, store.manifest["patch_size"],
                              store.ds_factor).state_dict()
        epoch = int(engine.state.epoch)
        recs = [r for r in read_jsonl(self.metrics_path) if r.get("epoch") == epoch] if self.metrics_path else []
        if recs:
            meta["thresholds"] = [float(t) for t in recs[-1]["thresholds"]]
            meta["val_score"] = float(recs[-1]["score"])
        meta["epoch"] = epoch
        return meta

    def __call__(self, engine: Any) -> None:
        epoch = int(engine.state.epoch)
        last = engine.state.max_epochs is not None and epoch >= engine.state.max_epochs
        if epoch % self.every and not last:
            return
        net = engine.network
        net = getattr(net, "module", net)  # DistributedDataParallel
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        self.save_dir.mkdir(parents=True, exist_ok=True)
        path = self.save_dir / f"epoch_{epoch}.pt"
        save_checkpoint({"network": state, "cryo3d": self.meta(engine)}, path)


def checkpoint_paths(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of the ``epoch_<N>.pt`` files in ``folder``, by epoch."""
    out = []
    for p in Path(folder).glob("epoch_*.pt"):
        try:
            out.append((int(p.stem.split("_", 1)[1]), p))
        except ValueError:
            continue
    return sorted(out)

"""The exported model's thresholds, chosen once more at the end of training on test-time-augmented heatmaps.

Validation during training picks the best checkpoint and runs often (``val_fraction``), so it
runs on plain heatmaps (``val_tta: none``): averaging the three axis flips costs 4 network
passes per tomogram, and on the tilt benchmark validating every time with them left 51 epochs
of the 15-minute budget instead of 61. The thresholds ``predict`` uses are another matter:
chosen on flip-averaged heatmaps and applied to them, they raised every benchmark's unseen score
(``scripts/compare_selection.py``, the same checkpoints: tilt 0.837 -> 0.846, ood 0.901 -> 0.924,
crowded12 0.885 -> 0.914, the first run's seeds 0.874 / 0.873 / 0.895 -> 0.892 / 0.906 / 0.920).

So :class:`FinalThresholds` runs once, after the trainer and before the model is exported:
it loads ``best.pt``'s weights, validates them on the validation tomograms with ``final_tta``
(the bundle's metric: the same sweep, smoothing, flood bound and class decision), and writes the
new thresholds, temperatures, validation score and ``tta`` into ``best.pt`` (atomically: a kill
leaves the old file whole, and a rerun does it again). ``predict`` then applies the checkpoint's
``tta`` by default, so the scores it thresholds are those the thresholds were chosen on.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch

from cryo3d.checkpoints import load_checkpoint, save_checkpoint
from cryo3d.sliding_window import TTA_MODES, DownsampledSlidingWindowInferer

__all__ = ["FinalThresholds"]

logger = logging.getLogger("cryo3d")


class FinalThresholds:
    """Re-validate ``<ckpt_dir>/best.pt`` with test-time augmentation and keep the thresholds it gives.

    Args:
        ckpt_dir: the run's checkpoint folder (holds ``best.pt``).
        network: the bundle's network (its weights are replaced by ``best.pt``'s).
        dataset: the validation tomograms (:class:`cryo3d.workflows.validation.ValidationTomograms`).
        inferer: the validation inferer; its settings are reused with ``tta`` replaced.
        metric: the validation metric (:class:`cryo3d.metric_ignite.ParticleFBeta`): reset, fed
            and computed here, so ``meta`` reads the new thresholds from it.
        meta: the bundle's :class:`cryo3d.workflows.checkpoint_meta.CheckpointMeta`.
        tta: ``"none"`` (keep the training-time thresholds: nothing is done), ``"flips"`` or
            ``"flips_rot90"`` (the bundle's ``final_tta``).
        device: where the network runs.

    Example:
        >>> FinalThresholds(ckpt_dir, network, dataset, inferer, metric, meta, tta="flips")()  # doctest: +SKIP
    """

    def __init__(self, ckpt_dir: str | os.PathLike, network: torch.nn.Module, dataset: Any, inferer: Any,
                 metric: Any, meta: Any, tta: str = "flips", device: str | torch.device = "cpu") -> None:
        if tta not in TTA_MODES:
            raise ValueError(f"final_tta: expected one of {list(TTA_MODES)}, got {tta!r}")
        self.best = Path(ckpt_dir) / "best.pt"
        self.network = network
        self.dataset = dataset
        self.inferer = inferer
        self.metric = metric
        self.meta = meta
        self.tta = tta
        self.device = torch.device(device)

    def __call__(self) -> dict | None:
        """Do it; return the new checkpoint metadata, or None when there is nothing to do
        (``tta`` is ``"none"``, no ``best.pt`` yet, or it already records this ``tta``)."""
        if self.tta == "none" or not self.best.exists():
            return None
        ck = load_checkpoint(self.best, map_location="cpu")
        old = dict(ck.get("cryo3d", {}))
        if old.get("tta") == self.tta:  # done before this rerun (a resumed, finished run)
            return None
        net = self.network.module if hasattr(self.network, "module") else self.network
        net.load_state_dict(ck["network"])
        net.eval()
        inferer = DownsampledSlidingWindowInferer(dataclasses.replace(self.inferer.settings, tta=self.tta))
        self.metric.reset()
        with torch.no_grad():
            for i in range(len(self.dataset)):
                item = self.dataset[i]
                pred = inferer(item["image"][None].to(self.device), net)
                self.metric.update((pred, item["label"][None]))
        score = self.metric.compute()
        self.meta.tta = self.tta
        ck["cryo3d"] = self.meta.state_dict()
        save_checkpoint(ck, self.best)
        logger.info("final thresholds of %s on %s-averaged heatmaps: validation score %.4f (plain heatmaps: %s)",
                    self.best, self.tta, score, f"{old['val_score']:.4f}" if "val_score" in old else "not validated")
        return ck["cryo3d"]

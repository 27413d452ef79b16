"""The CZII particle F-beta as an ignite ``Metric``: the training bundle's validation key metric.

:class:`ParticleFBeta` turns the stitched heatmaps of whole validation tomograms into
peaks -> Angstrom picks (filtered like inference) and scores them with the challenge's
F-beta (:mod:`cryo3d.metrics`), sweeping a threshold per class; the best thresholds are
kept for the checkpoint and so for inference.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Sequence

import numpy as np
import torch
from ignite.metrics import Metric

from cryo3d.io.pick_formats import read_picks
from cryo3d.metrics import score_picks, sweep_thresholds
from cryo3d.particles import ParticleSet
from cryo3d.peak_selection import CROSS_CLASS_FRACTION, heatmap_to_picks
from cryo3d.picks import Picks
from cryo3d.temperature import temper
from cryo3d.tomogram_scores import scores_by_tomogram, spread_line

logger = logging.getLogger("cryo3d")


#: Score quantiles added to the fixed threshold grid of a sweep: scores that keep their order
#: (:func:`cryo3d.peaks.find_peaks` with logits) may crowd above the grid's last step.
SWEEP_QUANTILES = 64
#: Thresholds on each side over which validation averages a class's F-beta curve before it
#: chooses the class's threshold (:func:`cryo3d.metrics.smooth_curve`; the grid is the fixed
#: steps plus :data:`SWEEP_QUANTILES` score quantiles, about 110 thresholds). Chosen on the raw
#: curve, the threshold sat just below the validation tomogram's weakest true positive: on the
#: ``ood`` benchmark the ribosome's threshold was a logit of 10.8 while the unseen tomograms'
#: ribosomes peaked at a median of 9.2, so 4 of 21 were picked. Measured on the same
#: checkpoints and heatmaps (scripts/compare_selection.py, unseen tomograms), raw -> 5:
#: ood 0.709 -> 0.871, tilt 0.813 -> 0.845, crowded12 0.858 -> 0.849, the README's first run
#: (3 seeds) 0.839 / 0.842 / 0.873 -> 0.862 / 0.858 / 0.873; 3 gave 0.839 / 0.836 / 0.852 and
#: 0.858 / 0.851 / 0.874, 8 gave 0.899 / 0.844 / 0.845 and 0.858 / 0.865 / 0.867. End to end with 5
#: (scripts/bench_ood.py, defaults, 15 minutes on 2 cores): ood 0.895, tilt 0.832, crowded12 0.892.
THRESHOLD_SMOOTHING = 5

#: Validation chooses a class's threshold among those that keep at most this many of its picks per
#: annotated particle of the validation tomograms (:func:`cryo3d.metrics.sweep_thresholds`'s
#: ``max_picks_per_true``): F-beta 4 keeps any pick that is right one time in 17, so a small class whose
#: look-alike proteins score like its particles reported 5 times its number. Measured with ``flips``
#: test-time augmentation (scripts/compare_selection.py, one checkpoint each, unseen tomograms; no bound
#: -> 3): tilt 0.846 -> 0.849 with its worst class 5.3 -> 3.5 picks per true particle; ood 0.924,
#: crowded12 0.914 and the README's first run 0.892 / 0.906 / 0.920 unchanged or within 0.001. A bound
#: of 2.5 reached 2.9 on tilt but cost 0.046 on one first-run seed (its validation tomograms hold fewer
#: thyroglobulins than the unseen ones); 2 cost up to 0.09.
VALIDATION_MAX_PICKS_PER_TRUE = 3.0

#: The annotation-density cap validation applies (:func:`cryo3d.peak_selection.density_caps`), looser
#: than ``predict``'s (:data:`cryo3d.peak_selection.DENSITY_CAP_FACTOR`): the thresholds are chosen on
#: the picks the cap leaves, and a tight cap there changes them. Measured on the bench_ood checkpoints
#: (thresholds re-chosen on validation with each cap, unseen tomograms; 10x -> 2.5x): ood 0.937 -> 0.903
#: (its ribosomes' F-beta 0.98 -> 0.80), tilt 0.863 -> 0.848, crowded12 and hard unchanged.
VALIDATION_DENSITY_CAP_FACTOR = 10.0


def sweep_grid(fixed: np.ndarray, scores: np.ndarray, n_quantiles: int = SWEEP_QUANTILES) -> np.ndarray:
    """Thresholds to sweep: the ``fixed`` grid plus ``n_quantiles`` quantiles of the ``scores``
    at or above its lowest value (so a model whose picks all score above 0.995 still gets
    thresholds between them)."""
    fixed = np.asarray(fixed, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    s = s[s >= fixed.min()] if fixed.size else s
    if s.size == 0:
        return fixed
    return np.unique(np.r_[fixed, np.quantile(s, np.linspace(0.0, 1.0, n_quantiles))])


def temperature_line(names: list[str], temps: list[float], calib: dict) -> str:
    """One line of the fitted score temperatures (:mod:`cryo3d.temperature`) and the calibration they give."""
    per = ", ".join(f"{n} {t:.2f}" for n, t in zip(names, temps))
    ece = f"; expected calibration error with them {calib['ece']:.3f}" if np.isfinite(calib["ece"]) else ""
    return f"score temperature (scores are sigmoid(logit / T)): {per}{ece}"


def calibration_line(calib: dict) -> str:
    """One line of :func:`cryo3d.metrics.calibration`: the error and, per non-empty bin, how often a pick is right."""
    bins = ", ".join(f"{lo:g}-{hi:.4g}: {p:.2f} right of {n}" for lo, hi, p, n in
                     zip(calib["edges"][:-1], calib["edges"][1:], calib["precision"], calib["n"]) if n)
    return f"score calibration: expected calibration error {calib['ece']:.3f} ({bins})"


class ParticleFBeta(Metric):
    """CZII particle F-beta of whole-tomogram heatmaps, as an ignite metric.

    ``update`` takes ``(y_pred, y)`` with ``y_pred`` the stitched logit heatmaps
    ``[B, C, z/f, y/f, x/f]`` (what :class:`cryo3d.sliding_window.DownsampledSlidingWindowInferer`
    returns; ``logits=False`` for probability maps) and ``y`` the tomogram indices ``[B, 1]`` of
    :class:`cryo3d.workflows.validation.ValidationTomograms`; peaks are found at
    ``base_threshold`` and converted to Angstrom picks, filtered like inference does
    (:func:`cryo3d.peak_selection.select_peaks`:
    cross-class suppression, at most as many picks per class as the tomogram can hold).
    ``compute`` sweeps per-class thresholds (CZII matching) and returns the weighted F-beta
    at each class's best threshold (``sweep=True``) or at ``thresholds``. A class without
    any true positive keeps :data:`cryo3d.metrics.UNLEARNED_THRESHOLD` (never the lowest,
    which floods unseen data) and is listed in ``last["unlearned"]`` (and so in the
    checkpoint, for ``predict`` to warn). The per-class table, each tomogram's own score at
    those thresholds (``last["per_tomogram"]``: the spread behind the pooled figure, also a
    line of the table) and the best thresholds are kept in :attr:`last` for logging and
    for the checkpoint.

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
            (:data:`cryo3d.peak_selection.CROSS_CLASS_FRACTION`).
        matching: ``"czii"`` (the challenge's rule) or ``"greedy"``.
        logits: ``y_pred`` holds logits (scores are then float64 probabilities that keep
            their order; see :func:`cryo3d.peaks.find_peaks`).
        class_density: ``[C]`` annotated particles per cubic Angstrom of the training data:
            validation caps each class at ``density_factor`` times it
            (:func:`cryo3d.peak_selection.density_caps`); None: no density cap.
        density_factor: the density cap's factor (:data:`VALIDATION_DENSITY_CAP_FACTOR`; None or
            0: no density cap).
        temperature: with ``sweep=False``, the score temperature of the checkpoint whose
            ``thresholds`` are given (its ``score_temperature``: those thresholds are on tempered
            scores). A sweep fits its own (:mod:`cryo3d.temperature`; ``last["temperature"]``),
            and the thresholds it keeps are on the scores tempered by it.
        smooth: a sweep chooses each class's threshold on its F-beta curve averaged over this
            many neighbouring thresholds on each side (:data:`THRESHOLD_SMOOTHING`; 0: the raw
            curve's maximum).
        max_picks_per_true: a sweep chooses each class's threshold among those that keep at most
            this many picks per annotated particle (:data:`VALIDATION_MAX_PICKS_PER_TRUE`); None:
            unbounded.
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
        logits: bool = True,
        class_density: Sequence[float | None] | None = None,
        density_factor: float | None = VALIDATION_DENSITY_CAP_FACTOR,
        temperature: Sequence[float] | None = None,
        smooth: int = THRESHOLD_SMOOTHING,
        max_picks_per_true: float | None = VALIDATION_MAX_PICKS_PER_TRUE,
        output_transform: Callable = lambda out: (out["pred"], out["label"]),
        device: str | torch.device = "cpu",
    ) -> None:
        self.gt = read_picks(gt) if not isinstance(gt, Picks) else gt
        self.names = list(names)
        self.particles = particles
        self.voxel_spacing = float(voxel_spacing)
        self.ds_factor = int(ds_factor)
        self.beta = float(beta)
        self.sweep = sweep
        self.thresholds = thresholds
        if temperature is not None and (sweep or not logits):
            raise ValueError("temperature is the given thresholds' (sweep=False, logits=True); a sweep fits its own")
        self.temperature = temperature
        self.smooth = int(smooth)
        if max_picks_per_true is not None and (isinstance(max_picks_per_true, bool) or not np.isfinite(
                float(max_picks_per_true)) or float(max_picks_per_true) <= 0):
            raise ValueError(f"val_max_picks_per_true: expected a positive number or null, got {max_picks_per_true!r}")
        self.max_picks_per_true = None if max_picks_per_true is None else float(max_picks_per_true)
        self.base_threshold = float(base_threshold)
        self.min_distance_fraction = float(min_distance_fraction)
        self.max_peaks = max_peaks
        self.tie_break = tie_break
        if cross_class_fraction is None:  # the same as inference's default
            cross_class_fraction = CROSS_CLASS_FRACTION
        self.cross_class_fraction = float(cross_class_fraction)
        self.matching = matching
        self.logits = bool(logits)
        self.class_density = None if class_density is None else list(class_density)
        self.density_factor = density_factor
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
        y_pred, y = output
        low = self.base_threshold if self.sweep else self.thresholds
        for b in range(y_pred.shape[0]):
            name = self.names[int(torch.as_tensor(y[b]).reshape(-1)[0])]
            hm = y_pred[b].detach().float()
            self._picks.append(heatmap_to_picks(hm, low, name, self.particles, self.voxel_spacing, self.ds_factor,
                                                self.min_distance_fraction, self.cross_class_fraction,
                                                where=f"validation tomogram {name}", max_peaks=self.max_peaks,
                                                logits=self.logits, class_density=self.class_density,
                                                density_factor=self.density_factor, temperature=self.temperature))
            self._seen.append(name)

    def compute(self) -> float:
        pred = Picks.concat(self._picks)
        gt = self.gt.select(np.isin(self.gt.tomo, self._seen))
        if self.sweep:
            sw = sweep_thresholds(pred, gt, self.particles, thresholds=sweep_grid(self.sweep_grid, pred.score),
                                  beta=self.beta,
                                  matching=self.matching, tomograms=self._seen, tie_break=self.tie_break,
                                  smooth=self.smooth, max_picks_per_true=self.max_picks_per_true)
            thr = [sw["best_threshold"][n] for n in self.particles.names]
            res = sw["result"]
            unlearned = list(sw["unlearned"])
            calib = sw["calibration"]
            temps = [sw["temperature"][n] for n in self.particles.names] if self.logits else None
        else:
            thr = list(np.broadcast_to(np.asarray(self.thresholds, float), (len(self.particles),)))
            keep = pred.score >= np.asarray(thr)[self.particles.indices(pred.cls)] if len(pred) else np.zeros(0, bool)
            res = score_picks(pred.select(keep), gt, self.particles, beta=self.beta, matching=self.matching,
                              tomograms=self._seen)
            unlearned = [c.name for c in res.per_class if c.tp == 0]
            calib = temps = None
        per_tomo = scores_by_tomogram(pred, gt, self.particles, self._seen, thresholds=thr, beta=self.beta,
                                      matching=self.matching)
        table = res.table() + f"\n{spread_line(per_tomo)}"
        if calib is not None and np.isfinite(calib["ece"]):
            table += f"\n{calibration_line(calib)}"
        if temps is not None:  # scores and thresholds from here on are tempered (the same picks pass)
            table += f"\n{temperature_line(self.particles.names, temps, sw['calibration_tempered'])}"
            t = np.asarray(temps)
            pred = dataclasses.replace(pred, score=temper(pred.score, t[self.particles.indices(pred.cls)])) if len(pred) else pred
            thr = [float(x) for x in temper(thr, t)]
        self.last_picks = pred  # every peak of this validation (the training report draws them)
        if unlearned:
            table += f"\nnot learned (no true positive at any threshold): {', '.join(unlearned)}"
        self.last = {
            "score": float(res.score),
            "thresholds": [float(t) for t in thr],
            "per_class": {c.name: {"precision": c.precision, "recall": c.recall, "fbeta": c.fbeta,
                                   "tp": c.tp, "fp": c.fp, "fn": c.fn} for c in res.per_class},
            "per_tomogram": per_tomo,
            "table": table,
            "unlearned": unlearned,
            "calibration": calib,
            "temperature": None if temps is None else [float(x) for x in temps],
        }
        if unlearned:
            logger.warning(
                "validation: no true positive at any threshold for %s (not learned yet, or absent from the "
                "validation tomograms); threshold kept at %s", ", ".join(unlearned),
                ", ".join(f"{t:g}" for n, t in zip(self.particles.names, thr) if n in unlearned))
        return float(res.score)

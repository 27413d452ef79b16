"""The score of each tomogram on its own: the spread behind a pooled figure.

The CZII score pools counts over tomograms (:func:`cryo3d.metrics.score_picks`), so one
figure hides how much it varies from tomogram to tomogram. With a few held-out tomograms
that spread says how far the figure (and the checkpoint chosen on it) can be trusted.
:func:`scores_by_tomogram` scores each tomogram alone at the same thresholds;
:func:`spread_line` is the one line the validation log and ``cryo3d evaluate`` print.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from cryo3d.metrics import score_picks
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks

#: Up to this many tomograms :func:`spread_line` lists each; beyond, it summarises.
LISTED_TOMOGRAMS = 12


def scores_by_tomogram(
    pred: Picks,
    gt: Picks,
    particles: ParticleSet,
    tomograms: Sequence[str],
    thresholds: Sequence[float] | None = None,
    beta: float = 4.0,
    distance_multiplier: float = 0.5,
    matching: str = "czii",
) -> dict[str, float]:
    """Weighted F-beta of each tomogram scored alone.

    Args:
        pred, gt: predictions and ground truth (Angstrom), as for :func:`cryo3d.metrics.score_picks`.
        particles: classes, radii and weights.
        tomograms: the tomograms to score, in the order returned.
        thresholds: per-class score thresholds (in the particle set's order) applied to
            ``pred`` first (e.g. the ones a sweep chose); None: every prediction counts.
        beta, distance_multiplier, matching: as for :func:`cryo3d.metrics.score_picks`.

    Returns:
        ``{tomogram: score}``.
    """
    if thresholds is not None and len(pred):
        thr = np.asarray(thresholds, dtype=np.float64)
        pred = pred.select(pred.score >= thr[particles.indices(pred.cls)])
    out = {}
    for name in tomograms:
        res = score_picks(pred, gt, particles, beta=beta, distance_multiplier=distance_multiplier,
                          matching=matching, tomograms=[name])
        out[str(name)] = float(res.score)
    return out


def spread_line(scores: Mapping[str, float]) -> str:
    """``per tomogram: a 0.8312, b 0.7710 (min 0.7710, max 0.8312, spread 0.0602)``.

    More than :data:`LISTED_TOMOGRAMS` tomograms are summarised by their count, the lowest
    (named), the median and the highest (named).
    """
    if not scores:
        return "per tomogram: none scored"
    names = list(scores)
    v = np.array([scores[n] for n in names], dtype=np.float64)
    lo, hi = int(np.argmin(v)), int(np.argmax(v))
    tail = f"min {v[lo]:.4f}, max {v[hi]:.4f}, spread {v[hi] - v[lo]:.4f}"
    if len(names) <= LISTED_TOMOGRAMS:
        return "per tomogram: " + ", ".join(f"{n} {s:.4f}" for n, s in zip(names, v)) + f" ({tail})"
    return (f"per tomogram ({len(names)} tomograms): lowest {names[lo]} {v[lo]:.4f}, median {np.median(v):.4f}, "
            f"highest {names[hi]} {v[hi]:.4f} (spread {v[hi] - v[lo]:.4f})")

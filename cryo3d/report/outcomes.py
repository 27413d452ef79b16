"""Per-pick outcomes (true positive, false positive, missed) and the class confusion.

The score itself lives in :mod:`cryo3d.metrics`; a report needs more than its counts:
which pick is which, so that it can colour them. The rule is the metric's radius rule:
a prediction and a ground-truth particle of the same class and tomogram match when they
lie within ``distance_multiplier x radius`` Angstrom (inclusive) of each other. The
matching used for colouring is greedy and one-to-one by descending score (ties by row
order; each prediction takes the nearest free ground truth), i.e.
:func:`cryo3d.metrics.match_greedy` over the candidate pairs. The metric's default rule
(the CZII challenge's) can count a prediction for two ground truths; for colours every
pick needs exactly one outcome, hence one-to-one. The report's score table is computed by
:func:`cryo3d.metrics.score_picks` with its own default.

Confusion: rows are the true classes (plus a last row ``background`` for predictions near
no particle of any class), columns the predicted classes (plus a last column ``missed``).
A ground truth of class A matched by a prediction of class A counts on the diagonal. A
ground truth left unmatched is then offered to the still unmatched predictions of the
other classes within A's match radius (greedy by score, one-to-one): a hit counts in
column B ("an A picked as B"), else in ``missed``. Predictions still unmatched count in
the ``background`` row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.spatial import cKDTree

from cryo3d.metrics import match_greedy, precision_recall_fbeta
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks

__all__ = ["TP", "FP", "MISSED", "Outcomes", "match_outcomes", "pr_curve"]

#: Outcome codes of predictions (TP / FP) and ground truths (TP when found / MISSED).
TP, FP, MISSED = 1, 2, 3


@dataclass
class Outcomes:
    """Outcome of every prediction and every ground-truth particle.

    Attributes:
        pred (int8 ``[N_pred]``): :data:`TP` or :data:`FP`.
        pred_match (int64 ``[N_pred]``): Row of the matched ground truth (same class), ``-1`` for a false positive.
        gt (int8 ``[N_gt]``): :data:`TP` (found) or :data:`MISSED`.
        confusion (int64 ``[C + 1, C + 1]``): Rows: true class, then ``background``; columns: predicted class, then ``missed``.
        labels (list of str): The ``C`` class names (row / column order of ``confusion``).
    """

    pred: np.ndarray
    pred_match: np.ndarray
    gt: np.ndarray
    confusion: np.ndarray
    labels: list[str]


def _pairs(pxyz: np.ndarray, pt: np.ndarray, gxyz: np.ndarray, gt_: np.ndarray,
           radius: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate (pred, gt, distance) pairs within ``radius`` (Angstrom, per ground truth or scalar).

    Tomograms are kept apart by a fourth coordinate (tomogram code x a separation larger
    than any radius), as in :mod:`cryo3d.metrics`.
    """
    e = np.zeros(0, np.int64)
    if len(pxyz) == 0 or len(gxyz) == 0:
        return e, e, np.zeros(0)
    r = np.broadcast_to(np.asarray(radius, np.float64), (len(gxyz),))
    rmax = float(r.max())
    sep = 2.0 * rmax + 1.0
    p4 = np.column_stack([pxyz, pt * sep])
    g4 = np.column_stack([gxyz, gt_ * sep])
    m = cKDTree(p4).sparse_distance_matrix(cKDTree(g4), rmax, output_type="ndarray")
    pi, gj, d = m["i"].astype(np.int64), m["j"].astype(np.int64), m["v"]
    keep = d <= r[gj]
    return pi[keep], gj[keep], d[keep]


def _greedy(pi: np.ndarray, gj: np.ndarray, d: np.ndarray, score: np.ndarray, n_pred: int, n_gt: int) -> np.ndarray:
    """Greedy one-to-one: predictions by descending score (ties by row), each to its nearest free ground truth."""
    rank = np.empty(n_pred, dtype=np.int64)
    rank[np.lexsort((np.arange(n_pred), -score))] = np.arange(n_pred)
    order = np.lexsort((gj, d, rank[pi]))
    return match_greedy(pi[order], gj[order], n_pred, n_gt)


def match_outcomes(pred: Picks, gt: Picks, particles: ParticleSet, distance_multiplier: float = 0.5) -> Outcomes:
    """Outcome of each prediction and ground truth, and the class confusion (module docstring).

    Args:
        pred: predictions (``xyz`` Angstrom, ``score``).
        gt: ground truth.
        particles: classes and radii (Angstrom); every class name must be in it.
        distance_multiplier: match radius as a fraction of the class radius (0.5 in CZII).

    Returns:
        :class:`Outcomes`.
    """
    C = len(particles)
    pc = particles.indices(pred.cls, where="predictions")
    gc = particles.indices(gt.cls, where="ground truth")
    names = list(dict.fromkeys([str(t) for t in gt.tomo] + [str(t) for t in pred.tomo]))
    code = {t: i for i, t in enumerate(names)}
    pt = np.array([code[str(t)] for t in pred.tomo], dtype=np.float64)
    gtc = np.array([code[str(t)] for t in gt.tomo], dtype=np.float64)
    radii = particles.radii * float(distance_multiplier)

    match = np.full(len(pred), -1, dtype=np.int64)
    for c in range(C):  # classes (few)
        ps, gs = np.nonzero(pc == c)[0], np.nonzero(gc == c)[0]
        pi, gj, d = _pairs(pred.xyz[ps], pt[ps], gt.xyz[gs], gtc[gs], radii[c])
        if pi.size:
            to = _greedy(pi, gj, d, pred.score[ps], ps.size, gs.size)
            match[ps[to >= 0]] = gs[to[to >= 0]]
    found = np.zeros(len(gt), dtype=bool)
    found[match[match >= 0]] = True

    conf = np.zeros((C + 1, C + 1), dtype=np.int64)
    np.add.at(conf, (gc[found], gc[found]), 1)
    # unmatched ground truths offered to unmatched predictions of other classes
    fp_rows = np.nonzero(match < 0)[0]
    miss_rows = np.nonzero(~found)[0]
    cross = np.full(fp_rows.size, -1, dtype=np.int64)
    if fp_rows.size and miss_rows.size:
        pi, gj, d = _pairs(pred.xyz[fp_rows], pt[fp_rows], gt.xyz[miss_rows], gtc[miss_rows], radii[gc[miss_rows]])
        other = pc[fp_rows[pi]] != gc[miss_rows[gj]]
        pi, gj, d = pi[other], gj[other], d[other]
        if pi.size:
            cross = _greedy(pi, gj, d, pred.score[fp_rows], fp_rows.size, miss_rows.size)
    hit = cross >= 0
    np.add.at(conf, (gc[miss_rows[cross[hit]]], pc[fp_rows[hit]]), 1)
    picked_as_other = np.zeros(len(gt), dtype=bool)
    picked_as_other[miss_rows[cross[hit]]] = True
    still_missed = ~found & ~picked_as_other
    np.add.at(conf, (gc[still_missed], np.full(int(still_missed.sum()), C)), 1)
    np.add.at(conf, (np.full(int((~hit).sum()), C), pc[fp_rows[~hit]]), 1)

    return Outcomes(
        pred=np.where(match >= 0, TP, FP).astype(np.int8),
        pred_match=match,
        gt=np.where(found, TP, MISSED).astype(np.int8),
        confusion=conf,
        labels=particles.names,
    )


def pr_curve(scores: np.ndarray, is_tp: np.ndarray, n_gt: int, beta: float = 4.0) -> dict:
    """Precision, recall and F-beta when keeping the predictions with ``score >= t``, for every ``t``.

    Valid for a greedy matching by descending score: removing the lowest-scoring
    predictions leaves the others' matches unchanged, so ``tp(t)`` is a cumulative sum.

    Args:
        scores: prediction scores ``[N]`` of one class.
        is_tp: whether each is a true positive ``[N]``.
        n_gt: ground-truth particles of the class.
        beta: F-beta's beta.

    Returns:
        dict of float arrays ``[K]`` over the distinct scores (descending): ``threshold``,
        ``precision``, ``recall``, ``fbeta``, and ``best`` (index of the highest F-beta).
    """
    s = np.asarray(scores, np.float64)
    o = np.argsort(-s, kind="stable")
    s, t = s[o], np.asarray(is_tp, bool)[o]
    tp = np.cumsum(t)
    n = np.arange(1, s.size + 1)
    last = np.r_[s[1:] != s[:-1], True] if s.size else np.zeros(0, bool)  # last of each tie group
    tp, n, s = tp[last], n[last], s[last]
    p, r, f = precision_recall_fbeta(tp, n - tp, n_gt - tp, beta)
    return {"threshold": s, "precision": np.atleast_1d(p), "recall": np.atleast_1d(r), "fbeta": np.atleast_1d(f),
            "best": int(np.argmax(f)) if f.size else -1}

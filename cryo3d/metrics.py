"""Particle-picking score: the CZII CryoET Object Identification F-beta.

Definition
----------
For each class ``c`` and tomogram, a prediction is a true positive when it lies within
``distance_multiplier * radius_c`` Angstrom (inclusive) of a ground-truth particle of
the same class in the same tomogram. Counts are summed over tomograms per class
(micro), then per class

* ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``,
* ``F_beta = (1 + beta^2) P R / (beta^2 P + R)`` (``beta = 4``: recall weighs 16x),

and the score is the weighted mean ``sum_c w_c F_c / sum_c w_c`` over every class of
the :class:`~cryo3d.particles.ParticleSet` (CZII weights: apo-ferritin 1, beta-amylase
0, beta-galactosidase 2, ribosome 1, thyroglobulin 2, virus-like-particle 1).

Two matchings
-------------
``"czii"`` (default): the official Kaggle metric (``czi-cryoet-84969``), exactly. Per
tomogram and class,
``raw_matches = KDTree(candidates).query_ball_tree(KDTree(references), r)``,
``tp`` = number of distinct references matched by any candidate, ``fp = n_pred - tp``,
``fn = n_gt - tp``. A prediction is not used up by a match, so one prediction between
two close particles counts 2 TP and ``fp`` goes negative (reproduced on purpose: a
figure must compare with the leaderboard), while two predictions on one particle count
1 TP and 1 FP as in greedy. Only the tomograms of the ground truth are scored (Kaggle
iterates over the solution's experiments and drops submitted rows of others). Zero
conventions: precision and recall are 0 when their denominator is 0, F-beta is 0 when
``P + R == 0``; so a class absent from both tables scores ``F = 0``, and its weight
still counts in the mean (in Kaggle a class without ground truth is never scored, i.e.
contributes 0 to the weighted sum, which is the same).

``"greedy"``: one-to-one. Predictions are visited by descending score (ties by row
order); each takes the nearest (ties: lowest row) still unmatched ground truth within
the radius. Every ground truth and every prediction counts at most once, so
``tp <= min(n_pred, n_gt)`` and ``fp = n_pred - tp >= 0``. Computed from the candidate
pairs of ``cKDTree.sparse_distance_matrix`` by a vectorised priority pass (a pair is
accepted once it outranks every live pair sharing its prediction or its ground truth;
this gives exactly the sequential greedy matching). The two agree whenever no
prediction lies within the radius of two ground truths and no ground truth is
reachable only by a prediction already used for another; they differ on crowded
particles. By default greedy scores the union of the tomograms of both tables
(predictions in a tomogram without ground truth are false positives) and takes the
cryo3d zero conventions: ``precision = 1`` when there are no predictions and nothing
was missed (``tp + fp == 0`` and ``fn == 0``), else 0 when ``tp + fp == 0``;
``recall = 1`` when there is no ground truth and no false positive, else 0 when
``tp + fn == 0``. So a class absent from both tables scores ``F = 1`` under greedy.
``F = 0`` whenever ``beta^2 P + R == 0``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.spatial import cKDTree

from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks
from cryo3d.temperature import MIN_TEMPERATURE, fit_class_temperatures, temper

__all__ = [
    "MATCHINGS",
    "ClassScore",
    "ScoreResult",
    "calibration",
    "precision_recall_fbeta",
    "match_greedy",
    "score_picks",
    "sweep_thresholds",
]

#: Matching rules accepted by :func:`score_picks` and :func:`sweep_thresholds` (the default first).
MATCHINGS = ("czii", "greedy")

#: Threshold kept for a class that no swept threshold gives a true positive (not learned,
#: or no ground truth where it was validated). Never the lowest of the sweep: on unseen
#: data the lowest threshold of a class the model has not learned floods with false picks.
UNLEARNED_THRESHOLD = 0.9

#: How :func:`sweep_thresholds` chooses among thresholds of equal (maximal) F-beta.
TIE_BREAKS = ("low", "middle", "high")


@dataclass
class ClassScore:
    """Counts and rates of one class (summed over tomograms)."""

    name: str
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    fbeta: float
    weight: float
    n_pred: int
    n_gt: int


@dataclass
class ScoreResult:
    """Per-class scores and the weighted mean F-beta.

    Attributes:
        per_class (list of ClassScore): In the order of the particle set.
        score (float): ``sum(w_c F_c) / sum(w_c)``.
        beta (float): The F-beta ``beta``.
        matching (str): ``"czii"`` or ``"greedy"``.
        distance_multiplier (float): Match radius as a fraction of each class's particle radius.
        thresholds (dict, optional): Per-class score thresholds applied to the predictions (from a sweep).
    """

    per_class: list[ClassScore]
    score: float
    beta: float
    matching: str = "czii"
    distance_multiplier: float = 0.5
    thresholds: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> ClassScore:
        for c in self.per_class:
            if c.name == name:
                return c
        raise KeyError(f"no class {name!r} in this score; classes are {[c.name for c in self.per_class]}")

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per class (the :class:`ClassScore` fields, plus ``threshold`` if swept)."""
        rows = []
        for c in self.per_class:
            row = asdict(c)
            if self.thresholds:
                row["threshold"] = self.thresholds.get(c.name)
            rows.append(row)
        return rows

    def table(self) -> str:
        """Aligned text table, one row per class, then the weighted score."""
        fb = f"F{self.beta:g}"
        head = ["class", "weight", "n_gt", "n_pred", "tp", "fp", "fn", "precision", "recall", fb]
        if self.thresholds:
            head.append("threshold")
        body = []
        for c in self.per_class:
            row = [c.name, f"{c.weight:g}", str(c.n_gt), str(c.n_pred), str(c.tp), str(c.fp), str(c.fn),
                   f"{c.precision:.4f}", f"{c.recall:.4f}", f"{c.fbeta:.4f}"]
            if self.thresholds:
                t = self.thresholds.get(c.name)
                row.append("" if t is None else f"{t:.3f}")
            body.append(row)
        widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]

        def fmt(r: list[str]) -> str:
            return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))

        lines = [fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in body]
        lines.append(
            f"score ({fb}, weighted mean, {self.matching} matching, "
            f"radius x {self.distance_multiplier:g}): {self.score:.4f}"
        )
        return "\n".join(lines)


def precision_recall_fbeta(
    tp: Any, fp: Any, fn: Any, beta: float = 4.0, convention: str = "czii"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F-beta from counts (vectorised over arrays of counts).

    Args:
        tp, fp, fn (int or array): True positives, false positives, false negatives.
        beta (float): Recall weighs ``beta^2`` times as much as precision.
        convention (``"czii"`` or ``"greedy"``): Zero-denominator rules (module docstring): ``"czii"`` gives 0 for every empty
            denominator and F = 0 when ``P + R == 0``, like the Kaggle metric; ``"greedy"``
            gives 1 for an empty class (no predictions, no ground truth).

    Returns:
        precision, recall, fbeta (float64 arrays (0-d for scalar input)):
    """
    if convention not in MATCHINGS:
        raise ValueError(f"convention must be one of {MATCHINGS}, got {convention!r}")
    tp = np.asarray(tp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    fn = np.asarray(fn, dtype=np.float64)
    b2 = float(beta) ** 2
    pd_ = tp + fp
    rd = tp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(pd_ > 0, tp / np.where(pd_ > 0, pd_, 1.0), 0.0)
        r = np.where(rd > 0, tp / np.where(rd > 0, rd, 1.0), 0.0)
        if convention == "greedy":
            p = np.where((pd_ == 0) & (fn == 0), 1.0, p)
            r = np.where((rd == 0) & (fp == 0), 1.0, r)
        den = b2 * p + r
        live = (p + r > 0) if convention == "czii" else (den > 0)  # Kaggle: 0 when P + R == 0
        f = np.where(live & (den != 0), (1.0 + b2) * p * r / np.where(den != 0, den, 1.0), 0.0)
    return p, r, f


def match_greedy(pair_pred: np.ndarray, pair_gt: np.ndarray, n_pred: int, n_gt: int) -> np.ndarray:
    """Greedy one-to-one matching over candidate pairs given in priority order.

    Args:
        pair_pred, pair_gt (int ``[E]``): Candidate pairs (prediction row, ground-truth row), sorted by priority (first =
            best; for the metric: by prediction rank, then distance).
        n_pred, n_gt (int): Number of predictions and ground truths.

    Returns:
        int64 ``[n_pred]``: Matched ground-truth row of each prediction, ``-1`` if unmatched. Equal to
            visiting the pairs in order and accepting a pair when both ends are free.
    """
    pair_pred = np.asarray(pair_pred, dtype=np.int64)
    pair_gt = np.asarray(pair_gt, dtype=np.int64)
    E = pair_pred.shape[0]
    to_gt = np.full(n_pred, -1, dtype=np.int64)
    to_pred = np.full(n_gt, -1, dtype=np.int64)
    alive = np.ones(E, dtype=bool)
    prio = np.arange(E, dtype=np.int64)
    while alive.any():  # rounds; each accepts at least the best live pair
        e = prio[alive]
        best_p = np.full(n_pred, E, dtype=np.int64)
        best_g = np.full(n_gt, E, dtype=np.int64)
        np.minimum.at(best_p, pair_pred[e], e)
        np.minimum.at(best_g, pair_gt[e], e)
        win = e[(best_p[pair_pred[e]] == e) & (best_g[pair_gt[e]] == e)]
        to_gt[pair_pred[win]] = pair_gt[win]
        to_pred[pair_gt[win]] = pair_pred[win]
        alive &= (to_gt[pair_pred] < 0) & (to_pred[pair_gt] < 0)
    return to_gt


# ----------------------------------------------------------------------------- internals


@dataclass
class _ClassCounts:
    """What a threshold needs to count one class: TP scores, prediction scores, n_gt."""

    tp_scores: np.ndarray  # score that makes each true positive count (sorted ascending)
    pred_scores: np.ndarray  # every prediction's score (sorted ascending)
    n_gt: int

    def counts(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``tp, fp, fn, n_pred`` when keeping predictions with ``score >= t``, per ``t``."""
        t = np.asarray(thresholds, dtype=np.float64)
        tp = self.tp_scores.shape[0] - np.searchsorted(self.tp_scores, t, side="left")
        n_pred = self.pred_scores.shape[0] - np.searchsorted(self.pred_scores, t, side="left")
        return tp, n_pred - tp, self.n_gt - tp, n_pred


def _check_args(beta: float, distance_multiplier: float, matching: str) -> None:
    if matching not in MATCHINGS:
        raise ValueError(f"matching must be one of {MATCHINGS}, got {matching!r}")
    if not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a positive number, got {beta!r}")
    if not np.isfinite(distance_multiplier) or distance_multiplier <= 0:
        raise ValueError(f"distance_multiplier must be a positive number, got {distance_multiplier!r}")


def _match_all(
    pred: Picks,
    gt: Picks,
    particles: ParticleSet,
    distance_multiplier: float,
    matching: str,
    tomograms: Sequence[str] | None,
) -> list[_ClassCounts]:
    """Match every class once (all predictions, no threshold) -> per-class counters."""
    pred_c = particles.indices(pred.cls, where="predictions")
    gt_c = particles.indices(gt.cls, where="ground truth")
    if tomograms is None:
        tomograms = gt.tomograms if matching == "czii" else list(dict.fromkeys(gt.tomograms + pred.tomograms))
    tomograms = [str(t) for t in tomograms]
    code = {t: i for i, t in enumerate(tomograms)}
    pred_t = np.array([code.get(str(t), -1) for t in pred.tomo], dtype=np.int64)
    gt_t = np.array([code.get(str(t), -1) for t in gt.tomo], dtype=np.int64)

    out = []
    for c, radius in enumerate(particles.radii * distance_multiplier):  # classes (few)
        ps = np.nonzero((pred_c == c) & (pred_t >= 0))[0]
        gs = np.nonzero((gt_c == c) & (gt_t >= 0))[0]
        score = pred.score[ps]
        tp_scores = np.zeros(0)
        if ps.size and gs.size:
            # a 4th coordinate separates tomograms by more than the radius; within a
            # tomogram it is identical, so distances there are the plain 3D ones
            sep = 2.0 * radius + 1.0
            p4 = np.column_stack([pred.xyz[ps], pred_t[ps] * sep])
            g4 = np.column_stack([gt.xyz[gs], gt_t[gs] * sep])
            pairs = cKDTree(p4).sparse_distance_matrix(cKDTree(g4), radius, output_type="ndarray")
            pi, gj, dist = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64), pairs["v"]
            if matching == "greedy":
                rank = np.empty(ps.size, dtype=np.int64)
                rank[np.lexsort((np.arange(ps.size), -score))] = np.arange(ps.size)
                order = np.lexsort((gj, dist, rank[pi]))
                to_gt = match_greedy(pi[order], gj[order], ps.size, gs.size)
                tp_scores = score[to_gt >= 0]
            else:
                best = np.full(gs.size, -np.inf)
                np.maximum.at(best, gj, score[pi])  # a ground truth counts once the best hit passes
                tp_scores = best[np.isfinite(best)]
        out.append(_ClassCounts(np.sort(tp_scores), np.sort(score), int(gs.size)))
    return out


def _result(
    counts: list[_ClassCounts],
    thresholds: np.ndarray,
    particles: ParticleSet,
    beta: float,
    distance_multiplier: float,
    matching: str,
    record_thresholds: bool,
) -> ScoreResult:
    per_class = []
    for cls, cc, t in zip(particles.classes, counts, thresholds):
        tp, fp, fn, n_pred = (int(v[0]) for v in cc.counts(np.array([t])))
        p, r, f = precision_recall_fbeta(tp, fp, fn, beta, matching)
        per_class.append(
            ClassScore(cls.name, tp, fp, fn, float(p), float(r), float(f), float(cls.weight), n_pred, cc.n_gt)
        )
    score = _weighted_mean(np.array([c.fbeta for c in per_class]), particles)
    thr = {n: float(t) for n, t in zip(particles.names, thresholds)} if record_thresholds else {}
    return ScoreResult(per_class, score, float(beta), matching, float(distance_multiplier), thr)


def _weighted_mean(f: np.ndarray, particles: ParticleSet) -> float:
    w = particles.weights
    if not w.sum() > 0:
        raise ValueError(f"particle class weights must sum to a positive number, got {w.tolist()}")
    return float((w * f).sum() / w.sum())


# ----------------------------------------------------------------------------- public


def score_picks(
    pred: Picks,
    gt: Picks,
    particles: ParticleSet,
    beta: float = 4.0,
    distance_multiplier: float = 0.5,
    matching: str = "czii",
    tomograms: list[str] | None = None,
) -> ScoreResult:
    """Score predicted picks against ground truth (CZII F-beta, see module docstring).

    Args:
        pred, gt (Picks): Predictions and ground truth, ``xyz`` in Angstrom. Every class name must be in
            ``particles`` (``ValueError`` naming the table otherwise). ``gt.score`` is not used.
        particles (ParticleSet): Classes, radii (Angstrom) and weights; every class is scored.
        beta (float): F-beta ``beta`` (4 in the challenge).
        distance_multiplier (float): Match radius as a fraction of the particle radius (0.5 in the challenge).
        matching (``"czii"`` or ``"greedy"``): The Kaggle rule with Kaggle's zero conventions (default), or one-to-one greedy
            matching.
        tomograms (list of str, optional): Tomograms to score; rows of other tomograms are ignored. Default: the tomograms
            of ``gt`` (czii, as Kaggle), the union of the tomograms of ``gt`` and ``pred``
            (greedy; predictions in a tomogram without ground truth are false positives).

    Returns:
        ScoreResult:
    """
    _check_args(beta, distance_multiplier, matching)
    counts = _match_all(pred, gt, particles, distance_multiplier, matching, tomograms)
    no_threshold = np.full(len(particles), -np.inf)
    return _result(counts, no_threshold, particles, beta, distance_multiplier, matching, False)


def smooth_curve(f: np.ndarray, half_width: int) -> np.ndarray:
    """Moving average of an F-beta curve over ``2 * half_width + 1`` neighbouring thresholds
    (fewer at the ends: the mean of those that exist). ``half_width`` 0 returns ``f``.

    Example:
        >>> smooth_curve(np.array([0.0, 1.0, 0.0, 0.5]), 1).round(3).tolist()
        [0.5, 0.333, 0.5, 0.25]
    """
    f = np.asarray(f, dtype=np.float64)
    k = int(half_width)
    if k < 0:
        raise ValueError(f"smoothing half-width must be >= 0 thresholds, got {half_width}")
    if k == 0 or f.size == 0:
        return f
    c = np.concatenate([[0.0], np.cumsum(f)])
    i = np.arange(f.size)
    lo, hi = np.maximum(i - k, 0), np.minimum(i + k + 1, f.size)
    return (c[hi] - c[lo]) / (hi - lo)


def _choose_threshold(f: np.ndarray, thr: np.ndarray, tie_break: str) -> int:
    """Index of the chosen threshold on one F-beta curve ``f`` over ascending ``thr``.

    ``"low"``: the lowest threshold of maximal F; ``"high"``: the highest one;
    ``"middle"``: within the run of consecutive maximal thresholds that starts at the
    lowest one, the threshold nearest the run's midpoint (by value; ties: the lower).
    """
    top = f >= f.max() - 1e-12
    first = int(np.argmax(top))
    if tie_break == "low":
        return first
    if tie_break == "high":
        return int(top.size - 1 - np.argmax(top[::-1]))
    off = np.nonzero(~top[first:])[0]
    last = first + (int(off[0]) - 1 if off.size else top.size - 1 - first)
    mid = 0.5 * (thr[first] + thr[last])
    return first + int(np.argmin(np.abs(thr[first : last + 1] - mid)))


#: Score bins of :func:`calibration` (equal width on the probability scale, plus the last
#: per cent split finer: a confident model's picks pile up there).
CALIBRATION_EDGES = np.r_[np.linspace(0.0, 0.9, 10), 0.99, 0.999, 1.0 + 1e-12]


def calibration(counts: Sequence[_ClassCounts], edges: np.ndarray = CALIBRATION_EDGES) -> dict[str, Any]:
    """How well pick scores predict being right: the reliability table and its expected calibration error.

    Per score bin (all classes pooled): ``n`` predictions, ``tp`` of them true positives
    (CZII matching: ground truths whose best prediction falls in the bin), ``precision`` =
    tp / n and the bin's mean score. ``ece`` = sum over bins of n / N x |precision - mean
    score|: 0 for a calibrated score (a pick of score 0.8 is right 80 % of the time), large
    for a saturated one (everything at 1.0, most of it false).

    Args:
        counts: per-class matches from :func:`_match_all`.
        edges: ascending bin edges on the score.

    Returns:
        dict with ``edges``, ``n``, ``tp``, ``precision``, ``mean_score`` (lists per bin; NaN
        where a bin is empty) and ``ece`` (float; NaN without predictions).
    """
    edges = np.asarray(edges, dtype=np.float64)
    pred = np.concatenate([c.pred_scores for c in counts]) if counts else np.zeros(0)
    tp_s = np.concatenate([c.tp_scores for c in counts]) if counts else np.zeros(0)
    k = len(edges) - 1
    b_pred = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, k - 1)
    b_tp = np.clip(np.searchsorted(edges, tp_s, side="right") - 1, 0, k - 1)
    n = np.bincount(b_pred, minlength=k).astype(np.float64)
    tp = np.bincount(b_tp, minlength=k).astype(np.float64)
    total = np.bincount(b_pred, weights=pred, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = tp / n
        mean = total / n
    ece = float(np.nansum(n / n.sum() * np.abs(prec - mean))) if n.sum() else float("nan")
    return {"edges": edges.tolist(), "n": n.astype(int).tolist(), "tp": tp.astype(int).tolist(),
            "precision": prec.tolist(), "mean_score": mean.tolist(), "ece": ece}


def sweep_thresholds(
    pred: Picks,
    gt: Picks,
    particles: ParticleSet,
    thresholds: Sequence[float] | np.ndarray = np.linspace(0.05, 0.95, 19),
    beta: float = 4.0,
    distance_multiplier: float = 0.5,
    matching: str = "czii",
    tomograms: list[str] | None = None,
    tie_break: str = "low",
    unlearned_threshold: float = UNLEARNED_THRESHOLD,
    smooth: int = 0,
    max_picks_per_true: float | None = None,
) -> dict[str, Any]:
    """Best score threshold per class (keep predictions with ``score >= t``).

    Matching is done once per class on all predictions. Greedy matching visits
    predictions by descending score, so dropping those below ``t`` leaves the others'
    matches unchanged: ``tp(t)`` = matched predictions with ``score >= t``. For
    ``"czii"``, ``tp(t)`` = ground truths whose best-scoring prediction within the radius
    has ``score >= t``. Counting for all thresholds is then a ``searchsorted``.

    A class that no threshold gives a true positive (``tp`` at the lowest threshold is
    0: the model has not learned it, or it has no ground truth here) keeps
    ``unlearned_threshold``, never the lowest threshold, and is reported in
    ``"unlearned"``: its F-beta is 0 at every threshold, and on unseen data the lowest
    threshold of such a class floods with false picks.

    Args:
        pred, gt, particles, beta, distance_multiplier, matching, tomograms: As in :func:`score_picks`.
        thresholds (``[T]``): Candidate thresholds on ``pred.score``.
        tie_break (``"low"``, ``"middle"`` or ``"high"``): Which of several thresholds of equal maximal F-beta to keep (see
            :func:`_choose_threshold`); they differ only on data without predictions
            between them. ``"low"`` by default: on two held-out pairs of tomograms (issue
            10, the bundle's default model after 3 epochs) it scored 0.544 / 0.600,
            ``"middle"`` 0.535 / 0.602, ``"high"`` 0.535 / 0.602: no gain worth a change
            (F-beta with beta 4 loses more by a missed particle than it gains by a dropped
            false pick).
        unlearned_threshold (float): Threshold of a class without any true positive (default
            :data:`UNLEARNED_THRESHOLD`).
        smooth (int): Choose on the F-beta curve averaged over this many neighbouring
            thresholds on each side (:func:`smooth_curve`; 0: the raw curve). The raw curve's
            maximum often sits on a knife edge just below the lowest-scoring true positive of the
            validation tomograms; unseen tomograms score their particles a little lower and lose
            them there. The averaged curve prefers the middle of a broad good region.
            ``"fbeta"``, ``"best_fbeta"`` and ``"score"`` stay the raw F-beta (at the chosen
            thresholds).
        max_picks_per_true (float or None): Choose each class's threshold only among those that
            keep at most this many predictions per ground truth of the class (a bound on its
            flood: F-beta 4 keeps a pick that is right one time in 17 or more, so a class whose
            look-alikes score like its particles would otherwise report many times their
            number); None: no bound. Where no threshold keeps within it, the unbounded choice.

    Returns:
        dict with: ``"thresholds"`` float64 ``[T]`` (as given, sorted ascending);
            ``"fbeta"``: ``{class: [T] F-beta per threshold}``;
            ``"best_threshold"``: ``{class: t}``, the threshold of highest F-beta (ties:
            by ``tie_break``; ``unlearned_threshold`` for an unlearned class);
            ``"best_fbeta"``: ``{class: F}``;
            ``"unlearned"``: names of the classes without any true positive;
            ``"score"``: weighted mean of the best F-beta, i.e. the score when each class
            uses its own best threshold;
            ``"score_curve"``: ``[T]`` score when every class uses the same threshold;
            ``"result"``: the :class:`ScoreResult` at the best thresholds;
            ``"calibration"``: :func:`calibration` of all predictions' scores;
            ``"temperature"``: ``{class: T}`` fitted on these matches
            (:func:`cryo3d.temperature.fit_class_temperatures`; 1 for an unlearned class, whose
            ``unlearned_threshold`` then stays as it is);
            ``"calibration_tempered"``: :func:`calibration` of the scores tempered by it.
    """
    _check_args(beta, distance_multiplier, matching)
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    if not np.isfinite(unlearned_threshold):
        raise ValueError(f"unlearned_threshold must be a finite number, got {unlearned_threshold!r}")
    if max_picks_per_true is not None and not (np.isfinite(max_picks_per_true) and max_picks_per_true > 0):
        raise ValueError(f"max_picks_per_true must be a positive number of picks per true particle, got {max_picks_per_true!r}")
    thr = np.sort(np.asarray(thresholds, dtype=np.float64).reshape(-1))
    if thr.size == 0 or not np.all(np.isfinite(thr)):
        raise ValueError(f"thresholds must be a non-empty list of finite numbers, got {thr.tolist()}")
    counts = _match_all(pred, gt, particles, distance_multiplier, matching, tomograms)
    curves = {}
    unlearned = []
    best_t = np.empty(len(particles))
    for k, (name, cc) in enumerate(zip(particles.names, counts)):
        tp, fp, fn, n_kept = cc.counts(thr)
        _, _, f = precision_recall_fbeta(tp, fp, fn, beta, matching)
        curves[name] = f
        if tp[0] > 0:
            fs = smooth_curve(f, smooth)
            if max_picks_per_true is not None:
                within = n_kept <= float(max_picks_per_true) * cc.n_gt
                fs = np.where(within, fs, -np.inf) if within.any() else fs
            best_t[k] = thr[_choose_threshold(fs, thr, tie_break)]
        else:
            best_t[k] = float(unlearned_threshold)
            unlearned.append(name)
    result = _result(counts, best_t, particles, beta, distance_multiplier, matching, True)
    fmat = np.stack([curves[n] for n in particles.names])  # [C, T]
    temps = fit_class_temperatures([c.pred_scores for c in counts], [c.tp_scores for c in counts])
    temps[[particles.names.index(n) for n in unlearned]] = MIN_TEMPERATURE  # nothing to calibrate: its safe threshold stays
    tempered = [_ClassCounts(temper(c.tp_scores, t), temper(c.pred_scores, t), c.n_gt) for c, t in zip(counts, temps)]
    w = particles.weights
    return {
        "thresholds": thr,
        "fbeta": curves,
        "best_threshold": {n: float(t) for n, t in zip(particles.names, best_t)},
        "best_fbeta": {c.name: c.fbeta for c in result.per_class},
        "unlearned": unlearned,
        "score": result.score,
        "score_curve": (w[:, None] * fmat).sum(axis=0) / w.sum(),
        "result": result,
        "calibration": calibration(counts),
        "temperature": {n: float(t) for n, t in zip(particles.names, temps)},
        "calibration_tempered": calibration(tempered),
    }

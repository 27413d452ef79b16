"""The CZII particle F-beta: matching, zero conventions, weighting, threshold sweep."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import KDTree

from cryo3d.metrics import (
    UNLEARNED_THRESHOLD,
    ClassScore,
    ScoreResult,
    match_greedy,
    precision_recall_fbeta,
    score_picks,
    sweep_thresholds,
)
from cryo3d.particles import CZII_PARTICLES, ParticleClass, ParticleSet
from cryo3d.picks import Picks

# match radius = 0.5 * radius: "a" 50 A, "b" 30 A
PARTICLES = ParticleSet(
    (ParticleClass("a", 100.0, 1.0), ParticleClass("b", 60.0, 2.0), ParticleClass("z", 80.0, 0.0))
)


def picks(rows: list[tuple], scores: list[float] | None = None) -> Picks:
    """Picks from ``(tomo, class, x, y, z)`` rows."""
    if not rows:
        return Picks.empty()
    tomo, cls, x, y, z = zip(*rows)
    return Picks(list(tomo), list(cls), np.column_stack([x, y, z]), scores)


GT = picks([("t1", "a", 0, 0, 0), ("t1", "a", 500, 0, 0), ("t1", "b", 0, 500, 0), ("t2", "b", 0, 0, 0)])


def test_exact_matches_score_one():
    r = score_picks(GT, GT, PARTICLES)
    assert r.score == pytest.approx(1.0)
    assert (r["a"].tp, r["a"].fp, r["a"].fn) == (2, 0, 0)
    assert (r["b"].tp, r["b"].fp, r["b"].fn) == (2, 0, 0)


@pytest.mark.parametrize("matching", ["greedy", "czii"])
@pytest.mark.parametrize("offset, hit", [(49.99, True), (50.0, True), (50.01, False)])
def test_a_prediction_matches_within_half_the_radius_inclusive(matching, offset, hit):
    gt = picks([("t1", "a", 100, 100, 100)])
    pred = picks([("t1", "a", 100, 100, 100 + offset)])
    r = score_picks(pred, gt, PARTICLES, matching=matching)["a"]
    assert (r.tp, r.fp, r.fn) == ((1, 0, 0) if hit else (0, 1, 1))


def test_the_match_distance_is_3d_euclidean():
    gt = picks([("t1", "b", 0, 0, 0)])
    d = 30.0 / np.sqrt(3)
    assert score_picks(picks([("t1", "b", d - 0.01, d - 0.01, d - 0.01)]), gt, PARTICLES)["b"].tp == 1
    assert score_picks(picks([("t1", "b", d + 0.01, d + 0.01, d + 0.01)]), gt, PARTICLES)["b"].tp == 0


@pytest.mark.parametrize("matching", ["greedy", "czii"])
def test_two_predictions_on_one_particle_count_one_tp_and_one_fp(matching):
    gt = picks([("t1", "a", 0, 0, 0)])
    pred = picks([("t1", "a", 5, 0, 0), ("t1", "a", 0, 8, 0)], [0.7, 0.9])
    r = score_picks(pred, gt, PARTICLES, matching=matching)["a"]
    assert (r.tp, r.fp, r.fn) == (1, 1, 0)


def test_a_prediction_of_the_wrong_class_does_not_match():
    pred = picks([("t1", "b", 0, 0, 0)])
    r = score_picks(pred, picks([("t1", "a", 0, 0, 0)]), PARTICLES)
    assert (r["a"].tp, r["a"].fn, r["b"].fp) == (0, 1, 1)


def test_empty_predictions_give_zero_recall_and_zero_score():
    r = score_picks(Picks.empty(), GT, PARTICLES)
    for name in ("a", "b"):
        c = r[name]
        assert (c.tp, c.fp, c.fn, c.n_pred) == (0, 0, 2, 0)
        assert (c.precision, c.recall, c.fbeta) == (0.0, 0.0, 0.0)
    assert r.score == 0.0


def test_empty_ground_truth_makes_every_prediction_a_false_positive_under_greedy():
    r = score_picks(GT, Picks.empty(), PARTICLES, matching="greedy")
    c = r["a"]
    assert (c.tp, c.fp, c.fn, c.n_gt) == (0, 2, 0, 0)
    assert (c.precision, c.recall, c.fbeta) == (0.0, 0.0, 0.0)


def test_empty_ground_truth_scores_nothing_and_zero_by_default():
    r = score_picks(GT, Picks.empty(), PARTICLES)  # czii: only the ground truth's tomograms count
    assert (r["a"].tp, r["a"].fp, r["a"].fn, r["a"].fbeta) == (0, 0, 0, 0.0)
    assert r.score == 0.0


def test_the_default_matching_is_the_challenge_rule():
    gt = picks([("t1", "a", 0, 0, 0), ("t1", "a", 80, 0, 0)])
    pred = picks([("t1", "a", 40, 0, 0)])
    assert score_picks(pred, gt, PARTICLES).matching == "czii"
    assert (score_picks(pred, gt, PARTICLES)["a"].tp, sweep_thresholds(pred, gt, PARTICLES)["result"]["a"].tp) == (2, 2)


def test_a_class_absent_from_both_tables_scores_one_greedy_and_zero_czii():
    gt = picks([("t1", "a", 0, 0, 0)])
    greedy = score_picks(gt, gt, PARTICLES, matching="greedy")
    czii = score_picks(gt, gt, PARTICLES)
    assert (greedy["b"].precision, greedy["b"].recall, greedy["b"].fbeta) == (1.0, 1.0, 1.0)
    assert (czii["b"].precision, czii["b"].recall, czii["b"].fbeta) == (0.0, 0.0, 0.0)
    assert greedy.score == pytest.approx(1.0)
    assert czii.score == pytest.approx(1.0 / 3.0)  # Kaggle: absent class counts 0 with its weight


def test_a_class_with_weight_zero_does_not_change_the_score():
    gt = picks([("t1", "apo-ferritin", 0, 0, 0), ("t1", "beta-amylase", 900, 0, 0), ("t1", "ribosome", 0, 900, 0)])
    pred = picks([("t1", "apo-ferritin", 10, 0, 0), ("t1", "ribosome", 400, 400, 0)])
    junk = picks([("t1", "beta-amylase", 300 * i, 300, 300) for i in range(5)])
    base = score_picks(pred, gt, CZII_PARTICLES)
    with_junk = score_picks(Picks.concat([pred, junk]), gt, CZII_PARTICLES)
    assert with_junk["beta-amylase"].fp == 5
    assert with_junk.score == base.score


def test_predictions_in_another_tomogram_do_not_match():
    gt = picks([("t1", "a", 0, 0, 0)])
    pred = picks([("t2", "a", 0, 0, 0)])
    greedy = score_picks(pred, gt, PARTICLES, matching="greedy")["a"]
    assert (greedy.tp, greedy.fp, greedy.fn) == (0, 1, 1)
    # Kaggle drops submitted rows of tomograms without ground truth
    czii = score_picks(pred, gt, PARTICLES, matching="czii")["a"]
    assert (czii.tp, czii.fp, czii.fn) == (0, 0, 1)


def test_the_tomograms_argument_restricts_both_tables():
    r = score_picks(GT, GT, PARTICLES, tomograms=["t2"])
    assert (r["a"].n_gt, r["b"].n_gt, r["b"].tp) == (0, 1, 1)


def test_fbeta_formula_matches_a_hand_computation():
    p, r, f = precision_recall_fbeta(3, 2, 1, beta=4.0)
    assert p == pytest.approx(0.6) and r == pytest.approx(0.75)
    assert f == pytest.approx(17 * 0.6 * 0.75 / (16 * 0.6 + 0.75))
    _, _, f1 = precision_recall_fbeta(3, 2, 1, beta=1.0)
    assert f1 == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))


def test_zero_denominator_conventions():
    assert [float(v) for v in precision_recall_fbeta(0, 0, 0, convention="greedy")] == [1.0, 1.0, 1.0]
    assert [float(v) for v in precision_recall_fbeta(0, 0, 3, convention="greedy")] == [0.0, 0.0, 0.0]
    assert [float(v) for v in precision_recall_fbeta(0, 3, 0, convention="greedy")] == [0.0, 0.0, 0.0]
    assert [float(v) for v in precision_recall_fbeta(0, 0, 0)] == [0.0, 0.0, 0.0]


def test_the_score_is_the_weighted_mean_of_class_fbeta():
    # a: 1 TP, 1 FN; b: 2 TP, 2 FP (weights a 1, b 2, z 0)
    pred = picks([("t1", "a", 0, 0, 0), ("t1", "b", 0, 500, 0), ("t2", "b", 0, 0, 0),
                  ("t1", "b", 900, 900, 900), ("t2", "b", 900, 900, 900)])
    r = score_picks(pred, GT, PARTICLES)
    fa = 17 * 1.0 * 0.5 / (16 * 1.0 + 0.5)
    fb = 17 * 0.5 * 1.0 / (16 * 0.5 + 1.0)
    assert r["a"].fbeta == pytest.approx(fa) and r["b"].fbeta == pytest.approx(fb)
    assert r.score == pytest.approx((1 * fa + 2 * fb + 0 * 1.0) / 3)


def test_greedy_takes_predictions_by_score_and_the_nearest_free_particle():
    # P1 (0.9) sits between G1 and G2, nearer G2; P2 (0.8) only reaches G2.
    gt = picks([("t1", "a", 0, 0, 0), ("t1", "a", 60, 0, 0)])
    pred = picks([("t1", "a", 35, 0, 0), ("t1", "a", 100, 0, 0)], [0.9, 0.8])
    greedy = score_picks(pred, gt, PARTICLES, matching="greedy")["a"]
    assert (greedy.tp, greedy.fp, greedy.fn) == (1, 1, 1)
    # with the scores swapped P2 takes G2 first and P1 falls back to G1
    swapped = score_picks(picks([("t1", "a", 35, 0, 0), ("t1", "a", 100, 0, 0)], [0.8, 0.9]), gt, PARTICLES,
                          matching="greedy")["a"]
    assert (swapped.tp, swapped.fp, swapped.fn) == (2, 0, 0)


def test_czii_counts_every_particle_a_prediction_reaches_and_greedy_only_one():
    # one prediction midway between two particles, both within 50 A
    gt = picks([("t1", "a", 0, 0, 0), ("t1", "a", 80, 0, 0)])
    pred = picks([("t1", "a", 40, 0, 0)])
    czii = score_picks(pred, gt, PARTICLES, matching="czii")["a"]
    greedy = score_picks(pred, gt, PARTICLES, matching="greedy")["a"]
    assert (czii.tp, czii.fp, czii.fn) == (2, -1, 0)
    assert (greedy.tp, greedy.fp, greedy.fn) == (1, 0, 1)


def test_unknown_class_names_raise_naming_the_table():
    bad = picks([("t1", "mystery", 0, 0, 0)])
    with pytest.raises(ValueError, match="predictions.*mystery"):
        score_picks(bad, GT, PARTICLES)
    with pytest.raises(ValueError, match="ground truth.*mystery"):
        score_picks(GT, bad, PARTICLES)


def test_bad_matching_name_raises():
    with pytest.raises(ValueError, match="matching"):
        score_picks(GT, GT, PARTICLES, matching="hungarian")


def _random_case(seed: int) -> tuple[Picks, Picks]:
    """Crowded random picks in two tomograms (many ambiguous pairs)."""
    rng = np.random.default_rng(seed)
    n_gt, n_pred = 60, 80
    gt = Picks(rng.choice(["t1", "t2"], n_gt), rng.choice(["a", "b", "z"], n_gt), rng.uniform(0, 150, (n_gt, 3)))
    base = rng.integers(0, n_gt, n_pred)
    pred = Picks(
        np.where(rng.random(n_pred) < 0.9, gt.tomo[base], "t3"),
        np.where(rng.random(n_pred) < 0.85, gt.cls[base], "a"),
        gt.xyz[base] + rng.normal(0, 25, (n_pred, 3)),
        rng.random(n_pred),
    )
    return pred, gt


def _kaggle_reference(pred: Picks, gt: Picks, particles: ParticleSet, beta: float = 4.0) -> float:
    """The official rule written plainly: loops, query_ball_tree, Kaggle zero conventions."""
    total = 0.0
    for cls in particles.classes:
        tp = fp = fn = 0
        for tomo in set(gt.tomo.tolist()):
            ref = gt.xyz[(gt.tomo == tomo) & (gt.cls == cls.name)]
            cand = pred.xyz[(pred.tomo == tomo) & (pred.cls == cls.name)]
            if len(ref) == 0:
                fp += len(cand)
                continue
            if len(cand) == 0:
                fn += len(ref)
                continue
            hits = KDTree(cand).query_ball_tree(KDTree(ref), r=0.5 * cls.radius)
            t = len({j for h in hits for j in h})
            tp, fp, fn = tp + t, fp + len(cand) - t, fn + len(ref) - t
        p = tp / (tp + fp) if tp + fp > 0 else 0.0
        r = tp / (tp + fn) if tp + fn > 0 else 0.0
        f = (1 + beta**2) * p * r / (beta**2 * p + r) if p + r > 0 else 0.0
        total += cls.weight * f
    return total / particles.weights.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_czii_matching_reproduces_the_official_rule(seed):
    pred, gt = _random_case(seed)
    assert score_picks(pred, gt, PARTICLES, matching="czii").score == pytest.approx(_kaggle_reference(pred, gt, PARTICLES))


def _sequential_greedy_tp(pred: Picks, gt: Picks, particles: ParticleSet) -> dict[str, int]:
    """Greedy matching written as the obvious loop over predictions."""
    out = {}
    tomos = set(gt.tomo.tolist()) | set(pred.tomo.tolist())
    for cls in particles.classes:
        tp = 0
        for tomo in tomos:
            ps = np.nonzero((pred.tomo == tomo) & (pred.cls == cls.name))[0]
            gs = np.nonzero((gt.tomo == tomo) & (gt.cls == cls.name))[0]
            used = set()
            for i in ps[np.argsort(-pred.score[ps], kind="stable")]:
                d = np.linalg.norm(gt.xyz[gs] - pred.xyz[i], axis=1)
                for k in np.argsort(d, kind="stable"):
                    if d[k] > 0.5 * cls.radius:
                        break
                    if k not in used:
                        used.add(k)
                        tp += 1
                        break
        out[cls.name] = tp
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_matching_equals_the_sequential_loop(seed):
    pred, gt = _random_case(seed)
    r = score_picks(pred, gt, PARTICLES, matching="greedy")
    assert {c.name: c.tp for c in r.per_class} == _sequential_greedy_tp(pred, gt, PARTICLES)


def test_match_greedy_accepts_pairs_in_priority_order():
    # pairs (pred, gt): 0-0 first, then 1-0 (gt taken), 1-1, 2-1 (gt taken)
    np.testing.assert_array_equal(match_greedy([0, 1, 1, 2], [0, 0, 1, 1], 3, 2), [0, 1, -1])


def test_sweep_finds_the_threshold_that_separates_true_from_false_predictions():
    gt = picks([("t1", "a", 200.0 * i, 0, 0) for i in range(4)])
    true = [("t1", "a", 200.0 * i + 5, 0, 0) for i in range(4)]
    false = [("t1", "a", 200.0 * i, 900, 0) for i in range(4)]
    pred = picks(true + false, [0.9, 0.8, 0.7, 0.62, 0.4, 0.3, 0.2, 0.1])
    s = sweep_thresholds(pred, gt, PARTICLES)
    assert s["best_threshold"]["a"] == pytest.approx(0.45)  # lowest threshold with F = 1
    assert s["best_fbeta"]["a"] == pytest.approx(1.0)
    assert s["result"]["a"].n_pred == 4
    assert s["result"].thresholds["a"] == pytest.approx(0.45)


@pytest.mark.parametrize("matching", ["greedy", "czii"])
def test_sweep_curves_equal_scoring_the_thresholded_predictions(matching):
    pred, gt = _random_case(4)
    thresholds = np.linspace(0.05, 0.95, 7)
    s = sweep_thresholds(pred, gt, PARTICLES, thresholds=thresholds, matching=matching)
    for k, t in enumerate(thresholds):
        r = score_picks(pred.select(pred.score >= t), gt, PARTICLES, matching=matching,
                        tomograms=["t1", "t2", "t3"] if matching == "greedy" else None)
        for c in r.per_class:
            assert s["fbeta"][c.name][k] == pytest.approx(c.fbeta)
        assert s["score_curve"][k] == pytest.approx(r.score)
    best = sum(PARTICLES.weights[i] * s["best_fbeta"][n] for i, n in enumerate(PARTICLES.names))
    assert s["score"] == pytest.approx(best / PARTICLES.weights.sum())


def test_result_rows_and_table_carry_every_class():
    r = score_picks(GT, GT, PARTICLES)
    assert isinstance(r, ScoreResult) and all(isinstance(c, ClassScore) for c in r.per_class)
    rows = r.to_rows()
    assert [row["name"] for row in rows] == ["a", "b", "z"]
    assert set(rows[0]) == {"name", "tp", "fp", "fn", "precision", "recall", "fbeta", "weight", "n_pred", "n_gt"}
    text = r.table()
    assert all(name in text for name in ("a", "b", "z", "F4", "score"))
    assert "1.0000" in text.splitlines()[-1]


# ----------------------------------------------------------------------------- the challenge's metric, independently


def _challenge_reference(pred: Picks, gt: Picks, particles: ParticleSet, beta: float = 4.0,
                         distance_multiplier: float = 0.5) -> tuple[float, dict[str, tuple[int, int, int]]]:
    """The CZII challenge metric written from its description, independently of cryo3d.metrics.

    Per class and per tomogram of the ground truth (the solution's experiments; predictions in
    other tomograms are ignored): ``raw_matches = KDTree(candidates).query_ball_tree(
    KDTree(references), r=0.5 * radius)``; tp = distinct references matched, fp = n_candidates - tp
    (can be negative), fn = n_references - tp. Counts summed over tomograms; precision, recall 0 on a
    zero denominator; F-beta 0 when P + R == 0; weighted mean over the particle set.
    """
    counts, total = {}, 0.0
    for cls in particles.classes:
        tp = fp = fn = 0
        for tomo in sorted(set(gt.tomo.tolist())):
            ref = gt.xyz[(gt.tomo == tomo) & (gt.cls == cls.name)]
            cand = pred.xyz[(pred.tomo == tomo) & (pred.cls == cls.name)]
            if len(ref) == 0:
                t = 0
            elif len(cand) == 0:
                t = 0
            else:
                raw = KDTree(cand).query_ball_tree(KDTree(ref), r=distance_multiplier * cls.radius)
                t = len({j for hits in raw for j in hits})
            tp, fp, fn = tp + t, fp + len(cand) - t, fn + len(ref) - t
        p = tp / (tp + fp) if tp + fp != 0 else 0.0
        r = tp / (tp + fn) if tp + fn != 0 else 0.0
        f = (1 + beta**2) * p * r / (beta**2 * p + r) if p + r != 0 else 0.0
        counts[cls.name] = (tp, fp, fn)
        total += cls.weight * f
    return total / sum(c.weight for c in particles.classes), counts


def _assert_equals_reference(pred: Picks, gt: Picks, particles: ParticleSet = PARTICLES) -> None:
    ref_score, ref_counts = _challenge_reference(pred, gt, particles)
    r = score_picks(pred, gt, particles)
    assert {c.name: (c.tp, c.fp, c.fn) for c in r.per_class} == ref_counts
    assert r.score == pytest.approx(ref_score, abs=1e-12)


def test_the_metric_equals_the_challenge_on_crowded_particles():
    # one pick between two close references (2 TP, fp -1), a pair of picks on one reference, a chain
    gt = picks([("t1", "a", 0, 0, 0), ("t1", "a", 80, 0, 0), ("t1", "a", 500, 0, 0),
                ("t1", "a", 1000, 0, 0), ("t1", "a", 1040, 0, 0), ("t1", "a", 1080, 0, 0)])
    pred = picks([("t1", "a", 40, 0, 0), ("t1", "a", 505, 0, 0), ("t1", "a", 495, 0, 0), ("t1", "a", 1040, 0, 0)])
    _assert_equals_reference(pred, gt)
    assert score_picks(pred, gt, PARTICLES)["a"].fp == -2  # 4 picks find all 6 references


def test_the_metric_equals_the_challenge_with_missing_classes():
    # "b" only predicted, "z" only in the ground truth, a CZII class absent from both
    gt = picks([("t1", "a", 0, 0, 0), ("t1", "z", 300, 0, 0)])
    pred = picks([("t1", "a", 10, 0, 0), ("t1", "b", 0, 300, 0)])
    _assert_equals_reference(pred, gt)
    czii_gt = picks([("t1", "ribosome", 0, 0, 0)])
    _assert_equals_reference(picks([("t1", "ribosome", 5, 0, 0)]), czii_gt, CZII_PARTICLES)
    # the four other weighted classes absent from both tables score 0 with their weights: 1 / 7
    assert score_picks(picks([("t1", "ribosome", 5, 0, 0)]), czii_gt, CZII_PARTICLES).score == pytest.approx(1 / 7)


def test_the_metric_equals_the_challenge_with_an_extra_predicted_tomogram():
    gt = picks([("t1", "a", 0, 0, 0), ("t2", "b", 0, 0, 0)])
    pred = picks([("t1", "a", 0, 0, 0), ("t2", "b", 0, 0, 5), ("t9", "a", 0, 0, 0), ("t9", "b", 50, 0, 0)])
    _assert_equals_reference(pred, gt)
    assert score_picks(pred, gt, PARTICLES).score == pytest.approx(1.0)  # t9's rows are ignored


@pytest.mark.parametrize("seed", range(8))
def test_the_metric_equals_the_challenge_on_random_cases(seed):
    pred, gt = _random_case(seed)
    _assert_equals_reference(pred, gt)


@pytest.mark.parametrize("seed", range(4))
def test_each_sweep_threshold_equals_the_challenge_on_the_kept_picks(seed):
    pred, gt = _random_case(10 + seed)
    s = sweep_thresholds(pred, gt, PARTICLES, thresholds=[0.1, 0.5, 0.9])
    for k, t in enumerate([0.1, 0.5, 0.9]):
        ref_score, _ = _challenge_reference(pred.select(pred.score >= t), gt, PARTICLES)
        assert s["score_curve"][k] == pytest.approx(ref_score, abs=1e-12)


# ----------------------------------------------------------------------------- thresholds that never flood


def test_a_class_without_any_true_positive_keeps_the_safe_threshold_not_the_lowest():
    gt = picks([("t1", "a", 0, 0, 0), ("t1", "b", 0, 500, 0)])
    pred = picks([("t1", "a", 3, 0, 0)] + [("t1", "b", 100.0 * i, 900, 0) for i in range(5)],
                 [0.9, 0.06, 0.07, 0.1, 0.2, 0.3])
    s = sweep_thresholds(pred, gt, PARTICLES, thresholds=np.linspace(0.05, 0.95, 19))
    assert s["unlearned"] == ["b", "z"]  # "z" has no ground truth: nothing can be found either
    assert s["best_threshold"]["b"] == UNLEARNED_THRESHOLD > 0.05
    assert s["result"]["b"].n_pred == 0
    assert sweep_thresholds(pred, gt, PARTICLES, unlearned_threshold=0.99)["best_threshold"]["b"] == 0.99


@pytest.mark.parametrize("tie_break, expected", [("low", 0.5), ("middle", 0.7), ("high", 0.9)])
def test_tie_break_chooses_among_thresholds_of_equal_fbeta(tie_break, expected):
    # true picks score 0.9, false ones 0.45: F is maximal (1) for every threshold in (0.45, 0.9]
    gt = picks([("t1", "a", 200.0 * i, 0, 0) for i in range(3)])
    pred = picks([("t1", "a", 200.0 * i, 0, 0) for i in range(3)] + [("t1", "a", 200.0 * i, 900, 0) for i in range(3)],
                 [0.9] * 3 + [0.45] * 3)
    s = sweep_thresholds(pred, gt, PARTICLES, thresholds=np.linspace(0.05, 0.95, 19), tie_break=tie_break)
    assert s["best_threshold"]["a"] == pytest.approx(expected)
    assert s["best_fbeta"]["a"] == pytest.approx(1.0)


def test_an_unknown_tie_break_raises():
    with pytest.raises(ValueError, match="tie_break"):
        sweep_thresholds(GT, GT, PARTICLES, tie_break="random")


def test_evaluate_scores_by_the_challenge_rule_and_prints_greedy_beside_it(tmp_path):
    from cryo3d.evaluation import evaluate_files
    from cryo3d.io.picks_csv import write_picks_csv

    gt = picks([("t1", "a", 0, 0, 0), ("t1", "a", 80, 0, 0)])
    pred = picks([("t1", "a", 40, 0, 0)], [0.9])
    write_picks_csv(tmp_path / "gt.csv", gt)
    write_picks_csv(tmp_path / "pred.csv", pred)
    out = evaluate_files(tmp_path / "pred.csv", tmp_path / "gt.csv", particles=PARTICLES, sweep=False)
    assert out["matching"] == "czii" and out["score"] == score_picks(pred, gt, PARTICLES).score
    assert out["scores"]["greedy"] == pytest.approx(score_picks(pred, gt, PARTICLES, matching="greedy").score)
    assert out["scores"]["greedy"] != out["score"]
    assert f"greedy matching beside it: {out['scores']['greedy']:.4f}" in out["text"]


def _loop_moving_average(f, k):
    return np.array([np.mean(f[max(0, i - k): i + k + 1]) for i in range(len(f))])


@pytest.mark.parametrize("k", [0, 1, 3, 10])
def test_smooth_curve_equals_a_moving_average_written_as_a_loop(k):
    from cryo3d.metrics import smooth_curve

    f = np.random.default_rng(k).random(23)
    np.testing.assert_allclose(smooth_curve(f, k), _loop_moving_average(f, k), rtol=0, atol=1e-12)


def test_a_negative_smoothing_width_is_refused():
    from cryo3d.metrics import smooth_curve

    with pytest.raises(ValueError, match="half-width"):
        smooth_curve(np.ones(3), -1)


def test_smoothing_moves_a_knife_edge_threshold_down_into_the_broad_good_region():
    """10 particles scored 0.80-0.89, 20 false picks 0.10-0.79: the raw F4 curve peaks right at the
    weakest true pick; averaged over neighbours it prefers a threshold with recall to spare."""
    n_tp, n_fp = 10, 20
    gt = picks([("t1", "a", 1000.0 * i, 0, 0) for i in range(n_tp)])
    rows = [("t1", "a", 1000.0 * i, 0, 0) for i in range(n_tp)] + [("t1", "a", 1000.0 * i, 5000, 0) for i in range(n_fp)]
    scores = list(np.linspace(0.80, 0.89, n_tp)) + list(np.linspace(0.10, 0.79, n_fp))
    pred = picks(rows, scores)
    grid = np.round(np.arange(0.05, 0.951, 0.05), 4)
    raw = sweep_thresholds(pred, gt, PARTICLES, thresholds=grid)["best_threshold"]["a"]
    smooth = sweep_thresholds(pred, gt, PARTICLES, thresholds=grid, smooth=2)
    assert raw == pytest.approx(0.80)
    assert smooth["best_threshold"]["a"] < raw
    assert smooth["result"]["a"].recall == 1.0  # the recall kept; F-beta reported at the chosen threshold


def _flooding_class() -> tuple[Picks, Picks]:
    """2 particles of "a": one scored 0.9, six look-alikes 0.8-0.55 above the other particle (0.3)."""
    gt = picks([("t1", "a", 0, 0, 0), ("t1", "a", 500, 0, 0)])
    rows = [("t1", "a", 5, 0, 0)] + [("t1", "a", 200.0 * i, 900, 0) for i in range(6)] + [("t1", "a", 505, 0, 0)]
    return picks(rows, [0.9, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.3]), gt


def test_an_unbounded_sweep_keeps_a_flood_for_the_last_particle():
    pred, gt = _flooding_class()
    assert sweep_thresholds(pred, gt, PARTICLES)["result"]["a"].n_pred == 8  # 4 picks per particle


def test_a_sweep_bounded_in_picks_per_particle_chooses_among_thresholds_within_the_bound():
    pred, gt = _flooding_class()
    s = sweep_thresholds(pred, gt, PARTICLES, max_picks_per_true=3.0)
    assert 1 <= s["result"]["a"].n_pred <= 6
    assert s["best_threshold"]["a"] > 0.55


def test_a_bound_no_threshold_meets_leaves_the_unbounded_choice():
    pred, gt = _flooding_class()
    grid = [0.05, 0.1, 0.2]  # every threshold keeps all 8 picks
    assert sweep_thresholds(pred, gt, PARTICLES, thresholds=grid, max_picks_per_true=1.0)["best_threshold"]["a"] == 0.05


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_a_sweep_refuses_a_bound_that_is_not_a_positive_number(bad):
    pred, gt = _flooding_class()
    with pytest.raises(ValueError, match="max_picks_per_true"):
        sweep_thresholds(pred, gt, PARTICLES, max_picks_per_true=bad)

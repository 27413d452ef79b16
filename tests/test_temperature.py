"""Score temperature: fitted on validation picks, the same picks kept, scores that rank and are calibrated."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryo3d.inference import predict
from cryo3d.io.picks_csv import read_picks_csv
from cryo3d.io.tomogram import write_mrc
from cryo3d.metric_ignite import ParticleFBeta
from cryo3d.metrics import sweep_thresholds
from cryo3d.particles import ParticleClass, ParticleSet
from cryo3d.peaks import find_peaks
from cryo3d.picks import Picks
from cryo3d.temperature import (LOGIT_CEILING, MIN_FIT_PICKS, MIN_TEMPERATURE, fit_class_temperatures,
                                fit_temperature, score_logits, temper)
from test_scores_rank import _confident_checkpoint

SPACING = 10.0


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def _overconfident(n: int, true_t: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Picks whose logits are ``true_t`` times too large: right with probability sigmoid(z / true_t)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-5, 40, n)
    right = rng.random(n) < _sigmoid(z / true_t)
    s = _sigmoid(z)
    return s, s[right]


def test_the_fitted_temperature_is_the_one_the_picks_were_drawn_with():
    pred, tp = _overconfident(4000, 4.0)
    assert fit_temperature(pred, tp) == pytest.approx(4.0, rel=0.1)


def test_a_class_whose_picks_are_all_right_is_not_sharpened():
    s = _sigmoid(np.linspace(1, 30, 50))
    assert fit_temperature(s, s) == MIN_TEMPERATURE


def test_a_class_with_too_few_picks_takes_the_pooled_temperature():
    pred, tp = _overconfident(2000, 3.0)
    few = pred[: MIN_FIT_PICKS - 1]
    temps = fit_class_temperatures([pred, few], [tp, few[:3]])
    assert temps[1] == fit_temperature(np.r_[pred, few], np.r_[tp, few[:3]])
    assert temps[0] == fit_temperature(pred, tp)


def test_a_saturated_score_reads_as_the_ceiling_logit():
    np.testing.assert_allclose(score_logits(np.array([1.0, 0.5, 0.0])), [LOGIT_CEILING, 0.0, -LOGIT_CEILING])
    assert _sigmoid(LOGIT_CEILING + 0.1) == 1.0  # where a float64 sigmoid ties


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30), st.floats(1e-12, 1.0), st.floats(0.2, 50.0))
def test_a_tempered_threshold_keeps_exactly_the_scores_it_kept_before(scores, threshold, t):
    p = np.asarray(scores)
    assert np.array_equal(p >= threshold, temper(p, t) >= temper(threshold, t)) or np.any(
        np.isclose(p, threshold, rtol=1e-12, atol=0))


def test_peaks_tempered_by_the_checkpoint_keep_their_order_beyond_a_float64_sigmoid():
    tops = np.array([38.0, 42.0, 46.0, 50.0])  # all exactly 1.0 in float64 at T = 1
    hm = np.full((1, 24, 24, 24), -12.0, np.float32)
    for k, top in enumerate(tops):
        hm[0, 4 + 5 * k, 12, 12] = top
    _, _, plain = find_peaks(hm, 0.5, 2.0, logits=True, refine=False)
    assert np.all(plain == 1.0)
    _, _, tempered = find_peaks(hm, temper(0.5, 4.0), 2.0, logits=True, refine=False, temperature=4.0)
    assert len(np.unique(tempered)) == len(tops)
    np.testing.assert_allclose(np.sort(tempered), _sigmoid(tops / 4.0), rtol=1e-12)


def test_a_tempered_threshold_keeps_the_same_peaks():
    rng = np.random.default_rng(3)
    hm = rng.normal(0, 3, (2, 16, 20, 20)).astype(np.float32)
    c1, l1, _ = find_peaks(hm, [0.7, 0.9], 2.0, logits=True)
    t = np.array([2.5, 6.0])
    c2, l2, _ = find_peaks(hm, temper([0.7, 0.9], t), 2.0, logits=True, temperature=t)
    assert np.array_equal(l1, l2) and np.allclose(c1, c2)


def test_a_temperature_needs_a_logit_heatmap():
    with pytest.raises(ValueError, match="logit heatmap"):
        find_peaks(np.zeros((1, 4, 4, 4), np.float32), 0.5, 1.0, temperature=2.0)


ONE = ParticleSet((ParticleClass("a", 40.0),))


def _validation_case() -> tuple[Picks, Picks]:
    """Picks of one class: 40 right ones at their particles, 160 wrong ones, all scored near 1."""
    rng = np.random.default_rng(5)
    gt_xyz = np.stack([np.arange(40) * 200.0 + 100, np.full(40, 100.0), np.full(40, 100.0)], 1)
    wrong = np.stack([np.arange(160) * 50.0 + 100, np.full(160, 2000.0), np.full(160, 100.0)], 1)
    xyz = np.r_[gt_xyz, wrong]
    score = _sigmoid(np.r_[rng.uniform(10, 40, 40), rng.uniform(5, 38, 160)])
    pred = Picks(np.full(200, "t"), np.full(200, "a"), xyz, score)
    return pred, Picks(np.full(40, "t"), np.full(40, "a"), gt_xyz)


def test_the_sweep_fits_a_temperature_that_lowers_the_calibration_error_of_an_overconfident_model():
    pred, gt = _validation_case()
    sw = sweep_thresholds(pred, gt, ONE, thresholds=[0.05, 0.5, 0.9])
    assert sw["temperature"]["a"] > 1.0
    assert sw["calibration_tempered"]["ece"] < 0.5 * sw["calibration"]["ece"]


def test_validation_keeps_tempered_thresholds_that_pass_the_same_picks():
    pred, gt = _validation_case()
    m = ParticleFBeta(gt, ["t"], ONE, SPACING, 1)
    untempered = sweep_thresholds(pred, gt, ONE, thresholds=np.r_[0.05, np.unique(pred.score)])
    t = untempered["temperature"]["a"]
    thr = untempered["best_threshold"]["a"]
    assert np.array_equal(pred.score >= thr, temper(pred.score, t) >= temper(thr, t))
    assert m.temperature is None  # a sweep fits its own; given temperatures belong to fixed thresholds
    with pytest.raises(ValueError, match="sweep fits its own"):
        ParticleFBeta(gt, ["t"], ONE, SPACING, 1, temperature=[2.0])


def test_predict_applies_the_checkpoint_temperature_so_scores_beyond_a_float64_sigmoid_still_rank(tmp_path):
    tomo = tmp_path / "TS_t.mrc"
    write_mrc(tomo, np.random.default_rng(1).standard_normal((48, 64, 64)).astype(np.float32), SPACING)
    for name, temp in (("plain", None), ("tempered", [4.0] * 6)):
        ck = tmp_path / f"{name}.pt"
        extra = {"thresholds": [0.5] * 6, **({"score_temperature": temp} if temp else {})}
        _confident_checkpoint(ck, bias=40.0, gain=8.0, **extra)  # logits past 36.7: 1.0 even in float64
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the packing cap may cut the untrained model's picks
            predict(ck, [str(tomo)], tmp_path / name, progress=False, device="cpu", density_factor=0)
    plain = read_picks_csv(tmp_path / "plain" / "picks.csv")
    tempered = read_picks_csv(tmp_path / "tempered" / "picks.csv")
    assert len(plain) == len(tempered) > 50  # the same picks: a tempered threshold keeps them all
    assert 1.0 - len(np.unique(plain.score)) / len(plain) > 0.01  # beyond 36.7 they tie at exactly 1.0
    assert 1.0 - len(np.unique(tempered.score)) / len(tempered) < 0.01


def test_an_unlearned_class_keeps_its_safe_threshold_untempered():
    from cryo3d.metrics import UNLEARNED_THRESHOLD

    pred, gt = _validation_case()
    far = Picks(pred.tomo, pred.cls, pred.xyz + 1e5, pred.score)  # no pick near any particle: nothing learned
    sw = sweep_thresholds(far, gt, ONE, thresholds=[0.05, 0.5, 0.9])
    assert sw["unlearned"] == ["a"] and sw["temperature"]["a"] == MIN_TEMPERATURE
    assert float(temper(sw["best_threshold"]["a"], sw["temperature"]["a"])) == UNLEARNED_THRESHOLD

"""Heatmap losses: BCE baseline, fuzzy F-beta, combined, factory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryo3d.losses import (
    BCEHeatmapLoss,
    CombinedLoss,
    FuzzyFBetaLoss,
    build_loss,
    fuzzy_counts,
    soft_fbeta,
)

BIG = 40.0  # |logit| that makes sigmoid 0 or 1 to float32 precision


@pytest.fixture
def binary_pair():
    rng = np.random.default_rng(0)
    pred = rng.random((2, 3, 6, 6, 6)) < 0.3
    target = rng.random((2, 3, 6, 6, 6)) < 0.2
    return pred, target


@pytest.fixture
def soft_pair():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 6, 6, 6, generator=g)
    target = torch.rand(2, 3, 6, 6, 6, generator=g) ** 4  # skewed towards 0 like a heatmap
    return logits, target


def to_logits(pred: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.where(pred, BIG, -BIG).astype(np.float32))


def fbeta_by_counting(pred: np.ndarray, target: np.ndarray, beta: float, axes: tuple[int, ...]) -> np.ndarray:
    tp = np.sum(pred & target, axis=axes)
    fp = np.sum(pred & ~target, axis=axes)
    fn = np.sum(~pred & target, axis=axes)
    b2 = beta**2
    return (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp)


# --- fuzzy F-beta -----------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0, 4.0])
def test_fuzzy_loss_over_the_batch_is_one_minus_fbeta_of_the_counts_on_binary_inputs(binary_pair, beta):
    pred, target = binary_pair
    expected = 1.0 - fbeta_by_counting(pred, target, beta, axes=(0, 2, 3, 4)).mean()
    loss = FuzzyFBetaLoss(beta=beta, reduce="batch")(to_logits(pred), torch.from_numpy(target).float())
    assert float(loss) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_fuzzy_loss_per_sample_is_one_minus_the_mean_per_sample_fbeta_on_binary_inputs(binary_pair, beta):
    pred, target = binary_pair
    expected = 1.0 - fbeta_by_counting(pred, target, beta, axes=(2, 3, 4)).mean()
    loss = FuzzyFBetaLoss(beta=beta, reduce="sample")(to_logits(pred), torch.from_numpy(target).float())
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_fuzzy_counts_are_the_products_of_the_definition(soft_pair):
    logits, target = soft_pair
    p = torch.sigmoid(logits)
    tp, fp, fn = fuzzy_counts(p, target, reduce="sample")
    torch.testing.assert_close(tp, (p * target).sum((2, 3, 4)))
    torch.testing.assert_close(fp, (p * (1 - target)).sum((2, 3, 4)))
    torch.testing.assert_close(fn, ((1 - p) * target).sum((2, 3, 4)))


def test_higher_beta_penalises_misses_more_and_false_alarms_less():
    target = torch.zeros(1, 1, 4, 4, 4)
    target[..., :2] = 1.0  # 32 positives
    misses = target.clone()
    misses[..., 0] = 0.0  # predicts half of them: FN only
    alarms = torch.ones_like(target)  # predicts everything: FP only
    for pred, grows in ((misses, True), (alarms, False)):
        logits = (2 * pred - 1) * BIG
        low, high = (float(FuzzyFBetaLoss(beta=b)(logits, target)) for b in (1.0, 3.0))
        assert (high > low) if grows else (high < low)


def test_changing_beta_attribute_changes_the_loss_like_a_new_loss(soft_pair):
    logits, target = soft_pair
    loss = FuzzyFBetaLoss(beta=1.0)
    before = float(loss(logits, target))
    loss.beta = 3.0
    assert float(loss(logits, target)) == pytest.approx(float(FuzzyFBetaLoss(beta=3.0)(logits, target)))
    assert float(loss(logits, target)) != pytest.approx(before)


def test_per_sample_reduction_keeps_each_samples_gradient_to_itself(soft_pair):
    logits, target = soft_pair
    grads = []
    for t1 in (target, torch.cat([target[:1], torch.zeros_like(target[1:])])):  # change sample 1's target only
        x = logits.clone().requires_grad_(True)
        FuzzyFBetaLoss(reduce="sample")(x, t1).backward()
        grads.append(x.grad[0])
    torch.testing.assert_close(grads[0], grads[1])


def test_batch_reduction_couples_samples_through_the_shared_counts(soft_pair):
    logits, target = soft_pair
    grads = []
    for t1 in (target, torch.cat([target[:1], torch.zeros_like(target[1:])])):
        x = logits.clone().requires_grad_(True)
        FuzzyFBetaLoss(reduce="batch")(x, t1).backward()
        grads.append(x.grad[0])
    assert not torch.allclose(grads[0], grads[1])


def test_channel_empty_in_a_sample_gives_loss_one_and_no_gradient_per_sample():
    logits = torch.randn(1, 2, 4, 4, 4, requires_grad=True)
    target = torch.zeros(1, 2, 4, 4, 4)
    target[:, 0, 1, 1, 1] = 1.0
    loss = FuzzyFBetaLoss(reduce="sample", class_weights=[0.0, 1.0])(logits, target)
    loss.backward()
    assert float(loss) == pytest.approx(1.0)
    assert float(logits.grad.abs().sum()) == 0.0


def test_class_weights_weight_the_channel_mean(soft_pair):
    logits, target = soft_pair
    per_channel = 1 - soft_fbeta(torch.sigmoid(logits), target, beta=2.0)
    loss = FuzzyFBetaLoss(beta=2.0, class_weights=[1.0, 0.0, 3.0])(logits, target)
    assert float(loss) == pytest.approx(float((per_channel[0] + 3 * per_channel[2]) / 4), rel=1e-6)


def test_fuzzy_loss_of_bfloat16_logits_matches_float32(soft_pair):
    logits, target = soft_pair
    lo = FuzzyFBetaLoss()(logits.bfloat16(), target)
    assert lo.dtype == torch.float32
    assert float(lo) == pytest.approx(float(FuzzyFBetaLoss()(logits, target)), abs=1e-2)


# --- BCE --------------------------------------------------------------------------------------


def test_bce_of_a_constant_prediction_is_the_theoretical_value(soft_pair):
    _, target = soft_pair
    p = 0.05
    logits = torch.full_like(target, math.log(p / (1 - p)))
    m = float(target.mean())
    assert float(BCEHeatmapLoss()(logits, target)) == pytest.approx(-(m * math.log(p) + (1 - m) * math.log(1 - p)), rel=1e-5)


def test_bce_positive_weight_multiplies_the_positive_term_per_channel(soft_pair):
    logits, target = soft_pair
    w = torch.tensor([1.0, 5.0, 10.0]).view(1, 3, 1, 1, 1)
    p = torch.sigmoid(logits)
    manual = -(w * target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    assert float(BCEHeatmapLoss(pos_weight=[1.0, 5.0, 10.0])(logits, target)) == pytest.approx(float(manual), rel=1e-5)


def test_mismatched_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match="same shape"):
        BCEHeatmapLoss()(torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 2, 2, 2, 2))


# --- combined and factory ---------------------------------------------------------------------


def test_combined_is_bce_plus_weighted_fuzzy(soft_pair):
    logits, target = soft_pair
    combined = CombinedLoss(beta=2.0, fuzzy_weight=0.5, pos_weight=3.0)
    expected = BCEHeatmapLoss(pos_weight=3.0)(logits, target) + 0.5 * FuzzyFBetaLoss(beta=2.0)(logits, target)
    assert float(combined(logits, target)) == pytest.approx(float(expected), rel=1e-6)


def test_setting_beta_on_the_combined_loss_reaches_its_fuzzy_part():
    combined = CombinedLoss(beta=1.0)
    combined.beta = 4.0
    assert combined.fuzzy.beta == 4.0 and combined.beta == 4.0


@pytest.mark.parametrize("kind,cls", [("bce", BCEHeatmapLoss), ("fuzzy", FuzzyFBetaLoss), ("combined", CombinedLoss)])
def test_build_loss_returns_the_named_kind(kind, cls):
    assert isinstance(build_loss(kind), cls)


def test_build_loss_passes_arguments():
    loss = build_loss("fuzzy", beta=2.5, reduce="sample")
    assert loss.beta == 2.5 and loss.reduce == "sample"


def test_build_loss_rejects_unknown_kinds_and_arguments():
    with pytest.raises(ValueError, match="unknown loss kind 'dice'"):
        build_loss("dice")
    with pytest.raises(ValueError, match="unknown argument\\(s\\) \\['beta'\\]"):
        build_loss("bce", beta=2.0)


def test_loss_builds_from_a_monai_bundle_config():
    from monai.bundle import ConfigParser

    parser = ConfigParser({"loss": {"_target_": "cryo3d.losses.build_loss", "kind": "combined", "beta": 2.0}})
    assert parser.get_parsed_content("loss").beta == 2.0

"""Hard-negative patch sampling: the false-activation measure, the sampler's draws and state, the handler."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cryo3d.workflows.hard_patches import HardNegativeHandler, HardPatchSampler, false_activation


def _dataset(store_indices):
    return SimpleNamespace(data=list(store_indices))


def test_false_activation_is_the_mean_over_voxels_of_the_largest_class_excess_over_the_target():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 4, 5, 6, generator=g) * 3
    target = torch.rand(3, 2, 4, 5, 6, generator=g)
    prob = 1.0 / (1.0 + np.exp(-logits.numpy().astype(np.float64)))
    ref = np.maximum(prob - target.numpy(), 0.0).max(1).reshape(3, -1).mean(1)
    np.testing.assert_allclose(false_activation(logits, target).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_false_activation_is_zero_where_the_model_never_exceeds_the_target():
    target = torch.rand(2, 3, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    logits = torch.logit(target.clamp(1e-4, 1 - 1e-4)) - 1.0
    assert torch.all(false_activation(logits, target) == 0)


def test_false_activation_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="same"):
        false_activation(torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 3, 4, 4, 4))


def test_a_sampler_without_hard_fraction_yields_a_permutation_per_pass():
    s = HardPatchSampler(_dataset(range(10, 30)), hard_fraction=0.0, seed=0)
    one, two = list(s), list(s)
    assert sorted(one) == list(range(20)) and sorted(two) == list(range(20)) and one != two


def test_a_hard_patch_is_drawn_as_often_as_its_share_says():
    n, f = 50, 0.5
    s = HardPatchSampler(_dataset(range(n)), hard_fraction=f, seed=0)
    s.update(np.arange(n), np.r_[1.0, np.zeros(n - 1)])
    draws = np.concatenate([list(s) for _ in range(200)])
    expected = f + (1 - f) / n  # the hard share all on patch 0, plus its uniform share
    assert abs(np.mean(draws == 0) - expected) < 0.02
    assert abs(np.mean(draws == 1) - (1 - f) / n) < 0.005


def test_unmeasured_patches_count_as_hard_as_the_hardest_measured_one():
    s = HardPatchSampler(_dataset(range(4)), hard_fraction=1.0, seed=0)
    s.update([0, 1, 2], [0.0, 0.0, 0.2])
    np.testing.assert_allclose(s.probabilities().numpy(), [0, 0, 0.5, 0.5])


def test_update_takes_store_indices_and_refuses_unknown_ones():
    s = HardPatchSampler(_dataset([7, 3, 11]), hard_fraction=0.5)
    s.update(torch.tensor([11, 7]), torch.tensor([0.25, 0.5]))
    np.testing.assert_allclose(s.hardness.numpy(), [0.5, np.nan, 0.25])
    with pytest.raises(ValueError, match="patch 5"):
        s.update([5], [0.1])


@pytest.mark.parametrize("bad", [1.5, -0.1, "half", None, float("nan"), True])
def test_a_hard_fraction_that_is_not_a_number_in_zero_one_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="hard_fraction"):
        HardPatchSampler(_dataset(range(3)), hard_fraction=bad)


def test_a_hard_fraction_given_as_a_string_on_the_command_line_is_read():
    assert HardPatchSampler(_dataset(range(3)), hard_fraction="0.25").hard_fraction == 0.25


def test_sampler_state_survives_a_weights_only_checkpoint_and_continues_the_same_draws():
    a = HardPatchSampler(_dataset(range(30)), hard_fraction=0.7, seed=3)
    a.update(np.arange(30), np.linspace(0, 1, 30))
    list(a)
    buf = io.BytesIO()
    torch.save({"s": a.state_dict()}, buf)
    buf.seek(0)
    b = HardPatchSampler(_dataset(range(30)), hard_fraction=0.7, seed=99)
    b.load_state_dict(torch.load(buf, weights_only=True)["s"])
    assert list(a) == list(b)


def test_sampler_state_of_other_patches_is_refused():
    a = HardPatchSampler(_dataset(range(5)))
    with pytest.raises(ValueError, match="5 patches"):
        HardPatchSampler(_dataset(range(6))).load_state_dict(a.state_dict())


def _engine(patch_index, logits, target):
    return SimpleNamespace(state=SimpleNamespace(output={"pred": logits, "label": target},
                                                 batch={"patch_index": torch.as_tensor(patch_index)}))


def test_the_handler_records_each_unmixed_patch_false_activation():
    s = HardPatchSampler(_dataset(range(4)), hard_fraction=0.5)
    logits = torch.full((2, 1, 2, 2, 2), -20.0)
    logits[1, 0, 1, 1, 1] = 20.0  # patch 2 fires on one of its 8 voxels, where its target is 0
    HardNegativeHandler(s, SimpleNamespace(last_mode=None))(_engine([0, 2], logits, torch.zeros_like(logits)))
    np.testing.assert_allclose(s.hardness.numpy(), [0.0, np.nan, 0.125, np.nan], atol=1e-6)


def test_the_handler_skips_mixed_batches():
    s = HardPatchSampler(_dataset(range(2)), hard_fraction=0.5)
    z = torch.zeros(2, 1, 2, 2, 2)
    HardNegativeHandler(s, SimpleNamespace(last_mode="mixup"))(_engine([0, 1], z - 20, z))
    assert torch.isnan(s.hardness).all()


def test_the_handler_names_a_missing_patch_index():
    s = HardPatchSampler(_dataset(range(2)), hard_fraction=0.5)
    z = torch.zeros(1, 1, 2, 2, 2)
    engine = SimpleNamespace(state=SimpleNamespace(output={"pred": z, "label": z}, batch={"image": z}))
    with pytest.raises(ValueError, match="patch_index"):
        HardNegativeHandler(s)(engine)

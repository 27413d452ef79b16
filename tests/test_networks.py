"""Model checks for the heatmap networks (shapes, SE ablation, FPN modes, init, batch independence, overfit)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.networks.blocks import ChannelSELayer

from cryo3d.heatmap import render_heatmap
from cryo3d.losses import BCEHeatmapLoss
from cryo3d.networks import (
    PRESETS,
    SEFPN3D,
    SEResBlock,
    UNet3D,
    build_network,
    count_parameters,
    network_config,
)

TINY = {
    "unet": {"name": "unet", "channels": (4, 8, 16), "num_res_units": 1},
    "sefpn": {"name": "sefpn", "channels": (4, 8, 16), "fpn_channels": 8, "se_reduction": 2},
}


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seeded; one thread (tiny tensors run faster, and no slow-down on a shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def tiny(family: str, **kw) -> torch.nn.Module:
    return build_network(TINY[family], in_channels=1, out_channels=3, **kw)


def random_heatmaps(batch: int, channels: int, shape: tuple[int, int, int], n: int, seed: int) -> torch.Tensor:
    """Heatmaps [B, C, *shape] from ``n`` random keypoints per sample (cryo3d.heatmap)."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(batch):
        kp = rng.uniform(0, np.array(shape) - 1, size=(n, 3))
        labels = rng.integers(0, channels, size=n)
        maps.append(render_heatmap(kp, labels, shape, sigmas=[1.0] * channels))
    return torch.from_numpy(np.stack(maps))


# --- shapes and stride -------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["unet", "sefpn"])
@pytest.mark.parametrize("ds", [1, 2, 4])
@pytest.mark.parametrize("size", [(16, 16, 16), (32, 16, 24)])
def test_output_has_class_channels_at_input_size_over_ds_factor(family, ds, size):
    model = tiny(family, ds_factor=ds)
    y = model(torch.randn(2, 1, *size))
    assert y.shape == (2, 3) + tuple(s // ds for s in size)
    assert model.output_stride == ds


@pytest.mark.parametrize("fusion", ["parallel", "cascade", "pc"])
def test_every_fpn_fusion_outputs_at_the_output_stride(fusion):
    model = tiny("sefpn", ds_factor=2, fusion=fusion)
    assert model(torch.randn(1, 1, 16, 32, 16)).shape == (1, 3, 8, 16, 8)


def test_unet_with_trilinear_upsampling_outputs_at_the_output_stride():
    model = tiny("unet", ds_factor=1, upsample="trilinear")
    assert model(torch.randn(1, 1, 16, 16, 24)).shape == (1, 3, 16, 16, 24)


def test_unet_decoder_stops_at_the_output_stride():
    assert len(tiny("unet", ds_factor=1).decoder) == 2
    assert len(tiny("unet", ds_factor=2).decoder) == 1
    assert len(tiny("unet", ds_factor=4).decoder) == 0


@pytest.mark.parametrize("family", ["unet", "sefpn"])
def test_input_not_divisible_by_two_to_the_depth_is_a_clear_error(family):
    model = tiny(family)
    assert model.spatial_divisor == 4
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 4"):
        model(torch.randn(1, 1, 16, 18, 16))


@pytest.mark.parametrize("family", ["unet", "sefpn"])
def test_ds_factor_must_be_a_power_of_two_within_the_depth(family):
    with pytest.raises(ValueError, match="power of two"):
        tiny(family, ds_factor=3)
    with pytest.raises(ValueError, match="needs depth >= 3"):
        tiny(family, ds_factor=8)


def test_depth_and_base_channels_give_doubling_channels():
    model = UNet3D(base_channels=4, depth=3, num_res_units=1)
    assert model.channels == (4, 8, 16, 32) and model.spatial_divisor == 8


def test_depth_inconsistent_with_channels_is_an_error():
    with pytest.raises(ValueError, match="depth=3 does not match"):
        UNet3D(channels=(4, 8, 16), depth=3)


# --- SE ablation and FPN modes ----------------------------------------------------------------


def test_se_flag_changes_the_parameter_count_by_exactly_the_se_layers():
    cfg = dict(channels=(4, 8, 16), blocks_per_level=(1, 2, 1), fpn_channels=8, se_reduction=2)
    with_se, without = SEFPN3D(se=True, **cfg), SEFPN3D(se=False, **cfg)
    blocks = [m for m in with_se.modules() if isinstance(m, SEResBlock)]
    # ChannelSELayer(C, r): Linear(C, C//r) + Linear(C//r, C), both with bias
    expected = sum(2 * c * (c // 2) + c // 2 + c for c in (b.conv2.out_channels for b in blocks))
    se_params = sum(count_parameters(m) for m in with_se.modules() if isinstance(m, ChannelSELayer))
    assert len(blocks) == 4
    assert count_parameters(with_se) - count_parameters(without) == expected == se_params
    assert not any(isinstance(m, ChannelSELayer) for m in without.modules())


def test_the_three_fpn_fusions_are_different_architectures():
    models = {f: tiny("sefpn", fusion=f) for f in ("parallel", "cascade", "pc")}
    names = {f: {n.split(".")[0] for n, _ in m.named_modules() if n} for f, m in models.items()}
    assert "parallel_fuse" in names["parallel"] and "smooth" not in names["parallel"]
    assert "smooth" in names["cascade"] and "parallel_fuse" not in names["cascade"]
    assert {"smooth", "parallel_fuse", "pc_fuse"} <= names["pc"]
    assert len({count_parameters(m) for m in models.values()}) == 3


def test_the_three_fpn_fusions_give_different_outputs_from_the_same_encoder():
    x = torch.randn(1, 1, 16, 16, 16)
    outs = {}
    for fusion in ("parallel", "cascade", "pc"):
        torch.manual_seed(1)  # same seed -> same encoder weights (built first)
        model = tiny("sefpn", fusion=fusion, head_init_std=1.0).eval()
        outs[fusion] = model(x)
    assert not torch.allclose(outs["parallel"], outs["cascade"])
    assert not torch.allclose(outs["pc"], outs["cascade"])
    assert not torch.allclose(outs["pc"], outs["parallel"])


# --- initialisation ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["unet", "sefpn"])
def test_zero_head_weights_make_the_initial_output_exactly_the_prior(family):
    model = tiny(family, prior=0.03, head_init_std=0.0)
    p = torch.sigmoid(model(torch.randn(2, 1, 16, 16, 16)))
    torch.testing.assert_close(p, torch.full_like(p, 0.03))


def test_prior_can_be_given_per_channel():
    model = tiny("unet", prior=[0.01, 0.1, 0.5], head_init_std=0.0)
    p = torch.sigmoid(model(torch.randn(1, 1, 16, 16, 16))).mean(dim=(0, 2, 3, 4))
    torch.testing.assert_close(p, torch.tensor([0.01, 0.1, 0.5]))


def test_prior_outside_zero_one_is_an_error():
    with pytest.raises(ValueError, match="open interval"):
        tiny("unet", prior=1.0)


@pytest.mark.parametrize("family", ["unet", "sefpn"])
def test_bce_at_initialisation_is_close_to_its_theoretical_value(family):
    prior = 0.02
    model = tiny(family, prior=prior)  # default head_init_std: small random weights
    target = random_heatmaps(2, 3, (8, 8, 8), n=6, seed=1)
    m = float(target.mean())
    theory = -(m * math.log(prior) + (1 - m) * math.log(1 - prior))
    with torch.no_grad():
        loss = float(BCEHeatmapLoss()(model(torch.randn(2, 1, 16, 16, 16)), target))
    assert loss == pytest.approx(theory, rel=0.03)
    # the check has teeth: the value for a 10x prior is far outside that tolerance
    assert -(m * math.log(0.2) + (1 - m) * math.log(0.8)) > 1.2 * loss


# --- batch independence -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "family,norm,train",
    [("unet", ("instance", {"affine": True}), True), ("sefpn", ("instance", {"affine": True}), True),
     ("unet", "batch", False), ("sefpn", "batch", False)],
)
def test_loss_on_one_sample_gives_gradient_on_that_input_only(family, norm, train):
    model = tiny(family, norm=norm, dropout=0.1)
    model.train(train)
    x = torch.randn(3, 1, 16, 16, 16, requires_grad=True)
    target = random_heatmaps(3, 3, (8, 8, 8), n=4, seed=2)
    y = model(x)
    BCEHeatmapLoss()(y[1:2], target[1:2]).backward()
    grad_norm = x.grad.abs().sum(dim=(1, 2, 3, 4))
    assert grad_norm[1] > 0
    assert grad_norm[0] == 0 and grad_norm[2] == 0


# --- overfitting one batch --------------------------------------------------------------------


@pytest.mark.parametrize("family", ["unet", "sefpn"])
def test_tiny_model_overfits_one_batch_to_near_zero_loss(family):
    wider = {"channels": (8, 16, 32), **({"fpn_channels": 16} if family == "sefpn" else {})}
    model = build_network(TINY[family], out_channels=2, ds_factor=2, **wider)
    x = torch.randn(2, 1, 16, 16, 16)
    target = (random_heatmaps(2, 2, (8, 8, 8), n=4, seed=3) > 0.5).float()  # binary: BCE minimum is 0
    loss_fn = BCEHeatmapLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        opt.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.01 < 0.05 < losses[0]


# --- construction -----------------------------------------------------------------------------


def test_build_network_from_a_plain_config_dict():
    model = build_network({"name": "unet", "in_channels": 1, "out_channels": 6, "ds_factor": 2, "channels": [4, 8]})
    assert isinstance(model, UNet3D) and model.out_channels == 6 and model.channels == (4, 8)


def test_preset_names_resolve_and_accept_overrides():
    cfg = network_config({"name": "sefpn-small", "fusion": "cascade"}, se=False)
    assert cfg["name"] == "sefpn" and cfg["fusion"] == "cascade" and cfg["se"] is False
    assert cfg["channels"] == PRESETS["sefpn-small"]["channels"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_builds(preset):
    model = build_network(preset, out_channels=2)
    assert model.out_channels == 2


def test_unknown_network_name_lists_the_choices():
    with pytest.raises(ValueError, match="families: \\['sefpn', 'unet'\\]"):
        build_network("resnet")


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match="unknown config key\\(s\\) \\['widths'\\]"):
        build_network({"name": "unet", "widths": [4, 8]})


def test_networks_instantiate_from_a_monai_bundle_config():
    from monai.bundle import ConfigParser

    parser = ConfigParser(
        {
            "unet": {"_target_": "cryo3d.networks.UNet3D", "out_channels": 2, "channels": [4, 8], "ds_factor": 2},
            "fpn": {"_target_": "cryo3d.networks.SEFPN3D", "channels": [4, 8], "fpn_channels": 4, "fusion": "cascade", "se_reduction": 2},
            "built": {"_target_": "cryo3d.networks.build_network", "name_or_config": "unet-tiny", "out_channels": 2},
        }
    )
    assert isinstance(parser.get_parsed_content("unet"), UNet3D)
    assert parser.get_parsed_content("fpn").fusion == "cascade"
    assert isinstance(parser.get_parsed_content("built"), UNet3D)

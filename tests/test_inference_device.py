"""The fast device path of inference: batch size, channels-last, torch.compile, stitching and peaks on the GPU.

The CPU tests check that every option gives the plain path's heatmap; the CUDA tests (skipped
without a GPU) check the GPU path against the CPU one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryo3d.inference import pick_tomogram
from cryo3d.sliding_window import (
    auto_sw_batch_size,
    CPU_SW_BATCH_SIZE,
    DownsampledSlidingWindowInferer,
    InferenceSettings,
    MAX_SW_BATCH_SIZE,
    parse_sw_batch_size,
    predict_heatmap,
    prepare_network,
    stitch_bytes,
    stitch_fits,
)
from cryo3d.io.tomogram import Tomogram
from cryo3d.networks import build_network
from cryo3d.particles import ParticleClass, ParticleSet

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network("unet-tiny", out_channels=2, ds_factor=2).eval()


def _volume(shape=(40, 56, 48), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _settings(**kw) -> InferenceSettings:
    return InferenceSettings(**{"roi_size": 16, "ds_factor": 2, "overlap": 0.25, "amp": False, **kw})


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("AUTO", "auto"), (8, 8), ("8", 8)])
def test_sw_batch_size_is_a_positive_int_or_auto(value, expected):
    assert parse_sw_batch_size(value) == expected


@pytest.mark.parametrize("value", [0, -1, "x", 2.5, True, None])
def test_sw_batch_size_rejects_anything_else_naming_the_field(value):
    with pytest.raises(ValueError, match="sw_batch_size"):
        InferenceSettings(sw_batch_size=value)


def test_settings_reject_a_compile_value_that_is_not_a_flag_or_backend_name():
    with pytest.raises(ValueError, match="compile"):
        InferenceSettings(compile=3)


def test_auto_batch_on_the_cpu_is_the_measured_default_and_stitching_stays_on_the_host():
    st = _settings()
    assert st.sw_batch_size == "auto"
    assert auto_sw_batch_size(_net(), st, "cpu") == CPU_SW_BATCH_SIZE
    assert not stitch_fits((40, 56, 48), 2, st, "cpu")


def test_stitch_bytes_counts_the_padded_input_twice_and_the_outputs_per_channel():
    st = _settings()  # (40, 56, 48) pads to itself (multiples of 2, each >= 16)
    n_in, n_out = 40 * 56 * 48, 20 * 28 * 24
    assert stitch_bytes((40, 56, 48), 3, st) == 4 * (2 * n_in + 10 * n_out)


def test_auto_batch_and_auto_output_device_give_the_fixed_batch_heatmap_on_the_cpu():
    vol, net = _volume(), _net()
    x = torch.from_numpy(vol)[None, None]
    fixed = DownsampledSlidingWindowInferer(_settings(sw_batch_size=3))(x, net)
    auto = DownsampledSlidingWindowInferer(_settings(), device="auto")(x, net)
    assert auto.device.type == "cpu"
    torch.testing.assert_close(auto, fixed, rtol=1e-5, atol=1e-6)


def test_channels_last_windows_and_weights_give_the_contiguous_heatmap():
    vol = _volume()
    plain = predict_heatmap(_net(), vol, _settings(channels_last=False), device="cpu")
    cl_settings = _settings(channels_last=True)
    net = prepare_network(_net(), cl_settings, "cpu")
    conv = next(p for p in net.parameters() if p.ndim == 5)
    assert conv.is_contiguous(memory_format=torch.channels_last_3d)
    cl = predict_heatmap(net, vol, cl_settings, device="cpu", prepared=True)
    np.testing.assert_allclose(cl, plain, rtol=1e-4, atol=1e-5)


def test_a_compiled_network_gives_the_eager_heatmap():
    vol = _volume((32, 32, 32))
    plain = predict_heatmap(_net(), vol, _settings(), device="cpu")
    st = _settings(compile="eager")  # TorchDynamo graph capture without a C++ build: quick on a CPU
    net = prepare_network(_net(), st, "cpu")
    assert hasattr(net, "_orig_mod")
    np.testing.assert_allclose(predict_heatmap(net, vol, st, device="cpu", prepared=True), plain, rtol=1e-5, atol=1e-6)


def test_predict_heatmap_can_return_the_tensor_where_it_was_stitched():
    hm = predict_heatmap(_net(), _volume(), _settings(), device="cpu", keep_on_device=True)
    assert isinstance(hm, torch.Tensor) and hm.device.type == "cpu" and hm.dtype == torch.float32
    assert tuple(hm.shape) == (2, 20, 28, 24)


def test_pick_tomogram_prepares_an_unprepared_network_only_once(monkeypatch):
    import cryo3d.inference as inf

    calls = []
    real = inf.prepare_network
    monkeypatch.setattr(inf, "prepare_network", lambda *a, **k: calls.append(1) or real(*a, **k))
    particles = ParticleSet([ParticleClass("a", 60.0), ParticleClass("b", 60.0)])
    tomo = Tomogram(name="t", data=_volume(), voxel_spacing=10.0, path="")
    st = _settings(voxel_spacing=10.0)
    pick_tomogram(_net(), tomo, particles, st, device="cpu")  # not prepared: prepared inside
    assert len(calls) == 1
    net = real(_net(), st, "cpu")
    pick_tomogram(net, tomo, particles, st, device="cpu")  # prepared: used as is
    assert len(calls) == 1


def test_the_predict_command_parses_auto_batch_and_compile():
    from cryo3d.cli import build_parser

    a = build_parser().parse_args(["predict", "ck.pt", "tomos", "--sw-batch-size", "auto", "--compile"])
    assert a.sw_batch_size == "auto" and a.compile
    assert build_parser().parse_args(["predict", "ck.pt", "tomos", "--sw-batch-size", "16"]).sw_batch_size == 16
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "ck.pt", "tomos", "--sw-batch-size", "0"])


# --------------------------------------------------------------------------- CUDA


@cuda
def test_on_cuda_the_heatmap_is_stitched_on_the_gpu_and_matches_the_cpu():
    vol, st = _volume(), _settings()
    cpu = predict_heatmap(_net(), vol, st, device="cpu")
    gpu = predict_heatmap(_net(), vol, st, device="cuda", keep_on_device=True)
    assert gpu.is_cuda
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, rtol=1e-3, atol=1e-4)


@cuda
def test_on_cuda_bf16_channels_last_inference_stays_close_to_float32():
    vol = _volume()
    ref = predict_heatmap(_net(), vol, _settings(), device="cpu")
    fast = predict_heatmap(_net(), vol, _settings(amp=True), device="cuda")  # bf16 autocast, channels_last_3d
    prob = lambda logits: 1.0 / (1.0 + np.exp(-logits))  # noqa: E731 (the probabilities, as compared before)
    np.testing.assert_allclose(prob(fast), prob(ref), atol=2e-2)


@cuda
def test_on_cuda_auto_batch_fills_the_free_memory_within_its_bounds():
    st = _settings(amp=True)
    net = prepare_network(_net(), st, "cuda")
    n = auto_sw_batch_size(net, st, "cuda")
    assert 1 <= n <= MAX_SW_BATCH_SIZE and n > CPU_SW_BATCH_SIZE  # a 16^3 window of unet-tiny is small


@cuda
def test_on_cuda_pick_tomogram_finds_the_cpu_picks():
    particles = ParticleSet([ParticleClass("a", 60.0), ParticleClass("b", 60.0)])
    tomo = Tomogram(name="t", data=_volume(seed=3) * 4, voxel_spacing=10.0, path="")
    st = _settings(voxel_spacing=10.0, thresholds=0.5)
    cpu = pick_tomogram(_net(), tomo, particles, st, device="cpu")
    gpu = pick_tomogram(_net(), tomo, particles, st, device="cuda")
    assert len(cpu) == len(gpu)
    np.testing.assert_allclose(gpu.xyz, cpu.xyz, atol=1e-2)


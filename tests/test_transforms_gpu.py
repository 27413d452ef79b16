"""CPU (NumPy/SciPy) and GPU (CuPy/cupyx) paths agree; skipped without CuPy and a CUDA device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryo3d.array_module import cupy_available

pytestmark = pytest.mark.skipif(
    not (cupy_available() and torch.cuda.is_available()), reason="needs CuPy and a CUDA device"
)

from cryo3d_transforms import (  # noqa: E402
    KeypointAffined,
    KeypointFlipd,
    KeypointRotate90d,
    KeypointSpatialCropd,
    RenderHeatmapd,
    compose_affine,
    heatmap_cutmix,
    default_train_transforms,
    render_batch_heatmap,
    collate_keypoints,
)


@pytest.fixture
def sample():
    rng = np.random.default_rng(0)
    return {
        "image": rng.standard_normal((1, 32, 32, 32)).astype(np.float32),
        "keypoints": rng.uniform(4, 28, (8, 3)),
        "labels": rng.integers(0, 3, 8),
        "ds_sigma": np.array([1.0, 1.4, 2.0]),
        "ds_factor": 2,
    }


def on_gpu(d):
    return {**d, "image": torch.from_numpy(d["image"]).cuda()}


@pytest.mark.parametrize(
    "transform",
    [
        KeypointAffined(affine=compose_affine((0.4, 0.2, -0.3), (0.1,) * 6, (1.5, -2, 1), (1.1, 0.9, 1.05))),
        KeypointAffined(affine=compose_affine((0.4, 0.2, -0.3)), transform_covariance=True),
        KeypointFlipd(spatial_axis=(0, 2)),
        KeypointRotate90d(k=1),
        KeypointSpatialCropd(roi_start=(-2, 3, 4), roi_size=(24, 24, 24)),
    ],
)
def test_spatial_transform_and_render_agree_on_cpu_and_gpu(sample, transform):
    render = RenderHeatmapd()
    cpu = render(transform(sample))
    gpu = render(transform(on_gpu(sample)))
    assert gpu["image"].is_cuda and gpu["heatmap"].is_cuda
    np.testing.assert_allclose(gpu["image"].cpu().numpy(), cpu["image"], atol=1e-5)
    np.testing.assert_allclose(gpu["heatmap"].cpu().numpy(), cpu["heatmap"], atol=1e-5)
    np.testing.assert_allclose(gpu["keypoints"], cpu["keypoints"])


def test_default_pipeline_keeps_the_sample_on_the_gpu(sample):
    t = default_train_transforms(device="cuda")
    t.set_random_state(0)
    out = t(sample)
    assert out["image"].is_cuda and out["heatmap"].is_cuda


def test_cutmix_renders_on_the_gpu_like_on_the_cpu(sample):
    b = collate_keypoints([sample, {**sample, "keypoints": sample["keypoints"][::-1] * 0.9}])
    b["heatmap"] = render_batch_heatmap(b["keypoints"], b["labels"], (32, 32, 32), sample["ds_sigma"], 2)
    boxes = np.array([[[0, 0, 0], [16, 16, 16]]] * 2)
    cpu = heatmap_cutmix(b, boxes, [1, 0])
    gb = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in b.items()}
    gpu = heatmap_cutmix(gb, boxes, [1, 0])
    assert gpu["heatmap"].is_cuda
    np.testing.assert_allclose(gpu["heatmap"].cpu().numpy(), cpu["heatmap"].numpy(), atol=1e-5)

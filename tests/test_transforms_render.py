"""RenderHeatmapd: downsampled shape, units, covariances, output type."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from cryo3d import coords
from cryo3d.heatmap import render_heatmap
from cryo3d_transforms import RenderHeatmapd


@pytest.fixture
def sample():
    return {
        "image": np.zeros((1, 25, 30, 33), np.float32),  # odd sizes: ceil(n / 2)
        "keypoints": np.array([[4.0, 5.0, 6.0], [20.5, 12.25, 30.0], [-3.0, 2.0, 2.0]]),
        "labels": np.array([0, 1, 1]),
        "ds_sigma": np.array([1.0, 1.7]),
        "ds_factor": 2,
    }


def test_heatmap_has_the_downsampled_shape_and_channels(sample):
    hm = RenderHeatmapd()(sample)["heatmap"]
    assert hm.shape == (2,) + coords.ds_shape((25, 30, 33), 2) == (2, 13, 15, 17)
    assert hm.dtype == np.float32


def test_heatmap_equals_the_renderer_on_downsampled_keypoints(sample):
    hm = RenderHeatmapd()(sample)["heatmap"]
    ref = render_heatmap(coords.voxel_to_ds(sample["keypoints"], 2), sample["labels"], (13, 15, 17), sample["ds_sigma"])
    np.testing.assert_array_equal(hm, ref)


def test_peak_is_one_where_a_keypoint_sits_on_a_downsampled_voxel_centre(sample):
    # full-res 4.5 -> ds (4.5 - 0.5) / 2 = 2
    d = {**sample, "keypoints": np.array([[4.5, 6.5, 8.5]]), "labels": np.array([0])}
    hm = RenderHeatmapd()(d)["heatmap"]
    assert hm[0, 2, 3, 4] == pytest.approx(1.0)
    assert np.unravel_index(hm[0].argmax(), hm[0].shape) == (2, 3, 4)


def test_isotropic_covariances_give_the_same_heatmap(sample):
    s = sample["ds_sigma"][sample["labels"]] * 2
    cov = (s**2)[:, None, None] * np.eye(3)
    a = RenderHeatmapd()(sample)["heatmap"]
    b = RenderHeatmapd()({**sample, "covariances": cov})["heatmap"]
    np.testing.assert_allclose(a, b, atol=2e-6)


def test_torch_image_gives_a_torch_heatmap(sample):
    out = RenderHeatmapd()({**sample, "image": MetaTensor(torch.zeros(1, 25, 30, 33))})
    assert isinstance(out["heatmap"], torch.Tensor)
    np.testing.assert_array_equal(out["heatmap"].numpy(), RenderHeatmapd()(sample)["heatmap"])


def test_precomputed_heatmap_is_kept_unless_overwritten(sample):
    pre = np.full((2, 13, 15, 17), 0.5, np.float32)
    kept = RenderHeatmapd(overwrite=False)({**sample, "heatmap": pre})["heatmap"]
    assert kept is pre
    redrawn = RenderHeatmapd()({**sample, "heatmap": pre})["heatmap"]
    assert redrawn is not pre and redrawn.max() == pytest.approx(1.0, abs=0.2)


def test_no_keypoints_gives_an_empty_heatmap(sample):
    d = {**sample, "keypoints": np.zeros((0, 3)), "labels": np.zeros(0, np.int64)}
    assert RenderHeatmapd()(d)["heatmap"].max() == 0.0


def test_explicit_sigma_and_factor_override_the_sample(sample):
    d = {k: v for k, v in sample.items() if k not in ("ds_sigma", "ds_factor")}
    hm = RenderHeatmapd(ds_sigma=[1.0, 1.7], ds_factor=2)(d)["heatmap"]
    np.testing.assert_array_equal(hm, RenderHeatmapd()(sample)["heatmap"])


def test_label_out_of_range_is_a_clear_error(sample):
    with pytest.raises(ValueError, match="labels"):
        RenderHeatmapd()({**sample, "labels": np.array([0, 1, 5])})

"""Crops and integer shifts: exact windows, keypoints offset, border rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryo3d_transforms import KeypointSpatialCropd, KeypointWindow, RandKeypointShiftd, RandKeypointSpatialCropd
from cryo3d_transforms.crop import extract_window


@pytest.fixture
def marked():
    kp = np.array([[5.0, 6.0, 7.0], [10.0, 3.0, 12.0], [15.0, 15.0, 1.0]])
    img = np.zeros((1, 20, 20, 20), np.float32)
    img[(0, *kp.astype(int).T)] = [1.0, 2.0, 3.0]
    return {"image": img, "keypoints": kp, "labels": np.array([0, 0, 0]), "ds_sigma": np.array([1.0]), "ds_factor": 2}


def test_crop_offsets_keypoints_by_the_window_corner(marked):
    out = KeypointSpatialCropd(roi_start=(4, 2, 5), roi_size=(10, 10, 10))(marked)
    assert out["image"].shape == (1, 10, 10, 10)
    # the third keypoint, now (11, 13, -4), is 3.5 voxels past the border in y and x (margin 6): kept
    np.testing.assert_allclose(out["keypoints"], marked["keypoints"] - [4, 2, 5])
    assert out["image"][0, 1, 4, 2] == 1.0 and out["image"][0, 6, 1, 7] == 2.0


def test_crop_drops_keypoints_past_the_margin(marked):
    out = KeypointSpatialCropd(roi_start=(0, 0, 0), roi_size=(8, 8, 8))(marked)
    # margin = 3 * 1 * 2 = 6 voxels past [-0.5, 7.5]: (10, 3, 12) is 4.5 past in x: kept;
    # (15, 15, 1) is 7.5 past in z and y: dropped
    np.testing.assert_allclose(out["keypoints"], marked["keypoints"][:2])


def test_random_crop_stays_inside_and_moves_marks_with_keypoints(marked):
    t = RandKeypointSpatialCropd(roi_size=(12, 12, 12), margin_sigmas=None)
    t.set_random_state(0)
    for _ in range(5):
        out = t(marked)
        img = out["image"][0]
        assert img.shape == (12, 12, 12)
        for p, v in zip(out["keypoints"], [1.0, 2.0, 3.0]):
            i = np.rint(p).astype(int)
            if np.all((i >= 0) & (i < 12)):
                assert img[tuple(i)] == v


def test_shift_moves_content_and_keypoints_by_the_same_whole_voxels(marked):
    t = RandKeypointShiftd(max_shift=3, margin_sigmas=None)
    t.set_random_state(2)
    out = t(marked)
    s = np.array(t.shift)
    assert np.any(s != 0)
    np.testing.assert_allclose(out["keypoints"], marked["keypoints"] + s)
    assert out["image"].shape == marked["image"].shape
    np.testing.assert_array_equal(out["image"][(0, *np.rint(out["keypoints"]).astype(int).T)], [1.0, 2.0, 3.0])


def test_window_outside_the_image_is_filled():
    img = np.ones((1, 4, 4, 4), np.float32)
    out = extract_window(img, (-2, 0, 0), (4, 4, 4), fill=-1.0)
    assert np.all(out[0, :2] == -1.0) and np.all(out[0, 2:] == 1.0)


def test_window_array_form_keeps_torch_type():
    img = torch.arange(64, dtype=torch.float32).reshape(1, 4, 4, 4)
    out, kp, _ = KeypointWindow((1, 1, 1), (2, 2, 2))(img, np.array([[1.0, 1.0, 1.0]]))
    assert isinstance(out, torch.Tensor) and out[0, 0, 0, 0] == img[0, 1, 1, 1]
    np.testing.assert_allclose(kp, [[0.0, 0.0, 0.0]])

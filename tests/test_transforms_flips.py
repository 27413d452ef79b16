"""Flips and quarter turns: exact on image and keypoints, same orderings as MONAI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Flip, Rotate90

from cryo3d_transforms import (
    KeypointFlip,
    KeypointFlipd,
    KeypointRotate90,
    KeypointRotate90d,
    RandKeypointFlipd,
    RandKeypointRotate90d,
)

SHAPE = (8, 10, 12)  # non-cubic on purpose: quarter turns swap axis lengths


@pytest.fixture
def marked():
    """An image with one bright voxel under each (integer) keypoint."""
    kp = np.array([[1.0, 2.0, 3.0], [6.0, 0.0, 11.0], [3.0, 9.0, 5.0]])
    img = np.zeros((1,) + SHAPE, np.float32)
    img[(0, *kp.astype(int).T)] = [1.0, 2.0, 3.0]
    return {"image": img, "keypoints": kp, "labels": np.array([0, 1, 0]), "ds_sigma": np.array([1.0, 1.0]), "ds_factor": 2}


def assert_marks_under_keypoints(out):
    img = np.asarray(out["image"])[0]
    idx = np.rint(out["keypoints"]).astype(int)
    np.testing.assert_allclose(out["keypoints"], idx)  # voxel centres stay voxel centres
    np.testing.assert_array_equal(img[tuple(idx.T)], [1.0, 2.0, 3.0])
    assert img.sum() == 6.0


@pytest.mark.parametrize("axis", [0, 1, 2, (0, 2), None])
def test_flip_keeps_each_marked_voxel_under_its_keypoint(marked, axis):
    assert_marks_under_keypoints(KeypointFlipd(spatial_axis=axis)(marked))


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("axes", [(0, 1), (1, 2), (0, 2)])
def test_rot90_keeps_each_marked_voxel_under_its_keypoint(marked, k, axes):
    assert_marks_under_keypoints(KeypointRotate90d(k=k, spatial_axes=axes)(marked))


@pytest.mark.parametrize("axis", [0, (1, 2), None])
def test_flip_image_matches_monai_flip(marked, axis):
    ref = Flip(spatial_axis=axis)(torch.from_numpy(marked["image"]))
    out, _, _ = KeypointFlip(axis)(marked["image"])
    np.testing.assert_array_equal(out, np.asarray(ref))


@pytest.mark.parametrize("k", [1, 3])
def test_rot90_image_matches_monai_rotate90(marked, k):
    ref = Rotate90(k=k, spatial_axes=(0, 2))(torch.from_numpy(marked["image"]))
    out, _, _ = KeypointRotate90(k, (0, 2))(marked["image"])
    np.testing.assert_array_equal(out, np.asarray(ref))


def test_four_quarter_turns_are_the_identity_on_subvoxel_keypoints():
    kp = np.array([[1.3, 2.7, 3.1]])
    img = np.zeros((1,) + SHAPE, np.float32)
    out_img, out_kp = img, kp
    for _ in range(4):
        out_img, out_kp, _ = KeypointRotate90(1, (1, 2))(out_img, out_kp)
    np.testing.assert_allclose(out_kp, kp, atol=1e-12)
    assert out_img.shape == img.shape


def test_rot90_permutes_the_covariance(marked):
    cov = np.broadcast_to(np.diag([1.0, 4.0, 9.0]), (3, 3, 3)).copy()
    out = KeypointRotate90d(k=1, spatial_axes=(1, 2))({**marked, "covariances": cov})
    np.testing.assert_allclose(out["covariances"][0], np.diag([1.0, 9.0, 4.0]))


def test_random_flip_with_probability_one_flips_and_zero_does_not(marked):
    flipped = RandKeypointFlipd(prob=1.0, spatial_axis=2)(marked)
    assert flipped["keypoints"][0, 2] == SHAPE[2] - 1 - 3.0
    same = RandKeypointFlipd(prob=0.0, spatial_axis=2)(marked)
    np.testing.assert_array_equal(same["keypoints"], marked["keypoints"])


def test_random_rot90_is_reproducible_with_a_seed(marked):
    def run(seed):
        t = RandKeypointRotate90d(prob=1.0, max_k=3)
        t.set_random_state(seed)
        return [t(marked)["keypoints"] for _ in range(4)]

    for a, b in zip(run(3), run(3)):
        np.testing.assert_array_equal(a, b)


def test_torch_image_stays_torch_and_contiguous(marked):
    out = KeypointRotate90d(k=1)({**marked, "image": torch.from_numpy(marked["image"])})
    assert isinstance(out["image"], torch.Tensor) and out["image"].is_contiguous()
    assert_marks_under_keypoints(out)


def test_repeated_flip_axis_is_rejected():
    with pytest.raises(ValueError, match="repeated"):
        KeypointFlip((1, 1))

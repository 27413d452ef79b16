"""Affine augmentation: MONAI's convention, exact keypoints, covariances, border rule, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Affine
from scipy.ndimage import affine_transform, gaussian_filter

from cryo3d import coords
from cryo3d.heatmap import render_dense_reference
from cryo3d_transforms import (
    KeypointAffine,
    KeypointAffined,
    RandKeypointAffine,
    RandKeypointAffined,
    RenderHeatmapd,
    compose_affine,
)
from cryo3d_transforms.affine import affine_point_map, draw_range

DS_SIGMA = np.array([1.2, 1.5])  # downsampled voxels; full-res sigma 2.4 and 3.0 at f = 2
F = 2


def quadratic_peak(vol: np.ndarray, near: np.ndarray, search: int = 2) -> np.ndarray:
    """Sub-voxel maximum of ``vol`` near ``near`` (z, y, x): argmax in a small window, then a
    least-squares 3D quadratic fitted to ``log(vol)`` on the 3x3x3 neighbourhood (exact for
    a Gaussian of any covariance)."""
    c = np.rint(near).astype(int)
    lo = np.maximum(c - search, 1)
    hi = np.minimum(c + search + 1, np.array(vol.shape) - 1)
    win = vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    m = np.array(np.unravel_index(np.argmax(win), win.shape)) + lo
    off = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3).astype(float)
    vals = np.log(np.maximum(vol[tuple((m + off.astype(int)).T)], 1e-300))
    z, y, x = off.T
    X = np.stack([np.ones_like(z), z, y, x, z * z, y * y, x * x, z * y, z * x, y * x], 1)
    a = np.linalg.lstsq(X, vals, rcond=None)[0]
    H = np.array([[2 * a[4], a[7], a[8]], [a[7], 2 * a[5], a[9]], [a[8], a[9], 2 * a[6]]])
    return m + np.linalg.solve(H, -a[1:4])


def reference_warp(vol: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Independent warp straight from the convention: p = A3 (o - c) + t + c, cubic splines."""
    c = (np.array(vol.shape) - 1) / 2
    return affine_transform(vol, A[:3, :3], c + A[:3, 3] - A[:3, :3] @ c, order=3, mode="constant")


@pytest.fixture
def sample():
    """A 40^3 patch with four well separated keypoints of two classes."""
    kp = np.array([[13.3, 14.6, 15.2], [26.7, 14.1, 25.4], [14.2, 26.3, 25.8], [25.6, 25.2, 14.4]])
    return {
        "image": np.zeros((1, 40, 40, 40), np.float32),
        "keypoints": kp,
        "labels": np.array([0, 1, 1, 0]),
        "ds_sigma": DS_SIGMA,
        "ds_factor": F,
    }


@pytest.fixture
def smooth_image():
    rng = np.random.default_rng(3)
    return gaussian_filter(rng.standard_normal((24, 28, 32)), 2).astype(np.float32)[None]


def random_affines(n: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    for _ in range(n):
        yield compose_affine(
            draw_range(rng, (0.6, 0.6, 0.6)),
            draw_range(rng, (0.1,) * 6),
            draw_range(rng, (2.0, 2.0, 2.0)),
            draw_range(rng, (0.15, 0.15, 0.15), add=1.0),
        )


@pytest.mark.parametrize("spatial_size", [None, (20, 30, 26)])
def test_image_warp_matches_monai_affine_for_the_same_matrix(smooth_image, spatial_size):
    A = compose_affine((0.3, -0.2, 0.5), (0.1, 0.05, 0, 0, 0.1, 0), (1.5, -2, 0.7), (1.1, 0.9, 1.2))
    ref = Affine(affine=A, spatial_size=spatial_size, mode="bilinear", padding_mode="zeros", image_only=True)(
        torch.from_numpy(smooth_image)
    )
    out, _, _ = KeypointAffine(A, spatial_size=spatial_size)(smooth_image)
    np.testing.assert_allclose(out, np.asarray(ref), atol=2e-6)


@pytest.mark.parametrize("padding_mode", ["border", "reflection"])
def test_other_padding_modes_match_monai(smooth_image, padding_mode):
    A = compose_affine((0.4, 0.1, -0.3), (), (3.0, -1.0, 2.0), (1.2, 1.0, 0.9))
    ref = Affine(affine=A, mode="bilinear", padding_mode=padding_mode, image_only=True)(torch.from_numpy(smooth_image))
    out, _, _ = KeypointAffine(A, padding_mode=padding_mode)(smooth_image)
    np.testing.assert_allclose(out, np.asarray(ref), atol=2e-6)


def test_threaded_warp_equals_single_thread(smooth_image):
    A = next(random_affines(1, seed=5))
    one, _, _ = KeypointAffine(A, threads=1)(smooth_image)
    two, _, _ = KeypointAffine(A, threads=3)(smooth_image)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("spatial_size", [None, (22, 20, 30)])
def test_keypoint_lands_where_monai_moves_a_marked_voxel(spatial_size):
    """A 90-degree turn plus an integer shift maps voxels onto voxels: MONAI moves the mark
    to exactly the point our map gives (also into an output of another size)."""
    img = np.zeros((1, 20, 24, 28), np.float32)
    p = np.array([5.0, 7.0, 9.0])
    img[0, 5, 7, 9] = 1
    A = np.eye(4)
    A[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    A[:3, 3] = [1, 2, -3]
    out = Affine(affine=A, spatial_size=spatial_size, mode="bilinear", padding_mode="zeros", image_only=True)(
        torch.from_numpy(img)
    )
    out = np.asarray(out)
    L, b = affine_point_map(A, img.shape[1:], spatial_size)
    np.testing.assert_allclose(np.argwhere(out[0] > 0.5)[0], L @ p + b, atol=1e-9)


def test_warped_gaussians_peak_at_the_moved_keypoints(sample):
    """Independent reference: a dense full-res Gaussian volume warped by SciPy (cubic)."""
    full_sigma = DS_SIGMA * F
    dense = render_dense_reference(sample["keypoints"], sample["labels"], (40, 40, 40), full_sigma).max(0)
    for A in random_affines(3):
        moved = KeypointAffined(affine=A, margin_sigmas=None)(sample)["keypoints"]
        warped = reference_warp(dense, A)
        for p in moved:
            assert np.linalg.norm(quadratic_peak(warped, p) - p) < 0.5


@pytest.mark.parametrize("transform_covariance", [True, False])
def test_rendered_heatmap_peaks_at_the_moved_keypoints(sample, transform_covariance):
    render = RenderHeatmapd()
    for A in random_affines(3, seed=1):
        out = render(KeypointAffined(affine=A, transform_covariance=transform_covariance)(sample))
        assert out["keypoints"].shape == (4, 3)
        assert ("covariances" in out) == transform_covariance
        for p, c in zip(coords.voxel_to_ds(out["keypoints"], F), out["labels"]):
            assert np.linalg.norm(quadratic_peak(out["heatmap"][c], p) - p) < 0.05


def test_covariance_follows_the_matrix_and_matches_the_warped_gaussian(sample):
    """With transform_covariance the rendered target is the warped full-res Gaussian."""
    A = compose_affine((0.5, 0.2, -0.3), (0.1, 0, 0, 0.05, 0, 0), (), (1.3, 0.8, 1.0))
    out = KeypointAffined(affine=A, transform_covariance=True)(sample)
    L = np.linalg.inv(A[:3, :3])
    s = DS_SIGMA[sample["labels"]] * F
    np.testing.assert_allclose(out["covariances"], (s**2)[:, None, None] * (L @ L.T)[None], rtol=1e-12)
    dense = render_dense_reference(sample["keypoints"], sample["labels"], (40, 40, 40), DS_SIGMA * F)
    warped = reference_warp(dense[0], A)
    ours = render_dense_reference(out["keypoints"], out["labels"], (40, 40, 40), DS_SIGMA * F, out["covariances"])[0]
    assert np.abs(warped - ours).max() < 0.02


def test_existing_covariances_follow_the_matrix_even_without_the_option(sample):
    cov = np.broadcast_to(np.diag([4.0, 9.0, 1.0]), (4, 3, 3)).copy()
    A = compose_affine((), (), (), (2.0, 1.0, 1.0))
    out = KeypointAffined(affine=A, transform_covariance=False, margin_sigmas=None)({**sample, "covariances": cov})
    np.testing.assert_allclose(out["covariances"][0], np.diag([1.0, 9.0, 1.0]))


def test_keypoints_past_the_margin_are_dropped_and_entering_ones_kept():
    """Border rule: the patch is [-0.5, n - 0.5], margin 3 sigma of the class in full-res voxels."""
    sample = {
        "image": np.zeros((1, 30, 30, 30), np.float32),
        # after a shift of -10 along z: 2 -> -8 (margin 3*1*2=6: dropped), 8 -> -2 (kept),
        # 36 (outside) -> 26 (entered: kept)
        "keypoints": np.array([[2.0, 15, 15], [8.0, 15, 15], [36.0, 15, 15]]),
        "labels": np.array([0, 0, 0]),
        "ds_sigma": np.array([1.0]),
        "ds_factor": 2,
    }
    A = np.eye(4)
    A[0, 3] = 10.0  # output o samples input o + 10: content moves by -10
    out = KeypointAffined(affine=A)(sample)
    np.testing.assert_allclose(out["keypoints"][:, 0], [-2.0, 26.0])


def test_spatial_transform_removes_a_stale_precomputed_heatmap(sample):
    out = KeypointAffined(affine=np.eye(4))({**sample, "heatmap": np.ones((2, 20, 20, 20), np.float32)})
    assert "heatmap" not in out


def test_same_seed_gives_the_same_affine_and_output(sample):
    def run(seed):
        t = RandKeypointAffined(rotate_range=(1, 1, 1), scale_range=(0.2, 0.2, 0.2), translate_range=(3, 3, 3))
        t.set_random_state(seed)
        return t, t(sample)

    (t1, a), (t2, b), (t3, c) = run(4), run(4), run(5)
    np.testing.assert_array_equal(t1.affine, t2.affine)
    np.testing.assert_array_equal(a["keypoints"], b["keypoints"])
    assert not np.allclose(t1.affine, t3.affine)


def test_zero_probability_leaves_the_sample_untouched(sample):
    t = RandKeypointAffined(prob=0.0, rotate_range=(1, 1, 1))
    out = t(sample)
    assert out["image"] is sample["image"]
    np.testing.assert_array_equal(out["keypoints"], sample["keypoints"])


def test_isotropic_scale_draws_one_factor_for_all_axes():
    t = RandKeypointAffine(scale_range=(0.3,), isotropic_scale=True)
    t.set_random_state(0)
    t.randomize()
    d = np.diag(t.affine)[:3]
    assert np.allclose(d, d[0]) and not np.isclose(d[0], 1.0)


def test_uniform_rotation_is_a_proper_rotation():
    t = RandKeypointAffine(uniform_rotation=True)
    t.set_random_state(1)
    t.randomize()
    R = t.affine[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(R), 1.0)


def test_torch_image_comes_back_as_a_torch_tensor(sample):
    A = next(random_affines(1))
    d = {**sample, "image": torch.zeros(1, 40, 40, 40)}
    out = KeypointAffined(affine=A)(d)
    assert isinstance(out["image"], torch.Tensor) and out["image"].shape == (1, 40, 40, 40)


def test_missing_ds_sigma_is_a_clear_error(sample):
    del sample["ds_sigma"]
    with pytest.raises(ValueError, match="ds_sigma"):
        KeypointAffined(affine=np.eye(4))(sample)


def test_singular_matrix_is_rejected():
    with pytest.raises(ValueError, match="invertible"):
        KeypointAffine(np.zeros((4, 4)))

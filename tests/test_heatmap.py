import numpy as np
import pytest

from cryo3d.array_module import to_numpy
from cryo3d.heatmap import render_dense_reference, render_heatmap

SIGMAS = np.array([1.0, 1.08, 1.5, 2.5, 2.17, 2.25])


@pytest.fixture
def keypoints():
    rng = np.random.default_rng(1)
    kp = rng.uniform(-2, 26, size=(30, 3))
    lab = rng.integers(0, 6, size=30)
    return kp, lab


def test_heatmap_matches_dense_reference(keypoints, xp):
    kp, lab = keypoints
    hm = to_numpy(render_heatmap(xp.asarray(kp), xp.asarray(lab), (24, 24, 24), SIGMAS))
    ref = render_dense_reference(kp, lab, (24, 24, 24), SIGMAS)
    assert hm.shape == (6, 24, 24, 24) and hm.dtype == np.float32
    np.testing.assert_allclose(hm, ref, atol=1e-6)


def test_heatmap_with_covariances_matches_dense_reference(keypoints, xp):
    kp, lab = keypoints
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 3, 3)) * 0.3 + np.eye(3) * SIGMAS[lab][:, None, None]
    cov = a @ a.transpose(0, 2, 1)
    hm = to_numpy(render_heatmap(xp.asarray(kp), xp.asarray(lab), (24, 24, 24), SIGMAS, covariances=xp.asarray(cov)))
    ref = render_dense_reference(kp, lab, (24, 24, 24), SIGMAS, covariances=cov)
    np.testing.assert_allclose(hm, ref, atol=1e-6)


def test_heatmap_peak_is_one_on_a_voxel_centre_and_axes_are_zyx():
    hm = render_heatmap(np.array([[3.0, 5.0, 7.0]]), np.array([1]), (10, 12, 14), [1.0, 1.5])
    assert hm[1, 3, 5, 7] == pytest.approx(1.0)
    assert np.unravel_index(hm[1].argmax(), hm[1].shape) == (3, 5, 7)
    assert hm[0].max() == 0.0


def test_overlapping_gaussians_combine_by_maximum():
    kp = np.array([[5.0, 5.0, 5.0], [5.0, 5.0, 7.0]])
    hm = render_heatmap(kp, np.array([0, 0]), (12, 12, 12), [1.5])
    mid = np.exp(-0.5 * 1 / 1.5**2)
    assert hm[0, 5, 5, 6] == pytest.approx(mid, abs=1e-6)  # max, not sum (sum would be 2*mid)


def test_no_keypoints_give_an_empty_heatmap():
    hm = render_heatmap(np.zeros((0, 3)), np.zeros(0, int), (4, 5, 6), [1.0, 2.0])
    assert hm.shape == (2, 4, 5, 6) and not hm.any()


def test_keypoint_outside_grid_still_draws_its_tail():
    hm = render_heatmap(np.array([[-1.0, 4.0, 4.0]]), np.array([0]), (8, 8, 8), [1.0])
    assert hm[0, 0, 4, 4] == pytest.approx(np.exp(-0.5), abs=1e-6)


def test_label_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="labels"):
        render_heatmap(np.zeros((1, 3)), np.array([3]), (4, 4, 4), [1.0, 1.0])


def test_nan_keypoint_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        render_heatmap(np.full((1, 3), np.nan), np.array([0]), (4, 4, 4), [1.0])

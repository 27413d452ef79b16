"""Peak extraction: sub-voxel accuracy, thresholds, distances, plateaus, backends, picks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cryo3d.array_module import cupy_available
from cryo3d.coords import angstrom_to_ds, ds_shape, ds_sigma
from cryo3d.heatmap import render_heatmap
from cryo3d.particles import CZII_PARTICLES, ParticleClass, ParticleSet
from cryo3d.peak_selection import (
    PACKING_FRACTION,
    cap_per_class,
    max_particles,
    peaks_to_picks,
    suppress_cross_class,
)
from cryo3d.peaks import _box_max, find_peaks, nms_radius

SHAPE = (20, 22, 24)
SIGMAS = [1.0, 1.5, 1.2]


def _nearest_error(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """For each true point, the distance to the nearest found point."""
    d = np.linalg.norm(truth[:, None, :] - found[None, :, :], axis=-1)
    return d.min(axis=1)


@pytest.fixture
def keypoints() -> tuple[np.ndarray, np.ndarray]:
    """Well separated sub-voxel keypoints of three classes, some within half a voxel of a border."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid([4.0, 12.0], [4.0, 12.0, 19.0], [4.0, 12.0, 20.0], indexing="ij"), -1).reshape(-1, 3)
    kp = grid + rng.uniform(-0.5, 0.5, grid.shape)
    border = np.array([[0.3, 8.2, 8.4], [8.1, -0.35, 16.3], [16.4, 16.6, 23.4], [19.3, 2.7, 16.2]])
    kp = np.concatenate([kp, border])
    labels = rng.integers(0, 3, kp.shape[0])
    return kp, labels


def test_peaks_of_a_rendered_heatmap_lie_within_0_05_voxel_of_the_keypoints(keypoints):
    kp, labels = keypoints
    hm = render_heatmap(kp, labels, SHAPE, SIGMAS)
    coords, found_labels, scores = find_peaks(hm, 0.3, 3.0)
    assert coords.shape == kp.shape
    for c in range(3):
        err = _nearest_error(coords[found_labels == c], kp[labels == c])
        assert err.max() < 0.05, (c, err.max())
    assert np.all((scores > 0.3) & (scores <= 1.0))


def test_refinement_is_exact_for_a_gaussian_away_from_other_peaks():
    kp = np.array([[6.37, 7.81, 5.12]])
    coords, _, _ = find_peaks(render_heatmap(kp, [0], (14, 14, 14), [1.3], dtype=np.float64), 0.5, 2.0)
    np.testing.assert_allclose(coords, kp, atol=1e-9)


def test_refine_false_returns_the_peak_voxel():
    kp = np.array([[6.37, 7.81, 5.12]])
    coords, _, _ = find_peaks(render_heatmap(kp, [0], (14, 14, 14), [1.3]), 0.5, 2.0, refine=False)
    np.testing.assert_array_equal(coords, [[6.0, 8.0, 5.0]])


def test_threshold_drops_weak_peaks():
    strong = render_heatmap(np.array([[5.0, 5.0, 5.0]]), [0], (12, 12, 16), [1.0])
    weak = 0.4 * render_heatmap(np.array([[5.0, 5.0, 11.0]]), [0], (12, 12, 16), [1.0])
    hm = np.maximum(strong, weak)
    assert find_peaks(hm, 0.3, 2.0)[0].shape[0] == 2
    coords, _, scores = find_peaks(hm, 0.5, 2.0)
    np.testing.assert_allclose(coords, [[5.0, 5.0, 5.0]])
    np.testing.assert_allclose(scores, [1.0])


def test_thresholds_apply_per_class():
    kp = np.array([[5.0, 5.0, 5.0], [5.0, 5.0, 5.0]])
    hm = render_heatmap(kp, [0, 1], (10, 10, 10), [1.0, 1.0])
    hm[1] *= 0.6
    _, labels, _ = find_peaks(hm, [0.5, 0.7], 2.0)
    assert labels.tolist() == [0]


def test_two_keypoints_closer_than_min_distance_give_one_peak_the_stronger():
    hm = np.maximum(
        render_heatmap(np.array([[8.0, 8.0, 8.0]]), [0], (16, 16, 16), [1.0]),
        0.9 * render_heatmap(np.array([[8.0, 8.0, 10.5]]), [0], (16, 16, 16), [1.0]),
    )
    assert find_peaks(hm, 0.3, 2.0)[0].shape[0] == 2  # both are local maxima
    # d = 3 -> NMS cube half-width 1 lets both through; the continuous pass keeps one
    coords, _, scores = find_peaks(hm, 0.3, 3.0)
    np.testing.assert_allclose(coords, [[8.0, 8.0, 8.0]], atol=1e-5)
    np.testing.assert_allclose(scores, [1.0])


def test_peaks_farther_than_min_distance_along_a_diagonal_both_survive():
    # distance 3 * sqrt(3) = 5.2 > 5, but inside a cube of half-width ceil(5)
    hm = np.maximum(
        render_heatmap(np.array([[5.0, 5.0, 5.0]]), [0], (14, 14, 14), [0.8]),
        0.9 * render_heatmap(np.array([[8.0, 8.0, 8.0]]), [0], (14, 14, 14), [0.8]),
    )
    coords, _, scores = find_peaks(hm, 0.3, 5.0)
    assert coords.shape[0] == 2
    np.testing.assert_allclose(scores, [1.0, 0.9], rtol=1e-6)
    assert nms_radius(5.0) == 2


def test_nms_radius_is_the_largest_cube_inside_the_min_distance_ball():
    assert nms_radius([0.0, 1.0, 1.8, 3.5, 3.47, 5.2]).tolist() == [1, 1, 1, 2, 2, 3]


def test_a_flat_plateau_gives_one_peak_at_its_centre():
    hm = np.zeros((1, 9, 9, 9), np.float32)
    hm[0, 3:5, 3:6, 4] = 1.0
    hm[0, 3:5, 3:6, 3] = 0.5
    hm[0, 3:5, 3:6, 5] = 0.5
    coords, labels, scores = find_peaks(hm, 0.2, 0.5)
    np.testing.assert_allclose(coords, [[3.5, 4.0, 4.0]])
    assert labels.tolist() == [0] and scores.tolist() == [1.0]


def test_a_u_shaped_plateau_gives_one_peak():
    hm = np.zeros((1, 3, 6, 6), np.float32)
    hm[0, 1, 1, 1:4] = 1.0  # bottom of the U
    hm[0, 1, 1:4, 1] = 1.0  # left arm
    hm[0, 1, 1:4, 3] = 1.0  # right arm: (1, 3, 1) and (1, 3, 3) have no lower-index neighbour
    coords, _, _ = find_peaks(hm, 0.5, 0.5, refine=False)
    assert coords.shape == (1, 3)


def test_a_gaussian_midway_between_voxels_is_found_at_the_midpoint():
    kp = np.array([[5.5, 6.0, 4.5]])  # ties on two axes -> a 2x1x2 plateau
    coords, _, _ = find_peaks(render_heatmap(kp, [0], (12, 12, 12), [1.2]), 0.5, 2.0)
    np.testing.assert_allclose(coords, kp, atol=1e-5)


def test_max_peaks_keeps_the_strongest_per_class():
    kp = np.array([[3.0, 3.0, 3.0], [3.0, 3.0, 10.0], [3.0, 10.0, 3.0], [10.0, 10.0, 10.0]])
    hm = render_heatmap(kp, [0, 0, 0, 1], (14, 14, 14), [1.0, 1.0])
    hm[0, :, :, 8:] *= 0.7
    coords, labels, scores = find_peaks(hm, 0.3, 2.0, max_peaks=1)
    assert labels.tolist() == [0, 1]
    np.testing.assert_allclose(coords[0], [3.0, 3.0, 3.0])


def test_output_is_sorted_by_class_then_descending_score(keypoints):
    kp, labels = keypoints
    rng = np.random.default_rng(3)
    hm = render_heatmap(kp, labels, SHAPE, SIGMAS)
    hm *= rng.uniform(0.5, 1.0, (3, 1, 1, 1)).astype(np.float32)
    hm = np.maximum(hm, 0.9 * np.roll(hm, 1, axis=0))
    _, found_labels, scores = find_peaks(hm, 0.2, 3.0)
    key = found_labels * 10.0 - scores
    assert np.all(np.diff(key) >= 0)


def test_torch_and_numpy_inputs_agree(keypoints):
    kp, labels = keypoints
    hm = render_heatmap(kp, labels, SHAPE, SIGMAS)
    a = find_peaks(hm, 0.3, [3.0, 4.0, 2.5])
    b = find_peaks(torch.from_numpy(hm), 0.3, [3.0, 4.0, 2.5])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_separable_box_max_equals_max_pool3d(r):
    x = torch.rand(2, 7, 2, 9, generator=torch.Generator().manual_seed(r))
    expected = F.max_pool3d(x[None], 2 * r + 1, 1, r)[0]
    torch.testing.assert_close(_box_max(x, r, use_pool=False), expected, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensor_gives_the_cpu_result(keypoints):
    kp, labels = keypoints
    hm = render_heatmap(kp, labels, SHAPE, SIGMAS)
    a = find_peaks(hm, 0.3, 3.0)
    b = find_peaks(torch.from_numpy(hm).cuda(), 0.3, 3.0)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[2], b[2])


@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device")
def test_cupy_heatmap_gives_the_numpy_result(keypoints):
    import cupy as cp

    kp, labels = keypoints
    hm = render_heatmap(kp, labels, SHAPE, SIGMAS)
    a = find_peaks(hm, 0.3, 3.0)
    b = find_peaks(cp.asarray(hm), 0.3, 3.0)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("shape", [(2, 6, 6, 6), (3, 0, 4, 4)])
def test_an_empty_heatmap_gives_empty_arrays_of_the_right_shapes(shape):
    coords, labels, scores = find_peaks(np.zeros(shape, np.float32), 0.5, 2.0)
    assert coords.shape == (0, 3) and coords.dtype == np.float64
    assert labels.shape == (0,) and labels.dtype == np.int64
    assert scores.shape == (0,) and scores.dtype == np.float64


def test_bad_arguments_raise_value_errors():
    hm = np.zeros((2, 5, 5, 5), np.float32)
    with pytest.raises(ValueError, match="C, Z, Y, X"):
        find_peaks(hm[0], 0.5, 2.0)
    with pytest.raises(ValueError, match="thresholds"):
        find_peaks(hm, [0.5, 0.5, 0.5], 2.0)
    with pytest.raises(ValueError, match="min_distance"):
        find_peaks(hm, 0.5, -1.0)
    hm[0, 1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        find_peaks(hm, 0.5, 2.0)


def _particles() -> ParticleSet:
    return CZII_PARTICLES.subset(["apo-ferritin", "ribosome", "thyroglobulin"])


@pytest.mark.parametrize("origin", [None, (6, 10, 4)])
def test_angstrom_keypoints_round_trip_through_heatmap_and_peaks_within_1_angstrom(origin):
    particles = _particles()
    spacing, f = 10.0, 2
    full = (40, 48, 52)
    rng = np.random.default_rng(7)
    grid = np.stack(np.meshgrid([80.0, 260.0], [90.0, 300.0], [90.0, 300.0, 430.0], indexing="ij"), -1)
    zyx = grid.reshape(-1, 3) + rng.uniform(-15, 15, (12, 3))  # local Angstrom, z-y-x
    xyz_local = zyx[:, ::-1]
    labels = rng.integers(0, 3, 12)
    sig = ds_sigma(particles.angstrom_sigmas, spacing, f)
    hm = render_heatmap(angstrom_to_ds(xyz_local, spacing, f), labels, ds_shape(full, f), sig)
    coords, found, scores = find_peaks(hm, 0.3, 0.5 * particles.radii / (spacing * f))
    picks = peaks_to_picks(coords, found, scores, "TS_1", particles, spacing, f, origin=origin)
    shift = np.zeros(3) if origin is None else np.asarray(origin, float)[::-1] * spacing
    truth = xyz_local + shift
    assert len(picks) == 12
    assert set(picks.tomo.tolist()) == {"TS_1"}
    for c, name in enumerate(particles.names):
        err = _nearest_error(picks.xyz[picks.cls == name], truth[labels == c])
        assert err.max() < 1.0, (name, err.max())
    np.testing.assert_array_equal(picks.score, scores)


def test_peaks_to_picks_rejects_labels_outside_the_particle_set():
    particles = ParticleSet((ParticleClass("a", 50.0),))
    with pytest.raises(ValueError, match="labels"):
        peaks_to_picks(np.zeros((1, 3)), np.array([1]), np.ones(1), "t", particles, 10.0, 2)


def test_peaks_to_picks_of_no_peaks_is_an_empty_table():
    picks = peaks_to_picks(*find_peaks(np.zeros((1, 4, 4, 4)), 0.5, 1.0), "t", _particles(), 10.0, 2)
    assert len(picks) == 0 and picks.xyz.shape == (0, 3)


# --------------------------------------------------------------------------- one particle, one class


def test_a_weaker_peak_of_another_class_on_the_same_particle_is_dropped():
    coords = np.array([[10.0, 10, 10], [10.0, 10, 12], [30.0, 30, 30]])
    keep = suppress_cross_class(coords, [0, 1, 1], [0.9, 0.8, 0.7], radii=[5.0, 10.0], fraction=0.5)
    assert keep.tolist() == [True, False, True]  # 2 < 0.5 x min(5, 10)


def test_cross_class_suppression_keeps_the_stronger_whatever_its_class():
    coords = np.array([[10.0, 10, 10], [10.0, 10, 12]])
    assert suppress_cross_class(coords, [0, 1], [0.6, 0.95], [5.0, 10.0]).tolist() == [False, True]


def test_cross_class_suppression_leaves_peaks_of_one_class_alone():
    coords = np.array([[10.0, 10, 10], [10.0, 10, 11]])
    assert suppress_cross_class(coords, [1, 1], [0.9, 0.8], [5.0, 10.0]).all()


@pytest.mark.parametrize("rule, kept", [("smaller", True), ("stronger", False), ("larger", False)])
def test_cross_class_rule_sets_which_radius_is_the_reach(rule, kept):
    # 4 apart: beyond 0.5 x the smaller radius (2.5), within 0.5 x the stronger's = larger radius (5)
    coords = np.array([[10.0, 10, 10], [10.0, 10, 14]])
    keep = suppress_cross_class(coords, [1, 0], [0.9, 0.8], [5.0, 10.0], fraction=0.5, rule=rule)
    assert keep.tolist() == [True, kept]


def test_a_suppressed_peak_suppresses_nothing():
    # A (0.9) drops B (0.8); C (0.7), near B only, survives because B is gone
    coords = np.array([[0.0, 0, 0], [0.0, 0, 2], [0.0, 0, 4]])
    keep = suppress_cross_class(coords, [0, 1, 0], [0.9, 0.8, 0.7], [5.0, 5.0], fraction=0.5)
    assert keep.tolist() == [True, False, True]


@pytest.mark.parametrize("seed", range(3))
def test_cross_class_suppression_equals_the_sequential_loop(seed):
    rng = np.random.default_rng(seed)
    n, radii = 300, np.array([4.0, 7.0, 10.0])
    coords, labels, scores = rng.uniform(0, 60, (n, 3)), rng.integers(0, 3, n), rng.random(n)
    keep = suppress_cross_class(coords, labels, scores, radii, fraction=0.6)
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        d = np.linalg.norm(coords[kept] - coords[i], axis=1) if kept else np.zeros(0)
        reach = 0.6 * np.minimum(radii[labels[kept]], radii[labels[i]]) if kept else np.zeros(0)
        if not np.any((labels[kept] != labels[i]) & (d < reach)):
            kept.append(int(i))
    assert np.nonzero(keep)[0].tolist() == sorted(kept)


def test_cross_class_fraction_zero_keeps_everything():
    coords = np.zeros((3, 3))
    assert suppress_cross_class(coords, [0, 1, 2], [0.1, 0.2, 0.3], [5.0, 5.0, 5.0], fraction=0).all()


def test_cross_class_suppression_rejects_a_bad_rule_or_fraction():
    with pytest.raises(ValueError, match="rule"):
        suppress_cross_class(np.zeros((2, 3)), [0, 1], [1, 1], [1, 1], rule="nearest")
    with pytest.raises(ValueError, match="fraction"):
        suppress_cross_class(np.zeros((2, 3)), [0, 1], [1, 1], [1, 1], fraction=-1)


# --------------------------------------------------------------------------- physical cap


def test_max_particles_is_the_packing_fraction_of_the_volume_over_the_sphere_volume():
    caps = max_particles((40, 50, 60), [2.0, 5.0, 100.0])
    expected = np.floor(PACKING_FRACTION * 40 * 50 * 60 / (4 / 3 * np.pi * np.array([2.0, 5.0, 100.0]) ** 3))
    assert caps.tolist() == np.maximum(expected, 1).astype(int).tolist()
    assert caps[-1] == 1  # a particle larger than the volume still gets one pick


def test_cap_keeps_the_highest_scores_of_each_class_and_warns_naming_tomogram_and_class():
    labels = np.array([0, 1, 0, 0, 1, 0])
    scores = np.array([0.2, 0.9, 0.8, 0.5, 0.1, 0.7])
    with pytest.warns(UserWarning, match=r"TS_7.*ribosome: 4 picks, kept the 2 highest"):
        keep = cap_per_class(labels, scores, [2, 5], where="TS_7", names=["ribosome", "ferritin"])
    assert np.nonzero(keep)[0].tolist() == [1, 2, 4, 5]


def test_cap_does_not_warn_when_every_class_fits(recwarn):
    keep = cap_per_class(np.array([0, 1, 1]), np.array([0.3, 0.2, 0.1]), [1, 2])
    assert keep.all() and not recwarn.list

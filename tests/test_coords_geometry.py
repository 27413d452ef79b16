"""Heatmap and voxel-extent geometry of cryo3d.coords, against independent references.

Each reference is written from the conventions in ARCHITECTURE.md (voxel ``i`` covers
``[i - 0.5, i + 0.5]``; heatmap voxel ``j`` covers full-resolution voxels ``j*f ... j*f+f-1``),
by brute force or plain arithmetic, never through coords itself.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cryo3d import coords

spacings = st.floats(1.0, 30.0, allow_nan=False)
factors = st.integers(1, 8)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 200), f=factors)
def test_ds_padded_shape_is_the_smallest_multiple_of_f_covering_n(n, f):
    (p,) = coords.ds_padded_shape((n,), f)
    assert p % f == 0 and p >= n and p - f < n  # smallest multiple of f that is >= n
    assert p == math.ceil(n / f) * f
    assert coords.ds_shape((n,), f) == (p // f,)


@pytest.mark.parametrize("f", [1, 2, 3, 4])
def test_ds_padded_shape_counts_the_voxels_the_heatmap_blocks_cover(f):
    for n in range(1, 20):
        blocks = {i // f for i in range(n)}  # heatmap voxel of each full-res voxel
        assert coords.ds_padded_shape((n, n, n), f) == ((max(blocks) + 1) * f,) * 3


@settings(max_examples=50, deadline=None)
@given(s=spacings, f=factors)
def test_ds_grid_spacing_and_origin_put_heatmap_voxels_on_their_blocks(s, f):
    # heatmap voxel j sits at the mean position of the full-res voxel centres it covers
    assert coords.ds_voxel_spacing(s, f) == pytest.approx(s * f)
    assert coords.ds_factor_between(coords.ds_voxel_spacing(s, f), s) == pytest.approx(f, rel=1e-12)
    origin = coords.ds_origin(s, f)
    for j in range(3):
        block = np.arange(j * f, j * f + f) * s  # full-res centres in Angstrom along one axis
        centre = origin[0] + j * coords.ds_voxel_spacing(s, f)
        assert centre == pytest.approx(block.mean())
    np.testing.assert_allclose(origin, coords.ds_to_angstrom(np.zeros(3), s, f))
    assert origin[0] == origin[1] == origin[2]


@settings(max_examples=50, deadline=None)
@given(sig=st.floats(0.1, 20.0), f=factors)
def test_lengths_and_covariances_scale_by_f_and_f_squared(sig, f):
    full = coords.ds_to_voxel_length(sig, f)
    assert full == pytest.approx(sig * f)
    cov_full = np.diag([full**2] * 3)  # an isotropic Gaussian of sigma `full` voxels
    cov_ds = coords.voxel_to_ds_covariance(cov_full, f)
    np.testing.assert_allclose(np.sqrt(np.diag(cov_ds)), sig, rtol=1e-12)
    # a distance measured in full-res voxels is f times the distance between the ds coordinates
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0 + full])
    assert np.linalg.norm(coords.voxel_to_ds(b, f) - coords.voxel_to_ds(a, f)) == pytest.approx(sig)


def test_length_and_covariance_helpers_keep_torch_tensors():
    t = torch.eye(3, dtype=torch.float64) * 16.0
    out = coords.voxel_to_ds_covariance(t, 2)
    assert isinstance(out, torch.Tensor) and torch.allclose(out, torch.eye(3, dtype=torch.float64) * 4.0)
    assert isinstance(coords.ds_to_voxel_length(torch.tensor([1.5]), 2), torch.Tensor)


@settings(max_examples=100, deadline=None)
@given(
    p=st.lists(st.floats(-5.0, 15.0, allow_nan=False), min_size=3, max_size=3),
    shape=st.lists(st.integers(1, 10), min_size=3, max_size=3),
    m=st.floats(0.0, 3.0),
)
def test_in_voxel_extent_is_inside_some_voxel_widened_by_the_margin(p, shape, m):
    # reference: a point is inside when it is within 0.5 + m of the centre of one of the voxels
    ref = all(min(abs(x - i) for i in range(n)) <= 0.5 + m + 1e-12 for x, n in zip(p, shape))
    got = bool(coords.in_voxel_extent(np.asarray(p), shape, m))
    far_from_border = all(abs(abs(x - i) - (0.5 + m)) > 1e-9 for x, n in zip(p, shape) for i in (0, n - 1))
    if far_from_border:
        assert got == ref


def test_in_voxel_extent_includes_both_borders_and_takes_per_point_margins():
    pts = np.array([[-0.5, 0.0, 0.0], [0.0, 0.0, 3.5], [-0.51, 0.0, 0.0], [0.0, 3.6, 0.0]])
    np.testing.assert_array_equal(coords.in_voxel_extent(pts, (4, 4, 4)), [True, True, False, False])
    margins = np.array([[0.0], [0.0], [0.02], [0.2]])
    np.testing.assert_array_equal(coords.in_voxel_extent(pts, (4, 4, 4), margins), [True, True, True, True])


def test_voxel_extent_of_a_box_works_on_tensors():
    lo, hi = coords.voxel_extent(torch.tensor([2.0]), torch.tensor([5.0]))
    assert lo.item() == 1.5 and hi.item() == 4.5  # voxels 2, 3, 4 span [1.5, 4.5]
    assert coords.voxel_extent(0, 4, 1.0) == (-1.5, 4.5)


@settings(max_examples=50, deadline=None)
@given(s=spacings, v=st.lists(st.floats(-100.0, 1000.0, allow_nan=False), min_size=3, max_size=3))
def test_voxel_xyz_columns_scale_by_spacing_in_their_own_order(s, v):
    a = coords.voxel_xyz_to_angstrom(np.asarray(v), s)
    np.testing.assert_allclose(a, np.asarray(v) * s, rtol=1e-12, atol=1e-9)  # x stays x
    np.testing.assert_allclose(coords.angstrom_to_voxel_xyz(a, s), v, rtol=1e-9, atol=1e-9)
    # and agrees with the [z, y, x] voxel frame
    np.testing.assert_allclose(coords.angstrom_to_voxel(a, s), np.asarray(v)[::-1], rtol=1e-9, atol=1e-9)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(-50, 200), st.integers(1, 60), st.integers(1, 4))
def test_a_box_maps_to_the_downsampled_voxels_whose_blocks_it_touches(lo, size, f):
    hi = lo + size
    lo_ds, hi_ds = coords.voxel_box_to_ds(torch.tensor([lo]), torch.tensor([hi]), f)
    touched = {v // f for v in range(lo, hi)}  # reference: the block of every full-resolution voxel in the box
    assert set(range(int(lo_ds), int(hi_ds))) == touched


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.floats(1.0, 30.0), st.floats(1.0, 30.0), st.integers(0, 40))
def test_resampled_voxel_centres_sit_at_the_same_angstrom(src, dst, i):
    scale = coords.voxel_scale(src, dst)
    assert coords.voxel_to_angstrom(np.array([i * scale, 0, 0]), src)[2] == pytest.approx(
        coords.voxel_to_angstrom(np.array([i, 0, 0]), dst)[2])

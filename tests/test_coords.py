import numpy as np
import pytest

from cryo3d import coords


@pytest.fixture
def xyz():
    return np.random.default_rng(0).uniform(0, 5000, size=(50, 3))


@pytest.mark.parametrize("f", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("spacing", [10.0, 7.84, 13.48])
def test_angstrom_to_ds_and_back_is_exact(xyz, f, spacing):
    ds = coords.angstrom_to_ds(xyz, spacing, f)
    back = coords.ds_to_angstrom(ds, spacing, f)
    np.testing.assert_allclose(back, xyz, rtol=0, atol=1e-9)


@pytest.mark.parametrize("f", [1, 2, 4])
def test_angstrom_voxel_ds_chain_round_trips(xyz, f):
    vox = coords.angstrom_to_voxel(xyz, 10.0)
    ds = coords.voxel_to_ds(vox, f)
    np.testing.assert_allclose(coords.voxel_to_angstrom(coords.ds_to_voxel(ds, f), 10.0), xyz, atol=1e-9)


def test_angstrom_to_voxel_reverses_axis_order():
    v = coords.angstrom_to_voxel(np.array([10.0, 20.0, 30.0]), 10.0)
    np.testing.assert_array_equal(v, [3.0, 2.0, 1.0])  # [z, y, x]


def test_voxel_centre_is_index_times_spacing():
    np.testing.assert_allclose(coords.voxel_to_angstrom(np.array([[0, 0, 0], [1, 2, 3]]), 8.0),
                               [[0, 0, 0], [24, 16, 8]])


@pytest.mark.parametrize("f", [2, 3, 4])
def test_downsampled_voxel_zero_is_the_centre_of_its_block(f):
    # heatmap voxel 0 covers full-res voxels 0..f-1, centred at (f-1)/2
    np.testing.assert_allclose(coords.ds_to_voxel(np.zeros(3), f), np.full(3, (f - 1) / 2))
    np.testing.assert_allclose(coords.voxel_to_ds(np.full(3, f + (f - 1) / 2), f), np.ones(3))


def test_global_local_round_trip():
    p = np.array([[10.5, 20.25, 30.0]])
    o = np.array([8, 16, 24])
    np.testing.assert_array_equal(coords.local_to_global(coords.global_to_local(p, o), o), p)


def test_ds_sigma_divides_by_spacing_and_factor():
    np.testing.assert_allclose(coords.ds_sigma([20.0, 50.0], 10.0, 2), [1.0, 2.5])


def test_ds_shape_rounds_up():
    assert coords.ds_shape((64, 65, 63), 2) == (32, 33, 32)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), None, "abc"])
def test_bad_voxel_spacing_is_rejected(bad):
    with pytest.raises(ValueError, match="voxel spacing"):
        coords.angstrom_to_voxel(np.zeros(3), bad)


def test_non_integer_ds_factor_is_rejected():
    with pytest.raises(ValueError, match="ds_factor"):
        coords.voxel_to_ds(np.zeros(3), 1.5)


def test_length_to_voxels_divides_by_spacing_and_factor():
    np.testing.assert_allclose(coords.length_to_voxels([30.0, 60.0], 10.0, 2), [1.5, 3.0])
    np.testing.assert_allclose(coords.length_to_voxels(30.0, 7.5), 4.0)


@pytest.mark.parametrize("f", [1, 2, 4])
def test_lengths_round_trip_between_angstrom_and_voxels(f):
    lengths = np.array([0.0, 13.5, 60.0, 150.0])
    back = coords.voxels_to_length(coords.length_to_voxels(lengths, 10.012, f), 10.012, f)
    np.testing.assert_allclose(back, lengths, rtol=1e-12)

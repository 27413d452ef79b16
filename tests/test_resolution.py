"""The training geometry follows the particle set: spacing from the smallest, patch from the largest."""

from __future__ import annotations

import pytest

from cryo3d.particles import CZII_PARTICLES, ParticleClass, ParticleSet
from cryo3d.resolution import MAX_VOXELS_PER_RADIUS, MIN_VOXELS_PER_RADIUS, choose_geometry, parse_spacing_key

SMALL = ParticleSet((ParticleClass("small", 30.0), ParticleClass("big", 150.0)))


def test_czii_set_trains_at_20_angstrom_with_32_cube_patches():
    g = choose_geometry(CZII_PARTICLES, 10.0)
    assert (g.voxel_spacing, g.patch_size, g.stride, g.batch_size) == (20.0, 32, 16, 8)


def test_smallest_particle_keeps_three_voxels_across_its_radius():
    g = choose_geometry(ParticleSet((ParticleClass("a", 45.0), ParticleClass("b", 90.0))), 5.0)
    assert g.voxel_spacing == pytest.approx(45.0 / MIN_VOXELS_PER_RADIUS)


def test_spacing_is_never_finer_than_the_tomograms():
    g = choose_geometry(ParticleSet((ParticleClass("a", 30.0), ParticleClass("b", 60.0))), 10.012)
    assert g.voxel_spacing == pytest.approx(10.012)
    assert "native" in g.reason


def test_the_largest_particle_caps_how_fine_the_spacing_goes():
    # 30 A wants 10 A, but a 150 A particle would then be 15 voxels of radius: 150 / 8 wins
    g = choose_geometry(SMALL, 10.012)
    assert g.voxel_spacing == pytest.approx(150.0 / MAX_VOXELS_PER_RADIUS)
    assert g.patch_size == 32 and "largest particle" in g.reason


def test_patch_grows_with_the_largest_particle_and_the_batch_shrinks():
    g = choose_geometry(SMALL, 10.012, voxel_spacing=10.012, divisor=4)
    # a 150 A radius at 10.012 A is 29.96 voxels across: 1.25 x 29.96 = 37.45 -> 40 (a multiple of 4)
    assert g.patch_size == 40 and g.stride == 20
    assert g.batch_size == round(8 * (32 / 40) ** 3)


def test_patch_respects_the_network_divisor_and_ds_factor():
    g = choose_geometry(SMALL, 10.0, divisor=8, ds_factor=2)
    assert g.patch_size % 8 == 0


def test_given_numbers_are_kept():
    g = choose_geometry(CZII_PARTICLES, 10.0, voxel_spacing=13.5, patch_size=40, stride=20, batch_size=3)
    assert (g.voxel_spacing, g.patch_size, g.stride, g.batch_size) == (13.5, 40, 20, 3)


@pytest.mark.parametrize("text", ["null", "None", "native", None])
def test_null_from_monai_command_line_means_native_spacing(text):
    assert parse_spacing_key(text) is None
    assert choose_geometry(CZII_PARTICLES, 10.0, voxel_spacing=text).voxel_spacing == 10.0


@pytest.mark.parametrize("bad", ["ten", "-3", 0, "nan"])
def test_bad_spacing_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="voxel_spacing"):
        parse_spacing_key(bad)


def test_patch_not_a_multiple_of_the_divisor_is_refused():
    with pytest.raises(ValueError, match="multiple of 4"):
        choose_geometry(CZII_PARTICLES, 10.0, patch_size=30, divisor=4)

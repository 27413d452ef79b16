"""Tomogram file I/O: MRC and NIfTI round trips, axis order, voxel spacing, errors."""

from __future__ import annotations

import mrcfile
import nibabel as nib
import numpy as np
import pytest

from cryo3d.io.tomogram import Tomogram, read_tomogram, tomogram_name, write_mrc, write_nifti


@pytest.fixture
def volume() -> np.ndarray:
    """An asymmetric [z, y, x] = [3, 4, 5] float32 volume with distinct values."""
    return np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)


def _raw_mrc(path, data, voxel_size):
    """Write an MRC with mrcfile directly (bypassing write_mrc's checks)."""
    with mrcfile.new(str(path), overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size


# --------------------------------------------------------------------------- MRC


def test_mrc_round_trip_keeps_zyx_array_and_voxel_spacing(tmp_path, volume):
    path = tmp_path / "TS_5.mrc"
    write_mrc(path, volume, 10.012)
    tomo = read_tomogram(path)
    assert isinstance(tomo, Tomogram)
    assert tomo.name == "TS_5"
    assert tomo.shape == (3, 4, 5)
    np.testing.assert_array_equal(np.asarray(tomo.data), volume)
    assert tomo.voxel_spacing == 10.012


def test_mrc_header_nx_is_the_x_size_of_the_zyx_array(tmp_path, volume):
    path = tmp_path / "a.mrc"
    write_mrc(path, volume, 7.0)
    with mrcfile.open(str(path)) as mrc:
        assert (int(mrc.header.nx), int(mrc.header.ny), int(mrc.header.nz)) == (5, 4, 3)
        assert tuple(float(v) for v in mrc.voxel_size.item()) == (7.0, 7.0, 7.0)


def test_mrc_read_is_memory_mapped_and_read_only(tmp_path, volume):
    path = tmp_path / "a.mrc"
    write_mrc(path, volume, 10.0)
    tomo = read_tomogram(path)
    assert isinstance(tomo.data, np.memmap)
    assert not tomo.data.flags.writeable


def test_mrc_read_without_mmap_loads_an_ordinary_array(tmp_path, volume):
    path = tmp_path / "a.mrc"
    write_mrc(path, volume, 10.0)
    tomo = read_tomogram(path, mmap=False)
    assert not isinstance(tomo.data, np.memmap)
    np.testing.assert_array_equal(tomo.data, volume)


def test_voxel_spacing_argument_overrides_the_header(tmp_path, volume):
    path = tmp_path / "a.mrc"
    write_mrc(path, volume, 10.0)
    assert read_tomogram(path, voxel_spacing=13.48).voxel_spacing == 13.48


def test_zero_voxel_spacing_in_mrc_header_is_an_error_naming_file_and_field(tmp_path, volume):
    path = tmp_path / "nospacing.mrc"
    _raw_mrc(path, volume, 0.0)
    with pytest.raises(ValueError, match="voxel_size in the MRC header") as info:
        read_tomogram(path)
    assert "nospacing.mrc" in str(info.value) and "voxel_spacing" in str(info.value)


def test_zero_voxel_spacing_is_accepted_when_the_argument_gives_one(tmp_path, volume):
    path = tmp_path / "nospacing.mrc"
    _raw_mrc(path, volume, 0.0)
    assert read_tomogram(path, voxel_spacing=5.0).voxel_spacing == 5.0


def test_anisotropic_voxel_size_is_an_error(tmp_path, volume):
    path = tmp_path / "aniso.mrc"
    _raw_mrc(path, volume, (10.0, 10.0, 12.0))
    with pytest.raises(ValueError, match="anisotropic"):
        read_tomogram(path)


@pytest.mark.filterwarnings("ignore:Data array contains:RuntimeWarning")
def test_nan_voxel_is_an_error_naming_its_position(tmp_path, volume):
    volume[2, 1, 3] = np.nan
    path = tmp_path / "nan.mrc"
    write_mrc(path, volume, 10.0)
    with pytest.raises(ValueError, match=r"non-finite.*\[2, 1, 3\]"):
        read_tomogram(path)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # mrcfile warns while writing Inf
def test_inf_voxel_is_an_error(tmp_path, volume):
    volume[0, 3, 4] = -np.inf
    path = tmp_path / "inf.mrc"
    write_mrc(path, volume, 10.0)
    with pytest.raises(ValueError, match="non-finite"):
        read_tomogram(path)


@pytest.mark.filterwarnings("ignore:Data array contains:RuntimeWarning")
def test_nan_check_finds_a_bad_voxel_past_the_first_slab(tmp_path, monkeypatch, volume):
    import cryo3d.io.tomogram as tomogram_module

    monkeypatch.setattr(tomogram_module, "_SLAB_BYTES", 1)  # one z-slice per slab
    volume[2, 0, 0] = np.nan
    path = tmp_path / "nan.mrc"
    write_mrc(path, volume, 10.0)
    with pytest.raises(ValueError, match=r"\[2, 0, 0\]"):
        read_tomogram(path)


@pytest.mark.filterwarnings("ignore:Data array contains:RuntimeWarning")
def test_nan_check_can_be_turned_off(tmp_path, volume):
    volume[1, 1, 1] = np.nan
    path = tmp_path / "nan.mrc"
    write_mrc(path, volume, 10.0)
    assert np.isnan(read_tomogram(path, check_finite=False).data[1, 1, 1])


def test_all_constant_volume_is_an_empty_tomogram_error(tmp_path):
    path = tmp_path / "flat.mrc"
    write_mrc(path, np.zeros((3, 4, 5), np.float32), 10.0)
    with pytest.raises(ValueError, match="empty"):
        read_tomogram(path)


def test_volume_with_a_zero_size_axis_is_an_empty_tomogram_error(tmp_path):
    path = tmp_path / "zero.mrc"
    _raw_mrc(path, np.zeros((0, 4, 5), np.float32), 10.0)
    with pytest.raises(ValueError, match="empty"):
        read_tomogram(path)


def test_2d_image_is_an_error(tmp_path):
    path = tmp_path / "image.mrc"
    _raw_mrc(path, np.arange(20, dtype=np.float32).reshape(4, 5), 10.0)
    with pytest.raises(ValueError, match="expected a 3D tomogram"):
        read_tomogram(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mrc"):
        read_tomogram(tmp_path / "missing.mrc")


def test_unsupported_ending_is_an_error(tmp_path):
    path = tmp_path / "tomo.tif"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="unsupported tomogram file ending '.tif'"):
        read_tomogram(path)


def test_folder_is_not_a_tomogram(tmp_path):
    folder = tmp_path / "TS_5.mrc"
    folder.mkdir()
    with pytest.raises(ValueError, match="folder"):
        read_tomogram(folder)


def test_rec_and_map_endings_are_read_as_mrc(tmp_path, volume):
    for ending in (".rec", ".map", ".MRC"):
        path = tmp_path / f"TS_1{ending}"
        write_mrc(path, volume, 10.0)
        assert read_tomogram(path).name == "TS_1"


def test_name_argument_replaces_the_file_stem(tmp_path, volume):
    path = tmp_path / "a.mrc"
    write_mrc(path, volume, 10.0)
    assert read_tomogram(path, name="run_7").name == "run_7"


def test_nonstandard_mrc_axis_map_is_permuted_to_zyx(tmp_path, volume):
    # Store the volume with columns = z, rows = y, sections = x (mapc=3, mapr=2, maps=1):
    # the file's data block is then volume transposed to [x, y, z].
    path = tmp_path / "axes.mrc"
    with mrcfile.new(str(path)) as mrc:
        mrc.set_data(np.ascontiguousarray(volume.transpose(2, 1, 0)))
        mrc.voxel_size = 10.0
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
    np.testing.assert_array_equal(np.asarray(read_tomogram(path).data), volume)


def test_write_mrc_keeps_int8_and_makes_float64_float32(tmp_path):
    ints = np.arange(60, dtype=np.int8).reshape(3, 4, 5)
    write_mrc(tmp_path / "i.mrc", ints, 10.0)
    assert read_tomogram(tmp_path / "i.mrc").data.dtype == np.int8
    write_mrc(tmp_path / "f.mrc", ints.astype(np.float64), 10.0)
    assert read_tomogram(tmp_path / "f.mrc").data.dtype == np.float32


def test_write_mrc_replaces_atomically_and_leaves_no_temporary_file(tmp_path, volume):
    path = tmp_path / "a.mrc"
    write_mrc(path, volume, 10.0)
    write_mrc(path, volume * 2, 10.0)
    assert [p.name for p in tmp_path.iterdir()] == ["a.mrc"]
    np.testing.assert_array_equal(np.asarray(read_tomogram(path).data), volume * 2)


def test_write_mrc_without_overwrite_refuses_an_existing_file(tmp_path, volume):
    path = tmp_path / "a.mrc"
    write_mrc(path, volume, 10.0)
    with pytest.raises(FileExistsError):
        write_mrc(path, volume, 10.0, overwrite=False)


def test_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, volume):
    path = tmp_path / "a.mrc"
    write_mrc(path, volume, 10.0)
    with pytest.raises(ValueError):
        write_mrc(path, volume, 0.0)
    assert [p.name for p in tmp_path.iterdir()] == ["a.mrc"]
    np.testing.assert_array_equal(np.asarray(read_tomogram(path).data), volume)


# --------------------------------------------------------------------------- NIfTI


def test_nifti_round_trip_keeps_a_marked_voxel_at_the_same_zyx_index(tmp_path):
    data = np.ones((3, 4, 5), np.float32)
    data[2, 1, 4] = 9.0
    path = tmp_path / "TS_9.nii.gz"
    write_nifti(path, data, 13.48)
    tomo = read_tomogram(path)
    assert tomo.name == "TS_9"
    assert tomo.shape == (3, 4, 5)
    assert tomo.voxel_spacing == 13.48
    assert tuple(np.argwhere(np.asarray(tomo.data) == 9.0)[0]) == (2, 1, 4)


def test_nifti_file_itself_holds_the_array_as_xyz_in_microns(tmp_path):
    data = np.ones((3, 4, 5), np.float32)
    data[2, 1, 4] = 9.0
    path = tmp_path / "a.nii"
    write_nifti(path, data, 10.0)
    img = nib.load(str(path))
    assert img.shape == (5, 4, 3)
    assert np.asarray(img.dataobj)[4, 1, 2] == 9.0
    assert img.header.get_xyzt_units()[0] == "micron"
    np.testing.assert_allclose(img.header.get_zooms()[:3], [1e-3] * 3, rtol=1e-6)


@pytest.mark.parametrize(("unit", "zoom"), [("mm", 1e-6), ("micron", 1e-3), ("meter", 1e-9)])
def test_nifti_spatial_units_are_converted_to_angstrom(tmp_path, unit, zoom):
    img = nib.Nifti1Image(np.random.default_rng(1).normal(size=(5, 4, 3)).astype(np.float32),
                          np.diag([zoom, zoom, zoom, 1.0]))
    img.header.set_xyzt_units(xyz=unit)
    path = tmp_path / "u.nii"
    nib.save(img, str(path))
    assert read_tomogram(path).voxel_spacing == pytest.approx(10.0, rel=1e-6)


def test_nifti_with_unknown_units_needs_voxel_spacing(tmp_path):
    img = nib.Nifti1Image(np.random.default_rng(1).normal(size=(5, 4, 3)).astype(np.float32), np.eye(4))
    path = tmp_path / "nounits.nii"
    nib.save(img, str(path))
    with pytest.raises(ValueError, match="nounits.nii.*voxel_spacing"):
        read_tomogram(path)
    assert read_tomogram(path, voxel_spacing=8.0).voxel_spacing == 8.0


def test_nifti_4d_with_a_singleton_time_axis_is_squeezed(tmp_path):
    xyz = np.random.default_rng(2).normal(size=(5, 4, 3, 1)).astype(np.float32)
    img = nib.Nifti1Image(xyz, np.diag([1e-3, 1e-3, 1e-3, 1.0]))
    img.header.set_xyzt_units(xyz="micron")
    path = tmp_path / "t.nii"
    nib.save(img, str(path))
    tomo = read_tomogram(path)
    np.testing.assert_array_equal(np.asarray(tomo.data), xyz[..., 0].transpose(2, 1, 0))


def test_nifti_4d_with_several_frames_is_an_error(tmp_path):
    img = nib.Nifti1Image(np.random.default_rng(2).normal(size=(5, 4, 3, 2)).astype(np.float32), np.eye(4))
    path = tmp_path / "t2.nii"
    nib.save(img, str(path))
    with pytest.raises(ValueError, match="expected a 3D tomogram"):
        read_tomogram(path, voxel_spacing=1.0)


def test_tomogram_name_strips_nii_gz_whole():
    assert tomogram_name("/data/TS_5.nii.gz") == "TS_5"
    assert tomogram_name("TS_5.mrc") == "TS_5"

"""Tomogram files: MRC (``.mrc``, ``.rec``, ``.map``) and NIfTI (``.nii``, ``.nii.gz``).

Every reader returns a :class:`Tomogram` whose ``data`` is indexed ``[z, y, x]`` and whose
``voxel_spacing`` is in Angstrom per voxel (isotropic). MRC files are memory-mapped
read-only, so a 2 GB tomogram is not read whole; NIfTI files go through nibabel (an
uncompressed ``.nii`` without intensity scaling is memory-mapped too).

Voxel spacing:

* MRC: from the header's ``voxel_size`` (``cella / mx`` etc.), overridable by the
  ``voxel_spacing`` argument. A missing (zero) spacing is an error, never 1.0.
* NIfTI: the header's zooms in its ``xyzt_units`` spatial unit (meter, mm or micron)
  converted to Angstrom. NIfTI-1 has no Angstrom unit, so :func:`write_nifti` stores
  microns. The affine's orientation and origin are not applied: array index ``[i, j, k]``
  is taken as ``[x, y, z]`` and voxel ``i`` is centred at ``i * spacing`` as everywhere
  in cryo3d.

Spacings read from a header are given at the header's own (float32) precision: the
shortest decimal that the stored float32 stands for (``13.48`` and not
``13.479999542236328``), so writing and reading back a spacing gives the same number.

Writers work atomically: they write a temporary file in the destination folder and
``os.replace`` it onto the destination, so a reader never sees half a file.
"""

from __future__ import annotations

import glob
import os
import warnings
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import mrcfile
import nibabel as nib
import numpy as np

from cryo3d.coords import check_voxel_spacing
from cryo3d.errors import Cryo3DError
from cryo3d.io.atomic import atomic_path, file_suffix

__all__ = [
    "Tomogram",
    "read_tomogram",
    "write_mrc",
    "write_nifti",
    "tomogram_name",
    "atomic_path",
    "MRC_SUFFIXES",
    "find_tomograms",
    "NIFTI_SUFFIXES",
]

#: File endings read as MRC (compared lower-case).
MRC_SUFFIXES = (".mrc", ".rec", ".map")
#: File endings read as NIfTI (compared lower-case).
NIFTI_SUFFIXES = (".nii", ".nii.gz")

#: Angstrom per NIfTI spatial unit (``xyzt_units``).
_NIFTI_UNIT_ANGSTROM = {"meter": 10**10, "mm": 10**7, "micron": 10**4}

#: Bytes of voxel data looked at per slab by the NaN/Inf/constant check.
_SLAB_BYTES = 64 * 2**20

#: dtypes written as they are; anything else is written as float32.
_MRC_KEEP_DTYPES = (np.int8, np.uint8, np.int16, np.uint16, np.float32)


@dataclass(repr=False)
class Tomogram:
    """A 3D tomogram.

    Attributes:
        name (str): Tomogram name: the file stem (``TS_5.mrc`` -> ``TS_5``) unless given.
        data (array ``[z, y, x]``): Voxel values; a read-only ``np.memmap`` for MRC files.
        voxel_spacing (float): Angstrom per voxel (isotropic).
        path (str): The file it was read from.
    """

    name: str
    data: np.ndarray
    voxel_spacing: float
    path: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(Z, Y, X)`` in voxels."""
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"Tomogram(name={self.name!r}, shape={self.shape}, dtype={self.data.dtype}, "
            f"voxel_spacing={self.voxel_spacing!r}, path={self.path!r})"
        )


# --------------------------------------------------------------------------- helpers


def tomogram_name(path: str | os.PathLike) -> str:
    """Tomogram name from a file path: the stem, with ``.nii.gz`` stripped whole.

    ``TS_5.mrc`` -> ``TS_5``; ``TS_5.nii.gz`` -> ``TS_5``; a copick OME-Zarr tomogram
    ``ExperimentRuns/TS_5/VoxelSpacing10.000/wbp.zarr`` -> ``TS_5`` (its run).
    """
    p = Path(path)
    suffix = file_suffix(p)
    if suffix == ".zarr":  # copick: ExperimentRuns/<run>/VoxelSpacing<s>/<type>.zarr is named by its run
        from cryo3d.io.omezarr import copick_run_of

        return copick_run_of(p) or p.stem
    if suffix == ".nii.gz":
        return p.name[: -len(".nii.gz")]
    return p.stem


def _header_float(value: float) -> float:
    """The shortest decimal that the float32 ``value`` stands for, as a Python float."""
    return float(str(np.float32(value)))


def _as_3d(data: np.ndarray, path: Path, leading: bool) -> np.ndarray:
    """Drop singleton axes of a 4D+ array down to 3D, or raise for anything not 3D.

    ``leading``: the extra axes are the leading ones (MRC volume stacks ``[n, z, y, x]``);
    otherwise the trailing ones (NIfTI ``[x, y, z, t, ...]``).
    """
    if data.ndim > 3:
        extra = data.shape[:-3] if leading else data.shape[3:]
        if all(n == 1 for n in extra):
            index = (0,) * len(extra)
            data = data[index] if leading else data[(Ellipsis,) + index]
    if data.ndim != 3:
        raise Cryo3DError(
            f"{path}: expected a 3D tomogram, got a {data.ndim}D array of shape "
            f"{tuple(data.shape)}"
        )
    return data


def _check_values(data: np.ndarray, path: Path, check_finite: bool, check_constant: bool) -> None:
    """Raise for NaN/Inf voxels or an all-constant volume, reading ``[z, y, x]`` in z-slabs.

    Each slab holds about ``_SLAB_BYTES`` bytes; only its min and max are kept, and NaN
    and Inf show in those (NaN propagates through min/max, +-Inf is the max/min), so
    memory stays bounded whatever the tomogram's size.
    """
    is_float = np.issubdtype(data.dtype, np.floating)
    check_finite = check_finite and is_float
    if not (check_finite or check_constant):
        return
    nz = data.shape[0]
    slab = max(1, _SLAB_BYTES // max(1, data[0].nbytes))
    lo, hi = np.inf, -np.inf
    for z0 in range(0, nz, slab):
        block = np.asarray(data[z0 : z0 + slab])
        bmin, bmax = block.min(), block.max()
        if check_finite and not (np.isfinite(bmin) and np.isfinite(bmax)):
            bad = ~np.isfinite(block)
            first = np.argwhere(bad)[0]
            count = int(bad.sum())
            z, y, x = int(first[0]) + z0, int(first[1]), int(first[2])
            raise Cryo3DError(
                f"{path}: tomogram has non-finite voxels (NaN or Inf): the first is "
                f"{float(block[tuple(first)])!r} at [z, y, x] = [{z}, {y}, {x}] "
                f"({count} in z-slices {z0}..{min(z0 + slab, nz) - 1}); "
                "expected finite values"
            )
        lo, hi = min(lo, float(bmin)), max(hi, float(bmax))
    if check_constant and lo == hi:
        raise Cryo3DError(
            f"{path}: tomogram is empty: every voxel has the value {lo!r} "
            "(expected an image with contrast)"
        )


def _resolve_spacing(
    header_spacing: tuple[float, float, float] | None,
    override: float | None,
    path: Path,
    field: str,
) -> float:
    """Spacing from the argument if given, else the isotropic header spacing (x, y, z)."""
    if override is not None:
        return check_voxel_spacing(override, where=f"{path}: voxel_spacing argument")
    hint = "pass voxel_spacing=<Angstrom per voxel> (--voxel-spacing on the command line)"
    if header_spacing is None:
        raise Cryo3DError(f"{path}: no voxel spacing in the {field}; {hint}")
    xs, ys, zs = header_spacing
    if not all(np.isfinite(v) and v > 0 for v in (xs, ys, zs)):
        raise Cryo3DError(
            f"{path}: missing voxel spacing: {field} is (x={xs}, y={ys}, z={zs}) Angstrom, "
            f"expected a positive number; {hint}"
        )
    if not np.allclose([xs, ys, zs], xs, rtol=1e-5, atol=0):
        raise Cryo3DError(
            f"{path}: anisotropic voxels: {field} is (x={xs}, y={ys}, z={zs}) Angstrom; "
            "cryo3d needs the same spacing along x, y and z (resample the tomogram, or "
            "pass voxel_spacing to override the header)"
        )
    return xs


# --------------------------------------------------------------------------- readers


def _read_mrc(path: Path, mmap: bool) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    try:
        opener = mrcfile.mmap if mmap else mrcfile.open
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with opener(str(path), mode="r") as mrc:
                data = mrc.data
                vs = mrc.voxel_size
                spacing = (
                    _header_float(vs.x),
                    _header_float(vs.y),
                    _header_float(vs.z),
                )
                order = (int(mrc.header.maps), int(mrc.header.mapr), int(mrc.header.mapc))
                dims = (int(mrc.header.nx), int(mrc.header.ny), int(mrc.header.nz), int(mrc.header.mode))
    except Exception as exc:  # mrcfile raises ValueError, and others (OverflowError, MemoryError...) on bad headers
        raise Cryo3DError(f"{path}: not a readable MRC file ({type(exc).__name__}: {exc})") from None
    for w in caught:
        text = str(w.message)
        if "larger than expected" in text:
            # the header's size or mode does not describe the data: the voxels would be garbage
            nx, ny, nz, mode = dims
            raise Cryo3DError(
                f"{path}: MRC header (nx, ny, nz) = ({nx}, {ny}, {nz}), mode {mode} does not match the "
                f"data block: {text.rstrip('.')}; expected the header's size and mode to describe the data "
                "(was the file written by a tool that forgot to update the header?)"
            )
        if "mrcfile" in str(w.filename) and "encountered in" not in text:  # mrcfile's notes, not NumPy's
            warnings.warn(f"{path}: {text}", RuntimeWarning, stacklevel=3)
    if data is None:
        raise Cryo3DError(f"{path}: MRC file has no data block")
    if data.ndim == 3 and order != (3, 2, 1):
        # Data axes are (sections, rows, columns) holding axes (maps, mapr, mapc);
        # permute (a view, no copy) so that the array reads [z, y, x].
        if sorted(order) != [1, 2, 3]:
            raise Cryo3DError(
                f"{path}: MRC header axis map (mapc, mapr, maps) = {order[::-1]} is not a "
                "permutation of (1, 2, 3)"
            )
        data = data.transpose([order.index(3), order.index(2), order.index(1)])
    return data, spacing


def _read_nifti(path: Path, mmap: bool) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    try:
        img = nib.load(str(path), mmap=mmap)
        shape = tuple(int(n) for n in img.header.get_data_shape())
        need = int(img.header.get_data_offset()) + int(np.prod(shape, dtype=np.float64)) * np.dtype(
            img.header.get_data_dtype()).itemsize
        if file_suffix(path) == ".nii" and need > path.stat().st_size:
            raise Cryo3DError(
                f"{path}: NIfTI header describes {shape} voxels of {img.header.get_data_dtype()} ({need} bytes with "
                f"the header) but the file has {path.stat().st_size} bytes; expected a header that matches the data"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow in scaling is checked below as non-finite
            data = np.asanyarray(img.dataobj)
    except Cryo3DError:
        raise
    except Exception as exc:  # nibabel (and NumPy under it) raise many types for a broken file
        raise Cryo3DError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    data = _as_3d(data, path, leading=False)
    data = data.transpose(2, 1, 0)  # nibabel [i, j, k] = [x, y, z] -> [z, y, x]
    try:
        unit = img.header.get_xyzt_units()[0]
        zooms = img.header.get_zooms()[:3]
    except Exception as exc:  # a scrambled units or pixdim field
        raise Cryo3DError(f"{path}: unreadable NIfTI header field ({type(exc).__name__}: {exc})") from None
    factor = _NIFTI_UNIT_ANGSTROM.get(unit)
    if factor is None:
        return data, None
    if len(zooms) < 3:
        raise Cryo3DError(f"{path}: NIfTI header pixdim has {len(zooms)} spatial sizes, expected 3")
    # Scale the stored decimal by a power of ten exactly (Decimal), then round once.
    spacing = tuple(float(Decimal(str(np.float32(z))) * Decimal(factor)) for z in zooms)
    return data, spacing  # type: ignore[return-value]


def read_tomogram(
    path: str | os.PathLike,
    voxel_spacing: float | None = None,
    mmap: bool = True,
    check_finite: bool = True,
    name: str | None = None,
    check_constant: bool = True,
) -> Tomogram:
    """Read a 3D tomogram from an MRC or NIfTI file.

    Args:
        path (path-like): ``.mrc``, ``.rec``, ``.map`` (MRC) or ``.nii``, ``.nii.gz`` (NIfTI) file, or a
            ``.zarr`` OME-Zarr folder (copick), opened lazily by :mod:`cryo3d.io.omezarr`.
        voxel_spacing (float, optional): Angstrom per voxel; overrides the header. Needed when the header has none
            (MRC voxel size 0, NIfTI units unknown).
        mmap (bool): Memory-map the data read-only instead of reading it whole (MRC; uncompressed
            NIfTI without intensity scaling).
        check_finite (bool): Raise if any voxel is NaN or Inf (float data; read in z-slabs of ~64 MB).
        name (str, optional): Tomogram name; by default the file stem (``TS_5.mrc`` -> ``TS_5``).
        check_constant (bool): Raise if every voxel has the same value (done in the same slab pass).

    Returns:
        Tomogram: ``data`` indexed ``[z, y, x]``; ``voxel_spacing`` in Angstrom.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Unsupported ending, a folder, not 3D (a 4D array with only singleton extra
            axes is squeezed), a zero-size axis, NaN/Inf voxels, an all-constant volume,
            a missing, zero or anisotropic voxel spacing.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: tomogram file not found")
    if p.is_dir() and p.suffix.lower() == ".zarr":  # OME-Zarr (copick), read lazily
        from cryo3d.io.omezarr import read_ome_zarr

        return read_ome_zarr(p, voxel_spacing, name, check_finite, check_constant)
    if p.is_dir():
        raise Cryo3DError(
            f"{p}: is a folder; expected a tomogram file "
            f"({', '.join(MRC_SUFFIXES + NIFTI_SUFFIXES)})"
        )
    suffix = file_suffix(p)
    if suffix in MRC_SUFFIXES:
        data, header_spacing = _read_mrc(p, mmap)
        data = _as_3d(data, p, leading=True)
        field = "voxel_size in the MRC header"
    elif suffix in NIFTI_SUFFIXES:
        data, header_spacing = _read_nifti(p, mmap)
        field = "NIfTI header (pixdim in xyzt_units; units meter, mm or micron needed)"
    else:
        raise Cryo3DError(
            f"{p}: unsupported tomogram file ending {suffix!r}; expected one of "
            f"{', '.join(MRC_SUFFIXES + NIFTI_SUFFIXES)}"
        )
    if min(data.shape) == 0:
        raise Cryo3DError(
            f"{p}: tomogram is empty: shape [z, y, x] = {tuple(data.shape)} has a zero-size axis"
        )
    spacing = _resolve_spacing(header_spacing, voxel_spacing, p, field)
    _check_values(data, p, check_finite, check_constant)
    return Tomogram(
        name=tomogram_name(p) if name is None else str(name),
        data=data,
        voxel_spacing=spacing,
        path=str(p),
    )


# --------------------------------------------------------------------------- writers


def _prepare_for_writing(data: np.ndarray, voxel_spacing: float, path: Path) -> tuple[np.ndarray, float]:
    data = np.asarray(data)
    if data.ndim != 3:
        raise Cryo3DError(
            f"{path}: expected a 3D array [z, y, x] to write, got shape {tuple(data.shape)}"
        )
    if min(data.shape) == 0:
        raise Cryo3DError(f"{path}: refusing to write an empty array of shape {tuple(data.shape)}")
    spacing = check_voxel_spacing(voxel_spacing, where=f"{path}: voxel_spacing")
    if data.dtype not in [np.dtype(t) for t in _MRC_KEEP_DTYPES]:
        data = data.astype(np.float32)
    return data, spacing


def write_mrc(
    path: str | os.PathLike,
    data: np.ndarray,
    voxel_spacing: float,
    overwrite: bool = True,
    origin: tuple[float, float, float] | None = None,
) -> None:
    """Write a ``[z, y, x]`` array as an MRC file, atomically.

    Args:
        path (path-like): Destination (``.mrc``, ``.rec`` or ``.map``).
        data (array ``[z, y, x]``): Written as float32, except int8, uint8, int16, uint16 and float32 which are
            kept. The header's ``nx`` is the x size (``data.shape[2]``).
        voxel_spacing (float): Angstrom per voxel; set as the header voxel size along x, y and z.
        overwrite (bool): If False, an existing file is an error (``FileExistsError``).
        origin ((x, y, z), optional): Header origin in Angstrom: where voxel 0 lies. A heatmap at downsampling ``f`` has
            its voxel 0 at full-resolution voxel ``(f-1)/2``, so it is written with origin
            ``(f-1)/2 * voxel_spacing`` on every axis to overlay its tomogram exactly.
    """
    p = Path(path)
    data, spacing = _prepare_for_writing(data, voxel_spacing, p)
    with atomic_path(p, overwrite=overwrite) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data))
            mrc.voxel_size = spacing
            if origin is not None:
                ox, oy, oz = (float(v) for v in origin)
                mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = ox, oy, oz


def write_nifti(
    path: str | os.PathLike,
    data: np.ndarray,
    voxel_spacing: float,
    overwrite: bool = True,
) -> None:
    """Write a ``[z, y, x]`` array as NIfTI-1 (``.nii`` or ``.nii.gz``), atomically.

    The file holds the array as nibabel indexes it, ``[x, y, z]``, with spatial units
    ``micron`` (NIfTI-1 has no Angstrom) and a diagonal affine of ``voxel_spacing * 1e-4``
    micron per voxel, so other tools see the right physical size and
    :func:`read_tomogram` gives back the same ``[z, y, x]`` array and spacing.

    Args:
        path (path-like): Destination ending in ``.nii`` or ``.nii.gz``.
        data (array ``[z, y, x]``): Written as float32, except int8, uint8, int16, uint16 and float32 which are kept.
        voxel_spacing (float): Angstrom per voxel.
        overwrite (bool): If False, an existing file is an error (``FileExistsError``).
    """
    p = Path(path)
    if file_suffix(p) not in NIFTI_SUFFIXES:
        raise Cryo3DError(f"{p}: NIfTI file names end in .nii or .nii.gz")
    data, spacing = _prepare_for_writing(data, voxel_spacing, p)
    zoom = spacing / _NIFTI_UNIT_ANGSTROM["micron"]
    affine = np.diag([zoom, zoom, zoom, 1.0])
    img = nib.Nifti1Image(data.transpose(2, 1, 0), affine)  # [z, y, x] -> [x, y, z]
    img.header.set_xyzt_units(xyz="micron")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(p, overwrite=overwrite) as tmp:
        nib.save(img, tmp)


def find_tomograms(specs: "list[str] | tuple[str, ...] | str") -> list[str]:
    """Tomogram files named by a list of files, folders and glob patterns (sorted, unique).

    A folder contributes its ``.mrc``, ``.rec``, ``.map``, ``.nii`` and ``.nii.gz`` files and
    its ``.zarr`` OME-Zarr folders; a ``.zarr`` folder named itself is one tomogram.

    Raises:
        FileNotFoundError: For a named file or folder that does not exist.
        ValueError: When nothing is found.
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [str(specs)]
    suffixes = MRC_SUFFIXES + NIFTI_SUFFIXES
    out: list[str] = []
    for s in specs:
        s = str(s)
        p = Path(s)
        if p.is_dir() and p.suffix.lower() == ".zarr":
            out.append(str(p))
        elif p.is_dir():
            out += [str(f) for f in sorted(p.iterdir()) if str(f).lower().endswith(suffixes + (".zarr",))]
        elif any(ch in s for ch in "*?["):
            out += sorted(glob.glob(s))
        elif p.exists():
            out.append(str(p))
        else:
            raise FileNotFoundError(f"tomogram {s!r} not found")
    out = list(dict.fromkeys(out))
    if not out:
        raise Cryo3DError(f"no tomograms ({', '.join('*' + x for x in suffixes + ('.zarr',))}) found in {list(specs)}")
    return out

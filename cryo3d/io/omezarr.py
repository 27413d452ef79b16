"""OME-Zarr tomograms (copick's ``VoxelSpacing<s>/<type>.zarr``), read lazily.

The :class:`~cryo3d.io.tomogram.Tomogram` returned has a ``zarr.Array`` (the full-resolution
level, dataset 0 of the first multiscale) as its ``data``: nothing is read until it is sliced
or handed to ``np.asarray``, so a project of many large tomograms is not copied to memory or
to MRC. Indexing is ``[z, y, x]`` (copick writes axes ``z, y, x``).

Voxel spacing: the ``scale`` coordinate transformation of dataset 0, in the axes' ``unit``
(``angstrom``, ``nanometer`` or ``micrometer``; copick writes Angstrom), overridable by the
``voxel_spacing`` argument. Written by hand on top of ``zarr`` because ``ome-zarr``'s reader
builds a napari-oriented node tree (dask, all levels) where one array and one number are needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import zarr

__all__ = ["read_ome_zarr", "is_ome_zarr", "copick_run_of"]

#: Angstrom per OME-NGFF space unit.
_UNIT_ANGSTROM = {"angstrom": 1.0, "nanometer": 10.0, "micrometer": 1.0e4, "millimeter": 1.0e7}


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """True for a folder whose name ends in ``.zarr`` (an OME-Zarr image)."""
    p = Path(path)
    return p.suffix.lower() == ".zarr" and p.is_dir()


def copick_run_of(path: str | os.PathLike) -> str | None:
    """Run name of ``.../ExperimentRuns/<run>/VoxelSpacing<s>/<type>.zarr``, else None."""
    p = Path(path)
    parts = p.parts
    if len(parts) >= 4 and parts[-2].startswith("VoxelSpacing") and parts[-4] == "ExperimentRuns":
        return parts[-3]
    return None


def _multiscale_spacing(ms: dict, where: str) -> tuple[str, tuple[float, ...]]:
    """Path of dataset 0 and its per-axis scale in Angstrom."""
    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets or "path" not in datasets[0]:
        raise ValueError(f"{where}: field 'multiscales[0].datasets' must list at least one dataset with a 'path'")
    ds = datasets[0]
    scale = None
    for tr in ds.get("coordinateTransformations") or []:
        if isinstance(tr, dict) and tr.get("type") == "scale":
            scale = tr.get("scale")
    axes = ms.get("axes") or []
    if scale is None:
        return str(ds["path"]), ()
    try:
        scale = [float(s) for s in scale]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field 'coordinateTransformations.scale' must hold numbers, got {scale!r}") from None
    out = []
    for i, s in enumerate(scale):
        ax = axes[i] if i < len(axes) and isinstance(axes[i], dict) else {}
        if ax.get("type", "space") != "space":
            continue
        unit = str(ax.get("unit", "angstrom")).lower()
        if unit not in _UNIT_ANGSTROM:
            raise ValueError(
                f"{where}: axis {ax.get('name', i)!r} has unit {unit!r}; expected one of {sorted(_UNIT_ANGSTROM)}"
            )
        out.append(s * _UNIT_ANGSTROM[unit])
    return str(ds["path"]), tuple(out)


def read_ome_zarr(
    path: str | os.PathLike,
    voxel_spacing: float | None = None,
    name: str | None = None,
    check_finite: bool = True,
    check_constant: bool = True,
    store: Any = None,
):
    """Open an OME-Zarr tomogram lazily.

    Args:
        path (path-like): The ``.zarr`` folder (an OME-NGFF image with ``multiscales`` metadata), or
            with ``store`` its address for messages (e.g. an ``s3://`` URL).
        store (zarr store, optional): Read from this store (e.g. copick's fsspec ``FSStore`` of a
            project on S3 or SSH) instead of the local folder ``path``.
        voxel_spacing (float, optional): Angstrom per voxel; overrides the metadata.
        name (str, optional): Tomogram name; by default the copick run name for a copick path
            (``ExperimentRuns/<run>/VoxelSpacing<s>/<type>.zarr``), else the folder stem.
        check_finite, check_constant (bool): As in :func:`cryo3d.io.tomogram.read_tomogram` (one pass over z-slabs; nothing kept).

    Returns:
        Tomogram: ``data`` is a read-only ``zarr.Array`` ``[z, y, x]``; ``voxel_spacing`` in Angstrom.
    """
    from cryo3d.io.tomogram import Tomogram, _check_values, _resolve_spacing  # here: io.tomogram imports this module (cycle)

    p = Path(path) if store is None else str(path)  # a URL stays as it is
    if store is None and not p.exists():
        raise FileNotFoundError(f"{p}: OME-Zarr tomogram not found")
    where = str(p)
    try:
        group = zarr.open_group(str(p) if store is None else store, mode="r")
    except Exception as exc:  # zarr raises several types for a folder that is no group
        raise ValueError(f"{p}: not a readable OME-Zarr group ({type(exc).__name__}: {exc})") from None
    ms = group.attrs.get("multiscales")
    if not isinstance(ms, list) or not ms or not isinstance(ms[0], dict):
        raise ValueError(f"{p}: missing field 'multiscales' in .zattrs; expected an OME-NGFF image (as copick writes)")
    level, spacing = _multiscale_spacing(ms[0], where)
    if level not in group:
        raise ValueError(f"{p}: multiscales[0].datasets[0].path is {level!r}, which the group does not hold")
    data = group[level]
    if data.ndim > 3 and all(n == 1 for n in data.shape[:-3]):
        data = _Squeezed(data, data.ndim - 3)
        spacing = spacing[-3:]
    if data.ndim != 3:
        raise ValueError(f"{p}: expected a 3D tomogram, got a {data.ndim}D array of shape {tuple(data.shape)}")
    if min(data.shape) == 0:
        raise ValueError(f"{p}: tomogram is empty: shape [z, y, x] = {tuple(data.shape)} has a zero-size axis")
    header = None
    if len(spacing) == 3:
        header = (spacing[2], spacing[1], spacing[0])  # (x, y, z) as _resolve_spacing wants
    s = _resolve_spacing(header, voxel_spacing, p, "OME-Zarr scale transformation of dataset 0")
    _check_values(data, p, check_finite, check_constant)
    if name is None:
        name = copick_run_of(p) or Path(p).stem
    return Tomogram(name=str(name), data=data, voxel_spacing=float(s), path=str(p))


class _Squeezed:
    """A zarr array with leading singleton axes (``[1, z, y, x]``) seen as ``[z, y, x]``, lazily."""

    def __init__(self, array, n_leading: int) -> None:
        self._a, self._lead = array, (0,) * n_leading
        self.shape = tuple(array.shape[n_leading:])
        self.dtype = array.dtype
        self.ndim = 3

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        return self._a[self._lead + index]

    def __array__(self, dtype=None, copy=None):
        out = np.asarray(self._a[self._lead])
        return out if dtype is None else out.astype(dtype)

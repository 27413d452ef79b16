"""One tomogram of a copick project, read through copick's storage, with its voxel spacing decided.

copick keeps tomograms as OME-Zarr under ``VoxelSpacing<s>/<type>.zarr`` on any fsspec file
system (local, S3, SSH). A local one is opened as its folder (so it is named by its path, as
files are); any other through copick's own file system. The spacing has two sources that may
differ: the OME-Zarr ``scale`` and the folder's name. The challenge's data, for one, holds
10.012444 A tomograms under ``VoxelSpacing10.000``: a difference up to
:data:`SPACING_ROUNDING` is the name's rounding (a warning; the scale is used), a larger one
is an error unless the user names which source is right (``trust_spacing``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cryo3d.io.omezarr import read_ome_zarr

__all__ = ["SPACING_ROUNDING", "SPACING_SOURCES", "local_zarr_path", "read_copick_tomogram", "decide_spacing"]

log = logging.getLogger(__name__)

#: Largest relative difference between a copick folder's spacing and the OME-Zarr scale that is taken
#: as rounding of the folder name (warned about; the OME-Zarr scale is used).
SPACING_ROUNDING = 0.02

#: Which spacing ``trust_spacing`` may name: the OME-Zarr ``scale`` or the copick ``VoxelSpacing`` folder.
SPACING_SOURCES = ("zarr", "copick")


def local_zarr_path(tomo: Any) -> str | None:
    """The local folder of a copick tomogram, or None when it lives elsewhere (S3, SSH, ...)."""
    store = tomo.zarr()
    path = getattr(store, "path", None)
    protocol = getattr(getattr(store, "fs", None), "protocol", ("file",))
    protocol = protocol if isinstance(protocol, (tuple, list)) else (protocol,)
    return None if path is None or not ({"file", "local"} & set(protocol)) else str(path)


def read_copick_tomogram(tomo: Any, name: str, check_values: bool = True, trust_spacing: str | None = None):
    """A copick tomogram as a lazily opened :class:`~cryo3d.io.tomogram.Tomogram` named ``name``.

    Args:
        tomo (copick tomogram): From ``run.get_voxel_spacing(s).get_tomograms(type)``.
        check_values (bool): Refuse NaN/Inf or constant volumes (one pass over the data).
        trust_spacing (str, optional): ``zarr`` or ``copick``: which spacing to use whatever the difference.

    Raises:
        ValueError: The spacings differ by more than rounding and ``trust_spacing`` is not given.
    """
    if trust_spacing is not None and trust_spacing not in SPACING_SOURCES:
        raise ValueError(f"trust_spacing is {trust_spacing!r}; expected one of {list(SPACING_SOURCES)}")
    where = local_zarr_path(tomo)
    store = None
    if where is None:  # copick's own storage, through its file system
        import zarr  # with copick

        theirs = tomo.zarr()
        store = zarr.storage.FSStore(theirs.path, fs=theirs.fs, mode="r")  # chunk keys as each .zarray says
        where = theirs.fs.unstrip_protocol(theirs.path)
    t = read_ome_zarr(where, name=name, check_finite=check_values, check_constant=check_values, store=store)
    t.voxel_spacing = decide_spacing(where, t.voxel_spacing, trust_spacing)
    return t


def decide_spacing(path: str, zarr_spacing: float, trust: str | None = None) -> float:
    """The voxel spacing of the tomogram at ``.../VoxelSpacing<s>/<type>.zarr`` whose scale is ``zarr_spacing``."""
    folder = str(path).rstrip("/").split("/")[-2].removeprefix("VoxelSpacing")
    try:
        copick_spacing = float(folder)
    except ValueError:
        return zarr_spacing
    if trust == "copick":
        return copick_spacing
    if trust == "zarr" or np.isclose(copick_spacing, zarr_spacing, rtol=1e-6):
        return zarr_spacing
    rel = abs(zarr_spacing - copick_spacing) / copick_spacing
    if rel <= SPACING_ROUNDING:
        log.warning("%s: OME-Zarr scale %g Angstrom per voxel, copick folder VoxelSpacing%s (%.2g%% apart: "
                    "rounding of the folder name); using the OME-Zarr scale (--trust-spacing copick for the other)",
                    path, zarr_spacing, folder, 100 * rel)
        return zarr_spacing
    raise ValueError(
        f"{path}: OME-Zarr scale says {zarr_spacing:g} Angstrom per voxel, its copick folder VoxelSpacing{folder} "
        f"says {copick_spacing:g} ({100 * rel:.1f}% apart, more than rounding); choose which is right with "
        "--trust-spacing zarr|copick"
    )

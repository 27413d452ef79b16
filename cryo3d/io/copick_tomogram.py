"""One tomogram of a copick project, read through copick's storage, with its voxel spacing decided.

copick keeps tomograms as OME-Zarr under ``VoxelSpacing<s>/<type>.zarr`` on any fsspec file
system (local, S3, SSH). A local one is opened as its folder (so it is named by its path, as
files are); any other through copick's own file system. The spacing has two sources that may
differ: the OME-Zarr ``scale`` and the folder's name. The challenge's data, for one, holds
10.012444 A tomograms under ``VoxelSpacing10.000``: a difference up to
:data:`SPACING_ROUNDING` is the name's rounding (a warning; the scale is used), a larger one
is an error unless the user names which source is right (``trust_spacing``).

:class:`CopickTomogramSource` is such a tomogram as ``cryo3d predict`` takes it: opened (metadata
only) when the command starts, so a spacing error comes before any inference, with the file
system and path its fingerprint is taken from (:func:`cryo3d.results.tomogram_fingerprint`), and
its values read and checked when its turn comes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from cryo3d.io.omezarr import read_ome_zarr
from cryo3d.io.tomogram import Tomogram, _check_values, tomogram_name

__all__ = ["SPACING_ROUNDING", "SPACING_SOURCES", "local_zarr_path", "read_copick_tomogram", "decide_spacing",
           "CopickTomogramSource", "copick_tomogram_source", "input_name"]

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


def read_copick_tomogram(tomo: Any, name: str, check_values: bool = True, trust_spacing: str | None = None,
                         voxel_spacing: float | None = None) -> Tomogram:
    """A copick tomogram as a lazily opened :class:`~cryo3d.io.tomogram.Tomogram` named ``name``.

    Args:
        tomo (copick tomogram): From ``run.get_voxel_spacing(s).get_tomograms(type)``.
        check_values (bool): Refuse NaN/Inf or constant volumes (one pass over the data).
        trust_spacing (str, optional): ``zarr`` or ``copick``: which spacing to use whatever the difference.
        voxel_spacing (float, optional): Angstrom per voxel, overriding both sources (``--voxel-spacing``).

    Raises:
        ValueError: The spacings differ by more than rounding and neither ``trust_spacing`` nor
            ``voxel_spacing`` is given.
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
    t = read_ome_zarr(where, voxel_spacing, name=name, check_finite=check_values, check_constant=check_values,
                      store=store)
    if voxel_spacing is None:
        t.voxel_spacing = decide_spacing(where, t.voxel_spacing, trust_spacing)
    return t


@dataclass(frozen=True)
class CopickTomogramSource:
    """A copick project's tomogram as ``cryo3d predict`` takes it, wherever the project lives.

    Attributes:
        tomogram (Tomogram): Opened lazily (metadata only, spacing decided); values not checked yet.
        fs: The fsspec file system that holds it (copick's own: local, S3, SSH, ...).
        fs_path (str): Its ``.zarr`` folder on ``fs``.
        local (str, optional): The same folder on the local file system, or None when it lives elsewhere.
    """

    tomogram: Tomogram
    fs: Any
    fs_path: str
    local: str | None

    @property
    def name(self) -> str:
        """The tomogram's name (its copick run)."""
        return self.tomogram.name

    def __str__(self) -> str:
        """Its local folder or its URL (``s3://...``): what records and messages name."""
        return self.tomogram.path

    def read(self) -> Tomogram:
        """The tomogram with its values checked (no NaN/Inf, not constant; one pass over z-slabs).

        Raises:
            Cryo3DError: Non-finite or constant values, naming the tomogram's folder or URL.
        """
        _check_values(self.tomogram.data, self.tomogram.path, True, True)
        return self.tomogram


def copick_tomogram_source(tomo: Any, name: str, trust_spacing: str | None = None,
                           voxel_spacing: float | None = None) -> CopickTomogramSource:
    """The :class:`CopickTomogramSource` of a copick tomogram (as :func:`read_copick_tomogram`, values unchecked)."""
    t = read_copick_tomogram(tomo, name, check_values=False, trust_spacing=trust_spacing, voxel_spacing=voxel_spacing)
    store = tomo.zarr()
    return CopickTomogramSource(t, store.fs, str(store.path), local_zarr_path(tomo))


def input_name(item: str | os.PathLike | CopickTomogramSource | Tomogram) -> str:
    """The name of a tomogram given to ``predict``: a source's or tomogram's own, a file's stem
    (:func:`cryo3d.io.tomogram.tomogram_name`)."""
    return item.name if isinstance(item, (CopickTomogramSource, Tomogram)) else tomogram_name(item)


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

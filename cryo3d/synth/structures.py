"""The user's own structures for the simulator: density maps and atomic models as particle templates.

``cryo3d synth --structures DIR`` renders one particle class per file of ``DIR`` (the class
name is the file stem):

* **density maps** (``.mrc``, ``.map``): the voxel size comes from the header;
* **atomic models** (``.pdb``, ``.ent``, ``.cif``, ``.mmcif``, read with ``gemmi``; hydrogens
  and waters are ignored): the density is computed from the atoms at the tomogram's
  spacing, each atom a Gaussian of its element's mass.

The particle set (names, radii) is derived from the structures by :data:`RADIUS_RULE`.
A structure's centre is its centre of mass, so a particle's pick is where its mass is.

A :class:`Template` is a structure's density at one spacing, ready to be rotated and
resampled into a scene (:meth:`cryo3d.synth.scene.Scene.render_template`); it is scaled
so that its mass-weighted mean density is ``PROTEIN_DENSITY`` (the units of the
simulator's geometric shapes, so SNR settings mean the same).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cryo3d.errors import Cryo3DError
from cryo3d.particles import ParticleClass, ParticleSet

#: How a structure's radius is derived (recorded in the manifest).
RADIUS_RULE = ("radius = sqrt(5/3) x the radius of gyration of the structure's mass (atoms weighted by "
               "their element's mass; map voxels by their positive density) about its centre of mass: "
               "the radius of a uniform sphere with the same radius of gyration")
#: The ``structures`` setting that renders the built-in pseudo-atomic proteins instead of a folder's.
PSEUDO_ATOMIC = "pseudo-atomic"
MAP_SUFFIXES = (".mrc", ".map")
MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
#: Density of protein in the simulator's units (the geometric shapes' inside density).
PROTEIN_DENSITY = 1.0
#: Templates are sampled at this fraction of the scene spacing, blurred by a Gaussian of
#: ``BLUR`` x the scene spacing (anti-aliasing at the scene's sampling).
OVERSAMPLE = 2
BLUR = 0.4
#: Fraction of the mass a template keeps (its support is cut at this radius).
MASS_KEPT = 0.999


@dataclass(frozen=True)
class Structure:
    """A structure read from a file: atoms (``xyz`` Angstrom, ``mass``) or a density map.

    Attributes:
        name: class name (the file stem).
        path: the file.
        radius: Angstrom, by :data:`RADIUS_RULE`.
        xyz, mass: atom positions ``[N, 3]`` (``z, y, x`` Angstrom, centre of mass at 0) and masses, or None.
        density, spacing, com: the map ``[z, y, x]``, its voxel size per axis (Angstrom) and
            centre of mass (voxels), or None.
    """

    name: str
    path: str
    radius: float
    xyz: np.ndarray | None = None
    mass: np.ndarray | None = None
    density: np.ndarray | None = None
    spacing: np.ndarray | None = None
    com: np.ndarray | None = None


@dataclass(frozen=True)
class Template:
    """A structure's density sampled at ``spacing`` Angstrom, centre of mass at voxel ``com``.

    Attributes:
        vol: density ``[z, y, x]`` (float32, mass-weighted mean ``PROTEIN_DENSITY``).
        spacing: Angstrom per template voxel.
        com: centre of mass of ``vol`` (voxels).
        radius: the structure's radius (Angstrom).
        reach: distance (Angstrom) from ``com`` within which all of ``vol``'s density lies.
    """

    vol: np.ndarray
    spacing: float
    com: np.ndarray
    radius: float
    reach: float


def _fail(path: str | os.PathLike, msg: str) -> Cryo3DError:
    return Cryo3DError(f"{path}: {msg}")


def gyration_radius(points: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
    """``(radius by RADIUS_RULE, centre of mass)`` of weighted points ``[N, 3]``."""
    w = weights / weights.sum()
    com = w @ points
    rg2 = float(w @ np.sum((points - com) ** 2, axis=1))
    return math.sqrt(5.0 / 3.0 * rg2), com


def read_map(path: str | os.PathLike) -> Structure:
    """A density map (MRC), its voxel size from the header.

    Raises:
        Cryo3DError: unreadable file, a voxel size that is not positive, or no positive density.
    """
    import mrcfile

    try:
        with mrcfile.open(path, permissive=True) as m:
            if m.data is None:
                raise ValueError("no data")
            data = np.asarray(m.data, np.float32)
            vs = m.voxel_size
            spacing = np.array([float(vs.z), float(vs.y), float(vs.x)])
    except Exception as e:  # noqa: BLE001 - any reader failure is the file's fault
        raise _fail(path, f"cannot read as an MRC density map ({e})") from None
    if data.ndim != 3:
        raise _fail(path, f"a density map must be 3-D, got shape {data.shape}")
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise _fail(path, f"header voxel size must be > 0 Angstrom, got (z, y, x) {spacing.tolist()}")
    data = np.nan_to_num(data)
    w = np.clip(data, 0.0, None)
    if not w.any():
        raise _fail(path, "the map has no positive density")
    if float(-data[data < 0].sum()) > float(w.sum()):
        warnings.warn(f"{path}: more negative than positive density; is its contrast inverted? Protein must be "
                      "positive (only the positive density is used)", stacklevel=2)
    idx = np.argwhere(w > 0)
    radius, com = gyration_radius(idx * spacing, w[w > 0].astype(np.float64))
    return Structure(Path(path).stem, str(path), radius, density=w, spacing=spacing, com=com / spacing)


def read_model(path: str | os.PathLike) -> Structure:
    """An atomic model (PDB or mmCIF) through gemmi, without hydrogens and waters (first model only).

    Raises:
        Cryo3DError: unreadable file or no atoms left.
    """
    import gemmi

    try:
        st = gemmi.read_structure(str(path))
        st.remove_hydrogens()
        st.remove_waters()
    except Exception as e:  # noqa: BLE001
        raise _fail(path, f"cannot read as an atomic model (PDB/mmCIF) ({e})") from None
    xyz, mass = [], []
    if len(st) > 0:
        for ch in st[0]:
            for res in ch:
                for at in res:
                    p = at.pos
                    xyz.append((p.z, p.y, p.x))
                    mass.append(at.element.weight * at.occ if at.occ > 0 else at.element.weight)
    if not xyz:
        raise _fail(path, "the model has no atoms (after removing hydrogens and waters)")
    xyz_a, mass_a = np.asarray(xyz, float), np.asarray(mass, float)
    radius, com = gyration_radius(xyz_a, mass_a)
    return Structure(Path(path).stem, str(path), radius, xyz=xyz_a - com, mass=mass_a)


def read_structure(path: str | os.PathLike) -> Structure:
    """A map or a model, by the file's suffix (see :data:`MAP_SUFFIXES`, :data:`MODEL_SUFFIXES`)."""
    suffix = Path(path).suffix.lower()
    if suffix in MAP_SUFFIXES:
        return read_map(path)
    if suffix in MODEL_SUFFIXES or str(path).lower().endswith((".cif.gz", ".pdb.gz")):
        return read_model(path)
    raise _fail(path, f"unknown structure type; expected a map {MAP_SUFFIXES} or a model {MODEL_SUFFIXES}")


def structure_files(directory: str | os.PathLike) -> list[Path]:
    """The structure files of a folder, sorted by name.

    Raises:
        Cryo3DError: not a folder, no structure file, or two files with the same stem.
    """
    d = Path(directory)
    if not d.is_dir():
        raise Cryo3DError(f"--structures {d}: not a folder")
    ok = MAP_SUFFIXES + MODEL_SUFFIXES
    files = sorted(p for p in d.iterdir() if p.is_file() and (p.suffix.lower() in ok or p.name.lower().endswith(
        (".cif.gz", ".pdb.gz"))))
    if not files:
        raise Cryo3DError(f"--structures {d}: no density map {MAP_SUFFIXES} or atomic model {MODEL_SUFFIXES} in it")
    stems = [class_name(p) for p in files]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise Cryo3DError(f"--structures {d}: several files give the class name(s) {dup}; one file per class")
    return files


def class_name(p: Path) -> str:
    """The class name of a structure file: its stem (without ``.gz``)."""
    name = p.name[:-3] if p.name.lower().endswith(".gz") else p.name
    return Path(name).stem


_LOADED: dict[tuple, list[Structure]] = {}


def load_structures(directory: str | os.PathLike) -> list[Structure]:
    """Every structure of a folder (one class per file, named by its stem), sorted by name.

    Read once per process while the files stay the same (name, size, modification time)."""
    files = structure_files(directory)
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if key not in _LOADED:
        _LOADED[key] = _load(files)
    return _LOADED[key]


def _load(files: list[Path]) -> list[Structure]:
    out = []
    for p in files:
        s = read_structure(p)
        out.append(Structure(class_name(p), *[getattr(s, k) for k in ("path", "radius", "xyz", "mass", "density",
                                                                   "spacing", "com")]))
    return out


def structure_particles(structures: list[Structure]) -> ParticleSet:
    """The particle set of the structures: their names and radii (:data:`RADIUS_RULE`), weight 1."""
    return ParticleSet(tuple(ParticleClass(s.name, round(float(s.radius), 2), 1.0, "sphere") for s in structures))


def atoms_to_map(xyz: np.ndarray, mass: np.ndarray, spacing: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Mass density of atoms ``[N, 3]`` (Angstrom): each atom's mass in its nearest voxel, then a
    Gaussian of ``sigma`` Angstrom (wider than the rounding, which it hides).

    Returns:
        ``(density [z, y, x], origin [3])``: voxel ``i`` is at ``origin + spacing * i`` Angstrom.
    """
    pad = 4.0 * sigma + 2 * spacing
    origin = xyz.min(0) - pad
    shape = tuple(int(n) for n in np.ceil((xyz.max(0) + pad - origin) / spacing).astype(int) + 1)
    idx = np.ravel_multi_index(np.rint((xyz - origin) / spacing).astype(np.int64).T, shape)
    vol = np.bincount(idx, weights=mass, minlength=int(np.prod(shape))).reshape(shape)
    vol = ndimage.gaussian_filter(vol, sigma / spacing, mode="constant")
    return vol.astype(np.float32), origin


def _finish(vol: np.ndarray, spacing: float, radius: float) -> Template:
    """Cut to the support holding ``MASS_KEPT`` of the mass, scale to ``PROTEIN_DENSITY``, find the centre."""
    flat = np.clip(vol, 0.0, None).reshape(-1).astype(np.float64)
    keep = np.flatnonzero(flat > 1e-6 * flat.max())  # the Gaussian tails' far end adds nothing
    idx = np.stack(np.unravel_index(keep, vol.shape), 1).astype(np.float64)
    w = flat[keep]
    com = (w @ idx) / w.sum()
    d = np.linalg.norm(idx - com, axis=1)
    order = np.argsort(d)
    cum = np.cumsum(w[order])
    reach_vox = float(d[order][min(np.searchsorted(cum, MASS_KEPT * cum[-1]), len(d) - 1)]) + 1.0
    w = np.where(d <= reach_vox, w, 0.0)
    w *= PROTEIN_DENSITY * w.sum() / float(np.sum(w * w))  # mass-weighted mean density = PROTEIN_DENSITY
    com = (w @ idx) / w.sum()
    out = np.zeros(flat.size, np.float32)
    out[keep] = w
    return Template(out.reshape(vol.shape), float(spacing), com, float(radius), reach_vox * spacing)


def make_template(structure: Structure, scene_spacing: float) -> Template:
    """The structure's density for a scene of ``scene_spacing`` Angstrom per voxel.

    Atoms are splatted on a grid ``OVERSAMPLE`` times finer than the scene and blurred by a
    Gaussian of ``BLUR`` x the scene spacing; a map is blurred by as much (less the blur its
    own sampling implies) and resampled onto that grid about its centre of mass.
    """
    ts = float(scene_spacing) / OVERSAMPLE
    sigma = BLUR * float(scene_spacing)
    if structure.xyz is not None:
        vol, _ = atoms_to_map(structure.xyz, structure.mass, ts, sigma)
        return _finish(vol, ts, structure.radius)
    dens, sp, com = structure.density, structure.spacing, structure.com
    f = np.maximum(np.floor(ts / sp).astype(int), 1)
    if np.any(f > 1):  # a fine map: average blocks of f voxels first (cheap; the blur below hides the blocks)
        dens = _block_mean(dens, f)
        sp, com = sp * f, (com - (f - 1) / 2.0) / f
    own = BLUR * sp
    blur = np.sqrt(np.maximum(sigma**2 - own**2, 0.0)) / sp
    if np.any(blur > 0):
        dens = ndimage.gaussian_filter(dens, blur, mode="constant")
    ext = np.maximum(com, np.asarray(dens.shape) - 1 - com) * sp  # from the centre of mass to the box's far side
    half = np.ceil(ext / ts).astype(int) + 2
    axes = [np.arange(-h, h + 1) * ts for h in half]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), 0)
    coords = com[:, None, None, None] + grid / sp[:, None, None, None]
    vol = ndimage.map_coordinates(dens, coords, order=1, mode="constant", cval=0.0)
    return _finish(vol, ts, structure.radius)


def _block_mean(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Mean over blocks of ``f`` (per axis) voxels; the array is cut to whole blocks."""
    n = np.asarray(a.shape) // f
    a = a[: n[0] * f[0], : n[1] * f[1], : n[2] * f[2]]
    return a.reshape(n[0], f[0], n[1], f[1], n[2], f[2]).mean(axis=(1, 3, 5))


class TemplateCache:
    """Templates made once per (key, scene spacing); ``make()`` builds a missing one."""

    def __init__(self) -> None:
        self._d: dict[tuple[str, float], Template] = {}

    def get(self, key: str, spacing: float, make) -> Template:
        k = (key, round(float(spacing), 6))
        if k not in self._d:
            self._d[k] = make()
        return self._d[k]

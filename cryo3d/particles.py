"""Particle classes: names, radii (Angstrom), metric weights, and the built-in CZII set.

A :class:`ParticleSet` is the one place that maps class names to integer ids; every
reader, writer, the simulator and the metric go through it, so an unknown class name is
an error wherever it appears.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib.resources import files
from numbers import Real
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import yaml

from cryo3d.coords import angstrom_sigma_from_radius
from cryo3d.errors import Cryo3DError

#: Default Gaussian sigma as a fraction of the particle radius.
DEFAULT_SIGMA_FRACTION = 1.0 / 3.0

_CLASS_FIELDS = ("name", "radius", "weight", "shape")


def _number(v: object) -> float | None:
    """``v`` as a float when it is a real number (not a bool, not a string), else None."""
    if isinstance(v, bool) or not isinstance(v, Real):
        return None
    return float(v)


def check_particle_fields(d: object, source: str = "particle set") -> None:
    """Check a particle set's fields as read (a file, a manifest, a checkpoint) before any use.

    A radius of 0, a negative or a NaN one would score, train and simulate silently wrong
    (an F-beta of 0, a mirrored sigma, "data must be finite" deep in training).

    Args:
        d (mapping): ``{"classes": [{name, radius, weight, shape}, ...], "sigma_fraction": ...}``.
        source (str): Names the set (its file) in the message.

    Raises:
        Cryo3DError: One line naming ``source``, the class and the field: ``classes`` not a non-empty
            list of mappings, a class field missing or unknown, ``name`` not a non-empty string,
            ``radius`` not a finite number > 0 (Angstrom), ``weight`` not a finite number >= 0,
            ``shape`` not a string, or ``sigma_fraction`` not a finite number > 0.
    """
    if not isinstance(d, dict) or not isinstance(d.get("classes"), list) or not d["classes"]:
        raise Cryo3DError(f"{source}: expected a mapping with a non-empty 'classes' list of "
                          "{name, radius, weight, shape}")
    for i, c in enumerate(d["classes"]):
        where = f"{source}: classes[{i}]"
        if not isinstance(c, dict):
            raise Cryo3DError(f"{where}: expected a mapping {{name, radius, weight, shape}}, got {c!r}")
        unknown = [k for k in c if k not in _CLASS_FIELDS]
        if unknown:
            raise Cryo3DError(f"{where}: unknown field(s) {unknown}; a class has {list(_CLASS_FIELDS)}")
        for key in ("name", "radius"):
            if key not in c:
                raise Cryo3DError(f"{where} lacks the field {key!r}")
        name = c["name"]
        if not isinstance(name, str) or not name.strip():
            raise Cryo3DError(f"{where}: field 'name' must be a non-empty string, got {name!r}")
        where = f"{where} ({name!r})"
        r = _number(c["radius"])
        if r is None or not math.isfinite(r) or r <= 0:
            raise Cryo3DError(f"{where}: field 'radius' must be a finite number > 0 (Angstrom), got {c['radius']!r}")
        if "weight" in c:
            w = _number(c["weight"])
            if w is None or not math.isfinite(w) or w < 0:
                raise Cryo3DError(f"{where}: field 'weight' must be a finite number >= 0, got {c['weight']!r}")
        if "shape" in c and not isinstance(c["shape"], str):
            raise Cryo3DError(f"{where}: field 'shape' must be a string, got {c['shape']!r}")
    if "sigma_fraction" in d:
        f = _number(d["sigma_fraction"])
        if f is None or not math.isfinite(f) or f <= 0:
            raise Cryo3DError(f"{source}: field 'sigma_fraction' must be a finite number > 0 (sigma / radius), "
                              f"got {d['sigma_fraction']!r}")


@dataclass(frozen=True)
class ParticleClass:
    """One kind of particle.

    Args:
        name (str): Class name as written in picks files (copick ``pickable_object_name``).
        radius (float): Particle radius in Angstrom (sets the matching distance and NMS distance).
        weight (float): Weight of the class in the aggregated F-beta score.
        shape (str): Shape used by the built-in simulator: one of :mod:`cryo3d.synth.shapes` (``sphere``,
            ``shell``, ``thick_shell``, ``two_lobes``, ``two_lobes_large``, ``four_lobes``,
            ``ring``, ``dumbbell``, ``cylinder``) or a family of :mod:`cryo3d.synth.families`
            (e.g. ``capsomer_shell``, ``rod``); whether it is hollow also sets which shape
            variants the randomised ``default`` preset draws for the class.
    """

    name: str
    radius: float
    weight: float = 1.0
    shape: str = "sphere"


@dataclass(frozen=True)
class ParticleSet:
    """An ordered list of particle classes; class id = position in the list."""

    classes: tuple[ParticleClass, ...]
    sigma_fraction: float = DEFAULT_SIGMA_FRACTION
    _index: dict = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        check_particle_fields(self.to_dict())
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"particle class names must be unique, got {names}")
        if not names:
            raise ValueError("a particle set needs at least one class")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def radii(self) -> np.ndarray:
        """Radii in Angstrom, ``[C]``."""
        return np.array([c.radius for c in self.classes], dtype=np.float64)

    @property
    def weights(self) -> np.ndarray:
        return np.array([c.weight for c in self.classes], dtype=np.float64)

    @property
    def angstrom_sigmas(self) -> np.ndarray:
        """Per-class Gaussian sigma in Angstrom, ``[C]``."""
        return angstrom_sigma_from_radius(self.radii, self.sigma_fraction)

    def index(self, name: str, where: str = "class") -> int:
        """Class id of ``name``; ``ValueError`` naming ``where`` for an unknown class."""
        try:
            return self._index[name]
        except KeyError:
            raise ValueError(
                f"{where}: unknown particle class {name!r}; known classes are {self.names}"
            ) from None

    def indices(self, names: Iterable[str], where: str = "class") -> np.ndarray:
        return np.array([self.index(n, where) for n in names], dtype=np.int64)

    def subset(self, names: Sequence[str]) -> "ParticleSet":
        return ParticleSet(tuple(self.classes[self.index(n)] for n in names), self.sigma_fraction)

    def to_dict(self) -> dict:
        return {
            "sigma_fraction": self.sigma_fraction,
            "classes": [
                {"name": c.name, "radius": c.radius, "weight": c.weight, "shape": c.shape}
                for c in self.classes
            ],
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "particle set") -> "ParticleSet":
        """The set written by :meth:`to_dict` (a particles file, a manifest, a checkpoint's metadata).

        Raises:
            Cryo3DError: A field out of range (see :func:`check_particle_fields`), naming ``source``.
        """
        check_particle_fields(d, source)
        return cls(
            tuple(ParticleClass(**c) for c in d["classes"]),
            float(d.get("sigma_fraction", DEFAULT_SIGMA_FRACTION)),
        )


#: Name, radius (Angstrom) and challenge weight of the six scored classes of the CZII CryoET
#: Object Identification challenge (beta-amylase has weight 0).
_CZII_CLASSES = (
    ("apo-ferritin", 60.0, 1.0),
    ("beta-amylase", 65.0, 0.0),
    ("beta-galactosidase", 90.0, 2.0),
    ("ribosome", 150.0, 1.0),
    ("thyroglobulin", 130.0, 2.0),
    ("virus-like-particle", 135.0, 1.0),
)


def _czii_with_shapes(*shapes: str) -> ParticleSet:
    """The CZII classes, each with its simulator shape (one per class, in class order)."""
    return ParticleSet(tuple(ParticleClass(n, r, w, s) for (n, r, w), s in zip(_CZII_CLASSES, shapes, strict=True)))


#: The CZII classes with the simulator's training shapes.
CZII_PARTICLES = _czii_with_shapes("shell", "two_lobes", "four_lobes", "two_lobes_large", "ring", "thick_shell")


#: The CZII classes (names, radii, weights) with held-out shapes: the ``ood`` simulator preset's set.
#: A thin capsomer-shelled virus-like particle, a subunit cage, rod-like thyroglobulin and
#: other lobe arrangements than the training shapes (see :mod:`cryo3d.synth.families`).
CZII_OOD_PARTICLES = _czii_with_shapes(
    "subunit_cage", "tetrahedral", "stacked_discs", "three_lobes", "rod", "capsomer_shell")

#: Built-in particle sets by name (``crowded12`` and ``tilt`` are package data, read on demand).
BUILTIN_PARTICLE_SETS = ("czii", "czii-ood", "crowded12", "tilt")
#: The built-in particle sets shipped as files in ``cryo3d/data``.
_PARTICLE_FILES = {"crowded12": "crowded12_particles.yaml", "tilt": "tilt_particles.yaml"}


def builtin_particle_file(name: str) -> str:
    """Path of a built-in particle-set file shipped in the package (``crowded12``, ``tilt``)."""
    if name not in _PARTICLE_FILES:
        raise ValueError(f"no built-in particle file {name!r}; the shipped files are {sorted(_PARTICLE_FILES)}")
    return str(files("cryo3d.data") / _PARTICLE_FILES[name])


def builtin_particles(name: str) -> ParticleSet:
    """A built-in particle set: ``czii`` (the challenge's 6 classes), ``czii-ood`` (the same
    classes with held-out shapes), ``crowded12`` (12 protein-like classes, radii 30-150 A) or
    ``tilt`` (7 classes, radii 40-120 A, of the tilt-series benchmark)."""
    if name == "czii":
        return CZII_PARTICLES
    if name == "czii-ood":
        return CZII_OOD_PARTICLES
    if name in _PARTICLE_FILES:
        return load_particles(builtin_particle_file(name))
    raise ValueError(f"unknown built-in particle set {name!r}; choose one of {list(BUILTIN_PARTICLE_SETS)}")


def load_particles(path: str | None) -> ParticleSet:
    """A particle set from a YAML/JSON file, a built-in set by name (:data:`BUILTIN_PARTICLE_SETS`,
    e.g. ``czii``), or the CZII set when ``path`` is None.

    The file holds ``classes: [{name, radius, weight, shape}, ...]`` (radius in Angstrom)
    and optionally ``sigma_fraction``.

    Raises:
        Cryo3DError: A field missing or out of range, naming the file, the class and the field
            (:func:`check_particle_fields`).
    """
    if path is None:
        return CZII_PARTICLES
    if str(path).strip() in BUILTIN_PARTICLE_SETS:
        return builtin_particles(str(path).strip())
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such particles file; expected a YAML/JSON file or a built-in set "
                                f"{list(BUILTIN_PARTICLE_SETS)}")
    with open(path) as fh:
        d = yaml.safe_load(fh)
    return ParticleSet.from_dict(d, source=str(path))


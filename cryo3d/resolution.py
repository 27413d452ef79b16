"""The training geometry chosen from the particle set: working voxel spacing, patch, stride, batch.

A fixed working spacing fails one data set or another: at 20 A a 30 A-radius particle is
1.5 voxels across its radius and cannot be told from its neighbours, while a set of large
particles trained at 10 A spends 8x the compute for nothing. So the working spacing
follows the smallest particle, the patch follows the largest, and the batch follows the
patch so that one iteration costs about the same on any data set (the time budget then
buys a predictable number of iterations):

* ``spacing = max(native, min_radius / MIN_VOXELS_PER_RADIUS, max_radius / MAX_VOXELS_PER_RADIUS)``:
  the smallest particle keeps :data:`MIN_VOXELS_PER_RADIUS` voxels across its radius where
  the largest still fits the CPU network's view (at most :data:`MAX_VOXELS_PER_RADIUS`
  voxels of radius); where the two conflict, the largest wins; never finer than the
  tomograms themselves (no upsampling). Measured on the crowded 12-class benchmark
  (radii 30-150 A, 15-minute budget, one core): training at 10 A with 40^3 patches scored
  0.58 (the large hollow classes were not learned: a 138 A capsid is 28 voxels across,
  wider than the tiny U-Net sees); with this rule (18.75 A, 32^3 patches) 0.84, every
  class >= 0.72.
* ``patch = max(base_patch, diameter_max * PATCH_CONTEXT)`` voxels, rounded up to a
  multiple of the network's spatial divisor and capped at :data:`MAX_AUTO_PATCH`.
* ``stride = patch / 2`` (every voxel in two patches per axis).
* ``batch = round(base_batch * (base_patch / patch)^3)``, at least 1: voxels per batch
  stay those of the base configuration.

All lengths in Angstrom go through :func:`cryo3d.coords.length_to_voxels`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cryo3d import coords
from cryo3d.bundle_keys import NULL_WORDS, parse_positive_key
from cryo3d.particles import ParticleSet

logger = logging.getLogger("cryo3d")

#: The smallest particle keeps at least this many voxels across its radius ...
MIN_VOXELS_PER_RADIUS = 3.0
#: ... unless that puts the largest particle above this many voxels of radius (the CPU
#: default network's view; the largest particle wins a conflict).
MAX_VOXELS_PER_RADIUS = 8.0
#: The patch spans at least this many diameters of the largest particle.
PATCH_CONTEXT = 1.25
#: Largest patch side chosen automatically (voxels): bigger patches are a user's choice.
MAX_AUTO_PATCH = 64
#: Patch side and batch size of the CPU default, which the automatic choice scales from.
BASE_PATCH = 32
BASE_BATCH = 8


@dataclass(frozen=True)
class TrainingGeometry:
    """What :func:`choose_geometry` chose, and why (``reason`` is logged and kept in the run)."""

    voxel_spacing: float
    patch_size: int
    stride: int
    batch_size: int
    reason: str

    def to_dict(self) -> dict:
        return {"voxel_spacing": self.voxel_spacing, "patch_size": self.patch_size, "stride": self.stride,
                "batch_size": self.batch_size, "reason": self.reason}


def _is_auto(v: Any) -> bool:
    return isinstance(v, str) and v.strip().lower() == "auto"


def parse_spacing_key(value: Any, field: str = "voxel_spacing") -> float | str | None:
    """A bundle's spacing key as given on MONAI's command line: a number, ``"auto"`` or native.

    MONAI's CLI passes ``--voxel_spacing null`` as the string ``'null'``; ``null``, ``none``
    and ``native`` (any case) mean the tomograms' own spacing and give ``None``.
    """
    return parse_positive_key(value, field, "Angstrom per voxel", null_words=NULL_WORDS + ("native",))


def parse_size_key(value: Any, field: str) -> int | str | None:
    """An integer bundle key that may also be ``"auto"`` (or null meaning auto)."""
    if value is None or _is_auto(value) or (isinstance(value, str) and value.strip().lower() in ("null", "none")):
        return "auto"
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: expected a positive integer or 'auto', got {value!r}") from None
    if v <= 0:
        raise ValueError(f"{field}: expected a positive integer or 'auto', got {value!r}")
    return v


def _round_up(n: float, m: int) -> int:
    return int(math.ceil(n / m) * m)


def choose_geometry(
    particles: ParticleSet,
    native_spacing: float,
    voxel_spacing: Any = "auto",
    patch_size: Any = "auto",
    stride: Any = "auto",
    batch_size: Any = "auto",
    divisor: int = 4,
    ds_factor: int = 1,
) -> TrainingGeometry:
    """The working spacing, patch, stride and batch for a particle set (see the module docstring).

    Args:
        particles: the classes to learn (radii in Angstrom).
        native_spacing: the tomograms' voxel spacing (Angstrom); with several, the coarsest.
        voxel_spacing: Angstrom per voxel to train at, ``"auto"``, or ``None`` (native).
        patch_size, stride, batch_size: numbers, or ``"auto"``.
        divisor: the network's spatial divisor (patch sides are multiples of it and of ``ds_factor``).
        ds_factor: the network's output stride.

    Returns:
        A :class:`TrainingGeometry` whose ``reason`` says what was chosen and why.
    """
    native = float(coords.check_voxel_spacing(native_spacing, "tomograms"))
    sp = parse_spacing_key(voxel_spacing)
    radii = np.asarray(particles.radii, float)
    rmin, rmax = float(radii.min()), float(radii.max())
    why = []
    if sp == "auto":
        wanted = rmin / MIN_VOXELS_PER_RADIUS
        floor = rmax / MAX_VOXELS_PER_RADIUS
        spacing = max(native, wanted, floor)
        if spacing == native and native >= max(wanted, floor):
            why.append(f"spacing {spacing:g} A: the tomograms' own (smallest radius {rmin:g} A / "
                       f"{MIN_VOXELS_PER_RADIUS:g} voxels is finer, so native)")
        elif floor > wanted:
            why.append(f"spacing {spacing:g} A: largest particle radius {rmax:g} A / {MAX_VOXELS_PER_RADIUS:g} voxels "
                       f"(the smallest, {rmin:g} A, gets {coords.length_to_voxels(rmin, spacing):.1f} voxels of radius)")
        else:
            why.append(f"spacing {spacing:g} A: smallest particle radius {rmin:g} A / {MIN_VOXELS_PER_RADIUS:g} voxels")
    elif sp is None:
        spacing = native
        why.append(f"spacing {spacing:g} A: the tomograms' own (voxel_spacing null)")
    else:
        spacing = float(sp)
        why.append(f"spacing {spacing:g} A: given")
    r_vox = float(coords.length_to_voxels(rmin, spacing))
    if r_vox < 2.0:
        logger.warning("the smallest particle (radius %g A) is only %.1f voxels across its radius at %g A; for it, "
                       "train at a finer voxel_spacing with a larger patch_size and network (the largest particle, "
                       "%g A, must still fit the network's view)", rmin, r_vox, spacing, rmax)
    mult = int(np.lcm(int(divisor), int(ds_factor)))
    p = parse_size_key(patch_size, "patch_size")
    if p == "auto":
        diameter = 2.0 * float(coords.length_to_voxels(rmax, spacing))
        need = _round_up(max(BASE_PATCH, PATCH_CONTEXT * diameter), mult)
        patch = max(min(need, _round_up(MAX_AUTO_PATCH, mult)), mult)
        why.append(f"patch {patch}: {PATCH_CONTEXT:g} x the largest diameter ({diameter:.1f} voxels), at least "
                   f"{BASE_PATCH}" + (f", capped at {MAX_AUTO_PATCH}" if need > patch else ""))
    else:
        patch = int(p)
        if patch % mult:
            raise ValueError(f"patch_size {patch} must be a multiple of {mult} (the network's spatial divisor "
                             f"{divisor} and ds_factor {ds_factor})")
        why.append(f"patch {patch}: given")
    s = parse_size_key(stride, "stride")
    stride_v = max(patch // 2, 1) if s == "auto" else int(s)
    b = parse_size_key(batch_size, "batch_size")
    if b == "auto":
        batch = max(1, int(round(BASE_BATCH * (BASE_PATCH / patch) ** 3)))
        why.append(f"batch {batch}: {BASE_BATCH} x ({BASE_PATCH}/{patch})^3 keeps the voxels per step")
    else:
        batch = int(b)
    return TrainingGeometry(voxel_spacing=float(spacing), patch_size=int(patch), stride=int(stride_v),
                            batch_size=int(batch), reason="; ".join(why))

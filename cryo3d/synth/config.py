"""Settings of the simulator (:class:`SynthConfig`) and its named presets.

Every setting may be a number or a ``(low, high)`` range drawn per tomogram (probabilities
are numbers in ``[0, 1]``). ``SynthConfig()`` is the ``default`` preset: the randomised
one that the training bundle simulates. See :mod:`cryo3d.synth` for what each preset is for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np

from cryo3d.particles import BUILTIN_PARTICLE_SETS, ParticleSet, builtin_particles

Range = float | Sequence[float]

#: The project's first simulator (fixed class shapes, one voxel size, no crowders, no
#: carbon, dark particles, white noise, phase-flipped CTF): ``clean`` and ``hard`` keep it,
#: so their figures stay comparable with the ones reported before randomisation.
_LEGACY: dict[str, Any] = dict(
    voxel_spacing=10.0, snr=(0.4, 2.0), log_snr=False, tilt_range=(45.0, 65.0), defocus_um=(2.0, 5.0),
    bfactor=(50.0, 300.0), vesicles=(0, 2), sheets=(0, 1), gold=(0, 6), carbon=0.0, crowders=0,
    variants="fixed", size_jitter=0.0, texture=0.0, invert_prob=0.0, z_blur=0.0, noise_colour=0.0,
    ctf_signed_prob=0.0, gradient=0.0, tilt_prob=0.0, structures=None,
)

#: Held-out presets: 128 x 256 x 256 at a fixed, non-round 10.012 A, shapes never seen by ``default``.
_HELD_OUT_IMAGING: dict[str, Any] = dict(
    shape=(128, 256, 256), voxel_spacing=10.012, log_snr=False, tilt_range=(50.0, 60.0),
    defocus_um=(2.0, 4.0), bfactor=(80.0, 250.0), variants="fixed", size_jitter=0.05, texture=0.15,
    invert_prob=0.0, z_blur=(0.0, 8.0), noise_colour=0.0, ctf_signed_prob=0.0, gradient=0.0, carbon=0.0,
    tilt_prob=0.0, structures=None,
)

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # the README's first run (the bundle's synth_preset): default's imaging and distractors, but each
    # class is one molecule, the same in every tomogram, as in a user's data
    "demo": dict(variants="fixed"),
    "clean": dict(_LEGACY, snr=8.0, tilt_range=60.0, defocus_um=3.0, bfactor=100.0,
                  vesicles=0, sheets=0, gold=0),
    "hard": dict(_LEGACY, snr=(0.2, 0.5), tilt_range=(40.0, 50.0), particles_per_class=(20, 30),
                 vesicles=(1, 3), sheets=(0, 2), gold=(4, 10)),
    "ood": dict(_HELD_OUT_IMAGING, particle_set="czii-ood", snr=(0.2, 0.5), particles_per_class=(10, 18),
                vesicles=(1, 2), sheets=(0, 1), gold=(2, 6), crowders=(80, 160), crowder_radius=(20.0, 150.0)),
    "crowded12": dict(_HELD_OUT_IMAGING, particle_set="crowded12", structures="pseudo-atomic", snr=(0.3, 1.0),
                      particles_per_class=(30, 38), vesicles=(0, 1), sheets=(0, 1), gold=(0, 3), crowders=(20, 60),
                      crowder_radius=(15.0, 150.0)),
    # held out, imaged like real data: a tilt series reconstructed by weighted back-projection
    "tilt": dict(_HELD_OUT_IMAGING, particle_set="tilt", tilt_prob=1.0, tilt_range=(50.0, 63.0), tilt_step=3.0,
                 defocus_um=(2.0, 5.0), misalignment_px=(0.5, 1.5), rotation_deg=0.0, sirt_prob=0.0, z_blur=0.0,
                 ctf_signed_prob=0.5, snr=(0.3, 1.0), particles_per_class=(22, 40), vesicles=(1, 2), sheets=(0, 1),
                 gold=(2, 6), crowders=(600, 1200), crowder_radius=(15.0, 130.0), crowder_exclusion=0.1),
}


@dataclass
class SynthConfig:
    """Settings of the simulator. A ``(low, high)`` pair is drawn uniformly per tomogram.

    The defaults are the randomised ``default`` preset.

    Attributes:
        shape ((Z, Y, X)): Tomogram size in voxels.
        voxel_spacing (float or (low, high)): Angstrom per voxel.
        particles_per_class (int or (low, high)): Number of particles of each class (fewer if the volume is full).
        snr (float or (low, high)): Signal variance / noise variance over the whole volume of the final
            tomogram (after filtering, or after reconstruction for a tilt series).
        log_snr (bool): Draw the SNR log-uniformly (as many low as high SNR tomograms), else uniformly.
        tilt_range (float or (low, high)): Maximum tilt (degrees) about the y axis; the rest of Fourier space is missing.
        defocus_um (float or (low, high)): Defocus in micrometres of the CTF (0 disables the CTF).
        bfactor (float or (low, high)): Envelope B-factor in Angstrom^2.
        vesicles, sheets, gold (int or (low, high)): Number of vesicle membranes, flat membrane sheets and gold beads.
        carbon (float): Probability of a carbon-film edge (a dense slab ending in a boundary) in a tomogram.
        crowders (int or (low, high)): Number of unlabelled proteins (never picked) placed in the gaps.
        crowder_radius ((low, high)): Their radii in Angstrom (log-uniform), except within ``crowder_exclusion`` (a
            fraction) of a labelled class's radius, so that no crowder is a look-alike of a class.
        variants (``"random"`` or ``"fixed"``): ``random``: each particle draws a shape variant of its class's kind (hollow or
            filled, see :mod:`cryo3d.synth.families`); ``fixed``: each class keeps its own shape.
        size_jitter (float): Per-particle radius scale drawn from ``1 +/- size_jitter``.
        density_jitter (float): Per-particle density scale drawn from ``1 +/- density_jitter``.
        texture (float): Largest amplitude of the smooth density variation inside a particle (0: uniform).
        invert_prob (float): Probability that a tomogram has bright particles on a dark background.
        z_blur (float or (low, high)): Extra Gaussian blur along z (sigma, Angstrom): anisotropic resolution.
        noise_colour (float or (low, high)): Exponent ``a`` of the noise power ``(1 + (k / 0.02 A^-1)^2)^(-a/2)``; 0 is white.
        ctf_signed_prob (float): Probability that the CTF is not phase-flipped (its sign reversals kept).
        gradient (float or (low, high)): A linear background ramp across the volume, in units of the image's standard deviation.
        particle_set (str): Built-in particle set the preset renders (``czii``, ``czii-ood``, ``crowded12``, ``tilt``)
            when no other set is given.
        structures (str or None): What particles and crowders are made of. ``None``: geometric shape
            families only; ``"pseudo-atomic"``: protein-like pseudo-atomic models
            (:mod:`cryo3d.synth.pseudo_atomic`) for most randomised class variants and crowders, and
            for each class with ``variants="fixed"`` (its own model, envelope of its shape); a folder:
            the user's density maps and atomic models (:mod:`cryo3d.synth.structures`), one class per
            file, the particle set derived from them.
        preset (str or None): The preset these settings came from (None: built by hand); recorded in the manifest.
        seed (int): Base seed; tomogram ``i`` uses ``default_rng([seed, i])`` (the tilt series'
            settings and noise ``default_rng([seed, i, 1])``, so the Fourier model's tomograms do not
            change with them).
        tilt_prob (float): Probability that a tomogram is imaged through a tilt series
            (:mod:`cryo3d.synth.tilt_imaging`: projections, per-projection CTF, dose, shifts and noise,
            reconstruction); else the
            Fourier model (:func:`cryo3d.synth.imaging.image`: a wedge mask, one CTF). The tilt
            series reuses ``tilt_range``, ``defocus_um``, ``bfactor`` and ``ctf_signed_prob``
            (probability of projections that are not phase-flipped); ``z_blur`` and
            ``noise_colour`` belong to the Fourier model only.
        tilt_step (float or (low, high)): Tilt increment (degrees).
        dose_symmetric_prob (float): Probability of a dose-symmetric acquisition order (else bidirectional).
        total_dose (float or (low, high)): Exposure of the whole series (e/A^2), equal per tilt.
        astigmatism_um (float or (low, high)): Major minus minor defocus (um), at a random angle.
        defocus_jitter_um (float): Standard deviation of each projection's defocus about the tomogram's.
        defocus_spread (float or (low, high)): Temporal-coherence defocus spread (Angstrom).
        misalignment_px (float or (low, high)): RMS residual in-plane shift of each projection (pixels).
        rotation_deg (float or (low, high)): Standard deviation of each projection's residual in-plane
            rotation (degrees).
        ice_thickness (float or (low, high)): Specimen thickness over the inelastic mean free path
            (fewer electrons, more noise at high tilt).
        sirt_prob (float): Probability of a SIRT reconstruction (else weighted back-projection).
        sirt_iterations (int): SIRT's iterations.
        exact_weighting_prob (float): Probability of exact weighting (else the ramp) in WBP.
        wbp_windows (tuple of str): Apodisations of the WBP filter, one drawn per tomogram
            (``ram-lak``, ``cosine``, ``hamming``).
    """

    shape: tuple[int, int, int] = (184, 256, 256)
    voxel_spacing: Range = (8.0, 14.0)
    particles_per_class: Range = (8, 16)
    snr: Range = (0.15, 2.0)
    log_snr: bool = True
    tilt_range: Range = (40.0, 70.0)
    defocus_um: Range = (1.5, 6.0)
    bfactor: Range = (50.0, 400.0)
    vesicles: Range = (0, 3)
    sheets: Range = (0, 2)
    gold: Range = (0, 8)
    carbon: float = 0.3
    crowders: Range = (20, 160)
    crowder_radius: Sequence[float] = (20.0, 150.0)
    crowder_exclusion: float = 0.15
    variants: str = "random"
    size_jitter: float = 0.1
    density_jitter: float = 0.15
    texture: float = 0.3
    invert_prob: float = 0.15
    z_blur: Range = (0.0, 20.0)
    noise_colour: Range = (0.0, 1.5)
    ctf_signed_prob: float = 0.4
    gradient: Range = (0.0, 0.3)
    tilt_prob: float = 0.8
    tilt_step: Range = (2.0, 4.0)
    dose_symmetric_prob: float = 0.7
    total_dose: Range = (60.0, 140.0)
    astigmatism_um: Range = (0.0, 0.6)
    defocus_jitter_um: float = 0.1
    defocus_spread: Range = (50.0, 600.0)
    misalignment_px: Range = (0.5, 1.5)
    rotation_deg: Range = (0.0, 0.5)
    ice_thickness: Range = (0.2, 0.6)
    sirt_prob: float = 0.15
    sirt_iterations: int = 10
    exact_weighting_prob: float = 0.3
    wbp_windows: Sequence[str] = ("ram-lak", "cosine", "hamming")
    particle_set: str = "czii"
    structures: str | None = "pseudo-atomic"
    preset: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.structures, str) and self.structures.strip().lower() in ("", "none", "null"):
            self.structures = None
        elif self.structures is not None:
            self.structures = str(self.structures)
        if self.variants not in ("random", "fixed"):
            raise ValueError(f"synth variants must be 'random' or 'fixed', got {self.variants!r}")
        if self.particle_set not in BUILTIN_PARTICLE_SETS:
            raise ValueError(f"synth particle_set must be one of {list(BUILTIN_PARTICLE_SETS)}, "
                             f"got {self.particle_set!r}")
        for key in ("carbon", "invert_prob", "ctf_signed_prob", "tilt_prob", "dose_symmetric_prob", "sirt_prob",
                    "exact_weighting_prob"):
            v = getattr(self, key)
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"synth {key} is a probability in [0, 1], got {v!r}")
        for key in ("size_jitter", "density_jitter", "texture"):
            v = getattr(self, key)
            if not 0.0 <= float(v) < 1.0:
                raise ValueError(f"synth {key} is a fraction in [0, 1), got {v!r}")
        bad = sorted(set(self.wbp_windows) - {"ram-lak", "cosine", "hamming"})
        if bad or not self.wbp_windows:
            raise ValueError(f"synth wbp_windows must be among 'ram-lak', 'cosine', 'hamming', "
                             f"got {self.wbp_windows!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "SynthConfig":
        """Settings of a named preset (see :mod:`cryo3d.synth`), with ``overrides`` (None is ignored)."""
        if name not in PRESETS:
            raise ValueError(f"unknown synth preset {name!r}; choose one of {sorted(PRESETS)}")
        known = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"unknown synth setting(s) {bad}; known settings are {sorted(known)}")
        d = dict(PRESETS[name], preset=name)
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**d)

    def particles(self) -> ParticleSet:
        """The particle set this configuration renders by default: derived from a ``structures``
        folder (:func:`cryo3d.synth.structures.structure_particles`), else its ``particle_set``."""
        if self.structures not in (None, "pseudo-atomic"):
            from cryo3d.synth.structures import load_structures, structure_particles

            return structure_particles(load_structures(self.structures))
        return builtin_particles(self.particle_set)


def draw(rng: np.random.Generator, v: Range, integer: bool = False, log: bool = False) -> float:
    """A number, or a uniform (log-uniform with ``log``) draw from a ``(low, high)`` range."""
    if isinstance(v, (int, float, np.number)):
        return int(v) if integer else float(v)
    lo, hi = v
    if integer:
        return int(rng.integers(int(lo), int(hi) + 1))
    if log and lo > 0 and hi > 0:
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return float(rng.uniform(lo, hi))

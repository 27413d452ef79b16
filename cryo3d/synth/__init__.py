"""The built-in tomogram simulator: the default data, so every command works offline.

A tomogram is built in three steps:

1. **Scene** (:mod:`cryo3d.synth.scene`): particles of several classes, random
   orientations, non-overlapping placement, each particle with its own size, density and
   inner texture and a shape drawn from its class's families
   (:mod:`cryo3d.synth.families`); distractors that are never picked: unlabelled proteins
   of many sizes (crowders), vesicle membranes, flat membrane sheets, gold beads and a
   carbon-film edge.
2. **Imaging**, per tomogram one of two models:

   * **tilt series** (:mod:`cryo3d.synth.tilt_imaging` over :mod:`cryo3d.synth.tilt_series`,
     the ``default`` preset's in 80 % of tomograms): the scene projected at each tilt (+/-40-70 degrees, 2-4 degree steps,
     dose-symmetric or bidirectional order), each projection with its own CTF (defocus
     varying across the tilted specimen, astigmatism, coherence envelopes, phase-flipped or not), the exposure filter of its
     accumulated dose (total 60-140 e/A^2), a residual in-plane shift (0.5-1.5 px RMS) and
     shot noise; reconstructed by weighted back-projection (ramp or exact weighting,
     apodised) or SIRT. Streaks, ray artefacts at gold, ramp-filtered noise and missing-wedge
     elongation come from that chain, as in real reconstructions.
   * **Fourier model** (:mod:`cryo3d.synth.imaging`): in Fourier space, a missing wedge, a
     CTF (phase-flipped or not), a B-factor envelope, extra blur along z (anisotropic
     resolution) and wedge-filtered coloured Gaussian noise.

   Both scale the noise to the tomogram's SNR (signal variance / noise variance of the
   final volume).
3. **Contrast**: particles dark on a lighter background (sometimes inverted), a background
   ramp, a random intensity scale and offset so that readers must normalise.

Every setting may be a number or a ``(low, high)`` range drawn per tomogram; deterministic
for a seed: tomogram ``i`` uses ``numpy.random.default_rng([seed, i])``.

Presets (:meth:`SynthConfig.preset`, ``cryo3d synth --preset NAME``)
--------------------------------------------------------------------

``default`` (``SynthConfig()``)
    What the training bundle simulates: **domain randomisation**, so that a model learns
    "a hollow or filled blob of this size with this texture" and not our exact shapes.
    The 6 CZII classes; per particle (three in four) one of the tomogram's pseudo-atomic
    protein models of the class's size (:mod:`cryo3d.synth.pseudo_atomic`: compact 3.8 A
    C-alpha chains with Gaussian pseudo-atoms filling a filled or, for hollow classes, a
    hollow envelope, or symmetric homo-oligomers C2-C7, D2, T), else a shape variant of the class's kind (for hollow
    classes thin or thick shells with or without a core, bumpy, ellipsoidal or randomly
    knobbed shells; for the others ellipsoids, random-blob unions, harmonic-perturbed
    spheres, elongated bodies, symmetric lobes; both also the class's own shape), radius +/-10 %, density
    +/-15 % and a smooth inner texture; 20-160 crowders of 20-150 A radius (none within
    15 % of a class's radius; three in four pseudo-atomic proteins), 0-3 vesicles, 0-2 sheets, 0-8 gold beads, a carbon edge in
    30 % of tomograms; per tomogram voxel spacing 8-14 A, SNR 0.15-2 (log-uniform), tilt
    40-70 degrees, defocus 1.5-6 um, B 50-400, z blur 0-20 A, noise colour 0-1.5, a
    signed CTF in 40 % and bright particles in 15 % of tomograms; 80 % of tomograms imaged
    through a tilt series (its settings drawn per tomogram: see :class:`SynthConfig`), the
    rest through the Fourier model.
``demo``
    What ``cryo3d train`` simulates when it is given no data (the bundle's ``synth_preset``):
    ``default``'s imaging, voxel spacings, contrast and distractors, but every particle of a
    class is the class's own pseudo-atomic protein (``variants="fixed"``), the same structure
    in every tomogram and every seed, as each class of a user's data is one molecule. Under
    ``default`` a class is only "a hollow or filled protein of this size" (its models change
    per tomogram), so classes of close radii (ribosome 150 A, virus-like particle 135 A,
    thyroglobulin 130 A) cannot be told apart there: fine for pretraining, which learns
    size and kind, but a first run on it measured the label noise, not the picker.
``clean``, ``hard``
    The project's first simulator (Fourier-model imaging, as ``ood`` and ``crowded12``) (fixed class shapes, 10 A voxels, no crowders or
    carbon): ``clean`` at high SNR without distractors, for debugging; ``hard`` at SNR
    0.2-0.5, tilt 40-50 degrees, 20-30 particles per class and many distractors, the
    long-standing hard benchmark (kept unchanged so figures stay comparable).
``ood``
    Held out, for ``scripts/bench_ood.py``: the 6 CZII classes (names, radii, weights)
    rendered with shapes ``default`` never draws (a thin capsomer-shelled virus-like
    particle, a subunit cage for apo-ferritin, rod-like thyroglobulin, tetrahedral
    beta-amylase, stacked-disc beta-galactosidase, a three-lobed ribosome:
    :data:`cryo3d.particles.CZII_OOD_PARTICLES`), 128 x 256 x 256 voxels at a fixed,
    non-round 10.012 A, SNR 0.2-0.5, 80-160 crowders, membranes, gold.
``crowded12``
    Held out: 12 protein-like classes of radius 30-150 A (their own particle set, shipped
    as ``cryo3d/data/crowded12_particles.yaml``), about 400 labelled particles per
    128 x 256 x 256 tomogram at 10.012 A, SNR 0.3-1.0; each class one pseudo-atomic protein
    (the same in every tomogram) whose chains fill its held-out family's shape.

The user's own structures (``cryo3d synth --structures DIR``, the ``structures`` setting)
-----------------------------------------------------------------------------------------

Density maps and atomic models, one class per file (:mod:`cryo3d.synth.structures`): the
particle set is derived from them (radius = sqrt(5/3) x the radius of gyration of the
mass, :data:`cryo3d.synth.structures.RADIUS_RULE`), each particle is the structure's
density rotated and resampled at the scene's spacing, its pick at the centre of mass.

``tilt``
    Held out, imaged like real data: 7 classes of radius 40-120 A with held-out shapes
    (``cryo3d/data/tilt_particles.yaml``), 22-40 particles per class, 600-1,200 unlabelled
    proteins, vesicles, sheets and gold, 128 x 256 x 256 at 10.012 A; a tilt series of
    +/-50-63 degrees in 3 degree steps, defocus 2-5 um, misalignment 0.5-1.5 px, weighted
    back-projection, SNR 0.3-1.0.

The ``ood``, ``crowded12`` and ``tilt`` shape families (:data:`cryo3d.synth.families.HELD_OUT`) are
kept out of ``default`` on purpose: they measure whether a model transfers to shapes it was
not trained on, as a user's tomograms will be.
"""

from cryo3d.synth.config import PRESETS, SynthConfig
from cryo3d.synth.tomogram import simulate_tomogram
from cryo3d.synth.writer import synthesize

__all__ = ["PRESETS", "SynthConfig", "simulate_tomogram", "synthesize"]

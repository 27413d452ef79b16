"""One simulated tomogram: draw the settings, build the scene, image it, set the contrast."""

from __future__ import annotations

import zlib
from collections import Counter

import numpy as np

from cryo3d.coords import voxel_to_angstrom, voxels_to_length
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks
from cryo3d.synth.shapes import random_rotations
from cryo3d.synth import families as fam
from cryo3d.synth.config import SynthConfig, draw
from cryo3d.synth.imaging import image
from cryo3d.synth.tilt_imaging import TiltImaging, image_tilt_series
from cryo3d.synth.scene import GOLD_DENSITY, PROTEIN_DENSITY, Scene
from cryo3d.synth.structures import PSEUDO_ATOMIC, TemplateCache, Template, load_structures, make_template

#: With pseudo-atomic proteins (``structures: pseudo-atomic``), the share of randomised class
#: variants and of crowders drawn as pseudo-atomic proteins (the rest: geometric families).
PROTEIN_SHARE = 0.75
#: Pseudo-atomic variants per class and per crowder size bin in one tomogram (shared by particles).
CLASS_VARIANTS = 2
CROWDER_BINS = 3
CROWDER_VARIANTS = 2


class _Proteins:
    """The tomogram's protein templates (pseudo-atomic models or the user's structures), made on first use.

    Keys: ``tpl:<class>`` (the user's structure, or the class's own pseudo-atomic model, the
    same in every tomogram), ``tpl:<class>/<k>`` (a randomised pseudo-atomic variant of this
    tomogram) and ``tpl:crowder/<bin>/<k>`` (an unlabelled protein of a size bin).
    """

    def __init__(self, config: SynthConfig, particles: ParticleSet, index: int, spacing: float) -> None:
        self.mode = config.structures
        self.user = {} if self.mode in (None, PSEUDO_ATOMIC) else {s.name: s for s in load_structures(self.mode)}
        self.classes = {c.name: c for c in particles.classes}
        self.seed, self.index, self.spacing = int(config.seed), int(index), float(spacing)
        lo, hi = np.log(config.crowder_radius[0]), np.log(config.crowder_radius[1])
        self.bins = np.exp(lo + (np.arange(CROWDER_BINS) + 0.5) * (hi - lo) / CROWDER_BINS)
        self.cache = TemplateCache()

    @property
    def on(self) -> bool:
        return self.mode is not None

    def get(self, key: str) -> Template:
        return self.cache.get(key, self.spacing, lambda: self._make(key[4:]))

    def _make(self, key: str) -> Template:
        from cryo3d.synth import pseudo_atomic as pa
        from cryo3d.synth.structures import Structure

        parts = key.split("/")
        tag = zlib.crc32(key.encode())
        if parts[0] == "crowder":
            radius = float(self.bins[int(parts[1])])
            rng = np.random.default_rng([self.seed, self.index, tag])
            xyz, mass = _random_protein(pa, rng, radius, hollow=False)
        elif len(parts) == 1 and parts[0] in self.user:
            return make_template(self.user[parts[0]], self.spacing)
        elif len(parts) == 1:  # the class's own protein: the same structure in every tomogram of the set
            pc = self.classes[parts[0]]
            rng = np.random.default_rng([tag])
            xyz, mass = pa.protein(pc.radius, rng, family=fam.resolve(pc.shape).name)
        else:
            pc = self.classes[parts[0]]
            rng = np.random.default_rng([self.seed, self.index, tag])
            xyz, mass = _random_protein(pa, rng, pc.radius, hollow=fam.resolve(pc.shape).hollow)
        radius = radius if parts[0] == "crowder" else pc.radius  # pa.protein's models have the radius asked for
        return make_template(Structure(key, "(pseudo-atomic)", radius, xyz=xyz, mass=mass), self.spacing)

    def crowder_keys(self, rng: np.random.Generator, radii: np.ndarray) -> np.ndarray:
        """A template key per crowder radius (Angstrom): its size bin and a random variant."""
        b = np.argmin(np.abs(np.log(radii[:, None] / self.bins[None])), axis=1)
        k = rng.integers(0, CROWDER_VARIANTS, size=len(radii))
        return np.array([f"tpl:crowder/{bi}/{ki}" for bi, ki in zip(b, k)], dtype=object)


def _random_protein(pa, rng: np.random.Generator, radius: float, hollow: bool) -> tuple[np.ndarray, np.ndarray]:
    """A randomised pseudo-atomic protein: a hollow envelope for hollow classes; else a filled one or,
    half of the time, a symmetric homo-oligomer."""
    if not hollow and rng.random() < 0.5:
        return pa.protein(radius, rng, symmetry=str(rng.choice(pa.SYMMETRIES)))
    return pa.protein(radius, rng, hollow=hollow)


def _texture(rng: np.random.Generator, n: int, amp: float, k: int = 3) -> dict[str, np.ndarray] | None:
    """Per-particle plane waves for density variation inside particles (None when ``amp`` is 0)."""
    if amp <= 0:
        return None
    w = rng.normal(size=(n, k, 3))
    w *= rng.uniform(5.0, 14.0, size=(n, k, 1)) / np.linalg.norm(w, axis=-1, keepdims=True)
    return {"tw": w, "tphase": rng.uniform(0, 2 * np.pi, size=(n, k)), "tamp": rng.uniform(0, amp, size=n)}


def _render_group(scene: Scene, rng: np.random.Generator, names: np.ndarray, centres: np.ndarray,
                  radii: np.ndarray, density_jitter: float, texture: float,
                  density_scale: float = PROTEIN_DENSITY, proteins: _Proteins | None = None) -> None:
    """Render particles whose family is ``names[i]``: rotations, densities, parameters, texture.

    A name ``tpl:...`` is a protein template of ``proteins``, scaled to the particle's radius."""
    n = len(centres)
    rots = random_rotations(rng, n)
    dens = density_scale * rng.uniform(1 - density_jitter, 1 + density_jitter, size=n)
    tex = _texture(rng, n, texture)
    for name in sorted(set(names.tolist())):
        sel = names == name
        if name.startswith("tpl:"):
            tpl = proteins.get(name)
            scales = radii[sel] / scene.vox(tpl.radius)
            scene.render_template(tpl, centres[sel], rots[sel], scales, dens[sel])
            continue
        family = fam.resolve(name)
        params = family.draw(rng, int(sel.sum()))
        sub_tex = None if tex is None else {k: v[sel] for k, v in tex.items()}
        scene.render(family, centres[sel], rots[sel], radii[sel], params, dens[sel], sub_tex)


def _crowder_radii(rng: np.random.Generator, n: int, band: tuple[float, float], labelled: np.ndarray,
                   exclusion: float) -> np.ndarray:
    """``n`` radii (Angstrom), log-uniform in ``band`` outside ``+/- exclusion`` of any labelled radius."""
    lo, hi = np.log(band[0]), np.log(band[1])
    grid = np.exp(np.linspace(lo, hi, 2048))
    ok = np.all(np.abs(grid[:, None] / labelled[None] - 1.0) > exclusion, axis=1)
    if n <= 0 or not ok.any():
        return np.zeros(0)
    return rng.choice(grid[ok], size=n) * np.exp(rng.uniform(-0.5, 0.5, n) * (hi - lo) / 2047)


def _image(scene: Scene, rng: np.random.Generator, config: SynthConfig, index: int, params: dict) -> np.ndarray:
    """Image the scene through a tilt series (probability ``tilt_prob``) or the Fourier model.

    The choice and the tilt series' settings and noise come from their own stream
    ``default_rng([seed, index, 1])``, so the Fourier model's tomograms are those of before.
    """
    irng = np.random.default_rng([int(config.seed), int(index), 1])
    if not irng.random() < config.tilt_prob:
        params["imaging"] = "fourier"
        return image(scene.vol, rng, scene.spacing, params["snr"], scene.not_reference, tilt_deg=params["tilt_range"],
                     defocus_um=params["defocus_um"], bfactor=params["bfactor"], z_blur=params["z_blur"],
                     noise_colour=params["noise_colour"], ctf_signed=params["ctf_signed"])
    windows = list(config.wbp_windows)
    tilt = TiltImaging(
        max_tilt=params["tilt_range"], step=draw(irng, config.tilt_step),
        scheme="dose-symmetric" if irng.random() < config.dose_symmetric_prob else "bidirectional",
        total_dose=draw(irng, config.total_dose), defocus_um=params["defocus_um"],
        defocus_jitter_um=float(config.defocus_jitter_um), astigmatism_um=draw(irng, config.astigmatism_um),
        astig_angle_deg=float(irng.uniform(0.0, 180.0)), defocus_spread=draw(irng, config.defocus_spread),
        bfactor=params["bfactor"], misalignment_px=draw(irng, config.misalignment_px),
        rotation_deg=draw(irng, config.rotation_deg),
        ctf_signed=params["ctf_signed"], ice=draw(irng, config.ice_thickness),
        reconstruction="sirt" if irng.random() < config.sirt_prob else "wbp",
        sirt_iterations=int(config.sirt_iterations), exact_weighting=bool(irng.random() < config.exact_weighting_prob),
        window=windows[int(irng.integers(len(windows)))],
    )
    img, rec = image_tilt_series(scene.vol, irng, scene.spacing, params["snr"], tilt, scene.not_reference)
    params.update(imaging="tilt", z_blur=0.0, noise_colour=0.0, tilt_step=tilt.step, tilt_scheme=tilt.scheme,
                  total_dose=tilt.total_dose, astigmatism_um=tilt.astigmatism_um, astig_angle_deg=tilt.astig_angle_deg,
                  defocus_spread=tilt.defocus_spread, misalignment_px=tilt.misalignment_px,
                  rotation_deg=tilt.rotation_deg, ice_thickness=tilt.ice,
                  reconstruction=tilt.reconstruction, wbp_weighting="exact" if tilt.exact_weighting else "ramp",
                  wbp_window=tilt.window, **rec)
    return img


def simulate_tomogram(
    config: SynthConfig,
    index: int = 0,
    particles: ParticleSet | None = None,
    name: str | None = None,
) -> tuple[np.ndarray, Picks, dict]:
    """Simulate one tomogram.

    Args:
        config (SynthConfig): Settings (ranges are drawn with ``default_rng([config.seed, index])``).
        index (int): Tomogram number (sets the random stream and the default name ``synth_{index:03d}``).
        particles (ParticleSet, optional):
            Classes to place (default: the config's ``particle_set``); each class's ``shape`` is
            its own shape (rendered as is with ``variants="fixed"``) and sets its kind, hollow
            or filled, for the randomised variants.
        name (str, optional): Tomogram name written into the picks.

    Returns:
        ``(volume, picks, params)``: ``volume`` float32 ``[z, y, x]``; ``picks`` the true
        centres ``(x, y, z)`` in Angstrom; ``params`` (dict) the values drawn for this
        tomogram (spacing, SNR, wedge, ..., particle counts and the shape variants drawn per
        class), for the manifest.
    """
    particles = particles if particles is not None else config.particles()
    rng = np.random.default_rng([int(config.seed), int(index)])
    name = name or f"synth_{index:03d}"
    shape = tuple(int(s) for s in config.shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"synth shape must be three sizes >= 8 voxels (z, y, x), got {config.shape}")
    for c in particles.classes:  # unknown shapes fail before any work
        fam.resolve(c.shape, f"particle class {c.name!r}")
    spacing = draw(rng, config.voxel_spacing)
    params = dict(
        name=name, voxel_spacing=spacing, snr=draw(rng, config.snr, log=config.log_snr),
        tilt_range=draw(rng, config.tilt_range), defocus_um=draw(rng, config.defocus_um),
        bfactor=draw(rng, config.bfactor), vesicles=draw(rng, config.vesicles, True),
        sheets=draw(rng, config.sheets, True), gold=draw(rng, config.gold, True),
        carbon=bool(rng.random() < config.carbon), crowders=draw(rng, config.crowders, True),
        inverted=bool(rng.random() < config.invert_prob), z_blur=draw(rng, config.z_blur),
        noise_colour=draw(rng, config.noise_colour), ctf_signed=bool(rng.random() < config.ctf_signed_prob),
        gradient=draw(rng, config.gradient),
        intensity_scale=float(rng.uniform(0.5, 3.0)), intensity_offset=float(rng.uniform(-2, 2)),
    )
    scene = Scene(shape, spacing)
    proteins = _Proteins(config, particles, index, spacing)

    # distractors first: carbon and membranes are big and particles must avoid them
    if params["carbon"]:
        scene.add_carbon(rng)
    for _ in range(params["vesicles"]):
        scene.add_vesicle(rng)
    for _ in range(params["sheets"]):
        scene.add_sheet(rng)
    gold_r = scene.vox(float(rng.uniform(40.0, 70.0)))
    gold_c = scene.place(rng, params["gold"], gold_r)
    if len(gold_c):
        _render_group(scene, rng, np.full(len(gold_c), "own:sphere"), gold_c, np.full(len(gold_c), gold_r),
                      0.0, 0.0, GOLD_DENSITY)
        scene.add_balls(gold_c, np.full(len(gold_c), gold_r))

    # particles: largest classes first so the small ones fill the gaps
    rows_cls, rows_vox = [], []
    counts, variants = {}, {}
    jit = float(config.size_jitter)
    for ci in np.argsort(-particles.radii, kind="stable"):
        pc = particles.classes[ci]
        r_vox = scene.vox(pc.radius)
        c = scene.place(rng, draw(rng, config.particles_per_class, True), r_vox * (1 + jit))
        counts[pc.name] = int(len(c))
        if len(c) == 0:
            continue
        radii = r_vox * rng.uniform(1 - jit, 1 + jit, size=len(c))
        if pc.name in proteins.user:  # the user's structure, as it is
            names = np.full(len(c), f"tpl:{pc.name}", dtype=object)
        elif config.variants == "random":
            choices = fam.variants_for(pc.shape, f"particle class {pc.name!r}")
            names = np.asarray(choices, dtype=object)[rng.integers(0, len(choices), size=len(c))]
            if proteins.on:
                keys = np.array([f"tpl:{pc.name}/{k}" for k in rng.integers(0, CLASS_VARIANTS, size=len(c))])
                names = np.where(rng.random(len(c)) < PROTEIN_SHARE, keys, names).astype(object)
        else:
            own = f"tpl:{pc.name}" if proteins.on else fam.resolve(pc.shape).name
            names = np.full(len(c), own, dtype=object)
        variants[pc.name] = dict(sorted(Counter(names.tolist()).items()))
        _render_group(scene, rng, names, c, radii, config.density_jitter, config.texture, proteins=proteins)
        scene.add_balls(c, radii)
        rows_cls += [pc.name] * len(c)
        rows_vox.append(c)
    params["counts"] = counts

    # crowders: unlabelled proteins of many sizes in the gaps, never picked
    radii_a = np.sort(_crowder_radii(rng, params["crowders"], tuple(config.crowder_radius), particles.radii,
                                     float(config.crowder_exclusion)))[::-1]
    crowd_c, crowd_r = [], []
    for chunk in np.array_split(radii_a, min(6, len(radii_a))) if len(radii_a) else []:
        r = scene.vox(float(chunk[0]))
        c = scene.place(rng, len(chunk), r, tries=20)
        if len(c):
            rr = np.array([scene.vox(float(x)) for x in chunk[:len(c)]])
            scene.add_balls(c, np.full(len(c), r))
            crowd_c.append(c)
            crowd_r.append(rr)
    if crowd_c:
        cc, cr = np.concatenate(crowd_c), np.concatenate(crowd_r)
        names = np.asarray(fam.CROWDER_FAMILIES, dtype=object)[rng.integers(0, len(fam.CROWDER_FAMILIES), len(cc))]
        if proteins.on:  # most crowders are proteins of their size
            keys = proteins.crowder_keys(rng, np.array([voxels_to_length(r, spacing) for r in cr]))
            names = np.where(rng.random(len(cc)) < PROTEIN_SHARE, keys, names).astype(object)
        _render_group(scene, rng, names, cc, cr, config.density_jitter, config.texture, proteins=proteins)
        variants["(crowders)"] = dict(sorted(Counter(names.tolist()).items()))
    params["crowders"] = int(sum(len(c) for c in crowd_c))
    params["variants"] = variants

    img = _image(scene, rng, config, index, params)
    if not params["inverted"]:
        img *= -1.0  # dark particles on a lighter background
    img *= params["intensity_scale"] / (float(img.std()) or 1.0)
    if params["gradient"] > 0:
        d = rng.normal(size=3)  # a lateral ramp (ice thickness): in the kz = 0 plane, which the wedge keeps
        d[0] = 0.0
        d /= np.linalg.norm(d)
        ramp = [(np.linspace(-1, 1, n, dtype=np.float32) * d[i]) for i, n in enumerate(shape)]
        img += np.float32(params["gradient"] * params["intensity_scale"]) * (
            ramp[0][:, None, None] + ramp[1][None, :, None] + ramp[2][None, None, :])
    img += np.float32(params["intensity_offset"])

    vox = np.concatenate(rows_vox) if rows_vox else np.zeros((0, 3))
    picks = Picks(np.full(len(vox), name, dtype=object), np.asarray(rows_cls, dtype=object),
                  voxel_to_angstrom(vox, spacing))
    return img.astype(np.float32, copy=False), picks, params

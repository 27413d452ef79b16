import numpy as np
import pytest
import scipy.fft

from cryo3d.coords import angstrom_to_voxel
from cryo3d.particles import CZII_PARTICLES
from cryo3d.synth import SynthConfig, simulate_tomogram, synthesize

SMALL = dict(shape=(48, 96, 96), particles_per_class=3)


@pytest.fixture(scope="module")
def clean():
    return simulate_tomogram(SynthConfig.preset("clean", seed=3, **SMALL), 0)


def test_same_seed_gives_the_same_tomogram_and_picks():
    cfg = SynthConfig(seed=5, **SMALL)
    a, pa, _ = simulate_tomogram(cfg, 1)
    b, pb, _ = simulate_tomogram(cfg, 1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pa.xyz, pb.xyz)


def test_other_index_gives_another_tomogram():
    cfg = SynthConfig(seed=5, **SMALL)
    assert not np.array_equal(simulate_tomogram(cfg, 0)[0], simulate_tomogram(cfg, 1)[0])


def test_every_class_is_placed_inside_the_volume(clean):
    vol, picks, _ = clean
    assert set(picks.cls) == set(CZII_PARTICLES.names)
    v = angstrom_to_voxel(picks.xyz, 10.0)
    assert np.all(v >= 0) and np.all(v <= np.array(vol.shape) - 1)


def test_particles_do_not_overlap(clean):
    _, picks, _ = clean
    r = CZII_PARTICLES.radii[CZII_PARTICLES.indices(picks.cls)]
    d = np.linalg.norm(picks.xyz[:, None] - picks.xyz[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.all(d >= r[:, None] + r[None, :])


def _mean_inside_particles(vol, picks, classes=("ribosome", "beta-galactosidase", "beta-amylase"), spacing=10.0):
    """Mean image value within 0.6 radius of the centres of (solid) ``classes``, minus the volume's mean.

    Whole-particle means, not centre voxels: the CTF band-pass leaves the middle of a large
    body near the background level, but a particle as a whole is dark."""
    zyx = angstrom_to_voxel(picks.xyz, spacing)
    r = CZII_PARTICLES.radii[CZII_PARTICLES.indices(picks.cls)] / spacing
    z, y, x = np.ogrid[: vol.shape[0], : vol.shape[1], : vol.shape[2]]
    means = [vol[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= (0.6 * rr) ** 2].mean()
             for c, rr, k in zip(zyx, r, picks.cls) if k in classes]
    return float(np.mean(means) - vol.mean())


def test_particles_are_darker_than_the_background(clean):
    vol, picks, _ = clean
    assert _mean_inside_particles(vol, picks) < 0


def test_fourier_model_missing_wedge_has_no_power():
    vol, _, p = simulate_tomogram(SynthConfig(seed=1, tilt_range=50.0, tilt_prob=0.0, **SMALL), 0)
    assert p["imaging"] == "fourier"
    F = np.abs(scipy.fft.rfftn(vol - vol.mean())) ** 2
    kz = scipy.fft.fftfreq(vol.shape[0])[:, None, None]
    kx = scipy.fft.rfftfreq(vol.shape[2])[None, None, :]
    missing = np.abs(kz) > np.tan(np.radians(50.0)) * np.abs(kx) + 1e-9
    missing = np.broadcast_to(missing, F.shape)
    assert F[missing].sum() / F.sum() < 1e-8


def test_ranges_are_drawn_per_tomogram():
    cfg = SynthConfig(seed=2, snr=(0.5, 2.0), **SMALL)
    snrs = {simulate_tomogram(cfg, i)[2]["snr"] for i in range(3)}
    assert len(snrs) == 3 and all(0.5 <= s <= 2.0 for s in snrs)


def test_synthesize_writes_tomograms_picks_and_copick(small_synth):
    out, man = small_synth
    from cryo3d.io.copick_picks import read_copick
    from cryo3d.io.picks_csv import read_picks_csv
    from cryo3d.io.tomogram import read_tomogram

    assert len(man["tomograms"]) == 2
    t = read_tomogram(out / "tomograms" / "synth_000.mrc")
    assert t.voxel_spacing == 10.0 and t.shape == (48, 96, 96)
    csv = read_picks_csv(out / "picks.csv")
    cp = read_copick(out / "copick")
    assert len(csv) == len(cp) == sum(sum(e["counts"].values()) for e in man["tomograms"])
    order_a = np.lexsort(csv.xyz.T)
    order_b = np.lexsort(cp.xyz.T)
    np.testing.assert_allclose(csv.xyz[order_a], cp.xyz[order_b], atol=1e-3)


def test_synthesize_resumes_without_redoing_finished_tomograms(small_synth):
    out, man = small_synth
    mrc = out / "tomograms" / "synth_000.mrc"
    before = mrc.stat().st_mtime_ns
    cfg = SynthConfig.preset("clean", shape=(48, 96, 96), particles_per_class=3, seed=7)
    synthesize(out, 2, cfg, progress=False)
    assert mrc.stat().st_mtime_ns == before


def test_synthesize_refuses_a_folder_made_with_other_settings(small_synth):
    out, _ = small_synth
    with pytest.raises(ValueError, match="other settings"):
        synthesize(out, 2, SynthConfig(seed=99, shape=(48, 96, 96)), progress=False)


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="preset"):
        SynthConfig.preset("noisy")


# ---------------------------------------------------------------- domain randomisation and presets

TINY = dict(shape=(32, 64, 64))


def test_default_preset_is_the_randomised_config():
    assert SynthConfig.preset("default") == SynthConfig(preset="default")
    cfg = SynthConfig()
    assert cfg.variants == "random" and cfg.crowders != 0 and cfg.size_jitter > 0
    assert not isinstance(cfg.voxel_spacing, (int, float))  # drawn per tomogram


def test_default_preset_draws_several_shape_variants_per_class():
    _, _, p = simulate_tomogram(SynthConfig(seed=4, shape=(48, 128, 128), particles_per_class=12,
                                            voxel_spacing=14.0), 0)
    per_class = {c: v for c, v in p["variants"].items() if c != "(crowders)"}
    assert len(per_class) == 6
    assert all(len(v) >= 2 for v in per_class.values()), per_class


def test_demo_preset_renders_each_class_as_its_own_structure_in_every_tomogram_and_seed():
    """The first run's data: one molecule per class (no per-tomogram variants), the same across seeds."""
    seen = set()
    for seed, index in ((0, 0), (1000, 3)):
        _, _, p = simulate_tomogram(SynthConfig.preset("demo", seed=seed, shape=(48, 128, 128),
                                                       particles_per_class=4, voxel_spacing=14.0), index)
        per_class = {c: v for c, v in p["variants"].items() if c != "(crowders)"}
        assert len(per_class) == 6
        assert all(list(v) == [f"tpl:{c}"] for c, v in per_class.items()), per_class
        seen.add(tuple(sorted(per_class)))
    assert len(seen) == 1


def test_demo_preset_keeps_the_default_imaging():
    demo, default = SynthConfig.preset("demo"), SynthConfig.preset("default")
    assert demo.variants == "fixed"
    assert {k: v for k, v in vars(demo).items() if k not in ("variants", "preset")} == \
        {k: v for k, v in vars(default).items() if k not in ("variants", "preset")}


def test_hollow_classes_draw_hollow_variants_and_the_others_filled_ones():
    from cryo3d.synth import families as fam

    for c in CZII_PARTICLES.classes:
        kinds = {fam.resolve(n).hollow for n in fam.variants_for(c.shape)}
        assert kinds == {c.shape in ("shell", "thick_shell")}, c.name
        assert len(fam.variants_for(c.shape)) >= 4


def test_default_preset_never_draws_a_held_out_shape_family():
    from cryo3d.synth.families import CROWDER_FAMILIES, HELD_OUT, variants_for

    assert HELD_OUT and not HELD_OUT & set(CROWDER_FAMILIES)
    for c in CZII_PARTICLES.classes:
        assert not HELD_OUT & set(variants_for(c.shape))
    drawn = set()
    for i in range(3):
        _, _, p = simulate_tomogram(SynthConfig(seed=11, shape=(48, 96, 96), particles_per_class=8), i)
        drawn |= {n for v in p["variants"].values() for n in v}
    assert drawn and not drawn & HELD_OUT


def test_a_class_with_a_held_out_shape_never_draws_it_in_the_randomised_preset():
    from cryo3d.particles import builtin_particles
    from cryo3d.synth.families import HELD_OUT

    crowded = builtin_particles("crowded12")
    _, _, p = simulate_tomogram(SynthConfig(seed=2, shape=(48, 96, 96), particles_per_class=2), 0, crowded)
    drawn = {n for v in p["variants"].values() for n in v}
    assert drawn and not drawn & HELD_OUT


def test_ood_preset_renders_the_czii_classes_with_held_out_shapes_only():
    from cryo3d.synth.families import HELD_OUT

    cfg = SynthConfig.preset("ood", seed=0)
    ps = cfg.particles()
    assert ps.names == CZII_PARTICLES.names
    np.testing.assert_array_equal(ps.radii, CZII_PARTICLES.radii)
    np.testing.assert_array_equal(ps.weights, CZII_PARTICLES.weights)
    assert cfg.shape == (128, 256, 256) and cfg.voxel_spacing == 10.012
    assert 0.2 <= min(cfg.snr) and max(cfg.snr) <= 0.5
    _, picks, p = simulate_tomogram(SynthConfig.preset("ood", seed=0, shape=(48, 96, 96)), 0)
    labelled = {n for c, v in p["variants"].items() if c != "(crowders)" for n in v}
    assert labelled and labelled <= HELD_OUT
    assert p["voxel_spacing"] == 10.012 and p["crowders"] > 0
    assert len(picks) == sum(p["counts"].values())  # crowders are never picked


def test_crowded12_particle_set_ships_as_package_data_readable_by_load_particles():
    from cryo3d.particles import builtin_particle_file, load_particles
    from cryo3d.synth.families import HELD_OUT

    ps = load_particles(builtin_particle_file("crowded12"))
    assert len(ps) == 12 and ps.radii.min() == 30.0 and 140.0 <= ps.radii.max() <= 160.0
    assert ps.weights.min() > 0 and {c.shape for c in ps.classes} <= HELD_OUT
    assert SynthConfig.preset("crowded12").particles() == ps


def test_crowded12_preset_is_crowded():
    # an eighth of the preset's 128 x 256 x 256 volume holds about an eighth of its ~400 particles
    cfg = SynthConfig.preset("crowded12", seed=0, shape=(64, 128, 128), particles_per_class=(4, 5))
    _, picks, p = simulate_tomogram(cfg, 0)
    assert len(picks) >= 40 and len(set(picks.cls)) == 12


def test_held_out_presets_are_deterministic():
    cfg = SynthConfig.preset("crowded12", seed=3, **TINY, particles_per_class=2)
    a, pa, _ = simulate_tomogram(cfg, 0)
    b, pb, _ = simulate_tomogram(cfg, 0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pa.xyz, pb.xyz)


def test_voxel_spacing_is_drawn_per_tomogram():
    cfg = SynthConfig(seed=0, **TINY, particles_per_class=1)
    sp = [simulate_tomogram(cfg, i)[2]["voxel_spacing"] for i in range(3)]
    assert len(set(sp)) == 3 and all(8.0 <= s <= 14.0 for s in sp)


def test_inverted_tomograms_have_bright_particles():
    cfg = SynthConfig.preset("clean", seed=3, **SMALL, invert_prob=1.0)
    vol, picks, p = simulate_tomogram(cfg, 0)
    assert p["inverted"] and _mean_inside_particles(vol, picks) > 0


def test_unknown_shape_in_a_particle_set_is_a_clear_error():
    from cryo3d.particles import ParticleClass, ParticleSet

    ps = ParticleSet((ParticleClass("x", 50.0, 1.0, "pyramid"),))
    with pytest.raises(ValueError, match="'x'.*pyramid"):
        simulate_tomogram(SynthConfig(**TINY), 0, ps)


def test_unknown_setting_or_bad_probability_is_rejected():
    with pytest.raises(ValueError, match="unknown synth setting"):
        SynthConfig.preset("default", snrr=1.0)
    with pytest.raises(ValueError, match="invert_prob"):
        SynthConfig(invert_prob=2.0)


def test_manifest_records_the_preset_and_its_particle_set(tmp_path):
    man = synthesize(tmp_path, 1, SynthConfig.preset("crowded12", **TINY, particles_per_class=1), progress=False)
    assert man["preset"] == "crowded12" and man["particle_set"] == "crowded12"
    assert len(man["particles"]["classes"]) == 12
    assert "variants" in man["tomograms"][0]


def test_cli_synth_preset_choices_are_the_presets():
    from cryo3d.cli import build_parser
    from cryo3d.synth import PRESETS

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    choices = next(a for a in sub.choices["synth"]._actions if a.dest == "preset").choices
    assert sorted(choices) == sorted(PRESETS)


def test_crowded12_flows_through_cli_synth_and_prepare(tmp_path):
    import json

    from cryo3d.cli import main

    data, store = tmp_path / "d", tmp_path / "s"
    assert main(["synth", "--out", str(data), "--n", "1", "--preset", "crowded12", "--shape", "32", "64", "64",
                 "--particles-per-class", "1", "--quiet"]) == 0
    assert main(["prepare", "--data", str(data), "--out", str(store), "--patch-size", "32", "--stride", "32",
                 "--quiet"]) == 0
    man = json.loads((store / "manifest.json").read_text())
    assert len(man["particles"]["classes"]) == 12


def test_prepare_resamples_tomograms_of_several_spacings_to_the_finest(tmp_path, capsys):
    import json

    from cryo3d.cli import main

    data, store = tmp_path / "d", tmp_path / "s"
    assert main(["synth", "--out", str(data), "--n", "2", "--shape", "32", "64", "64", "--particles-per-class", "1",
                 "--quiet"]) == 0
    sp = [t["voxel_spacing"] for t in json.loads((data / "manifest.json").read_text())["tomograms"]]
    assert main(["prepare", "--data", str(data), "--out", str(store), "--patch-size", "16", "--stride", "16",
                 "--quiet"]) == 0
    assert "resampling" in capsys.readouterr().err
    assert json.loads((store / "manifest.json").read_text())["voxel_spacing"] == pytest.approx(min(sp))


def test_crowded12_particle_set_flows_through_ensure_data(tmp_path):
    from cryo3d.workflows.data import ensure_data

    d = ensure_data(tmp_path, n_tomograms=2, n_val=1, synth_shape=(32, 64, 64), synth_preset="crowded12",
                    patch_size=32, stride=32, ds_factor=1, voxel_spacing=20.0, progress=False)
    assert len(d["particles"]) == 12 and d["particles"].names[0] == "hemoglobin"


@pytest.mark.parametrize("name", sorted(__import__("cryo3d.synth.families", fromlist=["FAMILIES"]).FAMILIES))
def test_every_shape_family_lies_within_its_radius_and_has_mass(name):
    from cryo3d.synth.families import FAMILIES

    rng = np.random.default_rng(0)
    fam = FAMILIES[name]
    n = 8
    prm = fam.draw(rng, n)
    u = rng.normal(size=(n, 4000, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    e = np.full((n, 1), 0.02)
    reach = 1.25 if name.startswith("own:") else 1.08  # the first simulator's ribosome reaches 1.13 radius
    outside = fam.density(u * rng.uniform(reach, 1.3, size=(n, 4000, 1)), prm, e)
    inside = fam.density(u * rng.uniform(0.0, 1.0, size=(n, 4000, 1)) ** (1 / 3), prm, e)
    assert outside.max() < 0.06
    assert np.all(inside.mean(1) > 0.05)  # every particle has some density


def test_particles_keep_clear_of_a_carbon_edge():
    from cryo3d.synth.scene import Scene

    scene = Scene((40, 80, 80), 10.0)
    scene.add_carbon(np.random.default_rng(1))
    assert scene.vol.max() > 0.5  # a dense slab exists
    c = scene.place(np.random.default_rng(2), 60, 3.0)
    assert len(c) > 10
    idx = np.rint(c).astype(int)
    assert scene.vol[tuple(idx.T)].max() < 0.05


def test_crowders_are_no_look_alikes_of_a_labelled_class():
    from cryo3d.synth.tomogram import _crowder_radii

    r = _crowder_radii(np.random.default_rng(0), 500, (20.0, 150.0), CZII_PARTICLES.radii, 0.15)
    assert len(r) == 500 and r.min() >= 19.9 and r.max() <= 150.1
    assert np.all(np.abs(r[:, None] / CZII_PARTICLES.radii[None] - 1) > 0.14)


def test_ensure_data_resamples_tomograms_of_several_spacings_to_the_finest(tmp_path):
    import json

    from cryo3d.workflows.data import ensure_data

    d = ensure_data(tmp_path, n_tomograms=3, n_val=1, synth_shape=(24, 48, 48), patch_size=16, stride=16,
                    ds_factor=1, voxel_spacing=None, progress=False)
    man = json.loads((tmp_path / "manifest.json").read_text())
    sp = {t["name"]: t["voxel_spacing"] for t in man["tomograms"]}
    assert len(set(sp.values())) == 3
    assert d["voxel_spacing"] == pytest.approx(min(sp[n] for n in d["train"]))

"""The user's own structures (maps and atomic models) and the built-in pseudo-atomic proteins in synth."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryo3d.cli import main
from cryo3d.io.tomogram import write_mrc
from cryo3d.synth import SynthConfig, simulate_tomogram
from cryo3d.synth import pseudo_atomic as pa
from cryo3d.synth.scene import Scene
from cryo3d.synth.shapes import random_rotations
from cryo3d.synth.structures import (RADIUS_RULE, Structure, gyration_radius, make_template, read_map,
                                     read_structure)

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(shape=(40, 80, 80), particles_per_class=3, crowders=(4, 8))


def _script():
    spec = importlib.util.spec_from_file_location("make_test_structures", ROOT / "scripts" / "make_test_structures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def structure_dirs(tmp_path_factory):
    """Two folders the project writes itself: pseudo-atomic mmCIF models and MRC maps (radii 40, 60 A)."""
    base = tmp_path_factory.mktemp("structures")
    make = _script().make
    make(base / "cif", radii=(40.0, 60.0), kind="cif", seed=1)
    make(base / "mrc", radii=(40.0, 60.0), kind="mrc", seed=1)
    return base / "cif", base / "mrc"


def _sphere_map(path, radius=50.0, spacing=2.0, box=72, centre=(36.0, 40.0, 30.0)):
    z, y, x = np.indices((box, box, box), dtype=np.float64)
    d = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) * spacing
    write_mrc(path, (d <= radius).astype(np.float32), spacing)
    return path


def _density_com(vol):
    idx = np.indices(vol.shape).reshape(3, -1).T
    w = vol.reshape(-1).astype(np.float64)
    return (w @ idx) / w.sum()


@pytest.mark.parametrize("kind", ["cif", "mrc"])
def test_cli_synth_structures_makes_one_class_per_file_with_derived_radii(structure_dirs, tmp_path, kind, capsys):
    folder = structure_dirs[0] if kind == "cif" else structure_dirs[1]
    out = tmp_path / "sim"
    assert main(["synth", "--structures", str(folder), "--out", str(out), "--n", "1", "--shape", "40", "80", "80",
                 "--voxel-spacing", "10", "--particles-per-class", "3", "--quiet"]) == 0
    assert "particles.yaml" in capsys.readouterr().out
    man = json.loads((out / "manifest.json").read_text())
    names = sorted(p.stem for p in folder.iterdir())
    assert [c["name"] for c in man["particles"]["classes"]] == names
    assert man["structures"]["radius_rule"] == RADIUS_RULE
    assert [c["file"] for c in man["structures"]["classes"]] == sorted(p.name for p in folder.iterdir())
    radii = [c["radius"] for c in man["particles"]["classes"]]
    assert radii == pytest.approx([40.0, 60.0], rel=0.1)
    from cryo3d.particles import load_particles

    assert load_particles(str(out / "particles.yaml")).names == names
    picks = (out / "picks.csv").read_text()
    assert all(n in picks for n in names)


def test_radius_rule_gives_a_uniform_sphere_its_radius(tmp_path):
    s = read_map(_sphere_map(tmp_path / "ball.mrc", radius=50.0))
    assert s.radius == pytest.approx(50.0, rel=0.02)


def test_a_map_structure_is_centred_on_its_centre_of_mass(tmp_path):
    s = read_map(_sphere_map(tmp_path / "ball.mrc", centre=(36.0, 40.0, 30.0)))
    np.testing.assert_allclose(s.com, [36.0, 40.0, 30.0], atol=0.05)


def test_rendered_template_centre_of_mass_lies_at_the_pick():
    rng = np.random.default_rng(0)
    xyz, mass = pa.protein(60.0, rng, symmetry="C3")
    xyz = xyz.copy()
    xyz[: len(xyz) // 2] *= 1.3  # lopsided: no symmetry puts the centre of mass anywhere by chance
    radius, com = gyration_radius(xyz, mass)
    tpl = make_template(Structure("lopsided", "", radius, xyz=xyz - com, mass=mass), 10.0)
    for k, centre in enumerate([[20.3, 31.7, 29.45], [19.8, 30.2, 33.9]]):
        scene = Scene((40, 64, 64), 10.0)
        scene.render_template(tpl, np.array([centre]), random_rotations(rng, 1), np.array([1.0 + 0.1 * k]),
                              np.ones(1))
        np.testing.assert_allclose(_density_com(scene.vol), centre, atol=0.5)


def test_simulated_particle_density_is_centred_on_its_ground_truth_pick(tmp_path, monkeypatch):
    import cryo3d.synth.tomogram as tomogram
    from cryo3d.coords import angstrom_to_voxel

    folder = tmp_path / "one"
    folder.mkdir()
    z, y, x = np.indices((40, 40, 40), dtype=np.float64)  # two unequal balls, off the box centre
    two = ((z - 14) ** 2 + (y - 18) ** 2 + (x - 20) ** 2 <= 64) | ((z - 20) ** 2 + (y - 27) ** 2 + (x - 24) ** 2 <= 25)
    write_mrc(folder / "dimer.mrc", two.astype(np.float32), 3.0)
    scenes = []
    real_image = tomogram.image
    monkeypatch.setattr(tomogram, "image", lambda vol, *a, **k: (scenes.append(vol.copy()), real_image(vol, *a, **k))[1])
    cfg = SynthConfig(structures=str(folder), shape=(40, 64, 64), voxel_spacing=7.0, particles_per_class=1, crowders=0,
                      vesicles=0, sheets=0, gold=0, carbon=0.0, seed=2, tilt_prob=0.0)  # the Fourier model calls image()
    for i in range(3):
        _, picks, _ = simulate_tomogram(cfg, i)
        np.testing.assert_allclose(_density_com(scenes[-1]), angstrom_to_voxel(picks.xyz, 7.0)[0], atol=0.5)


def test_a_fine_off_centre_map_renders_centred_on_the_pick_with_its_radius(tmp_path):
    s = read_map(_sphere_map(tmp_path / "fine.mrc", radius=30.0, spacing=1.0, box=100, centre=(40.0, 55.0, 62.0)))
    tpl = make_template(s, 10.0)
    idx = np.argwhere(tpl.vol > 0)
    measured, _ = gyration_radius(idx * tpl.spacing, tpl.vol[tpl.vol > 0].astype(np.float64))
    assert measured == pytest.approx(30.0, rel=0.1)
    scene = Scene((24, 24, 24), 10.0)
    scene.render_template(tpl, np.array([[11.6, 12.2, 11.3]]), random_rotations(np.random.default_rng(1), 1),
                          np.ones(1), np.ones(1))
    np.testing.assert_allclose(_density_com(scene.vol), [11.6, 12.2, 11.3], atol=0.5)


def test_a_map_with_inverted_contrast_warns_naming_it(tmp_path):
    path = tmp_path / "inverted.mrc"
    z, y, x = np.indices((24, 24, 24))
    ball = ((z - 12) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 <= 36).astype(np.float32)
    write_mrc(path, 0.01 - ball, 2.0)  # dark protein on a faint positive background
    with pytest.warns(UserWarning, match="inverted.mrc.*inverted"):
        read_map(path)


@pytest.mark.parametrize("radius", [30.0, 60.0, 120.0])
@pytest.mark.parametrize("kind", ["filled", "hollow", "T", "C5"])
def test_pseudo_atomic_templates_have_the_requested_radius(radius, kind):
    rng = np.random.default_rng(3)
    sym = kind if kind in pa.SYMMETRIES else None
    xyz, mass = pa.protein(radius, rng, hollow=kind == "hollow", symmetry=sym)
    assert pa.rule_radius(xyz, mass) == pytest.approx(radius, rel=1e-6)
    tpl = make_template(Structure("p", "", radius, xyz=xyz, mass=mass), 8.0)
    idx = np.argwhere(tpl.vol > 0)
    measured, _ = gyration_radius(idx * tpl.spacing, tpl.vol[tpl.vol > 0].astype(np.float64))
    assert measured == pytest.approx(radius, rel=0.1)


def test_pseudo_atomic_chains_fill_their_envelope_at_protein_density_in_3_8_angstrom_steps():
    from cryo3d.synth import families as fam

    rng = np.random.default_rng(0)
    f = fam.FAMILIES["ellipsoid"]
    mask, origin = pa.envelope(f, f.draw(rng, 1), 50.0)
    res = pa.walk(mask, origin, rng)
    steps = np.linalg.norm(res[:, 1], axis=1)
    assert np.allclose(steps[steps > 0], pa.CA_STEP)
    dalton_per_a3 = len(res) * 110.0 / (mask.sum() * pa.CELL**3)  # 110 Da per residue
    assert 0.5 < dalton_per_a3 < 1.0  # protein: 0.81 Da / A^3
    cells = np.rint((res[:, 0] - origin) / pa.CELL).astype(int)
    assert mask[tuple(cells.T)].all()  # every residue inside the envelope


def test_same_seed_gives_the_same_structure_tomogram(structure_dirs):
    cfg = SynthConfig(seed=4, structures=str(structure_dirs[1]), voxel_spacing=10.0, **TINY)
    a, pa_, _ = simulate_tomogram(cfg, 0)
    b, pb, _ = simulate_tomogram(cfg, 0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pa_.xyz, pb.xyz)


def test_same_seed_gives_the_same_pseudo_atomic_protein():
    a = pa.protein(45.0, np.random.default_rng([2, 1]), symmetry="D2")
    b = pa.protein(45.0, np.random.default_rng([2, 1]), symmetry="D2")
    np.testing.assert_array_equal(a[0], b[0])


def test_default_preset_renders_most_variants_and_crowders_as_pseudo_atomic_proteins():
    _, _, p = simulate_tomogram(SynthConfig(seed=1, shape=(48, 96, 96), particles_per_class=8,
                                            voxel_spacing=12.0), 0)
    drawn = [(n, k) for v in p["variants"].values() for n, k in v.items()]
    share = sum(k for n, k in drawn if n.startswith("tpl:")) / sum(k for _, k in drawn)
    assert share > 0.5


def test_crowded12_classes_are_each_one_pseudo_atomic_protein_in_every_tomogram():
    cfg = SynthConfig.preset("crowded12", seed=0, shape=(48, 96, 96), particles_per_class=2)
    _, picks, p = simulate_tomogram(cfg, 0)
    for cls, v in p["variants"].items():
        if cls != "(crowders)":
            assert list(v) == [f"tpl:{cls}"]
    assert cfg.variants == "fixed" and cfg.particle_set == "crowded12"


def test_legacy_presets_keep_their_geometric_shapes():
    for name in ("clean", "hard", "ood"):
        assert SynthConfig.preset(name).structures is None


def _cli_error(capsys, folder):
    code = main(["synth", "--structures", str(folder), "--out", str(folder.parent / "out"), "--n", "1", "--quiet"])
    err = capsys.readouterr().err.strip()
    return code, err


def test_an_unreadable_structure_file_is_a_one_line_error_naming_it(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "broken.mrc").write_bytes(b"not an mrc file at all")
    code, err = _cli_error(capsys, tmp_path / "s")
    assert code == 2 and len(err.splitlines()) == 1 and "broken.mrc" in err and "MRC" in err


def test_a_map_with_zero_voxel_size_is_a_one_line_error_naming_it(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    with mrcfile.new(tmp_path / "s" / "flat.mrc") as m:
        m.set_data(np.ones((8, 8, 8), np.float32))
        m.voxel_size = 0.0
    code, err = _cli_error(capsys, tmp_path / "s")
    assert code == 2 and len(err.splitlines()) == 1 and "flat.mrc" in err and "voxel size" in err


def test_an_empty_model_is_a_one_line_error_naming_it(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    water = "HETATM    1  O   HOH A   1      10.000  10.000  10.000  1.00 20.00           O\nEND\n"
    (tmp_path / "s" / "empty.pdb").write_text(water)  # only a water: nothing left to render
    code, err = _cli_error(capsys, tmp_path / "s")
    assert code == 2 and len(err.splitlines()) == 1 and "empty.pdb" in err and "no atoms" in err


def test_a_folder_without_structures_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    code, err = _cli_error(capsys, tmp_path / "s")
    assert code == 2 and "no density map" in err


def test_structures_read_by_suffix(structure_dirs):
    cif = sorted(structure_dirs[0].iterdir())[0]
    s = read_structure(cif)
    assert s.xyz is not None and s.density is None and s.radius == pytest.approx(40.0, rel=0.05)


def test_ensure_data_simulates_training_data_of_the_given_structures(structure_dirs, tmp_path):
    from cryo3d.workflows.data import ensure_data
    from cryo3d.workflows.network_spec import bundle_particles

    folder = str(structure_dirs[0])
    before = bundle_particles("auto", tmp_path, "default", None, folder)
    d = ensure_data(tmp_path, n_tomograms=2, n_val=1, synth_shape=(32, 64, 64), patch_size=16, stride=16,
                    voxel_spacing=None, progress=False, synth_structures=folder)
    names = sorted(p.stem for p in structure_dirs[0].iterdir())
    assert d["particles"].names == names == before.names
    assert (tmp_path / "particles.yaml").is_file()

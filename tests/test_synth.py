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


def test_particles_are_darker_than_the_background(clean):
    vol, picks, _ = clean
    idx = np.rint(angstrom_to_voxel(picks.xyz, 10.0)).astype(int)
    big = np.isin(picks.cls, ["ribosome", "beta-galactosidase", "beta-amylase"])  # solid centres
    centre_vals = vol[tuple(idx[big].T)]
    assert np.median(centre_vals) < np.median(vol)


def test_missing_wedge_has_no_power():
    vol, _, p = simulate_tomogram(SynthConfig(seed=1, tilt_range=50.0, **SMALL), 0)
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
    from cryo3d.io.picks import read_copick, read_picks_csv
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

import math

import numpy as np
import pytest
import scipy.fft
from scipy.ndimage import gaussian_filter

from cryo3d.coords import angstrom_to_voxel
from cryo3d.particles import ParticleClass, ParticleSet
from cryo3d.synth import SynthConfig, simulate_tomogram
from cryo3d.synth.imaging import WAVELENGTH_300KV, coherence_envelope, critical_exposure, ctf, exposure_filter
from cryo3d.synth.tilt_imaging import TiltImaging, image_tilt_series
from cryo3d.synth.tilt_series import TiltGeometry, acquisition_order, backproject, exposure_at, project, tilt_angles

#: One labelled class, no distractors, high SNR, no misalignment: geometry only.
BARE = dict(shape=(40, 64, 72), voxel_spacing=10.0, particles_per_class=4, snr=50.0, tilt_prob=1.0,
            misalignment_px=0.0, rotation_deg=0.0, defocus_um=2.0, bfactor=100.0, vesicles=0, sheets=0, gold=0,
            carbon=0.0, crowders=0, variants="fixed", size_jitter=0.0, density_jitter=0.0, texture=0.0, invert_prob=0.0,
            gradient=0.0, ctf_signed_prob=0.0, sirt_prob=0.0)
SMALL_BALL = ParticleSet((ParticleClass("ball", 40.0, 1.0, "sphere"),))


def _peak_errors(vol: np.ndarray, picks, spacing: float, sigma: float = 2.0) -> np.ndarray:
    """Distance (voxels) from each true centre to the smoothed density maximum within 3 voxels of it.

    The smoothing (half the 4-voxel radius) is needed because the CTF's band-pass alone
    puts a uniform ball's maximum on its rim, in the Fourier model as in the tilt series."""
    dens = gaussian_filter(-vol, sigma)  # particles are dark
    errs = []
    for c in angstrom_to_voxel(picks.xyz, spacing):
        lo = np.maximum(np.floor(c).astype(int) - 3, 0)
        box = dens[lo[0]:lo[0] + 8, lo[1]:lo[1] + 8, lo[2]:lo[2] + 8]
        m = np.asarray(np.unravel_index(np.argmax(box), box.shape)) + lo
        errs.append(float(np.linalg.norm(m - c)))
    return np.asarray(errs)


@pytest.mark.parametrize("max_tilt", [40.0, 55.0, 70.0])
def test_a_particle_reconstructs_at_its_true_centre(max_tilt):
    vol, picks, p = simulate_tomogram(SynthConfig(seed=2, tilt_range=max_tilt, **BARE), 0, SMALL_BALL)
    assert p["imaging"] == "tilt" and len(picks) == 4
    errs = _peak_errors(vol, picks, 10.0)
    assert errs.max() < 1.0, errs


@pytest.mark.parametrize("max_tilt", [40.0, 70.0])
def test_reconstruction_has_no_sub_voxel_shift(max_tilt):
    shape, c = (33, 20, 46), np.array([14.3, 9.6, 25.7])  # odd and even sizes, a fractional centre
    zyx = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), -1)
    vol = np.exp(-np.sum((zyx - c) ** 2, -1) / (2 * 1.5**2)).astype(np.float32)
    p = TiltImaging(max_tilt=max_tilt, step=2.0, defocus_um=0.0)  # amplitude contrast only: no sign changes
    rec, _ = image_tilt_series(vol, np.random.default_rng(0), 10.0, 1e12, p)
    w = np.clip(rec, 0.0, None) * (np.sum((zyx - c) ** 2, -1) < 5.0**2)
    centroid = np.sum(zyx * w[..., None], axis=(0, 1, 2)) / w.sum()
    np.testing.assert_allclose(centroid, c, atol=0.05)


def test_sirt_reconstructs_a_particle_at_its_true_centre():
    cfg = SynthConfig(seed=3, tilt_range=60.0, **dict(BARE, sirt_prob=1.0))
    vol, picks, p = simulate_tomogram(cfg, 0, SMALL_BALL)
    assert p["reconstruction"] == "sirt"
    assert _peak_errors(vol, picks, 10.0).max() < 1.0


def test_projector_and_backprojector_are_adjoint():
    rng = np.random.default_rng(0)
    shape = (24, 10, 40)
    geom = TiltGeometry.for_volume(shape, tilt_angles(62.0, 2.5))
    x = rng.standard_normal(shape).astype(np.float32)
    px = project(x, geom)
    y = rng.standard_normal(px.shape).astype(np.float32)
    lhs = float(np.vdot(px.astype(np.float64), y))
    rhs = float(np.vdot(x.astype(np.float64), backproject(y, geom)))
    assert lhs == pytest.approx(rhs, rel=1e-5)


def test_a_projection_at_zero_tilt_is_the_sum_along_z():
    rng = np.random.default_rng(1)
    x = rng.random((12, 6, 20)).astype(np.float32)
    geom = TiltGeometry.for_volume(x.shape, np.array([0.0]))
    np.testing.assert_allclose(project(x, geom)[0, :, :20], x.sum(0), rtol=1e-4, atol=1e-4)


def test_ctf_matches_the_textbook_formula():
    # relativistic wavelength at 300 kV: h / sqrt(2 m e V (1 + e V / (2 m c^2)))
    lam = 12.2643 / math.sqrt(300e3 * (1 + 0.978466e-6 * 300e3))
    assert WAVELENGTH_300KV == pytest.approx(lam, rel=1e-3)
    amp, cs, df, astig, angle = 0.07, 2.7e7, 30000.0, 2000.0, 0.3
    for k, phi in [(0.0, 0.0), (0.01, 0.3), (0.023, 1.1), (0.04, 2.0), (0.05, -0.7)]:
        d = df + astig / 2 * math.cos(2 * (phi - angle))
        gamma = 2 * math.pi * (d * lam * k**2 / 2 - cs * lam**3 * k**4 / 4)
        want = math.sqrt(1 - amp**2) * math.sin(gamma) + amp * math.cos(gamma)
        got = float(ctf(np.array(k), np.array(phi), df, astig, angle, amp, cs, lam))
        assert got == pytest.approx(want, abs=1e-6)


def test_coherence_envelopes_are_one_at_zero_frequency_and_fall():
    k = np.linspace(0.0, 0.1, 50)
    e = coherence_envelope(k, 40000.0, 600.0, aperture=1e-4)
    assert e[0] == pytest.approx(1.0) and np.all(np.diff(e) <= 1e-12) and e[-1] < 0.999


def test_exposure_filter_falls_with_dose_and_with_frequency():
    k = np.linspace(0.005, 0.1, 40)
    assert critical_exposure(np.array(0.1)) == pytest.approx(0.245 * 0.1**-1.665 + 2.81)
    low, high = exposure_filter(k, 10.0), exposure_filter(k, 80.0)
    assert np.all(np.diff(low) < 0) and np.all(high < low) and np.all((high > 0) & (low <= 1))


def test_dose_symmetric_order_starts_at_zero_and_alternates_sides():
    a = tilt_angles(9.0, 3.0)
    np.testing.assert_array_equal(a, [-9, -6, -3, 0, 3, 6, 9])
    order = acquisition_order(a, "dose-symmetric")
    assert list(a[np.argsort(order)]) == [0, 3, -3, -6, 6, 9, -9]
    assert list(a[np.argsort(acquisition_order(a, "bidirectional"))]) == [0, 3, 6, 9, -3, -6, -9]
    dose = exposure_at(order, 70.0)
    assert dose[3] == pytest.approx(5.0) and dose.max() == pytest.approx(65.0)


@pytest.mark.parametrize("reconstruction", ["wbp", "sirt"])
def test_snr_is_the_reconstructions_signal_over_noise_variance(reconstruction):
    # the noise is scaled by its expected variance in the reconstruction (known ahead, so it is
    # back-projected straight into the tomogram): the realised ratio is within sampling error
    rng = np.random.default_rng(4)
    vol = gaussian_filter(rng.random((32, 48, 56)).astype(np.float32) ** 8, 1.5)
    p = TiltImaging(max_tilt=60.0, step=3.0, defocus_um=3.0, bfactor=100.0, misalignment_px=1.0, ice=0.4,
                    reconstruction=reconstruction)
    signal, _ = image_tilt_series(vol, np.random.default_rng(9), 10.0, 1e12, p)
    both, _ = image_tilt_series(vol, np.random.default_rng(9), 10.0, 0.5, p)
    assert signal.var() / (both - signal).var() == pytest.approx(0.5, rel=0.03)


def test_tilt_series_leaves_the_missing_wedge_nearly_empty():
    cfg = SynthConfig(seed=1, **dict(BARE, tilt_range=45.0, snr=1.0, particles_per_class=8))
    vol, _, _ = simulate_tomogram(cfg, 0, SMALL_BALL)
    z, _, x = vol.shape
    win = np.hanning(z)[:, None, None] * np.hanning(x)[None, None, :]  # the volume is not periodic
    power = np.abs(scipy.fft.rfftn((vol - vol.mean()) * win)) ** 2
    kz = scipy.fft.fftfreq(z)[:, None, None]
    kx = scipy.fft.rfftfreq(x)[None, None, :]
    wedge = np.broadcast_to(np.abs(kz) > math.tan(math.radians(45.0)) * np.abs(kx) + 2.0 / z, power.shape)
    assert power[wedge].sum() / power.sum() < 1e-3


def test_same_seed_gives_the_same_tilt_series_tomogram():
    cfg = SynthConfig(seed=5, shape=(32, 48, 48), particles_per_class=2, tilt_prob=1.0)
    a, _, pa = simulate_tomogram(cfg, 1)
    b, _, pb = simulate_tomogram(cfg, 1)
    np.testing.assert_array_equal(a, b)
    assert pa == pb and pa["imaging"] == "tilt"


def test_manifest_records_the_drawn_tilt_series_settings():
    _, _, p = simulate_tomogram(SynthConfig(seed=0, shape=(32, 48, 48), particles_per_class=1, tilt_prob=1.0), 0)
    assert 2.0 <= p["tilt_step"] <= 4.0 and 60.0 <= p["total_dose"] <= 140.0
    assert 0.5 <= p["misalignment_px"] <= 1.5 and p["reconstruction"] in ("wbp", "sirt")
    assert p["tilt_scheme"] in ("dose-symmetric", "bidirectional") and p["n_tilts"] >= 21


def test_default_preset_images_most_tomograms_through_a_tilt_series():
    cfg = SynthConfig()
    assert cfg.tilt_prob >= 0.5
    kinds = [simulate_tomogram(SynthConfig(seed=1, shape=(24, 32, 32), particles_per_class=1), i)[2]["imaging"]
             for i in range(8)]
    assert kinds.count("tilt") >= 4 and "fourier" in kinds


@pytest.mark.parametrize("name", ["clean", "hard", "ood", "crowded12"])
def test_legacy_presets_keep_the_fourier_model(name):
    cfg = SynthConfig.preset(name, seed=0, shape=(24, 32, 32), particles_per_class=1)
    assert cfg.tilt_prob == 0.0
    assert simulate_tomogram(cfg, 0)[2]["imaging"] == "fourier"


def test_tilt_preset_is_the_held_out_tilt_series_benchmark():
    from cryo3d.particles import builtin_particle_file, builtin_particles, load_particles
    from cryo3d.synth.families import HELD_OUT

    cfg = SynthConfig.preset("tilt")
    ps = cfg.particles()
    assert ps == builtin_particles("tilt") == load_particles(builtin_particle_file("tilt"))
    assert len(ps) >= 7 and ps.radii.min() == 40.0 and ps.radii.max() == 120.0
    assert {c.shape for c in ps.classes} <= HELD_OUT and ps.weights.min() > 0
    assert cfg.shape == (128, 256, 256) and cfg.tilt_prob == 1.0 and cfg.tilt_range == (50.0, 63.0)
    assert cfg.tilt_step == 3.0 and cfg.sirt_prob == 0.0 and cfg.crowders[0] >= 500
    _, picks, p = simulate_tomogram(SynthConfig.preset("tilt", seed=0, shape=(48, 96, 96)), 0)
    assert p["imaging"] == "tilt" and p["reconstruction"] == "wbp" and p["crowders"] > 50
    assert len(set(picks.cls)) >= 5


def test_bad_tilt_settings_are_rejected():
    with pytest.raises(ValueError, match="tilt_prob"):
        SynthConfig(tilt_prob=1.5)
    with pytest.raises(ValueError, match="wbp_windows"):
        SynthConfig(wbp_windows=("shepp",))
    with pytest.raises(ValueError, match="reconstruction"):
        TiltImaging(max_tilt=60.0, step=3.0, reconstruction="art")
    with pytest.raises(ValueError, match="step"):
        tilt_angles(60.0, 0.0)


def test_sirt_equals_the_iterated_update_it_is_derived_from():
    from cryo3d.synth.tilt_series import project_fourier, sirt

    rng = np.random.default_rng(6)
    geom = TiltGeometry.for_volume((8, 3, 10), tilt_angles(50.0, 12.5))
    p = project_fourier(rng.random(geom.shape).astype(np.float32), geom)
    a = (geom.shear().numpy() * geom.band()[:, :, None]).astype(np.complex128)  # [K, T, Z]
    r = geom.cos / geom.shape[0]  # inverse row sums: every ray crosses Z slices of length 1 / cos t
    c = 1.0 / np.sum(1.0 / geom.cos)  # inverse column sum
    x = np.zeros((a.shape[0], geom.shape[0], geom.shape[1]), complex)  # [K, Z, Y], padded frame
    for _ in range(5):
        res = p - a @ x
        x = x + c * np.conj(a).transpose(0, 2, 1) @ (r[None, :, None] * res)
    want = scipy.fft.irfft(x, n=geom.width, axis=0)[: geom.shape[2]].transpose(1, 2, 0)
    np.testing.assert_allclose(sirt(p, geom, 5), want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
    assert not np.allclose(sirt(p, geom, 1), want, atol=1e-2 * np.abs(want).max())


def test_defocus_varies_across_a_tilted_specimen_in_blended_strips():
    from cryo3d.synth.tilt_imaging import _strips

    geom = TiltGeometry.for_volume((100, 8, 600), np.array([-60.0, 0.0, 60.0]))
    centres, weights = _strips(geom, 2, 30000.0, 10.0)
    assert len(centres) >= 3 and weights is not None
    np.testing.assert_allclose(weights.sum(0), 1.0, atol=1e-5)
    # across the frame (w in +/- width / 2, u = w cos t) the defocus changes by width * sin t * spacing
    assert centres.max() - centres.min() == pytest.approx(geom.width * math.sin(math.radians(60.0)) * 10.0, rel=0.01)
    assert np.mean(centres) == pytest.approx(30000.0, rel=0.01)
    assert _strips(geom, 1, 30000.0, 10.0)[1] is None  # untilted: one defocus


def test_an_in_plane_rotation_turns_a_projection_about_the_tilt_axis_centre():
    from cryo3d.synth.tilt_imaging import rotate_projection

    geom = TiltGeometry.for_volume((20, 41, 60), np.array([0.0, 60.0]))
    w = (np.arange(geom.width) - 29.5 + geom.width / 2) % geom.width - geom.width / 2  # sheared-frame w
    y = np.arange(41) - 20.0
    u = w * geom.cos[1]
    img = np.exp(-((u[:, None] - 8.0) ** 2 + (y[None, :] - 0.0) ** 2) / (2 * 1.5**2)).astype(np.float32)
    out = rotate_projection(img, geom, 1, math.radians(30.0))
    wgt = np.clip(out, 0, None)
    centre = [np.sum(wgt * u[:, None]) / wgt.sum(), np.sum(wgt * y[None, :]) / wgt.sum()]
    # the value at (u, y) is the input's at (u cos a + y sin a, -u sin a + y cos a): the spot at (8, 0)
    # moves to (8 cos a, 8 sin a)
    np.testing.assert_allclose(centre, [8.0 * math.cos(math.radians(30.0)), 8.0 * math.sin(math.radians(30.0))],
                               atol=0.05)


def test_residual_misalignment_blurs_the_reconstruction():
    shape, c = (24, 24, 40), np.array([11.5, 11.5, 19.5])
    zyx = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), -1)
    vol = np.exp(-np.sum((zyx - c) ** 2, -1) / (2 * 1.2**2)).astype(np.float32)
    peaks = []
    for shift in (0.0, 1.5):
        p = TiltImaging(max_tilt=60.0, step=3.0, defocus_um=0.0, misalignment_px=shift)
        rec, record = image_tilt_series(vol, np.random.default_rng(0), 10.0, 1e12, p)
        peaks.append(rec.max() / rec.std())
        assert (record["misalignment_rms_px"] > 0.5) == (shift > 0)
    assert peaks[1] < 0.9 * peaks[0]

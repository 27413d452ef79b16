"""The imaging of one tilt series: per-projection optics, dose, shifts, shot noise, reconstruction.

:func:`image_tilt_series` projects a scene with :mod:`cryo3d.synth.tilt_series`, images
every projection in its 2D spectrum (:func:`cryo3d.synth.imaging.ctf`, envelopes,
exposure filter, residual shift, phase flip) with the defocus varying across the tilted
specimen (strips of the detector, blended linearly, as CTF correction in strips does),
adds shot noise and reconstructs by weighted back-projection or SIRT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from cryo3d.synth.imaging import WAVELENGTH_300KV, coherence_envelope, ctf, exposure_filter
from cryo3d.synth.tilt_series import (
    TiltGeometry, acquisition_order, backproject_fourier, exposure_at, noise_variance, project_fourier, sirt_matrix,
    tilt_angles, weighting,
)

#: Largest CTF phase error (radians, at the detector's Nyquist) of one defocus strip.
STRIP_PHASE = 0.3


@dataclass(frozen=True)
class TiltImaging:
    """The drawn settings of one tilt series (what the manifest records).

    Attributes:
        max_tilt, step: tilt range ``+/-max_tilt`` and increment (degrees).
        scheme: ``dose-symmetric`` or ``bidirectional`` acquisition order (sets each tilt's prior exposure).
        total_dose: exposure of the whole series (e/A^2), equal per tilt.
        defocus_um: mean defocus (um, underfocus positive); defocus_jitter_um: per-tilt standard deviation.
        astigmatism_um, astig_angle_deg: major minus minor defocus (um) and its direction (degrees).
        defocus_spread: temporal-coherence defocus spread (Angstrom).
        bfactor: B-factor envelope (Angstrom^2).
        misalignment_px: RMS (over both axes) of the residual in-plane shift per projection (pixels).
        rotation_deg: standard deviation of the residual in-plane rotation per projection (degrees).
        ctf_signed: keep the CTF's sign reversals (else the projections are phase-flipped).
        ice: specimen thickness over the inelastic mean free path at zero tilt; a tilt keeps
            ``exp(-ice / cos t)`` of its electrons (zero-loss), so high tilts are noisier.
        reconstruction: ``wbp`` or ``sirt``; sirt_iterations: SIRT's iterations.
        exact_weighting: Radermacher's exact weighting instead of the ramp (WBP).
        window: apodisation of the WBP filter (``ram-lak``, ``cosine``, ``hamming``).
    """

    max_tilt: float
    step: float
    scheme: str = "dose-symmetric"
    total_dose: float = 100.0
    defocus_um: float = 3.0
    defocus_jitter_um: float = 0.0
    astigmatism_um: float = 0.0
    astig_angle_deg: float = 0.0
    defocus_spread: float = 0.0
    bfactor: float = 0.0
    misalignment_px: float = 0.0
    rotation_deg: float = 0.0
    ctf_signed: bool = False
    ice: float = 0.0
    reconstruction: str = "wbp"
    sirt_iterations: int = 10
    exact_weighting: bool = False
    window: str = "ram-lak"

    def __post_init__(self) -> None:
        if self.reconstruction not in ("wbp", "sirt"):
            raise ValueError(f"tilt-series reconstruction must be 'wbp' or 'sirt', got {self.reconstruction!r}")


def _strips(geom: TiltGeometry, t: int, defocus: float, spacing: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Defoci (Angstrom) of the detector strips of tilt ``t`` and their blending weights ``[n, W]``
    (None for one strip): the specimen tilted by ``t`` is ``u tan t`` closer to focus at
    detector position ``u``; strips are spaced so that the CTF's phase at Nyquist errs by at
    most :data:`STRIP_PHASE` between two, and weights interpolate linearly between centres."""
    w = (np.arange(geom.width) - 0.5 * (geom.shape[2] - 1) + 0.5 * geom.width) % geom.width - 0.5 * geom.width
    df = defocus - w * (geom.cos[t] * spacing * math.tan(math.radians(geom.angles[t])))  # along the frame
    step = 2.0 * STRIP_PHASE / (math.pi * WAVELENGTH_300KV * (0.5 / spacing) ** 2)
    n = int(math.ceil((df.max() - df.min()) / step)) + 1
    if n <= 1:
        return np.array([defocus]), None
    centres = np.linspace(df.min(), df.max(), n)
    weights = np.maximum(0.0, 1.0 - np.abs(df[None, :] - centres[:, None]) / (centres[1] - centres[0]))
    return centres, weights.astype(np.float32)


def rotate_projection(img: np.ndarray, geom: TiltGeometry, t: int, angle: float) -> np.ndarray:
    """A sheared-frame projection ``[W, Y]`` of tilt ``t`` rotated by ``angle`` (radians) in the
    detector plane about the tilt axis's centre ``(u, y) = (0, (Y - 1) / 2)`` (cubic spline, periodic):
    the value at ``(u, y)`` is the input's at ``(u cos a + y sin a, -u sin a + y cos a)``."""
    from scipy.ndimage import map_coordinates

    c, xc, yc = float(geom.cos[t]), 0.5 * (geom.shape[2] - 1), 0.5 * (img.shape[1] - 1)
    w = (np.arange(geom.width) - xc + 0.5 * geom.width) % geom.width - 0.5 * geom.width
    u, y = (w * c)[:, None], (np.arange(img.shape[1]) - yc)[None, :]
    ca, sa = math.cos(angle), math.sin(angle)
    coords = np.stack(np.broadcast_arrays((u * ca + y * sa) / c + xc, -u * sa + y * ca + yc))
    return map_coordinates(img, coords, order=3, mode="grid-wrap").astype(np.float32)


def _image_projections(s: np.ndarray, geom: TiltGeometry, rng: np.random.Generator, spacing: float,
                       p: TiltImaging) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Image Fourier projections ``s`` ``[K, T, Y]`` (CTF in defocus strips, envelopes, dose,
    shift, phase flip; ``s`` is overwritten) and draw their noise (same layout, unit scale):
    ``(signal, noise, power, record)``, both in the ``[K, T, y]`` mixed domain, ``power[k, t]``
    the noise's ``E|n[k, t, y]|^2``."""
    k_n, t_n, y_n = s.shape
    exposure = exposure_at(acquisition_order(geom.angles, p.scheme), p.total_dose)
    defocus = (p.defocus_um + rng.normal(0.0, p.defocus_jitter_um, t_n)) * 1e4  # Angstrom
    shifts = rng.normal(0.0, p.misalignment_px / math.sqrt(2.0), (t_n, 2))  # (u, y) detector pixels
    rotations = np.radians(rng.normal(0.0, p.rotation_deg, t_n)) if p.rotation_deg > 0 else np.zeros(t_n)
    kw = scipy.fft.rfftfreq(geom.width).astype(np.float32)
    ky = scipy.fft.fftfreq(y_n).astype(np.float32)
    band = geom.band()
    s = scipy.fft.fft(s, axis=2, overwrite_x=True, workers=-1)
    noise = np.zeros_like(s)
    power = np.zeros((k_n, t_n))
    n_strips = 0
    for t in range(t_n):
        c = float(geom.cos[t])
        nb = min(k_n, int(math.floor(0.5 * c * geom.width)) + 1)
        ku = kw[:nb, None] / np.float32(c * spacing)  # 1/Angstrom on the detector
        kya = ky[None, :] / np.float32(spacing)
        k = np.sqrt(ku * ku + kya * kya)
        phi = np.arctan2(kya, ku)
        common = band[:nb, t, None] * np.exp(np.float32(-p.bfactor / 4.0) * k * k) * exposure_filter(k, exposure[t])
        common = common * np.exp((-2j * math.pi) * (kw[:nb, None] * (shifts[t, 0] / c) + ky[None, :] * shifts[t, 1]))
        spec = s[:nb, t] * common.astype(np.complex64)
        s[:, t] = 0

        def transfer(df: float) -> np.ndarray:
            h = ctf(k, phi, df, p.astigmatism_um * 1e4, math.radians(p.astig_angle_deg))
            h *= coherence_envelope(k, df, p.defocus_spread)
            if not p.ctf_signed:  # phase-flipped (per strip, as strip-wise CTF correction does)
                np.abs(h, out=h)
            return spec * h.astype(np.complex64)

        def image(part: np.ndarray) -> np.ndarray:
            full = np.zeros((k_n, y_n), np.complex64)
            full[:nb] = part
            return scipy.fft.irfftn(full, s=(y_n, geom.width), axes=(1, 0), workers=-1)

        centres, weights = _strips(geom, t, float(defocus[t]), spacing)
        n_strips = max(n_strips, len(centres))
        if weights is None and not rotations[t]:
            s[:nb, t] = transfer(float(centres[0]))
        else:  # in the detector plane: strips blended, then rotated
            if weights is None:
                img = image(transfer(float(centres[0])))
            else:
                img = sum(image(transfer(float(df))) * wt[:, None] for df, wt in zip(centres, weights))
            if rotations[t]:
                img = rotate_projection(img, geom, t, float(rotations[t]))
            s[:nb, t] = scipy.fft.rfftn(img, axes=(1, 0), workers=-1)[:nb]
        # shot noise: white per detector pixel, relative variance 1 / (kept electrons); in the
        # sheared frame a band-limited white spectrum of density 1 / cos t (a phase flip leaves it white)
        sd = math.sqrt(geom.width * y_n * math.exp(p.ice / c) / c / 2.0)
        z = rng.standard_normal((2, nb, y_n), dtype=np.float32)
        noise[:nb, t] = (z[0] + 1j * z[1]) * (band[:nb, t, None] * np.float32(sd))
        power[:nb, t] = 2.0 * sd**2 * band[:nb, t].astype(np.float64) ** 2 / y_n  # after the y inverse FFT
    s = scipy.fft.ifft(s, axis=2, overwrite_x=True, workers=-1)
    noise = scipy.fft.ifft(noise, axis=2, overwrite_x=True, workers=-1)
    rec = dict(tilt_exposure_max=round(float(exposure.max()), 2), defocus_strips=n_strips,
               rotation_rms_deg=round(float(np.degrees(np.sqrt(np.mean(rotations**2)))), 3),
               misalignment_rms_px=round(float(np.sqrt(np.mean(np.sum(shifts**2, 1)))), 3))
    return s, noise, power, rec


def image_tilt_series(volume: np.ndarray, rng: np.random.Generator, spacing: float, snr: float, p: TiltImaging,
                      not_reference: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Image a density ``[Z, Y, X]`` through a tilt series and reconstruct it.

    Each projection gets its CTF (own defocus, astigmatism), coherence and B-factor
    envelopes, the exposure filter of its accumulated dose, a residual shift and shot noise
    (equal dose per tilt, fewer electrons through thicker ice at high tilt); the series is
    reconstructed by weighted back-projection or SIRT. Signal and noise are reconstructed
    apart (both linear) and the noise scaled so that the reconstruction's signal variance
    (without ``not_reference`` voxels) over its noise variance is ``snr``.

    Args:
        volume: density, float32 ``[z, y, x]``. rng: the tomogram's random stream.
        spacing: Angstrom per voxel. snr: signal / noise variance of the reconstruction.
        p: the tilt series' settings. not_reference: voxels left out of the signal variance.

    Returns:
        ``(tomogram, record)``: float32 ``[z, y, x]`` with particles positive (the caller sets
        the contrast), and the values drawn here for the manifest.
    """
    import torch

    angles = tilt_angles(p.max_tilt, p.step)
    cmin = float(np.cos(np.radians(np.abs(angles).max())))
    # CTF delocalisation (lambda df k_max) and the largest shifts, in sheared-frame samples
    deloc = WAVELENGTH_300KV * (p.defocus_um + p.astigmatism_um) * 1e4 * 0.5 / spacing**2
    reach = deloc + 3.0 * p.misalignment_px + 1.5 * math.radians(p.rotation_deg) * volume.shape[1]
    geom = TiltGeometry.for_volume(volume.shape, angles, 16.0 + 2.0 * reach / cmin)
    e = geom.shear()
    sig = project_fourier(np.asarray(volume, np.float32), geom, e)
    sig, noise, power, rec = _image_projections(sig, geom, rng, spacing, p)
    if p.reconstruction == "sirt":
        m = sirt_matrix(geom, p.sirt_iterations, e)

        def recon(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
            return backproject_fourier(torch.matmul(m, torch.from_numpy(x)).numpy(), geom, e, out=out)

        n_var = noise_variance(geom, power, e, matrix=m)
    else:
        wt = weighting(geom, p.exact_weighting, p.window)

        def recon(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
            return backproject_fourier(x, geom, e, wt, out=out)

        n_var = noise_variance(geom, power, weight=wt)
    out = recon(sig)
    del sig
    ref = out if not_reference is None or not not_reference.any() else out[~not_reference]
    s_var = float(ref.var()) or 1.0
    noise *= np.float32(math.sqrt(s_var / snr / n_var))  # the noise's variance in the reconstruction, known ahead
    recon(noise, out=out)
    rec.update(n_tilts=len(angles), padded_width=geom.width)
    return out, rec

"""Imaging of a simulated scene: the optics shared by both imaging models, and the Fourier model.

The optics (:func:`ctf`, :func:`coherence_envelope`, :func:`exposure_filter`) act on a
projection's 2D spectrum; the tilt-series chain (:mod:`cryo3d.synth.tilt_imaging`) applies
them per projection. The **Fourier model** (:func:`image`, what the legacy presets use)
images the whole volume at once; everything happens in one Fourier pass on the ``rfftn``
grid (frequencies in 1/Angstrom):

* missing wedge: a tilt series up to ``+/-tilt`` degrees about the y axis keeps only
  frequencies with ``|kz| <= tan(tilt) |kx|`` (the ky axis is on every tilt's slice);
* CTF: ``sqrt(1 - A^2) sin(chi) + A cos(chi)``, ``chi = pi lambda defocus k^2`` at 300 kV,
  phase-flipped (its absolute value) or with its sign reversals kept;
* envelope ``exp(-B k^2 / 4)`` and an extra Gaussian blur along z (anisotropic resolution);
* noise: Gaussian, through the wedge, the square-rooted envelope and the z blur, with a
  coloured spectrum ``(1 + (k / K_COLOUR)^2)^(-a/4)`` in amplitude, scaled to the SNR
  (signal variance / noise variance over the volume).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

#: Electron wavelength at 300 kV in Angstrom.
WAVELENGTH_300KV = 0.0197
#: Amplitude contrast fraction of the CTF.
AMPLITUDE_CONTRAST = 0.07
#: Corner frequency (1/Angstrom) of the noise colour.
K_COLOUR = 0.02
#: Spherical aberration (Angstrom) of the objective lens (2.7 mm).
CS_ANGSTROM = 2.7e7
#: Illumination semi-angle (radians) of the spatial-coherence envelope.
ILLUMINATION_APERTURE = 2e-5


def ctf(k: np.ndarray, phi: np.ndarray, defocus: float, astigmatism: float = 0.0, astig_angle: float = 0.0,
        amplitude_contrast: float = AMPLITUDE_CONTRAST, cs: float = CS_ANGSTROM,
        wavelength: float = WAVELENGTH_300KV) -> np.ndarray:
    """The signed contrast transfer ``sin(chi + asin(A))`` (positive at low frequency, as the density).

    ``chi = pi lambda df(phi) k^2 - pi/2 Cs lambda^3 k^4`` with the astigmatic defocus
    ``df(phi) = defocus + astigmatism / 2 cos(2 (phi - astig_angle))`` (underfocus positive).

    Args:
        k: spatial frequency (1/Angstrom). phi: its direction (radians).
        defocus: mean defocus (Angstrom). astigmatism: major minus minor defocus (Angstrom).
        astig_angle: direction of the major defocus (radians).
    """
    df = defocus + 0.5 * astigmatism * np.cos(2.0 * (phi - astig_angle))
    k2 = k * k
    chi = (math.pi * wavelength) * df * k2 - (0.5 * math.pi * cs * wavelength**3) * k2 * k2
    return np.sin(chi + math.asin(amplitude_contrast))


def coherence_envelope(k: np.ndarray, defocus: float, defocus_spread: float, aperture: float = ILLUMINATION_APERTURE,
                       cs: float = CS_ANGSTROM, wavelength: float = WAVELENGTH_300KV) -> np.ndarray:
    """Temporal ``exp(-(pi lambda delta)^2 k^4 / 2)`` times spatial
    ``exp(-(pi alpha / lambda)^2 (Cs lambda^3 k^3 - df lambda k)^2)`` coherence envelope.

    Args:
        k: spatial frequency (1/Angstrom). defocus, defocus_spread: Angstrom.
        aperture: illumination semi-angle ``alpha`` (radians).
    """
    k2 = k * k
    temporal = -0.5 * (math.pi * wavelength * defocus_spread) ** 2 * k2 * k2
    spatial = -((math.pi * aperture / wavelength) ** 2) * (cs * wavelength**3 * k2 * k - defocus * wavelength * k) ** 2
    return np.exp(temporal + spatial)


def critical_exposure(k: np.ndarray) -> np.ndarray:
    """Grant & Grigorieff (2015) critical exposure ``0.245 k^-1.665 + 2.81`` (e/A^2), ``k`` in 1/Angstrom."""
    return 0.245 * np.power(np.maximum(k, 1e-6), -1.665) + 2.81


def exposure_filter(k: np.ndarray, exposure: float) -> np.ndarray:
    """Amplitude left after an accumulated ``exposure`` (e/A^2): ``exp(-N / (2 N_e(k)))``."""
    return np.exp(-float(exposure) / (2.0 * critical_exposure(k)))


def imaging_filters(shape: tuple[int, int, int], spacing: float, tilt_deg: float, defocus_um: float,
                    bfactor: float, z_blur: float = 0.0, noise_colour: float = 0.0,
                    ctf_signed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(signal filter, noise filter) on the ``rfftn`` grid of ``shape`` (``[z, y, x]``).

    Args:
        spacing: Angstrom per voxel. tilt_deg: maximum tilt about y. defocus_um: CTF
            defocus (0: no CTF). bfactor: envelope B-factor (Angstrom^2). z_blur: extra
            Gaussian sigma along z (Angstrom). noise_colour: noise power exponent (0: white).
        ctf_signed: keep the CTF's sign reversals (not phase-flipped).
    """
    kz = scipy.fft.fftfreq(shape[0], d=spacing).astype(np.float32)[:, None, None]
    ky = scipy.fft.fftfreq(shape[1], d=spacing).astype(np.float32)[None, :, None]
    kx = scipy.fft.rfftfreq(shape[2], d=spacing).astype(np.float32)[None, None, :]
    k2 = kz**2 + ky**2 + kx**2
    wedge = np.abs(kz) <= math.tan(math.radians(tilt_deg)) * np.abs(kx)
    wedge[0, :, 0] = True
    # log of the (real, positive) factors shared by signal and noise, one exp at the end
    log_sig = k2 * np.float32(-bfactor / 4.0)
    if z_blur > 0:
        log_sig += np.float32(-2.0 * math.pi**2 * z_blur**2) * kz**2
    log_noise = 0.5 * log_sig
    if z_blur > 0:  # the z blur acts on the noise as on the signal, not square-rooted
        log_noise += np.float32(-math.pi**2 * z_blur**2) * kz**2
    if noise_colour:
        log_noise -= np.float32(noise_colour / 4.0) * np.log1p(k2 * np.float32(1.0 / K_COLOUR**2))
    sig = np.exp(log_sig)
    sig *= wedge
    if defocus_um > 0:
        # sqrt(1 - A^2) sin(chi) + A cos(chi) = sin(chi + asin(A))
        chi = k2 * np.float32(math.pi * WAVELENGTH_300KV * defocus_um * 1e4)
        chi += np.float32(math.asin(AMPLITUDE_CONTRAST))
        ctf = np.sin(chi, out=chi)
        if not ctf_signed:
            ctf = np.abs(ctf, out=ctf)
        sig *= ctf
    noise = np.exp(log_noise, out=log_noise)
    noise *= wedge
    return sig, noise


def image(volume: np.ndarray, rng: np.random.Generator, spacing: float, snr: float,
          not_reference: np.ndarray | None = None, **filter_args) -> np.ndarray:
    """The filtered scene plus noise at ``snr``, particles positive (the caller sets the contrast).

    The SNR is the filtered signal's variance over the volume (without the ``not_reference``
    voxels, e.g. carbon) over the noise variance; ``filter_args`` go to :func:`imaging_filters`.
    """
    shape = volume.shape
    sig_filter, noise_filter = imaging_filters(shape, spacing, **filter_args)
    F = scipy.fft.rfftn(volume, workers=-1)
    F[0, 0, 0] = 0.0
    F *= sig_filter
    signal = scipy.fft.irfftn(F, s=shape, workers=-1).astype(np.float32, copy=False)
    del F
    noise = rng.standard_normal(shape, dtype=np.float32)
    N = scipy.fft.rfftn(noise, workers=-1)
    N *= noise_filter
    noise = scipy.fft.irfftn(N, s=shape, workers=-1).astype(np.float32, copy=False)
    del N
    ref = signal if not_reference is None or not_reference.all() else signal[~not_reference]
    s_std = float(ref.std()) or 1.0
    noise *= s_std / math.sqrt(snr) / (float(noise.std()) or 1.0)
    signal += noise
    return signal

"""Imaging of a simulated scene: missing wedge, CTF, envelope, anisotropic blur, coloured noise.

Everything happens in one Fourier pass on the ``rfftn`` grid (frequencies in 1/Angstrom):

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

"""Tilt-series imaging: project the scene at each tilt, image each projection, reconstruct.

Geometry (the project's conventions: arrays ``[z, y, x]``, voxel ``i`` centred at
``i * spacing``): the tilt axis is y through the volume's centre, ``zc = (Z - 1) / 2``,
``xc = (X - 1) / 2``; a projection at tilt ``t`` integrates the density along the beam and
its detector coordinate is ``u = (x - xc) cos t + (z - zc) sin t`` (pixel = voxel).

The projector works in the **sheared frame** ``w = u / cos t = (x - xc) + (z - zc) tan t``:
per z slice, the x rows shifted by ``(z - zc) tan t`` and summed over z, times the path
length ``1 / cos t`` of the ray through one slice. A shift is a phase ramp on the x-rfft
grid, so one batched matrix product per x frequency projects every tilt at once::

    S[k, t, y] = sum_z E[k, t, z] V[k, z, y],   E = exp(-2 pi i k (z - zc) tan t) / cos t

A detector that samples ``u`` at one pixel per voxel is, in the sheared frame, a band limit
``|k_w| <= cos(t) / 2`` (its Nyquist at ``k_u = k_w / cos t``): the band-limited sheared
frame holds the projection exactly (oversampled by ``1 / cos t``), so nothing is resampled
and every detector-frame filter (CTF, dose, noise spectrum, ramp) is a multiplier at
``k_u = k_w / cos t``. Back-projection is the exact adjoint (``conj(E)^T``). The x axis is
padded (the rfft length ``width``) so that no shift wraps; the output is cropped back. With
no resampling and shears about ``zc``, a particle at voxel centre ``c`` reconstructs at ``c``.

The matrix products run in torch (complex64 batched matmul is an order of magnitude faster
than NumPy's on CPU); everything else is NumPy/SciPy, float32 / complex64 throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
import torch

#: Most complex64 values held per chunk of the volume while projecting / back-projecting.
CHUNK_VALUES = 8_000_000
#: Relative width of the raised-cosine roll-off below the detector's Nyquist frequency.
BAND_ROLLOFF = 0.1


def tilt_angles(max_tilt: float, step: float) -> np.ndarray:
    """Tilt angles (degrees), ascending: ``0, +/-step, ...`` up to ``+/-max_tilt``.

    Raises:
        ValueError: if ``step`` is not positive or ``max_tilt`` is not in ``[0, 89]``.
    """
    if not step > 0 or not 0 <= max_tilt <= 89:
        raise ValueError(f"tilt series needs a step > 0 and a maximum tilt in [0, 89] degrees, "
                         f"got step {step!r}, max {max_tilt!r}")
    n = int(math.floor(max_tilt / step + 1e-9))
    return np.arange(-n, n + 1, dtype=np.float64) * float(step)


def acquisition_order(angles: np.ndarray, scheme: str) -> np.ndarray:
    """Position of each tilt in the acquisition (0 = first exposed).

    ``dose-symmetric`` (Hagen et al. 2017): 0, then pairs alternating sides at growing tilt
    (+1, -1, -2, +2, +3, -3, ... steps); ``bidirectional``: 0 up to the maximum, then the
    negative side from -1 step down.

    Raises:
        ValueError: for an unknown scheme.
    """
    a = np.asarray(angles, float)
    n = np.rint(a / (np.min(np.abs(a[a != 0])) if np.any(a != 0) else 1.0)).astype(int)
    if scheme == "dose-symmetric":
        first_positive = np.abs(n) % 2 == 1
        key = 2 * np.abs(n) + np.where((n > 0) == first_positive, 0, 1)
    elif scheme == "bidirectional":
        key = np.where(n >= 0, n, n.max(initial=0) - n)
    else:
        raise ValueError(f"tilt scheme must be 'dose-symmetric' or 'bidirectional', got {scheme!r}")
    order = np.empty(len(a), np.int64)
    order[np.argsort(key, kind="stable")] = np.arange(len(a))
    return order


def exposure_at(order: np.ndarray, total_dose: float) -> np.ndarray:
    """Accumulated exposure (e/A^2) at the middle of each tilt's exposure, equal dose per tilt."""
    per = float(total_dose) / len(order)
    return (np.asarray(order, float) + 0.5) * per


@dataclass(frozen=True)
class TiltGeometry:
    """A single-axis tilt series of a volume: its shape, tilts and the padded x length.

    Attributes:
        shape: ``(Z, Y, X)`` of the volume.
        angles: tilts in degrees ``[T]``.
        width: rfft length of the padded x axis (the sheared frame's extent).
    """

    shape: tuple[int, int, int]
    angles: np.ndarray
    width: int

    @classmethod
    def for_volume(cls, shape: tuple[int, int, int], angles: np.ndarray, margin: float = 16.0) -> "TiltGeometry":
        """The geometry with x padded by the largest shear plus ``margin`` sheared-frame samples a side."""
        z, _, x = (int(s) for s in shape)
        a = np.asarray(angles, float)
        smax = 0.5 * (z - 1) * math.tan(math.radians(float(np.abs(a).max(initial=0.0))))
        width = scipy.fft.next_fast_len(int(x + 2 * math.ceil(smax + margin)), real=True)
        return cls((z, int(shape[1]), x), a, int(width))

    @property
    def n_freq(self) -> int:
        return self.width // 2 + 1

    @property
    def cos(self) -> np.ndarray:
        return np.cos(np.radians(self.angles))

    def shear(self) -> torch.Tensor:
        """``E [K, T, Z]`` complex64: the projector per x frequency (phase ramps / cos t)."""
        z = np.arange(self.shape[0], dtype=np.float64) - 0.5 * (self.shape[0] - 1)
        k = scipy.fft.rfftfreq(self.width)
        tan = np.tan(np.radians(self.angles))
        phase = (-2.0 * math.pi) * k[:, None, None] * (tan[None, :, None] * z[None, None, :])
        e = np.exp(1j * phase) / self.cos[None, :, None]
        return torch.from_numpy(e.astype(np.complex64))

    def band(self) -> np.ndarray:
        """``[K, T]`` the detector's band limit in the sheared frame: 1 below ``0.9 cos(t) / 2``,
        a raised-cosine roll-off to 0 at the detector's Nyquist ``cos(t) / 2``."""
        ku = scipy.fft.rfftfreq(self.width)[:, None] / self.cos[None, :]  # cycles per detector pixel
        r = np.clip((ku / 0.5 - (1 - BAND_ROLLOFF)) / BAND_ROLLOFF, 0.0, 1.0)
        return (0.5 + 0.5 * np.cos(math.pi * r)).astype(np.float32)


def _chunks(n: int, per: int) -> list[slice]:
    per = max(1, per)
    return [slice(s, min(s + per, n)) for s in range(0, n, per)]


def project_fourier(vol: np.ndarray, geom: TiltGeometry, e: torch.Tensor | None = None) -> np.ndarray:
    """Projections of ``vol`` ``[Z, Y, X]`` as ``[K, T, Y]`` complex64 (x-rfft of the sheared frame)."""
    z, y, _ = geom.shape
    e = geom.shear() if e is None else e
    out = np.empty((geom.n_freq, len(geom.angles), y), np.complex64)
    for ys in _chunks(y, CHUNK_VALUES // (z * geom.n_freq)):
        f = scipy.fft.rfft(vol[:, ys, :], n=geom.width, axis=2, workers=-1).astype(np.complex64, copy=False)
        f = torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1)))  # [K, Z, y]
        out[:, :, ys] = torch.matmul(e, f).numpy()
    return out


def backproject_fourier(proj: np.ndarray, geom: TiltGeometry, e: torch.Tensor | None = None) -> np.ndarray:
    """The adjoint of :func:`project_fourier`: ``[K, T, Y]`` complex64 to a ``[Z, Y, X]`` float32 volume."""
    z, y, x = geom.shape
    e = geom.shear() if e is None else e
    eh = e.conj().transpose(1, 2).contiguous()  # [K, Z, T]
    out = np.empty((z, y, x), np.float32)
    for ys in _chunks(y, CHUNK_VALUES // (z * geom.n_freq)):
        p = torch.from_numpy(np.ascontiguousarray(proj[:, :, ys]))
        b = torch.matmul(eh, p).numpy()  # [K, Z, y]
        v = scipy.fft.irfft(b, n=geom.width, axis=0, workers=-1)[:x]  # [X, Z, y]
        out[:, ys, :] = v.transpose(1, 2, 0)
    return out


def project(vol: np.ndarray, geom: TiltGeometry) -> np.ndarray:
    """Real projections ``[T, Y, W]`` of ``vol`` in the sheared frame (``w = (x - xc) + (z - zc) tan t``
    at padded index ``x + (z - zc) tan t``, modulo ``width``)."""
    f = project_fourier(vol, geom)
    return scipy.fft.irfft(f, n=geom.width, axis=0, workers=-1).astype(np.float32).transpose(1, 2, 0)


def backproject(proj: np.ndarray, geom: TiltGeometry) -> np.ndarray:
    """The exact adjoint of :func:`project`: ``[T, Y, W]`` to ``[Z, Y, X]``."""
    f = scipy.fft.rfft(np.asarray(proj, np.float32), axis=2, workers=-1).astype(np.complex64)
    return backproject_fourier(np.ascontiguousarray(f.transpose(2, 0, 1)), geom)


def weighting(geom: TiltGeometry, exact: bool = False, window: str = "ram-lak") -> np.ndarray:
    """``[K, T]`` weighted back-projection filter along each projection's u axis, band limit included.

    ``exact=False``: the ramp ``|k_u| dtheta`` (R-weighting), floored at ``1 / (D T)`` (its
    value where every tilt's Fourier slice overlaps: ``D`` = thickness ``Z``); ``exact=True``:
    Radermacher's exact weighting ``1 / (D sum_j sinc(D k_u sin(t_j - t)))``, which equals the
    ramp where slices do not overlap. ``window``: apodisation ``ram-lak`` (none), ``cosine``
    or ``hamming`` over ``k_u`` up to the detector's Nyquist.

    Raises:
        ValueError: for an unknown window.
    """
    ku = np.abs(scipy.fft.rfftfreq(geom.width))[:, None] / geom.cos[None, :]  # cycles / detector px
    d, t = float(geom.shape[0]), len(geom.angles)
    if exact:
        s = np.sin(np.radians(geom.angles[None, :] - geom.angles[:, None]))  # [T, T]
        w = np.empty_like(ku)
        for i in range(t):
            w[:, i] = 1.0 / (d * np.sinc(d * ku[:, i:i + 1] * s[i][None, :]).sum(axis=1))
    else:
        step = math.radians(float(np.median(np.diff(geom.angles)))) if t > 1 else math.pi
        w = np.maximum(ku * step, 1.0 / (d * t))
    r = np.clip(ku / 0.5, 0.0, 1.0)
    if window == "cosine":
        w = w * np.cos(0.5 * math.pi * r)
    elif window == "hamming":
        w = w * (0.54 + 0.46 * np.cos(math.pi * r))
    elif window != "ram-lak":
        raise ValueError(f"back-projection window must be 'ram-lak', 'cosine' or 'hamming', got {window!r}")
    return (w * geom.band()).astype(np.float32)


def wbp(proj: np.ndarray, geom: TiltGeometry, e: torch.Tensor | None = None, exact: bool = False,
        window: str = "ram-lak") -> np.ndarray:
    """Weighted back-projection of Fourier projections ``[K, T, Y]`` (see :func:`weighting`)."""
    return backproject_fourier(proj * weighting(geom, exact, window)[:, :, None], geom, e)


def sirt(proj: np.ndarray, geom: TiltGeometry, iterations: int, e: torch.Tensor | None = None) -> np.ndarray:
    """SIRT from Fourier projections ``[K, T, Y]``: ``x += C A^H R (p - A x)``, from ``x = 0``.

    ``A`` is the band-limited projector over the padded (periodic) width, so every ray
    crosses all ``Z`` slices: the inverse row sums are exactly ``R = cos t / Z`` and the
    inverse column sum ``C = 1 / sum_t (1 / cos t)``. By the push-through identity,
    ``n`` iterations give ``x = A^H G p`` with, per x frequency, the ``T x T`` matrix
    ``G = sum_{j<n} (I - C R A A^H)^j C R``: SIRT costs one back-projection and small
    matrix products instead of ``2 n`` projections. Linear in the data (no positivity).
    """
    e = geom.shear() if e is None else e
    band = torch.from_numpy(geom.band())[:, :, None]
    a = e * band  # [K, T, Z]
    b = torch.matmul(a, a.conj().transpose(1, 2))  # A A^H, [K, T, T]
    cr = torch.from_numpy((geom.cos / geom.shape[0] / np.sum(1.0 / geom.cos)).astype(np.float32))
    step = torch.eye(len(geom.angles), dtype=b.dtype) - cr[:, None] * b  # I - C R A A^H
    term = torch.diag(cr).to(b.dtype).expand_as(b).contiguous()
    g = torch.zeros_like(b)
    for _ in range(int(iterations)):
        g += term
        term = torch.matmul(step, term)
    q = torch.matmul(g, torch.from_numpy(np.ascontiguousarray(proj))) * band
    return backproject_fourier(q.numpy(), geom, e)


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
    ctf_signed: bool = False
    ice: float = 0.0
    reconstruction: str = "wbp"
    sirt_iterations: int = 10
    exact_weighting: bool = False
    window: str = "ram-lak"

    def __post_init__(self) -> None:
        if self.reconstruction not in ("wbp", "sirt"):
            raise ValueError(f"tilt-series reconstruction must be 'wbp' or 'sirt', got {self.reconstruction!r}")


def _image_projections(s: np.ndarray, geom: TiltGeometry, rng: np.random.Generator, spacing: float,
                       p: TiltImaging) -> tuple[np.ndarray, dict]:
    """Image Fourier projections ``s`` ``[K, T, Y]`` in place (CTF, envelopes, dose, shift, phase flip)
    and draw their noise (same layout, unit scale); both returned in the ``[K, T, y]`` mixed domain."""
    from cryo3d.synth.imaging import coherence_envelope, ctf, exposure_filter

    k_n, t_n, y_n = s.shape
    angles, cos = geom.angles, geom.cos
    exposure = exposure_at(acquisition_order(angles, p.scheme), p.total_dose)
    defocus = (p.defocus_um + rng.normal(0.0, p.defocus_jitter_um, t_n)) * 1e4  # Angstrom
    shifts = rng.normal(0.0, p.misalignment_px / math.sqrt(2.0), (t_n, 2))  # (u, y) detector pixels
    kw = scipy.fft.rfftfreq(geom.width).astype(np.float32)
    ky = scipy.fft.fftfreq(y_n).astype(np.float32)
    band = geom.band()
    s[:] = scipy.fft.fft(s, axis=2, workers=-1)
    noise = np.zeros_like(s)
    for t in range(t_n):
        c = float(cos[t])
        nb = min(k_n, int(math.floor(0.5 * c * geom.width)) + 1)
        ku = kw[:nb, None] / np.float32(c * spacing)  # 1/Angstrom on the detector
        kya = ky[None, :] / np.float32(spacing)
        k = np.sqrt(ku * ku + kya * kya)
        h = ctf(k, np.arctan2(kya, ku), float(defocus[t]), p.astigmatism_um * 1e4, math.radians(p.astig_angle_deg))
        env = np.exp(np.float32(-p.bfactor / 4.0) * k * k) * coherence_envelope(k, float(defocus[t]), p.defocus_spread)
        env *= exposure_filter(k, float(exposure[t]))
        flip = np.ones_like(h) if p.ctf_signed else np.sign(h)
        g = (band[:nb, t, None] * env * h * flip).astype(np.complex64)
        g *= np.exp((-2j * math.pi) * (kw[:nb, None] * (shifts[t, 0] / c) + ky[None, :] * shifts[t, 1])).astype(np.complex64)
        s[:nb, t] *= g
        s[nb:, t] = 0
        # shot noise: white per detector pixel, relative variance 1 / (kept electrons); in the
        # sheared frame a band-limited white spectrum of density 1 / cos t
        sd = math.sqrt(geom.width * y_n * math.exp(p.ice / c) / c / 2.0)
        z = rng.standard_normal((2, nb, y_n), dtype=np.float32)
        noise[:nb, t] = (z[0] + 1j * z[1]) * (band[:nb, t, None] * flip * np.float32(sd))
    s[:] = scipy.fft.ifft(s, axis=2, workers=-1)
    noise = scipy.fft.ifft(noise, axis=2, workers=-1).astype(np.complex64, copy=False)
    rec = dict(tilt_exposure_max=round(float(exposure.max()), 2),
               misalignment_rms_px=round(float(np.sqrt(np.mean(np.sum(shifts**2, 1)))), 3))
    return noise, rec


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
    from cryo3d.synth.imaging import WAVELENGTH_300KV

    angles = tilt_angles(p.max_tilt, p.step)
    cmin = float(np.cos(np.radians(np.abs(angles).max())))
    # CTF delocalisation (lambda df k_max) and the largest shifts, in sheared-frame samples
    deloc = WAVELENGTH_300KV * (p.defocus_um + p.astigmatism_um) * 1e4 * 0.5 / spacing**2
    geom = TiltGeometry.for_volume(volume.shape, angles, 16.0 + 2.0 * (deloc + 3.0 * p.misalignment_px) / cmin)
    e = geom.shear()
    sig = project_fourier(np.asarray(volume, np.float32), geom, e)
    noise, rec = _image_projections(sig, geom, rng, spacing, p)

    def recon(x: np.ndarray) -> np.ndarray:
        if p.reconstruction == "sirt":
            return sirt(x, geom, p.sirt_iterations, e)
        return wbp(x, geom, e, p.exact_weighting, p.window)

    out = recon(sig)
    del sig
    nrec = recon(noise)
    del noise
    ref = out if not_reference is None or not not_reference.any() else out[~not_reference]
    s_std = float(ref.std()) or 1.0
    out += nrec * np.float32(s_std / math.sqrt(snr) / (float(nrec.std()) or 1.0))
    rec.update(n_tilts=len(angles), padded_width=geom.width)
    return out, rec

"""Tilt-series geometry: the projector, its adjoint, weighted back-projection and SIRT.

The imaging of each projection (optics, dose, noise) is :mod:`cryo3d.synth.tilt_imaging`.

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

from typing import TYPE_CHECKING

import numpy as np
import scipy.fft

if TYPE_CHECKING:  # torch is imported where a product runs (cryo3d synth's startup stays light)
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
        import torch

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
    import torch

    z, y, _ = geom.shape
    e = geom.shear() if e is None else e
    out = np.empty((geom.n_freq, len(geom.angles), y), np.complex64)
    for ys in _chunks(y, CHUNK_VALUES // (z * geom.n_freq)):
        f = scipy.fft.rfft(vol[:, ys, :], n=geom.width, axis=2, workers=-1).astype(np.complex64, copy=False)
        f = torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1)))  # [K, Z, y]
        out[:, :, ys] = torch.matmul(e, f).numpy()
    return out


def backproject_fourier(proj: np.ndarray, geom: TiltGeometry, e: torch.Tensor | None = None,
                        weight: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """The adjoint of :func:`project_fourier`: ``[K, T, Y]`` complex64 (times ``weight`` ``[K, T]``
    when given, chunk by chunk) to a ``[Z, Y, X]`` float32 volume (added into ``out`` when given)."""
    import torch

    z, y, x = geom.shape
    e = geom.shear() if e is None else e
    eh = e.conj().transpose(1, 2).contiguous()  # [K, Z, T]
    add = out is not None
    out = np.empty((z, y, x), np.float32) if out is None else out
    for ys in _chunks(y, CHUNK_VALUES // (z * geom.n_freq)):
        p = proj[:, :, ys] if weight is None else proj[:, :, ys] * weight[:, :, None]
        p = torch.from_numpy(np.ascontiguousarray(p, dtype=np.complex64))
        b = torch.matmul(eh, p).numpy()  # [K, Z, y]
        v = scipy.fft.irfft(b, n=geom.width, axis=0, workers=-1)[:x]  # [X, Z, y]
        if add:
            out[:, ys, :] += v.transpose(1, 2, 0)
        else:
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
    return backproject_fourier(proj, geom, e, weighting(geom, exact, window))


def sirt_matrix(geom: TiltGeometry, iterations: int, e: torch.Tensor | None = None) -> torch.Tensor:
    """``[K, T, T]`` the filter that makes SIRT one back-projection (see :func:`sirt`).

    SIRT iterates ``x += C A^H R (p - A x)`` from ``x = 0``. ``A`` is the band-limited
    projector over the padded (periodic) width, so every ray crosses all ``Z`` slices: the
    inverse row sums are exactly ``R = cos t / Z`` and the inverse column sum
    ``C = 1 / sum_t (1 / cos t)``. By the push-through identity, ``n`` iterations give
    ``x = E^H B G p`` (``B`` the band limit) with, per x frequency, the ``T x T`` matrix
    ``G = sum_{j<n} (I - C R A A^H)^j C R``; this returns ``B G``.
    """
    import torch

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
    return g * band


def sirt(proj: np.ndarray, geom: TiltGeometry, iterations: int, e: torch.Tensor | None = None) -> np.ndarray:
    """SIRT of Fourier projections ``[K, T, Y]`` with ``iterations`` iterations, as one
    back-projection (:func:`sirt_matrix`); linear in the data (no positivity)."""
    import torch

    q = torch.matmul(sirt_matrix(geom, iterations, e), torch.from_numpy(np.ascontiguousarray(proj)))
    return backproject_fourier(q.numpy(), geom, e)


def noise_variance(geom: TiltGeometry, power: np.ndarray, e: torch.Tensor | None = None,
                   weight: np.ndarray | None = None, matrix: torch.Tensor | None = None) -> float:
    """Expected voxel variance of the reconstruction ``E^H F n`` of noise projections ``n`` that are
    independent across ``[K, T, Y]`` with ``E|n[k, t, y]|^2 = power[k, t]``; ``F`` is
    ``diag(weight)`` (WBP, :func:`weighting`) or ``matrix`` (SIRT, :func:`sirt_matrix`). The
    noise is stationary, so this is the whole volume's variance, without reconstructing it.
    """
    import torch

    if matrix is None:
        w = np.ones_like(power) if weight is None else weight
        per_k = np.sum(power * w.astype(np.float64) ** 2 / geom.cos[None, :] ** 2, axis=1)
    else:
        e = geom.shear() if e is None else e
        m = torch.matmul(e.conj().transpose(1, 2), matrix)  # [K, Z, T]
        per_k = ((m.abs() ** 2).double().numpy() @ power.astype(np.float64)[:, :, None])[..., 0].mean(1)
    # irfft: x = (Re X_0 + 2 Re sum_k X_k e^(...) + Re X_nyq) / W
    mult = np.full(geom.n_freq, 2.0)
    mult[0] = 0.5
    if geom.width % 2 == 0:
        mult[-1] = 0.5
    return float(np.sum(mult * per_k) / geom.width**2)

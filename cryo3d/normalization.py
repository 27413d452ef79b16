"""Intensity normalisation of tomograms: a robust z-score, the same for training and inference.

Each tomogram is centred on its median and scaled by its robust standard deviation
(1.4826 x the median absolute deviation), then clipped to +/- :data:`NORM_CLIP`. The patch
store, validation and ``predict`` all normalise through this module, so a network sees
the same intensities wherever it runs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAD_TO_STD", "NORM_CLIP", "NORM_SAMPLE_VOXELS", "normalize", "robust_stats"]

#: Normalised values are clipped to +/- this many robust standard deviations.
NORM_CLIP = 5.0
#: Robust statistics are estimated from at most this many voxels per tomogram.
NORM_SAMPLE_VOXELS = 2_000_000
#: MAD -> standard deviation for a Gaussian.
MAD_TO_STD = 1.4826


def robust_stats(data: np.ndarray, max_voxels: int = NORM_SAMPLE_VOXELS) -> tuple[float, float]:
    """Median and robust standard deviation (1.4826 x MAD) of a tomogram.

    Estimated on a regular strided subsample so that a memory-mapped tomogram is read
    sparsely and the result is deterministic.

    Args:
        data: tomogram ``[z, y, x]`` (any array NumPy can read, memory-mapped included).
        max_voxels: most voxels the subsample holds.

    Returns:
        ``(median, scale)``; the scale falls back to the plain standard deviation when the
        MAD is 0.

    Raises:
        ValueError: if the tomogram is constant (robust deviation 0).
    """
    n = int(np.prod(data.shape))
    step = max(1, int(np.ceil((n / max_voxels) ** (1 / 3))))
    sample = np.asarray(data[::step, ::step, ::step], dtype=np.float64).ravel()
    med = float(np.median(sample))
    mad = float(np.median(np.abs(sample - med))) * MAD_TO_STD
    if not np.isfinite(mad) or mad <= 0:
        std = float(sample.std())
        if std <= 0 or not np.isfinite(std):
            raise ValueError("tomogram is constant: nothing to normalise or find")
        mad = std
    return med, mad


def normalize(data: np.ndarray, median: float, scale: float, clip: float = NORM_CLIP) -> np.ndarray:
    """Robust z-score ``clip((x - median) / scale, -clip, clip)`` as float32."""
    out = (np.asarray(data, dtype=np.float32) - np.float32(median)) / np.float32(scale)
    return np.clip(out, -clip, clip, out=out)

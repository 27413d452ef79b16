"""Signed-distance shapes for the built-in simulator, in the particle's own frame.

Each shape is a function of local coordinates ``[..., 3]`` (Angstrom, particle frame,
axis order irrelevant but consistent) and the particle radius, returning a signed
distance (negative inside) in Angstrom. Densities are made smooth with a logistic edge,
so a rotated particle is anti-aliased without supersampling.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

SDF = Callable[[np.ndarray, float], np.ndarray]


def _norm(p: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(p * p, axis=-1))


def sphere(p: np.ndarray, r: float) -> np.ndarray:
    """Solid ball of radius ``r``."""
    return _norm(p) - r


def shell(p: np.ndarray, r: float, inner: float = 0.6) -> np.ndarray:
    """Hollow spherical shell between ``inner * r`` and ``r`` (apo-ferritin-like cage)."""
    d = _norm(p)
    return np.maximum(d - r, inner * r - d)


def thick_shell(p: np.ndarray, r: float) -> np.ndarray:
    """Capsid-like shell (virus-like particle) with a faint inner core."""
    d = _norm(p)
    cap = np.maximum(d - r, 0.78 * r - d)
    core = d - 0.3 * r
    return np.minimum(cap, core)


def two_lobes(p: np.ndarray, r: float) -> np.ndarray:
    """Two overlapping balls along the first local axis (beta-amylase-like dimer)."""
    a = p.copy()
    a[..., 0] -= 0.4 * r
    b = p.copy()
    b[..., 0] += 0.4 * r
    return np.minimum(_norm(a) - 0.6 * r, _norm(b) - 0.6 * r)


def two_lobes_large(p: np.ndarray, r: float) -> np.ndarray:
    """Ribosome-like: large subunit ball plus a flattened small subunit beside it."""
    a = p.copy()
    a[..., 0] += 0.22 * r
    large = _norm(a) - 0.72 * r
    b = p.copy()
    b[..., 0] -= 0.55 * r
    b[..., 1] *= 0.8
    small = _norm(b / np.array([0.6, 1.0, 1.0])) * 0.6 - 0.45 * r
    return np.minimum(large, small)


def four_lobes(p: np.ndarray, r: float) -> np.ndarray:
    """Tetramer of four balls at the corners of a square (beta-galactosidase-like)."""
    out = None
    for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        q = p.copy()
        q[..., 0] -= sx * 0.36 * r
        q[..., 1] -= sy * 0.36 * r
        d = _norm(q) - 0.5 * r
        out = d if out is None else np.minimum(out, d)
    return out


def ring(p: np.ndarray, r: float) -> np.ndarray:
    """Torus in the plane of the first two local axes (thyroglobulin-like ring)."""
    rho = np.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2)
    major, minor = 0.66 * r, 0.34 * r
    return np.sqrt((rho - major) ** 2 + p[..., 2] ** 2) - minor


def cylinder(p: np.ndarray, r: float) -> np.ndarray:
    """Short solid cylinder (radius 0.6 r, half-length 0.8 r) along the third local axis."""
    rho = np.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2)
    return np.maximum(rho - 0.6 * r, np.abs(p[..., 2]) - 0.8 * r)


SHAPES: dict[str, SDF] = {
    "sphere": sphere,
    "shell": shell,
    "thick_shell": thick_shell,
    "two_lobes": two_lobes,
    "two_lobes_large": two_lobes_large,
    "four_lobes": four_lobes,
    "dumbbell": four_lobes,
    "ring": ring,
    "cylinder": cylinder,
}


def get_shape(name: str) -> SDF:
    try:
        return SHAPES[name]
    except KeyError:
        raise ValueError(f"unknown particle shape {name!r}; known shapes are {sorted(SHAPES)}") from None


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniformly random rotation matrices ``[n, 3, 3]`` (from random unit quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )

"""Shape families of the simulator: per-particle random shapes, drawn in the particle's frame.

A :class:`Family` renders a batch of particles of one family at once (vectorised over
particles and voxels). It works in **radius units**: local coordinates ``p`` ``[n, M, 3]``
are divided by each particle's radius, so one family serves every size, and a family
draws its own per-particle parameters (lobe positions, shell thickness, surface
harmonics, ...) from the tomogram's random stream.

Three groups, kept apart on purpose:

* **training families** (:data:`HOLLOW_FAMILIES`, :data:`FILLED_FAMILIES`): what the
  randomised ``default`` preset draws from. A class whose own shape is hollow (a shell, a
  cage) draws hollow variants (thin and thick shells, with or without a core, bumpy,
  ellipsoidal, randomly knobbed); any other class draws filled ones (ellipsoids, random-blob unions,
  harmonic-perturbed spheres, elongated bodies, symmetric lobes). The class's own legacy
  shape (:mod:`cryo3d.synth.shapes`) is one more variant. So a model learns "a hollow or filled
  blob of this size", not one exact shape.
* **held-out families** (:data:`HELD_OUT`): protein- and virus-like shapes that only the
  ``ood`` and ``crowded12`` presets render (capsomer shells, subunit cages, rods,
  tetrahedral and cube clusters, stacked rings, ...). ``default`` never draws them, so
  those presets measure transfer to shapes a model has not seen.
* **crowders**: unlabelled proteins are drawn from the filled training families (or, with
  ``structures: pseudo-atomic``, mostly pseudo-atomic proteins).

The families are also the envelopes that :mod:`cryo3d.synth.pseudo_atomic` fills with
C-alpha chains: a pseudo-atomic protein has a family's shape and a protein's inner density.

Why hand-written: the shapes are signed-distance expressions evaluated on voxel grids,
which no library in the stack provides in a vectorised, per-particle-parameterised form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from cryo3d.synth.shapes import SHAPES

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class Family:
    """One shape family.

    Attributes:
        name: the family's name (what the manifest records per class).
        hollow: whether its particles are hollow (shell-, cage-like).
        held_out: rendered only by held-out presets (``ood``, ``crowded12``).
        draw: ``draw(rng, n) -> params``: per-particle parameters, arrays with leading ``n``.
        density: ``density(p, params, e) -> [n, M]`` density in ``[0, ~1]`` at local points
            ``p`` ``[n, M, 3]`` in radius units, ``e`` ``[n, 1]`` the edge width in radius units.
        cost: roughly how many ``[n, M]`` arrays one evaluation holds (sizes memory chunks).
    """

    name: str
    hollow: bool
    held_out: bool
    draw: Callable[[np.random.Generator, int], Params]
    density: Callable[[np.ndarray, Params, np.ndarray], np.ndarray]
    cost: int = 4


def solid(sdf: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Density ``~1`` inside (``sdf < 0``), ``~0`` outside, a logistic edge of width ``e``."""
    return 0.5 * (1.0 - np.tanh(sdf / (2.0 * e)))


def _norm(p: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("...i,...i->...", p, p))


def _unit_vectors(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    v = rng.normal(size=shape + (3,))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def fibonacci_sphere(k: int) -> np.ndarray:
    """``k`` nearly evenly spread unit vectors ``[k, 3]`` (golden-angle spiral)."""
    i = np.arange(k) + 0.5
    z = 1.0 - 2.0 * i / k
    rho = np.sqrt(1.0 - z * z)
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], -1)


def lobes_sdf(p: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Union of balls: ``min_k |p - c_k| - r_k``.

    Args:
        p: ``[n, M, 3]`` points.
        centres: ``[n or 1, K, 3]`` ball centres.
        radii: ``[n or 1, K]`` ball radii (a negative radius switches a ball off).
    """
    # |p - c|^2 = |p|^2 + (|c|^2 - 2 p.c): the K-wide part is one batched matmul
    cross = np.matmul(p, np.swapaxes(centres, 1, 2) * -2.0)
    cross += np.sum(centres * centres, -1)[:, None, :]
    p2 = np.einsum("nmi,nmi->nm", p, p)
    if np.all(radii == radii[:, :1]):  # equal balls: the nearest centre decides, one sqrt
        d2 = np.min(cross, axis=-1) + p2
        return np.sqrt(np.maximum(d2, 0.0)) - radii[:, None, 0]
    cross += p2[..., None]
    return np.min(np.sqrt(np.maximum(cross, 0.0)) - radii[:, None, :], axis=-1)


def ellipsoid_sdf(p: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Approximate signed distance to an ellipsoid with semi-axes ``axes`` ``[n, 3]``."""
    a = axes[:, None, :]
    k0 = _norm(p / a)
    k1 = np.maximum(_norm(p / (a * a)), 1e-6)
    return k0 * (k0 - 1.0) / k1  # a close bound near the surface (exact on a sphere)


def _sphere_harmonic(p: np.ndarray, prm: Params) -> np.ndarray:
    """A smooth random function on the unit sphere in ``[-1, 1]``: sum of plane waves of ``p/|p|``."""
    u = p / np.maximum(_norm(p), 1e-6)[..., None]
    arg = np.matmul(u, np.swapaxes(prm["hw"], 1, 2)) + prm["hphase"][:, None, :]
    return np.einsum("nmk,nk->nm", np.cos(arg), prm["hc"])


def _draw_harmonic(rng: np.random.Generator, n: int, k: int = 3) -> Params:
    c = rng.uniform(0.3, 1.0, size=(n, k))
    return {
        "hw": _unit_vectors(rng, (n, k)) * rng.uniform(2.0, 5.0, size=(n, k, 1)),
        "hphase": rng.uniform(0, 2 * math.pi, size=(n, k)),
        "hc": c / c.sum(1, keepdims=True),
    }


# ---------------------------------------------------------------- training: filled


def _ellipsoid_draw(rng, n):
    ax = rng.uniform(0.7, 1.0, size=(n, 3))
    return {"axes": ax / ax.max(1, keepdims=True)}


def _ellipsoid(p, prm, e):
    return solid(ellipsoid_sdf(p, prm["axes"]), e)


def _blobs_draw(rng, n, k=6):
    """A central blob plus 2-5 random ones, all inside the radius (irregular, lobed)."""
    r = rng.uniform(0.3, 0.55, size=(n, k))
    d = rng.uniform(0.15, 0.5, size=(n, k))
    c = _unit_vectors(rng, (n, k)) * d[..., None]
    r = np.minimum(r, 1.0 - d)
    c[:, 0] = 0.0
    r[:, 0] = rng.uniform(0.5, 0.72, size=n)
    active = np.arange(k)[None] < rng.integers(3, k + 1, size=(n, 1))
    return {"centres": c, "radii": np.where(active, r, -10.0)}


def _blobs(p, prm, e):
    return solid(lobes_sdf(p, prm["centres"], prm["radii"]), e)


def _harmonic_draw(rng, n):
    prm = _draw_harmonic(rng, n)
    prm["amp"] = rng.uniform(0.06, 0.18, size=n)
    return prm


def _harmonic(p, prm, e):
    r = 1.0 - prm["amp"][:, None] * (1.0 - _sphere_harmonic(p, prm))
    return solid(_norm(p) - r, e)


def _elongated_draw(rng, n):
    return {"axes": np.stack([np.ones(n), rng.uniform(0.4, 0.65, n), rng.uniform(0.4, 0.65, n)], -1)}


#: Symmetric lobe arrangements of the training ``lobes`` family: line, triangle, square.
_LOBE_LAYOUTS = np.array([
    [[1, 0, 0], [-1, 0, 0], [0, 0, 0], [0, 0, 0]],
    [[1, 0, 0], [-0.5, 0.866, 0], [-0.5, -0.866, 0], [0, 0, 0]],
    [[0.707, 0.707, 0], [0.707, -0.707, 0], [-0.707, 0.707, 0], [-0.707, -0.707, 0]],
])
_LOBE_COUNTS = np.array([2, 3, 4])


def _lobes_draw(rng, n):
    lay = rng.integers(0, len(_LOBE_LAYOUTS), size=n)
    rl = rng.uniform(0.42, 0.6, size=n)
    c = _LOBE_LAYOUTS[lay] * (1.0 - rl)[:, None, None]
    r = np.where(np.arange(4)[None] < _LOBE_COUNTS[lay][:, None], rl[:, None], -10.0)
    return {"centres": c, "radii": r}


# ---------------------------------------------------------------- training: hollow


def _shell_draw(lo, hi):
    def draw(rng, n):
        inner = rng.uniform(lo, hi, size=n)
        core = np.where(rng.random(n) < 0.5, rng.uniform(0.1, 0.5, size=n), 0.0)
        return {"inner": inner, "core": core, "core_r": rng.uniform(0.2, 0.4, size=n) * inner}
    return draw


def _shell(p, prm, e):
    d = _norm(p)
    shell = solid(np.maximum(d - 1.0, prm["inner"][:, None] - d), e)
    return shell + prm["core"][:, None] * solid(d - prm["core_r"][:, None], e)


def _bumpy_shell_draw(rng, n):
    prm = _draw_harmonic(rng, n)
    prm["amp"] = rng.uniform(0.04, 0.1, size=n)
    prm["inner"] = rng.uniform(0.6, 0.82, size=n)
    return prm


def _bumpy_shell(p, prm, e):
    d = _norm(p)
    r = 1.0 - prm["amp"][:, None] * (1.0 - _sphere_harmonic(p, prm))
    return solid(np.maximum(d - r, prm["inner"][:, None] - d), e)


def _ellipsoid_shell_draw(rng, n):
    ax = rng.uniform(0.78, 1.0, size=(n, 3))
    return {"axes": ax / ax.max(1, keepdims=True), "inner": rng.uniform(0.6, 0.85, size=n)}


def _ellipsoid_shell(p, prm, e):
    outer = ellipsoid_sdf(p, prm["axes"])
    inner = ellipsoid_sdf(p, prm["axes"] * prm["inner"][:, None])
    return solid(np.maximum(outer, -inner), e)


def _knobby_shell_draw(rng, n, k=32):
    """Randomly placed knobs (12-32) on a sphere over a faint inner membrane."""
    rk = rng.uniform(0.12, 0.2, size=(n, 1))
    rc = np.minimum(rng.uniform(0.72, 0.85, size=(n, 1)), 1.0 - rk)
    active = np.arange(k)[None] < rng.integers(12, k + 1, size=(n, 1))
    return {"centres": _unit_vectors(rng, (n, k)) * rc[..., None], "radii": np.where(active, rk, -10.0),
            "inner": (rc - rk)[:, 0], "membrane": rng.uniform(0.3, 0.8, size=n)}


def _knobby_shell(p, prm, e):
    d = _norm(p)
    inner = prm["inner"][:, None]
    membrane = solid(np.maximum(d - inner, inner - 0.06 - d), e)
    return np.maximum(solid(lobes_sdf(p, prm["centres"], prm["radii"]), e), prm["membrane"][:, None] * membrane)


# ---------------------------------------------------------------- held out (ood, crowded12)


def _no_params(rng, n):
    return {"n": np.zeros(n)}


def _fixed_lobes(centres, radii, name, hollow=False, extra=None):
    """A family of fixed lobe clusters (per-particle jitter of the lobe radii only)."""
    c = np.asarray(centres, float)[None]
    r0 = np.asarray(radii, float)

    def draw(rng, n):
        return {"radii": r0[None] * rng.uniform(0.92, 1.05, size=(n, 1))}

    def density(p, prm, e):
        out = solid(lobes_sdf(p, c, prm["radii"]), e)
        if extra is not None:
            out = np.maximum(out, extra(p, e))
        return out

    return Family(name, hollow, True, draw, density, cost=3 + c.shape[1])


_CAPSOMERS = fibonacci_sphere(72)
_CAGE = fibonacci_sphere(24)
_TETRA = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / math.sqrt(3.0)
_OCTA = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
_CUBE = np.array([[sx, sy, sz] for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)]) / math.sqrt(3.0)
_RING7 = np.array([[math.cos(a), math.sin(a), 0.0] for a in np.arange(7) * 2 * math.pi / 7])


def _capsomer_membrane(p, e):
    d = _norm(p)
    return 0.6 * solid(np.maximum(d - 0.8, 0.74 - d), e)


def _stacked_discs(p, prm, e):
    ax = np.broadcast_to(np.array([0.88, 0.88, 0.28]), (p.shape[0], 3))
    a = p - np.array([0.0, 0.0, 0.36])
    b = p + np.array([0.0, 0.0, 0.36])
    return solid(np.minimum(ellipsoid_sdf(a, ax), ellipsoid_sdf(b, ax)), e)


def _rod_draw(rng, n):
    return {"rr": rng.uniform(0.3, 0.38, size=n)}


def _rod(p, prm, e):
    """Capsule along the third axis with a waist in the middle (rod-like thyroglobulin)."""
    rr = prm["rr"][:, None]
    z = p[..., 2]
    zc = np.clip(z, -(1.0 - rr), 1.0 - rr)
    rad = rr * (1.0 - 0.3 * np.exp(-(z / 0.22) ** 2))
    q = p.copy()
    q[..., 2] = z - zc
    return solid(_norm(q) - rad, e)


def _barrel(p, prm, e):
    """Proteasome-like: solid cylinder (radius 0.55, half-length 0.82) with an axial channel."""
    rho = np.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2)
    body = np.maximum(rho - 0.55, np.abs(p[..., 2]) - 0.82)
    return solid(np.maximum(body, 0.18 - rho), e)


def _y_shape(p, prm, e):
    """IgG-like: three ellipsoidal arms at 120 degrees in a plane, each 0.5 long."""
    out = None
    for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3):
        d = np.array([math.cos(a), math.sin(a), 0.0])
        perp = np.array([-math.sin(a), math.cos(a), 0.0])
        q = p - 0.5 * d
        loc = np.stack([q @ d, q @ perp, q[..., 2]], -1)
        s = ellipsoid_sdf(loc, np.broadcast_to(np.array([0.5, 0.24, 0.2]), (p.shape[0], 3)))
        out = s if out is None else np.minimum(out, s)
    return solid(out, e)


def _twisted_dimer(p, prm, e):
    """Two elongated bodies crossed at right angles, stacked along the third axis."""
    ax = np.broadcast_to(np.array([0.92, 0.38, 0.36]), (p.shape[0], 3))
    a = p - np.array([0.0, 0.0, 0.34])
    b = (p + np.array([0.0, 0.0, 0.34]))[..., [1, 0, 2]]
    return solid(np.minimum(ellipsoid_sdf(a, ax), ellipsoid_sdf(b, ax)), e)


def _legacy(name: str) -> Family:
    """A class's own shape from :mod:`cryo3d.synth.shapes` (radius 1), as a family without parameters."""
    sdf = SHAPES[name]
    hollow = name in ("shell", "thick_shell")
    return Family(f"own:{name}", hollow, False, _no_params, lambda p, prm, e: solid(sdf(p, 1.0), e), cost=6)


_RING_STACK = np.concatenate([_RING7 * 0.62 + [0, 0, 0.32], _RING7 * 0.62 - [0, 0, 0.32]])

FAMILIES: dict[str, Family] = {f.name: f for f in [
    # training, filled
    Family("ellipsoid", False, False, _ellipsoid_draw, _ellipsoid, cost=4),
    Family("blobs", False, False, _blobs_draw, _blobs, cost=10),
    Family("harmonic", False, False, _harmonic_draw, _harmonic, cost=8),
    Family("elongated", False, False, _elongated_draw, _ellipsoid, cost=4),
    Family("lobes", False, False, _lobes_draw, _blobs, cost=8),
    # training, hollow
    Family("thin_shell", True, False, _shell_draw(0.78, 0.9), _shell, cost=5),
    Family("thick_shell_var", True, False, _shell_draw(0.45, 0.75), _shell, cost=5),
    Family("bumpy_shell", True, False, _bumpy_shell_draw, _bumpy_shell, cost=8),
    Family("ellipsoid_shell", True, False, _ellipsoid_shell_draw, _ellipsoid_shell, cost=6),
    Family("knobby_shell", True, False, _knobby_shell_draw, _knobby_shell, cost=40),
    # held out
    _fixed_lobes(_CAPSOMERS * 0.86, np.full(72, 0.13), "capsomer_shell", True, _capsomer_membrane),
    _fixed_lobes(_CAGE * 0.74, np.full(24, 0.25), "subunit_cage", True),
    _fixed_lobes(_TETRA * 0.5, np.full(4, 0.5), "tetrahedral"),
    _fixed_lobes(_OCTA * 0.5, np.full(6, 0.48), "compact_cluster"),
    _fixed_lobes(_CUBE * 0.55, np.full(8, 0.42), "cube_cluster"),
    _fixed_lobes(_RING_STACK, np.full(14, 0.27), "ring_stack", True),
    _fixed_lobes([[0.25, 0, 0], [-0.5, 0.15, 0], [0.05, 0.62, 0.2]], [0.66, 0.45, 0.3], "three_lobes"),
    Family("stacked_discs", False, True, _no_params, _stacked_discs, cost=6),
    Family("rod", False, True, _rod_draw, _rod, cost=6),
    Family("barrel", True, True, _no_params, _barrel, cost=5),
    Family("y_shape", False, True, _no_params, _y_shape, cost=10),
    Family("twisted_dimer", False, True, _no_params, _twisted_dimer, cost=6),
]}
FAMILIES.update({f"own:{n}": _legacy(n) for n in SHAPES})

HOLLOW_FAMILIES = ("thin_shell", "thick_shell_var", "bumpy_shell", "ellipsoid_shell", "knobby_shell")
FILLED_FAMILIES = ("ellipsoid", "blobs", "harmonic", "elongated", "lobes")
#: Families only the held-out presets render (never drawn by ``default``).
HELD_OUT = frozenset(n for n, f in FAMILIES.items() if f.held_out)
#: Unlabelled proteins (crowders) are drawn from these.
CROWDER_FAMILIES = FILLED_FAMILIES


def shape_names() -> list[str]:
    """Every name a particle set's ``shape`` may take: legacy shapes and families."""
    return sorted(set(SHAPES) | {n for n in FAMILIES if not n.startswith("own:")})


def resolve(shape: str, where: str = "shape") -> Family:
    """The family that renders a class's ``shape`` as it is (legacy shape or family name)."""
    if shape in SHAPES:
        return FAMILIES[f"own:{shape}"]
    if shape in FAMILIES:
        return FAMILIES[shape]
    raise ValueError(f"{where}: unknown particle shape {shape!r}; known shapes are {shape_names()}")


def variants_for(shape: str, where: str = "shape") -> tuple[str, ...]:
    """Training families a class with this own ``shape`` draws from in the randomised preset.

    Hollow classes draw the hollow variants, others the filled ones; the class's own shape
    is one more variant unless it is a held-out family (then it is never drawn here).
    """
    fam = resolve(shape, where)
    base = HOLLOW_FAMILIES if fam.hollow else FILLED_FAMILIES
    return base if fam.held_out else base + (fam.name,)

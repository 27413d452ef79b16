"""The scene of a simulated tomogram: density of particles, crowders, membranes, gold, carbon.

All positions here are float voxel indices ``[z, y, x]`` and all lengths voxels (Angstrom
lengths become voxels through :func:`cryo3d.coords.length_to_voxels`). Objects get a
logistic edge ``EDGE`` voxels wide, so rotated shapes are anti-aliased without
supersampling. Placement keeps every particle and crowder clear of everything already
placed (rejection sampling in vectorised batches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from cryo3d.coords import length_to_voxels
from cryo3d.synth.families import Family, Params, solid

#: Width of the logistic edge of every object, in voxels.
EDGE = 0.35
#: Density of protein, lipid, gold and carbon relative to each other (arbitrary units).
PROTEIN_DENSITY = 1.0
LIPID_DENSITY = 0.9
GOLD_DENSITY = 6.0
CARBON_DENSITY = (0.8, 1.4)
#: Relative voxel-level density fluctuation (grain) of amorphous carbon.
CARBON_GRAIN = 0.6
#: Bilayer: two leaflets this far from the mid-plane (Angstrom), each this thick.
LEAFLET_OFFSET = 18.0
LEAFLET_HALF_THICKNESS = 9.0
#: Particles are kept at least this far (Angstrom) from each other and from distractors.
MIN_GAP = 8.0
#: Most evaluated ``[n, M]`` floats held at once while rendering particles.
CHUNK_FLOATS = 6_000_000


@dataclass
class Obstacle:
    """Something particles must keep clear of (voxel units).

    ``kind`` is ``vesicle`` (a sphere of ``radius`` about ``centre``), ``sheet`` (the plane
    through ``centre`` with unit ``normal``) or ``carbon`` (the half-space ``(x - centre) .
    normal > 0`` within ``half_thickness`` of ``centre``'s z); ``clear`` is how far
    particles stay from the surface on top of their radius.
    """

    kind: str
    centre: np.ndarray
    radius: float = 0.0
    normal: np.ndarray = field(default_factory=lambda: np.zeros(3))
    half_thickness: float = 0.0
    clear: float = 0.0


def banded_solid(sdf: np.ndarray, e: float) -> np.ndarray:
    """:func:`solid` of a large array, with the logistic evaluated only within ``8 e`` of the surface."""
    out = (sdf < 0).astype(np.float32)
    band = np.abs(sdf) < 8 * e
    out[band] = solid(sdf[band], e)
    return out


class Scene:
    """A density volume being built, with the balls (particles, gold, crowders) placed so far.

    Args:
        shape: ``(Z, Y, X)`` voxels.
        spacing: Angstrom per voxel.
    """

    def __init__(self, shape: tuple[int, int, int], spacing: float) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.spacing = float(spacing)
        self.vol = np.zeros(self.shape, np.float32)
        self.obstacles: list[Obstacle] = []
        self.balls = np.zeros((0, 3))
        self.ball_r = np.zeros(0)
        self.gap = float(length_to_voxels(MIN_GAP, self.spacing))
        #: Voxels left out of the signal variance that sets the SNR (carbon: its grain would
        #: otherwise drown the particles in noise); None: all voxels count.
        self.not_reference: np.ndarray | None = None

    def vox(self, angstrom: float) -> float:
        """A length in Angstrom as voxels."""
        return float(length_to_voxels(angstrom, self.spacing))

    # ------------------------------------------------------------ placement
    def place(self, rng: np.random.Generator, n: int, radius: float, tries: int = 60) -> np.ndarray:
        """Up to ``n`` centres ``[k, 3]`` (voxels) of balls of ``radius`` voxels that keep clear
        of everything placed; the caller adds them with :meth:`add_balls`."""
        out: list[np.ndarray] = []
        hi = np.asarray(self.shape, float) - 1
        margin = 0.5 * radius
        if n <= 0:
            return np.zeros((0, 3))
        for _ in range(tries):
            if len(out) >= n:
                break
            cand = rng.uniform(margin, np.maximum(hi - margin, margin + 1e-3), size=(4 * n, 3))
            ok = np.ones(len(cand), bool)
            if len(self.balls):
                d2 = np.sum((cand[:, None, :] - self.balls[None]) ** 2, axis=-1)
                ok &= np.all(d2 > (self.ball_r[None] + radius + self.gap) ** 2, axis=1)
            for ob in self.obstacles:
                ok &= self._clear_of(ob, cand, radius)
            for c in cand[ok]:
                if len(out) >= n:
                    break
                if out and np.min(np.sum((np.asarray(out) - c) ** 2, axis=1)) <= (2 * radius + self.gap) ** 2:
                    continue
                out.append(c)
        return np.asarray(out, dtype=np.float64).reshape(-1, 3)

    def _clear_of(self, ob: Obstacle, cand: np.ndarray, radius: float) -> np.ndarray:
        need = radius + ob.clear + self.gap
        if ob.kind == "vesicle":
            return np.abs(np.linalg.norm(cand - ob.centre, axis=1) - ob.radius) > need
        if ob.kind == "sheet":
            return np.abs((cand - ob.centre) @ ob.normal) > need
        if ob.kind == "carbon":
            side = (cand - ob.centre) @ ob.normal < -need
            slab = np.abs(cand[:, 0] - ob.centre[0]) > ob.half_thickness + need
            return side | slab
        raise ValueError(f"unknown obstacle kind {ob.kind!r}")

    def add_balls(self, centres: np.ndarray, radii: np.ndarray) -> None:
        self.balls = np.concatenate([self.balls, centres])
        self.ball_r = np.concatenate([self.ball_r, radii])

    # ------------------------------------------------------------ rendering
    def render(self, family: Family, centres: np.ndarray, rotations: np.ndarray, radii: np.ndarray,
               params: Params, density: np.ndarray, texture: Params | None = None) -> None:
        """Add particles of one family into the volume, vectorised over particles and voxels.

        Args:
            family: the shape family.
            centres: ``[n, 3]`` voxels; rotations ``[n, 3, 3]`` (rows: the particle's axes);
                radii ``[n]`` voxels; params: the family's per-particle parameters;
                density: ``[n]`` scale of each particle's density.
            texture: optional per-particle plane waves (``tw`` ``[n, k, 3]``, ``tphase``
                ``[n, k]``, ``tamp`` ``[n]``) multiplying the density by
                ``1 + tamp * mean(cos(w . p + phase))``: density varies inside the particle.
        """
        if len(centres) == 0:
            return
        halves = np.ceil(radii + 3 * EDGE).astype(np.int64) + 1
        shape = np.asarray(self.shape)
        flat = self.vol.reshape(-1)
        for h in np.unique(halves):
            idx_h = np.flatnonzero(halves == h)
            off = np.arange(-h, h + 1, dtype=np.float32)
            grid = np.stack(np.meshgrid(off, off, off, indexing="ij"), -1).reshape(-1, 3)
            # every shape lies within its radius (the first simulator's ribosome within 1.13 radius)
            reach = max(h + 0.5, 1.2 * float(radii[idx_h].max()) + 2 * EDGE)
            grid = grid[np.sum(grid * grid, -1) <= reach**2]
            per = max(1, CHUNK_FLOATS // (len(grid) * (family.cost + 4)))
            for s in range(0, len(idx_h), per):
                sel = idx_h[s:s + per]
                c = centres[sel]
                base = np.rint(c).astype(np.int64)
                frac = (base - c).astype(np.float32)  # grid voxel offset from the true centre
                local = grid[None] + frac[:, None, :]  # [n, M, 3] voxels, zyx
                r = radii[sel].astype(np.float32)
                p = np.matmul(local, rotations[sel].astype(np.float32).transpose(0, 2, 1))
                p /= r[:, None, None]
                prm = {k: np.asarray(v[sel], np.float32) for k, v in params.items()}
                e = (EDGE / r)[:, None]
                vals = family.density(p, prm, e) * density[sel].astype(np.float32)[:, None]
                if texture is not None:
                    arg = np.matmul(p, texture["tw"][sel].astype(np.float32).transpose(0, 2, 1))
                    wave = np.cos(arg + texture["tphase"][sel][:, None, :].astype(np.float32)).mean(-1)
                    vals = vals * (1.0 + texture["tamp"][sel].astype(np.float32)[:, None] * wave)
                pos = base[:, None, :] + grid[None].astype(np.int64)
                inside = np.all((pos >= 0) & (pos < shape), axis=-1) & (vals > 1e-4)
                pos = pos[inside]
                flat_idx = (pos[:, 0] * shape[1] + pos[:, 1]) * shape[2] + pos[:, 2]
                np.add.at(flat, flat_idx, vals[inside].astype(np.float32))

    def render_template(self, template, centres: np.ndarray, rotations: np.ndarray, scales: np.ndarray,
                        density: np.ndarray) -> None:
        """Add particles drawn from a density template (a :class:`cryo3d.synth.structures.Template`).

        Each particle's local grid of scene voxels is rotated into the template's frame and
        the template is resampled there (trilinear, vectorised over particles and voxels), so
        the template's centre of mass lands on the particle's centre.

        Args:
            template: the structure's density, its spacing (Angstrom), centre of mass and reach.
            centres: ``[n, 3]`` voxels; rotations ``[n, 3, 3]`` (rows: the particle's axes).
            scales: ``[n]`` size factor of each particle (1: the structure's own size).
            density: ``[n]`` scale of each particle's density.
        """
        if len(centres) == 0:
            return
        shape = np.asarray(self.shape)
        flat = self.vol.reshape(-1)
        h = int(math.ceil(template.reach * float(np.max(scales)) / self.spacing)) + 1
        off = np.arange(-h, h + 1, dtype=np.float32)
        grid = np.stack(np.meshgrid(off, off, off, indexing="ij"), -1).reshape(-1, 3)
        grid = grid[np.sum(grid * grid, -1) <= (h + 0.5) ** 2]
        per = max(1, CHUNK_FLOATS // (len(grid) * 6))
        com = np.asarray(template.com, np.float32)
        for s in range(0, len(centres), per):
            c = centres[s:s + per]
            base = np.rint(c).astype(np.int64)
            local = grid[None] + (base - c).astype(np.float32)[:, None, :]
            k = (self.spacing / (template.spacing * scales[s:s + per])).astype(np.float32)
            p = np.matmul(local, rotations[s:s + per].astype(np.float32).transpose(0, 2, 1)) * k[:, None, None]
            p += com
            vals = ndimage.map_coordinates(template.vol, p.reshape(-1, 3).T, order=1, mode="constant", cval=0.0,
                                           prefilter=False).reshape(len(c), -1)
            vals *= density[s:s + per].astype(np.float32)[:, None]
            pos = base[:, None, :] + grid[None].astype(np.int64)
            inside = np.all((pos >= 0) & (pos < shape), axis=-1) & (vals > 1e-5)
            pos = pos[inside]
            flat_idx = (pos[:, 0] * shape[1] + pos[:, 1]) * shape[2] + pos[:, 2]
            np.add.at(flat, flat_idx, vals[inside])

    # ------------------------------------------------------------ distractors
    def _bilayer(self, dist: np.ndarray) -> np.ndarray:
        """Two leaflets at +/- LEAFLET_OFFSET from a mid-surface, given the distance to it (voxels)."""
        off, half = self.vox(LEAFLET_OFFSET), self.vox(LEAFLET_HALF_THICKNESS)
        a = solid(np.abs(dist - off) - half, EDGE)
        b = solid(np.abs(dist + off) - half, EDGE)
        return LIPID_DENSITY * (a + b)

    def _add_band(self, target: np.ndarray, dist: np.ndarray) -> None:
        """Add a bilayer to ``target`` (a view of the volume), evaluated only where it is non-zero."""
        reach = self.vox(LEAFLET_OFFSET + LEAFLET_HALF_THICKNESS) + 8 * EDGE
        m = np.abs(dist) < reach
        target[m] += self._bilayer(dist[m])

    def add_vesicle(self, rng: np.random.Generator) -> None:
        """A spherical lipid vesicle (evaluated only in its bounding box)."""
        ext = np.asarray(self.shape, float)
        r = float(rng.uniform(0.15, 0.45) * ext.min() + self.vox(150.0))
        c = rng.uniform(0, ext)
        pad = r + self.vox(LEAFLET_OFFSET + 3 * LEAFLET_HALF_THICKNESS)
        lo = np.maximum(np.floor(c - pad), 0).astype(int)
        hi = np.minimum(np.ceil(c + pad) + 1, ext).astype(int)
        if np.all(hi > lo):
            z, y, x = (np.arange(a, b, dtype=np.float32) - cc for a, b, cc in zip(lo, hi, c))
            d = np.sqrt(z[:, None, None] ** 2 + y[None, :, None] ** 2 + x[None, None, :] ** 2) - r
            self._add_band(self.vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], d)
        self.obstacles.append(Obstacle("vesicle", c, r, clear=self.vox(LEAFLET_OFFSET + LEAFLET_HALF_THICKNESS)))

    def _plane_distance(self, c: np.ndarray, nrm: np.ndarray, z0: int = 0, z1: int | None = None) -> np.ndarray:
        """Signed distance (voxels) to the plane through ``c`` with unit normal ``nrm``, on z rows ``z0:z1``."""
        z = np.arange(z0, self.shape[0] if z1 is None else z1, dtype=np.float32)
        y, x = (np.arange(n, dtype=np.float32) for n in self.shape[1:])
        return ((z[:, None, None] - c[0]) * nrm[0] + (y[None, :, None] - c[1]) * nrm[1]
                + (x[None, None, :] - c[2]) * nrm[2])

    def add_sheet(self, rng: np.random.Generator) -> None:
        """A flat membrane lying mostly across the slab, as membranes do in lamellae."""
        nrm = rng.normal(size=3)
        nrm[0] *= 0.3
        nrm /= np.linalg.norm(nrm)
        c = rng.uniform(0.2, 0.8, 3) * np.asarray(self.shape, float)
        self._add_band(self.vol, self._plane_distance(c, nrm))
        self.obstacles.append(Obstacle("sheet", c, 0.0, nrm, clear=self.vox(LEAFLET_OFFSET + LEAFLET_HALF_THICKNESS)))

    def add_carbon(self, rng: np.random.Generator) -> None:
        """A carbon-film edge: a dense, grainy slab (200-800 A thick in z) covering 10-40 % of the
        field of view on one side of a straight boundary."""
        ext = np.asarray(self.shape, float)
        ang = rng.uniform(0, 2 * math.pi)
        nrm = np.array([rng.normal(0, 0.1), math.sin(ang), math.cos(ang)])
        nrm /= np.linalg.norm(nrm)
        corners = np.array([[0, y, x] for y in (0, ext[1] - 1) for x in (0, ext[2] - 1)], float)
        proj = corners @ nrm
        frac = rng.uniform(0.1, 0.4)
        c = np.array([rng.uniform(0.2, 0.8) * ext[0], 0.0, 0.0])
        # put the boundary so that a fraction `frac` of the field of view lies beyond it
        c_yx = (proj.max() - frac * (proj.max() - proj.min()))
        c[1:] = nrm[1:] * c_yx / max(float(nrm[1:] @ nrm[1:]), 1e-6)
        half = 0.5 * self.vox(rng.uniform(200.0, 800.0))
        z0 = max(int(math.floor(c[0] - half - 8 * EDGE)), 0)
        z1 = min(int(math.ceil(c[0] + half + 8 * EDGE)) + 1, self.shape[0])
        z = np.arange(z0, z1, dtype=np.float32)[:, None, None]
        sdf = np.maximum(-self._plane_distance(c, nrm, z0, z1), np.abs(z - c[0]) - half)
        dens = float(rng.uniform(*CARBON_DENSITY))
        carbon = banded_solid(sdf, 2 * EDGE)
        # amorphous carbon is grainy: voxel-level density fluctuations (the CTF makes them texture)
        grain = rng.standard_normal(carbon.shape, dtype=np.float32)
        grain *= np.float32(CARBON_GRAIN)
        grain += np.float32(1.0)
        carbon *= np.maximum(grain, 0.0, out=grain)
        carbon *= np.float32(dens)
        self.vol[z0:z1] += carbon
        self.obstacles.append(Obstacle("carbon", c, 0.0, nrm, half_thickness=half))
        if self.not_reference is None:
            self.not_reference = np.zeros(self.shape, bool)
        self.not_reference[z0:z1] |= sdf < 3.0

"""Protein-like pseudo-atomic models: random compact C-alpha chains that fill a shape.

A model is built in the particle's frame (Angstrom, centre of mass at the origin):

1. **Envelope**: a boolean grid of ``CELL``-Angstrom cells inside a shape of
   :mod:`cryo3d.synth.families` (a filled or hollow training family, a held-out family for
   ``crowded12``, or one subunit of a symmetric oligomer).
2. **Chains**: many C-alpha random walks at once (vectorised over chains), 3.8 A steps with
   some persistence (so chains run in short straight stretches, as in helices and
   strands), confined to the envelope and self-avoiding through the cells' occupancy
   (at most ``CAPACITY`` residues per cell, about the volume of a residue).
3. **Pseudo-atoms**: each residue is three Gaussian masses: the C-alpha (12 Da), the
   peptide group (N, C, O: 42 Da) half-way to the next residue and a side-chain centroid
   (56 Da) 2.4 A out, so the internal density has a protein's granularity.
4. **Symmetry** (optional): one subunit copied by the rotations of a point group (``C2`` ..
   ``C7``, ``D2``, ``T``), giving homo-oligomers.

The model is finally scaled (by a few per cent) so that its radius by the project's rule
(:data:`cryo3d.synth.structures.RADIUS_RULE`) is the requested one. All randomness comes
from the generator passed in, so a tomogram's random stream makes its models
deterministically.
"""

from __future__ import annotations

import math

import numpy as np

from cryo3d.synth import families as fam

#: Distance between consecutive C-alpha atoms (Angstrom).
CA_STEP = 3.8
#: Occupancy cell of the self-avoiding walk (Angstrom) and residues allowed per cell.
CELL = 6.0
CAPACITY = 2
#: Residues per chain (a domain-sized chain); the walker count follows the envelope volume.
SEGMENT = 150
#: Pseudo-atom masses (Dalton) of a residue: C-alpha, peptide group, side-chain centroid.
MASSES = np.array([12.0, 42.0, 56.0])
SIDE_CHAIN_REACH = 2.4
#: Point groups of the symmetric oligomers.
SYMMETRIES = ("C2", "C3", "C4", "C5", "C6", "C7", "D2", "T")


def _axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def symmetry_operators(group: str) -> np.ndarray:
    """Rotation matrices ``[n, 3, 3]`` of a point group: ``Cn`` (n = 2..7, about z), ``D2`` or ``T``."""
    if group.startswith("C") and group[1:].isdigit():
        n = int(group[1:])
        return np.stack([_axis_rotation([0, 0, 1], 2 * math.pi * k / n) for k in range(n)])
    if group == "D2":
        return np.stack([np.eye(3), np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])])
    if group == "T":
        d2 = symmetry_operators("D2")
        c3 = [_axis_rotation([1, 1, 1], 2 * math.pi * k / 3) for k in range(3)]
        return np.stack([a @ b for a in c3 for b in d2])
    raise ValueError(f"unknown symmetry {group!r}; choose one of {list(SYMMETRIES)}")


def envelope(family: fam.Family, params: fam.Params, radius: float, offset: np.ndarray | None = None,
             rivals: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cells inside one particle of ``family`` (``params`` of one particle) of ``radius`` Angstrom.

    With ``rivals`` (``[k, 3]`` centres of the other subunits of an oligomer) only the cells
    nearer to ``offset`` than to every rival are kept (its Voronoi cell), so symmetric
    copies of the subunit never overlap.

    Returns:
        ``(mask [a, b, c] bool, origin [3])``: cell ``i`` has its centre at ``origin + CELL * i``
        (Angstrom, particle frame, the shape's centre at ``offset``, default the origin).
    """
    offset = np.zeros(3) if offset is None else np.asarray(offset, float)
    n = int(math.ceil(1.2 * radius / CELL)) + 1
    ax = np.arange(-n, n + 1) * CELL
    pts = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    near = np.flatnonzero(np.einsum("ij,ij->i", pts, pts) <= (n * CELL) ** 2)  # shapes lie within 1.2 radius
    p = pts[near]
    inside = family.density(p[None] / radius, params, np.full((1, 1), 0.05))[0] > 0.5
    if rivals is not None and len(rivals):
        d_rival = np.min(np.linalg.norm((p + offset)[:, None, :] - np.asarray(rivals)[None], axis=-1), axis=1)
        inside &= np.linalg.norm(p, axis=1) <= d_rival
    mask = np.zeros(len(pts), bool)
    mask[near[inside]] = True
    return mask.reshape((2 * n + 1,) * 3), offset - n * CELL


def walk(mask: np.ndarray, origin: np.ndarray, rng: np.random.Generator, persistence: float = 0.6,
         tries: int = 5, rounds: int = 10) -> np.ndarray:
    """C-alpha positions and steps of self-avoiding chains filling ``mask`` (cells of ``CELL`` A).

    Chains start in random free cells and grow all at once (vectorised over chains); a
    step that leaves the envelope or enters a full cell is retried in a wider cone, and a
    chain that cannot go on after ``tries`` ends. New chains start in free cells until the
    envelope holds its share of residues (``CAPACITY`` per cell, 85 % filled) or ``rounds``
    have passed.

    Returns:
        ``[N, 2, 3]``: each residue's C-alpha (Angstrom, cell ``i`` centred at
        ``origin + CELL * i``) and its step to the next residue.
    """
    n_res = int(np.count_nonzero(mask) * CAPACITY * 0.85)
    occ = np.zeros(mask.shape, np.int16)
    lim = np.asarray(mask.shape) - 1
    out_pos: list[np.ndarray] = []
    out_step: list[np.ndarray] = []
    total = 0
    for _ in range(rounds):
        free = np.argwhere(mask & (occ < CAPACITY))
        if total >= 0.95 * n_res or len(free) == 0:
            break
        k = max(1, min(len(free), int(math.ceil((n_res - total) / SEGMENT * 3.0))))
        start = free[rng.choice(len(free), size=k, replace=False)]
        pos = origin + CELL * (start + rng.uniform(-0.4, 0.4, size=(k, 3)))
        np.add.at(occ, tuple(start.T), 1)
        d = rng.normal(size=(k, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        active = np.ones(k, bool)
        spread = (1.0 + 0.5 * np.arange(tries))[None, :, None] / math.sqrt(3.0)  # wider turns on later tries
        for _ in range(SEGMENT):
            idx = np.flatnonzero(active)
            if len(idx) <= k // 10 or total >= n_res:  # the last few chains end with the round (fewer, longer rounds)
                break
            # all tries at once: the first direction that stays inside and finds room wins
            nd = persistence * d[idx][:, None, :] + spread * rng.standard_normal((len(idx), tries, 3))
            nd /= np.sqrt(np.einsum("ntj,ntj->nt", nd, nd))[..., None]
            c = np.rint((pos[idx][:, None, :] + CA_STEP * nd - origin) / CELL).astype(np.int64)
            inb = np.all((c >= 0) & (c <= lim), axis=-1)
            np.clip(c, 0, lim, out=c)
            ok = inb & mask[c[..., 0], c[..., 1], c[..., 2]] & (occ[c[..., 0], c[..., 1], c[..., 2]] < CAPACITY)
            done = ok.any(axis=1)
            first = np.argmax(ok, axis=1)
            pick = nd[np.arange(len(idx)), first]
            cells = c[np.arange(len(idx)), first][done]
            np.add.at(occ, tuple(cells.T), 1)
            step = np.where(done[:, None], CA_STEP * pick, 0.0)
            out_pos.append(pos[idx].copy())  # every active chain's residue; a chain's last one has no step
            out_step.append(step)
            total += len(idx)
            d[idx[done]] = pick[done]
            pos[idx] += step
            active[idx[~done]] = False
    if not out_pos:
        return np.zeros((0, 2, 3))
    return np.stack([np.concatenate(out_pos), np.concatenate(out_step)], 1)


def pseudo_atoms(residues: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``[3N, 3]`` and masses ``[3N]`` of each residue's three pseudo-atoms."""
    ca, step = residues[:, 0], residues[:, 1]
    side = rng.normal(size=ca.shape)
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    xyz = np.concatenate([ca, ca + 0.5 * step, ca + SIDE_CHAIN_REACH * side])
    return xyz, np.repeat(MASSES, len(ca))


def rule_radius(xyz: np.ndarray, mass: np.ndarray) -> float:
    """The project's radius of a set of masses: ``sqrt(5/3)`` x their radius of gyration."""
    w = mass / mass.sum()
    com = w @ xyz
    rg2 = float(w @ np.sum((xyz - com) ** 2, axis=1))
    return math.sqrt(5.0 / 3.0 * rg2)


def _centre_and_scale(xyz: np.ndarray, mass: np.ndarray, radius: float) -> np.ndarray:
    com = (mass / mass.sum()) @ xyz
    xyz = xyz - com
    return xyz * (radius / max(rule_radius(xyz, mass), 1e-6))


def protein(radius: float, rng: np.random.Generator, family: str | None = None, hollow: bool = False,
            symmetry: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A pseudo-atomic protein of ``radius`` Angstrom (by the project's rule), centre of mass at 0.

    Args:
        radius: requested radius (Angstrom).
        rng: random stream (the model is deterministic for its state).
        family: shape family of the envelope (default: a random filled, or with ``hollow`` a
            random hollow, training family).
        hollow: draw a hollow envelope when ``family`` is None.
        symmetry: a point group of :data:`SYMMETRIES`: a homo-oligomer of subunits each
            filling a blob off the symmetry axes (``family`` is then ignored).

    Returns:
        ``(xyz [N, 3] Angstrom, mass [N] Dalton)``.
    """
    if symmetry is not None:
        ops = symmetry_operators(symmetry)
        n = len(ops)
        cand = rng.normal(size=(8, 3))
        if symmetry.startswith("C"):  # subunits around the z axis, not on it
            cand[:, 2] *= 0.3
        cand *= 0.5 * radius / np.linalg.norm(cand, axis=1, keepdims=True)
        copies = np.einsum("kij,cj->cki", ops[1:], cand)  # [8, n-1, 3]: the other copies of each candidate
        gaps = np.min(np.linalg.norm(copies - cand[:, None], axis=-1), axis=1)
        best = int(np.argmax(gaps))  # the subunit position farthest from its copies (off the symmetry axes)
        offset = cand[best]
        # subunits reach into their neighbours' space, which each keeps to its own Voronoi cell:
        # the copies touch along flat interfaces and never overlap
        r_sub = min(0.8 * float(gaps[best]), 0.65 * radius)
        sub = fam.FAMILIES[str(rng.choice(fam.FILLED_FAMILIES))]
        mask, origin = envelope(sub, sub.draw(rng, 1), r_sub, offset, rivals=copies[best])
        xyz, mass = pseudo_atoms(walk(mask, origin, rng), rng)
        xyz = np.concatenate([xyz @ op.T for op in ops])
        mass = np.tile(mass, n)
    else:
        if family is None:
            choices = fam.HOLLOW_FAMILIES if hollow else fam.FILLED_FAMILIES
            family = str(rng.choice(choices))
        f = fam.resolve(family)
        mask, origin = envelope(f, f.draw(rng, 1), radius)
        xyz, mass = pseudo_atoms(walk(mask, origin, rng), rng)
    if len(xyz) == 0:
        raise ValueError(f"pseudo-atomic protein of radius {radius:g} A: its envelope holds no residue")
    return _centre_and_scale(xyz, mass, radius), mass

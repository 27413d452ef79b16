"""Peak extraction: downsampled heatmaps ``[C, z, y, x]`` -> sub-voxel particle centres.

Pipeline of :func:`find_peaks` (one class = one heatmap channel):

1. **Threshold and max-pool NMS** (torch, on the heatmap's own device, so a CUDA
   heatmap stays on the GPU). A voxel is a candidate when it is ``>= threshold`` and
   equals the maximum of a cube of half-width ``r`` around it
   (``torch.nn.functional.max_pool3d``, kernel ``2r+1``, stride 1, ``-inf`` padding, on
   CUDA; the same maximum by separable shifted ``torch.maximum`` on the CPU, where
   torch's ``max_pool3d`` is 10-30x slower),
   with ``r = max(1, floor(d / sqrt(3)))`` for the class's ``min_distance`` ``d``.
   Why not ``r = ceil(d)``: a cube of half-width ``ceil(d)`` reaches ``sqrt(3) ceil(d)``
   along its diagonals, so it would delete a weaker particle that is farther than ``d``
   from a stronger one. The cube of half-width ``floor(d / sqrt(3))`` is the largest
   inside the ball of radius ``d``; the exact distance rule is step 4. ``r >= 1``
   always, i.e. a peak is at least a local maximum among its 26 neighbours.
2. **Sub-voxel refinement** (same device, vectorised over candidates): per axis a
   parabola through the log-values at the peak voxel and its two neighbours; its vertex
   is the offset, clipped to ``[-0.5, 0.5]``. For a Gaussian the log is exactly
   quadratic, so the fit is exact for a lone keypoint rendered by
   :func:`cryo3d.heatmap.render_heatmap`. On the first / last voxel of an axis the
   three points are taken one step inwards (still exact for a Gaussian, and it finds a
   centre up to half a voxel outside the grid). Where one of the three values is
   ``<= 0`` the plain values are fitted instead of their logs; where the three points
   are not concave (flat or rising) the offset is 0.
3. **Plateaus** (CPU, candidates only). Two candidates within one NMS window of each
   other are necessarily equal (each is the maximum of the other's window): they are
   ties on a flat top. Candidates linked by such pairs form one plateau (connected
   components, ``scipy.sparse.csgraph``) and give ONE peak, scored and (without
   ``refine``) placed at the member nearest the plateau's centroid (then the lowest
   flat index). With ``refine`` its position is the mean of the members' refined
   positions: along a flat axis the members' parabola offsets average to the plateau's
   centre (two equal voxels: each points +/-0.5 to their midpoint, the exact centre of
   a Gaussian midway between them), along the other axes they carry the usual fit.
4. **Minimum distance in continuous space** (CPU, ``scipy.spatial.cKDTree``): max-pool
   NMS alone lets a weaker peak through when the stronger one sits just outside its
   cube. Of two peaks of one class closer than ``d`` (strictly), only the one with the
   higher score survives, greedily by descending score (ties by flat index): exactly
   the sequential greedy rule, computed by a vectorised priority pass over the
   neighbour pairs (a peak is decided once it outranks all its undecided neighbours).

After :func:`find_peaks`, two passes act across classes or on counts:

* :func:`suppress_cross_class`: one particle, one class. A peak is dropped when a
  stronger peak of ANOTHER class lies within ``fraction`` x (the smaller of the two
  classes' radii), greedily by descending score (a dropped peak suppresses nothing).
  A network that reports one particle in several class channels gives such pairs;
  two real particles cannot be that close (their centres are at least the sum of the
  radii apart).
* :func:`cap_per_class`: no class gets more peaks than the volume can physically hold,
  ``PACKING_FRACTION x volume / (4/3 pi r^3)`` (:func:`max_particles`); the highest
  scores are kept and a warning names the tomogram and the classes that were capped.

Scores are the heatmap values at the peak voxels. Coordinates are ``[z, y, x]`` in
downsampled voxels of the heatmap grid; :func:`peaks_to_picks` turns them into
Angstrom picks through :mod:`cryo3d.coords`.

Why by hand: MONAI has no 3D peak finder with per-class distances and sub-voxel
refinement; ``skimage.feature.peak_local_max`` is CPU-only, integer-only and not a
dependency.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from cryo3d.backend import is_cupy_array
from cryo3d.coords import ds_to_voxel, local_to_global, voxel_to_angstrom
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks

__all__ = [
    "CROSS_CLASS_RULES",
    "PACKING_FRACTION",
    "cap_per_class",
    "find_peaks",
    "max_particles",
    "nms_radius",
    "peaks_to_picks",
    "suppress_cross_class",
]

#: Densest packing of equal spheres (Kepler: pi / sqrt(18) ~ 0.7405). No volume holds more
#: particles of one class than this fraction of it filled with the class's spheres.
PACKING_FRACTION = math.pi / math.sqrt(18.0)

#: Which radius sets the cross-class distance of two peaks (see :func:`suppress_cross_class`).
CROSS_CLASS_RULES = ("smaller", "stronger", "larger")

#: Default distance of :func:`suppress_cross_class`, as a fraction of the smaller radius
#: (inference and validation); 0 turns cross-class suppression off. Off by default: on
#: held-out tomograms it lowered the score (the measurements are in the docstring of
#: :func:`suppress_cross_class`).
CROSS_CLASS_FRACTION = 0.0


def nms_radius(min_distance: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Half-width (voxels) of the max-pool NMS cube for each ``min_distance``.

    ``r = max(1, floor(d / sqrt(3)))``: the largest cube that fits inside the ball of
    radius ``d`` (so max-pool NMS never removes a peak farther than ``d`` from every
    higher voxel), and at least the 26-neighbourhood. The kernel is ``2r + 1``.

    Parameters
    ----------
    min_distance : float or ``[C]``
        Minimum peak distance in downsampled voxels.

    Returns
    -------
    int64 array, same shape as ``min_distance``
    """
    d = np.asarray(min_distance, dtype=np.float64)
    # tiny slack so that d = k*sqrt(3) exactly gives k despite rounding
    return np.maximum(1, np.floor(d / math.sqrt(3.0) + 1e-9)).astype(np.int64)


def _per_class(value: Any, C: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, C)
    if arr.size != C:
        raise ValueError(f"{name}: expected a number or {C} values (one per class), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: values must be finite, got {arr.tolist()}")
    return arr


def _as_tensor(heatmap: Any) -> torch.Tensor:
    """NumPy / CuPy / torch (incl. MONAI MetaTensor) -> plain float torch tensor, same device."""
    if isinstance(heatmap, torch.Tensor):
        t = heatmap.detach()
        if hasattr(t, "as_tensor"):  # MONAI MetaTensor -> plain tensor (no meta tracking)
            t = t.as_tensor()
    elif is_cupy_array(heatmap):
        t = torch.from_dlpack(heatmap)
    else:
        t = torch.as_tensor(np.ascontiguousarray(heatmap))
    if t.dtype == torch.float64 or (t.dtype in (torch.float16, torch.bfloat16) and t.is_cuda):
        return t
    return t.float()


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 3), np.float64), np.zeros(0, np.int64), np.zeros(0, np.float64)


def _box_max(x: torch.Tensor, r: int, use_pool: bool | None = None) -> torch.Tensor:
    """Maximum over the cube of half-width ``r`` around each voxel of ``x`` ``[C, Z, Y, X]``.

    Same as ``max_pool3d(kernel 2r+1, stride 1, padding r)`` (``-inf`` padding: the
    cube is cut at the border). On CUDA that is what runs; on the CPU torch's
    ``max_pool3d`` is 10-30x slower than the separable form used instead (``2r``
    shifted ``torch.maximum`` per axis; max over a box is separable).
    """
    if use_pool is None:
        use_pool = x.is_cuda
    if use_pool:
        return F.max_pool3d(x[None], kernel_size=2 * r + 1, stride=1, padding=r)[0]
    out = x
    for ax in (1, 2, 3):
        src = out
        out = src.clone()
        n = src.shape[ax]
        for s in range(1, min(r, n - 1) + 1):
            hi = out.narrow(ax, s, n - s)
            torch.maximum(hi, src.narrow(ax, 0, n - s), out=hi)
            lo = out.narrow(ax, 0, n - s)
            torch.maximum(lo, src.narrow(ax, s, n - s), out=lo)
    return out


def _candidates(hm: torch.Tensor, thr: np.ndarray, radii: np.ndarray) -> torch.Tensor:
    """Boolean ``[C, Z, Y, X]`` mask of thresholded local maxima (max-pool NMS per class)."""
    mask = torch.zeros(hm.shape, dtype=torch.bool, device=hm.device)
    for r in np.unique(radii):  # one pass per distinct kernel size (few)
        ch = np.nonzero(radii == r)[0]
        ch_t = torch.as_tensor(ch, device=hm.device)
        sub = hm.index_select(0, ch_t)
        pooled = _box_max(sub, int(r))
        t = torch.as_tensor(thr[ch], dtype=hm.dtype, device=hm.device).view(-1, 1, 1, 1)
        mask[ch_t] = (sub == pooled) & (sub >= t)
    return mask


def _refine_offsets(hm: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Per-axis log-parabola vertex offsets ``[M, 3]`` (float64, in ``[-0.5, 0.5]``).

    ``idx`` is ``[M, 4]`` ``(c, z, y, x)`` on ``hm``'s device. See the module docstring.
    """
    M = idx.shape[0]
    off = torch.zeros((M, 3), dtype=torch.float64, device=hm.device)
    for a in range(3):  # three axes, vectorised over peaks
        n = hm.shape[a + 1]
        if n < 3:
            continue
        p = idx[:, a + 1]
        m = p.clamp(1, n - 2)  # stencil centre, one step inwards on the first/last voxel
        vals = []
        for s in (-1, 0, 1):
            q = idx.clone()
            q[:, a + 1] = m + s
            vals.append(hm[q[:, 0], q[:, 1], q[:, 2], q[:, 3]].to(torch.float64))
        f = torch.stack(vals, dim=1)  # [M, 3]
        positive = (f > 0).all(dim=1, keepdim=True)
        g = torch.where(positive, torch.log(f.clamp_min(torch.finfo(torch.float64).tiny)), f)
        denom = g[:, 0] - 2.0 * g[:, 1] + g[:, 2]
        concave = denom < 0
        safe = torch.where(concave, denom, torch.ones_like(denom))
        vertex = m.to(torch.float64) + 0.5 * (g[:, 0] - g[:, 2]) / safe
        o = torch.where(concave, vertex - p.to(torch.float64), torch.zeros_like(denom))
        off[:, a] = o.clamp(-0.5, 0.5)
    return off


def _greedy_keep(rank: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Sequential greedy suppression by ``rank`` (0 = best), computed in parallel rounds.

    Equivalent to: visit nodes by increasing rank, keep a node unless a kept node is
    linked to it by a pair ``(i, j)``. Each round keeps every undecided node that
    outranks all its undecided neighbours and removes their neighbours; the best
    undecided node is always kept, so the loop ends, usually after a few rounds.
    """
    n = rank.shape[0]
    state = np.zeros(n, dtype=np.int8)  # 0 undecided, 1 kept, -1 removed
    while True:
        undecided = state == 0
        live = undecided[i] & undecided[j]
        li, lj = i[live], j[live]
        best = np.full(n, n, dtype=np.int64)
        np.minimum.at(best, li, rank[lj])
        np.minimum.at(best, lj, rank[li])
        win = undecided & (rank < best)
        state[win] = 1
        state[lj[win[li]]] = -1
        state[li[win[lj]]] = -1
        if not np.any(state == 0):
            return state == 1


def _merge_plateaus(
    vox: np.ndarray, flat: np.ndarray, pos: np.ndarray, r: int
) -> tuple[np.ndarray, np.ndarray]:
    """One peak per plateau of one class.

    Parameters
    ----------
    vox : int ``[m, 3]``
        Candidate voxels ``[z, y, x]`` (candidates within one NMS window are ties).
    flat : ``[m]``
        Their voxel order (tie-break).
    pos : float ``[m, 3]``
        Their refined positions (voxel + parabola offset).
    r : int
        NMS half-width.

    Returns
    -------
    rows : ``[p]`` indices into ``vox`` of the representatives (member nearest the
        plateau's centroid, then lowest voxel order),
    mean_pos : float64 ``[p, 3]`` mean of ``pos`` over each representative's plateau.
    """
    m = vox.shape[0]
    if m < 2:
        return np.arange(m), pos
    pairs = cKDTree(vox).query_pairs(r, p=np.inf, output_type="ndarray")
    if pairs.shape[0] == 0:
        return np.arange(m), pos
    graph = coo_matrix((np.ones(pairs.shape[0]), (pairs[:, 0], pairs[:, 1])), shape=(m, m))
    ncomp, comp = connected_components(graph, directed=False)
    size = np.bincount(comp, minlength=ncomp)

    def comp_mean(x: np.ndarray) -> np.ndarray:
        sums = [np.bincount(comp, weights=x[:, a], minlength=ncomp) for a in range(3)]
        return np.stack(sums, axis=1) / size[:, None]

    centroid = comp_mean(vox.astype(np.float64))
    d2 = ((vox - centroid[comp]) ** 2).sum(axis=1)
    order = np.lexsort((flat, d2, comp))  # by plateau, then distance to centroid, then voxel order
    first = np.ones(m, dtype=bool)
    first[1:] = comp[order][1:] != comp[order][:-1]
    rows = order[first]
    return rows, comp_mean(pos)[comp[rows]]


def find_peaks(
    heatmap: Any,
    thresholds: float | Sequence[float] | np.ndarray,
    min_distance: float | Sequence[float] | np.ndarray,
    refine: bool = True,
    max_peaks: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find particle centres in a downsampled heatmap.

    Parameters
    ----------
    heatmap : array ``[C, Z, Y, X]``
        Per-class heatmap (probabilities, background ~0) on the downsampled grid. NumPy,
        CuPy or a torch tensor on any device; the voxel work runs in torch on that
        device (NumPy input on the CPU).
    thresholds : float or ``[C]``
        Minimum heatmap value of a peak (``value >= threshold``). A threshold at or
        below the background value makes every background voxel a candidate: slow.
    min_distance : float or ``[C]``
        Minimum distance between two peaks of one class, in downsampled voxels (two
        peaks closer than this never both survive; the higher score wins). Also sets
        the NMS cube, see :func:`nms_radius`.
    refine : bool
        Sub-voxel refinement (log-parabola per axis, averaged over a plateau). ``False``
        returns integer voxel positions.
    max_peaks : int, optional
        Keep at most this many peaks **per class** (the highest scores).

    Returns
    -------
    coords : float64 ``[N, 3]``
        Peak positions ``[z, y, x]`` in downsampled voxels.
    labels : int64 ``[N]``
        Class id (channel) of each peak.
    scores : float64 ``[N]``
        Heatmap value at the peak voxel.

    Rows are sorted by class, then by descending score (ties by voxel order).

    Examples
    --------
    >>> from cryo3d.heatmap import render_heatmap
    >>> hm = render_heatmap(np.array([[4.2, 5.0, 6.3]]), np.array([0]), (10, 12, 12), [1.5])
    >>> coords, labels, scores = find_peaks(hm, 0.5, 2.0)
    >>> np.round(coords, 3).tolist(), labels.tolist()
    ([[4.2, 5.0, 6.3]], [0])
    """
    hm = _as_tensor(heatmap)
    if hm.ndim != 4:
        raise ValueError(f"heatmap must be [C, Z, Y, X], got shape {tuple(hm.shape)}")
    C = int(hm.shape[0])
    thr = _per_class(thresholds, C, "thresholds")
    dist = _per_class(min_distance, C, "min_distance")
    if np.any(dist < 0):
        raise ValueError(f"min_distance: values must be >= 0 downsampled voxels, got {dist.tolist()}")
    if max_peaks is not None and int(max_peaks) < 0:
        raise ValueError(f"max_peaks must be >= 0 or None, got {max_peaks!r}")
    if hm.numel() == 0:
        return _empty()
    if bool(torch.isnan(hm).any()):
        raise ValueError("heatmap contains NaN")
    radii = nms_radius(dist)

    mask = _candidates(hm, thr, radii)
    idx = torch.nonzero(mask)  # [M, 4] (c, z, y, x), row-major = flat-index order
    if idx.shape[0] == 0:
        return _empty()
    vals = hm[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]].to(torch.float64)
    off = _refine_offsets(hm, idx) if refine else None

    idx_np = idx.cpu().numpy()
    vals_np = vals.cpu().numpy()
    off_np = off.cpu().numpy() if off is not None else np.zeros((idx_np.shape[0], 3))
    lab_all = idx_np[:, 0]
    vox_all = idx_np[:, 1:]
    flat_all = np.arange(idx_np.shape[0])  # nonzero order is the flat voxel order

    out_c, out_l, out_s = [], [], []
    for c in np.unique(lab_all):  # loop over classes (few), never over peaks
        sel = np.nonzero(lab_all == c)[0]
        pos = vox_all[sel] + off_np[sel]
        rows, coords = _merge_plateaus(vox_all[sel], flat_all[sel], pos, int(radii[c]))
        sel = sel[rows]
        if not refine:
            coords = vox_all[sel].astype(np.float64)
        score = vals_np[sel]
        order = np.lexsort((flat_all[sel], -score))
        sel, coords, score = sel[order], coords[order], score[order]
        d = float(dist[c])
        if d > 0 and sel.shape[0] > 1:
            pairs = cKDTree(coords).query_pairs(d, output_type="ndarray")
            if pairs.shape[0]:
                dd = np.linalg.norm(coords[pairs[:, 0]] - coords[pairs[:, 1]], axis=1)
                pairs = pairs[dd < d]
            keep = _greedy_keep(np.arange(sel.shape[0]), pairs[:, 0], pairs[:, 1])
            coords, score = coords[keep], score[keep]
        if max_peaks is not None:
            coords, score = coords[: int(max_peaks)], score[: int(max_peaks)]
        out_c.append(coords)
        out_s.append(score)
        out_l.append(np.full(score.shape[0], c, dtype=np.int64))
    if not out_c:
        return _empty()
    return (
        np.concatenate(out_c).astype(np.float64).reshape(-1, 3),
        np.concatenate(out_l).astype(np.int64),
        np.concatenate(out_s).astype(np.float64),
    )


def peaks_to_picks(
    coords_ds: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    tomo: str,
    particles: ParticleSet,
    voxel_spacing: float,
    ds_factor: int,
    origin: Sequence[float] | np.ndarray | None = None,
) -> Picks:
    """Peaks in downsampled voxels -> a :class:`~cryo3d.picks.Picks` table in Angstrom.

    Parameters
    ----------
    coords_ds : ``[N, 3]``
        Peak positions ``[z, y, x]`` in downsampled voxels (from :func:`find_peaks`).
    labels : int ``[N]``
        Class ids, positions in ``particles``.
    scores : ``[N]``
        Peak scores.
    tomo : str
        Tomogram name written in every row.
    particles : ParticleSet
        Maps class ids to names.
    voxel_spacing : float
        Angstrom per full-resolution voxel.
    ds_factor : int
        Downsampling factor of the heatmap grid.
    origin : ``[3]``, optional
        Corner ``[z, y, x]`` of the heatmap's region in full-resolution tomogram voxels
        (for a heatmap of a patch); ``None`` = the whole tomogram.

    Returns
    -------
    Picks
        ``xyz`` in Angstrom, ``cls`` class names, ``score`` the peak scores.
    """
    coords_ds = np.asarray(coords_ds, dtype=np.float64).reshape(-1, 3)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = coords_ds.shape[0]
    if labels.shape[0] != n or scores.shape[0] != n:
        raise ValueError(f"{n} peak coordinates but {labels.shape[0]} labels and {scores.shape[0]} scores")
    if n and (labels.min() < 0 or labels.max() >= len(particles)):
        raise ValueError(
            f"peak labels must lie in [0, {len(particles)}) for classes {particles.names}, "
            f"got {np.unique(labels).tolist()}"
        )
    vox = ds_to_voxel(coords_ds, ds_factor)
    if origin is not None:
        origin = np.asarray(origin, dtype=np.float64).reshape(-1)
        if origin.shape != (3,):
            raise ValueError(f"origin must be [z, y, x] in full-resolution voxels, got {origin.tolist()}")
        vox = local_to_global(vox, origin)
    xyz = voxel_to_angstrom(vox, voxel_spacing)
    names = np.asarray(particles.names, dtype=object)
    return Picks(np.full(n, tomo, dtype=object), names[labels], xyz, scores)


def max_particles(
    shape: Sequence[int], radius_voxels: float | Sequence[float] | np.ndarray, packing: float = PACKING_FRACTION
) -> np.ndarray:
    """Most particles of each class that a volume can physically hold.

    ``floor(packing * prod(shape) / (4/3 pi r^3))``, at least 1: spheres of radius ``r``
    fill at most :data:`PACKING_FRACTION` of space.

    Parameters
    ----------
    shape : ``(z, y, x)``
        The volume's size in voxels (any grid: full resolution or downsampled).
    radius_voxels : float or ``[C]``
        Particle radius of each class, in voxels of that same grid.
    packing : float
        Fraction of the volume the particles may fill, in ``(0, 1]``.

    Returns
    -------
    int64 ``[C]``
    """
    r = np.asarray(radius_voxels, dtype=np.float64).reshape(-1)
    if r.size == 0 or not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"particle radii must be positive voxel lengths, got {r.tolist()}")
    if not 0 < packing <= 1:
        raise ValueError(f"packing fraction must lie in (0, 1], got {packing!r}")
    volume = float(np.prod(np.asarray(shape, dtype=np.float64)))
    cap = np.floor(packing * volume / (4.0 / 3.0 * math.pi * r**3))
    return np.maximum(cap, 1).astype(np.int64)


def cap_per_class(
    labels: np.ndarray,
    scores: np.ndarray,
    caps: Sequence[int] | np.ndarray,
    where: str = "",
    names: Sequence[str] | None = None,
    warn: bool = True,
) -> np.ndarray:
    """Keep at most ``caps[c]`` peaks of each class ``c``, those of highest score.

    Parameters
    ----------
    labels : int ``[N]``
        Class id of each peak.
    scores : ``[N]``
        Peak scores (ties: the earlier row is kept).
    caps : int ``[C]``
        Most peaks per class (e.g. :func:`max_particles`).
    where : str
        What the peaks come from (a tomogram name), for the warning.
    names : ``[C]``, optional
        Class names, for the warning.
    warn : bool
        Warn (``UserWarning``) naming ``where`` and every class that had more peaks
        than its cap: such a class is usually one the model has not learned.

    Returns
    -------
    bool ``[N]``
        Which rows to keep.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    caps = np.asarray(caps, dtype=np.int64).reshape(-1)
    n = labels.shape[0]
    if scores.shape[0] != n:
        raise ValueError(f"{n} peak labels but {scores.shape[0]} scores")
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    if labels.min() < 0 or labels.max() >= caps.shape[0]:
        raise ValueError(f"peak labels must lie in [0, {caps.shape[0]}), got {np.unique(labels).tolist()}")
    order = np.lexsort((np.arange(n), -scores, labels))  # by class, then descending score
    lab_sorted = labels[order]
    start = np.searchsorted(lab_sorted, lab_sorted, side="left")  # first row of each row's class
    rank = np.arange(n) - start
    keep[order] = rank < caps[lab_sorted]
    count = np.bincount(labels, minlength=caps.shape[0])
    over = np.nonzero(count > caps)[0]
    if warn and over.size:
        label = (lambda c: names[c]) if names is not None else (lambda c: f"class {c}")
        listed = "; ".join(f"{label(c)}: {count[c]} picks, kept the {caps[c]} highest" for c in over)
        warnings.warn(
            f"{where or 'volume'}: more picks than the volume can hold (packing fraction "
            f"{PACKING_FRACTION:.3f} of its volume in particle spheres) for {listed}. "
            "A class that floods like this is usually one the model has not learned.",
            stacklevel=2,
        )
    return keep


def suppress_cross_class(
    coords: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    radii: Sequence[float] | np.ndarray,
    fraction: float = 0.5,
    rule: str = "smaller",
) -> np.ndarray:
    """One particle, one class: drop a peak near a stronger peak of another class.

    Peaks are visited by descending score (ties: row order); a peak is dropped when a
    kept peak of another class lies closer than ``fraction * R`` (strictly), where
    ``R`` is the radius of the smaller of the two classes (``rule="smaller"``), of the
    stronger peak's class (``"stronger"``) or of the larger class (``"larger"``). Peaks
    of one class never suppress each other here (that is :func:`find_peaks`'
    ``min_distance``). Vectorised: ``cKDTree.query_pairs`` at the largest possible
    distance, the pairs filtered by their own distance, then the parallel greedy pass.

    Why ``"smaller"`` by default: two real particles of different classes cannot sit
    closer than the sum of their radii, so a pair within a fraction of the SMALLER
    radius is one particle reported twice, whichever class is stronger; a larger
    distance would start removing true neighbours in crowded tomograms.

    Off by default (:data:`CROSS_CLASS_FRACTION` = 0), because on held-out tomograms it
    lowered the score. Measured (issue 10; the bundle's default model after 3 epochs,
    2 held-out synthetic tomograms, seed 1000, same thresholds): CZII score 0.544 without,
    0.300 / 0.229 / 0.163 with ``fraction`` 0.1 / 0.25 / 0.5 (``"smaller"``); on 2 more
    (seed 2000) 0.600 without, 0.303 / 0.245 with 0.25 / 0.5; after 4 epochs 0.563 / 0.568
    without, 0.440 / 0.427 with 0.25 (0.472 / 0.431 with thresholds re-validated under
    suppression). ``"stronger"`` and
    ``"larger"`` lower it as much, and so does ranking by the margin over each class's
    threshold or by class size. It removes many false picks (at 0.25: 168), but
    also true ones (52; ribosomes above all): where several channels fire on one
    particle the wrong class is often the stronger, and F-beta with beta 4 weighs a lost
    true pick far above a removed false one. A tiny model (3 short epochs) showed the
    same (0.321 without, 0.158 with 0.25).

    Parameters
    ----------
    coords : ``[N, 3]``
        Peak positions, in the same unit as ``radii`` (voxels of one grid, or Angstrom).
    labels : int ``[N]``
        Class id of each peak (index into ``radii``).
    scores : ``[N]``
        Peak scores.
    radii : ``[C]``
        Particle radius per class.
    fraction : float
        Distance as a fraction of the rule's radius; ``0`` turns the pass off.
    rule : ``"smaller"``, ``"stronger"`` or ``"larger"``

    Returns
    -------
    bool ``[N]``
        Which peaks to keep.
    """
    if rule not in CROSS_CLASS_RULES:
        raise ValueError(f"cross-class rule must be one of {CROSS_CLASS_RULES}, got {rule!r}")
    if not np.isfinite(fraction) or fraction < 0:
        raise ValueError(f"cross-class fraction must be a number >= 0, got {fraction!r}")
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    radii = np.asarray(radii, dtype=np.float64).reshape(-1)
    n = coords.shape[0]
    if labels.shape[0] != n or scores.shape[0] != n:
        raise ValueError(f"{n} peak coordinates but {labels.shape[0]} labels and {scores.shape[0]} scores")
    if n < 2 or fraction == 0:
        return np.ones(n, dtype=bool)
    if labels.min() < 0 or labels.max() >= radii.shape[0]:
        raise ValueError(f"peak labels must lie in [0, {radii.shape[0]}), got {np.unique(labels).tolist()}")
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), -scores))] = np.arange(n)
    pairs = cKDTree(coords).query_pairs(fraction * float(radii[np.unique(labels)].max()), output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    ri, rj = radii[labels[i]], radii[labels[j]]
    if rule == "smaller":
        reach = np.minimum(ri, rj)
    elif rule == "larger":
        reach = np.maximum(ri, rj)
    else:
        reach = np.where(rank[i] < rank[j], ri, rj)
    d = np.linalg.norm(coords[i] - coords[j], axis=1)
    link = (labels[i] != labels[j]) & (d < fraction * reach)
    return _greedy_keep(rank, i[link], j[link])

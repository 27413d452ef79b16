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

Across classes and on counts, and into Angstrom picks: :mod:`cryo3d.peak_selection`.

Scores are the heatmap values at the peak voxels; on a logit heatmap (``logits=True``, what
:mod:`cryo3d.sliding_window` stitches) their probabilities, computed in float64 so that they
keep their order where a float32 sigmoid would saturate at 1.0. Coordinates are ``[z, y, x]`` in
downsampled voxels of the heatmap grid; :func:`cryo3d.peak_selection.peaks_to_picks`
turns them into Angstrom picks through :mod:`cryo3d.coords`.

Why by hand: MONAI has no 3D peak finder with per-class distances and sub-voxel
refinement; ``skimage.feature.peak_local_max`` is CPU-only, integer-only and not a
dependency.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from cryo3d.array_module import is_cupy_array

__all__ = ["find_peaks", "greedy_keep", "logit_thresholds", "nms_radius"]


def nms_radius(min_distance: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """Half-width (voxels) of the max-pool NMS cube for each ``min_distance``.

    ``r = max(1, floor(d / sqrt(3)))``: the largest cube that fits inside the ball of
    radius ``d`` (so max-pool NMS never removes a peak farther than ``d`` from every
    higher voxel), and at least the 26-neighbourhood. The kernel is ``2r + 1``.

    Args:
        min_distance: float or ``[C]`` minimum peak distance in downsampled voxels.

    Returns:
        int64 array, same shape as ``min_distance``.
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


def logit_thresholds(thresholds: np.ndarray) -> np.ndarray:
    """Probability thresholds -> the same thresholds on logits (``log(p / (1 - p))``).

    ``sigmoid(v) >= p`` exactly when ``v >= logit(p)``; ``p <= 0`` becomes ``-inf`` (every
    voxel passes) and ``p >= 1`` becomes ``+inf`` (none does).
    """
    p = np.asarray(thresholds, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(p) - np.log1p(-p)
    out = np.where(p <= 0, -np.inf, out)
    return np.where(p >= 1, np.inf, out)


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


def _refine_offsets(hm: torch.Tensor, idx: torch.Tensor, logits: bool = False) -> torch.Tensor:
    """Per-axis log-parabola vertex offsets ``[M, 3]`` (float64, in ``[-0.5, 0.5]``).

    ``idx`` is ``[M, 4]`` ``(c, z, y, x)`` on ``hm``'s device. See the module docstring. With
    ``logits`` the heatmap holds logits and the parabola goes through the log-probabilities
    ``log sigmoid(v)``, the same fit as on the probability map, computed without saturating.
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
        if logits:
            g = F.logsigmoid(f)
        else:
            positive = (f > 0).all(dim=1, keepdim=True)
            g = torch.where(positive, torch.log(f.clamp_min(torch.finfo(torch.float64).tiny)), f)
        denom = g[:, 0] - 2.0 * g[:, 1] + g[:, 2]
        concave = denom < 0
        safe = torch.where(concave, denom, torch.ones_like(denom))
        vertex = m.to(torch.float64) + 0.5 * (g[:, 0] - g[:, 2]) / safe
        o = torch.where(concave, vertex - p.to(torch.float64), torch.zeros_like(denom))
        off[:, a] = o.clamp(-0.5, 0.5)
    return off


def greedy_keep(rank: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
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

    Args:
        vox: int ``[m, 3]`` candidate voxels ``[z, y, x]`` (candidates within one NMS
            window are ties).
        flat: ``[m]`` their voxel order (tie-break).
        pos: float ``[m, 3]`` their refined positions (voxel + parabola offset).
        r: NMS half-width.

    Returns:
        ``(rows, mean_pos)``: ``rows`` ``[p]`` indices into ``vox`` of the representatives
        (member nearest the plateau's centroid, then lowest voxel order); ``mean_pos``
        float64 ``[p, 3]`` mean of ``pos`` over each representative's plateau.
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
    logits: bool = False,
    temperature: float | Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find particle centres in a downsampled heatmap.

    Args:
        heatmap: array ``[C, Z, Y, X]``, per-class heatmap (probabilities, background ~0)
            on the downsampled grid. NumPy, CuPy or a torch tensor on any device; the
            voxel work runs in torch on that device (NumPy input on the CPU).
        thresholds: float or ``[C]``, minimum heatmap value of a peak
            (``value >= threshold``). A threshold at or below the background value makes
            every background voxel a candidate: slow.
        min_distance: float or ``[C]``, minimum distance between two peaks of one class,
            in downsampled voxels (two peaks closer than this never both survive; the
            higher score wins). Also sets the NMS cube, see :func:`nms_radius`.
        refine: sub-voxel refinement (log-parabola per axis, averaged over a plateau).
            ``False`` returns integer voxel positions.
        max_peaks: keep at most this many peaks **per class** (the highest scores).
        logits: the heatmap holds logits (the network's output before the sigmoid, as
            :mod:`cryo3d.sliding_window` stitches it). ``thresholds`` stay probabilities
            (compared as :func:`logit_thresholds`), the refinement fits the
            log-probabilities and the scores are ``sigmoid(logit)`` in float64. A float32
            sigmoid map saturates at exactly 1.0 above a logit of about 16.6, so a
            confident model's peaks all tie there; in float64 from the logits they keep
            their order up to a logit of about 36.7 (probability ``1 - 1e-16``).
        temperature: float or ``[C]`` (> 0), only with ``logits``: scores are
            ``sigmoid(logit / T)`` (:mod:`cryo3d.temperature`, fitted on validation), and
            ``thresholds`` are on those tempered scores. None: ``T = 1``.

    Returns:
        ``(coords, labels, scores)``: ``coords`` float64 ``[N, 3]`` peak positions
        ``[z, y, x]`` in downsampled voxels; ``labels`` int64 ``[N]`` class id (channel) of
        each peak; ``scores`` float64 ``[N]`` heatmap value at the peak voxel (its
        probability with ``logits``). Rows are
        sorted by class, then by descending score (ties by voxel order).

    Example:
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
    if temperature is not None and not logits:
        raise ValueError("temperature applies to a logit heatmap (logits=True)")
    temp = _per_class(1.0 if temperature is None else temperature, C, "temperature")
    if np.any(~(temp > 0)):
        raise ValueError(f"temperature: values must be > 0, got {temp.tolist()}")

    with np.errstate(invalid="ignore"):  # -inf x T stays -inf (a threshold of 0)
        cut = logit_thresholds(thr) * temp if logits else thr
    mask = _candidates(hm, cut, radii)
    idx = torch.nonzero(mask)  # [M, 4] (c, z, y, x), row-major = flat-index order
    if idx.shape[0] == 0:
        return _empty()
    vals = hm[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]].to(torch.float64)
    if logits:
        vals = torch.sigmoid(vals / torch.as_tensor(temp, dtype=torch.float64, device=vals.device)[idx[:, 0]])
    off = _refine_offsets(hm, idx, logits) if refine else None

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
            keep = greedy_keep(np.arange(sel.shape[0]), pairs[:, 0], pairs[:, 1])
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









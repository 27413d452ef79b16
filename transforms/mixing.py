"""Batch-level MixUp, CutMix and CutMixUp with given draws, on torch tensors, on the training device.

A batch is the dictionary that :func:`collate_keypoints` makes: ``image`` ``[B, 1, Z, Y, X]``,
``heatmap`` ``[B, C, z, y, x]`` (z = ceil(Z / f), ...), ``keypoints`` ``[B, Kmax, 3]`` (z-y-x,
full-resolution patch voxels) with ``labels`` ``[B, Kmax]`` where ``-1`` marks padding,
optional ``covariances`` ``[B, Kmax, 3, 3]``, and ``ds_sigma`` ``[B, C]``, ``ds_factor`` ``[B]``.
Each sample ``A = b`` is mixed with a partner ``B = perm[b]``, ``perm`` a random
permutation of the batch.

* **MixUp**: ``lam ~ Beta(alpha, alpha)`` per sample; image and heatmap both become
  ``lam * A + (1 - lam) * B``. Keypoints: both sets (for bookkeeping; the heatmap is the
  blend, not a rendering).
* **CutMix**: a box (volume fraction ``1 - lam``, ``lam ~ Beta(alpha, alpha)``, corners on
  the ``ds_factor`` grid so that it is also a box of the heatmap) is pasted from B into A.
  Keypoints become A's whose centre is outside the box plus B's whose centre is inside it,
  and the heatmap is **rendered again** from them (never masked). Membership is by centre
  and each kept keypoint is rendered whole: a Gaussian of B near the box edge spills past
  the box, as does one of A just outside it into the box. This is the honest choice: the
  target says "a particle centre is here" exactly where the pasted image has one.
* **CutMixUp**: as CutMix, but inside the box image and heatmap are blended,
  ``lam * A + (1 - lam) * B`` (one ``lam`` for both); outside the box A is kept.
  Keypoints: all of A's plus B's inside the box.

Each call also stores ``mix_mode``, ``mix_index`` (``perm``), ``mix_lambda`` ``[B]`` (A's
weight: blend weight, or A's remaining volume fraction for CutMix) and ``mix_box``
``[B, 2, 3]`` (full-resolution ``[lo, hi)`` per axis) in the batch.

The functions here take the draws (weights, boxes, partners) as arguments; the random
mixers that draw them (:class:`~cryo3d_transforms.mixers.HeatmapMixUp`, ...,
:class:`~cryo3d_transforms.mixers.BatchMixer`) are in :mod:`cryo3d_transforms.mixers`.
Field names come from :class:`~cryo3d_transforms.keypoints.KeypointKeys`.

Why by hand: MONAI has no batch-level mixing that carries keypoints (its ``CutMix`` masks
label maps, which would cut Gaussians at the box edge).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.data import list_data_collate

from cryo3d import coords
from cryo3d.array_module import to_numpy, torch_to_xp, xp_to_torch
from cryo3d.heatmap import DEFAULT_TRUNCATE, render_heatmap
from cryo3d_transforms.arrays import host_array
from cryo3d_transforms.keypoints import KeypointKeys, read_keypoints

__all__ = [
    "PAD_LABEL",
    "collate_keypoints",
    "sample_keypoints",
    "render_batch_heatmap",
    "draw_boxes",
    "box_mask",
    "keypoints_in_boxes",
    "batch_ds_factor",
    "batch_ds_sigma",
    "heatmap_mixup",
    "heatmap_cutmix",
    "heatmap_cutmixup",
]

#: Label of a padding slot in batched keypoints.
PAD_LABEL = -1


# --------------------------------------------------------------------------- collate


def collate_keypoints(batch: Sequence[Any], keypoint_keys: KeypointKeys | Mapping[str, str] | None = None) -> Any:
    """Collate samples with variable numbers of keypoints (a ``DataLoader`` ``collate_fn``).

    Pads ``keypoints`` to ``[B, Kmax, 3]`` (zeros), ``labels`` to ``[B, Kmax]`` (``-1``) and
    ``covariances`` to ``[B, Kmax, 3, 3]`` (identity), records each sample's count in
    ``num_keypoints``, then hands over to MONAI's ``list_data_collate`` for every other
    field (so it flattens lists of samples from multi-sample crops just as MONAI does).

    Args:
        batch: the samples (dictionaries, or lists of them).
        keypoint_keys: field names (:class:`~cryo3d_transforms.keypoints.KeypointKeys`;
            ``None``: defaults).

    Returns:
        The collated batch.

    Raises:
        ValueError: an empty batch, or keypoints / covariances in some samples only.

    Example:
        In a bundle: ``collate_fn: "$cryo3d_transforms.collate_keypoints"``.
    """
    keys = KeypointKeys.of(keypoint_keys)
    items: list = []
    for item in batch:
        items.extend(item if isinstance(item, (list, tuple)) else [item])
    if not items:
        raise ValueError("collate_keypoints: empty batch")
    if not all(isinstance(it, Mapping) for it in items):
        return list_data_collate(batch)
    has = [keys.keypoints in it and keys.labels in it for it in items]
    if not all(has):
        if not any(has):
            return list_data_collate(items)
        raise ValueError(f"collate_keypoints: some samples lack {keys.keypoints!r} / {keys.labels!r}")
    fields = [read_keypoints(it, keys) for it in items]
    kmax = max(f.labels.shape[0] for f in fields)
    with_cov = any(f.covariances is not None for f in fields)
    if with_cov and not all(f.covariances is not None for f in fields):
        raise ValueError(f"collate_keypoints: {keys.covariances!r} present in some samples only")
    out = []
    for it, f in zip(items, fields):
        k = f.labels.shape[0]
        d = dict(it)
        d[keys.keypoints] = np.concatenate([f.points, np.zeros((kmax - k, 3))])
        d[keys.labels] = np.concatenate([f.labels, np.full(kmax - k, PAD_LABEL, np.int64)])
        if with_cov:
            d[keys.covariances] = np.concatenate([f.covariances, np.broadcast_to(np.eye(3), (kmax - k, 3, 3))])
        d[keys.count] = k
        out.append(d)
    return list_data_collate(out)


def sample_keypoints(
    batch: Mapping[str, Any], b: int, keypoint_keys: KeypointKeys | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Sample ``b``'s keypoints, labels and covariances (or None) without padding (tensors)."""
    keys = KeypointKeys.of(keypoint_keys)
    lab = batch[keys.labels][b]
    valid = lab >= 0
    cov = batch.get(keys.covariances)
    return batch[keys.keypoints][b][valid], lab[valid], None if cov is None else cov[b][valid]


# --------------------------------------------------------------------------- rendering


def batch_ds_factor(batch: Mapping[str, Any], ds_factor: Any = None, keypoint_keys: KeypointKeys | None = None) -> int:
    """The batch's one ``ds_factor`` (an explicit value wins over the field).

    Raises:
        ValueError: no factor, or several different ones in the batch.
    """
    field = KeypointKeys.of(keypoint_keys).ds_factor
    if ds_factor is None:
        if field not in batch:
            raise ValueError(f"batch has no {field!r} field and no ds_factor was given to the mixer")
        ds_factor = batch[field]
    f = np.unique(host_array(ds_factor, np.int64, "ds_factor"))
    if f.size != 1 or f[0] < 1:
        raise ValueError(f"ds_factor: expected one positive factor for the whole batch, got {f.tolist()}")
    return int(f[0])


def batch_ds_sigma(
    batch: Mapping[str, Any], ds_sigma: Any, n: int, keypoint_keys: KeypointKeys | None = None
) -> np.ndarray:
    """Per-sample ``ds_sigma`` ``[n, C]`` in downsampled voxels, on the host (an explicit ``[C]`` is shared).

    Raises:
        ValueError: no sigma, or not ``[C]`` / ``[n, C]``.
    """
    field = KeypointKeys.of(keypoint_keys).ds_sigma
    if ds_sigma is None:
        if field not in batch:
            raise ValueError(f"batch has no {field!r} field and no ds_sigma was given to the mixer")
        ds_sigma = batch[field]
    sig = np.asarray(to_numpy(ds_sigma), np.float64)
    if sig.ndim == 1:
        sig = np.broadcast_to(sig[None, :], (n, sig.shape[0]))
    if sig.ndim != 2 or sig.shape[0] != n:
        raise ValueError(f"ds_sigma: expected [C] or [B={n}, C], got shape {sig.shape}")
    return sig


def render_batch_heatmap(
    keypoints: torch.Tensor,
    labels: torch.Tensor,
    spatial_shape: Sequence[int],
    ds_sigma: np.ndarray,
    ds_factor: int,
    covariances: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    truncate: float = DEFAULT_TRUNCATE,
) -> torch.Tensor:
    """Render ``[B, C, z, y, x]`` from padded batch keypoints, on the keypoints' device.

    CUDA tensors are rendered with CuPy (DLPack views, no host copies of the volumes).

    Args:
        keypoints: ``[B, K, 3]`` z-y-x full-resolution voxels.
        labels: ``[B, K]`` with ``-1`` padding.
        spatial_shape: full-resolution (Z, Y, X).
        ds_sigma: ``[B, C]`` (or ``[C]``) in downsampled voxels.
        ds_factor: the downsampling factor.
        covariances: optional ``[B, K, 3, 3]`` in full-resolution voxels.
        dtype: dtype of the result.
        truncate: box half-width in standard deviations.

    Returns:
        The heatmaps ``[B, C, ceil(Z/f), ceil(Y/f), ceil(X/f)]``.
    """
    B = keypoints.shape[0]
    sig = batch_ds_sigma({}, ds_sigma, B)
    shape_ds = coords.ds_shape(tuple(spatial_shape), ds_factor)
    out = []
    for b in range(B):  # the batch (a few samples); the renderer is vectorised over keypoints
        valid = labels[b] >= 0
        kp = torch_to_xp(keypoints[b][valid].to(torch.float64).contiguous())
        lab = torch_to_xp(labels[b][valid].contiguous())
        cov = None
        if covariances is not None:
            cov = coords.voxel_to_ds_covariance(torch_to_xp(covariances[b][valid].to(torch.float64).contiguous()), ds_factor)
        hm = render_heatmap(coords.voxel_to_ds(kp, ds_factor), lab, shape_ds, sig[b], cov, truncate=truncate)
        out.append(xp_to_torch(hm))
    return torch.stack(out).to(device=keypoints.device, dtype=dtype)


# --------------------------------------------------------------------------- boxes


def draw_boxes(
    rng: np.random.RandomState, n: int, shape: Sequence[int], alpha: float, ds_factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """CutMix boxes on the ``ds_factor`` grid: ``[n, 2, 3]`` full-resolution ``[lo, hi)``.

    The target volume fraction of each box is ``1 - lam``, ``lam ~ Beta(alpha, alpha)``,
    with side ``n_a * (1 - lam)^(1/3)`` and a uniformly drawn centre; corners are rounded
    to multiples of ``ds_factor`` (or the patch end) and clipped to the patch.

    Args:
        rng: the random state.
        n: number of boxes (the batch size).
        shape: full-resolution (Z, Y, X) of the patches.
        alpha: Beta parameter of the volume fraction.
        ds_factor: the grid the corners lie on.

    Returns:
        ``(boxes, lam)``: int64 ``[n, 2, 3]`` and float64 ``[n]``, A's actual remaining
        volume fraction ``1 - |box| / |patch|``.
    """
    dims = np.asarray(shape, np.float64)
    lam0 = rng.beta(alpha, alpha, size=n)
    side = dims[None, :] * np.cbrt(1.0 - lam0)[:, None]
    centre = rng.uniform(0.0, 1.0, size=(n, 3)) * dims[None, :]
    f = float(ds_factor)
    lo = np.clip(np.round((centre - side / 2) / f) * f, 0, dims)
    hi = np.clip(np.round((centre + side / 2) / f) * f, 0, dims)
    hi = np.where(hi >= dims - (f - 1), dims, hi)  # a box reaching the last ds voxel covers the patch end
    boxes = np.stack([lo, hi], axis=1).astype(np.int64)
    vol = np.prod(np.maximum(boxes[:, 1] - boxes[:, 0], 0), axis=1)
    return boxes, 1.0 - vol / float(np.prod(dims))


def box_mask(boxes: torch.Tensor, shape: Sequence[int], scale: int = 1) -> torch.Tensor:
    """Boolean ``[B, 1, Z, Y, X]`` of the boxes ``[B, 2, 3]`` on a grid ``scale`` times coarser.

    ``scale = ds_factor`` gives the heatmap's box: ``[lo / f, ceil(hi / f))``.
    """
    lo, hi = coords.voxel_box_to_ds(boxes[:, 0], boxes[:, 1], scale)
    axes = []
    for a, n in enumerate(shape):
        r = torch.arange(int(n), device=boxes.device)
        axes.append((r[None, :] >= lo[:, a, None]) & (r[None, :] < hi[:, a, None]))
    m = axes[0][:, :, None, None] & axes[1][:, None, :, None] & axes[2][:, None, None, :]
    return m[:, None]


def keypoints_in_boxes(keypoints: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``[B, K]``: the keypoint's centre lies in its sample's box (voxel extents ``[lo - 0.5, hi - 0.5)``)."""
    lo, hi = coords.voxel_extent(boxes[:, None, 0, :].to(keypoints.dtype), boxes[:, None, 1, :].to(keypoints.dtype))
    return torch.all((keypoints >= lo) & (keypoints < hi), dim=-1)


def _merge_keypoints(
    batch: dict, keep_a: torch.Tensor, keep_b: torch.Tensor, perm: torch.Tensor, keys: KeypointKeys
) -> None:
    """Keypoints = A's where ``keep_a`` plus partner B's where ``keep_b`` (both ``[B, K]``), compacted."""
    kp, lab = batch[keys.keypoints], batch[keys.labels]
    cov = batch.get(keys.covariances)
    lab_a = torch.where(keep_a & (lab >= 0), lab, torch.full_like(lab, PAD_LABEL))
    lab_b = torch.where(keep_b & (lab[perm] >= 0), lab[perm], torch.full_like(lab, PAD_LABEL))
    new_lab = torch.cat([lab_a, lab_b], dim=1)
    order = torch.argsort((new_lab < 0).to(torch.int8), dim=1, stable=True)
    kmax = int((new_lab >= 0).sum(dim=1).max().item()) if new_lab.numel() else 0
    order = order[:, :kmax]
    batch[keys.labels] = torch.gather(new_lab, 1, order)
    new_kp = torch.cat([kp, kp[perm]], dim=1)
    batch[keys.keypoints] = torch.gather(new_kp, 1, order[..., None].expand(-1, -1, 3))
    if cov is not None:
        new_cov = torch.cat([cov, cov[perm]], dim=1)
        batch[keys.covariances] = torch.gather(new_cov, 1, order[..., None, None].expand(-1, -1, 3, 3))
    if keys.count in batch:
        batch[keys.count] = (batch[keys.labels] >= 0).sum(dim=1)


# --------------------------------------------------------------------------- mixing with given draws


def _as_index(perm: Any, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(perm), dtype=torch.long, device=device)


def _weights(lam: Any, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(lam, np.float64), dtype=like.dtype, device=like.device).view(-1, 1, 1, 1, 1)


def heatmap_mixup(
    batch: Mapping[str, Any], lam: Any, perm: Any, keypoint_keys: KeypointKeys | Mapping[str, str] | None = None
) -> dict:
    """MixUp of image and heatmap with given per-sample weights and partners.

    Args:
        batch: a collated batch (module docstring).
        lam: ``[B]`` A's weights in ``[0, 1]``.
        perm: ``[B]`` partner of each sample.
        keypoint_keys: field names (``None``: defaults).

    Returns:
        A new batch: ``lam * A + (1 - lam) * B`` for image and heatmap, both keypoint sets.

    Example:
        >>> mixed = heatmap_mixup(batch, [0.5] * 3, [1, 2, 0])  # doctest: +SKIP
    """
    k = KeypointKeys.of(keypoint_keys)
    out = dict(batch)
    img, hm = batch[k.image], batch[k.heatmap]
    p = _as_index(perm, img.device)
    out[k.image] = _weights(lam, img) * img + (1 - _weights(lam, img)) * img[p]
    out[k.heatmap] = _weights(lam, hm) * hm + (1 - _weights(lam, hm)) * hm[p]
    if k.keypoints in batch:
        lab = batch[k.labels]
        ones = torch.ones_like(lab, dtype=torch.bool)
        _merge_keypoints(out, ones, ones, p.to(lab.device), k)
    out.update(mix_mode="mixup", mix_index=p, mix_lambda=torch.as_tensor(np.asarray(lam, np.float64)))
    return out


def heatmap_cutmix(
    batch: Mapping[str, Any],
    boxes: Any,
    perm: Any,
    ds_sigma: Any = None,
    ds_factor: int | None = None,
    truncate: float = DEFAULT_TRUNCATE,
    keypoint_keys: KeypointKeys | Mapping[str, str] | None = None,
) -> dict:
    """CutMix with given boxes and partners; the heatmap is rendered again (module docstring).

    Args:
        batch: a collated batch (module docstring).
        boxes: ``[B, 2, 3]`` full-resolution ``[lo, hi)`` per axis.
        perm: ``[B]`` partner of each sample.
        ds_sigma: overrides the batch's ``ds_sigma`` (downsampled voxels).
        ds_factor: overrides the batch's ``ds_factor``.
        truncate: box half-width of the renderer in standard deviations.
        keypoint_keys: field names (``None``: defaults).

    Returns:
        A new batch with B's box pasted into A, keypoints merged by centre, heatmap rendered.

    Example:
        >>> mixed = heatmap_cutmix(batch, [[[0, 0, 0], [8, 8, 8]]] * 3, [1, 2, 0])  # doctest: +SKIP
    """
    k = KeypointKeys.of(keypoint_keys)
    out = dict(batch)
    img = batch[k.image]
    shape = tuple(img.shape[2:])
    p = _as_index(perm, img.device)
    bx = torch.as_tensor(np.asarray(boxes), dtype=torch.long, device=img.device)
    out[k.image] = torch.where(box_mask(bx, shape), img[p], img)
    kp = batch[k.keypoints]
    pk, bk = p.to(kp.device), bx.to(kp.device)
    # sample b's box decides for A's own keypoints and for its partner's (moved into A)
    _merge_keypoints(out, ~keypoints_in_boxes(kp, bk), keypoints_in_boxes(kp[pk], bk), pk, k)
    sig, f = batch_ds_sigma(batch, ds_sigma, img.shape[0], k), batch_ds_factor(batch, ds_factor, k)
    hm_dtype = batch[k.heatmap].dtype if k.heatmap in batch else torch.float32
    out[k.heatmap] = render_batch_heatmap(
        out[k.keypoints], out[k.labels], shape, sig, f, out.get(k.covariances), hm_dtype, truncate
    ).to(img.device)
    vol = torch.prod((bx[:, 1] - bx[:, 0]).clamp(min=0), dim=1).to(torch.float64)
    out.update(mix_mode="cutmix", mix_index=p, mix_box=bx, mix_lambda=(1 - vol / float(np.prod(shape))).cpu())
    return out


def heatmap_cutmixup(
    batch: Mapping[str, Any],
    boxes: Any,
    lam: Any,
    perm: Any,
    ds_factor: int | None = None,
    keypoint_keys: KeypointKeys | Mapping[str, str] | None = None,
) -> dict:
    """CutMixUp: inside each box ``lam * A + (1 - lam) * B`` for image and heatmap; A outside.

    Args:
        batch: a collated batch (module docstring).
        boxes: ``[B, 2, 3]`` full-resolution ``[lo, hi)`` per axis (on the ``ds_factor`` grid).
        lam: ``[B]`` A's blend weights inside the box.
        perm: ``[B]`` partner of each sample.
        ds_factor: overrides the batch's ``ds_factor``.
        keypoint_keys: field names (``None``: defaults).

    Returns:
        A new batch; keypoints are all of A's plus B's inside the box.

    Example:
        >>> mixed = heatmap_cutmixup(batch, [[[0, 0, 0], [8, 8, 8]]] * 3, [0.5] * 3, [1, 2, 0])  # doctest: +SKIP
    """
    k = KeypointKeys.of(keypoint_keys)
    out = dict(batch)
    img, hm = batch[k.image], batch[k.heatmap]
    p = _as_index(perm, img.device)
    bx = torch.as_tensor(np.asarray(boxes), dtype=torch.long, device=img.device)
    ds_factor = batch_ds_factor(batch, ds_factor, k)
    w_img = _weights(lam, img)
    out[k.image] = torch.where(box_mask(bx, img.shape[2:]), w_img * img + (1 - w_img) * img[p], img)
    w_hm = _weights(lam, hm)
    m_hm = box_mask(bx.to(hm.device), hm.shape[2:], scale=int(ds_factor))
    out[k.heatmap] = torch.where(m_hm, w_hm * hm + (1 - w_hm) * hm[p.to(hm.device)], hm)
    if k.keypoints in batch:
        kp = batch[k.keypoints]
        pk, bk = p.to(kp.device), bx.to(kp.device)
        inside_b = keypoints_in_boxes(kp[pk], bk)
        _merge_keypoints(out, torch.ones_like(inside_b), inside_b, pk, k)
    out.update(mix_mode="cutmixup", mix_index=p, mix_box=bx, mix_lambda=torch.as_tensor(np.asarray(lam, np.float64)))
    return out

"""Batch-level MixUp, CutMix and CutMixUp on torch tensors, on the training device.

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

Why by hand: MONAI has no batch-level mixing that carries keypoints (its ``CutMix`` masks
label maps, which would cut Gaussians at the box edge).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.data import list_data_collate
from monai.engines.utils import PrepareBatch
from monai.transforms import Randomizable

from cryo3d import coords
from cryo3d.array_module import to_numpy, torch_to_xp, xp_to_torch
from cryo3d.heatmap import DEFAULT_TRUNCATE, render_heatmap
from cryo3d_transforms.arrays import host_array

__all__ = [
    "PAD_LABEL",
    "collate_keypoints",
    "sample_keypoints",
    "render_batch_heatmap",
    "draw_boxes",
    "box_mask",
    "keypoints_in_boxes",
    "mixup",
    "cutmix",
    "cutmixup",
    "MixUp",
    "CutMix",
    "CutMixUp",
    "BatchMixer",
    "PrepareMixedBatch",
]

#: Label of a padding slot in batched keypoints.
PAD_LABEL = -1


# --------------------------------------------------------------------------- collate


def collate_keypoints(
    batch: Sequence[Any],
    keypoints_key: str = "keypoints",
    labels_key: str = "labels",
    covariances_key: str = "covariances",
    count_key: str = "num_keypoints",
) -> Any:
    """Collate samples with variable numbers of keypoints (a ``DataLoader`` ``collate_fn``).

    Pads ``keypoints`` to ``[B, Kmax, 3]`` (zeros), ``labels`` to ``[B, Kmax]`` (``-1``) and
    ``covariances`` to ``[B, Kmax, 3, 3]`` (identity), records each sample's count in
    ``count_key``, then hands over to MONAI's ``list_data_collate`` for every other field
    (so it flattens lists of samples from multi-sample crops just as MONAI does).
    """
    items: list = []
    for item in batch:
        items.extend(item if isinstance(item, (list, tuple)) else [item])
    if not items:
        raise ValueError("collate_keypoints: empty batch")
    if not all(isinstance(it, Mapping) for it in items):
        return list_data_collate(batch)
    fields = []
    for it in items:
        if keypoints_key not in it or labels_key not in it:
            fields.append(None)
            continue
        pts = host_array(it[keypoints_key], np.float64, keypoints_key, (3,))
        lab = host_array(it[labels_key], np.int64, labels_key)
        cov = it.get(covariances_key)
        cov = None if cov is None else host_array(cov, np.float64, covariances_key, (3, 3))
        fields.append((pts, lab, cov))
    if any(f is None for f in fields):
        if all(f is None for f in fields):
            return list_data_collate(items)
        raise ValueError(f"collate_keypoints: some samples lack {keypoints_key!r} / {labels_key!r}")
    kmax = max(f[1].shape[0] for f in fields)
    with_cov = any(f[2] is not None for f in fields)
    if with_cov and not all(f[2] is not None for f in fields):
        raise ValueError(f"collate_keypoints: {covariances_key!r} present in some samples only")
    out = []
    for it, (pts, lab, cov) in zip(items, fields):
        k = lab.shape[0]
        d = dict(it)
        d[keypoints_key] = np.concatenate([pts, np.zeros((kmax - k, 3))])
        d[labels_key] = np.concatenate([lab, np.full(kmax - k, PAD_LABEL, np.int64)])
        if with_cov:
            d[covariances_key] = np.concatenate([cov, np.broadcast_to(np.eye(3), (kmax - k, 3, 3))])
        d[count_key] = k
        out.append(d)
    return list_data_collate(out)


def sample_keypoints(batch: Mapping[str, Any], b: int, keypoints_key="keypoints", labels_key="labels", covariances_key="covariances"):
    """Sample ``b``'s keypoints, labels and covariances (or None) without padding (tensors)."""
    lab = batch[labels_key][b]
    valid = lab >= 0
    cov = batch.get(covariances_key)
    return batch[keypoints_key][b][valid], lab[valid], None if cov is None else cov[b][valid]


# --------------------------------------------------------------------------- rendering


def _batch_factor(batch: Mapping[str, Any], ds_factor: Any) -> int:
    """The batch's one ``ds_factor`` (an explicit value wins over the field)."""
    if ds_factor is None:
        if "ds_factor" not in batch:
            raise ValueError("batch has no 'ds_factor' field and no ds_factor was given to the mixer")
        ds_factor = batch["ds_factor"]
    f = np.unique(host_array(ds_factor, np.int64, "ds_factor"))
    if f.size != 1 or f[0] < 1:
        raise ValueError(f"ds_factor: expected one positive factor for the whole batch, got {f.tolist()}")
    return int(f[0])


def _batch_sigma(batch: Mapping[str, Any], ds_sigma: Any, n: int) -> np.ndarray:
    """Per-sample ``ds_sigma`` ``[n, C]`` on the host (an explicit ``[C]`` is shared)."""
    if ds_sigma is None:
        if "ds_sigma" not in batch:
            raise ValueError("batch has no 'ds_sigma' field and no ds_sigma was given to the mixer")
        ds_sigma = batch["ds_sigma"]
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

    Parameters
    ----------
    keypoints : ``[B, K, 3]`` full-resolution voxels; labels ``[B, K]`` with ``-1`` padding.
    spatial_shape : full-resolution (Z, Y, X).
    ds_sigma : ``[B, C]`` (or ``[C]``) downsampled voxels; ds_factor : int.
    covariances : ``[B, K, 3, 3]`` full-resolution voxels, optional.

    CUDA tensors are rendered with CuPy (DLPack views, no host copies of the volumes).
    """
    B = keypoints.shape[0]
    sig = _batch_sigma({}, ds_sigma, B)
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

    Returns
    -------
    boxes : int64 ``[n, 2, 3]``.
    lam : float64 ``[n]``, A's actual remaining volume fraction ``1 - |box| / |patch|``.
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
    lo = torch.div(boxes[:, 0], scale, rounding_mode="floor")
    hi = -torch.div(-boxes[:, 1], scale, rounding_mode="floor")
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


def _merge_keypoints(batch: dict, keep_a: torch.Tensor, keep_b: torch.Tensor, perm: torch.Tensor, keys: dict) -> None:
    """Keypoints = A's where ``keep_a`` plus partner B's where ``keep_b`` (both ``[B, K]``), compacted."""
    kp, lab = batch[keys["keypoints"]], batch[keys["labels"]]
    cov = batch.get(keys["covariances"])
    lab_a = torch.where(keep_a & (lab >= 0), lab, torch.full_like(lab, PAD_LABEL))
    lab_b = torch.where(keep_b & (lab[perm] >= 0), lab[perm], torch.full_like(lab, PAD_LABEL))
    new_lab = torch.cat([lab_a, lab_b], dim=1)
    order = torch.argsort((new_lab < 0).to(torch.int8), dim=1, stable=True)
    kmax = int((new_lab >= 0).sum(dim=1).max().item()) if new_lab.numel() else 0
    order = order[:, :kmax]
    batch[keys["labels"]] = torch.gather(new_lab, 1, order)
    new_kp = torch.cat([kp, kp[perm]], dim=1)
    batch[keys["keypoints"]] = torch.gather(new_kp, 1, order[..., None].expand(-1, -1, 3))
    if cov is not None:
        new_cov = torch.cat([cov, cov[perm]], dim=1)
        batch[keys["covariances"]] = torch.gather(new_cov, 1, order[..., None, None].expand(-1, -1, 3, 3))
    if "num_keypoints" in batch:
        batch["num_keypoints"] = (batch[keys["labels"]] >= 0).sum(dim=1)


# --------------------------------------------------------------------------- functional forms

_KEYS = dict(image="image", heatmap="heatmap", keypoints="keypoints", labels="labels", covariances="covariances")


def _keys(**kw: Any) -> dict:
    k = dict(_KEYS)
    k.update({n: v for n, v in kw.items() if v is not None})
    return k


def _as_index(perm: Any, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(perm), dtype=torch.long, device=device)


def _weights(lam: Any, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(lam, np.float64), dtype=like.dtype, device=like.device).view(-1, 1, 1, 1, 1)


def mixup(batch: Mapping[str, Any], lam: Any, perm: Any, **keys: Any) -> dict:
    """MixUp with given per-sample weights ``lam`` ``[B]`` and partners ``perm`` ``[B]``."""
    k = _keys(**keys)
    out = dict(batch)
    img, hm = batch[k["image"]], batch[k["heatmap"]]
    p = _as_index(perm, img.device)
    out[k["image"]] = _weights(lam, img) * img + (1 - _weights(lam, img)) * img[p]
    out[k["heatmap"]] = _weights(lam, hm) * hm + (1 - _weights(lam, hm)) * hm[p]
    if k["keypoints"] in batch:
        lab = batch[k["labels"]]
        ones = torch.ones_like(lab, dtype=torch.bool)
        _merge_keypoints(out, ones, ones, p.to(lab.device), k)
    out.update(mix_mode="mixup", mix_index=p, mix_lambda=torch.as_tensor(np.asarray(lam, np.float64)))
    return out


def cutmix(
    batch: Mapping[str, Any],
    boxes: Any,
    perm: Any,
    ds_sigma: Any = None,
    ds_factor: int | None = None,
    truncate: float = DEFAULT_TRUNCATE,
    **keys: Any,
) -> dict:
    """CutMix with given boxes ``[B, 2, 3]`` (full-resolution ``[lo, hi)``) and partners ``perm``.

    The heatmap is rendered again from the merged keypoints (module docstring).
    """
    k = _keys(**keys)
    out = dict(batch)
    img = batch[k["image"]]
    shape = tuple(img.shape[2:])
    p = _as_index(perm, img.device)
    bx = torch.as_tensor(np.asarray(boxes), dtype=torch.long, device=img.device)
    out[k["image"]] = torch.where(box_mask(bx, shape), img[p], img)
    kp = batch[k["keypoints"]]
    pk, bk = p.to(kp.device), bx.to(kp.device)
    # sample b's box decides for A's own keypoints and for its partner's (moved into A)
    _merge_keypoints(out, ~keypoints_in_boxes(kp, bk), keypoints_in_boxes(kp[pk], bk), pk, k)
    sig, f = _batch_sigma(batch, ds_sigma, img.shape[0]), _batch_factor(batch, ds_factor)
    hm_dtype = batch[k["heatmap"]].dtype if k["heatmap"] in batch else torch.float32
    out[k["heatmap"]] = render_batch_heatmap(
        out[k["keypoints"]], out[k["labels"]], shape, sig, f, out.get(k["covariances"]), hm_dtype, truncate
    ).to(img.device)
    vol = torch.prod((bx[:, 1] - bx[:, 0]).clamp(min=0), dim=1).to(torch.float64)
    out.update(mix_mode="cutmix", mix_index=p, mix_box=bx, mix_lambda=(1 - vol / float(np.prod(shape))).cpu())
    return out


def cutmixup(batch: Mapping[str, Any], boxes: Any, lam: Any, perm: Any, ds_factor: int | None = None, **keys: Any) -> dict:
    """CutMixUp: inside each box, ``lam * A + (1 - lam) * B`` for image and heatmap; A outside."""
    k = _keys(**keys)
    out = dict(batch)
    img, hm = batch[k["image"]], batch[k["heatmap"]]
    p = _as_index(perm, img.device)
    bx = torch.as_tensor(np.asarray(boxes), dtype=torch.long, device=img.device)
    ds_factor = _batch_factor(batch, ds_factor)
    w_img = _weights(lam, img)
    out[k["image"]] = torch.where(box_mask(bx, img.shape[2:]), w_img * img + (1 - w_img) * img[p], img)
    w_hm = _weights(lam, hm)
    m_hm = box_mask(bx.to(hm.device), hm.shape[2:], scale=int(ds_factor))
    out[k["heatmap"]] = torch.where(m_hm, w_hm * hm + (1 - w_hm) * hm[p.to(hm.device)], hm)
    if k["keypoints"] in batch:
        kp = batch[k["keypoints"]]
        pk, bk = p.to(kp.device), bx.to(kp.device)
        inside_b = keypoints_in_boxes(kp[pk], bk)
        _merge_keypoints(out, torch.ones_like(inside_b), inside_b, pk, k)
    out.update(mix_mode="cutmixup", mix_index=p, mix_box=bx, mix_lambda=torch.as_tensor(np.asarray(lam, np.float64)))
    return out


# --------------------------------------------------------------------------- random forms


class _Mixer(Randomizable):
    """Shared parameters of the random mixers (field names, ds overrides)."""

    def __init__(
        self,
        alpha: float,
        image_key: str = "image",
        heatmap_key: str = "heatmap",
        keypoints_key: str = "keypoints",
        labels_key: str = "labels",
        covariances_key: str = "covariances",
        ds_sigma: Sequence[float] | None = None,
        ds_factor: int | None = None,
    ) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha: expected a positive Beta parameter, got {alpha!r}")
        self.alpha = float(alpha)
        self.keys = dict(
            image=image_key, heatmap=heatmap_key, keypoints=keypoints_key, labels=labels_key, covariances=covariances_key
        )
        self.ds_sigma = ds_sigma
        self.ds_factor = ds_factor
        self.perm = np.zeros(0, np.int64)

    def _perm(self, n: int) -> np.ndarray:
        self.perm = self.R.permutation(n)
        return self.perm

    def _factor(self, batch: Mapping[str, Any]) -> int:
        return _batch_factor(batch, self.ds_factor)


class MixUp(_Mixer):
    """Random MixUp: ``lam ~ Beta(alpha, alpha)`` per sample, partner from a permutation.

    Call ``mixer(batch)`` -> mixed batch (a new dict). The draws are kept in ``self.lam``
    and ``self.perm``. Parameters: ``alpha`` and field names (see :class:`BatchMixer`).
    """

    def __init__(self, alpha: float = 0.4, **kw: Any) -> None:
        super().__init__(alpha, **kw)
        self.lam = np.zeros(0)

    def randomize(self, n: int) -> None:  # type: ignore[override]
        self.lam = self.R.beta(self.alpha, self.alpha, size=n)
        self._perm(n)

    def __call__(self, batch: Mapping[str, Any]) -> dict:
        self.randomize(batch[self.keys["image"]].shape[0])
        return mixup(batch, self.lam, self.perm, **self.keys)


class CutMix(_Mixer):
    """Random CutMix (boxes from :func:`draw_boxes`, heatmap rendered again).

    The draws are kept in ``self.boxes``, ``self.lam`` and ``self.perm``.
    """

    def __init__(self, alpha: float = 1.0, truncate: float = DEFAULT_TRUNCATE, **kw: Any) -> None:
        super().__init__(alpha, **kw)
        self.truncate = float(truncate)
        self.boxes = np.zeros((0, 2, 3), np.int64)
        self.lam = np.zeros(0)

    def randomize(self, n: int, shape: Sequence[int], ds_factor: int) -> None:  # type: ignore[override]
        self.boxes, self.lam = draw_boxes(self.R, n, shape, self.alpha, ds_factor)
        self._perm(n)

    def __call__(self, batch: Mapping[str, Any]) -> dict:
        img = batch[self.keys["image"]]
        self.randomize(img.shape[0], img.shape[2:], self._factor(batch))
        return cutmix(batch, self.boxes, self.perm, self.ds_sigma, self.ds_factor, self.truncate, **self.keys)


class CutMixUp(_Mixer):
    """Random CutMixUp: boxes as :class:`CutMix`, blend weight ``lam ~ Beta(alpha, alpha)``.

    ``box_alpha`` sets the box-size distribution (default: ``alpha``). The draws are kept
    in ``self.boxes``, ``self.lam`` (blend weights) and ``self.perm``.
    """

    def __init__(self, alpha: float = 1.0, box_alpha: float | None = None, **kw: Any) -> None:
        super().__init__(alpha, **kw)
        self.box_alpha = self.alpha if box_alpha is None else float(box_alpha)
        self.boxes = np.zeros((0, 2, 3), np.int64)
        self.lam = np.zeros(0)

    def randomize(self, n: int, shape: Sequence[int], ds_factor: int) -> None:  # type: ignore[override]
        self.boxes, _ = draw_boxes(self.R, n, shape, self.box_alpha, ds_factor)
        self.lam = self.R.beta(self.alpha, self.alpha, size=n)
        self._perm(n)

    def __call__(self, batch: Mapping[str, Any]) -> dict:
        img = batch[self.keys["image"]]
        f = self._factor(batch)
        self.randomize(img.shape[0], img.shape[2:], f)
        return cutmixup(batch, self.boxes, self.lam, self.perm, ds_factor=f, **self.keys)


class BatchMixer(Randomizable):
    """Mix a batch with probability ``prob``, choosing MixUp, CutMix or CutMixUp by weight.

    Use it on a collated batch (:func:`collate_keypoints`), on the device the batch lives
    on: ``mixed = mixer(batch)``; from a MONAI bundle either inside the trainer's
    ``prepare_batch`` (:class:`PrepareMixedBatch`, mixes on the training device) or as an
    ignite handler that replaces ``engine.state.batch`` at ``ITERATION_STARTED``: it has
    ``attach(engine)``, so it can be listed in ``train_handlers``
    (``{_target_: cryo3d_transforms.BatchMixer, prob: 0.5}``; that batch is still on the host).

    Parameters
    ----------
    prob : probability of mixing a batch at all.
    mixup_weight, cutmix_weight, cutmixup_weight : relative odds of each kind.
    mixup_alpha, cutmix_alpha, cutmixup_alpha : Beta parameters.
    image_key, heatmap_key, keypoints_key, labels_key, covariances_key : field names.
    ds_sigma, ds_factor : override the batch's ``ds_sigma`` / ``ds_factor``.
    seed : optional seed (``set_random_state`` also works, as for MONAI transforms).
    """

    def __init__(
        self,
        prob: float = 0.5,
        mixup_weight: float = 1.0,
        cutmix_weight: float = 1.0,
        cutmixup_weight: float = 1.0,
        mixup_alpha: float = 0.4,
        cutmix_alpha: float = 1.0,
        cutmixup_alpha: float = 1.0,
        image_key: str = "image",
        heatmap_key: str = "heatmap",
        keypoints_key: str = "keypoints",
        labels_key: str = "labels",
        covariances_key: str = "covariances",
        ds_sigma: Sequence[float] | None = None,
        ds_factor: int | None = None,
        seed: int | None = None,
    ) -> None:
        kw = dict(
            image_key=image_key,
            heatmap_key=heatmap_key,
            keypoints_key=keypoints_key,
            labels_key=labels_key,
            covariances_key=covariances_key,
            ds_sigma=ds_sigma,
            ds_factor=ds_factor,
        )
        self.prob = float(prob)
        w = np.asarray([mixup_weight, cutmix_weight, cutmixup_weight], np.float64)
        if np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"mixing weights must be non-negative and not all zero, got {w.tolist()}")
        self.weights = w / w.sum()
        self.mixers = [MixUp(mixup_alpha, **kw), CutMix(cutmix_alpha, **kw), CutMixUp(cutmixup_alpha, **kw)]
        self.last_mode: str | None = None
        if seed is not None:
            self.set_random_state(seed)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> "BatchMixer":
        super().set_random_state(seed, state)
        for m in self.mixers:
            m.set_random_state(seed=int(self.R.randint(2**31 - 1)))
        return self

    def randomize(self, data: Any = None) -> None:
        self._choice = int(self.R.choice(3, p=self.weights)) if self.R.rand() < self.prob else -1

    def __call__(self, batch: Mapping[str, Any]) -> dict:
        self.randomize()
        if self._choice < 0:
            self.last_mode = None
            return dict(batch)
        out = self.mixers[self._choice](batch)
        self.last_mode = out["mix_mode"]
        return out

    # ignite ------------------------------------------------------------------
    def iteration_started(self, engine: Any) -> None:
        """Ignite handler: replace ``engine.state.batch`` by its mixed version."""
        engine.state.batch = self(engine.state.batch)

    def attach(self, engine: Any) -> None:
        """Register :meth:`iteration_started` on ``Events.ITERATION_STARTED`` of ``engine``."""
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_STARTED, self.iteration_started)


class PrepareMixedBatch(PrepareBatch):
    """A MONAI ``prepare_batch`` that moves a batch to the device, mixes it there, and
    returns ``(image, heatmap)`` for the trainer.

    Parameters
    ----------
    mixer : a :class:`BatchMixer` (or any callable batch -> batch); None only moves.
    image_key, label_key : the network input and target fields.
    """

    def __init__(self, mixer: Any = None, image_key: str = "image", label_key: str = "heatmap") -> None:
        self.mixer = mixer
        self.image_key = image_key
        self.label_key = label_key

    def __call__(self, batchdata: Mapping[str, Any], device: Any = None, non_blocking: bool = False, **kwargs: Any):
        moved = {
            k: v.to(device=device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) and device is not None else v
            for k, v in batchdata.items()
        }
        if self.mixer is not None:
            moved = self.mixer(moved)
        return moved[self.image_key], moved[self.label_key]

"""Random batch mixers for keypoint heatmaps, and the hooks that run them in a MONAI trainer.

:class:`HeatmapMixUp`, :class:`HeatmapCutMix` and :class:`HeatmapCutMixUp` draw the
weights, boxes and partners (MONAI ``Randomizable``: ``set_random_state`` makes them
repeat) and call the functions of :mod:`cryo3d_transforms.mixing`, which say what each
kind does to image, heatmap and keypoints. They are named for what they mix, the
keypoint-rendered heatmap, and differ from MONAI's ``MixUp`` / ``CutMix``, which mix label
maps. :class:`BatchMixer` picks one kind per batch; :class:`PrepareMixedBatch` runs it
on the training device inside the trainer's ``prepare_batch``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from ignite.engine import Events
from monai.engines.utils import PrepareBatch
from monai.transforms import Randomizable

from cryo3d.heatmap import DEFAULT_TRUNCATE
from cryo3d_transforms.keypoints import KeypointKeys
from cryo3d_transforms.mixing import batch_ds_factor, draw_boxes, heatmap_cutmix, heatmap_cutmixup, heatmap_mixup

__all__ = ["HeatmapMixUp", "HeatmapCutMix", "HeatmapCutMixUp", "BatchMixer", "PrepareMixedBatch"]


class _HeatmapMixer(Randomizable):
    """Shared parameters of the random mixers: Beta ``alpha``, field names, ds overrides.

    Args:
        alpha: Beta parameter (positive).
        keypoint_keys: field names (:class:`~cryo3d_transforms.keypoints.KeypointKeys`;
            ``None``: defaults).
        ds_sigma: overrides the batch's ``ds_sigma`` (``[C]``, downsampled voxels).
        ds_factor: overrides the batch's ``ds_factor``.

    Raises:
        ValueError: ``alpha`` is not positive.
    """

    def __init__(
        self,
        alpha: float,
        keypoint_keys: KeypointKeys | Mapping[str, str] | None = None,
        ds_sigma: Sequence[float] | None = None,
        ds_factor: int | None = None,
    ) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha: expected a positive Beta parameter, got {alpha!r}")
        self.alpha = float(alpha)
        self.keypoint_keys = KeypointKeys.of(keypoint_keys)
        self.ds_sigma = ds_sigma
        self.ds_factor = ds_factor
        self.perm = np.zeros(0, np.int64)
        self.lam = np.zeros(0)

    def _perm(self, n: int) -> np.ndarray:
        self.perm = self.R.permutation(n)
        return self.perm

    def _image(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return batch[self.keypoint_keys.image]

    def _factor(self, batch: Mapping[str, Any]) -> int:
        return batch_ds_factor(batch, self.ds_factor, self.keypoint_keys)


class HeatmapMixUp(_HeatmapMixer):
    """Random MixUp of image and heatmap: ``lam ~ Beta(alpha, alpha)`` per sample, partner from a permutation.

    Call ``mixer(batch)`` -> mixed batch (a new dict,
    :func:`~cryo3d_transforms.mixing.heatmap_mixup`). The draws are kept in ``self.lam``
    and ``self.perm``.

    Args:
        alpha: Beta parameter.
        kwargs: ``keypoint_keys``, ``ds_sigma``, ``ds_factor`` (see :class:`BatchMixer`).

    Example:
        >>> m = HeatmapMixUp(alpha=0.4).set_random_state(0)
        >>> mixed = m(batch)  # doctest: +SKIP
    """

    def __init__(self, alpha: float = 0.4, **kwargs: Any) -> None:
        super().__init__(alpha, **kwargs)

    def randomize(self, n: int) -> None:  # type: ignore[override]
        self.lam = self.R.beta(self.alpha, self.alpha, size=n)
        self._perm(n)

    def __call__(self, batch: Mapping[str, Any]) -> dict:
        self.randomize(self._image(batch).shape[0])
        return heatmap_mixup(batch, self.lam, self.perm, self.keypoint_keys)


class HeatmapCutMix(_HeatmapMixer):
    """Random CutMix (boxes from :func:`~cryo3d_transforms.mixing.draw_boxes`, heatmap rendered again).

    The draws are kept in ``self.boxes``, ``self.lam`` (A's kept volume fraction) and ``self.perm``.

    Args:
        alpha: Beta parameter of the box volume fraction.
        truncate: box half-width of the renderer in standard deviations.
        kwargs: ``keypoint_keys``, ``ds_sigma``, ``ds_factor`` (see :class:`BatchMixer`).

    Example:
        >>> m = HeatmapCutMix(alpha=1.0).set_random_state(0)
        >>> mixed = m(batch)  # doctest: +SKIP
    """

    def __init__(self, alpha: float = 1.0, truncate: float = DEFAULT_TRUNCATE, **kwargs: Any) -> None:
        super().__init__(alpha, **kwargs)
        self.truncate = float(truncate)
        self.boxes = np.zeros((0, 2, 3), np.int64)

    def randomize(self, n: int, shape: Sequence[int], ds_factor: int) -> None:  # type: ignore[override]
        self.boxes, self.lam = draw_boxes(self.R, n, shape, self.alpha, ds_factor)
        self._perm(n)

    def __call__(self, batch: Mapping[str, Any]) -> dict:
        img = self._image(batch)
        self.randomize(img.shape[0], img.shape[2:], self._factor(batch))
        return heatmap_cutmix(
            batch, self.boxes, self.perm, self.ds_sigma, self.ds_factor, self.truncate, self.keypoint_keys
        )


class HeatmapCutMixUp(_HeatmapMixer):
    """Random CutMixUp: boxes as :class:`HeatmapCutMix`, blend weight ``lam ~ Beta(alpha, alpha)``.

    The draws are kept in ``self.boxes``, ``self.lam`` (blend weights) and ``self.perm``.

    Args:
        alpha: Beta parameter of the blend weight.
        box_alpha: Beta parameter of the box volume fraction (default: ``alpha``).
        kwargs: ``keypoint_keys``, ``ds_sigma``, ``ds_factor`` (see :class:`BatchMixer`).

    Example:
        >>> m = HeatmapCutMixUp(alpha=1.0).set_random_state(0)
        >>> mixed = m(batch)  # doctest: +SKIP
    """

    def __init__(self, alpha: float = 1.0, box_alpha: float | None = None, **kwargs: Any) -> None:
        super().__init__(alpha, **kwargs)
        self.box_alpha = self.alpha if box_alpha is None else float(box_alpha)
        self.boxes = np.zeros((0, 2, 3), np.int64)

    def randomize(self, n: int, shape: Sequence[int], ds_factor: int) -> None:  # type: ignore[override]
        self.boxes, _ = draw_boxes(self.R, n, shape, self.box_alpha, ds_factor)
        self.lam = self.R.beta(self.alpha, self.alpha, size=n)
        self._perm(n)

    def __call__(self, batch: Mapping[str, Any]) -> dict:
        img = self._image(batch)
        f = self._factor(batch)
        self.randomize(img.shape[0], img.shape[2:], f)
        return heatmap_cutmixup(batch, self.boxes, self.lam, self.perm, f, self.keypoint_keys)


class BatchMixer(Randomizable):
    """Mix a batch with probability ``prob``, choosing MixUp, CutMix or CutMixUp by weight.

    Use it on a collated batch (:func:`~cryo3d_transforms.mixing.collate_keypoints`), on
    the device the batch lives on: ``mixed = mixer(batch)``; from a MONAI bundle either
    inside the trainer's ``prepare_batch`` (:class:`PrepareMixedBatch`, mixes on the
    training device) or as an ignite handler that replaces ``engine.state.batch`` at
    ``ITERATION_STARTED``: it has ``attach(engine)``, so it can be listed in
    ``train_handlers`` (that batch is still on the host).

    Args:
        prob: probability of mixing a batch at all.
        mixup_weight: relative odds of :class:`HeatmapMixUp`.
        cutmix_weight: relative odds of :class:`HeatmapCutMix`.
        cutmixup_weight: relative odds of :class:`HeatmapCutMixUp`.
        mixup_alpha: Beta parameter of the MixUp weight.
        cutmix_alpha: Beta parameter of the CutMix box fraction.
        cutmixup_alpha: Beta parameter of the CutMixUp blend (and box fraction).
        keypoint_keys: field names (:class:`~cryo3d_transforms.keypoints.KeypointKeys`;
            ``None``: defaults).
        ds_sigma: overrides the batch's ``ds_sigma`` (``[C]``, downsampled voxels).
        ds_factor: overrides the batch's ``ds_factor``.
        seed: optional seed (``set_random_state`` also works, as for MONAI transforms).

    Raises:
        ValueError: a negative weight, or all weights zero.

    Example:
        In a bundle::

            mixer: {_target_: cryo3d_transforms.BatchMixer, prob: 0.3}
            prepare_batch: {_target_: cryo3d_transforms.PrepareMixedBatch, mixer: "@mixer"}
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
        keypoint_keys: KeypointKeys | Mapping[str, str] | None = None,
        ds_sigma: Sequence[float] | None = None,
        ds_factor: int | None = None,
        seed: int | None = None,
    ) -> None:
        kw = dict(keypoint_keys=keypoint_keys, ds_sigma=ds_sigma, ds_factor=ds_factor)
        self.prob = float(prob)
        w = np.asarray([mixup_weight, cutmix_weight, cutmixup_weight], np.float64)
        if np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"mixing weights must be non-negative and not all zero, got {w.tolist()}")
        self.weights = w / w.sum()
        self.mixers = [
            HeatmapMixUp(mixup_alpha, **kw),
            HeatmapCutMix(cutmix_alpha, **kw),
            HeatmapCutMixUp(cutmixup_alpha, **kw),
        ]
        self.last_mode: str | None = None
        self._choice = -1
        if seed is not None:
            self.set_random_state(seed)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> "BatchMixer":
        """Seed the mixer and, from its stream, each of its three mixers."""
        super().set_random_state(seed, state)
        for m in self.mixers:
            m.set_random_state(seed=int(self.R.randint(2**31 - 1)))
        return self

    def randomize(self, data: Any = None) -> None:
        self._choice = int(self.R.choice(3, p=self.weights)) if self.R.rand() < self.prob else -1

    def __call__(self, batch: Mapping[str, Any]) -> dict:
        """Return the mixed batch (a new dict; ``mix_mode`` says which kind, absent when unmixed)."""
        self.randomize()
        if self._choice < 0:
            self.last_mode = None
            return dict(batch)
        out = self.mixers[self._choice](batch)
        self.last_mode = out["mix_mode"]
        return out

    def iteration_started(self, engine: Any) -> None:
        """Ignite handler: replace ``engine.state.batch`` by its mixed version."""
        engine.state.batch = self(engine.state.batch)

    def attach(self, engine: Any) -> None:
        """Register :meth:`iteration_started` on ``Events.ITERATION_STARTED`` of ``engine``."""
        engine.add_event_handler(Events.ITERATION_STARTED, self.iteration_started)


class PrepareMixedBatch(PrepareBatch):
    """A MONAI ``prepare_batch``: move a batch to the device, mix it there, return ``(image, heatmap)``.

    Args:
        mixer: a :class:`BatchMixer` (or any callable batch -> batch); ``None`` only moves.
        keypoint_keys: field names; ``image`` is the network input, ``heatmap`` the target.

    Example:
        ``{_target_: cryo3d_transforms.PrepareMixedBatch, mixer: "@mixer"}`` as the
        trainer's ``prepare_batch`` in a bundle.
    """

    def __init__(self, mixer: Any = None, keypoint_keys: KeypointKeys | Mapping[str, str] | None = None) -> None:
        self.mixer = mixer
        self.keypoint_keys = KeypointKeys.of(keypoint_keys)

    def __call__(
        self, batchdata: Mapping[str, Any], device: Any = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        moved = {
            k: v.to(device=device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) and device is not None else v
            for k, v in batchdata.items()
        }
        if self.mixer is not None:
            moved = self.mixer(moved)
        return moved[self.keypoint_keys.image], moved[self.keypoint_keys.heatmap]

"""Hard-negative patch sampling: training draws more often the patches where the model fires on background.

A tomogram of a cell holds far more unlabelled proteins than annotated particles, many the
size of the small targets. Training on its patches uniformly spends most steps on patches the
model already gets right, and the few patches where it fires on a look-alike (a false pick in
the making) come round as rarely as any other. Here each training patch keeps a *hardness*:
its false activation the last time it was drawn: the mean over voxels of
``max over classes of relu(sigmoid(logit) - target)`` (:func:`false_activation`; what the
model says beyond the target heatmap: look-alikes, membranes, gold, neighbours of another
class). The mean, not the maximum: in a crowded tomogram every patch holds some look-alike,
so each patch's strongest false voxel is near 1 everywhere (measured on the ``tilt`` benchmark:
median 1.0, minimum 0.95 over 1,500 patches) and would weigh nothing. A share :data:`HARD_FRACTION` of the draws follows the hardness,
the rest stays uniform, so every patch is still seen and none is starved.

* :class:`HardPatchSampler`: a ``torch.utils.data.Sampler`` over a
  :class:`~cryo3d.dataset.PatchDataset` drawing by hardness; its state (hardness and random
  generator) is saved with the last checkpoint, so a resumed run samples as the killed one would.
* :class:`HardNegativeHandler`: an ignite handler that, after each training iteration, measures
  each patch of the batch (from the network output already computed: no extra forward pass)
  and updates the sampler. Mixed batches (MixUp/CutMix) are skipped: their samples are blends
  of two patches, so their errors belong to neither.

Why by hand: MONAI and ignite sample patches by fixed weights (``RandWeightedCrop``,
``WeightedRandomSampler``) or by label (``RandCropByPosNegLabel``); neither updates the
weights from the model during training (online hard example mining at patch level).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["HARD_FRACTION", "HardNegativeHandler", "HardPatchSampler", "false_activation"]

#: Share of the training draws that follows each patch's hardness (the rest is uniform) when a
#: caller gives none. The bundle's default (``hard_fraction``) is 0, plain shuffling, by
#: measurement: 0.5 was neutral on the benchmarks (``scripts/bench_ood.py``, unseen tomograms:
#: tilt 0.844 against 0.832, ood 0.891 against 0.895, crowded12 0.879 against 0.892; the first
#: run, seed 0, 0.859 against 0.862), within the +-0.02 of one time-budgeted run.
HARD_FRACTION = 0.5

#: Indices drawn at a time: the probabilities follow the hardness measured up to then.
_CHUNK = 64


def false_activation(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each sample's false activation: the mean over voxels of ``max over C of relu(sigmoid(logits) - target)``.

    Args:
        logits: ``[B, C, z, y, x]`` network output (logits).
        target: ``[B, C, z, y, x]`` target heatmaps in ``[0, 1]``.

    Returns:
        ``[B]`` float32 in ``[0, 1]``: 0 where the model nowhere says more than the target, 1
        where it says 1 on every voxel whose target is 0.
    """
    if logits.shape != target.shape or logits.ndim < 2:
        raise ValueError(f"false_activation: logits {tuple(logits.shape)} and target {tuple(target.shape)} "
                         "must have the same [B, C, ...] shape")
    excess = (torch.sigmoid(logits.detach().float()) - target.detach().float()).clamp_min(0.0)
    return excess.amax(1).flatten(1).mean(1)


class HardPatchSampler(Sampler[int]):
    """Draw a dataset's patches by their hardness (see the module docstring).

    Args:
        dataset: a :class:`~cryo3d.dataset.PatchDataset` (its ``data`` holds the store's patch
            indices, which training batches carry as ``patch_index``).
        hard_fraction: share of draws that follows the hardness, in ``[0, 1]``; 0: a plain
            shuffle (a permutation per pass).
        seed: seed of the sampler's own random generator.

    A pass yields ``len(dataset)`` indices. A patch never measured counts as hard as the
    hardest measured one (1 before any), so the first passes see every patch. With
    ``hard_fraction > 0`` the draws are with replacement, a chunk at a time, each chunk from
    the hardness known at that moment.

    Example:
        >>> sampler = HardPatchSampler(dataset, hard_fraction=0.5, seed=0)   # doctest: +SKIP
        >>> loader = monai.data.DataLoader(dataset, batch_size=8, sampler=sampler)  # doctest: +SKIP
    """

    def __init__(self, dataset: Any, hard_fraction: float = HARD_FRACTION, seed: int = 0) -> None:
        try:
            f = float(hard_fraction)
        except (TypeError, ValueError):
            f = float("nan")
        if isinstance(hard_fraction, bool) or not 0.0 <= f <= 1.0:
            raise ValueError(f"hard_fraction: expected a number in [0, 1], got {hard_fraction!r}")
        self.hard_fraction = f
        store_indices = np.asarray([int(i) for i in dataset.data], np.int64)
        if store_indices.size == 0:
            raise ValueError("HardPatchSampler: the dataset has no patches")
        self._position = {int(s): p for p, s in enumerate(store_indices)}
        self.hardness = torch.full((store_indices.size,), float("nan"), dtype=torch.float64)  # NaN: not measured
        self.generator = torch.Generator()
        self.generator.manual_seed(int(seed))

    def __len__(self) -> int:
        return int(self.hardness.numel())

    def probabilities(self) -> torch.Tensor:
        """``[N]`` draw probability of each dataset position: ``(1 - f) / N + f * hardness / sum``
        (an unmeasured patch taking the largest measured hardness)."""
        n = self.hardness.numel()
        uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)
        seen = ~torch.isnan(self.hardness)
        top = float(self.hardness[seen].max()) if bool(seen.any()) else 1.0
        h = torch.where(seen, self.hardness, torch.full_like(self.hardness, top))
        total = float(h.sum())
        if self.hard_fraction == 0.0 or total <= 0.0:
            return uniform
        return (1.0 - self.hard_fraction) * uniform + self.hard_fraction * h / total

    def __iter__(self) -> Iterator[int]:
        n = len(self)
        if self.hard_fraction == 0.0:
            yield from torch.randperm(n, generator=self.generator).tolist()
            return
        left = n
        while left > 0:
            k = min(_CHUNK, left)
            yield from torch.multinomial(self.probabilities(), k, replacement=True, generator=self.generator).tolist()
            left -= k

    def update(self, patch_indices: Any, values: Any) -> None:
        """Record the hardness of patches given by their STORE index (a batch's ``patch_index``)."""
        idx = np.asarray(torch.as_tensor(patch_indices).cpu(), np.int64).ravel()
        val = np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu(), np.float64).ravel()
        if idx.size != val.size:
            raise ValueError(f"HardPatchSampler.update: {idx.size} patch indices but {val.size} values")
        try:
            pos = [self._position[int(i)] for i in idx]
        except KeyError as e:
            raise ValueError(f"HardPatchSampler.update: patch {e.args[0]} is not one of the training patches") from None
        self.hardness[torch.as_tensor(pos, dtype=torch.long)] = torch.as_tensor(np.clip(val, 0.0, 1.0))

    def state_dict(self) -> dict:
        """Hardness and generator state (tensors only: checkpoints load with ``weights_only=True``)."""
        return {"hardness": self.hardness.clone(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (a checkpoint of the same training patches)."""
        h = torch.as_tensor(state["hardness"], dtype=torch.float64)
        if h.shape != self.hardness.shape:
            raise ValueError(f"HardPatchSampler: the checkpoint holds the hardness of {h.numel()} patches, "
                             f"this run trains on {self.hardness.numel()}")
        self.hardness = h.clone()
        self.generator.set_state(state["generator"])


class HardNegativeHandler:
    """Ignite handler: after each training iteration, update a :class:`HardPatchSampler`.

    Args:
        sampler: the sampler of the training loader.
        mixer: the batch mixer (``cryo3d_transforms.BatchMixer``) whose ``last_mode`` says
            whether the batch was mixed; ``None`` when batches are never mixed.
        patch_key: the batch field holding each sample's store patch index.

    Reads ``engine.state.output`` (MONAI's trainer output: ``pred`` logits and ``label``
    target) and ``engine.state.batch[patch_key]``.

    Example:
        >>> HardNegativeHandler(sampler, mixer).attach(trainer)   # doctest: +SKIP
    """

    def __init__(self, sampler: HardPatchSampler, mixer: Any = None, patch_key: str = "patch_index") -> None:
        self.sampler = sampler
        self.mixer = mixer
        self.patch_key = patch_key

    def state_dict(self) -> dict:
        """The sampler's state (checkpointed with the run); empty for a sampler without one
        (e.g. ``DistributedSampler`` in ``multi_gpu_train.yaml``)."""
        return self.sampler.state_dict() if isinstance(self.sampler, HardPatchSampler) else {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` into the sampler (an empty state leaves it as it is)."""
        if state and isinstance(self.sampler, HardPatchSampler):
            self.sampler.load_state_dict(state)

    def attach(self, engine: Any) -> None:
        """Register on ``Events.ITERATION_COMPLETED`` of the trainer (not at all when the sampler
        does not draw by hardness)."""
        from ignite.engine import Events

        if isinstance(self.sampler, HardPatchSampler) and self.sampler.hard_fraction > 0.0:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        if self.mixer is not None and getattr(self.mixer, "last_mode", None) is not None:
            return
        out, batch = engine.state.output, engine.state.batch
        pred = out.get("pred") if isinstance(out, dict) else None
        label = out.get("label") if isinstance(out, dict) else None
        if not isinstance(pred, torch.Tensor) or not isinstance(label, torch.Tensor):
            raise ValueError("HardNegativeHandler: the trainer's output holds no 'pred' and 'label' tensors "
                             "(MONAI's SupervisedTrainer with decollate: false gives them)")
        if not isinstance(batch, dict) or self.patch_key not in batch:
            raise ValueError(f"HardNegativeHandler: the training batch has no {self.patch_key!r} field "
                             "(cryo3d.dataset.PatchDataset gives it; keep it through the transforms)")
        self.sampler.update(batch[self.patch_key], false_activation(pred, label))

"""Losses on heatmap logits: BCE (baseline), fuzzy F-beta, and their combination.

Every loss takes ``logits [B, C, Z, Y, X]`` (network output, before the sigmoid) and a
target heatmap of the same shape with values in ``[0, 1]`` (per-class max of Gaussians,
peak 1), and returns a scalar. Losses are computed in float32 whatever the input dtype
(AMP-safe).

The fuzzy F-beta treats ``p = sigmoid(logits)`` and the target ``t`` as fuzzy sets:
``TP = sum(p t)``, ``FP = sum(p (1 - t))``, ``FN = sum((1 - p) t)`` and
``F_beta = (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP + eps)``, ``loss = 1 - F_beta``.
On binary ``p`` and ``t`` this is exactly one minus the F-beta score of the voxel counts.
``beta > 1`` weights recall over precision (missing a particle costs more than a false
alarm); ``beta`` is a plain mutable attribute so that a schedule
(:class:`cryo3d.schedules.BetaScheduleHandler`) can change it during training.

Reduction of the fuzzy counts (``reduce``):

``"batch"`` (default)
    counts are summed over the batch and the voxels, one F-beta per channel, then
    averaged over channels. A class absent from one patch still contributes its false
    positives there, and the score pools particles across patches as the particle
    F-beta metric pools them across tomograms. The gradient on one sample then depends
    on the others in the batch (through the shared denominator) -- as for a batch Dice
    loss. The network itself stays batch independent.
``"sample"``
    one F-beta per sample and channel, averaged. Each sample's loss depends on that
    sample only, but a channel whose target is empty in a sample has ``TP = FN = 0`` and
    gives ``F = 0`` (loss 1) with zero gradient: false positives on empty patches go
    unpunished unless BCE is added (``combined``).

Channels are averaged with optional ``class_weights`` (e.g. the metric's class weights).
A channel whose target is empty over everything counted still enters the mean with
loss 1 (no gradient), so the loss value is comparable between batches with the same
classes present.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("batch", "sample")


def _check_pair(logits: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if logits.shape != target.shape:
        raise ValueError(f"{name}: logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
    if logits.ndim < 3:
        raise ValueError(f"{name}: expected [B, C, spatial...] tensors, got shape {tuple(logits.shape)}")


def _channel_weights(class_weights: Sequence[float] | torch.Tensor | None, channels: int, like: torch.Tensor) -> torch.Tensor:
    if class_weights is None:
        return torch.full((channels,), 1.0 / channels, dtype=torch.float32, device=like.device)
    w = torch.as_tensor(class_weights, dtype=torch.float32, device=like.device).flatten()
    if w.numel() != channels:
        raise ValueError(f"class_weights: expected {channels} values (one per channel), got {w.numel()}")
    if (w < 0).any() or float(w.sum()) <= 0:
        raise ValueError(f"class_weights must be non-negative with a positive sum, got {w.tolist()}")
    return w / w.sum()


def fuzzy_counts(
    prob: torch.Tensor, target: torch.Tensor, reduce: str = "batch"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fuzzy true positives, false positives and false negatives.

    Args:
        prob: ``[B, C, ...]`` probabilities in ``[0, 1]``.
        target: ``[B, C, ...]`` targets in ``[0, 1]``.
        reduce: ``"batch"`` or ``"sample"``: sum over batch and voxels (result ``[C]``) or
            over voxels only (``[B, C]``).

    Returns:
        ``(TP, FP, FN)``: ``TP = sum(p t)``, ``FP = sum(p (1 - t))``, ``FN = sum((1 - p) t)``.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    dims = tuple(range(2, prob.ndim))
    if reduce == "batch":
        dims = (0,) + dims
    tp = (prob * target).sum(dims)
    fp = prob.sum(dims) - tp  # sum p (1 - t)
    fn = target.sum(dims) - tp  # sum (1 - p) t
    return tp, fp, fn


def soft_fbeta(
    prob: torch.Tensor, target: torch.Tensor, beta: float = 1.0, reduce: str = "batch", eps: float = 1e-6
) -> torch.Tensor:
    """Fuzzy F-beta score per channel (``reduce="batch"``, ``[C]``) or per sample and channel (``[B, C]``).

    ``F_beta = (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP + eps)`` with the counts of
    :func:`fuzzy_counts`.
    """
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    tp, fp, fn = fuzzy_counts(prob, target, reduce)
    b2 = float(beta) ** 2
    return (1.0 + b2) * tp / ((1.0 + b2) * tp + b2 * fn + fp + eps)


class BCEHeatmapLoss(nn.Module):
    """Binary cross-entropy with logits against the soft heatmap (the sanity baseline).

    With a constant prediction ``p`` and a target of mean ``m`` the loss is
    ``-(pos_weight m log p + (1 - m) log(1 - p))``, the value at initialisation of a
    prior-initialised network (see :mod:`cryo3d.networks.heads`).

    Args:
        pos_weight: weight of the positive term ``t log p`` (one value, or one per channel,
            optional), as in ``torch.nn.BCEWithLogitsLoss``; > 1 counters the rarity of
            foreground voxels.
    """

    def __init__(self, pos_weight: float | Sequence[float] | None = None) -> None:
        super().__init__()
        if pos_weight is None:
            self.pos_weight: torch.Tensor | None = None
        else:
            w = torch.as_tensor(pos_weight, dtype=torch.float32).flatten()
            if (w <= 0).any():
                raise ValueError(f"pos_weight must be positive, got {w.tolist()}")
            self.register_buffer("pos_weight", w, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(logits, target, "bce")
        pw = self.pos_weight
        if pw is not None:
            if pw.numel() not in (1, logits.shape[1]):
                raise ValueError(f"pos_weight: expected 1 or {logits.shape[1]} values, got {pw.numel()}")
            pw = pw.to(logits.device).view([1, -1] + [1] * (logits.ndim - 2))
        return F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=pw)


class FuzzyFBetaLoss(nn.Module):
    """``1 - F_beta`` of the fuzzy counts (see the module docstring).

    Args:
        beta: recall weight; mutable attribute, changed by beta schedules during training.
        reduce: ``"batch"`` or ``"sample"``: where counts are summed before the ratio
            (module docstring). Default "batch".
        class_weights: weights of the channel mean (normalised to sum 1); default uniform.
        eps: added to the denominator.
    """

    def __init__(
        self,
        beta: float = 1.0,
        reduce: str = "batch",
        class_weights: Sequence[float] | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self.beta = float(beta)
        self.reduce = reduce
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.eps = float(eps)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(logits, target, "fuzzy")
        prob = torch.sigmoid(logits.float())
        f = soft_fbeta(prob, target.float(), beta=self.beta, reduce=self.reduce, eps=self.eps)
        w = _channel_weights(self.class_weights, logits.shape[1], prob)
        loss = 1.0 - f
        if self.reduce == "sample":
            loss = loss.mean(0)
        return (loss * w).sum()

    def extra_repr(self) -> str:
        return f"beta={self.beta}, reduce={self.reduce!r}, eps={self.eps}"


class CombinedLoss(nn.Module):
    """``bce + fuzzy_weight * fuzzy``; ``beta`` reads and writes the fuzzy part's beta.

    Args:
        beta, reduce, class_weights, eps: passed to :class:`FuzzyFBetaLoss`.
        fuzzy_weight: weight of the fuzzy term.
        pos_weight: passed to :class:`BCEHeatmapLoss`.
    """

    def __init__(
        self,
        beta: float = 1.0,
        fuzzy_weight: float = 1.0,
        pos_weight: float | Sequence[float] | None = None,
        reduce: str = "batch",
        class_weights: Sequence[float] | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.bce = BCEHeatmapLoss(pos_weight=pos_weight)
        self.fuzzy = FuzzyFBetaLoss(beta=beta, reduce=reduce, class_weights=class_weights, eps=eps)
        self.fuzzy_weight = float(fuzzy_weight)

    @property
    def beta(self) -> float:
        return self.fuzzy.beta

    @beta.setter
    def beta(self, value: float) -> None:
        self.fuzzy.beta = float(value)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.bce(logits, target) + self.fuzzy_weight * self.fuzzy(logits, target)


#: Loss kinds by name.
LOSSES: dict[str, type[nn.Module]] = {"bce": BCEHeatmapLoss, "fuzzy": FuzzyFBetaLoss, "combined": CombinedLoss}


def build_loss(kind: str = "combined", **kwargs: Any) -> nn.Module:
    """Build a loss by name: ``"bce"``, ``"fuzzy"`` or ``"combined"``.

    Args:
        kind: loss kind.
        **kwargs: constructor arguments of the chosen class (``beta``, ``reduce``,
            ``class_weights``, ``eps``, ``pos_weight``, ``fuzzy_weight``).

    Raises:
        ValueError: on an unknown kind or an argument the kind does not take.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown loss kind {kind!r}; expected one of {sorted(LOSSES)}")
    cls = LOSSES[kind]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"loss {kind!r}: unknown argument(s) {unknown}; valid: {valid}")
    return cls(**kwargs)


def make_loss(kind: str = "combined", fuzzy_weight: float = 1.0, pos_weight: Any = None, beta: float = 1.0,
              **kwargs: Any) -> nn.Module:
    """:func:`build_loss` given only the arguments its kind takes.

    A bundle names every loss setting once at the top; this drops the ones that do not
    apply (``fuzzy_weight`` for ``bce``, ``pos_weight`` for ``fuzzy``, ``beta`` for ``bce``).
    """
    args: dict[str, Any] = dict(kwargs)
    if kind in ("fuzzy", "combined"):
        args["beta"] = beta
    if kind == "combined":
        args["fuzzy_weight"] = fuzzy_weight
    if kind in ("bce", "combined") and pos_weight is not None:
        args["pos_weight"] = pos_weight
    return build_loss(kind, **args)

"""Beta schedules for the fuzzy F-beta loss, and the ignite handler that applies them.

A schedule maps a step ``t`` (epoch or iteration, counted from 0) to a value. During
``warmup`` steps it holds ``start``; afterwards the progress
``s = (t - warmup) / (total - warmup)`` (clipped to ``[0, 1]``) drives it, so the value
reaches ``end`` at ``t = total`` and stays there:

``constant``     ``start`` (``end`` and ``total`` unused)
``linear``       ``start + (end - start) s``
``cosine``       ``end + (start - end) (1 + cos(pi s)) / 2``
``step``         piecewise constant, changing every ``step_size`` steps after warm-up:
                 with ``gamma``, ``start * gamma**k`` (``k = (t - warmup) // step_size``,
                 clamped at ``end`` if given, like ``StepLR``); without ``gamma``, the
                 linear schedule sampled at the start of each step
``exponential``  with ``gamma``, ``start * gamma**(t - warmup)`` (clamped at ``end`` if
                 given); without ``gamma``, geometric interpolation
                 ``start * (end / start)**s`` (``start`` and ``end`` > 0)

:func:`beta_schedule` is the pure function, :class:`BetaSchedule` a picklable callable
holding the parameters, :class:`BetaScheduleHandler` the ignite handler setting
``loss.beta`` at the start of every epoch or iteration. In a MONAI bundle::

    train_handlers:
      - _target_: cryo3d.schedules.BetaScheduleHandler
        loss: "@loss"
        schedule: {kind: linear, start: 1.0, end: 4.0, total: "@num_epochs", warmup: 2}
        unit: epoch
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from ignite.engine import Events
from torch.utils.tensorboard import SummaryWriter

KINDS = ("constant", "linear", "cosine", "step", "exponential")
UNITS = ("epoch", "iteration", "progress")

logger = logging.getLogger(__name__)


def _clamp(value: float, start: float, end: float | None) -> float:
    """Keep ``value`` between ``start`` and ``end`` (no bound on the far side when ``end`` is None)."""
    if end is None:
        return value
    lo, hi = min(start, end), max(start, end)
    return min(max(value, lo), hi)


def _need(kind: str, **values: Any) -> None:
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise ValueError(f"beta schedule {kind!r} needs {', '.join(missing)}")


def beta_schedule(
    kind: str,
    t: float,
    start: float,
    end: float | None = None,
    total: float | None = None,
    warmup: float = 0,
    step_size: float | None = None,
    gamma: float | None = None,
) -> float:
    """Value of a schedule at step ``t`` (see the module docstring for the formulas).

    Args:
        kind ({"constant", "linear", "cosine", "step", "exponential"}): Schedule shape.
        t (float): Step (epoch or iteration) counted from 0; ``t >= 0``.
        start, end (float): Value during warm-up and at ``t >= total``.
        total (float): Step at which ``end`` is reached (counted from 0, warm-up included); ``> warmup``.
        warmup (float): Steps during which the value stays ``start``.
        step_size (float): Steps between changes of the ``step`` schedule.
        gamma (float): Multiplicative factor per step (``step``) or per unit of ``t`` (``exponential``).

    Returns:
        float:
    """
    if kind not in KINDS:
        raise ValueError(f"unknown beta schedule {kind!r}; expected one of {KINDS}")
    if t < 0:
        raise ValueError(f"beta schedule: t must be >= 0, got {t}")
    if warmup < 0:
        raise ValueError(f"beta schedule: warmup must be >= 0, got {warmup}")
    start = float(start)
    if kind == "constant" or t < warmup:
        return start
    elapsed = t - warmup

    def progress() -> float:
        _need(kind, end=end, total=total)
        if total <= warmup:  # type: ignore[operator]
            raise ValueError(f"beta schedule {kind!r}: total ({total}) must exceed warmup ({warmup})")
        return min(max(elapsed / (total - warmup), 0.0), 1.0)  # type: ignore[operator]

    if kind == "linear":
        s = progress()
        return start + (float(end) - start) * s  # type: ignore[arg-type]
    if kind == "cosine":
        s = progress()
        return float(end) + (start - float(end)) * 0.5 * (1.0 + math.cos(math.pi * s))  # type: ignore[arg-type]
    if kind == "step":
        _need(kind, step_size=step_size)
        if step_size <= 0:  # type: ignore[operator]
            raise ValueError(f"beta schedule 'step': step_size must be > 0, got {step_size}")
        k = math.floor(elapsed / step_size)  # type: ignore[operator]
        if gamma is not None:
            return _clamp(start * float(gamma) ** k, start, end)
        return beta_schedule("linear", warmup + k * step_size, start, end, total, warmup)  # type: ignore[operator]
    # exponential
    if gamma is not None:
        if gamma <= 0:
            raise ValueError(f"beta schedule 'exponential': gamma must be > 0, got {gamma}")
        return _clamp(start * float(gamma) ** elapsed, start, end)
    s = progress()
    if start <= 0 or float(end) <= 0:  # type: ignore[arg-type]
        raise ValueError(f"beta schedule 'exponential' without gamma needs start and end > 0, got {start}, {end}")
    return start * (float(end) / start) ** s  # type: ignore[arg-type]


@dataclass
class BetaSchedule:
    """A schedule with fixed parameters: ``BetaSchedule("linear", 1, 4, total=20)(t)``.

    The fields are the parameters of :func:`beta_schedule` (its docstring has their
    meaning); they are checked at construction, not in the middle of training.
    """

    kind: str = "constant"
    start: float = 1.0
    end: float | None = None
    total: float | None = None
    warmup: float = 0
    step_size: float | None = None
    gamma: float | None = None

    def __post_init__(self) -> None:
        self.start = float(self.start)
        self.end = None if self.end is None else float(self.end)
        for t in (0, self.warmup, self.warmup + 1, self.total if self.total is not None else self.warmup + 1):
            self(t)

    def __call__(self, t: float) -> float:
        return beta_schedule(self.kind, t, self.start, self.end, self.total, self.warmup, self.step_size, self.gamma)


def as_schedule(schedule: Callable[[float], float] | Mapping[str, Any] | float) -> Callable[[float], float]:
    """A callable schedule from a callable, a :class:`BetaSchedule` keyword dict, or a constant."""
    if isinstance(schedule, Mapping):
        return BetaSchedule(**schedule)
    if isinstance(schedule, (int, float)):
        return BetaSchedule("constant", float(schedule))
    if callable(schedule):
        return schedule
    raise ValueError(f"schedule: expected a callable, a dict of BetaSchedule arguments or a number, got {schedule!r}")


class BetaScheduleHandler:
    """Ignite handler: set ``loss.beta = schedule(t)`` when each epoch or iteration starts.

    ``t`` counts from 0: ``engine.state.epoch - 1`` or ``engine.state.iteration - 1``
    (ignite increments both before firing the ``*_STARTED`` events), so a resumed run
    picks up the value for where it is. The value is written to
    ``engine.state.metrics[tag]`` (so MONAI's stats handlers show it), logged at INFO
    (epochs) or DEBUG (iterations) level, and, if a SummaryWriter is given, written as a
    TensorBoard scalar ``tag`` at global step ``engine.state.epoch`` / ``iteration``.

    Args:
        loss (object with a ``beta`` attribute): The training loss (e.g. :class:`cryo3d.losses.FuzzyFBetaLoss` or ``CombinedLoss``).
            A loss without ``beta`` (BCE) gets a warning and the handler does nothing, so one
            bundle serves every loss kind.
        schedule (callable, dict or float): ``t -> beta``; a dict is passed to :class:`BetaSchedule`, a number is constant.
        unit ({"epoch", "iteration", "progress"}): What ``t`` counts. ``"progress"``: the run's progress in ``[0, 1]`` from ``clock``
            (:class:`cryo3d.workflows.budget.TrainingClock`), set at every iteration; the schedule's
            ``total`` and ``warmup`` are then fractions of the run (``total: 0.8`` reaches
            ``end`` at 80% of the time budget).
        clock (cryo3d.workflows.budget.TrainingClock, optional): Needed with ``unit="progress"``.
        summary_writer (torch.utils.tensorboard.SummaryWriter or str, optional): Writer (anything with ``add_scalar``) or a log directory to create one in.
        tag (str): Metric key and TensorBoard tag.
    """

    def __init__(
        self,
        loss: Any,
        schedule: Callable[[float], float] | Mapping[str, Any] | float,
        unit: str = "epoch",
        summary_writer: Any = None,
        tag: str = "beta",
        clock: Any = None,
    ) -> None:
        self.active = hasattr(loss, "beta")
        if not self.active:
            # e.g. loss_kind=bce in a bundle whose handler list always carries the beta schedule
            warnings.warn(
                f"BetaScheduleHandler: the loss {type(loss).__name__} has no 'beta' attribute; the schedule does nothing",
                stacklevel=2,
            )
        if unit not in UNITS:
            raise ValueError(f"BetaScheduleHandler: unit must be one of {UNITS}, got {unit!r}")
        if unit == "progress" and clock is None:
            raise ValueError("BetaScheduleHandler: unit 'progress' needs the run's clock "
                             "(cryo3d.workflows.budget.TrainingClock)")
        self.clock = clock
        self.loss = loss
        self.schedule = as_schedule(schedule)
        self.unit = unit
        if isinstance(summary_writer, str):
            summary_writer = SummaryWriter(log_dir=summary_writer)
        self.summary_writer = summary_writer
        self.tag = tag

    def attach(self, engine: Any) -> None:
        """Register on ``engine`` (ignite ``Engine`` / MONAI ``SupervisedTrainer``)."""
        event = Events.EPOCH_STARTED if self.unit == "epoch" else Events.ITERATION_STARTED
        if not engine.has_event_handler(self, event):
            engine.add_event_handler(event, self)

    def __call__(self, engine: Any) -> None:
        if not self.active:
            return
        step = engine.state.epoch if self.unit == "epoch" else engine.state.iteration
        t = self.clock.progress if self.unit == "progress" else step - 1
        value = float(self.schedule(t))
        self.loss.beta = value
        engine.state.metrics[self.tag] = value
        logger.log(logging.INFO if self.unit == "epoch" else logging.DEBUG, "%s %s: %s = %.6g", self.unit,
                   f"{t:.3f}" if self.unit == "progress" else step, self.tag, value)
        if self.summary_writer is not None:
            self.summary_writer.add_scalar(self.tag, value, step)


class ProgressCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """Cosine learning-rate decay over the run's progress (time budget or epochs), with linear warm-up.

    ``lr = eta_min + (base_lr - eta_min) (1 + cos(pi s)) / 2`` with
    ``s = (p - warmup) / (1 - warmup)`` and ``p`` the progress of a
    :class:`cryo3d.workflows.budget.TrainingClock`; during warm-up the rate rises linearly from
    ``eta_min``. Step it every iteration (``LrScheduleHandler(epoch_level=False)``). Unlike
    ``CosineAnnealingLR`` its length is not a number of epochs, so a run of any budget decays
    fully by its end. The clock is not part of :meth:`state_dict` (it has its own).

    Args:
        optimizer: the optimizer.
        clock: the run's clock (anything with a ``progress`` in ``[0, 1]``).
        eta_min_ratio: final rate as a fraction of the initial one.
        warmup: fraction of the run spent warming up.
    """

    def __init__(self, optimizer: Any, clock: Any, eta_min_ratio: float = 0.05, warmup: float = 0.0,
                 last_epoch: int = -1) -> None:
        if not 0 <= warmup < 1:
            raise ValueError(f"ProgressCosineLR: warmup must be in [0, 1), got {warmup}")
        self.clock = clock
        self.eta_min_ratio = float(eta_min_ratio)
        self.warmup = float(warmup)
        super().__init__(optimizer, last_epoch)

    def factor(self, p: float) -> float:
        """Learning-rate multiplier at progress ``p``."""
        lo = self.eta_min_ratio
        if self.warmup > 0 and p < self.warmup:
            return lo + (1.0 - lo) * p / self.warmup
        s = min(max((p - self.warmup) / (1.0 - self.warmup), 0.0), 1.0)
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * s))

    def get_lr(self) -> list[float]:
        f = self.factor(float(self.clock.progress))
        return [base * f for base in self.base_lrs]

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "clock")}

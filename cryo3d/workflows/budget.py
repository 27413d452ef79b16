"""Training that runs until it has learned: a wall-clock budget and progress-driven schedules.

A fixed epoch count stops a CPU run before the slower classes are learned on one data set
and wastes time on another. Here a run has a **time budget** (minutes of wall clock,
validation included) and an epoch cap; it ends at whichever comes first, or earlier on a
validation plateau, never before :data:`cryo3d.workflows.plateau.MIN_PLATEAU_PROGRESS` of
the run (:class:`cryo3d.workflows.plateau.PlateauStopHandler`). Everything that used to be defined in
epochs is defined on the run's **progress** ``p`` in ``[0, 1]``:

``p = max(elapsed / budget, iterations / (max_epochs * epoch_length))``

so the learning rate (:class:`cryo3d.schedules.ProgressCosineLR`), the loss's beta
(:class:`cryo3d.schedules.BetaScheduleHandler` with ``unit="progress"``) and validation
(:class:`ProgressValidationHandler`, every ``val_fraction`` of the run and at its end)
stretch to whatever budget the user gives. Without a budget (``None``) progress is the
epoch fraction and the run is the classic epoch-based one.

:class:`TrainingClock` keeps the elapsed time in its ``state_dict`` (saved with the last
checkpoint), so a resumed run spends only what is left of its budget.

Why by hand: ignite's ``Timer`` measures but neither stops nor survives a resume, and
ignite's ``ParamScheduler`` family is event-count based, not time based.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from ignite.engine import Events

from cryo3d.bundle_keys import NULL_WORDS, parse_positive_key

logger = logging.getLogger("cryo3d")

#: Minutes of training when ``time_budget: auto``: on the built-in synthetic data ...
AUTO_BUDGET_BUILTIN_MIN = 10.0
#: ... and on a user's own tomograms (fewer, harder, and what they care about).
AUTO_BUDGET_USER_MIN = 15.0


def resolve_budget(time_budget: Any, builtin_data: bool) -> float | None:
    """Minutes of training from the bundle key ``time_budget``.

    Args:
        time_budget: minutes (number or numeric string), ``"auto"``, or ``None`` / ``"null"``
            / ``"none"`` for no budget (epochs only). MONAI's command line passes strings.
        builtin_data: whether the run trains on the built-in simulated data (``auto``:
            :data:`AUTO_BUDGET_BUILTIN_MIN`, else :data:`AUTO_BUDGET_USER_MIN`).

    Returns:
        Minutes (> 0) or ``None``.
    """
    v = parse_positive_key(time_budget, "time_budget", "minutes", null_words=NULL_WORDS + ("off",))
    if v == "auto":
        return AUTO_BUDGET_BUILTIN_MIN if builtin_data else AUTO_BUDGET_USER_MIN
    return v


class TrainingClock:
    """Wall-clock budget and progress of a training run (an ignite handler with state).

    Attach it to the trainer. It measures wall time from the trainer's start (plus what
    earlier, resumed runs spent: :meth:`state_dict`), exposes :attr:`progress`, and once
    the budget is spent asks the trainer to stop at the end of the current epoch (the
    epoch's validation and checkpoint still happen: see :class:`ProgressValidationHandler`).

    Args:
        minutes: the budget in minutes, or ``None`` (progress then follows epochs only).
        max_epochs: the epoch cap (progress reaches 1 there too).
        epoch_length: iterations per epoch (for the epoch part of progress).

    Example:
        >>> clock = TrainingClock(10.0, max_epochs=300, epoch_length=40)
        >>> clock.progress
        0.0
    """

    def __init__(self, minutes: float | None, max_epochs: int, epoch_length: int | None) -> None:
        self.budget_s = None if minutes is None else 60.0 * float(minutes)
        self.max_epochs = int(max_epochs)
        self.epoch_length = epoch_length
        self.spent_s = 0.0  # seconds spent by earlier runs (restored on resume)
        self._t0: float | None = None
        self._engine: Any = None

    # ------------------------------------------------------------------ ignite
    def attach(self, engine: Any) -> None:
        self._engine = engine
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.COMPLETED, self._stopped)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _started(self, engine: Any) -> None:
        self._t0 = time.monotonic()
        if self.budget_s is not None:
            left = max(self.budget_s - self.spent_s, 0.0)
            logger.info("time budget: %.1f min (%.1f min left), at most %d epochs; LR, beta and validation "
                        "follow the run's progress", self.budget_s / 60, left / 60, self.max_epochs)

    def _stopped(self, engine: Any) -> None:
        logger.info("training stopped after %.1f min (progress %.2f, epoch %d)", self.elapsed / 60, self.progress,
                    engine.state.epoch)

    def _epoch_completed(self, engine: Any) -> None:
        if self.out_of_time:
            logger.info("time budget of %.1f min spent at epoch %d: stopping", self.budget_s / 60, engine.state.epoch)
            engine.terminate()

    # ------------------------------------------------------------------ state
    @property
    def elapsed(self) -> float:
        """Seconds of training so far, earlier (resumed) runs included."""
        now = 0.0 if self._t0 is None else time.monotonic() - self._t0
        return self.spent_s + now

    @property
    def out_of_time(self) -> bool:
        return self.budget_s is not None and self.elapsed >= self.budget_s

    @property
    def progress(self) -> float:
        """``max(elapsed / budget, iterations / (max_epochs * epoch_length))`` clipped to ``[0, 1]``."""
        p = 0.0
        if self.budget_s is not None:
            p = self.elapsed / self.budget_s
        st = getattr(self._engine, "state", None)
        if st is not None and self.max_epochs > 0:
            length = self.epoch_length or getattr(st, "epoch_length", None)
            if length:
                p = max(p, float(st.iteration) / (self.max_epochs * float(length)))
        return min(max(p, 0.0), 1.0)

    def is_last_epoch(self, engine: Any) -> bool:
        """Whether the epoch just completed is the run's last (budget spent or epoch cap reached)."""
        return self.out_of_time or engine.state.epoch >= self.max_epochs

    def state_dict(self) -> dict:
        return {"spent_s": float(self.elapsed)}

    def load_state_dict(self, state: dict) -> None:
        self.spent_s = float(state.get("spent_s", 0.0))


class ProgressValidationHandler:
    """Validate every ``val_fraction`` of the run's progress, every ``val_interval`` epochs, and at its end.

    Replaces MONAI's ``ValidationHandler`` (which only knows an epoch interval) when runs
    are measured in time: with a 10-minute budget and ``val_fraction=0.1`` the model is
    validated about ten times whatever the machine's speed, and always once more after the
    last epoch, so the final model is scored and can become ``best.pt``.

    Args:
        validator: the evaluator (``SupervisedEvaluator``) to run.
        clock: the run's :class:`TrainingClock`.
        val_fraction: progress between validations (``None``: only ``val_interval``).
        val_interval: epochs between validations (``None``: only ``val_fraction``).
    """

    def __init__(self, validator: Any, clock: TrainingClock, val_fraction: float | None = 0.1,
                 val_interval: int | None = None) -> None:
        if val_fraction is None and val_interval is None:
            raise ValueError("ProgressValidationHandler: give val_fraction or val_interval")
        if val_fraction is not None and not 0 < float(val_fraction) <= 1:
            raise ValueError(f"val_fraction must be in (0, 1], got {val_fraction}")
        if val_interval is not None and int(val_interval) < 1:
            raise ValueError(f"val_interval must be >= 1 epochs, got {val_interval}")
        self.validator = validator
        self.clock = clock
        self.val_fraction = None if val_fraction is None else float(val_fraction)
        self.val_interval = None if val_interval is None else int(val_interval)
        self._next_mark: float | None = None

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        p = self.clock.progress
        if self._next_mark is None and self.val_fraction is not None:  # first call (or after a resume)
            self._next_mark = self.val_fraction * math.floor(p / self.val_fraction + 1e-9)
            self._next_mark = max(self._next_mark, self.val_fraction)
        due = self.clock.is_last_epoch(engine)
        if self.val_interval is not None and engine.state.epoch % self.val_interval == 0:
            due = True
        if self.val_fraction is not None and p >= self._next_mark - 1e-9:
            due = True
            self._next_mark = self.val_fraction * (math.floor(p / self.val_fraction + 1e-9) + 1)
        if due:
            self.validator.run(global_epoch=engine.state.epoch)

"""The training run's plateau rule: stop early only once the run has had its chance to learn.

MONAI's ``EarlyStopHandler`` stops after ``patience`` validations without a better score,
wherever the run is. With a time budget, validations every tenth of the run and a cosine
learning rate, that stopped the README's own run after 6.1 of its 10 minutes (issue 22):
the best score of one held-out tomogram had come early, by chance, while the model was
still learning at a high learning rate. Here a plateau may stop a run only after
:data:`MIN_PLATEAU_PROGRESS` of it (of its time budget, or of its epoch cap without one:
the run's progress, :class:`cryo3d.workflows.budget.TrainingClock`), and only validations
from then on count towards ``patience``.

:func:`plateau_reached` is the rule (pure); :class:`PlateauStopHandler` applies it after
each validation and keeps its history in the last checkpoint, so a resumed run counts on.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Sequence

from ignite.engine import Events

from cryo3d.bundle_keys import NULL_WORDS, parse_count_key

logger = logging.getLogger("cryo3d")

#: Share of the run (its progress: of the time budget, or of the epoch cap without one)
#: before which no plateau stops it; ``early_stop_patience`` counts validations from there.
MIN_PLATEAU_PROGRESS = 0.6


def plateau_reached(
    scores: Sequence[float],
    progress: Sequence[float],
    patience: int | None,
    min_progress: float = MIN_PLATEAU_PROGRESS,
    min_delta: float = 0.0,
) -> bool:
    """Whether a run with these validations should stop on a plateau.

    A validation improves when its score is above the best so far by more than
    ``min_delta`` (the first always does; NaN never does). Validations that do not improve
    count only when made at progress ``>= min_progress``; the run stops once ``patience`` of
    them have followed the last improvement.

    Args:
        scores: the validation scores, in order.
        progress: the run's progress (``[0, 1]``) at each validation.
        patience: validations without improvement (counted from ``min_progress``) before
            stopping; None: never stop on a plateau.
        min_progress: share of the run before which nothing counts.
        min_delta: how much better than the best a score must be to improve.

    Returns:
        True to stop.

    Example:
        >>> plateau_reached([0.8, 0.7, 0.7, 0.7], [0.1, 0.2, 0.3, 0.4], patience=2)
        False
        >>> plateau_reached([0.8, 0.7, 0.7, 0.7], [0.1, 0.6, 0.7, 0.8], patience=2)
        True
    """
    if len(scores) != len(progress):
        raise ValueError(f"plateau_reached: {len(scores)} scores but {len(progress)} progress values")
    if patience is None:
        return False
    best = -math.inf
    waiting = 0
    for s, p in zip(scores, progress):
        s = float(s)
        if s > best + min_delta:
            best, waiting = s, 0
        elif float(p) >= min_progress - 1e-9:
            waiting += 1
    return waiting >= patience


class PlateauStopHandler:
    """Stop the trainer on a validation plateau, by :func:`plateau_reached`.

    Attach it to the evaluator (it acts after each validation). It reads the score with
    ``score_function(evaluator)`` and the run's progress from ``clock``; when the rule says
    so it logs why and calls ``trainer.terminate()`` (the epoch's checkpoint is still
    written). Its history is a ``state_dict`` (save it with the last checkpoint: a resumed
    run then counts the validations before the kill).

    Args:
        trainer: the training engine to stop.
        clock: the run's :class:`cryo3d.workflows.budget.TrainingClock` (its ``progress``).
        patience: the bundle key ``early_stop_patience``: validations without improvement,
            counted from ``min_progress``; null: never stop on a plateau.
        score_function: ``evaluator -> score`` (higher is better).
        min_progress: share of the run before which no plateau stops it.
        min_delta: how much better a score must be to count as an improvement.
    """

    def __init__(self, trainer: Any, clock: Any, patience: Any, score_function: Callable[[Any], float],
                 min_progress: float = MIN_PLATEAU_PROGRESS, min_delta: float = 0.0) -> None:
        self.trainer = trainer
        self.clock = clock
        self.patience = parse_count_key(patience, "early_stop_patience", "validations", minimum=1,
                                        null_words=NULL_WORDS)
        if not 0.0 <= float(min_progress) <= 1.0:
            raise ValueError(f"PlateauStopHandler: min_progress is a share of the run in [0, 1], got {min_progress!r}")
        self.min_progress = float(min_progress)
        self.min_delta = float(min_delta)
        self.score_function = score_function
        self.scores: list[float] = []
        self.progress: list[float] = []

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        self.scores.append(float(self.score_function(engine)))
        self.progress.append(float(self.clock.progress))
        if plateau_reached(self.scores, self.progress, self.patience, self.min_progress, self.min_delta):
            best = max((s for s in self.scores if not math.isnan(s)), default=float("nan"))
            logger.info("validation plateau: no better score than %.4f in the last %d validations since %.0f%% of "
                        "the run (now at %.0f%%, epoch %d): stopping", best, self.patience,
                        100 * self.min_progress, 100 * self.progress[-1], self.trainer.state.epoch)
            self.trainer.terminate()

    def state_dict(self) -> dict:
        return {"scores": list(self.scores), "progress": list(self.progress)}

    def load_state_dict(self, state: dict) -> None:
        self.scores = [float(x) for x in state.get("scores", [])]
        self.progress = [float(x) for x in state.get("progress", [])]

"""Pruning: the ignite handler that reports validation scores to a trial, and the pruners."""

from __future__ import annotations

import logging
from typing import Any

import optuna
from ignite.engine import Events

from cryo3d.workflows.tuning.space import PRUNERS

logger = logging.getLogger(__name__)



class _TrainerHook:
    """Hands the trainer to an :class:`OptunaPruningHandler` (``run_training(trainer_handlers=[...])``)."""

    def __init__(self, handler: "OptunaPruningHandler") -> None:
        self.handler = handler

    def attach(self, engine: Any) -> None:
        self.handler.attach_trainer(engine)


class OptunaPruningHandler:
    """Ignite handler: report each validation score to an Optuna trial; stop training when pruned.

    Attach to the evaluator (``attach``) and give it the trainer (``attach_trainer``, or pass
    :attr:`trainer_hook` among ``run_training``'s ``trainer_handlers``). After every validation
    it calls ``trial.report(score, step=trainer epoch)``; when ``trial.should_prune()`` it calls
    ``trainer.terminate()`` (the run ends cleanly, checkpoints and logs closed) and records
    :attr:`pruned_epoch`; the objective then raises ``optuna.TrialPruned``
    (:meth:`raise_if_pruned`). Without a trainer it raises ``optuna.TrialPruned`` from the
    handler itself.

    optuna-integration's ``PyTorchIgnitePruningHandler`` is the same idea, but it raises
    ``TrialPruned`` inside the engines (MONAI's handlers log it as a failed run and nothing
    closes the run cleanly) and it is another package; hence this small class.

    Args:
        trial: The ``optuna.trial.Trial`` to report to.
        metric_name: Evaluator metric to report (default: the evaluator's key metric,
            ``val_fbeta``).
    """

    def __init__(self, trial: Any, metric_name: str | None = None) -> None:
        self.trial = trial
        self.metric_name = metric_name
        self.trainer: Any = None
        self.pruned_epoch: int | None = None
        self.reported: dict[int, float] = {}

    @property
    def trainer_hook(self) -> _TrainerHook:
        """A trainer handler that gives this handler the trainer when attached."""
        return _TrainerHook(self)

    @property
    def pruned(self) -> bool:
        """Whether the pruner stopped the trial."""
        return self.pruned_epoch is not None

    def attach(self, engine: Any) -> None:
        """Register on the evaluator's ``EPOCH_COMPLETED`` (after its metrics are computed)."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def attach_trainer(self, trainer: Any) -> None:
        """The trainer whose epoch is the step, and which is stopped when the trial is pruned."""
        self.trainer = trainer

    def __call__(self, engine: Any) -> None:
        name = self.metric_name or getattr(engine.state, "key_metric_name", None) or "val_fbeta"
        metrics = engine.state.metrics
        if name not in metrics:
            raise ValueError(f"OptunaPruningHandler: metric {name!r} not among the evaluator's metrics {sorted(metrics)}")
        score = float(metrics[name])
        step = int(self.trainer.state.epoch if self.trainer is not None else engine.state.epoch)
        self.trial.report(score, step)
        self.reported[step] = score
        if self.trial.should_prune():
            self.pruned_epoch = step
            logger.info("trial %s pruned after epoch %d (%s %.4f)", self.trial.number, step, name, score)
            if self.trainer is None:
                raise optuna.TrialPruned(f"pruned after epoch {step} ({name} {score:.4f})")
            self.trainer.terminate()

    def raise_if_pruned(self) -> None:
        """Raise ``optuna.TrialPruned`` when the pruner stopped the trial."""
        if self.pruned:
            raise optuna.TrialPruned(f"pruned after epoch {self.pruned_epoch} "
                                     f"(score {self.reported[self.pruned_epoch]:.4f})")


def make_pruner(kind: str = "median", n_startup_trials: int = 2, n_warmup_steps: int = 2,
                max_epochs: int | None = None) -> Any:
    """``median`` (MedianPruner), ``hyperband`` (HyperbandPruner over epochs) or ``none``.

    ``n_warmup_steps`` is the first epoch at which a trial may be pruned (median), or the
    minimum resource in epochs (hyperband). The first validation of a short run is mostly
    noise (a slow starter often scores 0 there and recovers), hence the default 2.

    Raises:
        ValueError: For another ``kind``.
    """
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, n_warmup_steps),
                                              max_resource=max_epochs if max_epochs else "auto", reduction_factor=3)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"pruner: expected one of {PRUNERS}, got {kind!r}")

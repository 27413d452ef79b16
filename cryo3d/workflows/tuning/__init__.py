"""Optuna studies over the training bundle: ``cryo3d tune``.

A study draws bundle overrides from a search space (``bundles/cryo3d_picker/configs/tune.yaml``),
trains the bundle with them in this process (:func:`cryo3d.workflows.run.run_training`) and maximises
the best validation particle F-beta of the run. Its modules:

* :mod:`.space`: :class:`~.space.ParamSpec`, :class:`~.space.TuneConfig`: the search space (one
  bundle key per entry, dotted keys ``beta_schedule.start`` for one field of a mapping-valued
  key) and the ``fixed`` overrides every trial shares, read from ``tune.yaml``; values the bundle
  would run as code (``$`` expressions, ``%`` macros, ``_target_``) are refused.
* :mod:`.sampling`: :func:`~.sampling.suggest_overrides`, define-by-run sampling. Parameters
  that do not apply are not drawn (``fuzzy_weight`` only for the combined loss,
  ``beta_schedule.*`` only when the loss has a fuzzy part, ``end``/``total``/``warmup`` not for
  a constant schedule, ``step_size`` only for ``step``, ``gamma`` only for
  ``step``/``exponential``), plus any ``when:`` the user writes; :func:`~.sampling.check_space`
  proves before the first trial that every combination the space allows builds a valid
  :class:`cryo3d.schedules.BetaSchedule`.
* :mod:`.pruning`: :class:`~.pruning.OptunaPruningHandler`, the ignite handler that reports each
  validation score to the trial (step = trainer epoch) and stops the trainer when the pruner
  says so; the pruners (median / Hyperband).
* :mod:`.storage`: storage (SQLite in the run folder, or any Optuna RDB URL), heartbeats and
  retry of killed trials.
* :mod:`.study`: :func:`~.study.run_study`, the sampler (TPE), the trial loop up to ``n_trials``
  finished (complete + pruned) trials.
* :mod:`.report`: the trials table, parameter importances and the best trial exported as
  ``best_overrides.yaml``.
* :mod:`.command`: the ``cryo3d tune`` command (also ``python -m cryo3d.workflows.tuning``).

A killed trial: every running trial writes a heartbeat to the storage; when a worker starts
(and before each trial) trials whose heartbeat is older than ``grace_period`` seconds are marked
FAIL and re-queued once more with the same parameters (Optuna's ``RetryFailedTrialCallback``).
The retry trains from scratch in its own folder, ``trial_<its number>``: trials never share a
folder, so no trial resumes another's checkpoint by accident.
"""

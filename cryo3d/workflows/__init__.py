"""Workflows: the runs that wire the parts together. Workflows import parts; no part imports a workflow.

- The training bundle's glue, one module per idea: :mod:`~cryo3d.workflows.bundle` (where
  the shipped bundle is, reading its configs), :mod:`~cryo3d.workflows.data` (the data
  set-up: simulate or read, choose the geometry, cut the patch store),
  :mod:`~cryo3d.workflows.network_spec` (the classes and geometry the network is built
  with, known before any data exists), :mod:`~cryo3d.workflows.validation` (whole
  validation tomograms and the metric table), :mod:`~cryo3d.workflows.checkpoint_meta`
  (what a checkpoint carries for predict), :mod:`~cryo3d.workflows.budget` (the time
  budget and progress-based validation), :mod:`~cryo3d.workflows.run` (training in this
  process with overrides and extra handlers).
- Commands of the bundle: :mod:`~cryo3d.workflows.bundle_commands` (``cryo3d train``,
  ``cryo3d bundle-path``).
- :mod:`cryo3d.workflows.tuning`: Optuna studies (space, sampling, pruning, storage,
  study, report, command).
- :mod:`cryo3d.workflows.experiments`: folds, ablation grids, cross-validation and
  across-epoch evaluation.
"""

"""Workflows: the runs that wire the parts together.

The training bundle's glue (data set-up, validation, handlers, checkpoint metadata), the
bundle's location and config loading (:mod:`cryo3d.workflows.bundle`), Optuna tuning and
experiments (folds, ablations, cross-validation, across-epoch evaluation). Workflows import
parts; no part imports a workflow.
"""

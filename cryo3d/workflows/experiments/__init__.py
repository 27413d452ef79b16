"""Experiments on the training bundle: k-fold splits, ablation grids, cross-validation, across-epoch evaluation.

The questions cryo3d exists to answer (does the combined BCE + fuzzy loss beat BCE, learn
faster and over-fit less; which beta and beta schedule; does SE help; which FPN fusion)
are each one command of ``scripts/`` built on this package:

* ``scripts/ablation.py`` -> :func:`~cryo3d.workflows.experiments.ablation.run_ablation`:
  named groups of bundle overrides, all trained on fold 0 of the same data; one CSV row
  per run, a markdown table, plots.
* ``scripts/cross_validate.py`` ->
  :func:`~cryo3d.workflows.experiments.crossval.run_cross_validation`: k folds by
  tomogram; per-class F-beta mean +/- std over folds.
* ``scripts/eval_epochs.py`` -> :func:`~cryo3d.workflows.experiments.epochs.evaluate_epochs`:
  every per-epoch checkpoint of a run on its validation tomograms and on
  out-of-distribution ones (CSV, PNG, TensorBoard).

Modules: ``tables`` (CSV / JSON-lines files, markdown tables, ``--set`` values),
``folds`` (source tomograms, k folds, split views), ``history`` (a run's validation
history in a few numbers), ``handlers`` (per-epoch loss and checkpoint trainer handlers),
``runs`` (one training run, the shared budget), ``arguments`` (the scripts' shared
options), ``plots``, ``ablation``, ``crossval`` and ``epochs``.

Every run trains through :func:`cryo3d.workflows.run.run_training` (the same ``train.yaml``
as ``python -m monai.bundle run training``) with two extra trainer handlers:
``EpochLossRecorder`` (mean training loss per epoch) and ``EpochCheckpointer`` (the
network and its ``cryo3d`` settings after every epoch, for across-epoch evaluation).

Run folder layout (``RUN`` is the folder given to a script)::

    RUN/folds.json                 k, seed, tomograms, the validation tomograms of each fold
    RUN/data/fold_<i>/             the dataset folder of fold i: links to the source's
                                   tomograms/ and picks.csv, and its own patch store
    RUN/runs/<name>/ or RUN/fold_<i>/   one training output folder (bundle output_dir):
        experiment.json            the overrides it was trained with
        result.json                written when training finished (a rerun skips it)
        val_metrics.jsonl          the bundle's validation records (one per validation)
        train_loss.jsonl           mean training loss per epoch
        epochs/epoch_<N>.pt        per-epoch checkpoints (``cryo3d predict`` reads them)
        epoch_eval/                across-epoch evaluation: CSV, PNG, TensorBoard
    RUN/ood/                       default out-of-distribution tomograms (made once)
"""

"""k-fold cross-validation by tomogram: train each fold, report per-class F-beta mean +/- std.

``scripts/cross_validate.py`` -> :func:`run_cross_validation`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cryo3d.io.atomic import write_text_atomic
from cryo3d.workflows.bundle import raw_bundle_keys
from cryo3d.workflows.experiments.folds import check_no_leak, ensure_folds, fold_overrides, source_tomograms, split_view
from cryo3d.workflows.experiments.history import CONVERGENCE_FRACTION, summarize_history
from cryo3d.workflows.experiments.plots import plot_training_curves
from cryo3d.workflows.experiments.runs import TrainFn, train_run
from cryo3d.workflows.experiments.tables import as_float, class_columns, format_value, markdown_table, write_csv

logger = logging.getLogger(__name__)


def cv_summary(fold_rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Mean and standard deviation over folds of the weighted score and each class's F-beta.

    Rows ``{"metric", "mean", "std", "n"}``: ``best`` and ``final`` scores and ``f_<class>``
    (at each fold's best epoch). ``std`` is the sample standard deviation (``ddof=1``;
    0 for one fold).
    """
    out = []
    for key in ["best", "final"] + class_columns(fold_rows):
        v = np.array([as_float(r.get(key)) for r in fold_rows], dtype=float)
        v = v[~np.isnan(v)]
        out.append({"metric": key, "mean": float(v.mean()) if v.size else float("nan"),
                    "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)})
    return out


def run_cross_validation(
    run_dir: str | os.PathLike,
    base: Mapping[str, Any],
    dataset_dir: str | os.PathLike,
    k: int = 4,
    seed: int = 0,
    synth: Mapping[str, Any] | None = None,
    folds_to_run: Sequence[int] | None = None,
    epoch_checkpoints: bool = True,
    train_fn: TrainFn | None = None,
    fraction: float = CONVERGENCE_FRACTION,
    metric_beta: float = 4.0,
    progress: bool = True,
) -> dict:
    """k-fold cross-validation by tomogram: train each fold, then the per-class mean +/- std. Resumable.

    Folds come from :func:`~cryo3d.workflows.experiments.folds.make_folds` and are stored
    in ``run_dir/folds.json``; fold ``i`` validates on its tomograms and trains on all
    others (checked: no validation tomogram is in its patch store). With the built-in data,
    an empty ``dataset_dir`` is filled with ``max(n_synth, k)`` synthetic tomograms.

    Writes ``cv_folds.csv`` (one row per fold), ``cv_summary.csv`` and ``cv.md`` (mean
    +/- std) and ``plots/cv_curves.png``.

    Returns:
        ``folds`` (validation tomograms), ``rows`` (per fold), ``summary``, ``run_dir``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    synth = dict(synth or {})
    n_synth = synth.get("n_synth")
    synth["n_synth"] = max(int(raw_bundle_keys()["n_synth_tomograms"] if n_synth is None else n_synth), int(k))
    tomos = source_tomograms(dataset_dir, seed=seed, progress=progress, **synth)
    folds = ensure_folds(run_dir / "folds.json", tomos, k, seed)
    todo = list(range(len(folds))) if folds_to_run is None else [int(i) for i in folds_to_run]
    bad = [i for i in todo if not 0 <= i < len(folds)]
    if bad:
        raise ValueError(f"folds {bad} do not exist; k = {len(folds)}")
    rows = []
    for i in todo:
        view = split_view(dataset_dir, run_dir / "data" / f"fold_{i}")
        ov = dict(base)
        ov.update(fold_overrides(view, folds[i]))
        logger.info("cross-validation fold %d/%d: validating on %s", i + 1, len(folds), folds[i])
        res = train_run(ov, run_dir / f"fold_{i}", epoch_checkpoints, train_fn)
        check_no_leak(view, folds[i])
        row = {"fold": i, "val_tomograms": " ".join(folds[i]), "output_dir": f"fold_{i}",
               "seconds": res.get("seconds")}
        row.update(summarize_history(res.get("history", []), fraction))
        rows.append(row)
    summary = cv_summary(rows)
    write_csv(run_dir / "cv_folds.csv", rows)
    write_csv(run_dir / "cv_summary.csv", summary, ["metric", "mean", "std", "n"])
    write_text_atomic(run_dir / "cv.md", cv_markdown(rows, summary, folds, metric_beta))
    plot_training_curves([(f"fold {r['fold']}", run_dir / r["output_dir"]) for r in rows],
                         run_dir / "plots" / "cv_curves.png", title=f"{len(folds)}-fold cross-validation",
                         metric_beta=metric_beta)
    return {"folds": folds, "rows": rows, "summary": summary, "run_dir": str(run_dir)}


def cv_markdown(rows: Sequence[Mapping[str, Any]], summary: Sequence[Mapping[str, Any]],
                folds: Sequence[Sequence[str]], beta: float = 4.0) -> str:
    """The cross-validation report: per-class mean +/- std, then one row per fold."""
    fb = f"F{beta:g}"
    lines = [f"# {len(folds)}-fold cross-validation by tomogram\n",
             f"Validation particle {fb} of each fold's held-out tomograms at its best epoch (thresholds swept "
             f"per class on those tomograms, so optimistic); mean +/- sample std over {len(rows)} fold(s).\n",
             "| metric | mean | std |", "|---|---:|---:|"]
    for s in summary:
        name = {"best": "score (best epoch)", "final": "score (final epoch)"}.get(s["metric"], s["metric"][2:])
        lines.append(f"| {name} | {format_value(s['mean'])} | {format_value(s['std'])} |")
    cols = [("fold", "fold"), ("val_tomograms", "validation tomograms"), ("best", f"best {fb}"),
            ("best_epoch", "best epoch"), ("final", f"final {fb}"), ("epochs_to_conv", "epochs to 95%")]
    cols += [(c, c[2:]) for c in class_columns(rows)]
    lines += ["", "## Folds", "", markdown_table(rows, cols), ""]
    return "\n".join(lines)

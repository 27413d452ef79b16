"""What a study reports: the trials table, parameter importances, the best trial's overrides file."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
import yaml
from optuna.trial import TrialState

from cryo3d.io.atomic import write_text_atomic
from cryo3d.workflows.tuning.storage import quiet_experimental, retried_trial_number


def trial_cell(v: Any) -> str:
    """A cell of the trials table: 3 significant figures (learning rates span decades), ``-`` for none.

    Not the experiments' :func:`~cryo3d.workflows.experiments.tables.format_value` (fixed
    decimals for scores): a searched value keeps its leading digits whatever its scale.
    """
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e3 else f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def trials_table(study: Any) -> str:
    """Text table of every trial: state, best F-beta, epochs run, best epoch, minutes, parameters.

    For a pruned trial the F-beta is the best it reported before it was stopped.
    """
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    names: list[str] = list(dict.fromkeys(p for t in trials for p in t.params))
    header = ["#", "state", "F-beta", "epochs", "best@", "min", *(n.replace("beta_schedule.", "beta.") for n in names)]
    notes = [retried_trial_number(t) for t in trials]
    if any(n is not None for n in notes):
        header.append("note")
    rows = []
    for t, note in zip(trials, notes):
        iv = t.intermediate_values
        score = t.value if t.value is not None and t.state.name == "COMPLETE" else (max(iv.values()) if iv else None)
        epochs = max(iv) if iv else t.user_attrs.get("epochs")
        dur = t.duration.total_seconds() / 60 if t.duration is not None else None
        rows.append([str(t.number), t.state.name, trial_cell(score), trial_cell(epochs), trial_cell(t.user_attrs.get("best_epoch")),
                     "-" if dur is None else f"{dur:.1f}", *(trial_cell(t.params.get(n)) for n in names)])
        if len(header) > len(rows[-1]):
            rows[-1].append("" if note is None else f"retry of {note}")
    return _table(header, rows)


def param_importances(study: Any) -> tuple[dict[str, float] | None, str]:
    """Parameter importances of the completed trials, and how they were computed (or why not).

    PED-ANOVA (``optuna.importance.PedAnovaImportanceEvaluator``: which parameters separate the
    top 10 % of trials from the rest; no extra dependency, works with few trials). fANOVA,
    Optuna's default, needs scikit-learn and is used only when PED-ANOVA is missing.

    Returns:
        The importances (parameter -> share, or None) and a line saying how, or why none.
    """
    n = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n < 2:
        return None, f"importances need at least 2 completed trials (have {n})"
    evaluators = []
    if hasattr(optuna.importance, "PedAnovaImportanceEvaluator"):
        evaluators.append(("PED-ANOVA", lambda: optuna.importance.PedAnovaImportanceEvaluator()))
    evaluators.append(("fANOVA", lambda: optuna.importance.FanovaImportanceEvaluator(seed=0)))
    reasons = []
    for label, make in evaluators:
        try:
            with quiet_experimental():
                warnings.simplefilter("ignore", UserWarning)  # "few trials in a regime": said in the header
                imp = optuna.importance.get_param_importances(study, evaluator=make())
            return dict(imp), f"{label} over {n} completed trials"
        except Exception as e:  # e.g. fANOVA without scikit-learn, or too few distinct values
            reasons.append(f"{label}: {type(e).__name__}: {e}")
    return None, "importances not available (" + "; ".join(reasons) + ")"


def export_best(study: Any, path: str | os.PathLike, fixed: Mapping[str, Any] | None = None,
                storage: str | None = None) -> dict | None:
    """Write the best completed trial's searched keys as a bundle override YAML file.

    The file merges as a second ``--config_file`` after ``train.yaml``: each top-level key
    replaces the bundle's (a mapping like ``beta_schedule`` is written whole, so none of the
    bundle's fields linger). The study's fixed settings are listed in the header as comments.
    Written atomically (several workers may finish trials at once).

    Args:
        study: The Optuna study.
        path: The YAML file to write.
        fixed: The study's fixed settings (written as comments).
        storage: The storage URL (named in the header).

    Returns:
        The overrides, or None when no trial has completed.

    Raises:
        ValueError: When the best trial was not run by ``cryo3d tune`` (no ``overrides``).
    """
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    over = best.user_attrs.get("overrides")
    if over is None:
        raise ValueError(f"trial {best.number} has no 'overrides' user attribute (not run by cryo3d tune?)")
    path = Path(path)
    lines = [
        f"# Best trial of Optuna study {study.study_name!r}"
        + (f" ({storage})" if storage else "") + f": trial {best.number},",
        f"# validation F-beta {best.value:.4f} at epoch {best.user_attrs.get('best_epoch')} "
        f"(run folder {best.user_attrs.get('output_dir')}).",
        "# Train with it:  python -m monai.bundle run training --meta_file bundles/cryo3d_picker/configs/metadata.json \\",
        f"#   --config_file \"['bundles/cryo3d_picker/configs/train.yaml','{path}']\"",
    ]
    if fixed:
        lines.append("# Trials ran with these fixed settings (not applied by this file):")
        lines += [f"#   {k}: {json.dumps(v)}" for k, v in fixed.items()]
    text = "\n".join(lines) + "\n" + yaml.safe_dump(over, sort_keys=False, default_flow_style=None)
    write_text_atomic(path, text)
    return dict(over)


def summary(study: Any, best_path: str | os.PathLike | None = None) -> str:
    """The report ``cryo3d tune`` prints: trials table, best trial, importances."""
    counts = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    head = f"study {study.study_name!r}: " + ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v)
    parts = [head, trials_table(study)]
    if counts["COMPLETE"]:
        b = study.best_trial
        parts.append(f"best: trial {b.number}, F-beta {b.value:.4f} at epoch {b.user_attrs.get('best_epoch')}: "
                     + json.dumps(b.user_attrs.get("overrides")))
        if best_path is not None:
            parts.append(f"best overrides written to {best_path}")
    imp, how = param_importances(study)
    if imp is None:
        parts.append(how)
    else:
        w = max(len(k) for k in imp)
        parts.append(f"parameter importances ({how}):\n" + "\n".join(f"  {k.ljust(w)}  {v:.3f}" for k, v in imp.items()))
    return "\n\n".join(parts)

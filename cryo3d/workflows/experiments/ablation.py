"""Ablation grids on fold 0: named groups of bundle overrides, their runner, results table and plots.

``scripts/ablation.py`` -> :func:`run_ablation`: every run of a grid trains the bundle on
fold 0 of the same data; one CSV row per run, a markdown table per group, plots.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from cryo3d.io.atomic import json_default, write_text_atomic
from cryo3d.workflows.experiments.folds import check_no_leak, ensure_folds, fold_overrides, source_tomograms, split_view
from cryo3d.workflows.experiments.history import CONVERGENCE_FRACTION, summarize_history
from cryo3d.workflows.experiments.plots import plot_training_curves
from cryo3d.workflows.experiments.runs import DEFAULT_BUDGET, TrainFn, train_run
from cryo3d.workflows.experiments.tables import as_float, class_columns, markdown_table, read_csv, write_csv

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GridRun:
    """One ablation run: a group (the question), a label (the setting) and its bundle overrides."""

    group: str
    label: str
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.group}-{self.label}"

    @property
    def key(self) -> str:
        """Canonical JSON of the overrides: equal keys train identical configurations."""
        return json.dumps(self.overrides, sort_keys=True, default=json_default)


#: Ablation groups and what they answer.
GROUPS = {
    "se": "does squeeze-and-excitation help? (SE-FPN with SE on / off)",
    "fusion": "which FPN fusion is best? (parallel, cascade, pc)",
    "loss": "BCE vs combined (BCE + fuzzy F-beta) vs fuzzy, constant beta sweep",
    "schedule": "which beta schedule? (combined loss; constant, linear, cosine, step, 1 -> 4)",
}
DEFAULT_GROUPS = ("se", "fusion", "loss")

#: Columns of the ablation results CSV before the per-class ones.
ABLATION_FIELDS = ("group", "label", "run", "output_dir", "best", "best_epoch", "epochs_to_conv", "final",
                   "final_epoch", "drop", "n_validations", "seconds", "overrides")


def ablation_grid(
    groups: Sequence[str] = DEFAULT_GROUPS,
    betas: Sequence[float] = (1.0, 2.0, 4.0),
    network: str = "sefpn-tiny",
    max_epochs: int = DEFAULT_BUDGET["max_epochs"],
) -> list[GridRun]:
    """The built-in grid of the named groups (see :data:`GROUPS`), each run a few overrides.

    ``se`` and ``fusion`` train ``network`` (an SE-FPN preset) with the shared loss;
    ``loss`` and ``schedule`` train the shared network (the bundle's U-Net). SE on with
    ``pc`` fusion appears in both SE and fusion groups; :func:`run_ablation` trains it once.
    """
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown ablation group(s) {unknown}; choose from {sorted(GROUPS)}")
    e = int(max_epochs)
    runs: list[GridRun] = []
    for g in groups:
        if g == "se":
            for se in (True, False):
                runs.append(GridRun(g, "se_on" if se else "se_off",
                                    {"network_name": network, "network_overrides": {"fusion": "pc", "se": se}}))
        elif g == "fusion":
            for fu in ("parallel", "cascade", "pc"):
                runs.append(GridRun(g, fu, {"network_name": network, "network_overrides": {"fusion": fu, "se": True}}))
        elif g == "loss":
            runs.append(GridRun(g, "bce", {"loss_kind": "bce"}))
            for kind in ("combined", "fuzzy"):
                for b in betas:
                    runs.append(GridRun(g, f"{kind}_b{b:g}", {
                        "loss_kind": kind, "beta_schedule": {"kind": "constant", "start": float(b)}}))
        elif g == "schedule":
            warm = min(2, e // 4)
            scheds = {
                "constant": {"kind": "constant", "start": 2.0},
                "linear": {"kind": "linear", "start": 1.0, "end": 4.0, "total": e, "warmup": warm},
                "cosine": {"kind": "cosine", "start": 1.0, "end": 4.0, "total": e, "warmup": warm},
                "step": {"kind": "step", "start": 1.0, "end": 4.0, "total": e, "warmup": warm,
                         "step_size": max(1, (e - warm) // 3)},
            }
            for label, s in scheds.items():
                runs.append(GridRun(g, label, {"loss_kind": "combined", "beta_schedule": s}))
    return runs


def load_grid(path: str | os.PathLike) -> list[GridRun]:
    """A user grid from JSON or YAML: ``{group: {label: {bundle key: value, ...}, ...}, ...}``."""
    p = Path(path)
    spec = yaml.safe_load(p.read_text())
    if not isinstance(spec, dict) or not all(isinstance(v, dict) for v in spec.values()):
        raise ValueError(f"{p}: a grid maps group names to {{label: {{bundle key: value}}}} mappings")
    runs = []
    for g, labels in spec.items():
        for label, ov in labels.items():
            if not isinstance(ov, dict):
                raise ValueError(f"{p}: {g}/{label} must map bundle keys to values, got {ov!r}")
            runs.append(GridRun(str(g), str(label), ov))
    return runs


def ablation_markdown(rows: Sequence[Mapping[str, Any]], beta: float = 4.0,
                      fraction: float = CONVERGENCE_FRACTION) -> str:
    """The ablation table: one section per group, best run of a group in bold."""
    classes = class_columns(rows)
    fb = f"F{beta:g}"
    cols = [("label", "run"), ("best", f"best {fb}"), ("best_epoch", "best epoch"),
            ("epochs_to_conv", f"epochs to {fraction:.0%}"), ("final", f"final {fb}"), ("drop", "drop"),
            ("seconds", "s")] + [(c, c[2:]) for c in classes]
    parts = [f"# Ablation (fold 0)\n\nValidation particle {fb} on the fold-0 validation tomograms, "
             f"thresholds swept per class. `best`: best validation; `epochs to {fraction:.0%}`: first epoch "
             f"reaching {fraction:.0%} of the run's best; `drop`: best - final (over-fitting); per-class "
             f"columns: {fb} at the best epoch.\n"]
    for g in dict.fromkeys(r["group"] for r in rows):
        grp = [dict(r) for r in rows if r["group"] == g]
        scores = [as_float(r.get("best")) for r in grp]
        valid = [s for s in scores if not math.isnan(s)]
        if valid and valid.count(max(valid)) == 1:  # bold a unique best only
            i = scores.index(max(valid))
            grp[i]["label"] = f"**{grp[i]['label']}**"
        title = GROUPS.get(g, "")
        parts.append(f"## {g}" + (f": {title}" if title else "") + "\n\n" + markdown_table(grp, cols) + "\n")
    return "\n".join(parts)


def _result_row(run: GridRun, result: Mapping[str, Any], run_dir: Path, fraction: float) -> dict:
    s = summarize_history(result.get("history", []), fraction)
    out_dir = Path(result["output_dir"])
    try:
        rel = str(out_dir.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        rel = str(out_dir)
    row = {"group": run.group, "label": run.label, "run": run.name, "output_dir": rel,
           "seconds": result.get("seconds"), "overrides": dict(run.overrides)}
    row.update(s)
    return row


def run_ablation(
    run_dir: str | os.PathLike,
    grid: Sequence[GridRun],
    base: Mapping[str, Any],
    dataset_dir: str | os.PathLike,
    k: int = 4,
    seed: int = 0,
    synth: Mapping[str, Any] | None = None,
    epoch_checkpoints: bool = True,
    train_fn: TrainFn | None = None,
    fraction: float = CONVERGENCE_FRACTION,
    metric_beta: float = 4.0,
    progress: bool = True,
) -> list[dict]:
    """Train every run of ``grid`` on fold 0 and write the table and plots. Resumable.

    Every run uses the same data, the same fold-0 split of
    :func:`~cryo3d.workflows.experiments.folds.make_folds` (``k``, ``seed``; stored in
    ``run_dir/folds.json``) and ``base`` under its own overrides. Runs whose row is in
    ``run_dir/results.csv`` are skipped; runs with identical overrides train once. Writes
    after every run: ``results.csv`` (atomically), ``results.md`` and ``plots/<group>.png``
    (training loss and validation F-beta against epoch).

    Args:
        synth: ``n_synth``, ``synth_shape``, ``synth_preset`` for
            :func:`~cryo3d.workflows.experiments.folds.source_tomograms` when ``dataset_dir``
            is empty.

    Returns:
        The result rows in grid order.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    names = dict.fromkeys(r.name for r in grid)
    if len(names) != len(grid):
        raise ValueError("ablation grid: run names (group-label) must be unique")
    synth = dict(synth or {})
    tomos = source_tomograms(dataset_dir, seed=seed, progress=progress, **synth)
    folds = ensure_folds(run_dir / "folds.json", tomos, k, seed)
    view = split_view(dataset_dir, run_dir / "data" / "fold_0")
    shared = dict(base)
    shared.update(fold_overrides(view, folds[0]))
    csv_path = run_dir / "results.csv"
    rows = {r["run"]: dict(r) for r in read_csv(csv_path)}
    first_dir: dict[str, Path] = {}
    errors = []
    for i, run in enumerate(grid):
        out = first_dir.setdefault(run.key, run_dir / "runs" / run.name)
        if run.name in rows:
            continue
        logger.info("ablation run %d/%d: %s %s", i + 1, len(grid), run.name, run.key)
        try:
            res = train_run({**shared, **run.overrides}, out, epoch_checkpoints, train_fn)
        except Exception as ex:  # keep going: one broken setting should not lose the grid
            logger.exception("ablation run %s failed", run.name)
            errors.append(f"{run.name}: {type(ex).__name__}: {ex}")
            continue
        check_no_leak(view, folds[0])
        rows[run.name] = _result_row(run, res, run_dir, fraction)
        _write_ablation_outputs(run_dir, grid, rows, metric_beta, fraction)
    _write_ablation_outputs(run_dir, grid, rows, metric_beta, fraction)
    if errors:
        write_text_atomic(run_dir / "errors.log", "\n".join(errors) + "\n")
        raise RuntimeError(f"{len(errors)} ablation run(s) failed (see {run_dir / 'errors.log'}): " + "; ".join(errors))
    return [rows[r.name] for r in grid if r.name in rows]


def _write_ablation_outputs(run_dir: Path, grid: Sequence[GridRun], rows: Mapping[str, dict],
                            metric_beta: float, fraction: float) -> None:
    ordered = [rows[r.name] for r in grid if r.name in rows]
    ordered += [r for n, r in rows.items() if n not in {g.name for g in grid}]  # rows of an earlier, larger grid
    if not ordered:
        return
    fields = list(ABLATION_FIELDS) + class_columns(ordered)
    write_csv(run_dir / "results.csv", ordered, fields)
    write_text_atomic(run_dir / "results.md", ablation_markdown(ordered, metric_beta, fraction))
    for g in dict.fromkeys(r["group"] for r in ordered):
        curves = [(r["label"], run_dir / r["output_dir"] if not Path(r["output_dir"]).is_absolute()
                   else Path(r["output_dir"])) for r in ordered if r["group"] == g]
        plot_training_curves(curves, run_dir / "plots" / f"{g}.png", title=f"ablation: {g}", metric_beta=metric_beta)

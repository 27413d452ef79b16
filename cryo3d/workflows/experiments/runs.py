"""One training run of an experiment: the bundle trained once into its own folder, resumable.

Every run trains through :func:`cryo3d.workflows.run.run_training` (the same ``train.yaml``
as ``python -m monai.bundle run training``) with two extra trainer handlers:
:class:`~cryo3d.workflows.experiments.handlers.EpochLossRecorder` and
:class:`~cryo3d.workflows.experiments.handlers.EpochCheckpointer`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cryo3d.io.atomic import write_json_atomic
from cryo3d.workflows.run import run_training
from cryo3d.workflows.bundle import parse_bundle
from cryo3d.workflows.experiments.handlers import EpochCheckpointer, EpochLossRecorder
from cryo3d.workflows.experiments.tables import read_jsonl

#: Reduced training budget of experiments on a CPU (the bundle's own default is 15 x 40).
DEFAULT_BUDGET = {"max_epochs": 8, "epoch_length": 20, "val_interval": 1}

TrainFn = Callable[..., dict]


def bundle_values(overrides: Mapping[str, Any], keys: Sequence[str], config_file: str | None = None) -> dict:
    """Values of plain top-level bundle keys after ``overrides`` (the bundle's defaults otherwise).

    Only keys that do not depend on the data (``network_name``, ``prior``, ``n_val``, ...).
    """
    p = parse_bundle(config_file)
    out = {}
    for k in keys:
        out[k] = overrides[k] if k in overrides else p.get_parsed_content(k)
    return out


def train_run(
    overrides: Mapping[str, Any],
    output_dir: str | os.PathLike,
    epoch_checkpoints: bool = True,
    train_fn: TrainFn | None = None,
) -> dict:
    """Train the bundle once into ``output_dir`` (skipped when it already finished there).

    Writes ``experiment.json`` (the overrides) first and ``result.json`` when done; a
    killed run resumes from the bundle's last checkpoint when called again.

    Args:
        overrides: Top-level bundle keys (``output_dir`` is set here).
        output_dir: The run's bundle output folder.
        epoch_checkpoints: Attach :class:`EpochCheckpointer` (``output_dir/epochs/epoch_<N>.pt``).
        train_fn: ``train_fn(overrides, trainer_handlers=[...]) -> {"history": [...], ...}``;
            default :func:`cryo3d.workflows.run.run_training` (tests pass a stand-in).

    Returns:
        ``history`` (validation records), ``best``, ``best_checkpoint``, ``output_dir``,
        ``seconds`` (training time of the call that finished it), ``overrides``.
    """
    out = Path(output_dir)
    done = out / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    ov = dict(overrides)
    ov["output_dir"] = str(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "experiment.json", {"overrides": ov})
    handlers: list[Any] = [EpochLossRecorder(out)]
    if epoch_checkpoints:
        v = bundle_values(ov, ["network_name", "prior", "network_overrides"])
        net = {"name": v["network_name"], "prior": v["prior"], **dict(v["network_overrides"] or {})}
        handlers.append(EpochCheckpointer(out / "epochs", net, out / "val_metrics.jsonl"))
    t0 = time.perf_counter()
    res = (train_fn or run_training)(ov, trainer_handlers=handlers)
    history = list(res.get("history") or read_jsonl(out / "val_metrics.jsonl"))
    result = {
        "history": history,
        "best": max((h["score"] for h in history), default=float("nan")),
        "best_checkpoint": res.get("best_checkpoint"),
        "output_dir": str(out),
        "seconds": round(time.perf_counter() - t0, 1),
        "overrides": ov,
    }
    write_json_atomic(done, result)
    return result


def base_overrides(budget: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> dict:
    """Shared overrides of an experiment: the reduced budget, early stopping off, a beta schedule that fits it.

    Early stopping is off (patience = max_epochs) so that every run's curve is complete
    and over-fitting is visible; the beta schedule ramps 1 -> 4 over the run (the bundle's
    ramp assumes 15 epochs). ``extra`` (e.g. from ``--set``) wins over everything.
    """
    b = dict(DEFAULT_BUDGET)
    b.update({k: v for k, v in (budget or {}).items() if v is not None})
    e = int(b["max_epochs"])
    out = dict(b)
    out["early_stop_patience"] = e
    out["beta_schedule"] = {"kind": "linear", "start": 1.0, "end": 4.0, "total": e, "warmup": min(2, e // 4)}
    out["beta_unit"] = "epoch"  # experiments compare runs of equal epochs, not of equal wall time
    out["time_budget"] = None
    out.update(dict(extra or {}))
    return out

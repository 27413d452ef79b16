"""Running the training bundle in this process, and finding the checkpoint to resume from.

* :func:`run_training`: the bundle's ``train.yaml`` with overrides and extra handlers, as
  experiments and tuning run it.
* :func:`latest_checkpoint`: the newest complete checkpoint in a folder, for resuming
  (the savers and the resume handler are in :mod:`cryo3d.checkpoints`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from monai.bundle import ConfigWorkflow

from cryo3d.checkpoints import is_complete_checkpoint
from cryo3d.workflows.bundle import config_files, config_path


def run_training(
    overrides: dict | None = None,
    config_file: str | Sequence[str] | None = None,
    meta_file: str | None = None,
    evaluator_handlers: Sequence[Any] = (),
    trainer_handlers: Sequence[Any] = (),
    logging_file: str | bool | None = None,
) -> dict:
    """Run the training bundle in this process with overrides; return its validation history.

    This is how experiments (Optuna trials, ablations, cross-validation folds) train: the
    same ``train.yaml`` as ``python -m monai.bundle run training``, with any top-level key
    overridden (``{"loss_kind": "bce", "output_dir": ...}``) and extra ignite handlers
    attached to the evaluator (e.g. an Optuna pruning handler) or the trainer.

    Returns:
        ``best`` (best validation F-beta), ``history`` (the ``val_metrics.jsonl`` records of
        this output folder, one per validation), ``output_dir``, ``best_checkpoint``.
    """
    overrides = dict(overrides or {})
    cfg = config_files(config_file)
    meta = meta_file or str(config_path("metadata.json"))
    wf = ConfigWorkflow(config_file=cfg, meta_file=meta, logging_file=logging_file, run_id="training",
                        workflow_type=None, **overrides)
    wf.initialize()
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    trainer = wf.parser.get_parsed_content("trainer")
    for h in evaluator_handlers:
        h.attach(evaluator)
    for h in trainer_handlers:
        h.attach(trainer)
    try:
        wf.run()
    finally:
        wf.finalize()
    out = Path(wf.parser.get_parsed_content("output_dir"))
    hist_path = out / "val_metrics.jsonl"
    history = [json.loads(x) for x in hist_path.read_text().splitlines() if x.strip()] if hist_path.exists() else []
    best = max((h["score"] for h in history), default=float("nan"))
    ck = out / "checkpoints" / "best.pt"
    return {"best": best, "history": history, "output_dir": str(out),
            "best_checkpoint": str(ck) if ck.exists() else None}


def latest_checkpoint(folder: str | os.PathLike, prefix: str = "last") -> str | None:
    """Path of the newest ``<prefix>*.pt`` checkpoint in ``folder`` (by iteration in its name), or None."""
    d = Path(folder)
    if not d.is_dir():
        return None
    # a file cut short by a kill (older writers were not atomic) is skipped, not resumed from
    cands = [p for p in sorted(d.glob(f"{prefix}*.pt")) if is_complete_checkpoint(p)]
    if not cands:
        return None

    def it(p: Path) -> int:
        m = re.findall(r"(\d+)", p.stem)
        return int(m[-1]) if m else -1

    return str(max(cands, key=lambda p: (it(p), p.stat().st_mtime)))

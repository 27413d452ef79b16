"""The ``cryo3d tune`` command (also ``python -m cryo3d.workflows.tuning``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import yaml

from cryo3d.workflows.tuning.space import DEFAULT_TUNE_CONFIG, PRUNERS


def _int(default: int, text: str) -> dict[str, Any]:
    """``add_argument`` settings of an integer option whose help ends with its default."""
    return {"type": int, "default": default, "help": f"{text} (default: %(default)s)"}


#: The options of ``cryo3d tune``, in help order: flag -> ``add_argument`` settings.
_OPTIONS: dict[str, dict[str, Any]] = {
    "--config": {"default": str(DEFAULT_TUNE_CONFIG), "help": "search space YAML: 'space' (key -> spec) and "
                 "'fixed' (key -> value) (default: the bundle's tune.yaml)"},
    "--bundle-config": {"nargs": "+", "metavar": "YAML",
                        "help": "training bundle config file(s) the trials run (default: the bundle's train.yaml)"},
    "--study-name": {"default": "picker", "help": "study name; the run folder is OUT/STUDY (default: %(default)s)"},
    "--out": {"default": "runs/tune", "help": "parent of the run folder (default: %(default)s)"},
    "--storage": {"help": "Optuna RDB URL (default: sqlite:///OUT/STUDY/study.db); a shared "
                  "postgresql://user:password@host/db lets workers on several machines run one study"},
    "--n-trials": _int(20, "finished (complete + pruned) trials the study should have in all, earlier runs and "
                       "other workers included"),
    "--timeout": {"type": float, "help": "stop starting trials after this many seconds"},
    "--pruner": {"default": "median", "choices": PRUNERS, "help": "pruner of bad trials (default: %(default)s)"},
    "--prune-startup-trials": _int(2, "median pruner: prune nothing until this many trials finished"),
    "--prune-warmup-epochs": _int(2, "prune no trial before this epoch (hyperband: minimum epochs)"),
    "--sampler-startup-trials": _int(5, "random trials before TPE takes over"),
    "--seed": _int(0, "TPE sampler seed; give each worker its own"),
    "--fixed": {"nargs": "+", "action": "extend", "default": [], "metavar": "KEY=VALUE",
                "help": "more overrides for every trial (YAML values), e.g. --fixed max_epochs=4 dataset_dir=data/mine"},
    "--heartbeat-interval": _int(30, "seconds between a running trial's heartbeats (0: none)"),
    "--grace-period": _int(120, "a trial silent this long (seconds) was killed: it is failed and retried"),
    "--max-retry": _int(2, "retries of a killed trial"),
    "--quiet": {"action": "store_true", "help": "trials log warnings only"},
}


def _parse_fixed(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--fixed: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def add_tune_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``cryo3d tune`` (shared by :func:`add_tune_parser` and :func:`main`)."""
    for flag, settings in _OPTIONS.items():
        p.add_argument(flag, **settings)
    return p


def add_tune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tune`` on an ``argparse`` sub-parser set (``cryo3d`` wires it into its CLI)."""
    s = subparsers.add_parser(
        "tune", help="tune training hyperparameters with Optuna (pruning, resumable, several workers)",
        description="Optuna study over the training bundle: each trial trains with overrides drawn from the "
        "search space into OUT/STUDY/trial_<n> and scores its best validation F-beta; bad trials are pruned on "
        "per-epoch scores. Run it again to resume (killed trials are retried); the best trial is exported as "
        "OUT/STUDY/best_overrides.yaml, a bundle config file.")
    add_tune_arguments(s)
    s.set_defaults(func=cmd_tune)
    return s


def cmd_tune(a: argparse.Namespace) -> int:
    """Run ``cryo3d tune`` with parsed arguments."""
    # imported when a study runs: the study pulls in Optuna, torch and MONAI (seconds), which
    # building the cryo3d command line (cryo3d --help, every other command) need not pay
    from cryo3d.workflows.tuning.study import run_study

    run_study(
        a.config, study_name=a.study_name, out=a.out, storage=a.storage, n_trials=a.n_trials, timeout=a.timeout,
        pruner=a.pruner, prune_startup_trials=a.prune_startup_trials, prune_warmup_epochs=a.prune_warmup_epochs,
        sampler_startup_trials=a.sampler_startup_trials, seed=a.seed, fixed=_parse_fixed(a.fixed),
        bundle_config=a.bundle_config, heartbeat_interval=a.heartbeat_interval or None,
        grace_period=a.grace_period, max_retry=a.max_retry, quiet=a.quiet,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cryo3d.workflows.tuning [options]``: the same as ``cryo3d tune``."""
    p = add_tune_arguments(argparse.ArgumentParser(prog="python -m cryo3d.workflows.tuning",
                                                   description=cmd_tune.__doc__))
    a = p.parse_args(argv)
    try:
        return cmd_tune(a)
    except (ValueError, FileNotFoundError) as e:
        print(f"cryo3d tune: error: {e}", file=sys.stderr)
        return 2

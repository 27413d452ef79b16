"""Command-line arguments that every experiment script (ablation, cross-validation) shares."""

from __future__ import annotations

import argparse

from cryo3d.synth import PRESETS
from cryo3d.workflows.bundle import raw_bundle_keys
from cryo3d.workflows.experiments.runs import DEFAULT_BUDGET, base_overrides
from cryo3d.workflows.experiments.tables import parse_set


def add_common_arguments(ap: argparse.ArgumentParser, run_default: str) -> None:
    """Arguments every experiment script shares: run folder, data, split and training budget.

    The built-in data's defaults (how many tomograms, which simulator preset) are the shipped
    bundle's ``n_synth_tomograms`` and ``synth_preset``, so an experiment on an empty folder
    simulates what ``cryo3d train`` would.
    """
    bundle = raw_bundle_keys()
    ap.add_argument("--run", default=run_default,
                    help="run folder: results, folds, data views (default: %(default)s)")
    ap.add_argument("--dataset-dir", default="data/picker",
                    help="tomograms/ + picks.csv; simulated there when empty, like the bundle (default: %(default)s)")
    ap.add_argument("--n-synth", type=int, default=int(bundle["n_synth_tomograms"]),
                    help="built-in data: tomograms to simulate (default: %(default)s)")
    ap.add_argument("--synth-shape", type=int, nargs=3, default=[184, 256, 256], metavar=("Z", "Y", "X"))
    ap.add_argument("--synth-preset", default=bundle["synth_preset"], choices=sorted(PRESETS),
                    help="built-in data: simulator preset (default: %(default)s)")
    ap.add_argument("--k", type=int, default=4,
                    help="folds; fold 0 validates on about 1/k of the tomograms (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the folds, the simulator and training (default: %(default)s)")
    ap.add_argument("--max-epochs", type=int, default=DEFAULT_BUDGET["max_epochs"], help="(default: %(default)s)")
    ap.add_argument("--epoch-length", type=int, default=DEFAULT_BUDGET["epoch_length"],
                    help="iterations per epoch (default: %(default)s)")
    ap.add_argument("--val-interval", type=int, default=DEFAULT_BUDGET["val_interval"],
                    help="validate every this many epochs (default: %(default)s)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="any other train.yaml key for every run, value as YAML, "
                         "e.g. batch_size=4 'network_overrides={se: false}'")
    ap.add_argument("--no-epoch-checkpoints", action="store_true",
                    help="do not save a checkpoint per epoch (eval_epochs.py needs them)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")


def common_settings(args: argparse.Namespace) -> dict:
    """``base`` overrides, ``synth`` settings and the shared keyword arguments from :func:`add_common_arguments`."""
    extra = parse_set(args.set)
    extra.setdefault("seed", args.seed)
    base = base_overrides({"max_epochs": args.max_epochs, "epoch_length": args.epoch_length,
                           "val_interval": args.val_interval}, extra)
    synth = {"n_synth": args.n_synth, "synth_shape": list(args.synth_shape), "synth_preset": args.synth_preset}
    return {"base": base, "synth": synth, "dataset_dir": args.dataset_dir, "k": args.k, "seed": args.seed,
            "epoch_checkpoints": not args.no_epoch_checkpoints, "progress": not args.quiet,
            "metric_beta": float(base.get("metric_beta", 4.0))}

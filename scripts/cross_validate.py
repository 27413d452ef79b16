"""k-fold cross-validation by tomogram: train each fold, report per-class F-beta mean +/- std.

The folds (no tomogram in two folds) are made once and stored in ``--run``/folds.json;
fold i validates on its tomograms and trains on all the others. With the built-in data an
empty ``--dataset-dir`` is filled with max(--n-synth, --k) synthetic tomograms. Writes
``cv_folds.csv``, ``cv_summary.csv``, ``cv.md`` and ``plots/cv_curves.png``; a finished
fold is skipped when the command is repeated. Examples:

    PYTHONPATH=. python scripts/cross_validate.py --run runs/cv
    PYTHONPATH=. python scripts/cross_validate.py --run runs/cv_bce --set loss_kind=bce --k 5 --n-synth 10
    PYTHONPATH=. python scripts/cross_validate.py --run runs/cv --eval-epochs   # + across-epoch evaluation per fold
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cryo3d.workflows.experiments.arguments import add_common_arguments, common_settings
from cryo3d.workflows.experiments.crossval import run_cross_validation
from cryo3d.workflows.experiments.epochs import dataset_eval_set, ensure_ood, evaluate_epochs, run_eval_set


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(ap, run_default="runs/cv")
    ap.add_argument("--folds", type=int, nargs="+", help="run only these folds (default: all)")
    ap.add_argument("--eval-epochs", action="store_true",
                    help="then evaluate every epoch's checkpoint of each fold on its validation and OOD tomograms")
    ap.add_argument("--ood-n", type=int, default=2, help="with --eval-epochs: OOD tomograms (default: %(default)s)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")

    c = common_settings(a)
    res = run_cross_validation(a.run, c["base"], c["dataset_dir"], k=c["k"], seed=c["seed"], synth=c["synth"],
                               folds_to_run=a.folds, epoch_checkpoints=c["epoch_checkpoints"],
                               metric_beta=c["metric_beta"], progress=c["progress"])
    print((Path(a.run) / "cv.md").read_text())
    if a.eval_epochs:
        ood = dataset_eval_set("ood", ensure_ood(Path(a.run) / "ood", n=a.ood_n, shape=a.synth_shape,
                                                  progress=c["progress"]))
        for r in res["rows"]:
            d = Path(a.run) / r["output_dir"]
            evaluate_epochs(d, [run_eval_set(d), ood], beta=c["metric_beta"], progress=c["progress"])
            print(f"fold {r['fold']}: across-epoch evaluation in {d / 'epoch_eval'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Across-epoch evaluation: every saved checkpoint of a run on its validation and on out-of-distribution tomograms.

Reads RUN_DIR/epochs/epoch_<N>.pt (saved by the experiment scripts, one per epoch) and
scores each on (1) the run's own validation tomograms (from RUN_DIR/experiment.json, or
--val-dir/--val-tomograms) and (2) OOD tomograms: by default 2 synthetic ones with lower
SNR (0.2-0.4), a narrower wedge (+/-40-45 degrees) and more particles (20-28 per class),
made once in --ood-dir; or any folder with tomograms/ + picks.csv given by --ood-dir.
Each checkpoint is scored with its own validation thresholds and with the best threshold
per class. Writes RUN_DIR/epoch_eval/: epoch_metrics.csv, epoch_curves.png and TensorBoard
scalars; repeated calls skip epochs already scored. Examples:

    PYTHONPATH=. python scripts/eval_epochs.py runs/ablation/runs/loss-bce
    PYTHONPATH=. python scripts/eval_epochs.py runs/cv/fold_0 --ood-dir /data/other_microscope --no-synth-ood
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cryo3d.workflows.experiments.epochs import (
    OOD_DEFAULTS,
    dataset_eval_set,
    ensure_ood,
    evaluate_epochs,
    experiment_root,
    run_eval_set,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a training output folder with epochs/epoch_<N>.pt")
    ap.add_argument("--out", help="output folder (default: RUN_DIR/epoch_eval)")
    ap.add_argument("--val-dir", help="dataset folder of the validation tomograms (default: from experiment.json)")
    ap.add_argument("--val-tomograms", nargs="+", help="with --val-dir: only these tomograms")
    ap.add_argument("--no-val", action="store_true", help="skip the in-fold validation set")
    ap.add_argument("--ood-dir",
                    help="OOD folder (tomograms/ + picks.csv); default: RUN/ood of the experiment folder, simulated")
    ap.add_argument("--no-synth-ood", action="store_true", help="--ood-dir holds real data: do not simulate into it")
    ap.add_argument("--no-ood", action="store_true", help="skip the OOD set")
    ap.add_argument("--ood-n", type=int, default=2, help="synthetic OOD tomograms (default: %(default)s)")
    ap.add_argument("--ood-shape", type=int, nargs=3, default=[184, 256, 256], metavar=("Z", "Y", "X"))
    ap.add_argument("--ood-snr", type=float, nargs=2, default=list(OOD_DEFAULTS["snr"]))
    ap.add_argument("--ood-tilt-range", type=float, nargs=2, default=list(OOD_DEFAULTS["tilt_range"]))
    ap.add_argument("--ood-particles", type=int, nargs=2, default=list(OOD_DEFAULTS["particles_per_class"]))
    ap.add_argument("--ood-seed", type=int, default=OOD_DEFAULTS["seed"])
    ap.add_argument("--beta", type=float, default=4.0, help="F-beta's beta (default: %(default)s)")
    ap.add_argument("--device", help="torch device (default: cuda when available)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")

    run = Path(a.run_dir)
    sets = []
    if not a.no_val:
        sets.append(dataset_eval_set("val", a.val_dir, a.val_tomograms) if a.val_dir else run_eval_set(run))
    if not a.no_ood:
        ood = Path(a.ood_dir) if a.ood_dir else experiment_root(run) / "ood"
        if not a.no_synth_ood:
            ensure_ood(ood, n=a.ood_n, shape=a.ood_shape, progress=not a.quiet, snr=tuple(a.ood_snr),
                       tilt_range=tuple(a.ood_tilt_range), particles_per_class=tuple(a.ood_particles),
                       seed=a.ood_seed)
        sets.append(dataset_eval_set("ood", ood))
    if not sets:
        ap.error("nothing to evaluate: both --no-val and --no-ood")
    rows = evaluate_epochs(run, sets, a.out, beta=a.beta, device=a.device, progress=not a.quiet)
    out = Path(a.out) if a.out else run / "epoch_eval"
    print(f"{'epoch':>5}  {'set':<5} {'mode':<10} score")
    for r in rows:
        print(f"{r['epoch']:>5}  {r['set']:<5} {r['mode']:<10} {r['score']:.4f}")
    print(f"CSV {out / 'epoch_metrics.csv'}, plot {out / 'epoch_curves.png'}, TensorBoard {out / 'tensorboard'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

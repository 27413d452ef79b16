"""Ablation grid on fold 0: SE on/off, FPN fusion, loss (BCE / combined / fuzzy with a beta sweep), beta schedule.

Every run trains the bundle (``train.yaml``) on the same data and the same fold-0 split,
with the shared reduced budget and its own overrides; runs already in the results table
are skipped, so a killed grid resumes. Writes into ``--run``: ``results.csv``,
``results.md`` (one table per group, best run in bold), ``plots/<group>.png`` (training
loss and validation F-beta against epoch) and one bundle output folder per run under
``runs/`` (TensorBoard, checkpoints, one checkpoint per epoch). Examples:

    PYTHONPATH=. python scripts/ablation.py --run runs/ablation
    PYTHONPATH=. python scripts/ablation.py --run runs/ablation --groups loss --betas 1 2 4 --max-epochs 12
    PYTHONPATH=. python scripts/ablation.py --run runs/schedules --groups schedule
    PYTHONPATH=. python scripts/ablation.py --run runs/mine --grid my_grid.yaml   # {group: {label: {key: value}}}
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cryo3d.workflows.experiments.ablation import DEFAULT_GROUPS, GROUPS, ablation_grid, load_grid, run_ablation
from cryo3d.workflows.experiments.arguments import add_common_arguments, common_settings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="groups: " + "; ".join(
        f"{g}: {d}" for g, d in GROUPS.items()), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(ap, run_default="runs/ablation")
    ap.add_argument("--groups", nargs="+", default=list(DEFAULT_GROUPS), choices=sorted(GROUPS),
                    help="built-in groups to run (default: %(default)s)")
    ap.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.0, 4.0],
                    help="constant betas of the loss group (default: %(default)s)")
    ap.add_argument("--network", default="sefpn-tiny",
                    help="SE-FPN preset of the se and fusion groups (default: %(default)s)")
    ap.add_argument("--grid", help="a YAML/JSON grid {group: {label: {bundle key: value}}} instead of --groups")
    ap.add_argument("--only", nargs="+", help="run only these runs (group-label names) of the grid")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")

    c = common_settings(a)
    grid = load_grid(a.grid) if a.grid else ablation_grid(a.groups, a.betas, a.network, c["base"]["max_epochs"])
    if a.only:
        unknown = sorted(set(a.only) - {r.name for r in grid})
        if unknown:
            ap.error(f"--only: {unknown} are not in the grid {[r.name for r in grid]}")
        grid = [r for r in grid if r.name in set(a.only)]
    rows = run_ablation(a.run, grid, c["base"], c["dataset_dir"], k=c["k"], seed=c["seed"], synth=c["synth"],
                        epoch_checkpoints=c["epoch_checkpoints"], metric_beta=c["metric_beta"],
                        progress=c["progress"])
    print((Path(a.run) / "results.md").read_text())
    print(f"{len(rows)} runs; table {a.run}/results.csv, plots {a.run}/plots/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

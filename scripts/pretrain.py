"""Pretrain the picker on the domain-randomised simulator and export weights to fine-tune from.

Simulates ``--n-tomograms`` tomograms of the built-in ``default`` preset (randomised
shapes, sizes, imaging, distractors; never the held-out ``ood``/``crowded12`` families),
trains the bundle's default network on them for ``--budget`` minutes, and writes the best
validated network as a pretrained-weights file (:mod:`cryo3d.pretrained`). With
``--export`` pointing into ``cryo3d/weights/`` it becomes the shipped ``pretrained: auto``
weights for that network. The weights are made by this script alone: run it again to
remake them.

    python scripts/pretrain.py --budget 40 --export cryo3d/weights/unet-tiny_ds1.pt
    python -m monai.bundle run training ... --pretrained auto   # fine-tune on your data

The shipped ``unet-tiny_ds1.pt`` was made on one GPU (the simulator's tilt-series imaging is
in its data), where the data loader, not the network, sets the pace::

    python scripts/pretrain.py --n-tomograms 16 --budget 4.5 --export cryo3d/weights/unet-tiny_ds1.pt \
        --set num_workers=12 threads=4 max_epochs=100000 epoch_length=200 early_stop_patience=1000 write_report=false

The file's ``made_by`` records the command's settings, overrides included.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from cryo3d.inference import load_checkpoint_model
from cryo3d.particles import ParticleSet
from cryo3d.pretrained import export_weights
from cryo3d.workflows.run import run_training


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/pretrain", help="work folder (default: %(default)s)")
    ap.add_argument("--n-tomograms", type=int, default=10, help="simulated tomograms, one validates (default: 10)")
    ap.add_argument("--budget", type=float, default=40.0, help="training minutes (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=7, help="simulator seed, not the bundle's 0 (default: %(default)s)")
    ap.add_argument("--export", required=True, help="weights file to write (e.g. cryo3d/weights/unet-tiny_ds1.pt)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more bundle overrides (YAML values)")
    a = ap.parse_args()
    out = Path(a.out)
    overrides = {"dataset_dir": str(out / "data"), "output_dir": str(out / "run"), "n_synth_tomograms": a.n_tomograms,
                 "n_val": 1, "seed": a.seed, "time_budget": a.budget, "pretrained": "none"}
    for kv in a.set:
        k, sep, v = kv.partition("=")
        if not sep:
            raise SystemExit(f"--set: expected KEY=VALUE, got {kv!r}")
        overrides[k] = yaml.safe_load(v)
    res = run_training(overrides, logging_file=False)
    if res["best_checkpoint"] is None:
        raise SystemExit(f"pretraining wrote no best checkpoint in {out / 'run'}")
    net, meta = load_checkpoint_model(res["best_checkpoint"])
    dest = export_weights(net, meta["network"], ParticleSet.from_dict(meta["particles"]), meta["voxel_spacing"],
                          a.export, made_by=" ".join([f"scripts/pretrain.py --n-tomograms {a.n_tomograms} --budget {a.budget} --seed {a.seed}",
                                            *([f"--set {' '.join(a.set)}"] if a.set else [])]))
    print(f"pretrained: best validation {res['best']:.3f} after {len(res['history'])} validations -> {dest}")


if __name__ == "__main__":
    main()

"""Compare pick-selection rules on one trained checkpoint: thresholds chosen on validation, scored on held-out tomograms.

For each rule (how scores are taken, whether the annotation-density cap applies, how a
particle's class is decided) the validation tomograms' picks choose the per-class thresholds
(the bundle's own sweep), then the held-out tomograms are picked with them and scored with the
challenge's metric. Heatmaps are computed once per tomogram (logits, as ``predict`` stitches
them). Prints per rule: validation and test score, the worst class's picks / true ratio, the
share of picks that tie on their score, the test picks' expected calibration error and the
per-class F-beta.

    python scripts/compare_selection.py runs/bench_ood/crowded12/run/checkpoints/best.pt \\
        --val runs/bench_ood/crowded12/data --test runs/bench_ood/crowded12/test

``--val`` is a folder ``tomograms/`` + ``picks.csv``; its last tomogram (sorted) is the one the
bundle held out for validation unless ``--val-names`` says which; ``--test`` is a folder of
unseen tomograms and their ``picks.csv``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from cryo3d.coords import voxels_to_volume
from cryo3d.inference import load_checkpoint_model, pick_tomogram
from cryo3d.io.pick_formats import read_picks
from cryo3d.io.tomogram import read_tomogram
from cryo3d.metric_ignite import THRESHOLD_SMOOTHING, sweep_grid
from cryo3d.metrics import score_picks, sweep_thresholds
from cryo3d.particles import ParticleSet
from cryo3d.peak_selection import class_densities, heatmap_to_picks
from cryo3d.picks import Picks
from cryo3d.sliding_window import InferenceSettings
from cryo3d.temperature import temper

#: The rules compared: name -> (scores from logits, density cap factor, class decision, cross-class fraction,
#: score temperature fitted on validation).
RULES = {
    "before (float32 sigmoid, packing cap only)": (False, None, "independent", 0.0, False),
    "logit scores": (True, None, "independent", 0.0, False),
    "logit scores + 3x density cap": (True, 3.0, "independent", 0.0, False),
    "logit scores + 3x density cap + temperature": (True, 3.0, "independent", 0.0, True),
    "logit scores + 5x density cap": (True, 5.0, "independent", 0.0, False),
    "logit scores + 10x density cap": (True, 10.0, "independent", 0.0, False),
    "logit scores + 10x density cap + temperature": (True, 10.0, "independent", 0.0, True),
    "logit scores + 20x density cap": (True, 20.0, "independent", 0.0, False),
    "logit scores + strongest class at the peak": (True, None, "strongest", 0.0, False),
    "logit scores + cross-class 0.5 (smaller)": (True, None, "independent", 0.5, False),
}
BASE_THRESHOLD = 0.05
FIXED_GRID = np.unique(np.round(np.r_[np.arange(BASE_THRESHOLD, 0.95, 0.025), np.linspace(0.95, 0.995, 10)], 4))


def heatmaps(net, meta, paths, settings, cache: Path | None = None) -> dict[str, tuple[torch.Tensor, float]]:
    """Logit heatmap and full-resolution spacing of each tomogram (kept in ``cache`` when given: a
    heatmap is reused only for the same checkpoint file, size and mtime, and tomogram)."""
    particles = ParticleSet.from_dict(meta["particles"])
    out = {}
    for p in paths:
        if cache is not None:
            f = cache / f"{Path(p).stem}.npz"
            if f.exists():
                d = np.load(f)
                out[Path(p).stem] = (torch.from_numpy(d["hm"]), float(d["spacing"]))
                continue
        t = read_tomogram(p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, hm, spacing = pick_tomogram(net, t, particles, settings, device="cpu", return_heatmap=True)
        out[t.name] = (torch.from_numpy(hm), spacing)
        if cache is not None:
            np.savez(cache / f"{t.name}.npz", hm=hm, spacing=spacing)
    return out


def picks_of(hms, rule, thresholds, particles, meta, settings, temperature=None) -> Picks:
    logits, factor, decision, cross = rule[:4]
    rows = []
    for name, (hm, spacing) in hms.items():
        h = hm if logits else torch.sigmoid(hm)  # before: the float32 probability map
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows.append(heatmap_to_picks(h, thresholds, name, particles, spacing, int(meta["ds_factor"]),
                                         settings.min_distance_fraction, cross, logits=logits,
                                         class_density=meta.get("class_density") if factor else None,
                                         density_factor=factor, class_decision=decision, temperature=temperature))
    return Picks.concat(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--val", required=True, help="folder with tomograms/ and picks.csv (training data)")
    ap.add_argument("--val-names", nargs="*", default=None, help="validation tomogram names (default: the last)")
    ap.add_argument("--test", required=True, help="folder with tomograms/ and picks.csv (unseen)")
    ap.add_argument("--cache", default=None, help="folder to keep the heatmaps in between runs")
    ap.add_argument("--smooth", type=int, default=THRESHOLD_SMOOTHING,
                    help="thresholds each side over which the validation F-beta curve is averaged before "
                         "choosing, as validation does (0: the raw curve; default: %(default)s)")
    a = ap.parse_args()
    cache = None
    if a.cache:
        st = Path(a.checkpoint).stat()
        cache = Path(a.cache) / f"{Path(a.checkpoint).stem}-{st.st_size}-{st.st_mtime_ns}"
        cache.mkdir(parents=True, exist_ok=True)
    net, meta = load_checkpoint_model(a.checkpoint)
    particles = ParticleSet.from_dict(meta["particles"])
    if meta.get("class_density") is None:
        print("note: this checkpoint records no class_density (trained before the density cap); "
              "estimating it from --val's training tomograms")
        vt = sorted(Path(a.val, "tomograms").glob("*.mrc"))
        names = a.val_names or [vt[-1].stem]
        gt = read_picks(Path(a.val, "picks.csv"))
        train = [p for p in vt if p.stem not in names]
        vol = sum(voxels_to_volume(t.shape, t.voxel_spacing) for t in map(read_tomogram, train))
        sel = gt.select(np.isin(gt.tomo, [p.stem for p in train]))
        meta["class_density"] = class_densities(np.bincount(particles.indices(sel.cls), minlength=len(particles)), vol)
    settings = InferenceSettings(roi_size=tuple(meta["patch_size"]), ds_factor=int(meta["ds_factor"]),
                                 voxel_spacing=float(meta["voxel_spacing"]), thresholds=BASE_THRESHOLD)
    val_paths = sorted(Path(a.val, "tomograms").glob("*.mrc"))
    val_names = a.val_names or [val_paths[-1].stem]
    val_paths = [p for p in val_paths if p.stem in val_names]
    test_paths = sorted(Path(a.test, "tomograms").glob("*.mrc"))
    gt_val = read_picks(Path(a.val, "picks.csv"))
    gt_val = gt_val.select(np.isin(gt_val.tomo, val_names))
    gt_test = read_picks(Path(a.test, "picks.csv"))
    print(f"heatmaps of {len(val_paths)} validation and {len(test_paths)} test tomograms ...", flush=True)
    hv = heatmaps(net, meta, val_paths, settings, cache)
    ht = heatmaps(net, meta, test_paths, settings, cache)
    n_true = np.bincount(particles.indices(gt_test.cls), minlength=len(particles))
    print(f"\n{'rule':<45} {'val':>6} {'test':>6} {'max picks/true':>15} {'tied':>6} {'ECE':>6}")
    for name, rule in RULES.items():
        pv = picks_of(hv, rule, BASE_THRESHOLD, particles, meta, settings)
        sw = sweep_thresholds(pv, gt_val, particles, thresholds=sweep_grid(FIXED_GRID, pv.score),
                              tomograms=val_names, smooth=a.smooth)
        thr = np.array([sw["best_threshold"][n] for n in particles.names])
        temp = None
        if rule[4]:  # as validation does: thresholds and scores tempered by the temperature fitted there
            temp = np.array([sw["temperature"][n] for n in particles.names])
            thr = temper(thr, temp)
        pt = picks_of(ht, rule, thr, particles, meta, settings, temp)
        res = score_picks(pt, gt_test, particles)
        ece = sweep_thresholds(pt, gt_test, particles, thresholds=[0.0])["calibration"]["ece"]
        n_pred = np.bincount(particles.indices(pt.cls), minlength=len(particles))
        ratio = np.max(n_pred / np.maximum(n_true, 1))
        tied = 1.0 - len(np.unique(pt.score)) / max(len(pt), 1)
        print(f"{name:<45} {sw['score']:6.3f} {res.score:6.3f} {ratio:15.1f} {tied:6.1%} {ece:6.3f}   "
              + " ".join(f"{c.name[:8]}={c.fbeta:.2f}({n}/{t})" for c, n, t in zip(res.per_class, n_pred, n_true)),
              flush=True)


if __name__ == "__main__":
    main()

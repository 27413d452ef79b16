"""Score a trained checkpoint on synthetic tomograms it never saw (held-out test).

Simulates ``--n`` new tomograms with a seed the training data did not use (and, with
``--preset``/``--snr``/``--tilt-range``, other imaging conditions: out of distribution),
picks them with ``cryo3d.inference.predict`` using the thresholds stored in the
checkpoint (chosen on the validation tomograms, not on these), and prints the CZII
per-class table. Example, after the bundle's default training:

    python scripts/eval_heldout.py runs/picker/checkpoints/best.pt --out runs/heldout
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cryo3d.evaluation import evaluate_files
from cryo3d.inference import predict
from cryo3d.particles import ParticleSet
from cryo3d.synth import PRESETS, SynthConfig, synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--out", default="runs/heldout", help="folder for the test tomograms, picks and report")
    ap.add_argument("--n", type=int, default=2, help="test tomograms (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=1000, help="simulator seed; training used 0 (default: %(default)s)")
    ap.add_argument("--preset", default="demo", choices=sorted(PRESETS),
                    help="simulator preset (default: %(default)s, the bundle's built-in data); ood, crowded12 and "
                         "tilt hold out shapes training never saw")
    ap.add_argument("--shape", type=int, nargs=3, help="tomogram size (default: the preset's)")
    ap.add_argument("--snr", type=float, nargs="+", help="override the SNR (one value or LOW HIGH)")
    ap.add_argument("--tilt-range", type=float, nargs="+", help="override the tilt range (degrees)")
    ap.add_argument("--voxel-spacing", type=float, nargs="+", help="simulate at another voxel spacing")
    ap.add_argument("--tta", default="none", choices=["none", "flips", "flips_rot90"])
    a = ap.parse_args()

    over = {"shape": tuple(a.shape) if a.shape else None, "seed": a.seed}
    for k in ("snr", "tilt_range", "voxel_spacing"):
        v = getattr(a, k)
        if v is not None:
            over[k] = v[0] if len(v) == 1 else tuple(v)
    out = Path(a.out)
    data = out / "data"
    cfg = SynthConfig.preset(a.preset, **over)
    man = synthesize(data, a.n, cfg, prefix="test")
    t0 = time.perf_counter()
    tomos = sorted(str(p) for p in (data / "tomograms").glob("*.mrc"))
    predict(a.checkpoint, tomos, out / "pred", tta=a.tta)
    dt = time.perf_counter() - t0
    rep = evaluate_files(out / "pred" / "picks.csv", data / "picks.csv", sweep=True,
                         particles=ParticleSet.from_dict(man["particles"]), output_json=out / "evaluation.json")
    print(f"held-out test: {a.n} tomograms {tuple(cfg.shape)}, preset {a.preset}, seed {a.seed}; "
          f"inference {dt:.1f} s total")
    print(rep["text"])
    print(json.dumps({"score": rep["score"], "best_score": rep.get("best_score")}))


if __name__ == "__main__":
    main()

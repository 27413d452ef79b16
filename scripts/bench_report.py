"""Time ``cryo3d report`` on a CZII-sized tomogram: 184 x 630 x 630 voxels, 500 picks with ground truth.

Writes a random-noise MRC tomogram (10 A voxels) with bright particles, ground truth at
the particles and 500 predictions (most near a particle, some false, some particles
missed), then times the report end to end (read the MRC, render, write the folder) and
prints the figure. The issue's target: under 20 s on 2 CPU cores.

    python scripts/bench_report.py [--threads 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=[184, 630, 630], metavar=("Z", "Y", "X"))
    ap.add_argument("--picks", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for NumPy/BLAS (default: %(default)s)")
    ap.add_argument("--keep", help="write the report here (default: a temporary folder)")
    a = ap.parse_args()
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(a.threads)

    from cryo3d.io.pick_formats import read_picks
    from cryo3d.io.picks_csv import write_picks_csv
    from cryo3d.io.tomogram import read_tomogram, write_mrc
    from cryo3d.particles import CZII_PARTICLES
    from cryo3d.picks import Picks
    from cryo3d.report import write_report

    rng = np.random.default_rng(0)
    sp = 10.0
    Z, Y, X = a.shape
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        n_gt = int(a.picks * 0.9)
        names = np.array(CZII_PARTICLES.names, dtype=object)
        gcls = names[rng.integers(0, len(names), n_gt)]
        gxyz = rng.uniform([0, 0, 0], [(X - 1) * sp, (Y - 1) * sp, (Z - 1) * sp], size=(n_gt, 3))
        vol = rng.normal(size=(Z, Y, X)).astype(np.float32)
        gv = np.round(gxyz[:, ::-1] / sp).astype(int)  # bright 3x3x3 cores so the images hold something
        for dz in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    idx = np.clip(gv + [dz, dy, dx], 0, [Z - 1, Y - 1, X - 1])
                    vol[idx[:, 0], idx[:, 1], idx[:, 2]] += 3.0
        write_mrc(td / "bench.mrc", vol, sp)
        del vol
        hit = rng.random(n_gt) < 0.8
        n_fp = a.picks - int(hit.sum())
        pxyz = np.concatenate([gxyz[hit] + rng.normal(scale=15, size=(int(hit.sum()), 3)),
                               rng.uniform([0, 0, 0], [(X - 1) * sp, (Y - 1) * sp, (Z - 1) * sp], size=(n_fp, 3))])
        pcls = np.concatenate([gcls[hit], names[rng.integers(0, len(names), n_fp)]])
        write_picks_csv(td / "gt.csv", Picks(["bench"] * n_gt, gcls, gxyz))
        write_picks_csv(td / "pred.csv", Picks(["bench"] * a.picks, pcls, pxyz, rng.uniform(0.2, 1.0, a.picks)))
        out = Path(a.keep) if a.keep else td / "report"

        t0, c0 = time.perf_counter(), time.process_time()
        tomo = read_tomogram(td / "bench.mrc")
        write_report(out, [tomo], read_picks(td / "pred.csv"), CZII_PARTICLES, gt=read_picks(td / "gt.csv"))
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"report of a {Z} x {Y} x {X} tomogram with {a.picks} picks ({n_gt} true particles): "
          f"{dt:.1f} s wall, {cpu:.1f} s CPU, {a.threads} threads (target < 20 s on 2 CPU cores)")


if __name__ == "__main__":
    main()

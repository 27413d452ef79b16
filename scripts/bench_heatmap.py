"""Time rendering one [6, 32, 32, 32] heatmap from 50 keypoints (NumPy; CuPy on a GPU).

Goal (foundation issue): under 5 ms on one CPU core. Run with one thread to measure that:

    OMP_NUM_THREADS=1 python scripts/bench_heatmap.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cryo3d.array_module import cupy_available
from cryo3d.coords import ds_sigma
from cryo3d.heatmap import render_heatmap
from cryo3d.particles import CZII_PARTICLES


def bench(fn, repeats: int, sync=lambda: None) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keypoints", type=int, default=50)
    ap.add_argument("--size", type=int, default=32, help="heatmap edge in downsampled voxels")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--spacing", type=float, default=10.0, help="voxel spacing (Angstrom)")
    ap.add_argument("--ds", type=int, default=2)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, a.size, size=(a.keypoints, 3))
    lab = rng.integers(0, len(CZII_PARTICLES), size=a.keypoints)
    sig = ds_sigma(CZII_PARTICLES.angstrom_sigmas, a.spacing, a.ds)
    shape = (a.size,) * 3
    print(f"heatmap [{len(sig)}, {a.size}, {a.size}, {a.size}], {a.keypoints} keypoints, "
          f"ds_sigma {np.round(sig, 2).tolist()} (CZII at {a.spacing} A, ds {a.ds})")
    t = bench(lambda: render_heatmap(kp, lab, shape, sig), a.repeats)
    print(f"numpy: {t * 1e3:.3f} ms per heatmap (median of {a.repeats})")
    if cupy_available():
        import cupy as cp

        kpg, labg = cp.asarray(kp), cp.asarray(lab)
        tg = bench(lambda: render_heatmap(kpg, labg, shape, sig), a.repeats, cp.cuda.Device().synchronize)
        print(f"cupy:  {tg * 1e3:.3f} ms per heatmap (median of {a.repeats}); speed-up {t / tg:.1f}x")
    else:
        print("cupy:  not available (no CuPy or no CUDA GPU)")


if __name__ == "__main__":
    main()

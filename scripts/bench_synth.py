"""Time the simulator's tilt-series imaging of one large tomogram.

Images a 184 x 630 x 630 scene (a random sparse density of ~1,500 blobs, float32) through
:func:`cryo3d.synth.tilt_series.image_tilt_series`: projection at every tilt, per-projection
CTF, envelopes, exposure filter, shifts and noise, and the reconstruction, and prints the
wall time, the process CPU time (the machine may be shared) and the peak resident memory.
The scene's rendering is not timed (it is the same for both imaging models); the Fourier
model's time on the same volume is printed beside it.

Run: ``PYTHONPATH=. python scripts/bench_synth.py [--shape 184 630 630] [--max-tilt 60] [--step 3]
[--reconstruction wbp] [--threads 2]``
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from cryo3d.synth.imaging import image
from cryo3d.synth.tilt_imaging import TiltImaging, image_tilt_series


def _scene(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A sparse density: Gaussian blobs (radius 2-6 voxels) at random places."""
    vol = np.zeros(shape, np.float32)
    n = int(np.prod(shape) // 50_000)
    for c, r in zip(rng.uniform(8, np.asarray(shape) - 8, (n, 3)), rng.uniform(2, 6, n)):
        lo = np.maximum(np.floor(c - 3 * r).astype(int), 0)
        hi = np.minimum(np.ceil(c + 3 * r).astype(int) + 1, shape)
        g = [np.exp(-((np.arange(a, b) - cc) ** 2) / (2 * r * r)).astype(np.float32) for a, b, cc in zip(lo, hi, c)]
        vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
    return vol


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[184, 630, 630])
    ap.add_argument("--spacing", type=float, default=10.0)
    ap.add_argument("--max-tilt", type=float, default=60.0)
    ap.add_argument("--step", type=float, default=3.0)
    ap.add_argument("--reconstruction", choices=["wbp", "sirt"], default="wbp")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(args.shape)
    vol = _scene(shape, np.random.default_rng(0))
    p = TiltImaging(max_tilt=args.max_tilt, step=args.step, defocus_um=3.5, astigmatism_um=0.3,
                    defocus_spread=300.0, bfactor=150.0, misalignment_px=1.0, rotation_deg=0.3, ice=0.4,
                    reconstruction=args.reconstruction)
    (out, rec), wall, cpu = _timed(lambda: image_tilt_series(vol, np.random.default_rng(1), args.spacing, 0.5, p))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"tilt series {shape[0]} x {shape[1]} x {shape[2]}, +/-{args.max_tilt:g} deg step {args.step:g} "
          f"({rec['n_tilts']} tilts, padded x {rec['padded_width']}), {args.reconstruction}: "
          f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {peak:.0f} MiB ({args.threads} torch threads)")
    _, wall_f, cpu_f = _timed(lambda: image(vol, np.random.default_rng(1), args.spacing, 0.5, tilt_deg=args.max_tilt,
                                            defocus_um=3.5, bfactor=150.0))
    print(f"Fourier model, same volume: wall {wall_f:.1f} s, CPU {cpu_f:.1f} s")


if __name__ == "__main__":
    main()

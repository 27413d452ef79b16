"""Time keypoint-exact augmentation against the ways a user would do it with MONAI alone.

For a 96^3 patch with the six CZII classes (sigmas at 10 A voxels), ~30 keypoints and
1/2 downsampling, per sample, interleaved in one run so that machine load hits all alike:

(a) ours: ``RandKeypointAffined`` (warp the image once, move keypoints exactly) +
    ``RenderHeatmapd`` (analytic heatmap at 1/2);
(b) MONAI alone: ``RandAffined`` (prob 1, the same random affine) on the image and a
    precomputed full-resolution 6-channel heatmap together, then ``avg_pool3d`` by 2
    (rendering the full-resolution heatmap itself is not timed: it is stored);
(c) a precomputed 1/2 heatmap and the image shifted with ``scipy.ndimage.shift``
    (translation-only augmentation).

It prints per-sample times (median and min), the ratios, and the peak-position error of
each against the exact transformed keypoints (max / mean over keypoints, downsampled
voxels; sub-voxel peaks by a quadratic fit to the log-heatmap around the local maximum).
With CuPy and a CUDA device it also times (a) with the image as a CUDA tensor.

Run: ``PYTHONPATH=. python scripts/bench_augment.py [--samples 20] [--threads 1 2]``
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as Fnn
from monai.transforms import RandAffined
from scipy.ndimage import shift as nd_shift

from cryo3d import coords
from cryo3d.array_module import cupy_available
from cryo3d.heatmap import render_heatmap
from cryo3d.particles import CZII_PARTICLES
from cryo3d_transforms import RandKeypointAffined, RenderHeatmapd
from cryo3d_transforms.affine import affine_point_map

SHAPE = (96, 96, 96)
F = 2
SPACING = 10.0
ROTATE = (math.pi / 6, math.pi / 6, math.pi / 6)
SCALE = (0.1, 0.1, 0.1)
TRANSLATE = (5.0, 5.0, 5.0)


def make_sample(n_keypoints: int, seed: int = 0) -> dict:
    """A noise patch with well separated keypoints (peaks must not merge for the error)."""
    rng = np.random.default_rng(seed)
    pts: list[np.ndarray] = []
    while len(pts) < n_keypoints:
        p = rng.uniform(16, 80, 3)
        if all(np.linalg.norm(p - q) > 13 for q in pts):
            pts.append(p)
    sig = coords.ds_sigma(CZII_PARTICLES.angstrom_sigmas, SPACING, F)
    return {
        "image": rng.standard_normal((1,) + SHAPE).astype(np.float32),
        "keypoints": np.array(pts),
        "labels": np.arange(n_keypoints) % len(sig),
        "ds_sigma": sig,
        "ds_factor": F,
    }


def quadratic_peak(vol: np.ndarray, near: np.ndarray, search: int = 2) -> np.ndarray | None:
    """Sub-voxel maximum near ``near``: local argmax, then a 3D quadratic fit to log values."""
    c = np.rint(near).astype(int)
    if np.any(c - search < 1) or np.any(c + search + 2 > np.array(vol.shape)):
        return None
    win = vol[c[0] - search : c[0] + search + 1, c[1] - search : c[1] + search + 1, c[2] - search : c[2] + search + 1]
    m = np.array(np.unravel_index(np.argmax(win), win.shape)) + c - search
    off = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    vals = np.log(np.maximum(vol[tuple((m + off).T)].astype(np.float64), 1e-12))
    z, y, x = off.T.astype(float)
    X = np.stack([np.ones_like(z), z, y, x, z * z, y * y, x * x, z * y, z * x, y * x], 1)
    a = np.linalg.lstsq(X, vals, rcond=None)[0]
    H = np.array([[2 * a[4], a[7], a[8]], [a[7], 2 * a[5], a[9]], [a[8], a[9], 2 * a[6]]])
    try:
        return m + np.linalg.solve(H, -a[1:4])
    except np.linalg.LinAlgError:
        return None


def peak_errors(hm: np.ndarray, points_ds: np.ndarray, labels: np.ndarray) -> list[float]:
    errs = []
    for p, c in zip(points_ds, labels):
        q = quadratic_peak(hm[c], p)
        if q is not None:
            errs.append(float(np.linalg.norm(q - p)))
    return errs


def timed(fn, sync=None):
    t0 = time.perf_counter()
    out = fn()
    if sync is not None:
        sync()
    return out, time.perf_counter() - t0


def run(samples: int, threads: int, n_keypoints: int) -> dict:
    torch.set_num_threads(threads)
    d = make_sample(n_keypoints)
    full_hm = render_heatmap(d["keypoints"], d["labels"], SHAPE, d["ds_sigma"] * F)  # stored full-res target
    ds_hm = render_heatmap(coords.voxel_to_ds(d["keypoints"], F), d["labels"], coords.ds_shape(SHAPE, F), d["ds_sigma"])

    ours = RandKeypointAffined(rotate_range=ROTATE, scale_range=SCALE, translate_range=TRANSLATE, margin_sigmas=None)
    ours.set_random_state(0)
    render = RenderHeatmapd()
    monai = RandAffined(
        keys=["image", "heatmap"], prob=1.0, rotate_range=ROTATE, scale_range=SCALE, translate_range=TRANSLATE,
        mode="bilinear", padding_mode="zeros",
    )
    monai.set_random_state(0)
    rng = np.random.RandomState(0)
    td = {"image": torch.from_numpy(d["image"]), "heatmap": torch.from_numpy(full_hm)}

    times = {"a": [], "b": [], "c": []}
    errs = {"a": [], "b": [], "c": []}
    for i in range(samples + 1):  # the first round warms up
        # (a) ours
        out, ta = timed(lambda: render(ours(d)))
        L, b = affine_point_map(ours.affine, SHAPE)
        errs["a"] += peak_errors(out["heatmap"], coords.voxel_to_ds(d["keypoints"] @ L.T + b, F), d["labels"])
        # (b) MONAI RandAffined on image + full-res heatmap, then average pooling by F
        def monai_path():
            o = monai(td)
            return o, Fnn.avg_pool3d(o["heatmap"][None], F)[0]

        (o, hm_b), tb = timed(monai_path)
        A = np.asarray(monai.rand_affine.rand_affine_grid.get_transformation_matrix(), np.float64)
        L, b = affine_point_map(A, SHAPE)
        errs["b"] += peak_errors(np.asarray(hm_b), coords.voxel_to_ds(d["keypoints"] @ L.T + b, F), d["labels"])
        # (c) translation only: shift the image and the precomputed downsampled heatmap
        t = rng.uniform(-TRANSLATE[0], TRANSLATE[0], 3)

        def shift_path():  # 3D shifts per channel (a 4D shift would interpolate over channels too)
            img = np.stack([nd_shift(ch, t, order=1, mode="constant") for ch in d["image"]])
            return img, np.stack([nd_shift(ch, t / F, order=1, mode="constant") for ch in ds_hm])

        (_, hm_c), tc = timed(shift_path)
        errs["c"] += peak_errors(hm_c, coords.voxel_to_ds(d["keypoints"] + t, F), d["labels"])
        if i:
            times["a"].append(ta)
            times["b"].append(tb)
            times["c"].append(tc)

    res = {"threads": threads, "times": times, "errs": errs}
    if cupy_available() and torch.cuda.is_available():
        res["gpu"] = run_gpu(d, samples)
    return res


def run_gpu(d: dict, samples: int) -> dict:
    """(a) with the image on the GPU (CuPy via DLPack), and (b) with MONAI on the GPU."""
    ours = RandKeypointAffined(rotate_range=ROTATE, scale_range=SCALE, translate_range=TRANSLATE, margin_sigmas=None)
    ours.set_random_state(0)
    render = RenderHeatmapd()
    gd = {**d, "image": torch.from_numpy(d["image"]).cuda()}
    full_hm = render_heatmap(d["keypoints"], d["labels"], SHAPE, d["ds_sigma"] * F)
    monai = RandAffined(
        keys=["image", "heatmap"], prob=1.0, rotate_range=ROTATE, scale_range=SCALE, translate_range=TRANSLATE,
        mode="bilinear", padding_mode="zeros", device=torch.device("cuda"),
    )
    td = {"image": gd["image"], "heatmap": torch.from_numpy(full_hm).cuda()}
    sync = torch.cuda.synchronize
    ta, tb = [], []
    for i in range(samples + 3):
        _, t1 = timed(lambda: render(ours(gd)), sync)
        _, t2 = timed(lambda: Fnn.avg_pool3d(monai(td)["heatmap"][None], F), sync)
        if i >= 3:
            ta.append(t1)
            tb.append(t2)
    return {"a": ta, "b": tb, "device": torch.cuda.get_device_name()}


def ms(x) -> str:
    return f"{1e3 * np.median(x):7.1f} ms (min {1e3 * np.min(x):6.1f})"


def report(res: dict) -> None:
    t, e = res["times"], res["errs"]
    print(f"\n== CPU, {res['threads']} thread(s), {len(t['a'])} samples, 96^3 patch, 6 classes, 1/2 heatmap")
    names = {
        "a": "(a) ours: warp image + move keypoints + render",
        "b": "(b) MONAI RandAffined image + 6-ch full-res heatmap, avg-pool",
        "c": "(c) scipy.ndimage.shift image + precomputed 1/2 heatmap",
    }
    for k in "abc":
        err = np.asarray(e[k]) if e[k] else np.array([np.nan])
        print(f"{names[k]:66s} {ms(t[k])}  peak error max {err.max():.4f} mean {err.mean():.4f} ds vox (n={len(e[k])})")
    print(f"ratio (b)/(a): {np.median(t['b']) / np.median(t['a']):.2f}x   (c)/(a): {np.median(t['c']) / np.median(t['a']):.2f}x")
    if "gpu" in res:
        g = res["gpu"]
        print(f"== GPU ({g['device']}): (a) {ms(g['a'])}   (b) MONAI on GPU {ms(g['b'])}")
        speedup = np.median(t['a']) / np.median(g['a'])
        print(f"CPU (a) / GPU (a): {speedup:.1f}x"
              + (f"   goal >= 50x the 1-thread CPU path: {'met' if speedup >= 50 else 'NOT met'}"
                 if res["threads"] == 1 else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--keypoints", type=int, default=30)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    args = ap.parse_args()
    for th in dict.fromkeys(args.threads):
        report(run(args.samples, th, args.keypoints))


if __name__ == "__main__":
    main()

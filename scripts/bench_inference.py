"""Time whole-tomogram inference: normalisation, sliding window (+ TTA), peak extraction.

Goals: under 3 s per model on an H100-class GPU (10 A model, 64^3 windows, ds 2, peaks included),
under 3 minutes on a 2-core CPU, for a
184 x 630 x 630 tomogram (the CZII size at 10 A). The tomogram comes from the built-in
simulator (``cryo3d.synth.simulate_tomogram``, about 20 s for that size, not timed) or is
random noise (``--volume random``). The model is a checkpoint (``--checkpoint``) or an
untrained network of a preset (``--network``, default ``unet-small``).

The timed path is the library's own: ``robust_stats`` + ``normalize``, then
``DownsampledSlidingWindowInferer`` (MONAI ``sliding_window_inference``), then
``heatmap_to_picks`` (find, select, to Angstrom), as in ``cryo3d.inference.pick_tomogram``. An
untrained network's heatmap is about its prior (0.01) everywhere, so it has no peaks above
the threshold; the peak step is therefore also timed on a heatmap rendered from the
simulator's true particles (what a good model gives), reported on its own line.

Options that change only how the network runs (not the library), to measure what would
help: ``--inference-mode`` (instead of ``no_grad``), ``--channels-last``, ``--bf16-cpu``
(CPU autocast to bfloat16; fast only where oneDNN has AMX / AVX512-BF16), ``--compile``
(``torch.compile``; its compile time is reported apart). ``--shape`` runs a smaller volume
and projects the full-size time from the measured windows/s.

Wall time depends on what else the machine runs: process CPU seconds are printed next to
wall seconds (on 2 free cores, wall is about CPU / 2 for the network step).

Examples::

    PYTHONPATH=. python scripts/bench_inference.py --device cpu --threads 2
    PYTHONPATH=. python scripts/bench_inference.py --device cuda --tta flips
    PYTHONPATH=. python scripts/bench_inference.py --overlap 0 --bf16-cpu --shape 64 256 256
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cryo3d import coords
from cryo3d.sliding_window import (
    _padded_shape,
    _tta_ops,
    auto_sw_batch_size,
    DownsampledSlidingWindowInferer,
    InferenceSettings,
    parse_sw_batch_size,
    stitch_bytes,
    stitch_fits,
    use_channels_last,
)
from cryo3d.networks import build_network, count_parameters
from cryo3d.normalization import normalize, robust_stats
from cryo3d.particles import CZII_PARTICLES
from cryo3d.peak_selection import heatmap_to_picks
from cryo3d.resample import to_spacing

FULL_SHAPE = (184, 630, 630)


class _Timer:
    """Wall and process-CPU seconds of a block; synchronises CUDA before reading the clocks."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.wall = self.cpu = 0.0

    def __enter__(self) -> "_Timer":
        if self.cuda:
            torch.cuda.synchronize()
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


class PoolNet(nn.Module):
    """Parameter-free stand-in (``--network pool``): average pool by ``f`` to ``C`` channels.

    Times the sliding-window machinery alone (padding, window copies, blending, stitching).
    """

    def __init__(self, f: int, channels: int) -> None:
        super().__init__()
        self.f, self.channels = f, channels
        self.dummy = nn.Parameter(torch.zeros(()), requires_grad=False)  # gives the inferer a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool3d(x, self.f).expand(-1, self.channels, -1, -1, -1)


class BenchWrapper(nn.Module):
    """Runs ``net`` the way the options ask and counts the windows it sees.

    ``channels_last``: input in ``torch.channels_last_3d`` (the network's weights converted
    by the caller). ``bf16_cpu``: CPU autocast to bfloat16, logits back to float32.
    """

    def __init__(self, net: nn.Module, channels_last: bool = False, bf16_cpu: bool = False) -> None:
        super().__init__()
        self.net = net
        self.channels_last = channels_last
        self.bf16_cpu = bf16_cpu
        self.windows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.windows += int(x.shape[0])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16_cpu and x.device.type == "cpu" \
            else contextlib.nullcontext()
        with ctx:
            return self.net(x).float()


def count_windows(shape: tuple[int, ...], settings: InferenceSettings) -> int:
    """Windows that ``DownsampledSlidingWindowInferer`` runs for ``shape`` (all TTA passes)."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    padded = _padded_shape(shape, settings.roi_size, settings.ds_factor)
    n = len(dense_patch_slices(padded, settings.roi_size,
                               _get_scan_interval(padded, settings.roi_size, 3, (settings.overlap,) * 3)))
    return n * len(_tta_ops(settings.tta))


def make_volume(kind: str, shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, float, Any]:
    """The benchmark tomogram ``[z, y, x]``, its voxel spacing and its true picks (or None)."""
    if kind == "synth":
        from cryo3d.synth import SynthConfig, simulate_tomogram

        vol, picks, params = simulate_tomogram(SynthConfig(shape=shape, seed=seed))
        return vol, float(params["voxel_spacing"]), picks
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape, dtype=np.float32) * 2.0 + 5.0, 10.0, None


def load_model(a: argparse.Namespace) -> tuple[nn.Module, dict]:
    """Network (eval mode) and its settings (patch size, ds_factor, spacing when known)."""
    if a.checkpoint:
        from cryo3d.inference import load_checkpoint_model

        net, meta = load_checkpoint_model(a.checkpoint)
        return net.eval(), {"roi": tuple(meta["patch_size"]), "ds_factor": int(meta["ds_factor"]),
                            "name": a.checkpoint, "voxel_spacing": meta.get("voxel_spacing"),
                            "thresholds": meta.get("thresholds")}
    torch.manual_seed(a.seed)
    if a.network == "pool":
        return PoolNet(a.ds_factor, len(CZII_PARTICLES)), {
            "roi": (a.roi,) * 3, "ds_factor": a.ds_factor, "name": "pool (no network: sliding-window overhead)"}
    net = build_network(a.network, out_channels=len(CZII_PARTICLES), ds_factor=a.ds_factor)
    return net.eval(), {"roi": (a.roi,) * 3, "ds_factor": a.ds_factor, "name": f"{a.network} (untrained)",
                        "voxel_spacing": a.voxel_spacing}


def time_peaks(hm: np.ndarray | torch.Tensor, thr: float, settings: InferenceSettings, name: str, spacing: float,
               cuda: bool, logits: bool = True) -> tuple[_Timer, int]:
    with _Timer(cuda) as t:
        picks = heatmap_to_picks(hm, thr, name, CZII_PARTICLES, spacing, settings.ds_factor,
                                 settings.min_distance_fraction, settings.cross_class_fraction, where=name,
                                 logits=logits)  # the inferer stitches logits
    return t, len(picks)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="cryo3d checkpoint (default: an untrained --network)")
    ap.add_argument("--network", default="unet-small",
                    help="preset when no checkpoint (default unet-small); 'pool' = no network, to time the "
                         "sliding-window overhead alone")
    ap.add_argument("--ds-factor", type=int, default=2, help="output stride of the untrained network")
    ap.add_argument("--roi", type=int, default=64, help="window edge (voxels) without a checkpoint")
    ap.add_argument("--voxel-spacing", type=float,
                    help="the untrained network's voxel spacing (Angstrom): the tomogram is resampled to it, as "
                         "predict does for a checkpoint (e.g. 20 for the CPU default model: --network unet-tiny "
                         "--roi 32 --ds-factor 1 --voxel-spacing 20)")
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--blend", default="gaussian", choices=["gaussian", "constant"])
    ap.add_argument("--sw-batch-size", type=parse_sw_batch_size, default="auto",
                    help="windows per forward pass; auto (default): 4 on the CPU, as many as fill the GPU")
    ap.add_argument("--tta", default="none", choices=["none", "flips", "flips_rot90"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (torch.set_num_threads)")
    ap.add_argument("--shape", type=int, nargs=3, default=list(FULL_SHAPE), metavar=("Z", "Y", "X"))
    ap.add_argument("--volume", default="synth", choices=["synth", "random"])
    ap.add_argument("--threshold", type=float, default=0.3, help="peak threshold")
    ap.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    ap.add_argument("--inference-mode", action="store_true", help="torch.inference_mode around inference")
    ap.add_argument("--channels-last", action="store_true",
                    help="channels_last_3d weights and windows (the default on CUDA anyway)")
    ap.add_argument("--bf16-cpu", action="store_true", help="bfloat16 autocast on the CPU")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network")
    ap.add_argument("--stitch-on-host", action="store_true",
                    help="stitched heatmap and peaks in host memory even on a GPU (default: on the GPU when "
                         "they fit, as predict does); on the CPU the same as without")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the results to this JSON file")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here")
    device = torch.device(a.device)
    shape = tuple(a.shape)
    input_shape = shape  # the tomogram as given (before any resampling to the model's spacing)

    t0 = time.perf_counter()
    data, spacing, truth = make_volume(a.volume, shape, a.seed)
    t_make = time.perf_counter() - t0
    net, info = load_model(a)
    f = info["ds_factor"]
    settings = InferenceSettings(roi_size=info["roi"], ds_factor=f, overlap=a.overlap, blend=a.blend,
                                 sw_batch_size=a.sw_batch_size, tta=a.tta, thresholds=a.threshold,
                                 amp=not a.no_amp, channels_last=True if a.channels_last else None)
    a.channels_last = use_channels_last(settings, device)
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    net = net.to(device)
    model: nn.Module = BenchWrapper(net, a.channels_last, a.bf16_cpu)
    t_compile = 0.0
    if a.compile:
        model = BenchWrapper(torch.compile(net), a.channels_last, a.bf16_cpu)
    stitch_on_device = not a.stitch_on_host and stitch_fits(shape, len(CZII_PARTICLES), settings, device)
    a.stitch_on_device = stitch_on_device
    if settings.sw_batch_size == "auto":  # as the inferer resolves it (windows fill the GPU; 4 on the CPU)
        reserve = stitch_bytes(shape, len(CZII_PARTICLES), settings) if stitch_on_device else 0
        with torch.no_grad():
            settings.sw_batch_size = auto_sw_batch_size(net, settings, device, reserve_bytes=reserve)
    a.sw_batch_size = settings.sw_batch_size
    n_windows = count_windows(shape, settings)
    n_full = count_windows(FULL_SHAPE, settings)
    grad_ctx: Callable[[], Any] = torch.inference_mode if a.inference_mode else torch.no_grad

    dev_name = torch.cuda.get_device_name(0) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {dev_name}; torch {torch.__version__}")
    print(f"model: {info['name']}, {count_parameters(net) / 1e6:.2f} M parameters, ds_factor {f}")
    print(f"tomogram: {a.volume} {shape[0]} x {shape[1]} x {shape[2]} at {spacing:g} A "
          f"(made in {t_make:.1f} s, not timed)")
    print(f"windows: roi {settings.roi_size}, overlap {a.overlap}, blend {a.blend}, sw_batch_size "
          f"{a.sw_batch_size}, tta {a.tta}: {n_windows} windows"
          + (f" ({n_full} at {FULL_SHAPE})" if shape != FULL_SHAPE else ""))
    opts = [o for o in ("inference_mode", "channels_last", "bf16_cpu", "compile", "stitch_on_device")
            if getattr(a, o)]
    if cuda and not a.no_amp:
        opts.append("bf16 autocast (cuda)")
    print(f"options: {', '.join(opts) or 'none'}")

    # warm-up (oneDNN / cuDNN algorithm choice, torch.compile): a full and the last partial batch
    per_pass = n_windows // len(_tta_ops(a.tta))
    sizes = [min(a.sw_batch_size, per_pass)] + ([per_pass % a.sw_batch_size] if per_pass % a.sw_batch_size else [])
    with _Timer(cuda) as tw, grad_ctx():
        for b in sizes:
            model(torch.zeros((b, 1, *settings.roi_size), device=device))
    if a.compile:
        t_compile = tw.wall
    model.windows = 0

    target = info.get("voxel_spacing")  # a checkpoint trained at another spacing: resample, as predict does
    with _Timer(cuda) as t_norm:
        data, spacing = to_spacing(data, spacing, target)
        if tuple(data.shape) != shape:
            shape = tuple(data.shape)
            n_windows = count_windows(shape, settings)
        med, sc = robust_stats(data)
        vol = normalize(data, med, sc, settings.clip)
    if target is not None:
        print(f"resampled to the checkpoint's {target:g} A: {shape[0]} x {shape[1]} x {shape[2]}, {n_windows} windows")
    out_device = device if stitch_on_device else torch.device("cpu")
    inferer = DownsampledSlidingWindowInferer(settings, sw_device=device, device=out_device)
    with _Timer(cuda) as t_sw, grad_ctx():
        hm = inferer(torch.from_numpy(vol)[None, None], model)[0]  # the upload is timed, as in predict
        if not stitch_on_device:
            hm = hm.numpy()
    assert tuple(hm.shape) == (len(CZII_PARTICLES), *coords.ds_shape(shape, f)), hm.shape
    t_pk, n_picks = time_peaks(hm, a.threshold, settings, "bench", spacing, cuda)

    total = t_norm.wall + t_sw.wall + t_pk.wall
    wps = model.windows / t_sw.wall
    print(f"warm-up batches:    {tw.wall:8.2f} s" + (" (includes torch.compile)" if a.compile else ""))
    print(f"resample+normalise: {t_norm.wall:8.2f} s wall {t_norm.cpu:8.2f} s CPU")
    print(f"sliding window:     {t_sw.wall:8.2f} s wall {t_sw.cpu:8.2f} s CPU  "
          f"({model.windows} windows, {wps:.2f} windows/s, {t_sw.wall / model.windows:.3f} s/window, "
          f"{t_sw.cpu / model.windows:.3f} CPU s/window)")
    print(f"peak extraction:    {t_pk.wall:8.2f} s wall {t_pk.cpu:8.2f} s CPU  ({n_picks} picks at threshold "
          f"{a.threshold})")
    result = {
        "device": dev_name, "model": info["name"], "shape": shape, "volume": a.volume,
        "roi": settings.roi_size, "overlap": a.overlap, "sw_batch_size": a.sw_batch_size, "tta": a.tta,
        "options": opts, "windows": model.windows, "normalise_s": t_norm.wall, "sliding_window_s": t_sw.wall,
        "sliding_window_cpu_s": t_sw.cpu, "peaks_s": t_pk.wall, "total_s": total, "windows_per_s": wps,
        "compile_s": t_compile, "picks": n_picks,
    }

    if truth is not None and len(truth):
        from cryo3d.heatmap import render_heatmap

        kp = coords.angstrom_to_ds(truth.xyz, spacing, f)
        lab = CZII_PARTICLES.indices(truth.cls)
        sig = coords.ds_sigma(CZII_PARTICLES.angstrom_sigmas, spacing, f)
        gt = render_heatmap(kp, lab, tuple(hm.shape[1:]), sig)
        if stitch_on_device:
            gt = torch.from_numpy(gt).to(device)
        t_gt, n_gt = time_peaks(gt, a.threshold, settings, "bench", spacing, cuda, logits=False)  # probabilities
        print(f"  (peaks on a heatmap of the {len(truth)} true particles: {t_gt.wall:.2f} s, {n_gt} picks)")
        result["peaks_true_heatmap_s"] = t_gt.wall
    print(f"total:              {total:8.2f} s")
    goal = 3.0 if cuda else 180.0
    if input_shape != FULL_SHAPE:
        scale = math.prod(FULL_SHAPE) / math.prod(input_shape)
        proj = (t_norm.wall + model.windows / wps + t_pk.wall) * scale
        print(f"projected at {FULL_SHAPE}: {proj:8.1f} s (windows/s and per-voxel times scaled)")
        result["projected_full_s"] = proj
        total = proj
    print(f"goal {'GPU' if cuda else 'CPU'} < {goal:g} s: {'met' if total < goal else 'NOT met'}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(result, fh, indent=2, default=list)
    return result


if __name__ == "__main__":
    main()

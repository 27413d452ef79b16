#!/usr/bin/env python
"""Benchmark the heatmap networks: parameters, forward+backward time and peak memory per batch.

For every variant and patch size, one training step (forward, combined loss, backward) is
timed ``--repeats`` times after ``--warmup`` untimed steps; the table shows the median.

* CPU: each measurement runs in a fresh spawned process so that the peak resident set
  size (``resource.getrusage``'s ``ru_maxrss``) belongs to that model alone; the table
  gives the peak RSS minus the RSS just before the first step (activations, gradients,
  workspace), i.e. what one training step adds on top of the model and the input.
* GPU: AMP bfloat16 autocast and ``channels_last_3d`` (both switchable), memory from
  ``torch.cuda.max_memory_allocated`` minus the allocation before the step.

Examples
--------
::

    PYTHONPATH=. python scripts/bench_models.py --sizes 64 96 --batch-size 1 --repeats 1
    PYTHONPATH=. python scripts/bench_models.py --device cuda --sizes 96 128 --batch-size 4 --repeats 5
    PYTHONPATH=. python scripts/bench_models.py --variants unet sefpn-pc unet-base --preset small
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

DEFAULT_VARIANTS = ["unet", "sefpn-parallel", "sefpn-cascade", "sefpn-pc", "sefpn-noSE"]


def variant_config(variant: str, preset: str) -> dict[str, Any]:
    """Network config for a bench variant name (or any preset / family name of cryo3d.networks)."""
    from cryo3d.networks import PRESETS

    if variant in PRESETS:
        return {"name": variant}
    if variant == "unet":
        return {"name": f"unet-{preset}"}
    if variant == "sefpn-noSE":
        return {"name": f"sefpn-{preset}", "fusion": "pc", "se": False}
    if variant.startswith("sefpn-") and variant[6:] in ("parallel", "cascade", "pc"):
        return {"name": f"sefpn-{preset}", "fusion": variant[6:]}
    if variant == "sefpn":
        return {"name": f"sefpn-{preset}"}
    raise SystemExit(f"unknown variant {variant!r}: use {DEFAULT_VARIANTS} or a preset from {sorted(PRESETS)}")


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * 1024


def measure(cfg: dict[str, Any], size: int, args: argparse.Namespace) -> dict[str, Any]:
    """One (variant, size) measurement in this process."""
    import torch

    from cryo3d.losses import build_loss
    from cryo3d.networks import build_network, count_parameters

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build_network(cfg, in_channels=1, out_channels=args.out_channels, ds_factor=args.ds_factor).to(device)
    model.train()
    params = count_parameters(model)
    x = torch.randn(args.batch_size, 1, size, size, size, device=device)
    out = size // args.ds_factor
    target = torch.rand(args.batch_size, args.out_channels, out, out, out, device=device) ** 8
    loss_fn = build_loss("combined", beta=2.0)
    gpu = device.type == "cuda"
    use_amp = gpu and args.amp
    if gpu and args.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(x)
        loss_fn(logits.float(), target).backward()

    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _current_rss_bytes()
    times = []
    for i in range(args.warmup + args.repeats):
        t0 = time.perf_counter()
        step()
        if gpu:
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() if gpu else _peak_rss_bytes()) - base
    return {"params": params, "time_s": statistics.median(times), "peak_mib": max(peak, 0) / 2**20}


def _child(conn, cfg, size, args) -> None:  # pragma: no cover - runs in a spawned process
    try:
        conn.send(measure(cfg, size, args))
    except Exception as exc:  # report, do not hang the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def measure_isolated(cfg: dict[str, Any], size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run :func:`measure` in a fresh spawned process (clean peak RSS)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, cfg, size, args))
    proc.start()
    child.close()
    result = parent.recv() if parent.poll(timeout=args.timeout) else {"error": f"no result in {args.timeout} s"}
    proc.join(timeout=10)
    if proc.is_alive():
        proc.kill()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS,
                   help=f"variants ({', '.join(DEFAULT_VARIANTS)}) or preset names (unet-base, sefpn-large, ...)")
    p.add_argument("--preset", default="small", help="size preset for the plain variant names: tiny, small, base, large")
    p.add_argument("--sizes", nargs="+", type=int, default=[96, 128], help="cubic patch edge lengths (voxels)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (cuda when available)")
    p.add_argument("--ds-factor", type=int, default=2)
    p.add_argument("--out-channels", type=int, default=6)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="GPU: no bfloat16 autocast")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="GPU: keep NCDHW layout")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per CPU measurement")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    on_gpu = args.device.startswith("cuda")
    if on_gpu:
        desc = f"{torch.cuda.get_device_name(args.device)}, AMP bf16={args.amp}, channels_last_3d={args.channels_last}"
    else:
        desc = f"CPU, {args.threads or torch.get_num_threads()} threads, fp32"
    print(f"device: {desc}; batch {args.batch_size}; ds_factor {args.ds_factor}; {args.out_channels} classes; "
          f"median of {args.repeats} step(s) after {args.warmup} warm-up\n")
    mem_col = "peak CUDA alloc (MiB)" if on_gpu else "peak RSS added (MiB)"
    print(f"| variant | config | params | size | fwd+bwd (s) | {mem_col} |")
    print("|---|---|---:|---:|---:|---:|")
    for variant in args.variants:
        cfg = variant_config(variant, args.preset)
        cfg_txt = ", ".join(f"{k}={v}" for k, v in cfg.items())
        for size in args.sizes:
            res = measure(cfg, size, args) if on_gpu else measure_isolated(cfg, size, args)
            if "error" in res:
                print(f"| {variant} | {cfg_txt} | - | {size}^3 | error: {res['error']} | - |", flush=True)
                continue
            print(f"| {variant} | {cfg_txt} | {res['params']:,} | {size}^3 | {res['time_s']:.3f} | {res['peak_mib']:.0f} |",
                  flush=True)
            if on_gpu:
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

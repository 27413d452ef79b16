"""Training iterations per second of the bundle's default step on the CPU, and what each speed-up gives.

One iteration is what the bundle's ``SupervisedTrainer`` does per batch: forward, the
combined loss (BCE + fuzzy F-beta), backward, Adam step; the network, loss and batch are the
bundle's defaults (``unet-tiny``, ds 1, batch 8 of 32^3, 6 classes). Variants, each timed on
the same synthetic batches after warm-up steps:

* ``fp32``: as the bundle trains today;
* ``bf16``: ``torch.autocast("cpu", bfloat16)`` around forward and loss;
* ``channels_last``: weights and batches in ``torch.channels_last_3d``;
* ``compile``: ``torch.compile`` (inductor; compile time reported apart);
* ``threads 1``: one torch thread instead of ``--threads``.

``--store DIR`` also times the data pipeline: batches from a patch store through the default
training transforms (what one worker delivers per second), to compare with the step.

    python scripts/bench_train_step.py                      # all variants
    python scripts/bench_train_step.py --variants fp32 bf16 --steps 30
"""

from __future__ import annotations

import argparse
import time

import torch

from cryo3d.losses import make_loss
from cryo3d.networks import build_network

VARIANTS = ("fp32", "bf16", "channels_last", "compile", "threads1")


def make_batches(n: int, batch: int, patch: int, classes: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(batch, 1, patch, patch, patch, generator=g)
        y = (torch.rand(batch, classes, patch, patch, patch, generator=g) ** 8).clamp(0, 1)
        out.append((x, y))
    return out


def time_variant(variant: str, batches, steps: int, warmup: int, threads: int, classes: int) -> tuple[float, float, float]:
    """(iterations per second, CPU seconds per iteration, seconds of compilation) of one variant.

    The CPU seconds (this process's, all threads) matter on a shared machine, where wall time
    also counts other programs' load."""
    torch.set_num_threads(1 if variant == "threads1" else threads)
    torch.manual_seed(0)
    net = build_network("unet-tiny", out_channels=classes, ds_factor=1)
    loss_fn = make_loss("combined", beta=1.0)
    cl = variant == "channels_last"
    if cl:
        net = net.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    model = torch.compile(net) if variant == "compile" else net
    bf16 = variant == "bf16"

    def step(x, y):
        if cl:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
            loss = loss_fn(out.float(), y)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for i in range(warmup):
        step(*batches[i % len(batches)])
    compile_s = time.perf_counter() - t0 if variant == "compile" else 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        step(*batches[i % len(batches)])
    return steps / (time.perf_counter() - t0), (time.process_time() - c0) / steps, compile_s


def time_data(store: str, n: int, batch: int) -> float:
    """Batches per second that one process delivers from a patch store through the default transforms."""
    import cryo3d_transforms
    from cryo3d.dataset import PatchDataset
    from monai.data import DataLoader

    ds = PatchDataset(store, transform=cryo3d_transforms.default_train_transforms())
    dl = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0, collate_fn=cryo3d_transforms.collate_keypoints)
    it = iter(dl)
    next(it)
    t0 = time.perf_counter()
    for _ in range(n):
        try:
            next(it)
        except StopIteration:
            it = iter(dl)
            next(it)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--store", default=None, help="a patch store, to time the data pipeline too")
    a = ap.parse_args()
    batches = make_batches(4, a.batch, a.patch, a.classes)
    base = None
    print(f"training step: unet-tiny, batch {a.batch} x {a.patch}^3, {a.classes} classes, combined loss, Adam; "
          f"{a.steps} timed steps after {a.warmup}")
    for v in a.variants:
        ips, cpu, comp = time_variant(v, batches, a.steps, a.warmup, a.threads, a.classes)
        base = base or (ips if v == "fp32" else None)
        rel = f"  x{ips / base:.2f} vs fp32" if base else ""
        extra = f"  (compile {comp:.0f} s)" if comp else ""
        print(f"{v:<14} {ips:6.2f} it/s  {cpu:6.2f} CPU s/it{rel}{extra}", flush=True)
    if a.store:
        torch.set_num_threads(a.threads)
        print(f"data pipeline (1 process, default transforms): {time_data(a.store, 10, a.batch):.2f} batches/s")


if __name__ == "__main__":
    main()

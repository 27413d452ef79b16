"""Share a list of tomograms among ``torchrun`` ranks: who does what, and waiting for all.

``cryo3d predict`` under ``torchrun`` (one rank per GPU or per CPU process, any number of
nodes) runs :func:`init_ranks` first. Without torchrun (``WORLD_SIZE`` unset or 1) it is a
single rank and nothing here does anything.

* :func:`shard`: which tomograms this rank does. Every tomogram is assigned, not only the
  unfinished ones, and the assignment depends only on the list, the file sizes and the
  number of ranks, so ranks agree on it without talking, and a rerun after a killed rank
  gives each tomogram to the same rank again: the finished ones are skipped there (their
  per-tomogram results exist), the killed rank's are redone.
* :class:`Ranks`: this process's rank, ``barrier`` (all ranks' tomograms are written; then
  rank 0 merges), ``main_first`` (rank 0 creates shared files before the others read them),
  and the device of this rank (``cuda:<LOCAL_RANK>``).

Only ``torch.distributed`` is used, with the gloo backend: the ranks exchange no tensors,
only barriers, and gloo runs on every machine (GPU or not, one node or many). torchrun's
usual environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)
configures it. Ranks wait for each other at most ``CRYO3D_DIST_TIMEOUT_S`` seconds (default
two days: a rank's share of a large data set can take hours before the others see it).
"""

from __future__ import annotations

import heapq
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

#: Default seconds a rank waits at a barrier for the others.
DEFAULT_TIMEOUT_S = 2 * 24 * 3600


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks of one ``torchrun`` job.

    Attributes:
        rank, world_size (int): Global rank and number of ranks (0 and 1 without torchrun).
        local_rank (int): Rank on this node (selects the GPU).
        owns_group (bool): :func:`init_ranks` started the process group, so :meth:`close` ends it.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes shared files and merges."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait until every rank got here (nothing on a single rank)."""
        if self.distributed:
            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block, then the others do (e.g. rank 0 writes a file the others check)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def device(self, device: str | torch.device | None = None) -> torch.device:
        """This rank's device: ``cuda:<local rank>`` when asked for ``cuda`` (or nothing) and CUDA
        exists, with several ranks; otherwise ``device`` as given (default: cuda when available)."""
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if self.distributed and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank % max(torch.cuda.device_count(), 1))
        return device

    def close(self) -> None:
        """End the process group if :func:`init_ranks` started it."""
        if self.owns_group:
            if dist.is_initialized():
                dist.destroy_process_group()


def init_ranks(timeout_s: float | None = None) -> Ranks:
    """The ranks of this ``torchrun`` job, joining its process group (gloo) when there are several.

    Reads torchrun's environment; a single rank (no torchrun, or ``WORLD_SIZE=1``) starts
    nothing. An already initialised process group (e.g. the caller's) is used as it is.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if world <= 1:
        return Ranks()
    owns = False
    if not dist.is_initialized():
        if timeout_s is None:
            timeout_s = float(os.environ.get("CRYO3D_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
        owns = True
    return Ranks(dist.get_rank(), dist.get_world_size(), local, owns)


def _size(path: Any) -> int:
    """Bytes of a tomogram file (a folder, e.g. OME-Zarr: the sum of its files; unknown: 1)."""
    p = Path(str(path))
    try:
        if p.is_dir():
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) or 1
        return p.stat().st_size or 1
    except OSError:
        return 1


def shard(items: Sequence[T], rank: int, world_size: int, sizes: Sequence[float] | None = None) -> list[T]:
    """The items ``rank`` of ``world_size`` does, in their original order.

    Longest-processing-time-first: items by decreasing size (ties: list order) each go to
    the rank with the least work so far (ties: lowest rank), so ranks finish about together.
    Every item goes to exactly one rank; the result depends only on the arguments.

    Args:
        items (sequence): What to share, e.g. ``(path, name)`` pairs.
        rank, world_size (int): This rank, and how many there are.
        sizes (sequence of float, optional): The work of each item (default: all equal).
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not one of {world_size} ranks")
    n = len(items)
    if world_size == 1:
        return list(items)
    w = [1.0] * n if sizes is None else [float(s) for s in sizes]
    if len(w) != n:
        raise ValueError(f"sizes: expected one per item ({n}), got {len(w)}")
    load = [(0.0, r) for r in range(world_size)]  # (work so far, rank): a heap
    mine = []
    for i in sorted(range(n), key=lambda i: (-w[i], i)):
        work, r = heapq.heappop(load)
        if r == rank:
            mine.append(i)
        heapq.heappush(load, (work + w[i], r))
    return [items[i] for i in sorted(mine)]


def shard_tomograms(paths_and_names: Sequence[tuple[Any, str]], ranks: Ranks) -> list[tuple[Any, str]]:
    """:func:`shard` of ``(path, name)`` pairs, sized by their files: this rank's tomograms."""
    if not ranks.distributed:
        return list(paths_and_names)
    return shard(paths_and_names, ranks.rank, ranks.world_size, [_size(p) for p, _ in paths_and_names])

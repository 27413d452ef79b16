"""``cryo3d predict`` under torchrun: tomograms shared among ranks, rank 0 merges, reruns redo a killed rank's work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cryo3d.io.tomogram import write_mrc
from cryo3d.networks import build_network
from cryo3d.particles import CZII_PARTICLES
from cryo3d.sharding import Ranks, shard, shard_tomograms

ROOT = Path(__file__).resolve().parents[1]
NET_CONFIG = {"name": "unet-tiny", "out_channels": 6, "ds_factor": 2}
NAMES = ("TS_a", "TS_b", "TS_c", "TS_d")


# --------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_every_item_goes_to_exactly_one_rank_in_its_original_order(world):
    items = list(range(11))
    sizes = np.random.default_rng(world).integers(1, 100, len(items)).tolist()
    shares = [shard(items, r, world, sizes) for r in range(world)]
    assert sorted(i for s in shares for i in s) == items
    assert all(s == sorted(s) for s in shares)


def test_the_largest_tomograms_are_spread_so_ranks_finish_together():
    sizes = [100, 90, 10, 10, 10, 10, 10, 10, 10, 10]
    loads = [sum(sizes[i] for i in shard(range(10), r, 2, sizes)) for r in range(2)]
    assert sorted(loads) == [130, 140]  # of 270: as even as whole tomograms allow


def test_a_rank_outside_the_world_is_an_error():
    with pytest.raises(ValueError, match="rank 2 is not one of 2 ranks"):
        shard([1, 2], 2, 2)


def test_a_single_rank_does_everything_and_waits_for_nobody():
    ranks = Ranks()
    pairs = [("a.mrc", "a"), ("b.mrc", "b")]
    assert shard_tomograms(pairs, ranks) == pairs and not ranks.distributed
    ranks.barrier()
    with ranks.main_first():
        pass
    assert ranks.device("cpu") == torch.device("cpu")


# --------------------------------------------------------------------------- torchrun


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, list[Path]]:
    """An untrained unet-tiny checkpoint and 4 small MRC tomograms of different sizes."""
    base = tmp_path_factory.mktemp("torchrun")
    torch.manual_seed(0)
    net = build_network(dict(NET_CONFIG))
    ck = base / "model.pt"
    torch.save({"network": net.state_dict(), "cryo3d": {
        "network": dict(NET_CONFIG), "particles": CZII_PARTICLES.to_dict(), "voxel_spacing": 10.0,
        "patch_size": [32, 32, 32], "ds_factor": 2}}, ck)
    rng = np.random.default_rng(7)
    paths = []
    for name, shape in zip(NAMES, [(36, 44, 40), (30, 40, 46), (40, 48, 36), (32, 36, 36)]):
        p = base / "tomos" / f"{name}.mrc"
        p.parent.mkdir(exist_ok=True)
        write_mrc(p, rng.standard_normal(shape).astype(np.float32), 10.0)
        paths.append(p)
    return ck, paths


def _predict(ck: Path, paths: list[Path], out: Path, ranks: int = 2) -> subprocess.CompletedProcess:
    """``cryo3d predict`` under torchrun with ``ranks`` gloo processes (0: one plain process).

    One thread each, so that every run computes the same floats (threads change the order of
    oneDNN's sums). Threshold 0: an untrained network's heatmap is ~0.01 everywhere, and its
    local maxima are the picks.
    """
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks else []
    cmd = [sys.executable, *launch, "-m", "cryo3d.cli", "predict", str(ck), *map(str, paths), "--out", str(out),
           "--threshold", "0", "--device", "cpu", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def single_and_torchrun(inputs, tmp_path_factory):
    ck, paths = inputs
    base = tmp_path_factory.mktemp("runs")
    _predict(ck, paths, base / "single", ranks=0)
    r = _predict(ck, paths, base / "ddp")
    return base / "single", base / "ddp", r


def _files(folder: Path, sub: str) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted((folder / sub).rglob("*")) if p.is_file()}


def test_two_gloo_ranks_merge_the_same_picks_as_one_process(single_and_torchrun):
    single, ddp, r = single_and_torchrun
    assert (ddp / "picks.csv").read_bytes() == (single / "picks.csv").read_bytes()
    assert len((single / "picks.csv").read_text().splitlines()) > len(NAMES)  # there are picks to compare
    assert _files(ddp, "copick") == _files(single, "copick")
    assert _files(ddp, "per_tomogram") == _files(single, "per_tomogram")
    assert r.stdout.count("wrote ") == 1  # rank 0 alone reports the merge


def test_a_killed_ranks_tomograms_are_redone_on_rerun_and_the_rest_kept(inputs, single_and_torchrun, tmp_path):
    import shutil

    ck, paths = inputs
    single, ddp, _ = single_and_torchrun
    out = tmp_path / "ddp"
    shutil.copytree(ddp, out)
    # what a rank killed before its tomograms were done leaves: no per-tomogram results, no merge
    lost = [name for _, name in shard_tomograms(list(zip(paths, NAMES)), Ranks(1, 2))]
    assert lost and len(lost) < len(NAMES)
    for name in lost:
        (out / "per_tomogram" / f"{name}.csv").unlink()
    (out / "picks.csv").unlink()
    old = 1_000_000_000
    kept = [out / "per_tomogram" / f"{n}.csv" for n in NAMES if n not in lost]
    for p in kept:
        os.utime(p, (old, old))
    _predict(ck, paths, out)
    assert all(os.stat(p).st_mtime == old for p in kept)  # finished tomograms were not recomputed
    assert all((out / "per_tomogram" / f"{n}.csv").is_file() for n in lost)
    assert (out / "picks.csv").read_bytes() == (single / "picks.csv").read_bytes()

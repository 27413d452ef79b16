"""predict's results are keyed by what they were made from: nothing stale, nothing lost, no ground truth overwritten."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cryo3d.errors import Cryo3DError
from cryo3d.inference import predict
from cryo3d.io.copick_picks import read_copick, write_copick
from cryo3d.io.picks_csv import read_picks_csv
from cryo3d.io.tomogram import write_mrc
from cryo3d.networks import build_network
from cryo3d.particles import CZII_PARTICLES
from cryo3d.picks import Picks
from cryo3d.results import file_fingerprint

NET = {"name": "unet-tiny", "out_channels": 6, "ds_factor": 2}
KW = dict(thresholds=0.0, device="cpu", progress=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"network": build_network(dict(NET)).state_dict(), "cryo3d": {
        "network": dict(NET), "particles": CZII_PARTICLES.to_dict(), "voxel_spacing": 10.0,
        "patch_size": [32, 32, 32], "ds_factor": 2}}, path)
    return path


def _tomos(folder: Path, seed: int, names=("TS_1", "TS_2", "TS_3")) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for n in names:
        write_mrc(folder / f"{n}.mrc", rng.standard_normal((24, 28, 32)).astype(np.float32), 10.0)
        out.append(str(folder / f"{n}.mrc"))
    return out


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    """Folders A and B with tomograms of the same file stems and other content."""
    a, b = tmp_path_factory.mktemp("A"), tmp_path_factory.mktemp("B")
    return _tomos(a, 1), _tomos(b, 2)


@pytest.fixture(scope="module")
def reference_b(tmp_path_factory, checkpoint, two_sets):
    return predict(checkpoint, two_sets[1], tmp_path_factory.mktemp("ref") / "p", **KW)


def _same(p: Picks, q: Picks) -> bool:
    return len(p) == len(q) and np.allclose(p.xyz, q.xyz) and list(p.tomo) == list(q.tomo)


def test_rerun_on_other_tomograms_with_the_same_stems_never_reuses_a_result(tmp_path, checkpoint, two_sets,
                                                                            reference_b):
    out = tmp_path / "P"
    a = predict(checkpoint, two_sets[0], out, **KW)
    b = predict(checkpoint, two_sets[1], out, **KW)
    assert not _same(a, b) and _same(b, reference_b)
    assert _same(read_picks_csv(out / "picks.csv"), reference_b)
    rec = json.loads((out / "predict.json").read_text())
    assert rec["tomograms"] == two_sets[1] and rec["n_reused"] == 0 and rec["complete"]


def test_rerun_of_the_same_call_reuses_every_result(tmp_path, checkpoint, two_sets):
    out = tmp_path / "P"
    predict(checkpoint, two_sets[0], out, **KW)
    predict(checkpoint, two_sets[0], out, **KW)
    assert json.loads((out / "predict.json").read_text())["n_reused"] == 3


def test_rerun_asking_for_heatmaps_writes_them(tmp_path, checkpoint, two_sets):
    out = tmp_path / "P"
    predict(checkpoint, two_sets[0][:1], out, **KW)
    predict(checkpoint, two_sets[0][:1], out, write_heatmaps=True, **KW)
    assert len(list((out / "heatmaps").glob("TS_1_*.mrc"))) == len(CZII_PARTICLES)


def test_rerun_on_fewer_tomograms_removes_their_outputs_and_copick_runs(tmp_path, checkpoint, two_sets):
    out = tmp_path / "P"
    predict(checkpoint, two_sets[0], out, write_heatmaps=True, **KW)
    predict(checkpoint, two_sets[0][:1], out, **KW)
    runs = sorted(p.name for p in (out / "copick" / "ExperimentRuns").iterdir())
    assert runs == ["TS_1"]
    assert set(read_copick(out / "copick").tomo) == {"TS_1"}
    assert sorted(p.stem for p in (out / "per_tomogram").glob("*.csv")) == ["TS_1"]
    assert {p.name.split("_")[1] for p in (out / "heatmaps").glob("*.mrc")} == {"1"}
    assert "copick/ExperimentRuns/TS_2/Picks/cryo3d_0_ribosome.json" in json.loads(
        (out / "predict.json").read_text())["removed_stale"]


def test_a_changed_tomogram_changes_its_fingerprint_even_at_the_same_size_and_mtime(tmp_path):
    p = tmp_path / "t.mrc"
    write_mrc(p, np.zeros((4, 4, 4), np.float32) + 1, 10.0)
    st = os.stat(p)
    before = file_fingerprint(p)
    write_mrc(p, np.zeros((4, 4, 4), np.float32) + 2, 10.0)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_fingerprint(p)["size"] == before["size"] and file_fingerprint(p) != before


@pytest.mark.parametrize("make", ["picks_csv", "copick_of_another_user", "tomograms", "copick_project"])
def test_predict_refuses_an_output_folder_that_holds_ground_truth(tmp_path, checkpoint, two_sets, make):
    out = tmp_path / "data"
    out.mkdir()
    gt = Picks(["TS_1"], ["ribosome"], [[10.0, 20.0, 30.0]])
    if make == "picks_csv":
        (out / "picks.csv").write_text("tomo,class,x,y,z\nTS_1,ribosome,10,20,30\n")
    elif make == "copick_of_another_user":
        write_copick(out / "copick", gt, user_id="alice", session_id="1")
    elif make == "tomograms":
        _tomos(out, 3, names=("TS_9",))
    else:
        (out / "copick_config.json").write_text("{}")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(Cryo3DError, match="did not write.*--force"):
        predict(checkpoint, two_sets[0][:1], out, **KW)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_predict_with_force_writes_beside_other_users_picks_and_keeps_them(tmp_path, checkpoint, two_sets):
    out = tmp_path / "data"
    write_copick(out / "copick", Picks(["TS_1"], ["ribosome"], [[10.0, 20.0, 30.0]]), user_id="alice",
                 session_id="1")
    predict(checkpoint, two_sets[0][:1], out, force=True, **KW)
    assert (out / "copick" / "ExperimentRuns" / "TS_1" / "Picks" / "alice_1_ribosome.json").is_file()


def test_predict_json_and_outputs_go_through_the_atomic_writer(tmp_path, checkpoint, two_sets, monkeypatch):
    def refuse(self, *a, **k):
        raise AssertionError(f"non-atomic write of {self}")

    monkeypatch.setattr(Path, "write_text", refuse)
    monkeypatch.setattr(Path, "write_bytes", refuse)
    predict(checkpoint, two_sets[0][:1], tmp_path / "P", **KW)
    assert json.loads((tmp_path / "P" / "predict.json").read_text())["complete"] is True


def _predict_child(checkpoint: str, paths: list[str], out: str) -> None:
    torch.set_num_threads(1)
    predict(checkpoint, paths, out, **KW)


def test_predict_killed_then_rerun_on_other_tomograms_with_the_same_stems_never_reuses(tmp_path, checkpoint,
                                                                                         two_sets, reference_b):
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(3)
    out = tmp_path / "P"
    for i in range(4):
        proc = ctx.Process(target=_predict_child, args=(str(checkpoint), two_sets[0], str(out)))
        proc.start()
        time.sleep(rng.uniform(0.05, 1.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        b = predict(checkpoint, two_sets[1], out, **KW)
        assert _same(b, reference_b), f"kill {i}: a result of the killed run on A was reused for B"
        assert _same(read_picks_csv(out / "picks.csv"), reference_b)


def test_a_tomogram_over_8_mib_changed_in_one_middle_byte_with_its_mtime_restored_is_not_reused(tmp_path,
                                                                                             checkpoint):
    path = tmp_path / "TS_big.mrc"
    write_mrc(path, np.random.default_rng(5).standard_normal((24, 320, 320)).astype(np.float32), 10.0)
    assert path.stat().st_size > 8 * 2**20
    out = tmp_path / "P"
    predict(checkpoint, [str(path)], out, **KW)
    st = os.stat(path)
    with open(path, "r+b") as f:  # one byte near the middle of the data (between the blocks a sampled hash read)
        f.seek(st.st_size // 2 + 200_000)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    predict(checkpoint, [str(path)], out, **KW)
    rec = json.loads((out / "predict.json").read_text())
    assert rec["n_reused"] == 0 and rec["n_computed"] == 1

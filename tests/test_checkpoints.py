"""Checkpoints: atomic saves, best.pt only improves across resumes, loading as data, kills at random moments."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import random
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cryo3d.checkpoints import (
    SAVER_KEY,
    AtomicCheckpointSaver,
    CheckpointResumer,
    load_checkpoint,
    save_checkpoint,
)
from cryo3d.errors import Cryo3DError
from cryo3d.inference import load_checkpoint_model
from cryo3d.workflows.run import latest_checkpoint


class _Evil:
    """A pickle payload: unpickling it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _engine(epoch: int = 1, metric: float | None = None) -> SimpleNamespace:
    st = SimpleNamespace(epoch=epoch, metrics={"score": metric} if metric is not None else {}, key_metric_name="score")
    return SimpleNamespace(state=st)


# ------------------------------------------------------------------ loading as data


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch-zip", "legacy-pickle"])
def test_a_pickle_payload_checkpoint_is_refused_and_its_payload_never_runs(tmp_path, zip_format):
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "evil.pt"
    if zip_format:
        torch.save({"network": {}, "cryo3d": _Evil(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"network": {}, "cryo3d": _Evil(marker)}, protocol=2))
    with pytest.raises(Cryo3DError, match="refused.*nothing in it was run"):
        load_checkpoint_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("kind, match", [
    ("random", "not a PyTorch checkpoint"), ("empty", "empty"), ("folder", "is a folder"), ("missing", "not found"),
])
def test_a_file_that_is_not_a_checkpoint_gets_one_clear_message(tmp_path, kind, match):
    path = tmp_path / "model.pt"
    if kind == "random":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(Cryo3DError, match=match) as err:
        load_checkpoint_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_no_module_of_the_package_loads_with_weights_only_false():
    root = Path(__file__).resolve().parents[1]
    unsafe = "weights_only=" + "False"  # spelled in two parts so that grep finds nothing in this file either
    hits = [p for d in ("cryo3d", "transforms", "scripts", "bundles") for p in (root / d).rglob("*")
            if p.is_file() and p.suffix in (".py", ".yaml", ".json") and unsafe in p.read_text()]
    assert hits == []


# ------------------------------------------------------------------ the saver


def test_a_save_that_dies_midway_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "last_checkpoint_epoch=1.pt"
    save_checkpoint({"w": torch.ones(3)}, path)

    def dying_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # stands for the kill

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_older_last_checkpoints_are_removed_after_the_new_one_is_complete(tmp_path):
    for e in (1, 2):  # left behind by earlier runs
        save_checkpoint({"w": torch.ones(1)}, tmp_path / f"last_checkpoint_epoch={e}.pt")
    (tmp_path / ".last_checkpoint_epoch=3.pt.0123456789ab.tmp.pt").write_bytes(b"half")  # a killed save
    saver = AtomicCheckpointSaver(tmp_path, {"net": torch.nn.Linear(1, 1)}, file_prefix="last", save_interval=1)
    saver.attach(SimpleNamespace(add_event_handler=lambda *a: None))
    saver.interval_completed(_engine(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint_epoch=3.pt"]


def test_best_only_improves_after_a_resume_that_restores_the_saver_state(tmp_path):
    net = torch.nn.Linear(1, 1)
    first = AtomicCheckpointSaver(tmp_path, {"network": net}, save_key_metric=True, key_metric_name="score")
    first.metrics_completed(_engine(1, 0.128))
    state = first.state_dict()
    os.replace(tmp_path / "best.pt", tmp_path / "kept.pt")  # resume from the state alone, as from last_*.pt
    resumed = AtomicCheckpointSaver(tmp_path, {"network": net}, save_key_metric=True, key_metric_name="score")
    resumed.load_state_dict(state)
    resumed.metrics_completed(_engine(2, 0.048))
    assert not (tmp_path / "best.pt").exists()
    resumed.metrics_completed(_engine(3, 0.2))
    assert load_checkpoint(tmp_path / "best.pt")[SAVER_KEY] == {"best_metric": 0.2, "best_epoch": 3}


def test_best_file_written_before_a_kill_is_not_replaced_by_a_worse_model(tmp_path):
    net = torch.nn.Linear(1, 1)
    AtomicCheckpointSaver(tmp_path, {"network": net}, save_key_metric=True,
                          key_metric_name="score").metrics_completed(_engine(4, 0.128))
    # killed before last_checkpoint_epoch=4 was written: the resumed saver knows no best from its state
    resumed = AtomicCheckpointSaver(tmp_path, {"network": net}, save_key_metric=True, key_metric_name="score")
    resumed.metrics_completed(_engine(4, 0.048))
    assert load_checkpoint(tmp_path / "best.pt")[SAVER_KEY]["best_metric"] == 0.128


def test_resumer_restores_every_object_and_tolerates_a_checkpoint_without_saver_state(tmp_path):
    net = torch.nn.Linear(2, 1)
    save_checkpoint({"network": net.state_dict()}, tmp_path / "old.pt")
    other = torch.nn.Linear(2, 1)
    best = AtomicCheckpointSaver(tmp_path, {"network": other}, save_key_metric=True)
    eng = SimpleNamespace(state=SimpleNamespace(max_epochs=5, epoch=0))
    CheckpointResumer(tmp_path / "old.pt", {"network": other, "best_saver": best})(eng)
    assert torch.equal(other.weight, net.weight)


def test_latest_checkpoint_skips_a_file_cut_short(tmp_path):
    save_checkpoint({"w": torch.ones(1)}, tmp_path / "last_checkpoint_epoch=1.pt")
    (tmp_path / "last_checkpoint_epoch=2.pt").write_bytes(b"")  # what MONAI's saver left after a kill
    assert latest_checkpoint(tmp_path) == str(tmp_path / "last_checkpoint_epoch=1.pt")


# ------------------------------------------------------------------ kills at random moments

MAX_EPOCHS = 40


def _score(epoch: int) -> float:
    """The 'validation score' of an epoch: deterministic, not monotone."""
    return random.Random(epoch * 7919).random()


def _train(folder: str, seed: int) -> None:
    """A training loop wired like the bundle: resume, validation score, best saver, last saver.

    The checkpoint holds a 2 M-float tensor, so most of an epoch's time is spent saving and a
    random kill often lands in the middle of a write.
    """
    from ignite.engine import Engine, Events

    torch.set_num_threads(1)
    d = Path(folder)
    net = torch.nn.Linear(1024, 2048)
    trainer = Engine(lambda e, b: time.sleep(0.002))
    best = AtomicCheckpointSaver(d, {"network": net}, save_key_metric=True, key_metric_name="score")
    last = AtomicCheckpointSaver(d, {"network": net, "trainer": trainer, "best_saver": best}, file_prefix="last",
                                 save_interval=1)
    CheckpointResumer(latest_checkpoint(d), {"network": net, "trainer": trainer, "best_saver": best}).attach(trainer)

    @trainer.on(Events.EPOCH_STARTED)
    def started(e):
        with open(d / "started.log", "a") as f:
            f.write(f"{e.state.epoch}\n")

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(e):
        e.state.metrics["score"] = _score(e.state.epoch)

    best.attach(trainer)
    last.attach(trainer)
    trainer.run(range(3), max_epochs=MAX_EPOCHS)


def _resumed_epoch(d: Path) -> int:
    p = latest_checkpoint(d)
    if p is None:
        return 0
    st = load_checkpoint(p)["trainer"]  # loads: never a half-written file
    return int(st.get("epoch", st.get("iteration", 0) // max(1, st.get("epoch_length", 1))))


def _best(d: Path) -> float:
    p = d / "best.pt"
    return load_checkpoint(p)[SAVER_KEY]["best_metric"] if p.exists() else float("-inf")


def test_training_killed_at_random_moments_resumes_losing_at_most_one_epoch_and_best_never_worse(tmp_path):
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(12)
    d = tmp_path / "ck"
    d.mkdir()
    kills, best_seen = 0, float("-inf")
    while kills < 24:
        proc = ctx.Process(target=_train, args=(str(d), kills))
        proc.start()
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        kills += 1
        started = [int(x) for x in (d / "started.log").read_text().split()] if (d / "started.log").exists() else [0]
        resumed = _resumed_epoch(d)
        assert resumed >= max(started) - 1, f"kill {kills}: started epoch {max(started)}, resumes at {resumed}"
        b = _best(d)
        assert b >= best_seen, f"kill {kills}: best.pt got worse ({best_seen} -> {b})"
        best_seen = b
        assert len(list(d.glob("last_*.pt"))) <= 2  # the new one and, until it is complete, the previous
    proc = ctx.Process(target=_train, args=(str(d), -1))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 0
    assert _resumed_epoch(d) == MAX_EPOCHS
    assert _best(d) == max(_score(e) for e in range(1, MAX_EPOCHS + 1))
    assert [p.name for p in d.glob("last_*.pt")] == [f"last_checkpoint_epoch={MAX_EPOCHS}.pt"]
    assert not list(d.glob(".*.tmp.pt"))

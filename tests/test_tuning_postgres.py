"""Several ``cryo3d tune`` workers on one study against a real PostgreSQL server.

``.ci/run`` starts a throwaway server on the loopback address and exports its URL as
``CRYO3D_TEST_POSTGRES_URL``; without it these tests skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from cryo3d.workflows.tuning.space import DEFAULT_TUNE_CONFIG
from cryo3d.workflows.tuning.storage import retried_trial_number

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("CRYO3D_TEST_POSTGRES_URL")

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="no PostgreSQL server: set CRYO3D_TEST_POSTGRES_URL=postgresql+psycopg://USER@127.0.0.1:PORT/DB "
    "(.ci/run starts one from Debian's packages)")

#: Tiny trials (2 tomograms of 64^3, 2 iterations an epoch), 3 epochs so a worker can be killed mid-trial.
#: They keep writing the training report: worker B must still be running trials when killed worker A's
#: heartbeat goes stale (2 s), so B fails and retries A's trial; shorter trials let B finish first.
TINY = {"n_synth_tomograms": 2, "synth_shape": [64, 64, 64], "patch_size": 32, "stride": 32,
        "network_name": "unet-tiny", "batch_size": 2, "num_workers": 0, "epoch_length": 2, "val_interval": 1,
        "threads": 1, "max_epochs": 3, "early_stop_patience": 100}


def _worker(cfg: Path, out: Path, study: str, seed: int, log: Path) -> subprocess.Popen:
    """One ``cryo3d tune`` process on the shared study (1 s heartbeats, 2 s grace period)."""
    cmd = [sys.executable, "-m", "cryo3d.cli", "tune", "--config", str(cfg), "--out", str(out),
           "--study-name", study, "--storage", POSTGRES_URL, "--n-trials", "3", "--pruner", "none",
           "--seed", str(seed), "--heartbeat-interval", "1", "--grace-period", "2", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _running_trial_of(study: optuna.Study, pid: int) -> optuna.trial.FrozenTrial | None:
    """The trial process ``pid`` is running once it has validated at least once (mid-trial), else None."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        out = t.user_attrs.get("output_dir")
        if t.user_attrs.get("pid") == pid and out and (Path(out) / "val_metrics.jsonl").exists():
            return t
    return None


def test_two_workers_on_postgres_finish_a_study_when_one_is_killed_mid_trial(tmp_path):
    name = f"two-workers-{uuid.uuid4().hex[:8]}"
    cfg = yaml.safe_load(DEFAULT_TUNE_CONFIG.read_text())
    cfg["fixed"] = {**TINY, "dataset_dir": str(tmp_path / "data")}
    cfg["space"]["beta_schedule.warmup"]["high"] = 1  # warm-up must end before the 3-epoch runs do
    cfg_path = tmp_path / "tune.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "runs"
    logs = [tmp_path / "worker_a.log", tmp_path / "worker_b.log"]
    a = _worker(cfg_path, out, name, 0, logs[0])
    b = _worker(cfg_path, out, name, 1, logs[1])
    killed = None
    try:
        deadline = time.time() + 300  # generous: CI machines may be slow
        while killed is None and time.time() < deadline:
            assert a.poll() is None, "worker A ended before it could be killed:\n" + logs[0].read_text()
            try:
                killed = _running_trial_of(optuna.load_study(study_name=name, storage=POSTGRES_URL), a.pid)
            except KeyError:  # the study is not created yet
                pass
            if killed is None:
                time.sleep(0.5)
        a.send_signal(signal.SIGKILL)
        a.wait()
        assert killed is not None, "worker A never validated a trial:\n" + logs[0].read_text()
        assert b.wait(timeout=600) == 0, "worker B failed:\n" + logs[1].read_text()
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait()

    trials = optuna.load_study(study_name=name, storage=POSTGRES_URL).get_trials(deepcopy=False)
    states = {t.number: t.state for t in trials}
    assert not [n for n, s in states.items() if s in (TrialState.RUNNING, TrialState.WAITING)], states
    assert sum(s == TrialState.COMPLETE for s in states.values()) == 3, states
    assert states[killed.number] == TrialState.FAIL
    retries = {retried_trial_number(t): t for t in trials if retried_trial_number(t) is not None}
    for t in trials:  # none lost: every failed trial was retried with its parameters, and the retry finished
        if t.state == TrialState.FAIL:
            assert t.number in retries, f"trial {t.number} failed and was never retried: {states}"
            r = retries[t.number]
            assert r.state == TrialState.COMPLETE and r.params == t.params
            assert r.user_attrs["pid"] == b.pid and r.user_attrs["output_dir"] != t.user_attrs["output_dir"]

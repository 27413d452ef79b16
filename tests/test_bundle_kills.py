"""The real training bundle SIGKILLed at random moments: each rerun resumes, losing at most one epoch,
and best.pt never gets worse (the many-kill test of the same savers is in test_checkpoints.py)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from cryo3d.checkpoints import SAVER_KEY, load_checkpoint
from cryo3d.workflows.run import latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "bundles" / "cryo3d_picker" / "configs"
TINY = [
    "--n_synth_tomograms", "2", "--synth_shape", "[64,64,64]", "--patch_size", "32", "--stride", "32",
    "--network_name", "unet-tiny", "--batch_size", "2", "--num_workers", "0", "--epoch_length", "2",
    "--val_interval", "1", "--threads", "1", "--early_stop_patience", "100",
    "--write_report", "false",  # the report is not what this test is about, and costs seconds per run
]
MAX_EPOCHS = 8


def _cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", "run", "training", "--meta_file", str(CONFIGS / "metadata.json"),
            "--config_file", str(CONFIGS / "train.yaml"), "--logging_file", str(CONFIGS / "logging.conf"),
            "--dataset_dir", str(data), "--output_dir", str(out), "--max_epochs", str(MAX_EPOCHS), *TINY]


def _epoch(ck: str | None) -> int:
    if ck is None:
        return 0
    st = load_checkpoint(ck)["trainer"]
    return int(st.get("epoch", st.get("iteration", 0) // st["epoch_length"]))


def _best(out: Path) -> float:
    p = out / "checkpoints" / "best.pt"
    return load_checkpoint(p)[SAVER_KEY]["best_metric"] if p.exists() else float("-inf")


def test_bundle_killed_at_random_moments_resumes_and_best_never_gets_worse(tmp_path):
    data, out = tmp_path / "data", tmp_path / "runs"
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    rng = random.Random(7)
    best_seen, kills = float("-inf"), 0
    while kills < 3:
        log = tmp_path / f"log{kills}.txt"
        start = _epoch(latest_checkpoint(out / "checkpoints"))
        with open(log, "w") as fh:
            proc = subprocess.Popen(_cmd(data, out), cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env)
            deadline = time.time() + 300
            # wait for the next epoch's checkpoint, then kill a random moment later (often mid-save)
            while time.time() < deadline and proc.poll() is None:
                if _epoch(latest_checkpoint(out / "checkpoints")) > start:
                    break
                time.sleep(0.2)
            time.sleep(rng.uniform(0.0, 2.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
        kills += 1
        text = log.read_text()
        done = max([int(x) for x in re.findall(r"Epoch\[(\d+)\] Complete", text)] or [0])
        resumed = _epoch(latest_checkpoint(out / "checkpoints"))  # loads: never a cut file
        assert resumed >= done - 1, f"kill {kills}: epoch {done} completed, resumes after {resumed}"
        assert _best(out) >= best_seen, f"kill {kills}: best.pt got worse"
        best_seen = _best(out)
    r = subprocess.run(_cmd(data, out), cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Epoch[1] Complete" not in r.stdout + r.stderr  # resumed, not restarted
    assert _epoch(latest_checkpoint(out / "checkpoints")) == MAX_EPOCHS and _best(out) >= best_seen
    assert [p.name for p in (out / "checkpoints").glob("last_*.pt")] == [f"last_checkpoint_epoch={MAX_EPOCHS}.pt"]

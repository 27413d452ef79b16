"""The training bundle end to end on tiny settings: train, resume after a kill, DDP, infer, evaluate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "bundles" / "cryo3d_picker" / "configs"
META = CONFIGS / "metadata.json"
SCHEMA = ROOT.parent / "shared" / "monai" / "meta_schema_20240725.json"

#: Settings small enough for CI's 2 cores: 2 tomograms (1 train, 1 validation).
TINY = [
    "--n_synth_tomograms", "2", "--synth_shape", "[64,64,64]", "--patch_size", "32", "--stride", "32",
    "--network_name", "unet-tiny", "--batch_size", "2", "--num_workers", "0", "--epoch_length", "2",
    "--val_interval", "1", "--threads", "1",
]
#: For runs whose test does not look at the training report (writing it costs seconds per run).
NO_REPORT = ["--write_report", "false"]


def bundle_cmd(run_id: str, config: str | list[str], *overrides: str) -> list[str]:
    cfg = str(CONFIGS / config) if isinstance(config, str) else repr([str(CONFIGS / c) for c in config])
    return [sys.executable, "-m", "monai.bundle", "run", run_id, "--meta_file", str(META), "--config_file", cfg,
            "--logging_file", str(CONFIGS / "logging.conf"), *overrides]


def run(cmd: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("bundle")
    data, out = base / "data", base / "runs"
    r = run(bundle_cmd("training", "train.yaml", "--dataset_dir", str(data), "--output_dir", str(out),
                       "--max_epochs", "2", *TINY))
    return data, out, r.stdout + r.stderr


def test_metadata_passes_monai_verify_metadata():
    if not SCHEMA.exists():
        pytest.skip("MONAI's metadata schema is not in ../shared/monai")
    run([sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(META), "--filepath", str(SCHEMA)])


def test_training_makes_data_trains_validates_and_checkpoints(trained):
    data, out, log = trained
    assert (data / "picks.csv").exists() and any((data / "store").iterdir())
    ck = out / "checkpoints"
    assert (ck / "best.pt").exists() and list(ck.glob("last_checkpoint_epoch=2.pt"))
    lines = [json.loads(x) for x in (out / "val_metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert set(lines[0]["per_class"]) >= {"ribosome", "apo-ferritin"}
    assert any(p.name.startswith("events") for p in (out / "tensorboard").iterdir())


def test_training_with_hard_fraction_checkpoints_the_hardness_of_the_patches_it_drew(trained, tmp_path):
    data, _, _ = trained
    out = tmp_path / "runs"
    run(bundle_cmd("training", "train.yaml", "--dataset_dir", str(data), "--output_dir", str(out),
                   "--max_epochs", "1", "--hard_fraction", "1", "--mix_prob", "0", *TINY, *NO_REPORT))
    ck = torch.load(next((out / "checkpoints").glob("last_checkpoint_epoch=1.pt")), weights_only=True)
    h = ck["hard_patches"]["hardness"]
    measured = h[~torch.isnan(h)]  # NaN: a patch not yet drawn
    assert measured.numel() > 0 and bool(((measured >= 0) & (measured <= 1)).all())


def test_best_checkpoint_carries_what_predict_needs(trained):
    _, out, _ = trained
    ck = torch.load(out / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    meta = ck["cryo3d"]
    # the CPU default: 10 A synthetic tomograms binned to 20 A, output at full (binned) resolution
    assert meta["ds_factor"] == 1 and meta["patch_size"] == [32, 32, 32] and meta["voxel_spacing"] == 20.0
    assert len(meta["thresholds"]) == 6 and meta["network"]["name"] == "unet-tiny"
    assert meta["class_decision"] == "strongest"  # the rule its thresholds were chosen under
    assert meta["tta"] == "flips"  # and the test-time augmentation of the heatmaps they were chosen on
    # a class validation found no true positive for keeps the safe threshold, never the sweep's lowest
    from cryo3d.metrics import UNLEARNED_THRESHOLD
    from cryo3d.particles import ParticleSet

    names = ParticleSet.from_dict(meta["particles"]).names
    assert set(meta["unlearned_classes"]) <= set(names)
    for n in meta["unlearned_classes"]:
        assert meta["thresholds"][names.index(n)] == UNLEARNED_THRESHOLD


def test_best_checkpoint_records_the_annotated_density_of_its_training_tomograms(trained):
    from cryo3d.coords import voxels_to_volume
    from cryo3d.io.picks_csv import read_picks_csv
    from cryo3d.io.tomogram import read_tomogram
    from cryo3d.particles import ParticleSet

    data, out, _ = trained
    meta = torch.load(out / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)["cryo3d"]
    particles = ParticleSet.from_dict(meta["particles"])
    train = read_tomogram(sorted((data / "tomograms").glob("*.mrc"))[0])  # the last one validates
    picks = read_picks_csv(data / "picks.csv")
    counts = np.bincount(particles.indices(picks.select(picks.tomo == train.name).cls), minlength=len(particles))
    np.testing.assert_allclose(meta["class_density"], counts / voxels_to_volume(train.shape, train.voxel_spacing))


def test_training_resumes_from_the_last_checkpoint(trained, tmp_path):
    data, out, _ = trained
    import shutil

    out2 = tmp_path / "runs"
    shutil.copytree(out, out2)
    r = run(bundle_cmd("training", "train.yaml", "--dataset_dir", str(data), "--output_dir", str(out2),
                       "--max_epochs", "3", *TINY, *NO_REPORT))
    log = r.stdout + r.stderr
    assert "Epoch[3] Complete" in log and "Epoch[1] Complete" not in log
    ck = torch.load(next((out2 / "checkpoints").glob("last_checkpoint_epoch=3.pt")), weights_only=True)
    st = ck["trainer"]  # ignite keeps either the epoch or the iteration count
    assert st.get("epoch", st.get("iteration", 0) // st["epoch_length"]) == 3


def test_killed_training_resumes_where_it_stopped(trained, tmp_path):
    data, _, _ = trained
    out = tmp_path / "runs"
    cmd = bundle_cmd("training", "train.yaml", "--dataset_dir", str(data), "--output_dir", str(out),
                     "--max_epochs", "30", *TINY, *NO_REPORT)
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list((out / "checkpoints").glob("last_checkpoint_epoch=*.pt")):
            time.sleep(0.5)
        time.sleep(1.0)  # let the saver finish its atomic rename
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = list((out / "checkpoints").glob("last_checkpoint_epoch=*.pt"))
    assert saved, "training never wrote a checkpoint"
    # killed between writing epoch N and deleting N-1, two may be there: resume takes the newest
    done = max(int(p.stem.split("=")[-1]) for p in saved)
    assert done < 30
    r = run(bundle_cmd("training", "train.yaml", "--dataset_dir", str(data), "--output_dir", str(out),
                       "--max_epochs", str(done + 1), *TINY, *NO_REPORT))
    log = r.stdout + r.stderr
    assert f"Epoch[{done + 1}] Complete" in log and "Epoch[1] Complete" not in log


def test_inference_and_evaluate_configs_run_on_the_trained_checkpoint(trained, tmp_path):
    data, out, _ = trained
    pred = tmp_path / "pred"
    run(bundle_cmd("inference", "inference.yaml", "--checkpoint", str(out / "checkpoints" / "best.pt"),
                   "--input_dir", str(data / "tomograms"), "--output_dir", str(pred)))
    assert (pred / "picks.csv").read_text().startswith("tomo,class,x,y,z,score")
    assert (pred / "copick" / "ExperimentRuns").is_dir()
    r = run(bundle_cmd("evaluate", "evaluate.yaml", "--pred", str(pred / "picks.csv"), "--gt", str(data / "picks.csv")))
    assert "ribosome" in r.stdout
    rep = json.loads((pred / "evaluation.json").read_text())
    assert 0.0 <= rep["score"] <= 1.0


def test_multi_gpu_config_trains_with_two_gloo_processes(trained, tmp_path):
    data, _, _ = trained
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "monai.bundle", "run", "training", "--meta_file", str(META), "--config_file",
           repr([str(CONFIGS / "train.yaml"), str(CONFIGS / "multi_gpu_train.yaml")]),
           "--logging_file", str(CONFIGS / "logging.conf"), "--dataset_dir", str(data), "--output_dir", str(out),
           "--max_epochs", "1", *TINY, *NO_REPORT]
    r = run(cmd, timeout=400)
    assert list((out / "checkpoints").glob("last_checkpoint_epoch=1.pt"))
    log = r.stdout + r.stderr
    assert log.count("SupervisedTrainer - INFO - Epoch[1] Complete") == 2  # one per process
    from cryo3d.inference import load_checkpoint_model

    net, meta = load_checkpoint_model(out / "checkpoints" / "best.pt")  # usable without DDP
    assert meta["network"]["name"] == "unet-tiny"


def test_training_stops_when_its_time_budget_is_spent(trained, tmp_path):
    data, _, _ = trained
    out = tmp_path / "budget"
    r = run(bundle_cmd("training", "train.yaml", "--dataset_dir", str(data), "--output_dir", str(out),
                       "--max_epochs", "200", "--time_budget", "0.02", *TINY, *NO_REPORT))
    log = r.stdout + r.stderr
    assert "time budget of 0.0 min spent" in log
    lines = [json.loads(x) for x in (out / "val_metrics.jsonl").read_text().splitlines()]
    assert 1 <= lines[-1]["epoch"] < 200  # stopped by time, and the last epoch was validated
    assert (out / "checkpoints" / "best.pt").exists()


def test_the_gpu_override_line_of_the_docs_runs(tmp_path):
    # train.yaml's header: --voxel_spacing null --patch_size 64 --stride 32 --ds_factor 2 --network_name unet-base
    # (batch 2 instead of 8 and one tiny step: CI has 2 cores)
    data, out = tmp_path / "data", tmp_path / "runs"
    run(bundle_cmd("training", "train.yaml", "--dataset_dir", str(data), "--output_dir", str(out),
                   "--n_synth_tomograms", "2", "--synth_shape", "[64,64,64]", "--num_workers", "0",
                       "--threads", "1", "--max_epochs", "1", "--epoch_length", "1",
                       "--voxel_spacing", "null", "--patch_size", "64", "--stride", "32", "--ds_factor", "2",
                       "--network_name", "unet-base", "--batch_size", "2", *NO_REPORT), timeout=400)
    from cryo3d.io.tomogram import read_tomogram

    meta = torch.load(out / "checkpoints" / "best.pt", map_location="cpu", weights_only=False)["cryo3d"]
    # null keeps the tomograms' own spacing; the built-in ones vary, so all go to the finest training one
    # (two tomograms: the first by name trains, the last validates)
    finest = read_tomogram(sorted((data / "tomograms").glob("*.mrc"))[0]).voxel_spacing
    assert meta["voxel_spacing"] == pytest.approx(finest)
    assert meta["patch_size"] == [64, 64, 64] and meta["ds_factor"] == 2


def test_training_leaves_a_report_and_records_loss_beta_and_lr(trained):
    _, out, log = trained
    assert (out / "report" / "index.html").exists(), log[-2000:]
    doc = json.loads((out / "report" / "report.json").read_text())
    assert doc["tomograms"] and doc["training"]["n_val"] == 2
    recs = [json.loads(x) for x in (out / "train_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs] == [1, 2] and all(r["loss"] > 0 and r["lr"] > 0 for r in recs)
    assert recs[0]["beta"] is not None

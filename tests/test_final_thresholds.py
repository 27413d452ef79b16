"""The end-of-training re-validation: best.pt's thresholds chosen again on test-time-augmented heatmaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryo3d.checkpoints import load_checkpoint, save_checkpoint
from cryo3d.io.tomogram import write_mrc
from cryo3d.metric_ignite import ParticleFBeta
from cryo3d.networks import build_network
from cryo3d.particles import CZII_PARTICLES
from cryo3d.picks import Picks
from cryo3d.sliding_window import DownsampledSlidingWindowInferer, InferenceSettings
from cryo3d.workflows.checkpoint_meta import CheckpointMeta
from cryo3d.workflows.final_thresholds import FinalThresholds
from cryo3d.workflows.validation import ValidationTomograms

SPACING = 10.0
NET_CONFIG = {"name": "unet-tiny", "out_channels": 6, "ds_factor": 2}


@pytest.fixture()
def run(tmp_path):
    """A run folder whose best.pt was validated on plain heatmaps, and the bundle's parts to redo it."""
    torch.manual_seed(0)
    tomo = tmp_path / "TS_val.mrc"
    write_mrc(tomo, np.random.default_rng(0).standard_normal((32, 48, 48)).astype(np.float32), SPACING)
    gt = Picks(["TS_val"] * 2, ["ribosome", "apo-ferritin"], np.array([[240.0, 240, 160], [100.0, 300, 200]]))
    dataset = ValidationTomograms([tomo], SPACING)
    inferer = DownsampledSlidingWindowInferer(InferenceSettings(roi_size=32, ds_factor=2, voxel_spacing=SPACING))
    metric = ParticleFBeta(gt, dataset.names, CZII_PARTICLES, SPACING, ds_factor=2)
    meta = CheckpointMeta(NET_CONFIG, CZII_PARTICLES, SPACING, 32, 2, metric=metric, tta="none")
    net = build_network(dict(NET_CONFIG))
    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    save_checkpoint({"network": net.state_dict(), "cryo3d": meta.state_dict()}, ckpt_dir / "best.pt")
    return ckpt_dir, net, dataset, inferer, metric, meta


def test_final_thresholds_record_the_tta_and_the_thresholds_chosen_on_its_heatmaps(run):
    ckpt_dir, net, dataset, inferer, metric, meta = run
    new = FinalThresholds(ckpt_dir, net, dataset, inferer, metric, meta, tta="flips")()
    saved = load_checkpoint(ckpt_dir / "best.pt")["cryo3d"]
    assert new == saved and saved["tta"] == "flips"
    assert saved["thresholds"] == metric.last["thresholds"] and len(saved["thresholds"]) == 6
    assert saved["val_score"] == pytest.approx(metric.last["score"])


def test_final_thresholds_validate_best_pt_weights_not_the_last_epoch(run):
    ckpt_dir, net, dataset, inferer, metric, meta = run
    best = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # the network as training left it: other weights than best.pt's
    FinalThresholds(ckpt_dir, net, dataset, inferer, metric, meta, tta="flips")()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in best.items())


def test_a_second_call_leaves_a_checkpoint_that_records_the_tta_as_it_is(run):
    ckpt_dir, net, dataset, inferer, metric, meta = run
    FinalThresholds(ckpt_dir, net, dataset, inferer, metric, meta, tta="flips")()
    before = (ckpt_dir / "best.pt").stat().st_mtime_ns
    assert FinalThresholds(ckpt_dir, net, dataset, inferer, metric, meta, tta="flips")() is None
    assert (ckpt_dir / "best.pt").stat().st_mtime_ns == before


def test_final_tta_none_or_no_best_checkpoint_does_nothing(run, tmp_path):
    ckpt_dir, net, dataset, inferer, metric, meta = run
    before = (ckpt_dir / "best.pt").read_bytes()
    assert FinalThresholds(ckpt_dir, net, dataset, inferer, metric, meta, tta="none")() is None
    assert (ckpt_dir / "best.pt").read_bytes() == before
    assert FinalThresholds(tmp_path / "empty", net, dataset, inferer, metric, meta, tta="flips")() is None


def test_an_unknown_final_tta_is_refused_naming_the_bundle_key(run):
    ckpt_dir, net, dataset, inferer, metric, meta = run
    with pytest.raises(ValueError, match="final_tta.*mirror"):
        FinalThresholds(ckpt_dir, net, dataset, inferer, metric, meta, tta="mirror")

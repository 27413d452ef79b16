"""Each tomogram's own score beside the pooled one: in validation (log, val_metrics.jsonl) and in evaluate."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from cryo3d import coords
from cryo3d.evaluation import evaluate_files
from cryo3d.heatmap import render_heatmap
from cryo3d.io.picks_csv import write_picks_csv
from cryo3d.metric_ignite import ParticleFBeta
from cryo3d.particles import ParticleClass, ParticleSet
from cryo3d.picks import Picks
from cryo3d.tomogram_scores import LISTED_TOMOGRAMS, scores_by_tomogram, spread_line
from cryo3d.workflows.validation import MetricTableHandler

ONE = ParticleSet((ParticleClass("a", 60.0, 1.0),))
SPACING = 10.0
KP = np.array([[10.0, 10, 10], [30.0, 30, 30], [12.0, 36, 20]])  # z, y, x voxels
#: F4 with precision 1 and recall 1/3 (one of three found), and pooled over both (four of six)
F4_THIRD = 17 * (1 / 3) / (16 + 1 / 3)
F4_TWO_THIRDS = 17 * (2 / 3) / (16 + 2 / 3)


def _gt() -> Picks:
    xyz = coords.voxel_to_angstrom(KP, SPACING)
    return Picks(["good"] * 3 + ["poor"] * 3, ["a"] * 6, np.concatenate([xyz, xyz]))


def _pred() -> Picks:
    xyz = coords.voxel_to_angstrom(KP, SPACING)
    return Picks(["good"] * 3 + ["poor"], ["a"] * 4, np.concatenate([xyz, xyz[:1]]), [0.9, 0.8, 0.7, 0.9])


def test_each_tomogram_is_scored_alone():
    s = scores_by_tomogram(_pred(), _gt(), ONE, ["good", "poor"])
    assert s == pytest.approx({"good": 1.0, "poor": F4_THIRD})


def test_thresholds_apply_before_each_tomogram_is_scored():
    s = scores_by_tomogram(_pred(), _gt(), ONE, ["good", "poor"], thresholds=[0.75])
    assert s["good"] == pytest.approx(17 * (2 / 3) / (16 + 2 / 3))  # the 0.7 pick is dropped
    assert s["poor"] == pytest.approx(F4_THIRD)


def test_the_spread_line_lists_each_tomogram_and_the_spread():
    line = spread_line({"good": 1.0, "poor": 0.25})
    assert line == "per tomogram: good 1.0000, poor 0.2500 (min 0.2500, max 1.0000, spread 0.7500)"


def test_the_spread_line_summarises_many_tomograms():
    scores = {f"t{i:02d}": i / 100 for i in range(LISTED_TOMOGRAMS + 3)}
    line = spread_line(scores)
    assert line.startswith(f"per tomogram ({LISTED_TOMOGRAMS + 3} tomograms): lowest t00 0.0000, median ")
    assert "highest t14 0.1400" in line


def test_evaluate_prints_each_tomograms_score_below_the_pooled_one(tmp_path):
    write_picks_csv(tmp_path / "pred.csv", _pred())
    write_picks_csv(tmp_path / "gt.csv", _gt())
    rep = evaluate_files(tmp_path / "pred.csv", tmp_path / "gt.csv", particles=ONE, sweep=False)
    assert rep["score"] == pytest.approx(F4_TWO_THIRDS)
    assert rep["per_tomogram"] == pytest.approx({"good": 1.0, "poor": F4_THIRD})
    assert f"per tomogram: good 1.0000, poor {F4_THIRD:.4f}" in rep["text"]


def test_evaluate_of_one_tomogram_prints_no_spread_line(tmp_path):
    write_picks_csv(tmp_path / "pred.csv", _pred().for_tomo("good"))
    write_picks_csv(tmp_path / "gt.csv", _gt().for_tomo("good"))
    rep = evaluate_files(tmp_path / "pred.csv", tmp_path / "gt.csv", particles=ONE, sweep=False)
    assert "per tomogram" not in rep["text"] and rep["per_tomogram"] == {"good": 1.0}


@pytest.fixture
def validated():
    """ParticleFBeta after validating two tomograms: one with every particle in its heatmap, one with a third."""
    shape = (40, 48, 48)
    sig = coords.ds_sigma(0.4 * ONE.radii, SPACING, 1)
    full = render_heatmap(KP, np.zeros(3, int), shape, sig)
    third = render_heatmap(KP[:1], np.zeros(1, int), shape, sig)
    metric = ParticleFBeta(_gt(), ["good", "poor"], ONE, SPACING, ds_factor=1, logits=False)
    metric.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric.update((torch.from_numpy(np.stack([full, third]).astype(np.float32)), torch.tensor([[0], [1]])))
    metric.compute()
    return metric


def test_validation_scores_each_tomogram_and_puts_the_spread_in_its_table(validated):
    last = validated.last
    assert last["per_tomogram"] == pytest.approx({"good": 1.0, "poor": F4_THIRD})
    assert last["score"] == pytest.approx(F4_TWO_THIRDS)
    assert f"per tomogram: good 1.0000, poor {F4_THIRD:.4f}" in last["table"]


def test_each_validation_record_holds_each_tomograms_score(validated, tmp_path):
    class Writer:
        def add_scalar(self, *a):
            pass

        def flush(self):
            pass

    class State:
        epoch = 3

    class Evaluator:
        state = State()

    MetricTableHandler(validated, str(tmp_path), summary_writer=Writer())(Evaluator())
    rec = json.loads((tmp_path / "val_metrics.jsonl").read_text())
    assert rec["epoch"] == 3 and rec["per_tomogram"] == pytest.approx({"good": 1.0, "poor": F4_THIRD})

"""The plateau rule: no early stop before 60 % of the run; patience counts validations only from there."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from ignite.engine import Engine

from cryo3d.workflows.budget import ProgressValidationHandler, TrainingClock
from cryo3d.workflows.plateau import MIN_PLATEAU_PROGRESS, PlateauStopHandler, plateau_reached

TRAIN_YAML = Path(__file__).resolve().parents[1] / "bundles" / "cryo3d_picker" / "configs" / "train.yaml"
TENTHS = [round(0.1 * i, 1) for i in range(1, 11)]  # validations every tenth of the run (val_fraction 0.1)


def test_no_plateau_stops_a_run_before_its_minimum_share():
    # the best came first, then five worse validations, all before 60 % of the run
    assert not plateau_reached([0.84, 0.7, 0.7, 0.7, 0.7, 0.7], TENTHS[:6], patience=5, min_progress=0.6)


def test_the_issue_22_run_is_not_stopped_where_the_old_rule_stopped_it():
    # best 0.84 at the first validation, five without improvement: the old rule stopped at 61 % of the budget
    scores, progress = [0.84, 0.8, 0.81, 0.79, 0.83, 0.82], [0.1, 0.2, 0.3, 0.4, 0.5, 0.61]
    assert not plateau_reached(scores, progress, patience=5)
    assert plateau_reached(scores, progress, patience=5, min_progress=0.0)  # what EarlyStopHandler did


def test_patience_counts_only_validations_from_the_minimum_share():
    scores = [0.9] + [0.5] * 9
    assert MIN_PLATEAU_PROGRESS == 0.6
    assert not plateau_reached(scores[:7], TENTHS[:7], patience=3)  # counted: 0.6, 0.7
    assert plateau_reached(scores[:8], TENTHS[:8], patience=3)  # counted: 0.6, 0.7, 0.8


def test_a_better_score_after_the_minimum_share_starts_the_count_again():
    scores = [0.5, 0.5, 0.5, 0.5, 0.5, 0.4, 0.4, 0.6, 0.4, 0.4]
    assert not plateau_reached(scores, TENTHS, patience=3)
    assert plateau_reached(scores + [0.4], TENTHS + [1.0], patience=3)


def test_a_score_equal_to_the_best_is_no_improvement_and_nan_never_is():
    assert plateau_reached([0.5, 0.5, 0.5], [0.7, 0.8, 0.9], patience=2)
    assert plateau_reached([0.5, float("nan"), float("nan")], [0.7, 0.8, 0.9], patience=2)


def test_null_patience_never_stops_on_a_plateau():
    assert not plateau_reached([0.9] + [0.1] * 20, [0.05 * i for i in range(1, 22)], patience=None)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "three", True])
def test_a_bad_patience_is_one_clear_line_naming_the_key(bad):
    with pytest.raises(ValueError, match="early_stop_patience: expected a whole number of validations >= 1 or null"):
        PlateauStopHandler(trainer=None, clock=None, patience=bad, score_function=lambda e: 0.0)


@pytest.mark.parametrize("value, expected", [(5, 5), ("5", 5), ("null", None), (None, None)])
def test_patience_reads_as_the_bundle_command_line_passes_it(value, expected):
    assert PlateauStopHandler(None, None, value, lambda e: 0.0).patience == expected


class FakeTime:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _run(monkeypatch, patience, scores):
    """A 60 s budget, 5 s epochs, validation every tenth of the run; returns (clock, trainer, plateau handler)."""
    ft = FakeTime()
    monkeypatch.setattr("cryo3d.workflows.budget.time.monotonic", ft)
    clock = TrainingClock(1.0, max_epochs=1000, epoch_length=10)

    def step(engine, batch):
        ft.t += 0.5

    trainer = Engine(step)
    evaluator = Engine(lambda e, b: None)
    it = iter(scores)
    plateau = PlateauStopHandler(trainer, clock, patience, score_function=lambda e: next(it))
    plateau.attach(evaluator)

    class Validator:
        def run(self, global_epoch=1):
            evaluator.run([0])

    ProgressValidationHandler(Validator(), clock, val_fraction=0.1).attach(trainer)
    clock.attach(trainer)
    trainer.run([0] * 10, max_epochs=1000)
    return clock, trainer, plateau


def test_the_handler_stops_the_trainer_only_after_the_share_and_its_patience(monkeypatch):
    clock, trainer, plateau = _run(monkeypatch, 2, [0.9] + [0.5] * 20)
    # best at the first validation; counted from 60 %: the validations near 0.6 and 0.7 -> stop there
    assert MIN_PLATEAU_PROGRESS <= clock.progress < 0.85
    assert len(plateau.scores) == 7 and not clock.out_of_time


def test_a_run_that_keeps_improving_spends_its_whole_budget(monkeypatch):
    clock, trainer, plateau = _run(monkeypatch, 1, [0.1 * i for i in range(1, 21)])
    assert clock.out_of_time and clock.progress == 1.0


def test_the_plateau_history_is_saved_with_the_last_checkpoint_and_restored(tmp_path):
    h = PlateauStopHandler(None, None, 3, lambda e: 0.0)
    h.scores, h.progress = [0.5, 0.4], [0.55, 0.65]
    torch.save({"plateau": h.state_dict()}, tmp_path / "last.pt")
    back = PlateauStopHandler(None, None, 3, lambda e: 0.0)
    back.load_state_dict(torch.load(tmp_path / "last.pt", weights_only=True)["plateau"])
    assert (back.scores, back.progress) == ([0.5, 0.4], [0.55, 0.65])


def test_the_training_bundle_uses_the_plateau_rule_and_resumes_its_count():
    cfg = yaml.safe_load(TRAIN_YAML.read_text())
    assert cfg["early_stop"]["_target_"] == "cryo3d.workflows.plateau.PlateauStopHandler"
    assert cfg["early_stop"]["clock"] == "@clock"
    assert cfg["save_last"]["save_dict"]["plateau"] == "@early_stop"
    assert cfg["resume"]["load_dict"]["plateau"] == "@early_stop" and "plateau" in cfg["resume"]["optional"]

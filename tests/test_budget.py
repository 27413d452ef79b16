"""Training for a wall-clock budget: progress, stopping, validation marks, LR and beta follow progress."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events

from cryo3d.schedules import BetaScheduleHandler, ProgressCosineLR
from cryo3d.workflows.budget import (AUTO_BUDGET_BUILTIN_MIN, AUTO_BUDGET_USER_MIN, ProgressValidationHandler,
                                     TrainingClock, resolve_budget)


class FakeTime:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def fake_time(monkeypatch):
    ft = FakeTime()
    monkeypatch.setattr("cryo3d.workflows.budget.time.monotonic", ft)
    return ft


class CountingValidator:
    def __init__(self):
        self.epochs = []

    def run(self, global_epoch=1):
        self.epochs.append(global_epoch)


def engine_with(clock, fake_time, seconds_per_iteration, handlers=()):
    def step(engine, batch):
        fake_time.t += seconds_per_iteration
        return 0.0

    e = Engine(step)
    for h in handlers:
        h.attach(e)
    clock.attach(e)
    return e


@pytest.mark.parametrize("value,builtin,expected", [
    (None, True, None), ("null", False, None), ("auto", True, AUTO_BUDGET_BUILTIN_MIN),
    ("auto", False, AUTO_BUDGET_USER_MIN), (7, False, 7.0), ("2.5", True, 2.5),
])
def test_time_budget_key_accepts_minutes_auto_and_null(value, builtin, expected):
    assert resolve_budget(value, builtin) == expected


@pytest.mark.parametrize("bad", ["soon", -1, 0])
def test_bad_time_budget_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="time_budget"):
        resolve_budget(bad, False)


def test_budget_stops_training_at_the_end_of_the_epoch_that_spends_it(fake_time):
    clock = TrainingClock(minutes=1.0, max_epochs=1000, epoch_length=10)
    e = engine_with(clock, fake_time, seconds_per_iteration=2.5)  # 25 s per epoch
    e.run(range(10), max_epochs=1000)
    assert e.state.epoch == 3  # 75 s >= 60 s after epoch 3
    assert clock.progress == 1.0


def test_epoch_cap_ends_the_run_when_it_comes_first(fake_time):
    clock = TrainingClock(minutes=60.0, max_epochs=2, epoch_length=10)
    e = engine_with(clock, fake_time, seconds_per_iteration=1.0)
    e.run(range(10), max_epochs=2)
    assert e.state.epoch == 2 and clock.progress == pytest.approx(1.0)


def test_progress_without_budget_is_the_fraction_of_iterations(fake_time):
    clock = TrainingClock(minutes=None, max_epochs=4, epoch_length=10)
    seen = []
    e = engine_with(clock, fake_time, 1.0)
    e.add_event_handler(Events.EPOCH_COMPLETED, lambda eng: seen.append(clock.progress))
    e.run(range(10), max_epochs=4)
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_resumed_run_spends_only_what_is_left_of_its_budget(fake_time):
    clock = TrainingClock(minutes=1.0, max_epochs=1000, epoch_length=10)
    clock.load_state_dict({"spent_s": 50.0})
    e = engine_with(clock, fake_time, seconds_per_iteration=1.0)
    e.run(range(10), max_epochs=1000)
    assert e.state.epoch == 1
    assert clock.state_dict()["spent_s"] == pytest.approx(60.0)


def test_validation_runs_every_fraction_of_the_run_and_at_its_end(fake_time):
    clock = TrainingClock(minutes=1.0, max_epochs=1000, epoch_length=5)
    val = CountingValidator()
    handler = ProgressValidationHandler(val, clock, val_fraction=0.25)
    e = engine_with(clock, fake_time, seconds_per_iteration=1.0, handlers=[handler])  # 5 s epochs, 12 epochs
    e.run(range(5), max_epochs=1000)
    assert e.state.epoch == 12
    assert val.epochs == [3, 6, 9, 12]


def test_validation_every_n_epochs_still_works(fake_time):
    clock = TrainingClock(minutes=None, max_epochs=5, epoch_length=2)
    val = CountingValidator()
    e = engine_with(clock, fake_time, 1.0, handlers=[ProgressValidationHandler(val, clock, None, val_interval=2)])
    e.run(range(2), max_epochs=5)
    assert val.epochs == [2, 4, 5]  # and the last epoch


class Progress:
    def __init__(self, p):
        self.progress = p


def test_learning_rate_decays_by_cosine_over_progress():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    clock = Progress(0.0)
    sched = ProgressCosineLR(opt, clock, eta_min_ratio=0.1)
    lrs = []
    for p in (0.0, 0.5, 1.0):
        clock.progress = p
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([1.0, 0.1 + 0.9 * 0.5, 0.1])


def test_learning_rate_scheduler_state_holds_plain_data_only():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    state = ProgressCosineLR(opt, Progress(0.3)).state_dict()
    assert "clock" not in state and "optimizer" not in state


def test_beta_follows_progress_as_a_fraction_of_the_run(fake_time):
    class Loss:
        beta = 0.0

    loss = Loss()
    clock = TrainingClock(minutes=None, max_epochs=2, epoch_length=5)
    handler = BetaScheduleHandler(loss, {"kind": "linear", "start": 1.0, "end": 3.0, "total": 1.0}, unit="progress",
                                  clock=clock)
    values = []
    e = engine_with(clock, fake_time, 1.0, handlers=[handler])
    e.add_event_handler(Events.ITERATION_COMPLETED, lambda eng: values.append(loss.beta))
    e.run(range(5), max_epochs=2)
    # beta is set when iteration i (1-based) starts; ignite has counted it by then: progress i / 10
    assert values == pytest.approx([1.0 + 2.0 * i / 10 for i in range(1, 11)])


def test_progress_unit_needs_a_clock():
    class Loss:
        beta = 1.0

    with pytest.raises(ValueError, match="clock"):
        BetaScheduleHandler(Loss(), 2.0, unit="progress")

"""Beta schedules and the ignite handler that applies them."""

from __future__ import annotations

import math

import pytest
from ignite.engine import Engine

from cryo3d.losses import CombinedLoss, FuzzyFBetaLoss
from cryo3d.schedules import BetaSchedule, BetaScheduleHandler, beta_schedule

# --- pure function ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,kw,expected",
    [
        ("constant", {}, [2.0, 2.0, 2.0, 2.0, 2.0]),
        ("linear", {}, [2.0, 2.0, 3.0, 4.0, 4.0]),  # warm-up 2, reaches end at total 6
        ("cosine", {}, [2.0, 2.0, 3.0, 4.0, 4.0]),
        ("exponential", {}, [2.0, 2.0, 2.0 * math.sqrt(2.0), 4.0, 4.0]),
        ("step", {"step_size": 3}, [2.0, 2.0, 2.0, 3.5, 4.0]),
        ("step", {"step_size": 1, "gamma": 1.5}, [2.0, 2.0, 4.0, 4.0, 4.0]),  # 2 * 1.5**2 = 4.5 clamped at end
    ],
)
def test_schedule_values_at_given_epochs(kind, kw, expected):
    values = [beta_schedule(kind, t, start=2.0, end=4.0, total=6, warmup=2, **kw) for t in (0, 1, 4, 6, 9)]
    assert values == pytest.approx(expected)


def test_cosine_starts_slower_than_linear_and_is_halfway_at_mid_progress():
    first = beta_schedule("cosine", 1, 1.0, 3.0, total=10) - 1.0
    assert first < 0.5 * (beta_schedule("linear", 1, 1.0, 3.0, total=10) - 1.0)
    assert beta_schedule("cosine", 5, 1.0, 3.0, total=10) == pytest.approx(2.0)


def test_exponential_with_gamma_multiplies_every_step_after_warmup():
    vals = [beta_schedule("exponential", t, 1.0, None, warmup=1, gamma=2.0) for t in (0, 1, 2, 3)]
    assert vals == pytest.approx([1.0, 1.0, 2.0, 4.0])


def test_decreasing_schedules_go_down_to_end():
    assert beta_schedule("linear", 5, 4.0, 1.0, total=10) == pytest.approx(2.5)
    assert beta_schedule("step", 20, 4.0, 1.0, total=10, step_size=1, gamma=0.5) == 1.0


@pytest.mark.parametrize(
    "kind,kw,match",
    [
        ("triangle", {"end": 2.0, "total": 5}, "unknown beta schedule"),
        ("linear", {"total": 5}, "needs end"),
        ("linear", {"end": 2.0, "total": 2, "warmup": 3}, "must exceed warmup"),
        ("step", {"end": 2.0, "total": 5}, "needs step_size"),
        ("exponential", {"end": 2.0, "total": 5, "start": 0.0}, "start and end > 0"),
    ],
)
def test_incomplete_or_invalid_parameters_are_clear_errors(kind, kw, match):
    kw = {"start": 1.0, **kw}
    with pytest.raises(ValueError, match=match):
        BetaSchedule(kind, **kw)


def test_schedule_object_is_the_pure_function():
    sched = BetaSchedule("cosine", start=1.0, end=4.0, total=8, warmup=2)
    for t in range(10):
        assert sched(t) == beta_schedule("cosine", t, 1.0, 4.0, 8, 2)


# --- ignite handler ---------------------------------------------------------------------------


class FakeWriter:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


def run_and_record(handler, loss, epochs=4, iterations=3):
    """Run a dummy trainer; record the beta that each training step sees."""
    seen = []
    engine = Engine(lambda e, b: seen.append(loss.beta))
    handler.attach(engine)
    engine.run(range(iterations), max_epochs=epochs)
    return engine, seen


def test_handler_sets_beta_at_the_start_of_every_epoch():
    loss = FuzzyFBetaLoss(beta=99.0)
    writer = FakeWriter()
    handler = BetaScheduleHandler(loss, BetaSchedule("linear", 1.0, 4.0, total=3), unit="epoch", summary_writer=writer)
    engine, seen = run_and_record(handler, loss)
    assert seen == pytest.approx([1.0] * 3 + [2.0] * 3 + [3.0] * 3 + [4.0] * 3)
    assert writer.scalars == [("beta", 1.0, 1), ("beta", 2.0, 2), ("beta", 3.0, 3), ("beta", 4.0, 4)]
    assert engine.state.metrics["beta"] == 4.0


def test_handler_per_iteration_counts_iterations_across_epochs():
    loss = CombinedLoss(beta=99.0)
    handler = BetaScheduleHandler(loss, {"kind": "linear", "start": 0.0, "end": 5.0, "total": 5}, unit="iteration")
    _, seen = run_and_record(handler, loss, epochs=2, iterations=4)
    assert seen == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0])
    assert loss.fuzzy.beta == 5.0


def test_handler_attached_twice_fires_once():
    loss = FuzzyFBetaLoss()
    calls = []
    handler = BetaScheduleHandler(loss, lambda t: calls.append(t) or 1.0)
    engine = Engine(lambda e, b: None)
    handler.attach(engine)
    handler.attach(engine)
    engine.run(range(1), max_epochs=2)
    assert calls == [0, 1]


def test_handler_on_a_loss_without_beta_warns_and_does_nothing():
    from cryo3d.losses import BCEHeatmapLoss

    loss = BCEHeatmapLoss()
    with pytest.warns(UserWarning, match="no 'beta' attribute"):
        handler = BetaScheduleHandler(loss, 2.0)
    engine = Engine(lambda e, b: None)
    handler.attach(engine)
    engine.run(range(1), max_epochs=2)
    assert not hasattr(loss, "beta") and "beta" not in engine.state.metrics


def test_handler_writes_a_tensorboard_scalar_to_a_log_dir(tmp_path):
    loss = FuzzyFBetaLoss()
    handler = BetaScheduleHandler(loss, {"kind": "constant", "start": 2.0}, summary_writer=str(tmp_path))
    run_and_record(handler, loss, epochs=1, iterations=1)
    handler.summary_writer.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_handler_works_from_a_monai_bundle_config():
    from monai.bundle import ConfigParser

    config = {
        "num_epochs": 3,
        "loss": {"_target_": "cryo3d.losses.build_loss", "kind": "combined", "beta": 1.0},
        "handlers": [
            {
                "_target_": "cryo3d.schedules.BetaScheduleHandler",
                "loss": "@loss",
                "schedule": {"kind": "step", "start": 1.0, "end": 3.0, "total": "$@num_epochs - 1", "step_size": 1},
                "unit": "epoch",
            }
        ],
    }
    parser = ConfigParser(config)
    loss = parser.get_parsed_content("loss")
    handler = parser.get_parsed_content("handlers")[0]
    _, seen = run_and_record(handler, loss, epochs=3, iterations=1)
    assert handler.loss is loss
    assert seen == pytest.approx([1.0, 2.0, 3.0])


def test_handler_drives_a_monai_supervised_trainer():
    import torch
    from monai.engines import SupervisedTrainer

    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 2, 1)
    loss = FuzzyFBetaLoss(beta=99.0)
    seen = []

    def loss_fn(y, t):
        seen.append(loss.beta)
        return loss(y, t)

    data = [{"image": torch.randn(1, 4, 4, 4), "label": torch.rand(2, 4, 4, 4)} for _ in range(2)]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=3,
        train_data_loader=torch.utils.data.DataLoader(data, batch_size=1),
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=loss_fn,
        train_handlers=[BetaScheduleHandler(loss, {"kind": "linear", "start": 1.0, "end": 2.0, "total": 2})],
    )
    trainer.run()
    assert seen == pytest.approx([1.0, 1.0, 1.5, 1.5, 2.0, 2.0])
    assert trainer.state.metrics["beta"] == 2.0

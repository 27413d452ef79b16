"""Optuna tuning: search space, define-by-run sampling, pruning, resumable studies, export, CLI."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from monai.bundle import ConfigParser
from optuna.trial import TrialState

from cryo3d.schedules import BetaSchedule
from cryo3d.workflows.tuning.command import add_tune_parser, cmd_tune
from cryo3d.workflows.tuning.pruning import OptunaPruningHandler
from cryo3d.workflows.tuning.report import export_best, param_importances, trials_table
from cryo3d.workflows.tuning.sampling import check_space, suggest_overrides
from cryo3d.workflows.tuning.space import (
    DEFAULT_BUNDLE_CONFIG,
    DEFAULT_TUNE_CONFIG,
    ParamSpec,
    TuneConfig,
    bundle_defaults,
)
from cryo3d.workflows.tuning.storage import retried_trial_number
from cryo3d.workflows.tuning.study import make_objective, run_study

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)

#: The tiny bundle settings of tests/test_bundle.py (2 tomograms of 64^3, 2 iterations an epoch).
TINY = {"write_report": False,  # trials need no report; it costs seconds each
        "n_synth_tomograms": 2, "synth_shape": [64, 64, 64], "patch_size": 32, "stride": 32,
        "network_name": "unet-tiny", "batch_size": 2, "num_workers": 0, "epoch_length": 2, "val_interval": 1,
        "threads": 1, "max_epochs": 2}


@pytest.fixture(scope="module")
def defaults():
    return bundle_defaults()


@pytest.fixture(scope="module")
def default_cfg():
    return TuneConfig.load(DEFAULT_TUNE_CONFIG)


def cfg_from(space: dict, fixed: dict | None = None) -> TuneConfig:
    return TuneConfig.from_dict({"space": space, "fixed": fixed or {}})


def tune_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cryo3d")
    add_tune_parser(p.add_subparsers(dest="command", required=True))
    return p


# ---------------------------------------------------------------------------- search space


def test_default_space_covers_the_issue_keys_and_every_corner_is_a_valid_trial(default_cfg, defaults):
    assert {"loss_kind", "learning_rate", "fuzzy_weight", "beta_schedule.kind", "beta_schedule.start",
            "beta_schedule.end", "beta_schedule.warmup", "beta_schedule.step_size"} <= set(default_cfg.space)
    assert default_cfg.fixed["val_interval"] == 1  # a score every epoch for the pruner
    assert check_space(default_cfg, defaults) >= 5 * 2 ** 4


def test_sampled_trials_draw_only_the_parameters_that_apply_and_build_valid_schedules(default_cfg, defaults):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    kinds = set()
    for _ in range(300):
        trial = study.ask()
        ov = suggest_overrides(trial, default_cfg, defaults)
        p, v = ov.params, ov.values
        loss = p["loss_kind"]
        assert ("fuzzy_weight" in p) == (loss == "combined")
        assert any(k.startswith("beta_schedule.") for k in p) == (loss != "bce")
        if loss != "bce":
            sched = v["beta_schedule"]
            kinds.add(sched["kind"])
            BetaSchedule(**sched)
            if sched["kind"] == "constant":
                assert set(sched) == {"kind", "start"} and "beta_schedule.end" not in p
            else:
                assert sched["total"] == default_cfg.fixed["max_epochs"]
                assert ov.export["beta_schedule"]["total"] == "@max_epochs"
            assert ("step_size" in sched) == (sched["kind"] == "step")
        study.tell(trial, 0.0)
    assert kinds == {"constant", "linear", "cosine", "step", "exponential"}


def test_a_space_whose_warmup_can_reach_the_run_length_is_rejected(default_cfg, defaults):
    cfg = TuneConfig(default_cfg.space, {**default_cfg.fixed, "max_epochs": 2})  # warmup goes up to 2
    with pytest.raises(ValueError, match="total .* must exceed warmup"):
        check_space(cfg, defaults)


def test_a_step_schedule_without_a_step_size_is_rejected(defaults):
    cfg = cfg_from({"beta_schedule.kind": {"type": "categorical", "choices": ["linear", "step"]}}, {"max_epochs": 4})
    with pytest.raises(ValueError, match="step_size"):
        check_space(cfg, defaults)


def test_a_geometric_schedule_that_can_start_at_zero_is_rejected(defaults):
    cfg = cfg_from({"beta_schedule.kind": {"type": "categorical", "choices": ["exponential"]},
                    "beta_schedule.start": {"type": "float", "low": 0.0, "high": 2.0}}, {"max_epochs": 4})
    with pytest.raises(ValueError, match="start and end > 0"):
        check_space(cfg, defaults)


@pytest.mark.parametrize("space, fixed, match", [
    ({"lerning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}}, {}, "not a key of the training bundle"),
    ({"learning_rate.x": {"type": "float", "low": 1e-3, "high": 1e-2}}, {}, "not a mapping"),
    ({"beta_schedule.begin": {"type": "float", "low": 1, "high": 2}}, {}, "no field 'begin'"),
    ({"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}}, {"output_dir": "x"}, "set by cryo3d tune"),
])
def test_keys_that_are_not_tunable_bundle_keys_are_rejected(defaults, space, fixed, match):
    with pytest.raises(ValueError, match=match):
        check_space(cfg_from(space, fixed), defaults)


@pytest.mark.parametrize("spec, match", [
    ({"type": "uniform", "low": 0, "high": 1}, "type: expected one of"),
    ({"type": "float", "low": 0}, "needs low and high"),
    ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0"),
    ({"type": "float", "low": 2.0, "high": 1.0}, "must not exceed high"),
    ({"type": "int", "low": 0.5, "high": 3}, "needs an integer"),
    ({"type": "categorical", "choices": []}, "non-empty list"),
    ({"type": "categorical", "choices": [[1, 2]]}, "Optuna takes"),
    ({"type": "float", "low": 0, "high": 1, "lo": 2}, "unknown field"),
])
def test_malformed_specs_are_rejected_with_the_field_named(spec, match):
    with pytest.raises(ValueError, match=match):
        ParamSpec.from_dict("learning_rate", spec)


def test_yaml_exponent_numbers_read_as_strings_are_accepted():
    spec = ParamSpec.from_dict("learning_rate", yaml.safe_load("{type: float, low: 1e-4, high: 1e-2, log: true}"))
    assert (spec.low, spec.high, spec.log) == (1e-4, 1e-2, True)


def test_a_user_when_condition_restricts_a_parameter(defaults):
    cfg = cfg_from({"loss_kind": {"type": "categorical", "choices": ["bce", "fuzzy"]},
                    "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-3, "when": {"loss_kind": "bce"}}})
    for loss in ("bce", "fuzzy"):
        ov = suggest_overrides(optuna.trial.FixedTrial({"loss_kind": loss, "weight_decay": 1e-4}), cfg, defaults)
        assert ("weight_decay" in ov.values) == (loss == "bce")


def test_a_condition_on_a_later_key_is_drawn_after_it(defaults):
    cfg = cfg_from({"fuzzy_weight": {"type": "float", "low": 0.5, "high": 2.0},
                    "loss_kind": {"type": "categorical", "choices": ["combined"]}})
    ov = suggest_overrides(optuna.trial.FixedTrial({"loss_kind": "combined", "fuzzy_weight": 1.5}), cfg, defaults)
    assert list(ov.params) == ["loss_kind", "fuzzy_weight"]


def test_fixed_dotted_keys_merge_into_the_bundle_mapping(defaults):
    cfg = cfg_from({"beta_schedule.kind": {"type": "categorical", "choices": ["cosine"]}},
                   {"beta_schedule.warmup": 1, "max_epochs": 5})
    ov = suggest_overrides(optuna.trial.FixedTrial({"beta_schedule.kind": "cosine"}), cfg, defaults)
    assert ov.values["beta_schedule"] == {"kind": "cosine", "start": defaults["beta_schedule"]["start"],
                                          "end": defaults["beta_schedule"]["end"], "total": 5, "warmup": 1}


# ---------------------------------------------------------------------------- export, table, importances


def _study_with(trials: list[tuple[dict, float]], cfg: TuneConfig, defaults) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for params, value in trials:
        study.enqueue_trial(params)
        t = study.ask()
        t.set_user_attr("overrides", suggest_overrides(t, cfg, defaults).export)
        t.set_user_attr("best_epoch", 3)
        study.tell(t, value)
    return study


def test_best_overrides_file_replaces_nested_keys_when_monai_merges_it(tmp_path, default_cfg, defaults):
    best = {"learning_rate": 0.002, "loss_kind": "fuzzy", "beta_schedule.kind": "cosine",
            "beta_schedule.start": 2.0, "beta_schedule.end": 6.0, "beta_schedule.warmup": 1}
    other = {"learning_rate": 0.005, "loss_kind": "bce"}
    study = _study_with([(other, 0.2), (best, 0.5)], default_cfg, defaults)
    path = tmp_path / "best_overrides.yaml"
    export_best(study, path, default_cfg.fixed)
    parser = ConfigParser()
    parser.read_config([str(DEFAULT_BUNDLE_CONFIG), str(path)])
    parser.update({"max_epochs": 40})  # the final run is longer than the trials: the schedule follows it
    assert parser.get_parsed_content("beta_schedule") == {"kind": "cosine", "start": 2.0, "end": 6.0,
                                                          "total": 40, "warmup": 1}
    assert parser.get_parsed_content("learning_rate") == 0.002 and parser["loss_kind"] == "fuzzy"
    assert "max_epochs: 6" in path.read_text()  # the fixed settings are listed as comments


def test_a_constant_schedule_exports_without_the_bundle_fields_it_ignores(tmp_path, default_cfg, defaults):
    study = _study_with([({"learning_rate": 0.003, "loss_kind": "combined", "fuzzy_weight": 2.0,
                           "beta_schedule.kind": "constant", "beta_schedule.start": 3.0}, 0.4)], default_cfg, defaults)
    path = tmp_path / "best.yaml"
    export_best(study, path)
    parser = ConfigParser()
    parser.read_config([str(DEFAULT_BUNDLE_CONFIG), str(path)])
    assert parser["beta_schedule"] == {"kind": "constant", "start": 3.0}
    assert parser["fuzzy_weight"] == 2.0


def test_trials_table_lists_each_trial_with_its_parameters(default_cfg, defaults):
    study = _study_with([({"learning_rate": 0.005, "loss_kind": "bce"}, 0.25),
                         ({"learning_rate": 0.002, "loss_kind": "combined", "fuzzy_weight": 1.0,
                           "beta_schedule.kind": "constant", "beta_schedule.start": 2.0}, 0.5)], default_cfg, defaults)
    lines = trials_table(study).splitlines()
    assert lines[0].split()[:6] == ["#", "state", "F-beta", "epochs", "best@", "min"]
    assert "beta.kind" in lines[0] and len(lines) == 4
    assert lines[2].split()[:3] == ["0", "COMPLETE", "0.25"] and "-" in lines[2].split()  # bce: no fuzzy_weight


def test_importances_need_two_completed_trials_and_sum_to_one(default_cfg, defaults):
    one = _study_with([({"learning_rate": 0.005, "loss_kind": "bce"}, 0.25)], default_cfg, defaults)
    imp, why = param_importances(one)
    assert imp is None and "at least 2" in why
    trials = [({"learning_rate": lr, "loss_kind": "bce"}, lr * 10) for lr in (0.001, 0.002, 0.004, 0.008, 0.009)]
    imp, why = param_importances(_study_with(trials, default_cfg, defaults))
    assert "PED-ANOVA" in why and abs(sum(imp.values()) - 1) < 1e-6


# ---------------------------------------------------------------------------- pruning


def fake_training(log: list):
    """A stand-in for run_training: ignite engines whose validation score is learning_rate * epoch."""

    def train(overrides, config_file=None, evaluator_handlers=(), trainer_handlers=(), logging_file=None):
        from ignite.engine import Engine, Events

        trainer, evaluator = Engine(lambda e, b: None), Engine(lambda e, b: None)
        history = []

        def score(engine):
            engine.state.metrics["val_fbeta"] = overrides["learning_rate"] * trainer.state.epoch
            history.append({"epoch": trainer.state.epoch, "score": engine.state.metrics["val_fbeta"]})

        evaluator.add_event_handler(Events.EPOCH_COMPLETED, score)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
        for h in evaluator_handlers:
            h.attach(evaluator)
        for h in trainer_handlers:
            h.attach(trainer)
        trainer.run([0], max_epochs=overrides["max_epochs"])
        log.append(trainer.state.epoch)
        return {"best": max(h["score"] for h in history), "history": history}

    return train


def test_median_pruner_stops_a_bad_trial_through_the_handler(tmp_path, defaults):
    cfg = cfg_from({"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}, {"max_epochs": 5})
    epochs_run: list = []
    objective = make_objective(cfg, tmp_path, defaults=defaults, train_fn=fake_training(epochs_run))
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    for lr in (0.01, 0.02, 0.001):
        study.enqueue_trial({"learning_rate": lr})
    study.optimize(objective, n_trials=3)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    bad = study.trials[2]
    assert sorted(bad.intermediate_values) == list(range(1, epochs_run[2] + 1))  # reported at each trainer epoch
    assert epochs_run == [5, 5, 1]  # the trainer stopped at the first prunable epoch


@pytest.mark.parametrize("kind, cls", [("median", optuna.pruners.MedianPruner),
                                       ("hyperband", optuna.pruners.HyperbandPruner),
                                       ("none", optuna.pruners.NopPruner)])
def test_each_named_pruner_is_built(kind, cls):
    from cryo3d.workflows.tuning.pruning import make_pruner

    assert isinstance(make_pruner(kind, max_epochs=6), cls)


def test_an_unknown_pruner_is_rejected():
    from cryo3d.workflows.tuning.pruning import make_pruner

    with pytest.raises(ValueError, match="pruner"):
        make_pruner("asha")


def test_handler_without_a_trainer_raises_trial_pruned():
    from ignite.engine import Engine, Events

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    handler = OptunaPruningHandler(study.ask())
    evaluator = Engine(lambda e, b: None)
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(val_fbeta=0.1))
    handler.attach(evaluator)
    with pytest.raises(optuna.TrialPruned):
        evaluator.run([0])
    assert handler.pruned_epoch == 1


# ---------------------------------------------------------------------------- real studies (tiny training)


@pytest.fixture(scope="module")
def tiny_tune_yaml(tmp_path_factory):
    """The default search space with the tiny bundle settings and one shared dataset folder."""
    base = tmp_path_factory.mktemp("tune")
    cfg = yaml.safe_load(DEFAULT_TUNE_CONFIG.read_text())
    cfg["fixed"] = {**TINY, "dataset_dir": str(base / "data")}
    cfg["space"]["beta_schedule.warmup"]["high"] = 1  # warm-up must end before the 2-epoch runs do
    path = base / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, base


@pytest.fixture(scope="module")
def resumed_study(tiny_tune_yaml):
    """`cryo3d tune` with 1 trial, then again with --n-trials 2 (resumes), then again (nothing left)."""
    path, base = tiny_tune_yaml
    out = base / "runs"
    argv = ["tune", "--config", str(path), "--out", str(out), "--study-name", "s", "--quiet"]
    runs = []
    for n in (1, 2, 2):
        a = tune_parser().parse_args(argv + ["--n-trials", str(n)])
        t0 = time.perf_counter()
        assert cmd_tune(a) == 0
        runs.append(time.perf_counter() - t0)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{out / 's' / 'study.db'}")
    return study, out / "s", runs


def test_a_two_trial_study_runs_end_to_end_into_its_run_folder(resumed_study):
    study, run_dir, _ = resumed_study
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for t in study.trials:
        out = run_dir / f"trial_{t.number}"
        assert t.user_attrs["output_dir"] == str(out)
        assert (out / "checkpoints" / "best.pt").exists()
        hist = [json.loads(x) for x in (out / "val_metrics.jsonl").read_text().splitlines()]
        assert [h["epoch"] for h in hist] == [1, 2] and sorted(t.intermediate_values) == [1, 2]
        assert t.value == max(h["score"] for h in hist)
    text = (run_dir / "summary.txt").read_text()
    assert "2 complete" in text and "parameter importances" in text


def test_the_study_resumes_from_its_sqlite_file_up_to_n_trials(resumed_study):
    study, run_dir, runs = resumed_study
    assert [t.number for t in study.trials] == [0, 1]  # the second call added one trial, the third none
    assert sorted(p.name for p in run_dir.glob("trial_*")) == ["trial_0", "trial_1"]
    assert runs[2] < runs[1]
    assert study.trials[0].params != study.trials[1].params  # a resumed sampler does not replay its draws


def test_the_best_trial_is_exported_as_a_bundle_config_file(resumed_study):
    study, run_dir, _ = resumed_study
    best = yaml.safe_load((run_dir / "best_overrides.yaml").read_text())
    assert best == study.best_trial.user_attrs["overrides"]
    assert best["learning_rate"] == study.best_trial.params["learning_rate"]


def test_a_real_trial_is_pruned_and_its_training_stopped(tiny_tune_yaml):
    path, base = tiny_tune_yaml
    cfg = TuneConfig.load(path)
    cfg = TuneConfig({"learning_rate": cfg.space["learning_rate"]}, {**cfg.fixed, "max_epochs": 3})
    study = run_study(cfg, study_name="pruned", out=base / "runs", n_trials=1, quiet=True, heartbeat_interval=None,
                      pruner=optuna.pruners.ThresholdPruner(lower=1.01), print_fn=None)
    (t,) = study.trials
    assert t.state == TrialState.PRUNED and list(t.intermediate_values) == [1]
    lines = (base / "runs" / "pruned" / "trial_0" / "val_metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # max_epochs 3, stopped after the first validation


def test_a_killed_trial_is_failed_and_retried_with_its_parameters(tiny_tune_yaml):
    path, base = tiny_tune_yaml
    out = base / "runs"
    trial_dir = out / "killed" / "trial_0"
    cmd = [sys.executable, "-m", "cryo3d.workflows.tuning", "--config", str(path), "--out", str(out), "--study-name", "killed",
           "--n-trials", "1", "--quiet", "--heartbeat-interval", "1", "--grace-period", "2",
           "--fixed", "max_epochs=100", "early_stop_patience=100"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300  # generous: CI machines may be slow
        while time.time() < deadline and not (trial_dir / "val_metrics.jsonl").exists():
            assert proc.poll() is None, "the tuning process ended before it could be killed"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (trial_dir / "val_metrics.jsonl").exists(), "the trial never validated"
    time.sleep(5.0)  # well past the 2 s grace period (heartbeats are stored to the second): stale
    study = run_study(path, study_name="killed", out=out, n_trials=1, quiet=True, heartbeat_interval=1,
                      grace_period=2, fixed={"max_epochs": 2}, print_fn=None)
    killed, retry = study.trials
    assert killed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.params == killed.params and retried_trial_number(retry) == 0
    assert retry.user_attrs["output_dir"].endswith("trial_1")  # retrained from scratch in its own folder


# ---------------------------------------------------------------------------- command line


def test_the_tune_subcommand_parses_its_options():
    a = tune_parser().parse_args(["tune", "--n-trials", "8", "--pruner", "hyperband", "--storage",
                                  "postgresql://u:p@host/db", "--fixed", "max_epochs=4", "synth_shape=[64,64,64]"])
    assert a.func is cmd_tune and a.n_trials == 8 and a.pruner == "hyperband"
    assert a.storage == "postgresql://u:p@host/db" and a.config == str(DEFAULT_TUNE_CONFIG)
    from cryo3d.workflows.tuning.command import _parse_fixed

    assert _parse_fixed(a.fixed) == {"max_epochs": 4, "synth_shape": [64, 64, 64]}


def test_the_tune_subcommand_rejects_an_unknown_pruner():
    with pytest.raises(SystemExit):
        tune_parser().parse_args(["tune", "--pruner", "asha"])

"""Experiments on tiny budgets: folds, cross-validation without leaks, the ablation table, across-epoch evaluation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cryo3d.workflows.experiments.ablation import GROUPS, ablation_grid, run_ablation
from cryo3d.workflows.experiments.crossval import run_cross_validation
from cryo3d.workflows.experiments.epochs import ensure_ood, evaluate_epochs, run_eval_set
from cryo3d.workflows.experiments.folds import check_folds, ensure_folds, make_folds, source_tomograms
from cryo3d.workflows.experiments.handlers import checkpoint_paths
from cryo3d.workflows.experiments.history import epochs_to_convergence, summarize_history
from cryo3d.workflows.experiments.runs import base_overrides
from cryo3d.workflows.experiments.tables import parse_set

ROOT = Path(__file__).resolve().parents[1]

#: The tiny bundle settings of tests/test_bundle.py (64^3 tomograms binned to 32^3: one patch each).
TINY = {"write_report": False,  # the runs need no training report; it costs seconds each
        "patch_size": 32, "stride": 32, "network_name": "unet-tiny", "batch_size": 2, "num_workers": 0,
        "threads": 1}
TINY_BUDGET = {"max_epochs": 2, "epoch_length": 2, "val_interval": 1}
NAMES = [f"TS_{i}" for i in range(7)]


def _script(name: str):
    """Import scripts/<name>.py as a module (scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"scripts_{name}", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Three simulated 64^3 tomograms with picks (the built-in data, tiny)."""
    d = tmp_path_factory.mktemp("source")
    names = source_tomograms(d, n_synth=3, synth_shape=(64, 64, 64), progress=False)
    assert names == ["synth_000", "synth_001", "synth_002"]
    return d


@pytest.fixture(scope="module")
def cv_run(source, tmp_path_factory):
    """A real 3-fold cross-validation on tiny settings (2 epochs per fold, a checkpoint per epoch)."""
    run = tmp_path_factory.mktemp("cv")
    base = base_overrides(TINY_BUDGET, TINY)
    res = run_cross_validation(run, base, source, k=3, seed=0, progress=False)
    return run, res


def _fake_train(calls: list):
    """A stand-in for run_training: records its overrides and returns a rising validation history."""

    def train(overrides, trainer_handlers=()):
        calls.append(dict(overrides))
        hist = [{"epoch": e, "score": s, "thresholds": [0.3] * 2,
                 "per_class": {"a": {"fbeta": s}, "b": {"fbeta": s / 2}}} for e, s in ((1, 0.2), (2, 0.6), (3, 0.5))]
        out = Path(overrides["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "val_metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in hist))
        return {"history": hist, "best": 0.6, "output_dir": str(out), "best_checkpoint": None}

    return train


# ------------------------------------------------------------------------------------------ folds


def test_folds_put_every_tomogram_in_exactly_one_fold():
    folds = make_folds(NAMES, k=4, seed=3)
    flat = [n for f in folds for n in f]
    assert sorted(flat) == sorted(NAMES) and len(flat) == len(set(flat))
    assert sorted(len(f) for f in folds) == [1, 2, 2, 2]


def test_folds_depend_only_on_the_names_k_and_seed():
    assert make_folds(NAMES, 4, 1) == make_folds(list(reversed(NAMES)), 4, 1)
    assert make_folds(NAMES, 4, 1) != make_folds(NAMES, 4, 2)


def test_folds_need_at_least_k_tomograms():
    with pytest.raises(ValueError, match="needs at least 4 tomograms"):
        make_folds(NAMES[:3], k=4)


def test_check_folds_rejects_a_tomogram_in_two_folds():
    with pytest.raises(ValueError, match="TS_1"):
        check_folds([["TS_0", "TS_1"], ["TS_1", "TS_2"]], ["TS_0", "TS_1", "TS_2"])


def test_stored_folds_of_other_tomograms_are_refused(tmp_path):
    ensure_folds(tmp_path / "folds.json", NAMES, 4, 0)
    assert ensure_folds(tmp_path / "folds.json", NAMES, 4, 0) == make_folds(NAMES, 4, 0)
    with pytest.raises(ValueError, match="another run folder"):
        ensure_folds(tmp_path / "folds.json", NAMES[:5], 4, 0)


# ------------------------------------------------------------------------------------------ summaries


def test_epochs_to_convergence_is_the_first_epoch_within_95_percent_of_the_best():
    hist = [{"epoch": 1, "score": 0.1}, {"epoch": 2, "score": 0.58}, {"epoch": 3, "score": 0.6},
            {"epoch": 4, "score": 0.4}]
    assert epochs_to_convergence(hist) == 2
    assert epochs_to_convergence([{"epoch": 1, "score": 0.0}]) is None


def test_summary_reports_the_drop_from_best_to_final():
    hist = [{"epoch": 1, "score": 0.3, "per_class": {"a": {"fbeta": 0.1}}},
            {"epoch": 2, "score": 0.7, "per_class": {"a": {"fbeta": 0.9}}},
            {"epoch": 3, "score": 0.5, "per_class": {"a": {"fbeta": 0.4}}}]
    s = summarize_history(hist)
    assert (s["best"], s["best_epoch"], s["final"], s["final_epoch"]) == (0.7, 2, 0.5, 3)
    assert s["drop"] == pytest.approx(0.2) and s["f_a"] == 0.9


def test_set_values_are_read_as_yaml():
    assert parse_set(["batch_size=4", "network_overrides={se: false}", "pos_weight=null"]) == {
        "batch_size": 4, "network_overrides": {"se": False}, "pos_weight": None}


# ------------------------------------------------------------------------------------------ cross-validation


def test_cross_validation_folds_never_leak_a_tomogram(cv_run, source):
    run, res = cv_run
    folds = json.loads((run / "folds.json").read_text())["folds"]
    assert sorted(n for f in folds for n in f) == ["synth_000", "synth_001", "synth_002"]
    for i, val in enumerate(folds):
        stores = list((run / "data" / f"fold_{i}" / "store").glob("*/manifest.json"))
        assert stores
        for m in stores:
            held = {t["name"] for t in json.loads(m.read_text())["tomograms"]}
            assert held and not held & set(val)
        exp = json.loads((run / f"fold_{i}" / "experiment.json").read_text())["overrides"]
        assert exp["val_tomograms"] == val


def test_cross_validation_reports_mean_and_std_per_class(cv_run):
    run, res = cv_run
    summary = {r["metric"]: r for r in csv.DictReader(open(run / "cv_summary.csv"))}
    assert {"best", "final", "f_ribosome", "f_apo-ferritin"} <= set(summary)
    assert int(summary["best"]["n"]) == 3 and float(summary["best"]["std"]) >= 0
    assert "| ribosome |" in (run / "cv.md").read_text()
    assert (run / "plots" / "cv_curves.png").stat().st_size > 0


def test_cross_validation_skips_finished_folds(cv_run, source):
    run, _ = cv_run
    calls: list = []
    run_cross_validation(run, base_overrides(TINY_BUDGET, TINY), source, k=3, seed=0,
                         train_fn=_fake_train(calls), progress=False)
    assert calls == []


# ------------------------------------------------------------------------------------------ ablation


def test_ablation_runner_produces_its_table_on_a_tiny_grid(source, tmp_path):
    run = tmp_path / "abl"
    argv = ["--run", str(run), "--dataset-dir", str(source), "--k", "3", "--groups", "se", "--quiet",
            "--max-epochs", "2", "--epoch-length", "2", "--no-epoch-checkpoints",
            "--set", *[f"{k}={v}" for k, v in TINY.items() if k != "network_name"]]
    assert _script("ablation").main(argv) == 0
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert [r["run"] for r in rows] == ["se-se_on", "se-se_off"]
    assert all(0.0 <= float(r["best"]) <= 1.0 and r["f_ribosome"] != "" for r in rows)
    md = (run / "results.md").read_text()
    assert "## se" in md and "se_off" in md and "epochs to 95%" in md
    assert (run / "plots" / "se.png").stat().st_size > 0
    exp = json.loads((run / "runs" / "se-se_off" / "experiment.json").read_text())["overrides"]
    assert exp["network_overrides"] == {"fusion": "pc", "se": False} and exp["val_tomograms"] == make_folds(
        ["synth_000", "synth_001", "synth_002"], 3, 0)[0]


def test_ablation_rerun_skips_runs_whose_row_exists(source, tmp_path):
    grid = ablation_grid(["loss"], betas=[2.0])
    calls: list = []
    run_ablation(tmp_path, grid, {}, source, k=3, train_fn=_fake_train(calls), progress=False)
    assert len(calls) == 3
    run_ablation(tmp_path, grid, {}, source, k=3, train_fn=_fake_train(calls), progress=False)
    assert len(calls) == 3
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [(r["label"], r["best_epoch"], r["epochs_to_conv"]) for r in rows] == [
        ("bce", "2", "2"), ("combined_b2", "2", "2"), ("fuzzy_b2", "2", "2")]


def test_identical_settings_in_two_groups_train_once(source, tmp_path):
    grid = ablation_grid(["se", "fusion"])
    calls: list = []
    rows = run_ablation(tmp_path, grid, {}, source, k=3, train_fn=_fake_train(calls), progress=False)
    assert len(grid) == 5 and len(calls) == 4 and len(rows) == 5
    by = {r["run"]: r for r in rows}
    assert by["se-se_on"]["output_dir"] == by["fusion-pc"]["output_dir"]


def test_every_ablation_run_validates_on_fold_zero(source, tmp_path):
    calls: list = []
    run_ablation(tmp_path, ablation_grid(["loss"], betas=[1.0]), {}, source, k=3,
                 train_fn=_fake_train(calls), progress=False)
    fold0 = make_folds(["synth_000", "synth_001", "synth_002"], 3, 0)[0]
    assert all(c["val_tomograms"] == fold0 for c in calls)
    assert len({c["dataset_dir"] for c in calls}) == 1


# ------------------------------------------------------------------------------------------ across-epoch evaluation


def test_epoch_checkpoints_load_for_prediction_with_their_thresholds(cv_run):
    from cryo3d.inference import load_checkpoint_model

    run, _ = cv_run
    ckpts = checkpoint_paths(run / "fold_0" / "epochs")
    assert [e for e, _ in ckpts] == [1, 2]
    net, meta = load_checkpoint_model(ckpts[0][1])
    assert meta["network"]["name"] == "unet-tiny" and meta["patch_size"] == [32, 32, 32]
    assert len(meta["thresholds"]) == 6 and meta["voxel_spacing"] == 20.0


def test_across_epoch_evaluation_scores_every_checkpoint_on_validation_and_ood(cv_run, tmp_path):
    run, _ = cv_run
    ood = ensure_ood(tmp_path / "ood", n=1, shape=(64, 64, 64), progress=False)
    argv = [str(run / "fold_0"), "--ood-dir", str(ood), "--no-synth-ood", "--quiet"]
    assert _script("eval_epochs").main(argv) == 0
    out = run / "fold_0" / "epoch_eval"
    rows = list(csv.DictReader(open(out / "epoch_metrics.csv")))
    assert sorted({(r["epoch"], r["set"], r["mode"]) for r in rows}) == sorted(
        (e, s, m) for e in ("1", "2") for s in ("val", "ood") for m in ("checkpoint", "sweep"))
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert (out / "epoch_curves.png").stat().st_size > 0
    assert any(p.name.startswith("events") for p in (out / "tensorboard").iterdir())


def test_best_thresholds_never_score_below_the_checkpoint_thresholds(cv_run):
    run, _ = cv_run
    rows = evaluate_epochs(run / "fold_0", [run_eval_set(run / "fold_0")], run / "eval_val_only",
                           progress=False)
    by = {(r["epoch"], r["mode"]): r["score"] for r in rows}
    assert all(by[(e, "sweep")] >= by[(e, "checkpoint")] - 1e-9 for e in (1, 2))


def test_every_built_in_grid_run_is_a_valid_bundle_setting():
    from cryo3d.networks import build_network
    from cryo3d.schedules import BetaSchedule

    grid = ablation_grid(sorted(GROUPS), betas=[1.0, 4.0], max_epochs=8)
    assert len({r.name for r in grid}) == len(grid)
    for r in grid:
        if "beta_schedule" in r.overrides:
            BetaSchedule(**r.overrides["beta_schedule"])
        if "network_name" in r.overrides:
            build_network({"name": r.overrides["network_name"], "out_channels": 6, "ds_factor": 1,
                           **r.overrides["network_overrides"]})
    with pytest.raises(ValueError, match="unknown ablation group"):
        ablation_grid(["nope"])


def test_experiment_arguments_default_to_the_bundles_built_in_data():
    import argparse

    from cryo3d.workflows.bundle import raw_bundle_keys
    from cryo3d.workflows.experiments.arguments import add_common_arguments

    ap = argparse.ArgumentParser()
    add_common_arguments(ap, "runs/x")
    a = ap.parse_args([])
    keys = raw_bundle_keys()
    assert (a.n_synth, a.synth_preset) == (keys["n_synth_tomograms"], keys["synth_preset"])

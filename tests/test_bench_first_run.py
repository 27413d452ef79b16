"""The README's first run evaluates on tomograms the model never saw, and the bench runs exactly those commands."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from cryo3d.workflows.heldout import TEST_DIR

ROOT = Path(__file__).resolve().parents[1]
TRAIN_YAML = ROOT / "bundles" / "cryo3d_picker" / "configs" / "train.yaml"


def _bench():
    """scripts/bench_first_run.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("scripts_bench_first_run", ROOT / "scripts" / "bench_first_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_readme_trains_with_the_defaults_then_picks_and_scores_the_test_tomograms():
    steps = _bench().readme_steps((ROOT / "README.md").read_text())
    cfg = yaml.safe_load(TRAIN_YAML.read_text())
    test = f"{cfg['dataset_dir']}/{TEST_DIR}"
    assert steps["train"] == ["cryo3d", "train"]
    assert steps["predict"] == ["cryo3d", "predict", f"{cfg['output_dir']}/checkpoints/best.pt", f"{test}/tomograms",
                                "--out", "predictions"]
    assert steps["evaluate"] == ["cryo3d", "evaluate", "predictions/picks.csv", f"{test}/picks.csv"]


def test_the_readme_says_what_its_figure_means():
    text = " ".join((ROOT / "README.md").read_text().split())
    assert "is the CZII challenge's metric on those 4 unseen test tomograms" in text
    assert "at the thresholds chosen on validation (never on the test tomograms)" in text
    assert "A validation plateau ends the run early only after 60 % of its budget" in text


def test_a_readme_without_the_commands_is_a_clear_error():
    with pytest.raises(ValueError, match="README.md: no `cryo3d predict / evaluate` command in a bash block"):
        _bench().readme_steps("```bash\ncryo3d train\n```\n")


def test_commands_are_read_from_bash_blocks_with_chains_continuations_and_comments():
    readme = ("text cryo3d predict a b\n```bash\npip install . && cryo3d train\n```\n"
              "```bash\ncryo3d predict ckpt \\\n    tomos --out p   # a comment\ncryo3d evaluate p/picks.csv gt.csv\n```\n")
    steps = _bench().readme_steps(readme)
    assert steps == {"train": ["cryo3d", "train"], "predict": ["cryo3d", "predict", "ckpt", "tomos", "--out", "p"],
                     "evaluate": ["cryo3d", "evaluate", "p/picks.csv", "gt.csv"]}


def test_the_summary_gives_mean_spread_and_the_goals():
    runs = [{"score": 0.9, "train_min": 10.1, "budget_min": 10.0},
            {"score": 0.86, "train_min": 9.9, "budget_min": 10.0},
            {"score": 0.82, "train_min": 10.2, "budget_min": 10.0}]
    s = _bench().summarize(runs)
    assert s["mean"] == pytest.approx(0.86) and s["min"] == 0.82 and s["max"] == 0.9
    assert s["spread"] == pytest.approx(0.08)
    assert s["passed"]


def test_the_summary_fails_a_low_worst_seed_a_failed_seed_and_an_overrun():
    bench = _bench()
    low = bench.summarize([{"score": 0.95, "train_min": 10, "budget_min": 10},
                           {"score": 0.79, "train_min": 10, "budget_min": 10}])
    assert not low["goals"]["worst seed >= 0.8"] and low["goals"]["mean >= 0.85"] and not low["passed"]
    failed = bench.summarize([{"score": 0.9, "train_min": 10, "budget_min": 10}, {"error": "exited 2"}])
    assert not failed["goals"]["every seed ran the README's commands"]
    over = bench.summarize([{"score": 0.9, "train_min": 11, "budget_min": 10}])
    assert not over["passed"]

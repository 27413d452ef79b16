"""Every boolean key of every bundle config switches off when given as false, False, 0, no or off.

Issue 21, item 4: ``python -m monai.bundle run ... --write_report false`` hands the
*string* ``'false'`` over, which Python reads as true, so the report, the threshold sweep and
the heatmaps stayed on. The configs read their flags with :func:`cryo3d.options.parse_flag`;
these tests give each key through both command lines (``cryo3d train`` and MONAI's own,
Fire over ``monai.bundle.run``) and check the value where the config consumes it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import fire
import pytest
import yaml

from cryo3d import cli
from cryo3d.errors import Cryo3DError
from cryo3d.options import parse_flag
from cryo3d.workflows import bundle_commands
from cryo3d.workflows.bundle import bundle_dir, config_path, parse_bundle

FALSE_WORDS = ["false", "False", "0", "no", "off"]
TRUE_WORDS = ["true", "True", "1", "yes", "on"]
#: The runner's own arguments (not config keys) in what both command lines hand to monai.bundle.run.
RUNNER_ARGS = ("run_id", "meta_file", "config_file", "logging_file")
#: The MONAI configs of the bundle and the configs they are run on top of.
MONAI_CONFIGS = {"train.yaml": [], "evaluate.yaml": [], "inference.yaml": [], "multi_gpu_train.yaml": ["train.yaml"]}
#: The flags a user sets (top-level keys) and the config item each is consumed in.
TOP_LEVEL_FLAGS = {("train.yaml", "write_report"), ("evaluate.yaml", "sweep"), ("inference.yaml", "write_heatmaps")}


def _boolean_keys(node: Any, path: str = "") -> list[str]:
    """Every ``#`` path of ``node`` whose value is a YAML boolean."""
    if isinstance(node, bool):
        return [path]
    if isinstance(node, dict):
        return [k for key, v in node.items() for k in _boolean_keys(v, f"{path}#{key}" if path else str(key))]
    if isinstance(node, list):
        return [k for i, v in enumerate(node) for k in _boolean_keys(v, f"{path}#{i}" if path else str(i))]
    return []


def _all_boolean_keys() -> list[tuple[str, str]]:
    configs = sorted(p.name for p in (bundle_dir() / "configs").glob("*.yaml"))
    # tune.yaml is the Optuna search space read by `cryo3d tune`, not a MONAI config: nothing there is a run option
    assert set(configs) == set(MONAI_CONFIGS) | {"tune.yaml"}, "a new bundle config: list it in MONAI_CONFIGS"
    return [(name, key) for name in MONAI_CONFIGS
            for key in _boolean_keys(yaml.safe_load(config_path(name).read_text()))]


BOOLEAN_KEYS = _all_boolean_keys()
NESTED_KEYS = [(c, k) for c, k in BOOLEAN_KEYS if (c, k) not in TOP_LEVEL_FLAGS]


def _files(config: str) -> list[str]:
    return [str(config_path(c)) for c in (*MONAI_CONFIGS[config], config)]


def _monai_cli_overrides(config: str, words: list[str]) -> dict:
    """The config overrides MONAI's own CLI (Fire over monai.bundle.run) makes of these words."""
    seen: dict = {}

    def run(run_id=None, init_id=None, final_id=None, meta_file=None, config_file=None, logging_file=None,
            tracking=None, args_file=None, **override):
        seen.update(override)

    fire.Fire({"run": run}, command=["run", "training", "--config_file", repr(_files(config)), *words])
    return seen


def _cryo3d_train_overrides(monkeypatch, tmp_path, config: str, words: list[str]) -> dict:
    """The config overrides ``cryo3d train`` hands to monai.bundle.run for these words."""
    seen: dict = {}
    monkeypatch.setattr(bundle_commands, "run_bundle", lambda **kw: seen.update(kw))
    assert cli.main(["train", "--output-dir", str(tmp_path / "run"), "--config-file", *_files(config), *words]) == 0
    return {k: v for k, v in seen.items() if k not in RUNNER_ARGS}


def _consumed(monkeypatch, config: str, key: str, overrides: dict) -> Any:
    """The flag's value where the config uses it, resolved as the run resolves it (nothing is trained)."""
    parser = parse_bundle(_files(config), overrides)
    if key == "write_report":
        return parser.get_parsed_content("report#enabled")
    seen: dict = {}
    if key == "sweep":
        import cryo3d.evaluation

        monkeypatch.setattr(cryo3d.evaluation, "evaluate_files", lambda *a, **kw: seen.update(kw) or {"text": ""})
        parser.get_parsed_content("report")
        return seen["sweep"]
    if key == "write_heatmaps":
        import cryo3d.inference
        import cryo3d.io.tomogram
        import cryo3d.workflows.bundle_models

        monkeypatch.setattr(cryo3d.io.tomogram, "find_tomograms", lambda paths: [])
        monkeypatch.setattr(cryo3d.workflows.bundle_models, "bundle_checkpoint", lambda ckpt, root: "model.pt")
        monkeypatch.setattr(cryo3d.inference, "predict", lambda *a, **kw: seen.update(kw) or [])
        parser.get_parsed_content("picks")
        return seen["write_heatmaps"]
    raise AssertionError(f"{config}: {key}: no consumer known")


def test_the_bundle_configs_have_the_boolean_keys_these_tests_cover():
    assert TOP_LEVEL_FLAGS <= set(BOOLEAN_KEYS) and len(NESTED_KEYS) >= 10


@pytest.mark.parametrize("word", FALSE_WORDS)
@pytest.mark.parametrize(("config", "key"), sorted(TOP_LEVEL_FLAGS))
def test_a_flag_given_as_a_false_word_through_monai_bundle_run_switches_it_off(monkeypatch, config, key, word):
    assert _consumed(monkeypatch, config, key, _monai_cli_overrides(config, [f"--{key}", word])) is False


@pytest.mark.parametrize("word", TRUE_WORDS)
@pytest.mark.parametrize(("config", "key"), sorted(TOP_LEVEL_FLAGS))
def test_a_flag_given_as_a_true_word_through_monai_bundle_run_switches_it_on(monkeypatch, config, key, word):
    assert _consumed(monkeypatch, config, key, _monai_cli_overrides(config, [f"--{key}", word])) is True


@pytest.mark.parametrize(("config", "key"), sorted(TOP_LEVEL_FLAGS))
def test_a_flag_given_as_another_word_is_an_error_naming_it(monkeypatch, config, key):
    with pytest.raises(RuntimeError) as info:  # MONAI wraps it; cryo3d train unwraps it (test_train_errors)
        _consumed(monkeypatch, config, key, _monai_cli_overrides(config, [f"--{key}", "maybe"]))
    assert isinstance(info.value.__cause__, Cryo3DError) and str(info.value.__cause__).startswith(f"{key}: expected true")


@pytest.mark.parametrize("word", FALSE_WORDS)
def test_write_report_given_as_a_false_word_through_cryo3d_train_switches_it_off(monkeypatch, tmp_path, word):
    over = _cryo3d_train_overrides(monkeypatch, tmp_path, "train.yaml", ["--write_report", word])
    assert over == _monai_cli_overrides("train.yaml", ["--output_dir", str(tmp_path / "run"), "--write_report", word])
    assert _consumed(monkeypatch, "train.yaml", "write_report", over) is False


def test_write_report_given_as_another_word_through_cryo3d_train_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bundle_commands, "run_bundle", lambda **kw: pytest.fail("the run started"))
    assert cli.main(["train", "--output-dir", str(tmp_path), "--write_report", "nope"]) == 2
    assert "write_report: expected true or false" in capsys.readouterr().err


@pytest.mark.parametrize("word", ["false", "False", "0", "no"])
@pytest.mark.parametrize(("config", "key"), NESTED_KEYS)
def test_a_component_flag_given_as_a_false_word_through_cryo3d_train_reaches_it_as_false(
        monkeypatch, tmp_path, config, key, word):
    over = _cryo3d_train_overrides(monkeypatch, tmp_path, config, [f"--{key}", word])
    assert over[key] is False
    assert parse_bundle(_files(config), over).get(key) is False  # the component is built with the boolean


@pytest.mark.parametrize("word", ["false", "no", "0"])
def test_the_se_flag_of_sefpn_given_as_a_false_word_builds_no_se_blocks(word):
    from cryo3d.networks import build_network

    net = build_network({"name": "sefpn-tiny", "out_channels": 2, "se": parse_flag(word, "se") if word == "0" else word})
    assert not any(type(m).__name__ == "ChannelSELayer" for m in net.modules())


def test_a_tiny_training_run_through_monai_bundle_run_with_write_report_no_writes_no_report(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--meta_file", str(config_path("metadata.json")),
           "--config_file", str(config_path("train.yaml")), "--logging_file", str(config_path("logging.conf")),
           "--dataset_dir", str(tmp_path / "data"), "--output_dir", str(out), "--write_report", "no",
           "--n_synth_tomograms", "2", "--synth_shape", "[64,64,64]", "--patch_size", "32", "--stride", "32",
           "--network_name", "unet-tiny", "--batch_size", "2", "--num_workers", "0", "--epoch_length", "2",
           "--val_interval", "1", "--threads", "1", "--time_budget", "null", "--max_epochs", "1"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (out / "checkpoints" / "best.pt").is_file() and not (out / "report").exists()
    assert not Path(out / "train_metrics.jsonl").exists()  # the report handler records nothing when off


def _initialize_check_keys(config: str) -> set[str]:
    """The keys the config's first ``initialize`` step checks (:func:`cryo3d.options.check_component_flags`)."""
    first = yaml.safe_load(config_path(config).read_text())["initialize"][0]
    assert first.startswith("$cryo3d.options.check_component_flags(")
    return set(re.findall(r"'([\w#]+)': @", first))


@pytest.mark.parametrize("config", ["train.yaml", "multi_gpu_train.yaml"])
def test_the_training_configs_check_every_nested_boolean_they_run_with(config):
    runs_with = {k for c, k in NESTED_KEYS if c in (config, *MONAI_CONFIGS[config])}
    assert _initialize_check_keys(config) == runs_with


@pytest.mark.parametrize("word", ["False", "0"])
@pytest.mark.parametrize(("config", "key"), NESTED_KEYS)
def test_a_component_flag_given_as_false_or_0_through_monai_bundle_run_switches_it_off(config, key, word):
    parser = parse_bundle(_files(config), _monai_cli_overrides(config, [f"--{key}", word]))
    parser.get_parsed_content("initialize#0")  # accepted
    assert not parser.get_parsed_content(key)


@pytest.mark.parametrize("word", ["false", "no"])
@pytest.mark.parametrize(("config", "key"), NESTED_KEYS)
def test_a_component_flag_given_as_a_lowercase_word_through_monai_bundle_run_stops_the_run_naming_it(config, key, word):
    # MONAI hands the word to the component as a string (which reads as true): the run stops before it trains
    parser = parse_bundle(_files(config), _monai_cli_overrides(config, [f"--{key}", word]))
    with pytest.raises(RuntimeError) as info:
        parser.get_parsed_content("initialize#0")
    assert isinstance(info.value.__cause__, Cryo3DError) and str(info.value.__cause__).startswith(f"{key}: '{word}'")

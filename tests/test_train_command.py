"""``cryo3d train`` is ``python -m monai.bundle run training`` with the shipped configs."""

from __future__ import annotations

import subprocess
import sys

import fire
import pytest

from cryo3d import cli
from cryo3d.errors import Cryo3DError
from cryo3d.workflows import bundle_commands
from cryo3d.workflows.bundle import config_path


def _capture_train(monkeypatch, argv: list[str]) -> dict:
    seen: dict = {}
    monkeypatch.setattr(bundle_commands, "run_bundle", lambda **kw: seen.update(kw))
    assert cli.main(["train", *argv]) == 0
    return seen


def _monai_cli_kwargs(argv: list[str]) -> dict:
    """What MONAI's own CLI (Fire over monai.bundle.run) hands the runner for these words."""
    seen: dict = {}

    def run(run_id=None, init_id=None, final_id=None, meta_file=None, config_file=None, logging_file=None,
            tracking=None, args_file=None, **override):
        seen.update(run_id=run_id, meta_file=meta_file, config_file=config_file, logging_file=logging_file, **override)

    fire.Fire({"run": run}, command=["run", *argv])
    return seen




def test_cryo3d_train_and_the_monai_command_make_the_same_call(monkeypatch):
    overrides = ["--max_epochs", "2", "--synth_shape", "[64,64,64]", "--network_name", "unet-tiny",
                 "--learning_rate", "1e-3", "--time_budget", "null", "--pretrained", "none"]
    ours = _capture_train(monkeypatch, ["--dataset-dir", "d", "--output-dir", "o", *overrides])
    theirs = _monai_cli_kwargs(["training", "--meta_file", str(config_path("metadata.json")),
                                "--config_file", str(config_path("train.yaml")),
                                "--logging_file", str(config_path("logging.conf")),
                                "--dataset_dir", "d", "--output_dir", "o", *overrides])
    assert ours == theirs


def test_dashed_keys_become_the_config_keys():
    assert bundle_commands.parse_overrides(["--network-name=unet-small", "--val_fraction", "0.2"]) == {
        "network_name": "unet-small", "val_fraction": 0.2}


def test_a_dollar_expression_on_the_command_line_is_refused():
    with pytest.raises(Cryo3DError, match="expression"):
        bundle_commands.parse_overrides(["--max_epochs", "$__import__('os').getcwd()"])


def test_a_key_without_a_value_is_an_error_naming_it():
    with pytest.raises(Cryo3DError, match="--max_epochs"):
        bundle_commands.parse_overrides(["--max_epochs"])


def test_config_files_given_the_monai_way_replace_the_shipped_ones(monkeypatch, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("max_epochs: 1\n")
    seen = _capture_train(monkeypatch, ["--config_file", str(extra)])
    assert seen["config_file"] == str(extra)
    assert set(seen) == {"run_id", "meta_file", "config_file", "logging_file"}  # not also passed as a config key


def test_unknown_options_of_other_commands_are_still_errors(capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "a.csv", "b.csv", "--bogus", "1"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_bundle_path_prints_the_installed_bundle(capsys):
    assert cli.main(["bundle-path", "train.yaml"]) == 0
    assert capsys.readouterr().out.strip() == str(config_path("train.yaml"))


def test_building_the_command_line_imports_no_torch_monai_or_optuna():
    # every command's startup (and cryo3d --help) pays what the parser imports
    code = ("import sys, cryo3d.cli as c; c.build_parser(); "
            "print([m for m in ('torch', 'monai', 'optuna', 'ignite') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

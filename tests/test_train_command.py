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


def _cryo3d(args: list[str], cwd) -> subprocess.CompletedProcess:
    """The installed command line, as a user runs it."""
    code = "import sys; from cryo3d.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _code_values(marker) -> dict[str, list[str]]:
    """Command-line values that would run ``touch MARKER`` if MONAI read them as config (findings 5-7)."""
    touch = f'__import__("os").system("touch {marker}")'
    return {
        "target_in_network_overrides": ["--network_overrides", f"{{'_target_': 'os.system', 'command': 'touch {marker}'}}"],
        "macro_as_network_name": ["--network_name", f"%{marker.parent / 'ref.yaml'}#x"],
        "nested_expression_in_network_overrides": ["--network_overrides", f"{{'fusion': '${touch}'}}"],
        "expression_in_a_list": ["--val_tomograms", f"['synth_000', '${touch}']"],
        "reference_as_a_value": ["--pretrained", "@ref_x"],
        "target_as_a_key_path": ["--train#dataset#_target_", "os.system"],
        "expression_as_output_dir": ["--output-dir", f"${touch}"],
        "expression_as_dataset_dir": ["--dataset-dir", f"${touch}"],
    }


@pytest.mark.parametrize("case", list(_code_values(__import__("pathlib").Path("m"))))
def test_code_given_as_a_train_value_is_refused_in_one_line_and_never_runs(tmp_path, case):
    marker = tmp_path / "marker"
    (tmp_path / "ref.yaml").write_text(f"x: \"$__import__('os').system('touch {marker}')\"\nref_x: 1\n")
    r = _cryo3d(["train", "--output-dir", str(tmp_path / "out"), *_code_values(marker)[case]], cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert not marker.exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cryo3d train: error: ") and "data" in lines[0], r.stderr


def test_an_expression_nested_in_a_dict_value_is_refused():
    with pytest.raises(Cryo3DError, match=r"network_overrides \(at fusion#0\)"):
        bundle_commands.parse_overrides(["--network_overrides", "{'fusion': ['$print(1)']}"])


def test_an_unknown_network_name_is_refused_before_the_run(monkeypatch, capsys):
    monkeypatch.setattr(bundle_commands, "run_bundle", lambda **kw: pytest.fail("the run started"))
    assert cli.main(["train", "--network_name", "unet-huge"]) == 2
    err = capsys.readouterr().err
    assert "network_name: unknown network 'unet-huge'" in err and "unet-small" in err


def test_a_network_override_the_chosen_network_does_not_take_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(bundle_commands, "run_bundle", lambda **kw: pytest.fail("the run started"))
    assert cli.main(["train", "--network_name", "unet-tiny", "--network_overrides", "{'fusion': 'cascade'}"]) == 2
    err = capsys.readouterr().err
    assert "network_overrides: 'fusion' is not an argument of UNet3D" in err and "num_res_units" in err


def test_a_network_override_of_a_key_the_bundle_sets_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(bundle_commands, "run_bundle", lambda **kw: pytest.fail("the run started"))
    assert cli.main(["train", "--network_overrides", "{'out_channels': 3}"]) == 2
    assert "network_overrides: 'out_channels' is set by the bundle" in capsys.readouterr().err


def test_valid_network_overrides_of_the_chosen_family_pass(monkeypatch, tmp_path):
    seen = _capture_train(monkeypatch, ["--output-dir", str(tmp_path), "--network_name", "sefpn-tiny",
                                        "--network_overrides", "{fusion: cascade, se: false}"])
    assert seen["network_overrides"] == {"fusion": "cascade", "se": "false"}  # as MONAI's CLI hands it over

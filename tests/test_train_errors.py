"""``cryo3d train`` fails like every other command: one line ``cryo3d train: error: ...``, exit 2.

Issue 20, finding 13: a read-only output folder, a bad ``--pretrained``, a corrupt resume
checkpoint, an unknown network and a full disk each gave a 48-101-line traceback ending in
MONAI's ``Failed to evaluate ConfigExpression`` and exit 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cryo3d import cli
from cryo3d.errors import Cryo3DError
from cryo3d.workflows import bundle_commands
from cryo3d.workflows.train_checks import unwrap_bundle_error

#: A training small enough for 2 shared cores (seconds): 2 tomograms of 64^3, 1 epoch of 2 steps.
TINY = ["--n_synth_tomograms", "2", "--synth_shape", "[64,64,64]", "--patch_size", "32", "--stride", "32",
        "--network_name", "unet-tiny", "--batch_size", "2", "--num_workers", "0", "--epoch_length", "2",
        "--val_interval", "1", "--threads", "1", "--time_budget", "null", "--write_report", "false",
        "--max_epochs", "1"]


def _cryo3d_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; from cryo3d.cli import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code, "train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def _error_line(stderr: str) -> str:
    """The one error line; every other stderr line may only be a warning."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [x for x in stderr.splitlines() if not x.startswith("cryo3d: warning:")]
    assert len(errors) == 1 and errors[0].startswith("cryo3d train: error: "), stderr[-3000:]
    return errors[0]


def _refused_before_the_run(monkeypatch, capsys, argv: list[str]) -> str:
    monkeypatch.setattr(bundle_commands, "run_bundle", lambda **kw: pytest.fail("the run started"))
    assert cli.main(["train", *argv]) == 2
    return _error_line(capsys.readouterr().err)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished tiny run: its data folder and run folder (with last_checkpoint_epoch=1.pt)."""
    base = tmp_path_factory.mktemp("tiny")
    r = _cryo3d_train(["--dataset-dir", str(base / "data"), "--output-dir", str(base / "run"), *TINY], cwd=base)
    assert r.returncode == 0, r.stderr[-3000:]
    return base / "data", base / "run"


def test_a_read_only_output_dir_is_one_line_naming_it(monkeypatch, capsys):
    line = _refused_before_the_run(monkeypatch, capsys, ["--output-dir", "/proc/sys/cryo3d-run"])
    assert "output_dir: /proc/sys is not writable" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a folder without write permission")
def test_an_output_dir_without_write_permission_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    line = _refused_before_the_run(monkeypatch, capsys, ["--output-dir", str(locked / "run")])
    assert f"output_dir: {locked} is not writable" in line


def test_an_output_dir_that_is_a_file_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    line = _refused_before_the_run(monkeypatch, capsys, ["--output-dir", str(f)])
    assert f"output_dir: {f} is a file" in line and f.read_text() == "mine"


def test_a_missing_pretrained_file_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    line = _refused_before_the_run(monkeypatch, capsys, ["--output-dir", str(tmp_path / "run"),
                                                         "--pretrained", str(tmp_path / "nope.pt")])
    assert f"pretrained: {tmp_path / 'nope.pt'}: no such weights file" in line


def test_a_pretrained_file_that_is_not_weights_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "weights.pt"
    bad.write_text("not weights")
    line = _refused_before_the_run(monkeypatch, capsys, ["--output-dir", str(tmp_path / "run"), "--pretrained", str(bad)])
    assert f"pretrained: {bad}: not a cryo3d pretrained-weights file" in line


def test_an_unknown_network_name_is_one_line_through_the_real_command(tmp_path):
    r = _cryo3d_train(["--output-dir", str(tmp_path / "run"), "--network_name", "nonsense"], cwd=tmp_path)
    assert r.returncode == 2
    assert "network_name: unknown network 'nonsense'; expected one of" in _error_line(r.stderr)
    assert not (tmp_path / "data").exists()  # refused before any data was made


def test_a_corrupt_resume_checkpoint_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    ck = tmp_path / "run" / "checkpoints" / "last_checkpoint_epoch=3.pt"
    ck.parent.mkdir(parents=True)
    with zipfile.ZipFile(ck, "w") as z:  # a whole zip file (so it is the one resumed from) with garbage inside
        z.writestr("archive/data.pkl", b"not a pickle")
    line = _refused_before_the_run(monkeypatch, capsys, ["--output-dir", str(tmp_path / "run")])
    assert f"{ck}: not a PyTorch checkpoint" in line


def test_resuming_with_another_network_is_one_line_naming_the_checkpoint(monkeypatch, capsys, tmp_path, trained_run):
    _, run = trained_run
    line = _refused_before_the_run(monkeypatch, capsys, ["--output-dir", str(run), "--network_name", "unet-small"])
    assert "last_checkpoint_epoch=1.pt" in line and "network_name 'unet-tiny', but network_name is 'unet-small'" in line


def test_a_full_disk_during_training_is_one_line_naming_the_run_folder(tmp_path, trained_run):
    data, _ = trained_run
    run = tmp_path / "run"
    run.mkdir()
    (run / "val_metrics.jsonl").symlink_to("/dev/full")  # every write there fails with ENOSPC, as on a full disk
    r = _cryo3d_train(["--dataset-dir", str(data), "--output-dir", str(run), *TINY], cwd=tmp_path)
    assert r.returncode == 2
    line = _error_line(r.stderr)
    assert f"output_dir {run}" in line and "No space left on device" in line


def test_an_expected_error_inside_a_config_expression_is_unwrapped():
    from monai.bundle import ConfigParser

    import cryo3d.options  # noqa: F401 - the parser's globals name the package

    parser = ConfigParser({"flag": "$cryo3d.options.parse_flag('maybe', 'write_report')", "run": "$[@flag]"},
                          globals={"cryo3d": "cryo3d"})
    with pytest.raises(RuntimeError, match="Failed to evaluate") as info:  # wrapped twice: run, then flag
        parser.get_parsed_content("run")
    root = unwrap_bundle_error(info.value)
    assert isinstance(root, Cryo3DError) and str(root).startswith("write_report: expected true or false")


def test_a_bug_inside_a_config_expression_keeps_its_traceback():
    from monai.bundle import ConfigParser

    with pytest.raises(RuntimeError, match="Failed to evaluate") as info:
        ConfigParser({"y": "$1 // 0"}).get_parsed_content("y")
    assert unwrap_bundle_error(info.value) is info.value


def test_a_config_file_that_is_not_yaml_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "extra.yaml"
    bad.write_text("max_epochs: [1\n")
    line = _refused_before_the_run(monkeypatch, capsys, ["--output-dir", str(tmp_path / "run"), "--config-file", str(bad)])
    assert f"{bad}: not a valid YAML bundle config" in line

import subprocess
import sys

import pytest

from cryo3d.cli import main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("synth", "prepare", "evaluate"):
        assert cmd in out


def test_synth_prepare_evaluate_chain_works(tmp_path, capsys):
    data, store = tmp_path / "synth", tmp_path / "store"
    assert main(["synth", "--out", str(data), "--n", "2", "--shape", "32", "64", "64",
                 "--particles-per-class", "2", "--quiet"]) == 0
    assert (data / "picks.csv").exists() and (data / "copick" / "ExperimentRuns").is_dir()
    assert main(["prepare", "--data", str(data), "--out", str(store), "--patch-size", "32",
                 "--stride", "32", "--quiet"]) == 0
    assert (store / "manifest.json").exists()
    capsys.readouterr()
    assert main(["evaluate", str(data / "picks.csv"), str(data / "picks.csv"), "--sweep"]) == 0
    out = capsys.readouterr().out
    assert "ribosome" in out and "1.0000" in out


def test_prepare_reports_a_missing_spacing_override_error_cleanly(tmp_path, capsys):
    import numpy as np

    from cryo3d.io.tomogram import write_mrc

    write_mrc(tmp_path / "t.mrc", np.random.default_rng(0).normal(size=(8, 8, 8)).astype("f4"), 10.0)
    (tmp_path / "p.csv").write_text("tomo,class,x,y,z\nt,not-a-class,10,10,10\n")
    code = main(["prepare", "--tomograms", str(tmp_path / "t.mrc"), "--picks", str(tmp_path / "p.csv"),
                 "--out", str(tmp_path / "s"), "--patch-size", "8", "--quiet"])
    assert code == 2
    assert "not-a-class" in capsys.readouterr().err


def test_console_script_module_runs():
    r = subprocess.run([sys.executable, "-m", "cryo3d.cli", "synth", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--preset" in r.stdout

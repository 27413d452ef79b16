"""Two trainings into one output folder: the second is refused before it reads or writes anything."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cryo3d.errors import Cryo3DError
from cryo3d.io.output_guard import hold_output, output_lock, release_output
from cryo3d.workflows.run import run_training


def test_a_training_into_a_folder_another_run_holds_is_refused_before_any_work(tmp_path):
    out, data = tmp_path / "run", tmp_path / "data"
    with output_lock(out, "train"):  # another run holds the folder
        with pytest.raises(Exception) as info:
            run_training({"dataset_dir": str(data), "output_dir": str(out), "write_report": False})
    causes, e = [], info.value
    while e is not None:  # MONAI wraps what a bundle expression raises
        causes.append(e)
        e = e.__cause__ or e.__context__
    assert any(isinstance(c, Cryo3DError) and "in use by another cryo3d train run" in str(c) for c in causes)
    assert not data.exists()  # refused before simulating or reading any data
    assert not (out / "val_metrics.jsonl").exists()


def test_a_held_output_folder_is_given_back_and_can_be_held_again(tmp_path):
    hold_output(tmp_path, "train")
    hold_output(tmp_path, "train")  # this process holds it already: a no-op
    with pytest.raises(Exception, match="in use"):
        with output_lock(tmp_path, "predict"):
            pass
    release_output(tmp_path)
    with output_lock(tmp_path, "predict"):
        pass


def test_cryo3d_train_into_a_held_folder_says_so_in_one_line(tmp_path):
    out = tmp_path / "run"
    with output_lock(out, "train"):
        r = subprocess.run([sys.executable, "-m", "cryo3d.cli", "train", "--dataset-dir", str(tmp_path / "data"),
                            "--output-dir", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [x for x in r.stderr.splitlines() if "error" in x]
    assert len(lines) == 1 and "in use by another cryo3d train run" in lines[0], r.stderr[-2000:]

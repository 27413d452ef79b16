"""An output path never deletes or overwrites a file that the command did not write (issue 20).

Per finding one test, then a property-style sweep: every command with its output set to
each of its inputs and to a folder holding a sentinel file leaves every input and sentinel
byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cryo3d.cli import main
from cryo3d.io.output_guard import hold_temp, output_lock
from cryo3d.io.tomogram import write_mrc
from cryo3d.networks import build_network
from cryo3d.particles import CZII_PARTICLES

NET = {"name": "unet-tiny", "out_channels": 6, "ds_factor": 2}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"network": build_network(dict(NET)).state_dict(), "cryo3d": {
        "network": dict(NET), "particles": CZII_PARTICLES.to_dict(), "voxel_spacing": 10.0,
        "patch_size": [32, 32, 32], "ds_factor": 2}}, path)
    return path


@pytest.fixture
def data(tmp_path, small_synth) -> Path:
    """A private copy of the small synth data folder (tomograms/, picks.csv, manifest.json, ...)."""
    d = tmp_path / "data"
    shutil.copytree(small_synth[0], d)
    return d


def _snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the roots (files or folders)."""
    out = {}
    for r in roots:
        files = [r] if r.is_file() else sorted(p for p in r.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _sentinel(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    s = folder / "thesis.txt"
    s.write_text("four years of work\n")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "gt.csv").write_text("tomo,x,y,z\n")
    return folder


def _tomo(folder: Path, name: str = "TS_1") -> Path:
    rng = np.random.default_rng(0)
    p = folder / f"{name}.mrc"
    folder.mkdir(parents=True, exist_ok=True)
    write_mrc(p, rng.standard_normal((24, 28, 32)).astype(np.float32), 10.0)
    return p


def _predict(checkpoint, tomos, out, *extra) -> int:
    return main(["predict", str(checkpoint), *map(str, tomos), "--out", str(out), "--threshold", "0",
                 "--device", "cpu", "--quiet", *extra])


# --------------------------------------------------------------------------- finding 1: prepare


def _prepare(data: Path, out: Path, *extra) -> int:
    return main(["prepare", "--tomograms", str(data / "tomograms"), "--picks", str(data / "picks.csv"),
                 "--out", str(out), "--patch-size", "32", "--stride", "32", "--quiet", *extra])


def test_prepare_into_the_data_folder_refuses_and_keeps_every_file(data, capsys):
    before = _snapshot(data)
    assert _prepare(data, data) == 2
    assert _prepare(data, data, "--overwrite") == 2
    assert _snapshot(data) == before
    assert "not a cryo3d store" in capsys.readouterr().err


def test_prepare_into_a_folder_of_other_files_refuses_even_with_overwrite(data, tmp_path):
    folder = _sentinel(tmp_path / "mine")
    before = _snapshot(folder)
    assert _prepare(data, folder) == 2
    assert _prepare(data, folder, "--overwrite") == 2
    assert _snapshot(folder) == before


def test_prepare_overwrite_replaces_its_own_store_but_not_one_holding_user_files(data, tmp_path):
    store = tmp_path / "store"
    assert _prepare(data, store) == 0
    assert _prepare(data, store, "--overwrite") == 0
    assert json.loads((store / "manifest.json").read_text())["kind"] == "cryo3d-patch-store"
    (store / "notes.txt").write_text("mine")
    assert _prepare(data, store, "--overwrite") == 2
    assert (store / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- finding 2: evaluate


def test_evaluate_with_json_on_the_ground_truth_refuses_and_keeps_it(data, capsys):
    gt = data / "picks.csv"
    before = gt.read_bytes()
    assert main(["evaluate", str(gt), str(gt), "--json", str(gt)]) == 2
    assert gt.read_bytes() == before
    assert "overwrite" in capsys.readouterr().err


# --------------------------------------------------------------------------- finding 3: predict picks.csv


def test_predict_refuses_a_picks_csv_replaced_since_it_wrote_it(tmp_path, checkpoint, data):
    t = _tomo(tmp_path / "in")
    out = tmp_path / "res"
    assert _predict(checkpoint, [t], out) == 0
    shutil.copy(data / "picks.csv", out / "picks.csv")  # the user's ground truth, put in by hand
    before = (out / "picks.csv").read_bytes()
    assert _predict(checkpoint, [t], out) == 2
    assert (out / "picks.csv").read_bytes() == before


def test_predict_rerun_into_its_own_results_still_works(tmp_path, checkpoint):
    t = _tomo(tmp_path / "in")
    out = tmp_path / "res"
    assert _predict(checkpoint, [t], out) == 0
    assert _predict(checkpoint, [t], out) == 0


# --------------------------------------------------------------------------- finding 4 and 9: report


def _report(data: Path, out: Path) -> int:
    tomo = sorted((data / "tomograms").glob("*.mrc"))[0]
    return main(["report", str(tomo), str(data / "picks.csv"), "--gt", str(data / "picks.csv"), "--out", str(out)])


def test_report_over_a_report_holding_user_files_refuses_and_keeps_them(data, tmp_path):
    rep = tmp_path / "R"
    assert _report(data, rep) == 0
    (rep / "notes.txt").write_text("my notes")
    (rep / "mydata").mkdir()
    (rep / "mydata" / "x.csv").write_text("1")
    assert _report(data, rep) == 2
    assert (rep / "notes.txt").read_text() == "my notes" and (rep / "mydata" / "x.csv").read_text() == "1"


def test_report_over_its_own_report_replaces_it(data, tmp_path):
    rep = tmp_path / "R"
    assert _report(data, rep) == 0
    assert _report(data, rep) == 0
    assert "files" in json.loads((rep / "report.json").read_text())


def test_report_removes_temporary_folders_of_killed_runs_but_not_held_ones(data, tmp_path):
    stale = tmp_path / ".R.tmp-0123456789"
    live = tmp_path / ".R.tmp-abcdef0123"
    other = tmp_path / ".Rx.tmp-0123456789"  # another report's: not ours to remove
    for d in (stale, live, other):
        d.mkdir()
        (d / "index.html").write_text("half")
    fd = hold_temp(live)
    try:
        assert _report(data, tmp_path / "R") == 0
    finally:
        import os

        os.close(fd)
    assert not stale.exists() and live.exists() and other.exists()


# --------------------------------------------------------------------------- finding 14: locks


def test_a_second_predict_into_a_folder_in_use_is_refused(tmp_path, checkpoint, capsys):
    t = _tomo(tmp_path / "in")
    out = tmp_path / "res"
    with output_lock(out, "predict"):  # as a first run holds it
        assert _predict(checkpoint, [t], out) == 2
    assert "in use by another cryo3d predict run" in capsys.readouterr().err
    assert not (out / "picks.csv").exists()
    assert _predict(checkpoint, [t], out) == 0  # free again


# --------------------------------------------------------------------------- finding 15: names


@pytest.mark.parametrize("name", ["TS 1", "TS<1"])
def test_predict_refuses_a_run_name_copick_cannot_store_before_any_inference(tmp_path, checkpoint, name,
                                                                             monkeypatch, capsys):
    import cryo3d.inference as inference

    def never(*a, **k):
        raise AssertionError("inference ran before the names were checked")

    monkeypatch.setattr(inference, "pick_tomogram", never)
    t = _tomo(tmp_path / "in", name)
    assert _predict(checkpoint, [t], tmp_path / "res") == 2
    assert "run name" in capsys.readouterr().err
    assert not (tmp_path / "res" / "per_tomogram").exists()


# --------------------------------------------------------------------------- the property sweep


def _commands(data: Path, checkpoint: Path, tmp: Path) -> list[tuple[str, list[Path], callable]]:
    """(command, its inputs, run(out) -> exit status) for every command that writes."""
    tomo = sorted((data / "tomograms").glob("*.mrc"))[0]
    gt = data / "picks.csv"
    particles = tmp / "particles.yaml"
    shutil.copy(Path(__file__).parents[1] / "cryo3d" / "data" / "crowded12_particles.yaml", particles)
    return [
        ("prepare", [data / "tomograms", gt, data],
         lambda out: _prepare(data, out, "--overwrite")),
        ("predict", [checkpoint, tomo, data / "tomograms"],
         lambda out: main(["predict", str(checkpoint), str(tomo), "--out", str(out), "--threshold", "0",
                           "--device", "cpu", "--quiet"])),
        ("evaluate --json", [gt],
         lambda out: main(["evaluate", str(gt), str(gt), "--json", str(out)])),
        ("report", [tomo, gt],
         lambda out: main(["report", str(tomo), str(gt), "--out", str(out)])),
        ("synth", [particles],
         lambda out: main(["synth", "--out", str(out), "--n", "1", "--preset", "clean", "--shape", "32", "32", "32",
                           "--particles", str(particles), "--quiet"])),
    ]


def test_no_command_changes_an_input_or_a_sentinel_when_its_output_points_at_them(data, checkpoint, tmp_path):
    for name, inputs, run in _commands(data, checkpoint, tmp_path):
        sentinel = _sentinel(tmp_path / f"sentinel-{name.split()[0]}")  # one per command: each meets only the user's files
        for target in [*inputs, sentinel]:
            watched = _snapshot(data, checkpoint, sentinel, *inputs)
            run(target)
            after = _snapshot(data, checkpoint, sentinel, *inputs)
            changed = sorted(f for f, h in watched.items() if after.get(f) != h)  # new files beside them are fine
            assert not changed, f"{name} with its output at {target} changed {changed}"

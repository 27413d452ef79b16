"""Hostile and careless input: one-line errors, warnings for silent wrong answers, tune values are data."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryo3d.cli import main
from cryo3d.errors import Cryo3DError
from cryo3d.evaluation import evaluate_files
from cryo3d.io.pick_validation import validate_picks
from cryo3d.io.picks_csv import write_picks_csv
from cryo3d.io.tomogram import read_tomogram, write_mrc
from cryo3d.particles import CZII_PARTICLES
from cryo3d.picks import Picks

GT = "tomo,class,x,y,z\nTS_1,ribosome,100,200,300\nTS_1,ribosome,900,200,300\n"


def _csv(path: Path, text: str = GT) -> Path:
    path.write_text(text)
    return path


def _one_error_line(err: str, *needles: str) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("cryo3d ") and ": error: " in lines[0], err
    for n in needles:
        assert n in lines[0], (n, err)


# ------------------------------------------------------------------ one error path in the CLI


def test_a_random_file_given_as_checkpoint_is_one_line_and_exit_code_2(tmp_path, capsys):
    ck = tmp_path / "model.pt"
    ck.write_bytes(os.urandom(2048))
    write_mrc(tmp_path / "TS_1.mrc", np.random.default_rng(0).standard_normal((8, 8, 8)).astype(np.float32), 10.0)
    assert main(["predict", str(ck), str(tmp_path / "TS_1.mrc"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    _one_error_line(capsys.readouterr().err, str(ck))


def test_debug_shows_the_traceback_instead(tmp_path):
    ck = tmp_path / "model.pt"
    ck.write_bytes(b"")
    with pytest.raises(Cryo3DError):
        main(["predict", str(ck), str(tmp_path), "--out", str(tmp_path / "o"), "--debug"])


def test_a_read_only_output_folder_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: make the folder refuse writes as a read-only mount does
        real_open = open

        def ro_open(file, mode="r", *a, **k):
            if str(file).startswith(str(ro)) and any(c in mode for c in "wax+"):
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real_open(file, mode, *a, **k)

        monkeypatch.setattr("builtins.open", ro_open)
    else:
        ro.chmod(0o555)
    pred, gt = _csv(tmp_path / "pred.csv"), _csv(tmp_path / "gt.csv")
    assert main(["evaluate", str(pred), str(gt), "--json", str(ro / "result.json")]) == 2
    _one_error_line(capsys.readouterr().err, str(ro / "result.json"), "permission denied")


def test_a_utf16_csv_is_one_line_naming_the_file(tmp_path, capsys):
    gt = tmp_path / "gt.csv"
    gt.write_bytes(GT.encode("utf-16"))
    pred = _csv(tmp_path / "pred.csv")
    assert main(["evaluate", str(pred), str(gt)]) == 2
    _one_error_line(capsys.readouterr().err, str(gt), "UTF-16")


def test_a_non_utf8_csv_names_the_file(tmp_path):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("tomo,class,x,y,z\nTS_\xe9,ribosome,1,2,3\n".encode("latin-1"))
    with pytest.raises(Cryo3DError, match=f"{bad}: not UTF-8"):
        from cryo3d.io.picks_csv import read_picks_csv

        read_picks_csv(bad)


def test_row_numbers_read_the_same_in_the_reader_and_in_validation(tmp_path):
    from cryo3d.io.picks_csv import read_picks_csv

    path = _csv(tmp_path / "p.csv", "tomo,class,x,y,z\nTS_1,ribosome,1,2,3\n\nTS_1,ribosome,1,x,3\n")
    with pytest.raises(Cryo3DError, match=r"row 2 \(line 4\)"):
        read_picks_csv(path)
    picks = read_picks_csv(_csv(tmp_path / "q.csv", "tomo,class,x,y,z\nTS_1,ribosome,1,2,3\nTS_1,nope,1,2,3\n"))
    with pytest.raises(Cryo3DError, match=r"row 2 "):
        validate_picks(picks, CZII_PARTICLES, source="q.csv")


def test_evaluate_json_prints_the_json(tmp_path, capsys):
    pred, gt = _csv(tmp_path / "pred.csv"), _csv(tmp_path / "gt.csv")
    assert main(["evaluate", str(pred), str(gt), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep == json.loads(json.dumps({k: v for k, v in evaluate_files(pred, gt, sweep=False).items() if k != "text"}))


# ------------------------------------------------------------------ silent wrong answers


def test_evaluate_warns_when_prediction_and_ground_truth_share_no_tomogram(tmp_path):
    pred = _csv(tmp_path / "pred.csv", GT.replace("TS_1", "TS_9"))
    with pytest.warns(UserWarning, match="share no tomogram name"):
        rep = evaluate_files(pred, _csv(tmp_path / "gt.csv"), sweep=False)
    assert rep["warnings"]


def test_evaluate_warns_about_a_header_only_ground_truth(tmp_path):
    with pytest.warns(UserWarning, match="no picks"):
        evaluate_files(_csv(tmp_path / "pred.csv"), _csv(tmp_path / "gt.csv", "tomo,class,x,y,z\n"), sweep=False)


def test_evaluate_drops_duplicate_ground_truth_rows_and_says_so(tmp_path):
    dup = _csv(tmp_path / "gt.csv", GT + "TS_1,ribosome,100,200,300\n")
    with pytest.warns(UserWarning, match=r"1 duplicate ground-truth row.*row 3.*dropped"):
        rep = evaluate_files(_csv(tmp_path / "pred.csv"), dup, sweep=False)
    clean = evaluate_files(_csv(tmp_path / "pred.csv"), _csv(tmp_path / "clean.csv"), sweep=False)
    assert rep["per_class"] == clean["per_class"] and rep["score"] == clean["score"]


def test_picks_in_voxel_units_written_as_angstrom_warn():
    shapes, spacing = {"TS_1": (184, 256, 256)}, {"TS_1": 10.0}
    voxels = Picks(["TS_1"] * 4, ["ribosome"] * 4, [[10, 20, 30], [200, 100, 50], [120, 240, 170], [5, 5, 5]])
    with pytest.warns(UserWarning, match="voxel indices written as Angstrom"):
        validate_picks(voxels, CZII_PARTICLES, shapes, spacing)


def test_an_mrc_whose_header_does_not_match_its_data_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.mrc"
    write_mrc(path, np.random.default_rng(0).standard_normal((8, 6, 4)).astype(np.float32), 10.0)
    with mrcfile.open(path, "r+") as m:
        m.header.nz = 4  # the data holds 8 sections
    with pytest.raises(Cryo3DError, match=f"{path}: MRC header .* does not match the data"):
        read_tomogram(path)


def test_a_tomogram_stored_x_y_z_is_blamed_and_not_the_picks(tmp_path):
    rng = np.random.default_rng(0)
    shape = (20, 30, 60)  # z, y, x
    write_mrc(tmp_path / "TS_1.mrc", rng.standard_normal(shape).astype(np.float32), 10.0)
    write_mrc(tmp_path / "TS_2.mrc", rng.standard_normal(shape).astype(np.float32).transpose(2, 1, 0), 10.0)
    xyz = [[550.0, 250.0, 150.0], [500.0, 100.0, 50.0], [420.0, 20.0, 180.0]]
    picks = Picks(["TS_1"] * 3 + ["TS_2"] * 3, ["ribosome"] * 6, xyz + xyz)
    tomos = [read_tomogram(tmp_path / f"TS_{i}.mrc") for i in (1, 2)]
    with pytest.raises(Cryo3DError, match=r"tomogram 'TS_2' \(.*TS_2.mrc\) looks stored with its axes swapped"):
        validate_picks(picks, CZII_PARTICLES, {t.name: t.shape for t in tomos}, {t.name: 10.0 for t in tomos},
                       tomogram_files={t.name: t.path for t in tomos})


# ------------------------------------------------------------------ tune values are data


def test_tune_refuses_a_dollar_expression_in_fixed_and_runs_nothing(tmp_path):
    from cryo3d.workflows.tuning.study import run_study

    marker = tmp_path / "RAN"
    with pytest.raises(Cryo3DError, match=r"dataset_dir.*run as code"):
        run_study(study_name="x", out=tmp_path / "runs", n_trials=0, print_fn=None,
                  fixed={"dataset_dir": f"$open({str(marker)!r}, 'w')"})
    assert not marker.exists()


@pytest.mark.parametrize("doc", [
    {"fixed": {"max_epochs": "$__import__('os').getpid()"}},
    {"fixed": {"beta_schedule": {"_target_": "os.system", "command": "true"}}},
    {"fixed": {"network_overrides": {"x": "%other.yaml#key"}}},
    {"fixed": {}, "space": {"loss_kind": {"type": "categorical", "choices": ["bce", "$print(1)"]}}},
])
def test_tune_config_values_that_the_bundle_would_run_are_refused(doc):
    from cryo3d.workflows.tuning.space import TuneConfig

    doc = {"space": {"learning_rate": {"type": "float", "low": 0.001, "high": 0.01}}, **doc}
    with pytest.raises(Cryo3DError, match="plain data"):
        TuneConfig.from_dict(doc)


def test_tune_summary_goes_through_the_atomic_writer(tmp_path, monkeypatch):
    from cryo3d.workflows.tuning.study import run_study

    def refuse(self, *a, **k):
        raise AssertionError(f"non-atomic write of {self}")

    monkeypatch.setattr(Path, "write_text", refuse)
    run_study(study_name="x", out=tmp_path / "runs", n_trials=0, print_fn=None)
    assert (tmp_path / "runs" / "x" / "summary.txt").is_file()


def test_prepare_warns_on_the_command_line_when_picks_look_like_voxel_indices(tmp_path, capsys):
    write_mrc(tmp_path / "TS_1.mrc", np.random.default_rng(0).standard_normal((40, 48, 56)).astype(np.float32), 10.0)
    picks = _csv(tmp_path / "voxels.csv", "tomo,class,x,y,z\nTS_1,ribosome,20,24,10\nTS_1,ribosome,40,30,30\n"
                                          "TS_1,apo-ferritin,10,10,5\n")
    assert main(["prepare", "--tomograms", str(tmp_path / "TS_1.mrc"), "--picks", str(picks), "--out",
                 str(tmp_path / "store"), "--patch-size", "32", "--stride", "32", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"cryo3d: warning: {picks}: all picks" in err and "voxel indices written as Angstrom" in err

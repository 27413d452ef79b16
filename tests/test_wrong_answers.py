"""Inputs that gave a silently wrong answer or an unclear message now give a clear error or a warning.

Issue 20: a particle radius of 0, negative or NaN; ground truth in voxels; coordinates too
large to be Angstrom; a full disk; a crafted pickle.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from cryo3d.checkpoints import load_checkpoint
from cryo3d.cli import main
from cryo3d.errors import Cryo3DError
from cryo3d.io import atomic
from cryo3d.io.atomic import atomic_path
from cryo3d.io.picks_csv import read_picks_csv
from cryo3d.io.tomogram import read_tomogram
from cryo3d.particles import CZII_PARTICLES, ParticleSet, load_particles
from cryo3d.picks import Picks

CLASS = "  - {name: ribosome, radius: %s, weight: %s}\n"


def _particles(path: Path, radius: str = "150", weight: str = "1", name: str = "ribosome",
               sigma_fraction: str | None = None) -> Path:
    text = "classes:\n" + CLASS.replace("ribosome", name) % (radius, weight)
    text += "  - {name: apo-ferritin, radius: 60}\n"
    if sigma_fraction is not None:
        text += f"sigma_fraction: {sigma_fraction}\n"
    path.write_text(text)
    return path


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------ particle sets (finding 10)


@pytest.mark.parametrize("fields, field", [
    ({"radius": "0"}, "radius"),
    ({"radius": "-60"}, "radius"),
    ({"radius": ".nan"}, "radius"),
    ({"radius": ".inf"}, "radius"),
    ({"radius": "big"}, "radius"),
    ({"weight": "-1"}, "weight"),
    ({"weight": ".nan"}, "weight"),
    ({"name": "''"}, "name"),
    ({"sigma_fraction": "0"}, "sigma_fraction"),
    ({"sigma_fraction": ".nan"}, "sigma_fraction"),
])
def test_a_particles_file_with_a_bad_value_is_refused_naming_file_class_and_field(tmp_path, fields, field):
    path = _particles(tmp_path / "particles.yaml", **fields)
    with pytest.raises(Cryo3DError) as e:
        load_particles(str(path))
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and f"'{field}'" in msg and "\n" not in msg
    if field != "sigma_fraction":
        assert "classes[0]" in msg


def test_a_particle_set_from_a_manifest_or_checkpoint_with_radius_zero_is_refused_naming_it():
    d = {"classes": [{"name": "ribosome", "radius": 0.0, "weight": 1.0, "shape": "sphere"}]}
    with pytest.raises(Cryo3DError, match=r"^store/manifest.json: classes\[0\] \('ribosome'\): field 'radius' must be "
                                          r"a finite number > 0"):
        ParticleSet.from_dict(d, source="store/manifest.json")


@pytest.mark.parametrize("radius", ["0", "-60", ".nan"])
def test_evaluate_refuses_a_particles_file_with_a_bad_radius_in_one_line(tmp_path, capsys, radius):
    picks = tmp_path / "picks.csv"
    picks.write_text("tomo,class,x,y,z\nTS_1,ribosome,100,200,300\n")
    bad = _particles(tmp_path / "particles.yaml", radius=radius)
    assert main(["evaluate", str(picks), str(picks), "--particles", str(bad)]) == 2
    captured = capsys.readouterr()
    line = _one_line_error(captured.err)
    assert line.startswith(f"cryo3d evaluate: error: {bad}: classes[0] ('ribosome'): field 'radius'")
    assert "score" not in captured.out


@pytest.mark.parametrize("radius", ["0", "-60", ".nan"])
def test_prepare_refuses_a_particles_file_with_a_bad_radius_in_one_line(tmp_path, capsys, small_synth, radius):
    data, _ = small_synth
    bad = _particles(tmp_path / "particles.yaml", radius=radius)
    store = tmp_path / "store"
    assert main(["prepare", "--data", str(data), "--particles", str(bad), "--out", str(store), "--quiet"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith(f"cryo3d prepare: error: {bad}: classes[0] ('ribosome'): field 'radius'")
    assert not store.exists()


# ------------------------------------------------------------------ ground truth in voxels (finding 11)


def _in_voxels(data: Path, out: Path) -> Path:
    """The synth picks with x, y, z divided by each tomogram's voxel spacing (voxel indices)."""
    spacing = {p.stem: read_tomogram(p).voxel_spacing for p in (data / "tomograms").glob("*.mrc")}
    with open(data / "picks.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in "xyz":
            r[k] = str(float(r[k]) / spacing[r["tomo"]])
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


@pytest.mark.parametrize("with_tomograms", [False, True])
def test_evaluate_warns_when_the_ground_truth_is_in_voxels(tmp_path, capsys, small_synth, with_tomograms):
    data, _ = small_synth
    gt = _in_voxels(data, tmp_path / "gt_voxels.csv")
    args = ["evaluate", str(data / "picks.csv"), str(gt)]
    if with_tomograms:
        args += ["--tomograms", str(data / "tomograms")]
    assert main(args) == 0
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith(f"cryo3d: warning: {gt}: ")]
    assert len(warnings) == 1 and "voxel indices" in warnings[0], err


def test_evaluate_warns_when_the_predictions_are_in_voxels(tmp_path, capsys, small_synth):
    data, _ = small_synth
    pred = _in_voxels(data, tmp_path / "pred_voxels.csv")
    assert main(["evaluate", str(pred), str(data / "picks.csv")]) == 0
    err = capsys.readouterr().err
    assert f"cryo3d: warning: {pred}: its coordinates are about 1/10 of those of" in err and "voxel indices" in err


def test_evaluate_of_picks_in_angstrom_gives_no_unit_warning(tmp_path, capsys, small_synth):
    data, _ = small_synth
    far = read_picks_csv(data / "picks.csv")  # every prediction 40 A off in x: no match, same units
    (tmp_path / "pred.csv").write_text("tomo,class,x,y,z\n" + "".join(
        f"{t},{c},{x + 40.0},{y},{z}\n" for t, c, (x, y, z) in zip(far.tomo, far.cls, far.xyz.tolist())))
    for pred in (data / "picks.csv", tmp_path / "pred.csv"):
        assert main(["evaluate", str(pred), str(data / "picks.csv"), "--tomograms", str(data / "tomograms")]) == 0
        assert "voxel" not in capsys.readouterr().err


def test_report_warns_when_the_ground_truth_is_in_voxels(tmp_path, capsys, small_synth):
    data, _ = small_synth
    gt = _in_voxels(data, tmp_path / "gt_voxels.csv")
    tomo = sorted((data / "tomograms").glob("*.mrc"))[0]
    assert main(["report", str(tomo), str(data / "picks.csv"), "--gt", str(gt), "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert f"cryo3d: warning: {gt}: " in err and "voxel indices" in err


# ------------------------------------------------------------------ unclear messages (finding 16)


@pytest.mark.parametrize("value", ["1e300", "-2e8"])
def test_a_coordinate_beyond_any_tomogram_in_a_csv_is_refused_naming_file_row_and_column(tmp_path, capsys, value):
    picks = tmp_path / "picks.csv"
    picks.write_text(f"tomo,class,x,y,z\nTS_1,ribosome,100,200,300\nTS_1,ribosome,100,{value},300\n")
    assert main(["evaluate", str(picks), str(picks)]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith(f"cryo3d evaluate: error: {picks}, row 2 (line 3), column 'y': ")
    assert "beyond any tomogram" in line and "Angstrom" in line


def test_a_coordinate_beyond_any_tomogram_in_a_copick_json_is_refused_naming_file_row_and_column(tmp_path, capsys):
    picks = tmp_path / "ribosome.json"
    points = [{"location": {"x": 100.0, "y": 200.0, "z": v}, "transformation_": [[1, 0, 0, 0], [0, 1, 0, 0],
                                                                               [0, 0, 1, 0], [0, 0, 0, 1]],
               "instance_id": 0, "score": 1.0} for v in (300.0, 1e300)]
    picks.write_text(json.dumps({"pickable_object_name": "ribosome", "user_id": "u", "session_id": "0",
                                 "run_name": "TS_1", "points": points}))
    assert main(["evaluate", str(picks), str(picks)]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith(f"cryo3d evaluate: error: {picks}, row 2 (tomogram 'TS_1', class 'ribosome'), column 'z': ")


def test_a_full_disk_in_the_atomic_writer_names_the_file(tmp_path):
    dest = tmp_path / "out.json"
    with pytest.raises(OSError) as e:
        with atomic_path(dest) as tmp:
            Path(tmp).write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(dest)
    assert list(tmp_path.iterdir()) == []


def test_evaluate_on_a_full_disk_says_which_file_it_could_not_write(tmp_path, capsys, monkeypatch):
    picks = tmp_path / "picks.csv"
    picks.write_text("tomo,class,x,y,z\nTS_1,ribosome,100,200,300\n")
    out = tmp_path / "result.json"

    class FullDisk(io.StringIO):
        def write(self, s):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "open", lambda *a, **k: FullDisk(), raising=False)
    assert main(["evaluate", str(picks), str(picks), "--json", str(out)]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith(f"cryo3d evaluate: error: {out}: {os.strerror(errno.ENOSPC)}") and "free some space" in line
    assert not out.exists()


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_crafted_pickle_is_refused_as_code_not_called_a_non_checkpoint(tmp_path, capsys, protocol):
    marker = tmp_path / "PAYLOAD_RAN"
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(pickle.dumps({"network": {}, "cryo3d": _RunsCode(marker)}, protocol=protocol))
    with pytest.raises(Cryo3DError) as e:
        load_checkpoint(ckpt)
    msg = str(e.value)
    assert msg.startswith(f"{ckpt}: refused: ") and "unpickle code" in msg and "nothing in it was run" in msg
    assert "not a PyTorch checkpoint" not in msg and not marker.exists()


def test_the_voxel_unit_warning_survives_a_few_chance_matches():
    from cryo3d.io.pick_validation import scale_mismatch_note

    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 1, (200, 3)) * [6300.0, 6300.0, 1840.0]
    cls = np.array(CZII_PARTICLES.names, dtype=object)[rng.integers(0, 6, 200)]
    gt = Picks(["TS_1"] * 200, cls, xyz / 10.0)  # voxel indices of a 10 A tomogram
    pred = Picks(["TS_1"] * 201, np.append(cls, cls[0]), np.vstack([xyz, gt.xyz[:1]]))  # one prediction by chance
    note = scale_mismatch_note(pred, gt, CZII_PARTICLES, "pred.csv", "gt.csv")
    assert note is not None and note.startswith("gt.csv: its coordinates are about 1/10 of those of pred.csv")
    assert scale_mismatch_note(pred, Picks(["TS_1"] * 200, cls, xyz), CZII_PARTICLES) is None


def test_prepare_refuses_a_data_folder_whose_manifest_has_a_negative_radius_naming_the_manifest(tmp_path, capsys,
                                                                                                small_synth):
    data, _ = small_synth
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    man = json.loads((copy / "manifest.json").read_text())
    man["particles"]["classes"][0]["radius"] = -60.0
    (copy / "manifest.json").write_text(json.dumps(man))
    assert main(["prepare", "--data", str(copy), "--out", str(tmp_path / "store"), "--quiet"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith(f"cryo3d prepare: error: {copy / 'manifest.json'}: particles: classes[0] (")
    assert "field 'radius' must be a finite number > 0" in line


@pytest.mark.parametrize("radius", ["-60", ".nan"])
def test_training_refuses_a_data_folder_particles_file_with_a_bad_radius_before_any_work(tmp_path, radius):
    from cryo3d.workflows.network_spec import bundle_particles

    bad = _particles(tmp_path / "particles.yaml", radius=radius)
    with pytest.raises(Cryo3DError, match=rf"^{bad}: classes\[0\] \('ribosome'\): field 'radius'"):
        bundle_particles("auto", tmp_path)

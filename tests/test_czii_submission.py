"""The CZII challenge's submission.csv: read wherever picks are taken, written by export and predict."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryo3d.cli import main
from cryo3d.io.czii_submission import read_submission, write_submission
from cryo3d.io.pick_formats import read_picks
from cryo3d.io.picks_csv import write_picks_csv
from cryo3d.picks import Picks

#: The challenge's sample_submission.csv layout (Angstrom).
CHALLENGE = """id,experiment,particle_type,x,y,z
0,TS_5_4,beta-amylase,2983.596,3154.16,764.1400000000001
1,TS_5_4,ribosome,2983.596,3154.16,764.14
2,TS_69_2,virus-like-particle,1040.0,2120.5,300.25
"""


@pytest.fixture
def picks() -> Picks:
    rng = np.random.default_rng(3)
    return Picks(tomo=["TS_5_4", "TS_69_2", "TS_5_4", "TS_86_3"],
                 cls=["ribosome", "apo-ferritin", "thyroglobulin", "ribosome"],
                 xyz=rng.uniform(0.0, 6300.0, size=(4, 3)))


def test_the_challenges_submission_csv_reads_back_to_its_positions_within_0_01_angstrom(tmp_path):
    (tmp_path / "submission.csv").write_text(CHALLENGE)
    got = read_picks(tmp_path / "submission.csv")
    assert got.tomo.tolist() == ["TS_5_4", "TS_5_4", "TS_69_2"]
    assert got.cls.tolist() == ["beta-amylase", "ribosome", "virus-like-particle"]
    want = np.array([[2983.596, 3154.16, 764.14], [2983.596, 3154.16, 764.14], [1040.0, 2120.5, 300.25]])
    assert np.abs(got.xyz - want).max() < 0.01


def test_a_written_submission_has_the_challenges_header_and_ids_0_to_n_minus_1(tmp_path, picks):
    write_submission(tmp_path / "s.csv", picks)
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "id,experiment,particle_type,x,y,z"
    assert [int(line.split(",")[0]) for line in lines[1:]] == [0, 1, 2, 3]


names = st.text(st.characters(codec="ascii", categories=("L", "N", "Pd")), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(names, names, *[st.floats(-1e5, 1e5, allow_nan=False)] * 3), max_size=20))
def test_a_written_submission_reads_back_identically(tmp_path_factory, rows):
    p = Picks([r[0] for r in rows], [r[1] for r in rows], [r[2:] for r in rows])
    path = tmp_path_factory.mktemp("s") / "submission.csv"
    write_submission(path, p)
    got = read_picks(path)
    assert got.tomo.tolist() == p.tomo.tolist() and got.cls.tolist() == p.cls.tolist()
    assert np.array_equal(got.xyz, p.xyz)


def test_a_non_number_in_a_submission_names_file_line_and_column(tmp_path):
    (tmp_path / "s.csv").write_text(CHALLENGE.replace("1040.0", "abc"))
    with pytest.raises(ValueError, match=r"s\.csv, line 4, column 'x'"):
        read_submission(tmp_path / "s.csv")


def test_evaluate_scores_a_submission_against_ground_truth(tmp_path, picks, capsys):
    write_picks_csv(tmp_path / "gt.csv", picks)
    write_submission(tmp_path / "submission.csv", picks)
    assert main(["evaluate", str(tmp_path / "submission.csv"), str(tmp_path / "gt.csv")]) == 0
    assert "ribosome" in capsys.readouterr().out


def test_export_writes_a_submission_that_keeps_the_picks_above_min_score(tmp_path, picks, capsys):
    picks.score = np.array([0.9, 0.1, 0.8, 0.7])
    write_picks_csv(tmp_path / "picks.csv", picks)
    out = tmp_path / "out" / "submission.csv"
    assert main(["export", str(tmp_path / "picks.csv"), "--format", "czii-submission", "--out", str(out),
                 "--min-score", "0.5"]) == 0
    assert "1 below --min-score" in capsys.readouterr().out
    got = read_submission(out)
    keep = picks.select(picks.score >= 0.5)
    assert got.tomo.tolist() == keep.tomo.tolist() and np.array_equal(got.xyz, keep.xyz)


def test_export_to_csv_reads_back_a_submission_as_the_picks_table(tmp_path, picks):
    write_submission(tmp_path / "submission.csv", picks)
    assert main(["export", str(tmp_path / "submission.csv"), "--format", "csv", "--out", str(tmp_path / "p.csv")]) == 0
    got = read_picks(tmp_path / "p.csv")
    assert got.cls.tolist() == picks.cls.tolist() and np.array_equal(got.xyz, picks.xyz)


def test_predict_with_format_czii_submission_also_writes_submission_csv_of_its_picks(tmp_path):
    import torch

    from cryo3d.io.tomogram import write_mrc
    from cryo3d.networks import build_network
    from cryo3d.particles import CZII_PARTICLES

    cfg = dict(name="unet-tiny", in_channels=1, out_channels=6, ds_factor=2, prior=0.01)
    torch.manual_seed(0)
    ck = tmp_path / "model.pt"
    torch.save({"network": build_network(dict(cfg)).state_dict(),
                "cryo3d": {"network": cfg, "particles": CZII_PARTICLES.to_dict(), "voxel_spacing": 10.0,
                           "patch_size": [32, 32, 32], "ds_factor": 2, "thresholds": [0.0] * 6}}, ck)
    write_mrc(tmp_path / "TS_1.mrc", np.random.default_rng(0).standard_normal((24, 32, 40)).astype(np.float32), 10.0)
    assert main(["predict", str(ck), str(tmp_path / "TS_1.mrc"), "--out", str(tmp_path / "pred"), "--device", "cpu",
                 "--format", "czii-submission", "--quiet"]) == 0
    sub, table = read_submission(tmp_path / "pred" / "submission.csv"), read_picks(tmp_path / "pred" / "picks.csv")
    assert len(sub) == len(table) > 0
    assert sub.cls.tolist() == table.cls.tolist() and np.array_equal(sub.xyz, table.xyz)

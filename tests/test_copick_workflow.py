"""Train from a copick project, predict into it, evaluate against one user: via the CLI and the bundle only."""

from __future__ import annotations

import json
import numpy as np
import pytest

from test_bundle import TINY, bundle_cmd, run

from cryo3d.cli import main


@pytest.fixture(scope="module")
def predicted(copick_project, tmp_path_factory):
    """A tiny model trained by the bundle from the project, then `cryo3d predict` into it as cryo3d/1."""
    config, _ = copick_project
    base = tmp_path_factory.mktemp("copick_flow")
    data, out, pred = base / "data", base / "runs", base / "pred"
    tiny = TINY[4:]  # without the simulator's settings
    assert tiny[0] == "--patch_size"
    run(bundle_cmd("training", "train.yaml", "--dataset_dir", str(data), "--output_dir", str(out),
                   "--max_epochs", "1", "--copick_config", str(config), "--tomo_type", "wbp",
                   "--copick_voxel_spacing", "10", "--gt_user", "curation", "--gt_session", "0", "--write_report", "false", *tiny))
    ckpt = out / "checkpoints" / "best.pt"
    assert main(["predict", str(ckpt), "--copick-config", str(config), "--tomo-type", "wbp",
                 "--user", "cryo3d", "--session", "1", "--out", str(pred), "--threshold", "0.005",
                 "--device", "cpu", "--quiet"]) == 0
    return config, data, ckpt, pred


def test_bundle_trains_from_the_project_with_its_classes_and_ground_truth(predicted):
    _, data, ckpt, _ = predicted
    import torch

    meta = torch.load(ckpt, map_location="cpu", weights_only=False)["cryo3d"]
    assert [c["name"] for c in meta["particles"]["classes"]][0] == "apo-ferritin"
    assert (data / "ground_truth_curation_0.csv").is_file()


def test_predictions_read_back_with_copick_match_picks_csv(predicted):
    import copick

    from cryo3d.io.picks_csv import read_picks_csv

    config, _, _, pred = predicted
    csv = read_picks_csv(pred / "picks.csv")
    assert len(csv) > 0
    root = copick.from_file(str(config))
    rows = []
    for r in root.runs:
        for p in r.get_picks(user_id="cryo3d", session_id="1"):
            p.load()  # copick lists pick sets without reading them
            assert p.trust_orientation is False
            for xyz, s in zip(p.full_positions(), p.scores()):
                rows.append((r.name, p.pickable_object_name, *xyz, s))
    assert len(rows) == len(csv)
    key = lambda t: (t[0], t[1], round(t[2], 1), round(t[3], 1), round(t[4], 1))  # noqa: E731
    mine = sorted(zip(csv.tomo, csv.cls, *csv.xyz.T, csv.score), key=key)
    theirs = sorted(rows, key=key)
    for a, b in zip(mine, theirs):
        assert a[:2] == b[:2]
        np.testing.assert_allclose(a[2:5], b[2:5], atol=0.01)
        assert abs(a[5] - b[5]) < 1e-9


def test_predicting_again_into_the_same_user_and_session_is_refused(predicted, capsys):
    config, _, ckpt, pred = predicted
    code = main(["predict", str(ckpt), "--copick-config", str(config), "--user", "cryo3d", "--session", "1",
                 "--out", str(pred), "--quiet"])
    assert code == 2 and "already holds picks" in capsys.readouterr().err


def test_evaluate_scores_the_predictions_against_curation_alone(predicted, copick_project, tmp_path):
    config, _, _, _ = predicted
    truth = copick_project[1]
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--copick-config", str(config), "--user", "cryo3d", "--session", "1",
                 "--gt-user", "curation", "--gt-session", "0", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["gt"] == "copick curation/0" and 0.0 <= rep["score"] <= 1.0
    assert sum(r["n_gt"] for r in rep["per_class"]) == len(truth)  # not doubled by the second user


def test_evaluate_against_two_users_without_a_filter_names_both(predicted, capsys):
    config, _, _, _ = predicted
    code = main(["evaluate", "--copick-config", str(config), "--user", "cryo3d", "--session", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "curation" in err and "octopi" in err

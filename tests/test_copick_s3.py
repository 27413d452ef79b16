"""A copick project in object storage: served by a local S3 server (moto, on loopback) that the
test starts, read through copick's own storage (fsspec), trained on, predicted into with
``cryo3d predict --copick-config`` (picks written back to S3, results fingerprinted where the
tomograms live) and evaluated."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest

from test_bundle import TINY, bundle_cmd, run
from test_copick_shipped import SHIPPED_SCALE, write_challenge_layout

from cryo3d.cli import main

KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_project(tmp_path_factory):
    """Two 32^3 runs in the challenge's layout, uploaded to bucket ``cryo`` of a moto server; the
    config (``s3://`` roots with the endpoint in the fs args) stays local. Returns (config, picks, s3fs)."""
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    from cryo3d.io.picks_csv import read_picks_csv
    from cryo3d.io.tomogram import read_tomogram
    from cryo3d.synth import SynthConfig, synthesize

    saved = {k: os.environ.get(k) for k in KEYS}
    os.environ.update(KEYS)
    port = free_port()
    try:
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
    except Exception as exc:  # noqa: BLE001 -- any failure to serve means no S3 to test against
        pytest.skip(f"moto's S3 server does not start here: {exc}")
    url = f"http://127.0.0.1:{port}"
    base = tmp_path_factory.mktemp("s3")
    cfg = SynthConfig.preset("clean", shape=(64, 64, 64), particles_per_class=2, voxel_spacing=SHIPPED_SCALE, seed=7)
    synthesize(base / "synth", 2, cfg, progress=False)
    picks = read_picks_csv(base / "synth" / "picks.csv")
    vols = {f.stem: np.asarray(read_tomogram(f).data) for f in sorted((base / "synth" / "tomograms").glob("*.mrc"))}
    local = write_challenge_layout(base / "local", vols, picks)
    fs_args = {"key": KEYS["AWS_ACCESS_KEY_ID"], "secret": KEYS["AWS_SECRET_ACCESS_KEY"],
               "client_kwargs": {"endpoint_url": url, "region_name": "eu-west-1"}}
    fs = s3fs.S3FileSystem(**fs_args)
    fs.mkdir("cryo")
    fs.put(str(base / "local" / "static") + "/", "cryo/project/static/", recursive=True)
    fs.put(str(base / "local" / "overlay") + "/", "cryo/project/overlay/", recursive=True)
    doc = json.loads(local.read_text())
    doc.update(overlay_root="s3://cryo/project/overlay", static_root="s3://cryo/project/static",
               overlay_fs_args=fs_args, static_fs_args=fs_args)
    config = base / "s3_config.json"
    config.write_text(json.dumps(doc))
    yield config, picks, fs
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_tomograms_are_read_from_s3_through_copick(s3_project):
    from cryo3d.io.copick_project import project_tomograms

    config, _, _ = s3_project
    tomos = project_tomograms(config, check_values=False)
    assert [t.name for t in tomos] == ["synth_000", "synth_001"]
    assert tomos[0].path.startswith("s3://") and np.asarray(tomos[0].data).shape == (64, 64, 64)


@pytest.fixture(scope="module")
def s3_trained(s3_project, tmp_path_factory):
    """The bundle trained (one tiny epoch) from the project on S3: (dataset folder, checkpoint)."""
    config, _, _ = s3_project
    base = tmp_path_factory.mktemp("s3_train")
    data, out = base / "data", base / "runs"
    run(bundle_cmd("training", "train.yaml", "--dataset_dir", str(data), "--output_dir", str(out),
                   "--max_epochs", "1", "--copick_config", str(config), "--write_report", "false", *TINY[4:]))
    return data, out / "checkpoints" / "best.pt"


def predict_args(config, ckpt, out, session: str, *more: str) -> list[str]:
    """``cryo3d predict`` of the S3 project's tomograms into it as user cryo3d, ``session``; ``out`` is local."""
    return ["predict", str(ckpt), "--copick-config", str(config), "--user", "cryo3d", "--session", session,
            "--out", str(out), "--threshold", "0.005", "--device", "cpu", "--quiet", *more]


@pytest.fixture(scope="module")
def s3_predicted(s3_project, s3_trained, tmp_path_factory):
    """``cryo3d predict --copick-config`` run on the S3 project (session 2): its local output folder."""
    config, _, _ = s3_project
    out = tmp_path_factory.mktemp("s3_pred") / "pred"
    assert main(predict_args(config, s3_trained[1], out, "2")) == 0
    return out


def test_the_bundle_trains_from_a_project_on_s3(s3_trained):
    data, ckpt = s3_trained
    assert ckpt.is_file()
    assert (data / "ground_truth_curation_0.csv").is_file()


def test_predict_writes_its_picks_into_the_project_on_s3_and_copick_reads_them_back(s3_project, s3_predicted):
    from cryo3d.io.copick_project import open_project
    from cryo3d.io.picks_csv import read_picks_csv
    from cryo3d.particles import CZII_PARTICLES

    config, _, fs = s3_project
    for run_name in ("synth_000", "synth_001"):
        assert fs.exists(f"cryo/project/overlay/ExperimentRuns/{run_name}/Picks/cryo3d_2_ribosome.json")
    root = open_project(config)  # a fresh copick root over the S3 storage
    mine = [p for r in root.runs for p in r.get_picks(user_id="cryo3d", session_id="2")]
    assert len(mine) == 2 * len(CZII_PARTICLES)
    for p in mine:
        p.load()
    local = read_picks_csv(s3_predicted / "picks.csv")
    assert len(local) > 0 and sum(len(p.points) for p in mine) == len(local)


def test_evaluate_scores_the_picks_predict_wrote_to_s3_as_the_local_csv_scores(s3_project, s3_trained,
                                                                              s3_predicted, tmp_path):
    config, _, _ = s3_project
    a, b = tmp_path / "copick.json", tmp_path / "csv.json"
    assert main(["evaluate", "--copick-config", str(config), "--user", "cryo3d", "--session", "2",
                 "--gt-user", "curation", "--gt-session", "0", "--json", str(a)]) == 0
    assert main(["evaluate", str(s3_predicted / "picks.csv"), str(s3_trained[0] / "ground_truth_curation_0.csv"),
                 "--json", str(b)]) == 0
    assert json.loads(a.read_text())["score"] == pytest.approx(json.loads(b.read_text())["score"], abs=1e-6)


def test_predict_records_the_s3_tomograms_by_url_and_storage_fingerprint(s3_predicted):
    rec = json.loads((s3_predicted / "per_tomogram" / "synth_000.json").read_text())
    assert rec["tomogram_path"].startswith("s3://cryo/project/static/ExperimentRuns/synth_000/")
    assert rec["tomogram"]["content"] == "etag" and rec["tomogram"]["files"] > 3


def test_a_rerun_of_predict_on_s3_reuses_every_result(s3_project, s3_trained, s3_predicted):
    config, _, _ = s3_project
    assert main(predict_args(config, s3_trained[1], s3_predicted, "2", "--overwrite")) == 0
    assert json.loads((s3_predicted / "predict.json").read_text())["n_reused"] == 2


def test_report_takes_the_tomograms_and_picks_of_the_project_on_s3(s3_project, s3_predicted):
    import argparse

    from cryo3d.commands.copick_inputs import report_inputs

    config, _, _ = s3_project  # report_inputs is what `cryo3d report --copick-config` reads (rendering not repeated)
    a = argparse.Namespace(copick_config=str(config), inputs=[], gt=None, particles=None, tomo_type=None,
                           copick_voxel_spacing=None, runs=None, trust_spacing=None, user_id="cryo3d",
                           session_id="2", gt_user="curation", gt_session="0")
    tomos, picks, gt, _ = report_inputs(a)
    assert [t.path[:5] for t in tomos] == ["s3://"] * 2 and len(picks) > 0 and len(gt) > 0


def test_an_s3_fingerprint_comes_from_the_listing_without_reading_a_byte(s3_project, monkeypatch):
    from cryo3d.fingerprints import storage_fingerprint

    _, _, fs = s3_project
    monkeypatch.setattr(fs, "open", lambda *a, **k: pytest.fail("a tomogram's bytes were downloaded"))
    fp = storage_fingerprint(fs, "cryo/project/static/ExperimentRuns/synth_000/VoxelSpacing10.000/denoised.zarr")
    assert fp["content"] == "etag" and fp["size"] > 0


def test_an_object_rewritten_with_the_same_size_changes_the_s3_fingerprint(s3_project):
    from cryo3d.fingerprints import storage_fingerprint

    _, _, fs = s3_project
    fs.pipe({"cryo/scratch/t.zarr/.zattrs": b"{}", "cryo/scratch/t.zarr/0/0.0.0": b"abcd"})
    before = storage_fingerprint(fs, "cryo/scratch/t.zarr")
    fs.pipe("cryo/scratch/t.zarr/0/0.0.0", b"abce")
    after = storage_fingerprint(fs, "cryo/scratch/t.zarr")
    assert after["size"] == before["size"] and after["sha256"] != before["sha256"]


def test_picks_written_to_s3_read_back_with_copick_and_evaluate(s3_project, tmp_path):
    from cryo3d.io.copick_project import open_project, write_project_picks

    config, picks, fs = s3_project
    written = write_project_picks(config, picks, "cryo3d", "1")
    assert len(written) == 2 * 6 and fs.exists("cryo/project/overlay/ExperimentRuns/synth_000/Picks")
    root = open_project(config)  # copick's root (its S3 storage), with the shipped names in view
    run0 = next(r for r in root.runs if r.name == "synth_000")
    got = run0.get_picks(user_id="cryo3d", session_id="1", object_name="ribosome")[0]
    got.load()
    np.testing.assert_allclose(got.full_positions(), picks.for_tomo("synth_000").for_class("ribosome").xyz,
                               atol=1e-3)
    out = tmp_path / "e.json"
    assert main(["evaluate", "--copick-config", str(config), "--user", "cryo3d", "--session", "1",
                 "--gt-user", "curation", "--gt-session", "0", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["score"] == pytest.approx(1.0)


def test_a_tomogram_rewritten_on_s3_is_predicted_afresh(s3_project, s3_trained, tmp_path):
    import zarr

    config, _, fs = s3_project
    fs.copy("cryo/project/static/ExperimentRuns/synth_001", "cryo/copy/static/ExperimentRuns/synth_001",
            recursive=True)  # a project of its own, changed below without touching the shared one
    fs.copy("cryo/project/overlay/ExperimentRuns/synth_001", "cryo/copy/overlay/ExperimentRuns/synth_001",
            recursive=True)
    doc = json.loads(config.read_text())
    doc.update(overlay_root="s3://cryo/copy/overlay", static_root="s3://cryo/copy/static")
    (tmp_path / "copy.json").write_text(json.dumps(doc))
    out = tmp_path / "pred"
    args = predict_args(tmp_path / "copy.json", s3_trained[1], out, "3", "--overwrite")
    assert main(args) == 0
    tomo = zarr.open_group(zarr.storage.FSStore(
        "cryo/copy/static/ExperimentRuns/synth_001/VoxelSpacing10.000/denoised.zarr", fs=fs), mode="r+")["0"]
    tomo[0, 0, 0] = tomo[0, 0, 0] + 1.0  # one voxel, in place
    assert main(args) == 0
    rec = json.loads((out / "predict.json").read_text())
    assert (rec["n_reused"], rec["n_computed"]) == (0, 1)

"""A copick project in object storage: served by a local S3 server (moto, on loopback) that the
test starts, read through copick's own storage (fsspec), trained on, written back to and evaluated."""

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


def test_the_bundle_trains_from_a_project_on_s3(s3_project, tmp_path):
    config, _, _ = s3_project
    data, out = tmp_path / "data", tmp_path / "runs"
    run(bundle_cmd("training", "train.yaml", "--dataset_dir", str(data), "--output_dir", str(out),
                   "--max_epochs", "1", "--copick_config", str(config), "--write_report", "false", *TINY[4:]))
    assert (out / "checkpoints" / "best.pt").is_file()
    assert (data / "ground_truth_curation_0.csv").is_file()


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

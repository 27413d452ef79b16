"""The model zoo's conventions: LICENSE, models/model.pt under bundle_root, metadata that names what the bundle needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_bundle import NO_REPORT, TINY, bundle_cmd, run

from cryo3d.workflows.bundle import config_path, raw_bundle_keys

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "cryo3d_picker"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def test_the_repository_and_the_bundle_carry_the_apache_2_license_the_project_declares():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert (BUNDLE / "LICENSE").read_text() == text


def test_the_bundles_license_and_models_folder_ship_as_package_data():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = setuptools["package-data"]
    assert "LICENSE" in data["cryo3d.bundles.cryo3d_picker"]
    assert "README.md" in data["cryo3d.bundles.cryo3d_picker.models"]
    assert {"cryo3d.bundles.cryo3d_picker", "cryo3d.bundles.cryo3d_picker.models"} <= set(setuptools["packages"])
    assert "model.pt" in (BUNDLE / "models" / "README.md").read_text()


@pytest.mark.parametrize("config", ["train.yaml", "inference.yaml"])
def test_train_and_inference_configs_have_bundle_root_and_ckpt_path(config):
    keys = raw_bundle_keys([str(config_path(config))])
    assert "bundle_root" in keys and "models/model.pt" in keys["ckpt_path"].replace("', '", "/")


def test_metadata_lists_the_packages_the_bundle_needs_and_every_input_format():
    meta = json.loads(config_path("metadata.json").read_text())
    assert {"cryo3d", "copick", "zarr", "starfile"} <= set(meta["required_packages_version"])
    assert "ome-zarr" in meta["data_type"] and "copick" in meta["data_type"]


def test_bundle_inference_without_a_model_says_in_one_line_what_is_missing(tmp_path):
    import numpy as np

    from cryo3d.io.tomogram import write_mrc

    write_mrc(tmp_path / "TS_1.mrc", np.random.default_rng(0).standard_normal((16, 16, 16)).astype(np.float32), 10.0)
    r = subprocess.run(bundle_cmd("inference", "inference.yaml", "--bundle_root", str(tmp_path / "nothing"),
                                  "--input_dir", str(tmp_path), "--output_dir", str(tmp_path / "pred")),
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "no checkpoint" in last and str(tmp_path / "nothing" / "models" / "model.pt") in last


def test_after_training_bundle_inference_runs_with_no_checkpoint_option(tmp_path):
    data, out, pred = tmp_path / "data", tmp_path / "runs", tmp_path / "pred"
    run(bundle_cmd("training", "train.yaml", "--dataset_dir", str(data), "--output_dir", str(out),
                   "--max_epochs", "1", *TINY, *NO_REPORT))
    model = out / "models" / "model.pt"
    assert model.read_bytes() == (out / "checkpoints" / "best.pt").read_bytes()
    run(bundle_cmd("inference", "inference.yaml", "--bundle_root", str(out), "--input_dir", str(data / "tomograms"),
                   "--output_dir", str(pred)))
    assert (pred / "picks.csv").read_text().startswith("tomo,class,x,y,z,score")

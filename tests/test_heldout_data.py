"""The built-in data validates on two tomograms and gains test tomograms that nothing trains or validates on."""

from __future__ import annotations

import inspect
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from cryo3d.io.picks_csv import read_picks_csv
from cryo3d.io.tomogram import read_tomogram
from cryo3d.store import PatchStore
from cryo3d.workflows.data import AUTO_N_VAL_BUILTIN, AUTO_N_VAL_USER, ensure_data, resolve_n_val
from cryo3d.workflows.heldout import TEST_DIR, TEST_SEED_OFFSET

TRAIN_YAML = Path(__file__).resolve().parents[1] / "bundles" / "cryo3d_picker" / "configs" / "train.yaml"
TINY = dict(synth_shape=(24, 48, 48), patch_size=16, stride=16, ds_factor=1, progress=False)


def test_auto_n_val_validates_two_built_in_tomograms_and_one_of_a_users():
    assert resolve_n_val("auto", builtin=True, n_tomograms=6) == AUTO_N_VAL_BUILTIN == 2
    assert resolve_n_val("auto", builtin=False, n_tomograms=6) == AUTO_N_VAL_USER == 1


def test_auto_n_val_always_leaves_a_tomogram_to_train_on():
    assert resolve_n_val("auto", builtin=True, n_tomograms=2) == 1


def test_a_number_of_validation_tomograms_is_kept_as_given():
    assert resolve_n_val(3, builtin=True, n_tomograms=6) == 3
    assert resolve_n_val("1", builtin=True, n_tomograms=6) == 1


@pytest.mark.parametrize("bad", [0, "two", 1.5, None])
def test_a_bad_n_val_is_one_clear_line_naming_the_key(bad):
    with pytest.raises(ValueError, match="n_val: expected a whole number of validation tomograms >= 1 or 'auto'"):
        resolve_n_val(bad, builtin=True, n_tomograms=6)


def test_the_bundle_trains_on_eight_built_in_tomograms_and_validates_two():
    cfg = yaml.safe_load(TRAIN_YAML.read_text())
    n = cfg["n_synth_tomograms"]
    held = resolve_n_val(cfg["n_val"], builtin=True, n_tomograms=n)
    assert (n - held, held) == (8, 2)
    assert cfg["n_test_tomograms"] == 4
    assert "n_test=@n_test_tomograms" in cfg["data"]


def test_ensure_data_defaults_are_the_bundles():
    cfg = yaml.safe_load(TRAIN_YAML.read_text())
    params = inspect.signature(ensure_data).parameters
    assert params["n_tomograms"].default == cfg["n_synth_tomograms"]
    assert params["n_val"].default == cfg["n_val"]
    assert params["n_test"].default == cfg["n_test_tomograms"]
    assert params["synth_preset"].default == cfg["synth_preset"]


@pytest.fixture(scope="module")
def builtin(tmp_path_factory):
    d = tmp_path_factory.mktemp("builtin")
    return d, ensure_data(d, n_tomograms=3, n_test=2, seed=7, **TINY)


def test_built_in_data_validates_on_two_held_out_tomograms(builtin):
    d, data = builtin
    assert data["val"] == ["synth_001", "synth_002"] and data["train"] == ["synth_000"]


def test_built_in_data_gains_test_tomograms_that_training_and_validation_never_see(builtin):
    d, data = builtin
    test = d / TEST_DIR
    assert data["test"] == str(test)
    names = sorted(p.stem for p in (test / "tomograms").glob("*.mrc"))
    assert names == ["test_000", "test_001"]
    assert not set(names) & set(data["train"] + data["val"])
    assert not list((d / "tomograms").glob("test_*"))  # nothing of the test set where training reads
    store_tomos = set(PatchStore(data["store"]).tomo_names)
    assert store_tomos == {"synth_000"}
    assert set(read_picks_csv(test / "picks.csv").tomo) <= set(names)  # a tiny tomogram may hold none
    assert not set(read_picks_csv(d / "picks.csv").tomo) & set(names)


def test_the_test_tomograms_are_simulated_with_another_seed_and_the_same_settings(builtin):
    d, _ = builtin
    train_man = json.loads((d / "manifest.json").read_text())
    test_man = json.loads((d / TEST_DIR / "manifest.json").read_text())
    assert test_man["config"]["seed"] == train_man["config"]["seed"] + TEST_SEED_OFFSET == 7 + TEST_SEED_OFFSET
    same = {k: v for k, v in test_man["config"].items() if k != "seed"}
    assert same == {k: v for k, v in train_man["config"].items() if k != "seed"}
    a = read_tomogram(d / "tomograms" / "synth_000.mrc").data
    b = read_tomogram(d / TEST_DIR / "tomograms" / "test_000.mrc").data
    assert a.shape != b.shape or not np.allclose(a, b)


def test_a_second_run_leaves_the_test_tomograms_as_they_are(builtin):
    d, _ = builtin
    files = sorted((d / TEST_DIR).rglob("*"))
    before = {p: p.stat().st_mtime_ns for p in files if p.is_file()}
    again = ensure_data(d, n_tomograms=3, n_test=2, seed=7, **TINY)
    assert again["test"] == str(d / TEST_DIR)
    assert {p: p.stat().st_mtime_ns for p in files if p.is_file()} == before


def test_a_test_folder_the_simulator_did_not_write_is_left_alone(builtin, tmp_path, caplog):
    src, _ = builtin
    d = tmp_path / "data"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("store", TEST_DIR))
    (d / TEST_DIR).mkdir()
    (d / TEST_DIR / "notes.txt").write_text("mine")
    with caplog.at_level(logging.WARNING, logger="cryo3d"):
        data = ensure_data(d, n_tomograms=3, n_test=2, seed=7, **TINY)
    assert data["test"] is None
    assert sorted(p.name for p in (d / TEST_DIR).iterdir()) == ["notes.txt"]
    assert "holds files the simulator did not write" in caplog.text


def test_a_users_own_tomograms_get_no_test_set_and_validate_one(builtin, tmp_path):
    src, _ = builtin
    d = tmp_path / "mine"
    shutil.copytree(src / "tomograms", d / "tomograms")
    shutil.copy(src / "picks.csv", d / "picks.csv")
    data = ensure_data(d, **TINY)
    assert data["test"] is None and not (d / TEST_DIR).exists()
    assert data["val"] == ["synth_002"]


def test_built_in_data_of_fewer_tomograms_than_the_default_trains_on_what_is_there_and_says_so(builtin, tmp_path,
                                                                                             caplog):
    src, _ = builtin
    d = tmp_path / "older"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("store", TEST_DIR))
    with caplog.at_level(logging.WARNING, logger="cryo3d"):
        data = ensure_data(d, n_tomograms=4, n_test=1, seed=7, **TINY)
    assert data["train"] == ["synth_000"] and len(data["val"]) == 2
    assert "holds 3 simulated tomograms, fewer than n_synth_tomograms (4): training on 1, validating on 2" in caplog.text


def test_an_experiments_default_split_is_the_bundles_two_validation_tomograms(builtin, tmp_path):
    from cryo3d.workflows.experiments.epochs import run_eval_set

    d, data = builtin
    (tmp_path / "experiment.json").write_text(json.dumps({"overrides": {"dataset_dir": str(d)}}))
    assert sorted(Path(p).stem for p in run_eval_set(tmp_path).paths) == data["val"]

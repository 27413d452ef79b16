"""The bundle's classes (the network's output channels) follow the data's rule without touching data."""

from __future__ import annotations

import json

import pytest
import yaml

from cryo3d.particles import CZII_PARTICLES, ParticleClass, ParticleSet, builtin_particles
from cryo3d.workflows.network_spec import bundle_particles, check_data_particles

TWO = ParticleSet((ParticleClass("ribosome", 150.0), ParticleClass("proteasome", 80.0)))


def with_tomogram(d):
    (d / "tomograms").mkdir(parents=True)
    (d / "tomograms" / "TS_1.mrc").write_bytes(b"")
    return d


def test_an_empty_dataset_dir_gives_the_simulator_presets_classes_and_stays_empty(tmp_path):
    d = tmp_path / "data"
    assert bundle_particles("auto", d) == CZII_PARTICLES
    assert bundle_particles("auto", d, synth_preset="crowded12") == builtin_particles("crowded12")
    assert not d.exists()


def test_particles_yaml_in_the_dataset_dir_wins_then_the_manifest_then_czii(tmp_path):
    d = with_tomogram(tmp_path / "data")
    assert bundle_particles(None, d) == CZII_PARTICLES
    (d / "manifest.json").write_text(json.dumps({"particles": TWO.to_dict()}))
    assert bundle_particles("auto", d) == TWO
    (d / "particles.yaml").write_text(yaml.safe_dump(CZII_PARTICLES.to_dict()))
    assert bundle_particles("auto", d) == CZII_PARTICLES


def test_a_particles_file_or_a_builtin_name_is_taken_as_given(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump(TWO.to_dict()))
    assert bundle_particles(str(f), tmp_path / "data") == TWO
    assert len(bundle_particles("crowded12", tmp_path / "data")) == 12
    with pytest.raises(FileNotFoundError, match="particle_set: .*nope.yaml"):
        bundle_particles(str(tmp_path / "nope.yaml"), tmp_path / "data")


def test_data_with_other_classes_than_the_network_is_a_clear_error():
    assert check_data_particles(TWO, TWO) is TWO
    with pytest.raises(ValueError, match="built for classes \\['ribosome', 'proteasome'\\] but the data has"):
        check_data_particles(TWO, CZII_PARTICLES)

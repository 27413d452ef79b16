"""metadata.json describes the network the bundle's defaults build, and MONAI's schema accepts it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cryo3d.particles import CZII_PARTICLES
from cryo3d.synth import SynthConfig
from cryo3d.workflows.bundle import config_path, parse_bundle
from cryo3d.workflows.network_spec import network_data_format

SCHEMA_NAME = Path("shared") / "monai" / "meta_schema_20240725.json"
#: MONAI's schema beside the project (``../shared``) or above its checkout; None when absent.
SCHEMA = next((p / SCHEMA_NAME for p in Path(__file__).resolve().parents[1].parents if (p / SCHEMA_NAME).is_file()),
              None)


def metadata() -> dict:
    return json.loads(config_path("metadata.json").read_text())


@pytest.fixture(scope="module")
def defaults(tmp_path_factory):
    """The shipped train.yaml with an empty dataset_dir: the built-in data, not made."""
    data = tmp_path_factory.mktemp("meta") / "data"
    return parse_bundle(overrides={"dataset_dir": str(data)}), data


def subset_of(expected: dict, actual: dict, where: str = "") -> None:
    for k, v in expected.items():
        assert k in actual, f"{where}{k} missing"
        if isinstance(v, dict):
            subset_of(v, actual[k], f"{where}{k}.")
        else:
            assert actual[k] == v, f"{where}{k}: metadata.json has {actual[k]!r}, the defaults give {v!r}"


def test_network_data_format_is_what_the_defaults_give_on_the_built_in_data(defaults):
    parser, data = defaults
    low, high = SynthConfig().voxel_spacing  # the simulator's voxel spacings
    for native in (low, high):
        subset_of(network_data_format(parser, native), metadata()["network_data_format"])
    assert not data.exists()  # nothing was simulated


def test_network_data_format_channels_are_the_czii_classes_and_the_network_maps_its_shapes(defaults):
    parser, _ = defaults
    fmt = metadata()["network_data_format"]
    image, pred = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    assert pred["format"] == "heatmap" and pred["num_channels"] == len(CZII_PARTICLES)
    assert list(pred["channel_def"].values()) == CZII_PARTICLES.names
    net = parser.get_parsed_content("network_def").eval()
    with torch.no_grad():
        y = net(torch.zeros(1, image["num_channels"], *image["spatial_shape"]))
    assert list(y.shape) == [1, pred["num_channels"], *pred["spatial_shape"]]


@pytest.mark.skipif(SCHEMA is None, reason="MONAI's metadata schema is not in ../shared/monai")
def test_metadata_validates_against_monais_schema():
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(config_path("metadata.json")), filepath=str(SCHEMA), create_dir=False)

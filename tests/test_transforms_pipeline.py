"""Default pipelines: composition, determinism, intensity on the image only, bundle YAML."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose
from monai.utils import set_determinism

from cryo3d import coords
from cryo3d_transforms import default_intensity_transforms, default_train_transforms, default_val_transforms

SHAPE = (24, 24, 24)


@pytest.fixture
def sample():
    rng = np.random.default_rng(1)
    return {
        "image": rng.standard_normal((1,) + SHAPE).astype(np.float32),
        "keypoints": rng.uniform(2, 22, (6, 3)),
        "labels": rng.integers(0, 3, 6),
        "ds_sigma": np.array([1.0, 1.3, 1.6]),
        "ds_factor": 2,
        "voxel_spacing": 10.0,
        "tomo": "TS_1",
    }


def run(seed, sample, **kw):
    t = default_train_transforms(**kw)
    t.set_random_state(seed)
    return [t(sample) for _ in range(3)]


def test_train_pipeline_renders_a_downsampled_heatmap(sample):
    out = run(0, sample)[0]
    assert tuple(out["heatmap"].shape) == (3,) + coords.ds_shape(SHAPE, 2)
    assert tuple(out["image"].shape) == (1,) + SHAPE
    assert out["keypoints"].shape[1] == 3 and out["labels"].shape == out["keypoints"].shape[:1]


def test_same_seed_gives_the_same_samples(sample):
    for a, b in zip(run(7, sample), run(7, sample)):
        np.testing.assert_array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
        np.testing.assert_array_equal(np.asarray(a["heatmap"]), np.asarray(b["heatmap"]))
        np.testing.assert_array_equal(a["keypoints"], b["keypoints"])


def test_different_seeds_give_different_samples(sample):
    a, b = run(1, sample)[0], run(2, sample)[0]
    assert not np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))


def test_set_determinism_makes_a_fresh_pipeline_repeat(sample):
    outs = []
    for _ in range(2):
        set_determinism(seed=11)
        t = default_train_transforms()
        outs.append(t(sample)["keypoints"])
    set_determinism(None)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_roi_crop_sets_the_output_size(sample):
    out = run(0, sample, roi_size=(16, 16, 16), intensity=False)[0]
    assert tuple(out["image"].shape) == (1, 16, 16, 16)
    assert tuple(out["heatmap"].shape) == (3, 8, 8, 8)


def test_intensity_transforms_touch_the_image_only(sample):
    hm = np.ones((3, 12, 12, 12), np.float32)
    t = Compose(default_intensity_transforms(prob=1.0, dropout_prob=1.0))
    t.set_random_state(0)
    out = t({**sample, "heatmap": hm})
    assert out["heatmap"] is hm
    assert out["keypoints"] is sample["keypoints"]
    assert not np.allclose(np.asarray(out["image"]), sample["image"])


def test_val_pipeline_only_renders(sample):
    out = default_val_transforms()(sample)
    assert out["image"] is sample["image"]
    np.testing.assert_array_equal(out["keypoints"], sample["keypoints"])
    assert out["heatmap"].shape == (3, 12, 12, 12)


def test_transforms_instantiate_from_bundle_yaml(sample):
    config = {
        "train": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "cryo3d_transforms.RandKeypointFlipd", "keys": "image", "prob": 1.0, "spatial_axis": 0},
                {
                    "_target_": "cryo3d_transforms.RandKeypointAffined",
                    "keys": "image",
                    "prob": 1.0,
                    "rotate_range": [3.14, 0.2, 0.2],
                    "scale_range": [0.1, 0.1, 0.1],
                },
                {"_target_": "cryo3d_transforms.RenderHeatmapd", "keys": "image"},
            ],
        },
        "default": {"_target_": "cryo3d_transforms.default_train_transforms", "intensity": False},
    }
    parser = ConfigParser(config)
    for name in ("train", "default"):
        t = parser.get_parsed_content(name)
        out = t(sample)
        assert tuple(out["heatmap"].shape) == (3, 12, 12, 12)


def test_torch_input_runs_through_the_whole_pipeline(sample):
    out = run(0, {**sample, "image": torch.from_numpy(sample["image"])})[0]
    assert isinstance(out["image"], torch.Tensor) and isinstance(out["heatmap"], torch.Tensor)

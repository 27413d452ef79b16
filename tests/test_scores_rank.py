"""Scores that rank (no ties at 1.0 from a saturated sigmoid) and no class beyond its annotated density."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cryo3d import coords
from cryo3d.heatmap import render_heatmap
from cryo3d.inference import predict
from cryo3d.io.picks_csv import read_picks_csv
from cryo3d.io.tomogram import write_mrc
from cryo3d.metrics import calibration, sweep_thresholds
from cryo3d.metric_ignite import sweep_grid
from cryo3d.networks import build_network
from cryo3d.particles import CZII_PARTICLES, ParticleClass, ParticleSet
from cryo3d.peak_selection import DENSITY_CAP_FACTOR, class_densities, density_caps, select_peaks
from cryo3d.peaks import find_peaks, logit_thresholds
from cryo3d.picks import Picks
from cryo3d.workflows.checkpoint_meta import CheckpointMeta

SPACING = 10.0
NET_CONFIG = {"name": "unet-tiny", "out_channels": 6, "ds_factor": 2}
ONE = ParticleSet((ParticleClass("a", 40.0),))


def _blobs(peak_logits: np.ndarray, shape=(24, 24, 24)) -> tuple[np.ndarray, np.ndarray]:
    """A logit heatmap [1, ...] of well-separated Gaussian bumps whose tops are ``peak_logits``."""
    rng = np.random.default_rng(0)
    n = len(peak_logits)
    centres = np.round(np.stack([rng.uniform(3, 21, n) for _ in range(3)], axis=1))
    centres[:, 0] = np.round(4 + 16 * np.arange(n) / max(n - 1, 1))  # spread along z so no two merge
    centres[:, 1] = np.where(np.arange(n) % 2, 6.0, 18.0)
    g = np.zeros(shape, np.float64)
    grid = np.indices(shape).astype(np.float64)
    for c, top in zip(centres, peak_logits):
        d2 = sum((grid[a] - c[a]) ** 2 for a in range(3))
        g = np.maximum(g, (top + 12.0) * np.exp(-d2 / (2 * 1.5**2)))
    return (g - 12.0)[None].astype(np.float32), centres


def test_logit_thresholds_are_the_probability_thresholds_on_the_logit_scale():
    p = np.array([0.0, 1e-6, 0.05, 0.5, 0.9, 0.999999, 1.0])
    t = logit_thresholds(p)
    assert t[0] == -np.inf and t[-1] == np.inf
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-t[1:-1])), p[1:-1], rtol=1e-12)


def test_peaks_on_logits_keep_their_order_where_a_float32_sigmoid_ties_at_one():
    tops = np.array([18.0, 20.0, 22.0, 24.0, 26.0, 28.0])
    logit, _ = _blobs(tops)
    _, _, saturated = find_peaks(torch.sigmoid(torch.from_numpy(logit)), 0.5, 3.0)
    assert np.all(saturated == 1.0)  # what a float32 probability map gives: no order left
    _, _, scores = find_peaks(logit, 0.5, 3.0, logits=True)
    assert len(scores) == len(tops)
    assert len(np.unique(scores)) == len(tops)
    expected = np.sort(1.0 / (1.0 + np.exp(-tops.astype(np.float64))))[::-1]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-15)


def test_peaks_on_logits_lie_where_the_probability_map_puts_them():
    kp = np.array([[5.3, 6.1, 7.7], [14.2, 15.6, 9.4]])
    prob = render_heatmap(kp, np.zeros(2, int), (20, 22, 18), [1.6])
    prob = np.clip(prob, 1e-7, 1 - 1e-7)
    logit = (np.log(prob) - np.log1p(-prob)).astype(np.float32)
    c_p, _, s_p = find_peaks(prob.astype(np.float32), 0.5, 3.0)
    c_l, _, s_l = find_peaks(logit, 0.5, 3.0, logits=True)
    np.testing.assert_allclose(c_l, c_p, atol=0.02)
    np.testing.assert_allclose(s_l, s_p, atol=1e-6)


def test_the_threshold_sweep_gets_thresholds_between_scores_above_its_fixed_grid():
    fixed = np.array([0.05, 0.5, 0.995])
    scores = 1.0 - np.logspace(-3, -9, 50)  # a confident model: every pick above 0.999
    grid = sweep_grid(fixed, scores)
    assert np.sum(grid > 0.999) >= 32
    assert set(fixed) <= set(grid.tolist())


def test_calibration_is_zero_for_a_calibrated_score_and_large_for_a_saturated_one():
    gt = Picks(["t"] * 10, ["a"] * 10, np.c_[np.arange(10) * 500.0, np.zeros(10), np.zeros(10)])
    right = gt.xyz[:8]
    wrong = np.c_[np.arange(2) * 500.0 + 250.0, np.full(2, 3000.0), np.zeros(2)]
    xyz = np.r_[right, wrong]
    calibrated = Picks(["t"] * 10, ["a"] * 10, xyz, np.full(10, 0.8))
    saturated = Picks(["t"] * 10, ["a"] * 10, np.r_[right[:2], wrong, wrong, wrong, wrong][:10], np.ones(10))
    c1 = sweep_thresholds(calibrated, gt, ONE)["calibration"]
    c2 = sweep_thresholds(saturated, gt, ONE)["calibration"]
    assert c1["ece"] == pytest.approx(0.0, abs=1e-12)
    assert c2["ece"] == pytest.approx(0.8, abs=1e-12)
    assert sum(c1["n"]) == 10 and sum(c1["tp"]) == 8


def test_calibration_of_no_predictions_is_nan():
    assert np.isnan(calibration([])["ece"])


def test_density_caps_allow_the_factor_times_the_annotated_density_and_skip_unknown_classes():
    d = class_densities([10, 0, 4], 1e9)
    caps = density_caps(d + [None], 2e9, factor=3.0)
    assert caps[0] == 60 and caps[2] == 24
    assert caps[1] == np.iinfo(np.int64).max and caps[3] == np.iinfo(np.int64).max
    assert np.all(density_caps(d, 2e9, factor=None) == np.iinfo(np.int64).max)
    with pytest.raises(ValueError, match="annotated volume"):
        class_densities([1], 0.0)


def test_a_class_beyond_its_annotated_density_keeps_its_best_picks_and_warns_naming_tomogram_and_class():
    shape = (20, 30, 30)
    volume = coords.voxels_to_volume(shape, SPACING, 1)
    rng = np.random.default_rng(3)
    n = 40
    c = rng.uniform(0, 20, (n, 3))
    scores = rng.uniform(0.3, 1.0, n)
    density = [2.0 / volume]  # two annotated per volume of this size: at most 6 picks at 3x
    with pytest.warns(UserWarning, match=r"TS_9: more picks than 3 x the density.*a: kept the 6 highest"):
        keep = select_peaks(c, np.zeros(n, int), scores, shape, ONE, SPACING, 1, where="TS_9",
                            class_density=density, density_factor=3.0)
    assert keep.sum() == 6
    assert set(np.flatnonzero(keep)) == set(np.argsort(-scores)[:6])


def test_a_checkpoint_carries_the_annotated_density():
    meta = CheckpointMeta(dict(NET_CONFIG), CZII_PARTICLES, SPACING, 32, 2, class_density=[1e-9] * 6)
    assert meta.state_dict()["class_density"] == [1e-9] * 6


def _confident_checkpoint(path: Path, class_density=None, bias: float = 25.0, gain: float = 4.0, **meta_extra) -> None:
    """A network whose logits sit around ``bias`` everywhere (+25: a float32 sigmoid gives exactly 1.0)."""
    torch.manual_seed(0)
    net = build_network(dict(NET_CONFIG))
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)][-1]
    with torch.no_grad():
        last.weight.mul_(gain)
        last.bias.add_(bias)
    meta = {"network": dict(NET_CONFIG), "particles": CZII_PARTICLES.to_dict(), "voxel_spacing": SPACING,
            "patch_size": [32, 32, 32], "ds_factor": 2, **meta_extra}
    if class_density is not None:
        meta["class_density"] = class_density
    torch.save({"network": net.state_dict(), "cryo3d": meta}, path)


@pytest.fixture(scope="module")
def noise_tomogram(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("tomo") / "TS_c.mrc"
    write_mrc(p, np.random.default_rng(1).standard_normal((48, 64, 64)).astype(np.float32), SPACING)
    return p


def test_predict_of_a_confident_model_gives_scores_that_rank(tmp_path, noise_tomogram):
    ck = tmp_path / "confident.pt"
    _confident_checkpoint(ck)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the packing cap may cut the untrained model's picks
        predict(ck, [str(noise_tomogram)], tmp_path / "out", progress=False, device="cpu")
    picks = read_picks_csv(tmp_path / "out" / "picks.csv")
    assert len(picks) > 50
    shared = 1.0 - len(np.unique(picks.score)) / len(picks)
    assert shared < 0.01, f"{shared:.1%} of the picks share a score"
    assert np.all(picks.score < 1.0)


def test_predict_caps_each_class_at_the_factor_times_the_annotated_density(tmp_path, noise_tomogram):
    ck = tmp_path / "dense.pt"
    volume = coords.voxels_to_volume((48, 64, 64), SPACING, 1)
    _confident_checkpoint(ck, class_density=[1.0 / volume] * 6)  # one annotated particle per such volume
    with pytest.warns(UserWarning, match=rf"tomogram TS_c: more picks than {DENSITY_CAP_FACTOR:g} x the density"):
        predict(ck, [str(noise_tomogram)], tmp_path / "out", progress=False, device="cpu")
    picks = read_picks_csv(tmp_path / "out" / "picks.csv")
    per_class = [len(picks.for_class(n)) for n in CZII_PARTICLES.names]
    assert max(per_class) <= math.ceil(DENSITY_CAP_FACTOR), per_class  # ceil(factor x 1 annotated)
    with pytest.warns(UserWarning, match=r"tomogram TS_c: more picks than 3 x the density"):
        predict(ck, [str(noise_tomogram)], tmp_path / "out3", progress=False, device="cpu", density_factor=3)
    assert max(len(read_picks_csv(tmp_path / "out3" / "picks.csv").for_class(n)) for n in CZII_PARTICLES.names) <= 3


def test_the_strongest_class_at_a_peak_keeps_it_and_the_other_channels_peaks_there_go():
    from cryo3d.peak_selection import strongest_class_keep

    hm = np.full((3, 8, 8, 8), -5.0, np.float32)
    hm[0, 2, 2, 2], hm[1, 2, 2, 2] = 4.0, 6.0  # one particle: class 1 is the model's choice
    hm[2, 6, 5, 4] = 3.0  # another particle, one channel only
    coords_ds = np.array([[2.1, 1.9, 2.2], [2.0, 2.0, 2.0], [6.0, 5.0, 4.0]])
    keep = strongest_class_keep(torch.from_numpy(hm), coords_ds, np.array([0, 1, 2]))
    assert keep.tolist() == [False, True, True]


def test_picks_with_the_strongest_class_rule_report_each_particle_once():
    from cryo3d.peak_selection import heatmap_to_picks

    shape = (16, 16, 16)
    kp = np.array([[5.0, 5.0, 5.0], [11.0, 10.0, 9.0]])
    prob = render_heatmap(np.r_[kp, kp], np.array([0, 0, 1, 1]), shape, [1.5, 1.5])
    prob[1] *= np.where(np.indices(shape)[0] < 8, 0.7, 1.0)  # class 1 weaker on the first, stronger on the second
    prob[0] *= np.where(np.indices(shape)[0] < 8, 1.0, 0.7)
    two = ParticleSet((ParticleClass("a", 40.0), ParticleClass("b", 40.0)))
    both = heatmap_to_picks(prob, 0.3, "t", two, SPACING, 1, 0.5, class_decision="independent")
    once = heatmap_to_picks(prob, 0.3, "t", two, SPACING, 1, 0.5, class_decision="strongest")
    assert len(both) == 4
    assert sorted(once.cls.tolist()) == ["a", "b"]
    assert np.allclose(once.for_class("a").xyz, coords.voxel_to_angstrom(kp[:1], SPACING), atol=1.0)


def test_predict_without_the_density_cap_reports_more_than_the_annotations_allow(tmp_path, noise_tomogram):
    from cryo3d.cli import main

    ck = tmp_path / "dense.pt"
    volume = coords.voxels_to_volume((48, 64, 64), SPACING, 1)
    _confident_checkpoint(ck, class_density=[1.0 / volume] * 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["predict", str(ck), str(noise_tomogram), "--out", str(tmp_path / "out"), "--quiet",
                     "--device", "cpu", "--density-cap", "0"]) == 0
    picks = read_picks_csv(tmp_path / "out" / "picks.csv")
    assert max(len(picks.for_class(n)) for n in CZII_PARTICLES.names) > 3


def test_a_checkpoint_records_the_class_decision_its_thresholds_were_validated_under():
    from cryo3d.peak_selection import CLASS_DECISION

    meta = CheckpointMeta(dict(NET_CONFIG), CZII_PARTICLES, SPACING, 32, 2)
    assert meta.state_dict()["class_decision"] == CLASS_DECISION == "strongest"


def _applied(setting: str, ck, tomogram, out, **kw) -> str:
    """The value of ``setting`` (class_decision, tta) a predict call applied, as its predict.json records it."""
    import json

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the packing cap may cut the untrained model's picks
        predict(ck, [str(tomogram)], out, progress=False, device="cpu", **kw)
    return json.loads((out / "predict.json").read_text())["settings"][setting]


@pytest.mark.parametrize("field, recorded, legacy, other", [
    ("class_decision", "strongest", "independent", "strongest"),
    ("tta", "flips", "none", "none"),
])
def test_predict_applies_what_its_checkpoint_records_and_the_legacy_setting_for_one_that_records_none(
        tmp_path, noise_tomogram, field, recorded, legacy, other):
    old, new = tmp_path / "legacy.pt", tmp_path / "recorded.pt"
    _confident_checkpoint(old)
    _confident_checkpoint(new, **{field: recorded})
    assert _applied(field, old, noise_tomogram, tmp_path / "a") == legacy
    assert _applied(field, new, noise_tomogram, tmp_path / "b") == recorded
    assert _applied(field, new, noise_tomogram, tmp_path / "c", **{field: other}) == other  # the caller overrides


@pytest.mark.parametrize("field, bad", [("class_decision", "majority"), ("tta", "rot180")])
def test_a_checkpoint_with_an_unknown_setting_is_refused_naming_the_field(tmp_path, noise_tomogram, field, bad):
    from cryo3d.errors import Cryo3DError

    ck = tmp_path / "odd.pt"
    _confident_checkpoint(ck, **{field: bad})
    with pytest.raises(Cryo3DError, match=f"field '{field}'.*{bad}"):
        predict(ck, [str(noise_tomogram)], tmp_path / "out", progress=False, device="cpu")


def test_a_checkpoint_records_the_test_time_augmentation_its_thresholds_were_validated_under():
    meta = CheckpointMeta(dict(NET_CONFIG), CZII_PARTICLES, SPACING, 32, 2, tta="flips")
    assert meta.state_dict()["tta"] == "flips"


def test_an_unknown_val_tta_is_refused_naming_the_bundle_key():
    with pytest.raises(ValueError, match="val_tta.*mirror"):
        CheckpointMeta(dict(NET_CONFIG), CZII_PARTICLES, SPACING, 32, 2, tta="mirror")


def test_predicts_help_gives_the_density_caps_default():
    from cryo3d.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    cap = next(a for a in sub.choices["predict"]._actions if a.dest == "density_cap")
    assert f"default: {DENSITY_CAP_FACTOR:g}," in cap.help


def test_the_density_caps_warning_says_how_to_raise_it_for_partly_annotated_training_data():
    shape = (20, 30, 30)
    density = [1.0 / coords.voxels_to_volume(shape, SPACING, 1)]
    scores = np.linspace(0.5, 1.0, 10)
    c = np.c_[np.linspace(1, 18, 10), np.linspace(1, 28, 10), np.linspace(1, 28, 10)]
    with pytest.warns(UserWarning, match=r"annotated only in part.*--density-cap FACTOR"):
        select_peaks(c, np.zeros(10, int), scores, shape, ONE, SPACING, 1, where="TS_p", class_density=density,
                     density_factor=2.5)

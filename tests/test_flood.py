"""No class floods: an untrained model or a class the model never saw yields at most what the volume holds."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from cryo3d import coords
from cryo3d.heatmap import render_heatmap
from cryo3d.inference import pick_tomogram, warn_unlearned
from cryo3d.sliding_window import InferenceSettings
from cryo3d.io.tomogram import Tomogram
from cryo3d.metrics import UNLEARNED_THRESHOLD
from cryo3d.networks import build_network
from cryo3d.particles import CZII_PARTICLES, ParticleClass, ParticleSet
from cryo3d.peak_selection import max_particles
from cryo3d.picks import Picks
from cryo3d.metric_ignite import ParticleFBeta
from cryo3d.workflows.checkpoint_meta import CheckpointMeta

SPACING = 10.0
TWO = ParticleSet((ParticleClass("seen", 60.0, 1.0), ParticleClass("unseen", 80.0, 1.0)))


def _caps(shape_ds: tuple[int, ...], particles: ParticleSet, f: int) -> np.ndarray:
    return max_particles(shape_ds, coords.length_to_voxels(particles.radii, SPACING, f))


def test_an_untrained_network_never_yields_more_picks_than_the_volume_holds():
    torch.manual_seed(0)
    net = build_network("unet-tiny", out_channels=len(CZII_PARTICLES), ds_factor=2)
    rng = np.random.default_rng(0)
    tomo = Tomogram(name="TS_noise", data=rng.standard_normal((48, 64, 64)).astype(np.float32),
                    voxel_spacing=SPACING, path="")
    # threshold 0: every local maximum of the untrained output is a candidate
    st = InferenceSettings(roi_size=32, ds_factor=2, overlap=0.25, voxel_spacing=SPACING, thresholds=0.0, amp=False)
    with pytest.warns(UserWarning, match="TS_noise: more picks than the volume can hold"):
        picks = pick_tomogram(net, tomo, CZII_PARTICLES, st, device="cpu")
    caps = _caps(coords.ds_shape((48, 64, 64), 2), CZII_PARTICLES, 2)
    n = np.array([len(picks.for_class(name)) for name in CZII_PARTICLES.names])
    assert np.all(n <= caps), (n, caps)
    assert np.any(n == caps)  # the cap was needed: without it some class floods


def _validation_heatmap(rng: np.random.Generator, shape: tuple[int, int, int], seen_kp: np.ndarray,
                        unseen_kp: np.ndarray) -> np.ndarray:
    """What a model that never saw class 1 outputs: class 0 found, class 1 noisy everywhere but its particles."""
    sig = coords.ds_sigma(0.4 * TWO.radii, SPACING, 1)
    seen = render_heatmap(seen_kp, np.zeros(len(seen_kp), int), shape, sig[:1])[0]
    noise = rng.uniform(0.0, 0.6, shape)
    grid = np.indices(shape).reshape(3, -1).T
    far = np.linalg.norm(grid[:, None, :] - unseen_kp[None], axis=-1).min(axis=1) > 6
    unseen = np.where(far.reshape(shape), noise, 0.0)
    return np.stack([seen, unseen]).astype(np.float32)


def test_a_class_the_model_never_saw_keeps_the_safe_threshold_and_stays_under_the_cap():
    rng = np.random.default_rng(1)
    shape = (40, 48, 48)
    seen_kp = np.array([[10.0, 10, 10], [30.0, 30, 30], [12.0, 36, 20]])
    unseen_kp = np.array([[20.0, 20, 38], [30.0, 10, 12]])
    gt = Picks(["TS_val"] * 5, ["seen"] * 3 + ["unseen"] * 2,
               coords.voxel_to_angstrom(np.concatenate([seen_kp, unseen_kp]), SPACING))
    metric = ParticleFBeta(gt, ["TS_val"], TWO, SPACING, ds_factor=1, cross_class_fraction=0.0, logits=False)
    metric.reset()
    hm = torch.from_numpy(_validation_heatmap(rng, shape, seen_kp, unseen_kp))[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the noise class hits the cap at the base threshold
        metric.update((hm, torch.tensor([[0]])))
    metric.compute()
    last = metric.last
    assert last["unlearned"] == ["unseen"]
    assert last["thresholds"][1] == UNLEARNED_THRESHOLD
    assert last["per_class"]["seen"]["tp"] == 3
    assert last["table"].splitlines()[-1] == "not learned (no true positive at any threshold): unseen"
    # validation never held more picks of the noise class than the volume holds
    assert max(p for p in [len(x.for_class("unseen")) for x in metric._picks]) <= _caps(shape, TWO, 1)[1]
    state = CheckpointMeta({"name": "unet-tiny"}, TWO, SPACING, 32, 1, metric=metric).state_dict()
    assert state["unlearned_classes"] == ["unseen"]
    with pytest.warns(UserWarning, match="no true positive for unseen"):
        assert warn_unlearned(state, "best.pt") == ["unseen"]


class NoiseNet(torch.nn.Module):
    """A detector of class 0 that never saw class 1: class 1 responds to anything (the input as logits)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.full_like(x, -8.0), x], dim=1)


@pytest.mark.parametrize("threshold", [0.05, UNLEARNED_THRESHOLD])
def test_picking_a_class_the_model_never_saw_yields_at_most_what_the_volume_holds(threshold):
    rng = np.random.default_rng(2)
    tomo = Tomogram(name="TS_unseen", data=rng.standard_normal((40, 48, 48)).astype(np.float32),
                    voxel_spacing=SPACING, path="")
    st = InferenceSettings(roi_size=16, ds_factor=1, overlap=0.25, voxel_spacing=SPACING,
                           thresholds=[0.5, threshold], amp=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        picks = pick_tomogram(NoiseNet(), tomo, TWO, st, device="cpu")
    n = len(picks.for_class("unseen"))
    cap = _caps((40, 48, 48), TWO, 1)[1]
    assert n <= cap and len(picks.for_class("seen")) == 0
    if threshold == 0.05:  # the lowest threshold floods: capped, with a warning naming tomogram and class
        assert n == cap and any("TS_unseen" in str(w.message) and "unseen" in str(w.message) for w in caught)


@pytest.mark.parametrize("bad", [0, -2.0, float("inf"), True])
def test_validation_refuses_a_flood_bound_that_is_not_a_positive_number_naming_the_bundle_key(bad):
    gt = Picks(["TS_val"], ["seen"], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="val_max_picks_per_true"):
        ParticleFBeta(gt, ["TS_val"], TWO, SPACING, ds_factor=1, max_picks_per_true=bad)


def test_validation_bounds_each_class_at_three_picks_per_annotated_particle_by_default():
    from cryo3d.metric_ignite import VALIDATION_MAX_PICKS_PER_TRUE

    gt = Picks(["TS_val"], ["seen"], np.zeros((1, 3)))
    assert ParticleFBeta(gt, ["TS_val"], TWO, SPACING, ds_factor=1).max_picks_per_true == VALIDATION_MAX_PICKS_PER_TRUE == 3.0
    assert ParticleFBeta(gt, ["TS_val"], TWO, SPACING, ds_factor=1, max_picks_per_true=None).max_picks_per_true is None


def test_validation_caps_a_flooding_class_at_its_own_looser_density_factor_than_predicts():
    from cryo3d.metric_ignite import VALIDATION_DENSITY_CAP_FACTOR
    from cryo3d.peak_selection import DENSITY_CAP_FACTOR, heatmap_to_picks

    shape = (32, 32, 32)
    logits = np.full((2, *shape), -10.0, np.float32)
    g = np.arange(4, 32, 8)
    zz, yy, xx = np.meshgrid(g, g, g, indexing="ij")
    logits[0, zz, yy, xx] = 5.0 + np.linspace(0.0, 1.0, zz.size).reshape(zz.shape)  # 64 peaks, distinct scores
    density = [1.0 / coords.voxels_to_volume(shape, SPACING, 1), None]  # one annotated per such volume
    gt = Picks(["TS_val"], ["seen"], coords.voxel_to_angstrom(np.array([[4.0, 4.0, 4.0]]), SPACING))
    metric = ParticleFBeta(gt, ["TS_val"], TWO, SPACING, ds_factor=1, class_density=density)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cap's warning
        metric.update((torch.from_numpy(logits)[None], torch.tensor([[0]])))
        metric.compute()
        predicted = heatmap_to_picks(torch.from_numpy(logits), 0.05, "TS_val", TWO, SPACING, 1, 0.6, logits=True,
                                     class_density=density)
    assert len(metric.last_picks.for_class("seen")) == math.ceil(VALIDATION_DENSITY_CAP_FACTOR) == 10
    assert len(predicted.for_class("seen")) == math.ceil(DENSITY_CAP_FACTOR) == 3

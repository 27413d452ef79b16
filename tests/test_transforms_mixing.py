"""Batch mixing: collate with padding, MixUp blend, CutMix keypoint membership, CutMixUp, mixer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader

from cryo3d_transforms import (
    BatchMixer,
    HeatmapCutMix,
    HeatmapMixUp,
    PrepareMixedBatch,
    collate_keypoints,
    heatmap_cutmix,
    heatmap_cutmixup,
    heatmap_mixup,
    render_batch_heatmap,
)
from cryo3d_transforms.mixing import draw_boxes

N = 16
F = 2
SIGMA = np.array([1.0, 1.5])


def make_samples():
    rng = np.random.default_rng(0)
    pts = [
        np.array([[2.0, 2.0, 2.0], [12.0, 12.0, 12.0], [7.4, 1.0, 1.0], [7.6, 1.0, 1.0]]),
        np.array([[3.0, 3.0, 3.0], [10.0, 3.0, 3.0]]),
        np.array([[5.0, 5.0, 9.0]]),
    ]
    out = []
    for i, p in enumerate(pts):
        lab = np.arange(len(p)) % 2
        out.append(
            {
                "image": rng.standard_normal((1, N, N, N)).astype(np.float32),
                "keypoints": p,
                "labels": lab,
                "ds_sigma": SIGMA,
                "ds_factor": F,
                "tomo": f"t{i}",
            }
        )
    return out


@pytest.fixture
def batch():
    b = collate_keypoints(make_samples())
    b["heatmap"] = render_batch_heatmap(b["keypoints"], b["labels"], (N, N, N), SIGMA, F)
    return b


def as_set(points, labels):
    return {(tuple(np.round(p, 6)), int(c)) for p, c in zip(np.asarray(points), np.asarray(labels)) if c >= 0}


def test_collate_pads_keypoints_with_minus_one_labels(batch):
    assert batch["keypoints"].shape == (3, 4, 3)
    assert batch["labels"].tolist() == [[0, 1, 0, 1], [0, 1, -1, -1], [0, -1, -1, -1]]
    assert batch["num_keypoints"].tolist() == [4, 2, 1]
    assert batch["image"].shape == (3, 1, N, N, N) and batch["tomo"] == ["t0", "t1", "t2"]


def test_collate_works_as_a_dataloader_collate_fn():
    loader = DataLoader(make_samples(), batch_size=2, collate_fn=collate_keypoints)
    shapes = [b["keypoints"].shape for b in loader]
    assert shapes == [(2, 4, 3), (1, 1, 3)]


def test_mixup_blends_image_and_heatmap_with_the_drawn_lambda(batch):
    m = HeatmapMixUp(alpha=0.4)
    m.set_random_state(0)
    out = m(batch)
    lam = torch.as_tensor(m.lam, dtype=torch.float32).view(-1, 1, 1, 1, 1)
    p = torch.as_tensor(m.perm)
    assert np.all((m.lam > 0) & (m.lam < 1))
    torch.testing.assert_close(out["image"], lam * batch["image"] + (1 - lam) * batch["image"][p])
    torch.testing.assert_close(out["heatmap"], lam * batch["heatmap"] + (1 - lam) * batch["heatmap"][p])
    np.testing.assert_allclose(out["mix_lambda"].numpy(), m.lam)


def test_mixup_keeps_both_keypoint_sets(batch):
    out = heatmap_mixup(batch, [0.5, 0.5, 0.5], [1, 2, 0])
    assert as_set(out["keypoints"][0], out["labels"][0]) == as_set(
        batch["keypoints"][0], batch["labels"][0]
    ) | as_set(batch["keypoints"][1], batch["labels"][1])


def test_cutmix_keeps_a_outside_and_b_inside_the_box_by_centre(batch):
    boxes = np.array([[[0, 0, 0], [8, 8, 8]], [[8, 0, 0], [16, 16, 16]], [[0, 0, 0], [2, 2, 2]]])
    out = heatmap_cutmix(batch, boxes, [1, 2, 0])
    # sample 0: A's (12,12,12) and (7.6,1,1) are outside [-0.5, 7.5); B = sample 1: (3,3,3) inside
    expect0 = {((12.0, 12.0, 12.0), 1), ((7.6, 1.0, 1.0), 1), ((3.0, 3.0, 3.0), 0)}
    assert as_set(out["keypoints"][0], out["labels"][0]) == expect0
    # sample 1: A's (3,3,3) stays, (10,3,3) is inside its box; B = sample 2: (5,5,9) is outside
    assert as_set(out["keypoints"][1], out["labels"][1]) == {((3.0, 3.0, 3.0), 0)}
    # sample 2: A's (5,5,9) outside its box; B = sample 0: (2,2,2) is not inside [-0.5, 1.5)
    assert as_set(out["keypoints"][2], out["labels"][2]) == {((5.0, 5.0, 9.0), 0)}


def test_cutmix_pastes_the_image_box_and_renders_the_heatmap_again(batch):
    boxes = np.array([[[0, 0, 0], [8, 8, 8]]] * 3)
    perm = [1, 2, 0]
    out = heatmap_cutmix(batch, boxes, perm)
    img, src = out["image"], batch["image"]
    torch.testing.assert_close(img[0, :, :8, :8, :8], src[1, :, :8, :8, :8])
    torch.testing.assert_close(img[0, :, 8:], src[0, :, 8:])
    ref = render_batch_heatmap(out["keypoints"], out["labels"], (N, N, N), SIGMA, F)
    torch.testing.assert_close(out["heatmap"], ref)
    # rendered, not masked: just past the box (ds voxel z = 4, full-res 8.5) channel 0 holds
    # exactly the tail of B's Gaussian at (3, 3, 3); A's class-0 point at 7.4 (inside) is gone
    d2 = np.sum((np.array([4.0, 1.0, 1.0]) - (np.array([3.0, 3.0, 3.0]) - 0.5) / F) ** 2)
    assert float(out["heatmap"][0, 0, 4, 1, 1]) == pytest.approx(np.exp(-d2 / 2), rel=1e-5)


def test_cutmixup_blends_inside_the_box_only(batch):
    boxes = np.array([[[0, 0, 0], [8, 8, 8]]] * 3)
    lam = np.array([0.3, 0.6, 0.9])
    out = heatmap_cutmixup(batch, boxes, lam, [1, 2, 0])
    a, b = batch["image"][0], batch["image"][1]
    torch.testing.assert_close(out["image"][0, :, :8, :8, :8], 0.3 * a[:, :8, :8, :8] + 0.7 * b[:, :8, :8, :8])
    torch.testing.assert_close(out["image"][0, :, 8:], a[:, 8:])
    ha, hb = batch["heatmap"][0], batch["heatmap"][1]
    torch.testing.assert_close(out["heatmap"][0, :, :4, :4, :4], 0.3 * ha[:, :4, :4, :4] + 0.7 * hb[:, :4, :4, :4])
    torch.testing.assert_close(out["heatmap"][0, :, 4:], ha[:, 4:])


def test_boxes_lie_on_the_downsampling_grid_and_lambda_is_the_kept_fraction():
    rng = np.random.RandomState(0)
    boxes, lam = draw_boxes(rng, 50, (16, 18, 21), 1.0, 2)
    lo, hi = boxes[:, 0], boxes[:, 1]
    assert np.all(lo % 2 == 0) and np.all((hi % 2 == 0) | (hi == [16, 18, 21]))
    vol = np.prod(np.clip(hi - lo, 0, None), axis=1)
    np.testing.assert_allclose(lam, 1 - vol / (16 * 18 * 21))


def test_random_cutmix_is_reproducible_with_a_seed(batch):
    def run(seed):
        m = HeatmapCutMix(alpha=1.0)
        m.set_random_state(seed)
        return m(batch)

    a, b = run(1), run(1)
    torch.testing.assert_close(a["image"], b["image"])
    torch.testing.assert_close(a["heatmap"], b["heatmap"])


def test_batch_mixer_draws_every_kind_and_repeats_with_a_seed(batch):
    def modes(seed):
        m = BatchMixer(prob=1.0, seed=seed)
        return [m(batch)["mix_mode"] for _ in range(12)]

    assert modes(0) == modes(0)
    assert set(modes(0)) == {"mixup", "cutmix", "cutmixup"}
    assert BatchMixer(prob=0.0, seed=0)(batch).get("mix_mode") is None


def test_batch_mixer_mixes_engine_state_batch_at_iteration_started(batch):
    from ignite.engine import Engine

    seen = []
    engine = Engine(lambda e, b: seen.append(b.get("mix_mode")))
    BatchMixer(prob=1.0, mixup_weight=1, cutmix_weight=0, cutmixup_weight=0, seed=0).attach(engine)
    engine.run([batch, batch], max_epochs=1)
    assert seen == ["mixup", "mixup"]


def test_prepare_mixed_batch_returns_image_and_heatmap(batch):
    prep = PrepareMixedBatch(BatchMixer(prob=1.0, seed=0))
    img, hm = prep(batch, torch.device("cpu"))
    assert img.shape == (3, 1, N, N, N) and hm.shape == (3, 2, N // F, N // F, N // F)


def test_cutmixup_keeps_all_of_a_and_b_inside_the_box(batch):
    boxes = np.array([[[0, 0, 0], [8, 8, 8]]] * 3)
    out = heatmap_cutmixup(batch, boxes, [0.5] * 3, [1, 2, 0])
    a = as_set(batch["keypoints"][0], batch["labels"][0])
    assert as_set(out["keypoints"][0], out["labels"][0]) == a | {((3.0, 3.0, 3.0), 0)}


def test_batch_mixer_works_as_a_monai_trainer_handler_with_prepare_batch():
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer

    class Record:
        def __init__(self):
            self.modes = []

        def attach(self, engine):
            engine.add_event_handler(Events.ITERATION_STARTED, lambda e: self.modes.append(e.state.batch.get("mix_mode")))

    def with_heatmap(samples):
        b = collate_keypoints(samples)
        b["heatmap"] = render_batch_heatmap(b["keypoints"], b["labels"], (N, N, N), SIGMA, F)
        return b

    loader = DataLoader(make_samples(), batch_size=3, collate_fn=with_heatmap)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.AvgPool3d(F))
    record = Record()
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=2,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), 0.01),
        loss_function=torch.nn.MSELoss(),
        prepare_batch=PrepareMixedBatch(),
        train_handlers=[BatchMixer(prob=1.0, seed=0), record],
    )
    trainer.run()
    assert len(record.modes) == 2 and all(m in ("mixup", "cutmix", "cutmixup") for m in record.modes)

"""Whole-tomogram inference: window geometry at 1/ds, TTA, resampling, picking, checkpoints, predict.

Most tests use parameter-free fake "networks" whose output is known exactly (an average
pool by ``ds_factor`` returned as logits, so the sigmoid gives the pooled value back): the
sigmoid of the stitched logits can then be compared with the pooling of the whole volume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cryo3d import coords
from cryo3d.inference import load_checkpoint_model, pick_tomogram, predict
from cryo3d.sliding_window import DownsampledSlidingWindowInferer, InferenceSettings, predict_heatmap
from cryo3d.io.copick_picks import read_copick
from cryo3d.io.picks_csv import read_picks_csv
from cryo3d.io.tomogram import Tomogram, write_mrc
from cryo3d.networks import build_network
from cryo3d.particles import CZII_PARTICLES, ParticleClass, ParticleSet
from cryo3d.peaks import find_peaks
from cryo3d.resample import resample_to_spacing

EPS = 1e-6


# --------------------------------------------------------------------------- fake networks


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.logit(p.clamp(EPS, 1 - EPS))


class PoolNet(nn.Module):
    """``avg_pool3d(x, f)`` repeated to ``C`` channels, as logits: sigmoid(output) = pooled value."""

    def __init__(self, f: int, channels: int = 2) -> None:
        super().__init__()
        self.f, self.channels = f, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _logit(F.avg_pool3d(x, self.f)).repeat(1, self.channels, 1, 1, 1)


class RampNet(PoolNet):
    """Pooled value times a fixed ramp along the window's x axis: not flip / rot90 equivariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = F.avg_pool3d(x, self.f)
        ramp = torch.linspace(0.2, 1.0, p.shape[-1], dtype=p.dtype, device=p.device)
        return _logit(p * ramp).repeat(1, self.channels, 1, 1, 1)


class BlobNet(nn.Module):
    """Two-class detector of blobs in a normalised volume: channel 0 bright, channel 1 dark.

    Heatmap (sigmoid of the output) ``clamp(+-pooled / scale)``: about 0.5 on a blob of height 3
    robust sigmas, proportional to the pooled blob near its top (so the peak fit is exact), below
    0.3 on pooled background noise.
    """

    def __init__(self, f: int, scale: float = 6.0) -> None:
        super().__init__()
        self.f, self.scale = f, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = F.avg_pool3d(x, self.f) / self.scale
        return _logit(torch.cat([p, -p], dim=1))


def _blobs(shape, centres_zyx, sigma: float, amps) -> np.ndarray:
    """Sum of isotropic Gaussians (full-resolution voxels, ``[z, y, x]``) with the given peak heights."""
    grid = np.indices(shape, dtype=np.float64)
    out = np.zeros(shape)
    for c, a in zip(np.asarray(centres_zyx, np.float64), np.broadcast_to(amps, len(centres_zyx))):
        d2 = sum((grid[i] - c[i]) ** 2 for i in range(3))
        out += a * np.exp(-d2 / (2.0 * sigma**2))
    return out.astype(np.float32)


def _pooled_reference(volume: np.ndarray, f: int) -> np.ndarray:
    """``avg_pool3d`` of the volume zero-padded at the far end to a multiple of ``f``, cropped to ds_shape."""
    padded = np.zeros([-(-n // f) * f for n in volume.shape], np.float32)
    padded[: volume.shape[0], : volume.shape[1], : volume.shape[2]] = volume
    return F.avg_pool3d(torch.from_numpy(padded)[None, None], f)[0, 0].numpy()


def _infer(volume: np.ndarray, net: nn.Module, **settings) -> np.ndarray:
    """The probability heatmap: the sigmoid of the stitched logits."""
    st = InferenceSettings(amp=False, **settings)
    return torch.sigmoid(DownsampledSlidingWindowInferer(st)(torch.from_numpy(volume)[None, None], net)[0]).numpy()


def _nearest(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """For each true point, the distance to the nearest found point (inf if none found)."""
    if len(found) == 0:
        return np.full(len(truth), np.inf)
    return np.linalg.norm(truth[:, None] - found[None], axis=-1).min(axis=1)


# --------------------------------------------------------------------------- window geometry


GEOMETRIES = [
    pytest.param((37, 50, 45), 16, 2, 0.25, id="37x50x45-roi16-f2"),
    pytest.param((12, 50, 45), 16, 2, 0.25, id="z-below-roi"),
    pytest.param((9, 33, 70), 16, 2, 0.5, id="z-below-roi-odd-pad-overlap0.5"),
    pytest.param((30, 70, 45), (16, 24, 32), 4, 0.5, id="anisotropic-roi-f4"),
]


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
@pytest.mark.parametrize("shape, roi, f, overlap", GEOMETRIES)
def test_stitched_heatmap_equals_pooling_of_the_zero_padded_volume(shape, roi, f, overlap, blend):
    rng = np.random.default_rng(0)
    vol = rng.uniform(0.05, 0.95, shape).astype(np.float32)
    hm = _infer(vol, PoolNet(f), roi_size=roi, ds_factor=f, overlap=overlap, blend=blend, sw_batch_size=3)
    assert hm.shape == (2, *coords.ds_shape(shape, f))
    ref = _pooled_reference(vol, f)
    np.testing.assert_allclose(hm[0], ref, atol=1e-5)
    np.testing.assert_allclose(hm[1], ref, atol=1e-5)


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
def test_blob_peaks_at_the_downsampled_position_of_its_full_resolution_centre(blend):
    shape = (37, 50, 45)
    centres = np.array([[10.3, 14.8, 30.6], [30.7, 41.2, 8.45], [18.25, 25.6, 36.1], [27.6, 9.3, 35.7]])
    vol = _blobs(shape, centres, sigma=2.5, amps=0.9)
    hm = _infer(vol, PoolNet(2, 1), roi_size=16, ds_factor=2, overlap=0.25, blend=blend)
    found, _, _ = find_peaks(hm, 0.3, 3.0)
    assert len(found) == len(centres)
    err = _nearest(found, coords.voxel_to_ds(centres, 2))
    assert err.max() < 0.1, err


def test_inferer_rejects_an_input_that_is_not_batch_channel_z_y_x():
    inferer = DownsampledSlidingWindowInferer(InferenceSettings(roi_size=16, ds_factor=2))
    with pytest.raises(ValueError, match=r"\[B, 1, z, y, x\]"):
        inferer(torch.zeros(1, 20, 20, 20), PoolNet(2))


def test_predict_heatmap_returns_float32_class_first_logits_on_the_host():
    vol = np.random.default_rng(1).uniform(0.1, 0.9, (20, 21, 22)).astype(np.float32)
    hm = predict_heatmap(PoolNet(2, 3), vol, InferenceSettings(roi_size=16, ds_factor=2, amp=False), device="cpu")
    assert isinstance(hm, np.ndarray) and hm.dtype == np.float32
    assert hm.shape == (3, 10, 11, 11)
    np.testing.assert_allclose(torch.sigmoid(torch.from_numpy(hm[2])).numpy(), _pooled_reference(vol, 2), atol=1e-5)


# --------------------------------------------------------------------------- test-time augmentation


@pytest.mark.parametrize("tta", ["flips", "flips_rot90"])
def test_tta_with_an_equivariant_network_gives_the_plain_heatmap(tta):
    vol = np.random.default_rng(2).uniform(0.05, 0.95, (21, 38, 35)).astype(np.float32)
    plain = _infer(vol, PoolNet(2), roi_size=16, ds_factor=2, tta="none")
    aug = _infer(vol, PoolNet(2), roi_size=16, ds_factor=2, tta=tta)
    np.testing.assert_allclose(aug, plain, atol=1e-5)


@pytest.mark.parametrize("tta", ["flips", "flips_rot90"])
def test_tta_averages_the_back_transformed_logits_of_a_non_equivariant_network(tta):
    # one window (volume = roi): the TTA result is known in closed form from the ramp; the
    # passes are averaged on the logit scale (as overlapping windows are blended)
    vol = np.random.default_rng(3).uniform(0.05, 0.95, (16, 16, 16)).astype(np.float32)
    pooled = torch.from_numpy(_pooled_reference(vol, 2))
    ramp = torch.linspace(0.2, 1.0, 8).expand(8, 8, 8)  # along x of the network's input
    views = [ramp, ramp, ramp, ramp.flip(2)]  # none, flip z, flip y, flip x
    if tta == "flips_rot90":
        views += [torch.rot90(ramp, -1, dims=(1, 2)), torch.rot90(ramp, -3, dims=(1, 2))]
    expected = torch.sigmoid(_logit(pooled * torch.stack(views)).mean(0)).numpy()
    plain = _infer(vol, RampNet(2, 1), roi_size=16, ds_factor=2, tta="none")[0]
    aug = _infer(vol, RampNet(2, 1), roi_size=16, ds_factor=2, tta=tta)[0]
    np.testing.assert_allclose(aug, expected, atol=1e-5)
    assert np.abs(aug - plain).max() > 0.05  # the augmentation did change something


def test_tta_rot90_keeps_the_geometry_with_a_window_that_is_not_square_in_y_x():
    vol = np.random.default_rng(4).uniform(0.05, 0.95, (20, 20, 20)).astype(np.float32)
    hm = _infer(vol, PoolNet(4, 1), roi_size=(16, 16, 24), ds_factor=4, overlap=0.5, tta="flips_rot90")
    np.testing.assert_allclose(hm[0], _pooled_reference(vol, 4), atol=1e-5)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("roi, overlap", [(16, 0.3), (64, 0.2), ((64, 64, 18), 0.5)])
def test_settings_reject_a_window_stride_that_is_not_a_multiple_of_ds_factor(roi, overlap):
    with pytest.raises(ValueError, match="multiple of ds_factor"):
        InferenceSettings(roi_size=roi, ds_factor=2, overlap=overlap)


@pytest.mark.parametrize("roi, f", [((16, 16, 15), 2), (18, 4)])
def test_settings_reject_a_roi_not_divisible_by_ds_factor(roi, f):
    with pytest.raises(ValueError, match="divisible by ds_factor"):
        InferenceSettings(roi_size=roi, ds_factor=f, overlap=0.5)


def test_settings_reject_an_unknown_tta():
    with pytest.raises(ValueError, match="tta"):
        InferenceSettings(tta="rot180")


def test_settings_accept_a_scalar_roi_with_a_matching_stride():
    st = InferenceSettings(roi_size=64, ds_factor=2, overlap=0.25)
    assert st.roi_size == (64, 64, 64)


# --------------------------------------------------------------------------- resampling


def test_resampling_a_coordinate_ramp_keeps_voxel_i_at_i_times_the_new_spacing():
    shape, spacing, target = (40, 27, 33), 7.5, 10.0
    zz, yy, xx = np.indices(shape, dtype=np.float32) * spacing  # each voxel's own Angstrom position
    out = [resample_to_spacing(a, spacing, target) for a in (zz, yy, xx)]
    assert out[0].shape == (30, 20, 25)  # last voxel centre inside the old extent
    want = np.indices(out[0].shape, dtype=np.float32) * target
    for axis in range(3):
        np.testing.assert_allclose(out[axis], want[axis], atol=1e-3)
    assert out[0][0, 0, 0] == 0.0


def test_resampled_blob_peaks_at_its_angstrom_position():
    spacing, target = 7.5, 10.0
    xyz = np.array([[253.4, 200.7, 236.3]])  # Angstrom, x first; far from voxel 0 to expose scale errors
    vol = _blobs((40, 40, 40), coords.angstrom_to_voxel(xyz, spacing), sigma=25.0 / spacing, amps=1.0)
    res = resample_to_spacing(vol, spacing, target)
    found, _, _ = find_peaks(res[None], 0.3, 2.0)
    assert len(found) == 1
    err = np.linalg.norm(coords.voxel_to_angstrom(found, target) - xyz)
    assert err < 0.1 * target, err


# --------------------------------------------------------------------------- pick_tomogram


TWO_CLASSES = ParticleSet((ParticleClass("bright", 60.0), ParticleClass("dark", 80.0)))


def _blob_tomogram(spacing: float, seed: int = 0) -> tuple[Tomogram, np.ndarray, np.ndarray]:
    """Noisy tomogram (raw offset and scale, so it must be normalised) with bright and dark blobs.

    Returns the tomogram, the true centres ``(x, y, z)`` in Angstrom and their class ids.
    """
    rng = np.random.default_rng(seed)
    extent = np.array([400.0, 640.0, 560.0])  # Angstrom, z y x
    shape = tuple(int(n) for n in np.round(extent / spacing))
    xyz = np.array([[120.0, 130.0, 110.0], [420.0, 480.0, 250.0], [300.0, 250.0, 310.0],
                    [460.0, 150.0, 200.0], [150.0, 470.0, 290.0]])
    xyz += rng.uniform(-5, 5, xyz.shape)
    labels = np.array([0, 0, 0, 1, 1])
    amps = np.where(labels == 0, 3.0, -3.0)
    centres = coords.angstrom_to_voxel(xyz, spacing)
    vol = _blobs(shape, centres, 25.0 / spacing, amps)
    # white noise, but none within 70 A of a blob: the peak fits see the blobs alone, exactly
    grid = np.indices(shape, dtype=np.float64) * spacing
    near = np.zeros(shape, bool)
    for c in centres * spacing:
        near |= sum((grid[i] - c[i]) ** 2 for i in range(3)) < 70.0**2
    vol += np.where(near, 0.0, rng.standard_normal(shape)).astype(np.float32)
    tomo = Tomogram(name="TS_blobs", data=3.0 * vol + 100.0, voxel_spacing=spacing, path="")
    return tomo, xyz, labels


@pytest.mark.parametrize("spacing", [10.0, 7.5], ids=["model-spacing", "resampled-from-7.5A"])
def test_pick_tomogram_finds_each_blob_at_its_angstrom_position_and_class(spacing):
    tomo, xyz, labels = _blob_tomogram(spacing)
    st = InferenceSettings(roi_size=16, ds_factor=2, overlap=0.25, voxel_spacing=10.0, thresholds=0.35, amp=False)
    picks = pick_tomogram(BlobNet(2), tomo, TWO_CLASSES, st, device="cpu")
    assert set(picks.tomo) == {"TS_blobs"}
    for c, name in enumerate(TWO_CLASSES.names):
        found = picks.for_class(name)
        assert len(found) == int((labels == c).sum()), name
        err = _nearest(found.xyz, xyz[labels == c])
        assert err.max() < 0.25 * TWO_CLASSES.radii[c], (name, err)
        # much tighter in fact: half a full-resolution voxel off (a convention slip) is 5 A per axis
        assert err.max() < 2.0, (name, err)
        assert np.all(found.score >= 0.35)


def test_pick_tomogram_returns_the_heatmap_and_its_full_resolution_spacing():
    tomo, _, _ = _blob_tomogram(7.5)
    st = InferenceSettings(roi_size=16, ds_factor=2, overlap=0.25, voxel_spacing=10.0, amp=False)
    _, hm, spacing = pick_tomogram(BlobNet(2), tomo, TWO_CLASSES, st, device="cpu", return_heatmap=True)
    assert spacing == 10.0
    assert hm.shape == (2, *coords.ds_shape((40, 64, 56), 2))


# --------------------------------------------------------------------------- checkpoints and predict


NET_CONFIG = {"name": "unet-tiny", "out_channels": 6, "ds_factor": 2}


def _save_checkpoint(path: Path, prefix: str = "", with_meta: bool = True) -> nn.Module:
    torch.manual_seed(0)
    net = build_network(dict(NET_CONFIG))
    ck = {"network": {prefix + k: v for k, v in net.state_dict().items()}}
    if with_meta:
        ck["cryo3d"] = {
            "network": dict(NET_CONFIG), "particles": CZII_PARTICLES.to_dict(), "voxel_spacing": 10.0,
            "patch_size": [32, 32, 32], "ds_factor": 2,
        }
    torch.save(ck, path)
    return net.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    _save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def mrc_tomograms(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("tomos")
    rng = np.random.default_rng(5)
    paths = []
    for name, shape in [("TS_1", (36, 44, 40)), ("TS_2", (30, 40, 46))]:
        p = folder / f"{name}.mrc"
        write_mrc(p, rng.standard_normal(shape).astype(np.float32), 10.0)
        paths.append(p)
    return paths


@pytest.mark.parametrize("prefix", ["", "module."], ids=["plain", "ddp-prefix"])
def test_load_checkpoint_model_rebuilds_the_saved_network(tmp_path, prefix):
    saved = _save_checkpoint(tmp_path / "m.pt", prefix=prefix)
    net, meta = load_checkpoint_model(tmp_path / "m.pt")
    assert meta["patch_size"] == [32, 32, 32] and meta["ds_factor"] == 2
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = net.eval()(x)
        assert out.shape == (1, 6, 16, 16, 16)
        torch.testing.assert_close(out, saved(x))


def test_checkpoint_without_cryo3d_settings_is_a_clear_error(tmp_path):
    _save_checkpoint(tmp_path / "bare.pt", with_meta=False)
    with pytest.raises(ValueError, match="no 'cryo3d' settings"):
        load_checkpoint_model(tmp_path / "bare.pt")


def test_predict_writes_picks_csv_copick_per_tomogram_files_and_a_record(tmp_path, checkpoint, mrc_tomograms):
    out = tmp_path / "pred"
    # threshold 0: an untrained network's heatmap is ~0.01 everywhere, its local maxima are the picks
    picks = predict(checkpoint, [str(p) for p in mrc_tomograms], out, thresholds=0.0, device="cpu", progress=False)
    assert len(picks) > 0
    assert set(picks.tomo) == {"TS_1", "TS_2"}
    table = read_picks_csv(out / "picks.csv")
    assert len(table) == len(picks)
    np.testing.assert_allclose(table.xyz, picks.xyz)
    for name in ("TS_1", "TS_2"):
        per = read_picks_csv(out / "per_tomogram" / f"{name}.csv")
        assert len(per) == len(picks.for_tomo(name)) and set(per.tomo) == {name}
    cp = read_copick(out / "copick")
    assert len(cp) == len(picks) and set(cp.tomo) == {"TS_1", "TS_2"}
    assert (out / "copick" / "ExperimentRuns" / "TS_1" / "Picks" / "cryo3d_0_ribosome.json").is_file()
    record = json.loads((out / "predict.json").read_text())
    assert record["n_picks"] == len(picks)
    assert record["settings"]["roi_size"] == [32, 32, 32] and record["settings"]["voxel_spacing"] == 10.0
    # every pick lies in its tomogram (x, y, z in Angstrom, x along the last axis), give or take
    # the half heatmap voxel (10 A) by which sub-voxel refinement may leave the grid
    extent = {"TS_1": np.array([39, 43, 35]) * 10.0, "TS_2": np.array([45, 39, 29]) * 10.0}
    for name, ext in extent.items():
        xyz = picks.for_tomo(name).xyz
        assert np.all(xyz >= -10.0) and np.all(xyz <= ext + 10.0), name


def test_predict_resumes_without_recomputing_finished_tomograms(tmp_path, checkpoint, mrc_tomograms):
    out = tmp_path / "pred"
    paths = [str(p) for p in mrc_tomograms]
    first = predict(checkpoint, paths[:1], out, thresholds=0.0, device="cpu", progress=False)
    done = out / "per_tomogram" / "TS_1.csv"
    old = 1_000_000_000  # an mtime no fresh write could have
    os.utime(done, (old, old))
    both = predict(checkpoint, paths, out, thresholds=0.0, device="cpu", progress=False)
    assert os.stat(done).st_mtime == old  # not rewritten
    assert (out / "per_tomogram" / "TS_2.csv").is_file()
    np.testing.assert_allclose(both.for_tomo("TS_1").xyz, first.xyz)
    assert len(read_picks_csv(out / "picks.csv")) == len(both)


def test_predict_with_other_settings_recomputes_instead_of_reusing(tmp_path, checkpoint, mrc_tomograms):
    out = tmp_path / "pred"
    low = predict(checkpoint, [str(mrc_tomograms[0])], out, thresholds=0.0, device="cpu", progress=False)
    high = predict(checkpoint, [str(mrc_tomograms[0])], out, thresholds=0.5, device="cpu", progress=False)
    assert len(high) < len(low)  # an untrained network scores ~0.01: nothing passes 0.5
    assert json.loads((out / "predict.json").read_text())["n_reused"] == 0


def test_predict_refuses_two_tomograms_with_the_same_name(tmp_path, checkpoint, mrc_tomograms):
    import shutil

    (tmp_path / "b").mkdir()
    twin = tmp_path / "b" / mrc_tomograms[0].name
    shutil.copy(mrc_tomograms[0], twin)
    with pytest.raises(ValueError, match="share a name"):
        predict(checkpoint, [str(mrc_tomograms[0]), str(twin)], tmp_path / "pred", device="cpu", progress=False)


def test_predict_writes_heatmaps_at_the_downsampled_spacing_and_offset(tmp_path, checkpoint, mrc_tomograms):
    import mrcfile

    from cryo3d.io.tomogram import read_tomogram

    out = tmp_path / "pred"
    predict(checkpoint, [str(mrc_tomograms[0])], out, thresholds=0.5, write_heatmaps=True, device="cpu",
            progress=False)
    path = out / "heatmaps" / "TS_1_ribosome.mrc"
    hm = read_tomogram(path, check_constant=False)
    assert hm.shape == coords.ds_shape((36, 44, 40), 2)
    assert hm.voxel_spacing == 20.0
    with mrcfile.open(path) as mrc:  # heatmap voxel 0 is centred at full-resolution voxel (f-1)/2 = 0.5
        origin = mrc.header.origin
        assert (float(origin.x), float(origin.y), float(origin.z)) == (5.0, 5.0, 5.0)

import numpy as np
import pytest

from cryo3d import coords
from cryo3d.dataset import PatchDataset, split_tomograms
from cryo3d.heatmap import render_dense_reference, render_heatmap
from cryo3d.particles import CZII_PARTICLES
from cryo3d.store import PatchStore, StoreSettings, patch_starts, prepare_store

PATCH = 32


def _load(out):
    from cryo3d.io.picks_csv import read_picks_csv
    from cryo3d.io.tomogram import read_tomogram

    tomos = [read_tomogram(out / "tomograms" / f"synth_00{i}.mrc") for i in range(2)]
    return tomos, read_picks_csv(out / "picks.csv")


@pytest.fixture(scope="module")
def store(small_synth, tmp_path_factory):
    out, _ = small_synth
    tomos, picks = _load(out)
    path = tmp_path_factory.mktemp("store") / "store"
    prepare_store(tomos, picks, CZII_PARTICLES, path,
                  StoreSettings(patch_size=PATCH, stride=24, ds_factor=2, precompute_heatmaps=True),
                  progress=False)
    return PatchStore(path), picks


def _refine(hm, idx):
    """Independent sub-voxel peak: log-parabola through the argmax and its neighbours per axis."""
    out = np.array(idx, float)
    for ax in range(3):
        lo, hi = list(idx), list(idx)
        lo[ax] -= 1
        hi[ax] += 1
        a, b, c = np.log(hm[tuple(lo)]), np.log(hm[tuple(idx)]), np.log(hm[tuple(hi)])
        out[ax] += 0.5 * (a - c) / (a - 2 * b + c)
    return out


def test_patch_starts_cover_the_axis_and_end_at_its_edge():
    s = patch_starts(100, 32, 24)
    assert s[0] == 0 and s[-1] == 68 and np.all(np.diff(s) <= 24)


def test_store_heatmap_peaks_sit_on_the_true_particles(store):
    st, picks = store
    f = st.ds_factor
    checked = 0
    for i in range(len(st)):
        rec = st.record(i)
        hm = render_heatmap(coords.voxel_to_ds(rec["keypoints"], f), rec["labels"],
                            coords.ds_shape(rec["image"].shape[1:], f), rec["ds_sigma"])
        # the truth, straight from the picks synth wrote (not from the store's own table)
        mine = picks.for_tomo(rec["tomo"])
        vox = coords.global_to_local(coords.angstrom_to_voxel(mine.xyz, st.voxel_spacing), rec["origin"])
        true_ds = coords.voxel_to_ds(vox, f)
        lab = CZII_PARTICLES.indices(mine.cls)
        inside = np.all((true_ds >= 1.5) & (true_ds <= np.array(hm.shape[1:]) - 2.5), axis=1)
        for p, c in zip(true_ds[inside], lab[inside]):
            idx = tuple(np.rint(p).astype(int))
            ch = hm[c]
            # the voxel nearest the truth is a local maximum and the refined peak is on the truth
            win = ch[tuple(slice(j - 1, j + 2) for j in idx)]
            assert ch[idx] == win.max()
            np.testing.assert_allclose(_refine(ch, idx), p, atol=0.1)
            checked += 1
    assert checked > 10


def test_store_heatmap_matches_dense_reference(store):
    st, _ = store
    rec = st.record(1)
    f = rec["ds_factor"]
    kp = coords.voxel_to_ds(rec["keypoints"], f)
    shape = coords.ds_shape(rec["image"].shape[1:], f)
    ref = render_dense_reference(kp, rec["labels"], shape, rec["ds_sigma"])
    np.testing.assert_allclose(render_heatmap(kp, rec["labels"], shape, rec["ds_sigma"]), ref, atol=1e-6)
    np.testing.assert_allclose(rec["heatmap"], ref, atol=1e-6)  # the precomputed cheap path too


def test_store_records_keep_keypoints_within_the_margin_outside_the_patch(store):
    st, _ = store
    rs_sigma = st.angstrom_sigma / st.voxel_spacing
    outside = 0
    for i in range(len(st)):
        rec = st.record(i)
        k, lab = rec["keypoints"], rec["labels"]
        m = 3 * rs_sigma[lab][:, None]
        assert np.all(k >= -0.5 - m - 1e-9) and np.all(k <= PATCH - 0.5 + m + 1e-9)
        outside += int(np.any((k < -0.5) | (k > PATCH - 0.5), axis=1).sum())
    assert outside > 0


def test_store_local_coords_agree_with_global_coords(store):
    st, _ = store
    rec = st.record(2)
    g = coords.global_to_local(coords.angstrom_to_voxel(rec["global_coords"], st.voxel_spacing), rec["origin"])
    np.testing.assert_allclose(rec["keypoints"], g, atol=1e-9)
    np.testing.assert_allclose(rec["local_ds_coords"], coords.voxel_to_ds(g, st.ds_factor), atol=1e-9)


def test_store_manifest_records_every_setting(store):
    st, _ = store
    m = st.manifest
    for key in ("patch_size", "stride", "ds_factor", "ds_sigma", "angstrom_sigma", "voxel_spacing",
                "particles", "normalization", "tomograms", "fingerprint"):
        assert key in m
    assert m["normalization"]["method"] == "robust_zscore"
    assert set(m["normalization"]["stats"]) == {"synth_000", "synth_001"}


def test_images_are_robustly_normalised(store):
    st, _ = store
    imgs = np.asarray(st.images)
    assert abs(float(np.median(imgs))) < 0.2 and 0.5 < float(np.median(np.abs(imgs))) * 1.4826 < 1.5


def test_same_inputs_give_the_same_store(small_synth, tmp_path):
    out, _ = small_synth
    tomos, picks = _load(out)
    s = StoreSettings(patch_size=PATCH, stride=32)
    a = prepare_store(tomos, picks, CZII_PARTICLES, tmp_path / "a", s, progress=False)
    b = prepare_store(tomos, picks, CZII_PARTICLES, tmp_path / "b", s, progress=False)
    assert a["fingerprint"] == b["fingerprint"]
    for name in ("images.npy", "origins.npy", "kp_offsets.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_existing_store_from_other_settings_is_not_overwritten_silently(small_synth, tmp_path):
    out, _ = small_synth
    tomos, picks = _load(out)
    prepare_store(tomos, picks, CZII_PARTICLES, tmp_path / "s", StoreSettings(patch_size=PATCH, stride=32), progress=False)
    with pytest.raises(ValueError, match="other inputs or settings"):
        prepare_store(tomos, picks, CZII_PARTICLES, tmp_path / "s", StoreSettings(patch_size=PATCH, stride=16), progress=False)


def test_picks_for_unknown_tomograms_are_an_error(small_synth, tmp_path):
    out, _ = small_synth
    tomos, picks = _load(out)
    with pytest.raises(ValueError, match="synth_001"):
        prepare_store(tomos[:1], picks, CZII_PARTICLES, tmp_path / "s", progress=False)


def test_patch_size_must_divide_by_ds_factor():
    with pytest.raises(ValueError, match="divisible"):
        StoreSettings(patch_size=33, ds_factor=2)


def test_dataset_yields_transform_dictionaries(store):
    st, _ = store
    ds = PatchDataset(st, tomograms=["synth_001"])
    assert len(ds) == len(st.indices_for(["synth_001"]))
    d = ds[0]
    assert d["tomo"] == "synth_001"
    assert d["image"].shape == (1, PATCH, PATCH, PATCH) and d["image"].dtype == np.float32
    assert d["keypoints"].shape[1] == 3 and d["labels"].shape == (d["keypoints"].shape[0],)


def test_dataset_works_with_monai_dataloader(store):
    from monai.data import DataLoader

    st, _ = store
    batch = next(iter(DataLoader(PatchDataset(st), batch_size=1, num_workers=0)))
    assert tuple(batch["image"].shape) == (1, 1, PATCH, PATCH, PATCH)


def test_split_is_by_tomogram_and_never_empty():
    train, val = split_tomograms(["b", "a", "c"], n_val=1)
    assert train == ["a", "b"] and val == ["c"]
    with pytest.raises(ValueError):
        split_tomograms(["a"], n_val=1)

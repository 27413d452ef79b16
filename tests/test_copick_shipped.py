"""The CZII challenge's training data as downloaded: built file by file (not through copick's API),
then trained on, predicted into and evaluated with no rename and no glue code."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import zarr

from test_bundle import TINY, bundle_cmd, run

from cryo3d.cli import main
from cryo3d.particles import CZII_PARTICLES

#: The challenge's denoised tomograms say 10.012444 A per voxel under VoxelSpacing10.000.
SHIPPED_SCALE = 10.012444


def write_ome_zarr(folder: Path, volume: np.ndarray, scale: float, levels: int = 3) -> None:
    """An OME-NGFF image as the challenge ships it: ``0``, ``1``, ``2`` (each 2x coarser), axes z, y, x in Angstrom."""
    group = zarr.open_group(str(folder), mode="w")
    datasets = []
    for i in range(levels):
        step = 2 ** i
        group.create_dataset(str(i), data=volume[::step, ::step, ::step], chunks=(32, 32, 32))
        datasets.append({"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [scale * step] * 3}]})
    group.attrs["multiscales"] = [{
        "version": "0.4", "name": "/", "datasets": datasets,
        "axes": [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"],
    }]


def write_challenge_layout(base: Path, volumes: dict, picks, scale: float = SHIPPED_SCALE) -> Path:
    """``config.json`` (static_root/overlay_root), ``static/.../VoxelSpacing10.000/denoised.zarr`` and
    ``overlay/ExperimentRuns/<run>/Picks/<object>.json`` (user and session inside the JSON only)."""
    objects = [{"name": c.name, "is_particle": True, "label": i + 1, "radius": c.radius, "color": [0, 0, 0, 128]}
               for i, c in enumerate(CZII_PARTICLES.classes)]
    config = {"name": "czii_cryoet_mlchallenge_2024", "description": "as shipped", "version": "1.0.0",
              "pickable_objects": objects, "overlay_root": f"local://{base / 'overlay'}",
              "overlay_fs_args": {"auto_mkdir": True}, "static_root": f"local://{base / 'static'}"}
    base.mkdir(parents=True, exist_ok=True)
    (base / "config.json").write_text(json.dumps(config))
    for name, vol in volumes.items():
        write_ome_zarr(base / "static" / "ExperimentRuns" / name / "VoxelSpacing10.000" / "denoised.zarr", vol, scale)
        folder = base / "overlay" / "ExperimentRuns" / name / "Picks"
        folder.mkdir(parents=True)
        for c in CZII_PARTICLES.names:
            sub = picks.for_tomo(name).for_class(c)
            points = [{"location": {"x": x, "y": y, "z": z}, "transformation_": np.eye(4).tolist(), "instance_id": 0}
                      for x, y, z in sub.xyz.tolist()]
            (folder / f"{c}.json").write_text(json.dumps({
                "pickable_object_name": c, "user_id": "curation", "session_id": "0", "run_name": name,
                "voxel_spacing": 10.012, "unit": "angstrom", "points": points, "trust_orientation": True}))
    return base / "config.json"


def listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The layout of two 64^3 runs, a tiny model trained by the bundle on it, and `cryo3d predict` into it."""
    from cryo3d.io.picks_csv import read_picks_csv, write_picks_csv
    from cryo3d.io.tomogram import read_tomogram
    from cryo3d.synth import SynthConfig, synthesize

    base = tmp_path_factory.mktemp("czii_shipped")
    cfg = SynthConfig.preset("clean", shape=(64, 64, 64), particles_per_class=2, voxel_spacing=SHIPPED_SCALE, seed=5)
    synthesize(base / "synth", 2, cfg, progress=False)
    picks = read_picks_csv(base / "synth" / "picks.csv")
    vols = {f.stem: np.asarray(read_tomogram(f).data) for f in sorted((base / "synth" / "tomograms").glob("*.mrc"))}
    config = write_challenge_layout(base / "project", vols, picks)
    shipped_files = listing(base / "project" / "overlay")
    gt_csv = base / "gt.csv"
    write_picks_csv(gt_csv, picks)
    data, out, pred = base / "data", base / "runs", base / "pred"
    run(bundle_cmd("training", "train.yaml", "--dataset_dir", str(data), "--output_dir", str(out),
                   "--max_epochs", "1", "--copick_config", str(config), "--write_report", "false", *TINY[4:]))
    ckpt = out / "checkpoints" / "best.pt"
    assert main(["predict", str(ckpt), "--copick-config", str(config), "--user", "cryo3d", "--session", "1",
                 "--out", str(pred), "--threshold", "0.005", "--device", "cpu", "--quiet"]) == 0
    return dict(config=config, base=base, ckpt=ckpt, pred=pred, gt_csv=gt_csv, shipped=shipped_files, picks=picks)


def test_training_reads_the_shipped_picks_as_curation_session_0(shipped):
    assert (shipped["base"] / "data" / "ground_truth_curation_0.csv").is_file()


def test_the_shipped_files_are_neither_renamed_nor_rewritten(shipped):
    overlay = shipped["base"] / "project" / "overlay"
    now = listing(overlay)
    assert {k: v for k, v in now.items() if "cryo3d_1_" not in k} == shipped["shipped"]
    assert any("cryo3d_1_" in k for k in now)  # the predictions sit beside them


def test_predictions_written_into_the_layout_read_back_with_copick(shipped):
    from cryo3d.io.copick_project import open_project
    from cryo3d.io.picks_csv import read_picks_csv

    root = open_project(shipped["config"])  # a copick root, with the shipped names in view
    mine = [p for r in root.runs for p in r.get_picks(user_id="cryo3d", session_id="1")]
    theirs = [p for r in root.runs for p in r.get_picks(user_id="curation", session_id="0")]
    assert len(mine) == len(theirs) == 2 * len(CZII_PARTICLES)
    for p in mine:
        p.load()  # copick lists pick sets without reading them
    assert sum(len(p.points) for p in mine) == len(read_picks_csv(shipped["pred"] / "picks.csv"))


def test_evaluate_in_copick_mode_gives_the_challenge_weighted_score_of_the_csv_path(shipped, tmp_path):
    a, b = tmp_path / "copick.json", tmp_path / "csv.json"
    assert main(["evaluate", "--copick-config", str(shipped["config"]), "--user", "cryo3d", "--session", "1",
                 "--gt-user", "curation", "--gt-session", "0", "--json", str(a)]) == 0
    assert main(["evaluate", str(shipped["pred"] / "picks.csv"), str(shipped["gt_csv"]), "--json", str(b)]) == 0
    by_copick, by_csv = json.loads(a.read_text()), json.loads(b.read_text())
    assert by_copick["score"] == pytest.approx(by_csv["score"], abs=1e-6)


def test_the_project_classes_get_the_czii_weights_by_name_and_say_so(shipped, caplog):
    from cryo3d.io.copick_project import project_particles

    with caplog.at_level(logging.INFO, logger="cryo3d.io.copick_project"):
        ps = project_particles(shipped["config"])
    assert ps.weights.tolist() == CZII_PARTICLES.weights.tolist()
    assert "weights of the CZII challenge" in caplog.text


def test_a_particles_file_sets_the_weights_of_project_classes_by_name(shipped, tmp_path):
    from cryo3d.io.copick_project import project_particles
    from cryo3d.particles import ParticleClass, ParticleSet

    ps = project_particles(shipped["config"], ParticleSet((ParticleClass("ribosome", 150.0, 7.0),)))
    assert dict(zip(ps.names, ps.weights.tolist()))["ribosome"] == 7.0
    assert dict(zip(ps.names, ps.weights.tolist()))["beta-amylase"] == 1.0


def test_a_rounded_spacing_folder_warns_and_uses_the_ome_zarr_scale(shipped, caplog):
    from cryo3d.io.copick_project import project_tomograms

    with caplog.at_level(logging.WARNING, logger="cryo3d.io.copick_tomogram"):
        tomos = project_tomograms(shipped["config"], check_values=False)
    assert [t.voxel_spacing for t in tomos] == pytest.approx([SHIPPED_SCALE] * len(tomos))
    assert "rounding" in caplog.text


def test_trust_spacing_copick_uses_the_folder_spacing(shipped):
    from cryo3d.io.copick_project import project_tomograms

    tomos = project_tomograms(shipped["config"], check_values=False, trust_spacing="copick")
    assert {t.voxel_spacing for t in tomos} == {10.0}


def test_a_spacing_mismatch_beyond_rounding_is_one_line_naming_the_option(tmp_path, capsys):
    from cryo3d.picks import Picks

    rng = np.random.default_rng(0)
    picks = Picks(np.array(["TS_1"], dtype=object), np.array(["ribosome"], dtype=object), np.array([[80.0] * 3]))
    config = write_challenge_layout(tmp_path, {"TS_1": rng.normal(size=(16, 16, 16)).astype(np.float32)}, picks,
                                    scale=11.0)
    code = main(["prepare", "--copick-config", str(config), "--out", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert code == 2 and "--trust-spacing" in err and len(err.strip().splitlines()) == 1


def test_particles_by_builtin_name_are_accepted(shipped, tmp_path):
    out = tmp_path / "e.json"
    assert main(["evaluate", str(shipped["gt_csv"]), str(shipped["gt_csv"]), "--particles", "czii",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["score"] == pytest.approx(1.0)


def test_an_unknown_particle_set_names_the_builtin_sets(tmp_path, capsys):
    gt = tmp_path / "gt.csv"
    gt.write_text("tomo,class,x,y,z\nTS_1,ribosome,10,10,10\n")
    assert main(["evaluate", str(gt), str(gt), "--particles", "czi"]) == 2
    err = capsys.readouterr().err
    assert "czi: no such particles file" in err and "czii" in err


def test_evaluate_honours_gt_user_and_session_for_a_copick_folder(copick_project, tmp_path):
    config, _ = copick_project
    overlay = Path(config).parent / "overlay"
    out = tmp_path / "e.json"
    assert main(["evaluate", str(overlay), str(overlay), "--user", "curation", "--session", "0",
                 "--gt-user", "curation", "--gt-session", "0", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["score"] == pytest.approx(1.0)


def test_report_takes_a_copick_project(shipped, tmp_path):
    out = tmp_path / "report"
    assert main(["report", "--copick-config", str(shipped["config"]), "--user", "cryo3d", "--session", "1",
                 "--gt-user", "curation", "--gt-session", "0", "--out", str(out)]) == 0
    assert (out / "index.html").is_file()


def test_view_takes_a_copick_project_run_and_its_picks(shipped):
    import argparse

    from cryo3d.commands.copick_inputs import view_inputs

    a = argparse.Namespace(copick_config=str(shipped["config"]), tomogram=None, picks=None, gt=None, particles=None,
                           voxel_spacing=None, tomo_type=None, copick_voxel_spacing=None, runs=["synth_000"],
                           trust_spacing=None, user_id="cryo3d", session_id="1", gt_user="curation", gt_session="0")
    t, picks, gt, _ = view_inputs(a)
    assert t.name == "synth_000" and len(gt) == len(shipped["picks"].for_tomo("synth_000"))
    assert picks is not None


def _predict_namespace(config, trust_spacing=None):
    import argparse

    return argparse.Namespace(copick_config=str(config), tomo_type=None, copick_voxel_spacing=None, runs=None,
                              trust_spacing=trust_spacing, voxel_spacing=None, tomograms=None)


def _off_scale_layout(tmp_path):
    """One run whose OME-Zarr scale (11 A) is 10% off its folder, VoxelSpacing10.000."""
    from cryo3d.picks import Picks

    rng = np.random.default_rng(0)
    picks = Picks(np.array(["TS_1"], dtype=object), np.array(["ribosome"], dtype=object), np.array([[80.0] * 3]))
    return write_challenge_layout(tmp_path, {"TS_1": rng.normal(size=(16, 16, 16)).astype(np.float32)}, picks,
                                  scale=11.0)


def test_predict_takes_the_folder_spacing_when_told_to_trust_copick(tmp_path):
    from cryo3d.commands.copick_inputs import predict_tomograms

    sources = predict_tomograms(_predict_namespace(_off_scale_layout(tmp_path), "copick"))
    assert [s.tomogram.voxel_spacing for s in sources] == [10.0]


def test_predict_refuses_a_spacing_mismatch_beyond_rounding_before_any_inference(tmp_path):
    from cryo3d.commands.copick_inputs import predict_tomograms

    with pytest.raises(ValueError, match="--trust-spacing"):
        predict_tomograms(_predict_namespace(_off_scale_layout(tmp_path)))


@pytest.mark.parametrize(("given", "used"), [("copick", "copick"), ("zarr", "zarr"), ("false", None), ("null", None)])
def test_the_training_bundle_hands_its_trust_spacing_key_to_the_copick_reader(monkeypatch, tmp_path, given, used):
    import cryo3d.workflows.data
    from cryo3d.workflows.bundle import parse_bundle

    seen: dict = {}

    class Stop(BaseException):  # not an Exception: MONAI's evaluation does not wrap it
        pass

    def reader(**kw):  # training_inputs, stopped once it has been called with the key
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(cryo3d.workflows.data, "training_inputs", reader)
    parser = parse_bundle(None, {"copick_config": str(tmp_path / "config.json"), "dataset_dir": str(tmp_path / "d"),
                                 "trust_spacing": given})
    with pytest.raises(Stop):
        parser.get_parsed_content("data")
    assert seen["trust_spacing"] == used


def test_an_unknown_trust_spacing_key_names_the_key_and_its_choices():
    from cryo3d.workflows.data import ensure_data

    with pytest.raises(ValueError, match=r"trust_spacing: expected one of \['zarr', 'copick'\] or null, got 'folder'"):
        ensure_data("unused", copick_config="config.json", trust_spacing="folder")

"""RELION STAR files written by `starfile` (RELION 4 pixels, RELION 5 centred Angstrom) and copick's CSV export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile

from cryo3d.cli import main
from cryo3d.io.pick_formats import read_picks
from cryo3d.io.picks_csv import read_picks_csv, write_picks_csv
from cryo3d.io.star import write_star
from cryo3d.picks import Picks

SPACING = 10.0
SIZES = {"TS_1": (640.0, 640.0, 320.0), "TS_2": (500.0, 600.0, 300.0)}  # (X, Y, Z) Angstrom


@pytest.fixture
def picks() -> Picks:
    rng = np.random.default_rng(1)
    n = 7
    return Picks(
        tomo=["TS_1", "TS_2", "TS_1", "TS_2", "TS_1", "TS_1", "TS_2"],
        cls=["ribosome", "apo-ferritin", "apo-ferritin", "ribosome", "ribosome", "thyroglobulin", "ribosome"],
        xyz=rng.uniform(5.0, 290.0, size=(n, 3)),
        score=rng.uniform(size=n),
    )


def _relion4(path, p: Picks, optics: bool = True) -> None:
    particles = pd.DataFrame({
        "rlnTomoName": p.tomo.tolist(), "rlnCoordinateX": p.xyz[:, 0] / SPACING,
        "rlnCoordinateY": p.xyz[:, 1] / SPACING, "rlnCoordinateZ": p.xyz[:, 2] / SPACING,
        "rlnClassName": p.cls.tolist(), "rlnAutopickFigureOfMerit": p.score, "rlnOpticsGroup": 1,
    })
    blocks = {"particles": particles}
    if optics:
        blocks = {"optics": pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
                                          "rlnTomoTiltSeriesPixelSize": [SPACING]}), **blocks}
    starfile.write(blocks, path, float_format="%.12f")


def _relion5(path, p: Picks, with_tomograms_table: bool = False) -> None:
    centre = np.array([SIZES[t] for t in p.tomo]) / 2.0
    rel = p.xyz - centre
    blocks = {"particles": pd.DataFrame({
        "rlnTomoName": p.tomo.tolist(), "rlnCenteredCoordinateXAngst": rel[:, 0],
        "rlnCenteredCoordinateYAngst": rel[:, 1], "rlnCenteredCoordinateZAngst": rel[:, 2],
        "rlnClassName": p.cls.tolist(), "rlnAutopickFigureOfMerit": p.score,
    })}
    if with_tomograms_table:
        names = sorted(SIZES)
        blocks["global"] = pd.DataFrame({
            "rlnTomoName": names, "rlnTomoTiltSeriesPixelSize": [SPACING] * 2,
            **{f"rlnTomoSize{a}": [SIZES[n][i] / SPACING for n in names] for i, a in enumerate("XYZ")},
        })
    starfile.write(blocks, path, float_format="%.12f")


def test_relion4_pixel_star_reads_back_to_the_csv_positions_with_the_optics_pixel_size(tmp_path, picks):
    write_picks_csv(tmp_path / "p.csv", picks)
    _relion4(tmp_path / "p.star", picks)
    got, want = read_picks(tmp_path / "p.star"), read_picks_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(got.xyz, want.xyz, atol=1e-6)
    assert got.tomo.tolist() == want.tomo.tolist() and got.cls.tolist() == want.cls.tolist()


def test_relion4_pixel_star_without_optics_takes_the_voxel_spacing_option(tmp_path, picks, capsys):
    write_picks_csv(tmp_path / "p.csv", picks)
    _relion4(tmp_path / "p.star", picks, optics=False)
    assert main(["evaluate", str(tmp_path / "p.star"), str(tmp_path / "p.csv")]) == 2
    assert "--voxel-spacing" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "p.star"), str(tmp_path / "p.csv"), "--voxel-spacing", "10"]) == 0
    assert "1.0000" in capsys.readouterr().out


def test_relion5_centred_star_reads_back_to_the_csv_positions_given_the_tomogram_sizes(tmp_path, picks):
    _relion5(tmp_path / "p.star", picks)
    got = read_picks(tmp_path / "p.star", tomogram_sizes=SIZES)
    np.testing.assert_allclose(got.xyz, picks.xyz, atol=1e-6)


def test_relion5_centred_star_with_a_tomograms_table_needs_nothing_else(tmp_path, picks):
    _relion5(tmp_path / "p.star", picks, with_tomograms_table=True)
    np.testing.assert_allclose(read_picks(tmp_path / "p.star").xyz, picks.xyz, atol=1e-6)


def test_relion5_centred_star_without_sizes_is_an_error_naming_the_tomograms(tmp_path, picks):
    _relion5(tmp_path / "p.star", picks)
    with pytest.raises(ValueError, match="TS_1"):
        read_picks(tmp_path / "p.star")


def test_our_relion5_writer_reads_back_exactly(tmp_path, picks):
    write_star(tmp_path / "p.star", picks, tomogram_sizes=SIZES)
    np.testing.assert_allclose(read_picks(tmp_path / "p.star", tomogram_sizes=SIZES).xyz, picks.xyz, atol=1e-9)


def test_a_given_spacing_that_contradicts_the_optics_table_warns_and_wins(tmp_path, picks):
    _relion4(tmp_path / "p.star", picks)
    with pytest.warns(UserWarning, match="differs"):
        got = read_picks(tmp_path / "p.star", voxel_spacing=5.0)
    np.testing.assert_allclose(got.xyz, picks.xyz / 2.0, atol=1e-6)


def test_a_non_numeric_coordinate_is_an_error_naming_file_row_and_label(tmp_path, picks):
    _relion4(tmp_path / "p.star", picks)
    text = (tmp_path / "p.star").read_text().splitlines()
    i = next(k for k, line in enumerate(text) if line.startswith("TS_2"))
    cells = text[i].split("\t")
    cells[2] = "abc"
    text[i] = "\t".join(cells)
    (tmp_path / "p.star").write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"p\.star, particle row 2, label _rlnCoordinateY"):
        read_picks(tmp_path / "p.star")


def test_copick_csv_export_is_read_with_the_class_from_its_file_name(copick_project, tmp_path):
    import copick
    from copick.ops.export import export_picks

    config, truth = copick_project
    run = copick.from_file(str(config)).get_run("synth_001")
    cp = run.get_picks(object_name="ribosome", user_id="curation", session_id="0")[0]
    out = tmp_path / "synth_001_ribosome_curation_0.csv"
    export_picks(cp, str(out), "csv")
    got = read_picks(out)
    want = truth.for_tomo("synth_001").for_class("ribosome")
    assert set(got.cls) == {"ribosome"} and got.tomo.tolist() == want.tomo.tolist()
    np.testing.assert_allclose(got.xyz, want.xyz, atol=1e-6)


def test_copick_csv_without_a_class_in_its_name_asks_for_one(tmp_path):
    (tmp_path / "export.csv").write_text("run_name,x,y,z,score\nTS_1,1,2,3,0.5\n")
    with pytest.raises(ValueError, match="class_name"):
        read_picks(tmp_path / "export.csv")
    assert read_picks(tmp_path / "export.csv", class_name="ribosome").cls.tolist() == ["ribosome"]


def test_evaluate_files_passes_the_voxel_spacing_to_a_pixel_star(tmp_path, picks):
    from cryo3d.evaluation import evaluate_files

    write_picks_csv(tmp_path / "p.csv", picks)
    _relion4(tmp_path / "p.star", picks, optics=False)
    same = evaluate_files(tmp_path / "p.csv", tmp_path / "p.csv", sweep=False)["score"]  # absent classes score 0 (CZII)
    assert evaluate_files(tmp_path / "p.star", tmp_path / "p.csv", voxel_spacing=10.0, sweep=False)["score"] == same
    assert same > 0


def _relion5_tomograms_star(path, names=None) -> None:
    """RELION 5's tomograms.star as it writes it: a data_global table, sizes in pixels."""
    names = sorted(SIZES) if names is None else names
    starfile.write({"global": pd.DataFrame({
        "rlnTomoName": names, "rlnVolumeX": [SIZES[n][0] / SPACING for n in names],
        "rlnTomoTiltSeriesPixelSize": [SPACING] * len(names), "rlnTomoHand": [-1] * len(names),
        **{f"rlnTomoSize{a}": [int(SIZES[n][i] / SPACING) for n in names] for i, a in enumerate("XYZ")},
        "rlnTomoTiltSeriesStarFile": [f"tilt_series/{n}.star" for n in names],
    })}, path)


def _all_found(json_text: str) -> bool:
    """Every ground-truth particle matched in ``cryo3d evaluate --json`` output."""
    import json

    rows = [c for c in json.loads(json_text)["per_class"] if c["n_gt"]]
    return bool(rows) and all(c["recall"] == 1.0 and c["precision"] == 1.0 for c in rows)


def test_relion5_particles_with_relion5s_tomograms_star_read_back_within_0_01_angstrom(tmp_path, picks):
    _relion5(tmp_path / "particles.star", picks)
    _relion5_tomograms_star(tmp_path / "tomograms.star")
    got = read_picks(tmp_path / "particles.star", tomograms_star=tmp_path / "tomograms.star")
    assert np.abs(got.xyz - picks.xyz).max() < 0.01
    assert got.tomo.tolist() == picks.tomo.tolist() and got.cls.tolist() == picks.cls.tolist()


def test_read_tomograms_star_gives_each_tomograms_extent_in_angstrom(tmp_path):
    from cryo3d.io.star import read_tomograms_star

    _relion5_tomograms_star(tmp_path / "tomograms.star")
    assert read_tomograms_star(tmp_path / "tomograms.star") == SIZES


def test_a_star_without_a_tomograms_table_is_refused_as_tomograms_star_naming_the_labels(tmp_path, picks):
    from cryo3d.io.star import read_tomograms_star

    _relion5(tmp_path / "particles.star", picks)
    with pytest.raises(ValueError, match="_rlnTomoSizeX/Y/Z"):
        read_tomograms_star(tmp_path / "particles.star")


def test_a_full_dataset_star_with_only_some_tomograms_given_selects_them_and_warns(tmp_path, picks):
    _relion5(tmp_path / "particles.star", picks)
    _relion5_tomograms_star(tmp_path / "tomograms.star", names=["TS_2"])
    with pytest.warns(UserWarning, match=r"4 of 7 particle rows left out.*TS_1"):
        got = read_picks(tmp_path / "particles.star", tomograms_star=tmp_path / "tomograms.star")
    want = picks.for_tomo("TS_2")
    assert got.tomo.tolist() == want.tomo.tolist() and got.cls.tolist() == want.cls.tolist()
    np.testing.assert_allclose(got.xyz, want.xyz, atol=1e-6)


def test_evaluate_takes_relion5s_tomograms_star(tmp_path, picks, capsys):
    write_picks_csv(tmp_path / "gt.csv", picks)
    _relion5(tmp_path / "particles.star", picks)
    _relion5_tomograms_star(tmp_path / "tomograms.star")
    argv = ["evaluate", str(tmp_path / "particles.star"), str(tmp_path / "gt.csv"), "--json", "-"]
    assert main(argv) == 2 and "tomogram" in capsys.readouterr().err
    assert main([*argv, "--tomograms-star", str(tmp_path / "tomograms.star")]) == 0
    assert _all_found(capsys.readouterr().out)


def test_evaluate_takes_the_tomogram_sizes_from_its_tomograms_option(tmp_path, picks, capsys):
    from cryo3d.io.tomogram import write_mrc

    write_picks_csv(tmp_path / "gt.csv", picks)
    _relion5(tmp_path / "particles.star", picks)
    files = []
    for name, (x, y, z) in SIZES.items():
        shape = tuple(int(v / SPACING) for v in (z, y, x))
        write_mrc(tmp_path / f"{name}.mrc", np.random.default_rng(0).normal(size=shape).astype(np.float32), SPACING)
        files.append(str(tmp_path / f"{name}.mrc"))
    assert main(["evaluate", str(tmp_path / "particles.star"), str(tmp_path / "gt.csv"), "--json", "-",
                 "--tomograms", *files]) == 0
    assert _all_found(capsys.readouterr().out)


def test_a_star_given_to_evaluates_tomograms_option_is_taken_as_tomograms_star(tmp_path, picks, capsys):
    write_picks_csv(tmp_path / "gt.csv", picks)
    _relion5(tmp_path / "particles.star", picks)
    _relion5_tomograms_star(tmp_path / "tomograms.star")
    assert main(["evaluate", str(tmp_path / "particles.star"), str(tmp_path / "gt.csv"),
                 "--tomograms", str(tmp_path / "tomograms.star")]) == 0
    assert "ribosome" in capsys.readouterr().out


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@settings(max_examples=30, deadline=None)
@given(xyz=arrays(np.float64, (5, 3), elements=st.floats(0.0, 300.0)),
       size=st.tuples(*[st.integers(30, 4000)] * 3), spacing=st.floats(0.5, 20.0))
def test_relion5_centred_coordinates_read_back_through_a_tomograms_star_within_0_01_angstrom(
        tmp_path_factory, xyz, size, spacing):
    d = tmp_path_factory.mktemp("h")
    extent = np.array(size, dtype=np.float64) * spacing
    rel = xyz - extent / 2.0
    starfile.write({"particles": pd.DataFrame({
        "rlnTomoName": ["TS_9"] * 5, "rlnClassName": ["ribosome"] * 5,
        **{f"rlnCenteredCoordinate{a}Angst": rel[:, i] for i, a in enumerate("XYZ")}})}, d / "p.star")
    starfile.write({"global": pd.DataFrame({
        "rlnTomoName": ["TS_9"], "rlnTomoTiltSeriesPixelSize": [spacing],
        **{f"rlnTomoSize{a}": [size[i]] for i, a in enumerate("XYZ")}})}, d / "t.star")
    got = read_picks(d / "p.star", tomograms_star=d / "t.star")
    assert np.abs(got.xyz - xyz).max() < 0.01


@pytest.mark.parametrize("argv", [
    ["prepare"], ["evaluate", "p.star", "gt.csv"], ["report", "t.mrc", "p.star", "--out", "r"], ["view", "t.mrc"],
    ["export", "p.star", "--format", "csv", "--out", "p.csv"],
])
def test_every_command_that_reads_picks_takes_a_tomograms_star(argv):
    from cryo3d.cli import build_parser

    assert build_parser().parse_args([*argv, "--tomograms-star", "tomograms.star"]).tomograms_star == "tomograms.star"


def test_export_writes_relion5_centred_star_from_a_tomograms_star_that_reads_back(tmp_path, picks):
    write_picks_csv(tmp_path / "p.csv", picks)
    _relion5_tomograms_star(tmp_path / "tomograms.star")
    assert main(["export", str(tmp_path / "p.csv"), "--format", "star", "--out", str(tmp_path / "p.star"),
                 "--tomograms-star", str(tmp_path / "tomograms.star")]) == 0
    assert "rlnCenteredCoordinateXAngst" in starfile.read(tmp_path / "p.star").columns
    got = read_picks(tmp_path / "p.star", tomograms_star=tmp_path / "tomograms.star")
    np.testing.assert_allclose(got.xyz, picks.xyz, atol=1e-9)


def test_a_bad_value_in_a_selected_tomogram_names_its_row_in_the_file(tmp_path, picks):
    _relion5(tmp_path / "particles.star", picks)
    _relion5_tomograms_star(tmp_path / "tomograms.star", names=["TS_2"])
    text = (tmp_path / "particles.star").read_text().splitlines()
    i = [k for k, line in enumerate(text) if line.startswith("TS_2")][1]  # the file's 4th particle row
    cells = text[i].split("\t")
    cells[1] = "abc"
    text[i] = "\t".join(cells)
    (tmp_path / "particles.star").write_text("\n".join(text) + "\n")
    with pytest.warns(UserWarning, match="left out"), pytest.raises(ValueError, match="particle row 4, label"):
        read_picks(tmp_path / "particles.star", tomograms_star=tmp_path / "tomograms.star")

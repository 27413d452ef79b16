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

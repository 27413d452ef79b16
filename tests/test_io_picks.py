"""Picks file I/O: CSV, copick JSON and STAR round trips, unit conversion, validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cryo3d.io.copick_picks import read_copick, read_copick_json, write_copick
from cryo3d.io.pick_formats import read_picks, write_picks
from cryo3d.io.pick_validation import validate_picks
from cryo3d.io.picks_csv import read_picks_csv, write_picks_csv
from cryo3d.io.star import read_star, write_star
from cryo3d.particles import CZII_PARTICLES, ParticleClass, ParticleSet
from cryo3d.picks import Picks

PARTICLES = ParticleSet((ParticleClass("ribosome", 150.0), ParticleClass("apo-ferritin", 60.0)))


@pytest.fixture
def picks() -> Picks:
    """Five picks in two tomograms, with awkward floats and an extra column."""
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0.0, 600.0, size=(5, 3)) + np.array([1 / 3, 1e-7, 123.456789012345])
    return Picks(
        tomo=["TS_5", "TS_5", "TS_6", "TS_5", "TS_6"],
        cls=["ribosome", "apo-ferritin", "ribosome", "ribosome", "apo-ferritin"],
        xyz=xyz,
        score=rng.uniform(size=5),
        extra={"note": np.array(["a", "b, with comma", "c", "", "e"], dtype=object)},
    )


def _assert_same(a: Picks, b: Picks, atol: float = 0.0) -> None:
    assert a.tomo.tolist() == b.tomo.tolist()
    assert a.cls.tolist() == b.cls.tolist()
    np.testing.assert_allclose(a.xyz, b.xyz, rtol=0, atol=atol)
    np.testing.assert_allclose(a.score, b.score, rtol=0, atol=atol)


# --------------------------------------------------------------------------- CSV


def test_csv_round_trip_is_exact_to_a_micro_angstrom(tmp_path, picks):
    path = tmp_path / "picks.csv"
    write_picks_csv(path, picks)
    back = read_picks_csv(path)
    _assert_same(back, picks, atol=1e-6)
    assert back.extra["note"].tolist() == picks.extra["note"].tolist()


def test_csv_header_is_tomo_class_x_y_z_then_score(tmp_path, picks):
    path = tmp_path / "picks.csv"
    write_picks_csv(path, picks)
    assert path.read_text().splitlines()[0] == "tomo,class,x,y,z,score,note"


def test_csv_without_score_column_gives_score_one(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("tomo,class,x,y,z\nTS_1,ribosome,1.5,2.5,3.5\n")
    p = read_picks_csv(path)
    np.testing.assert_array_equal(p.xyz, [[1.5, 2.5, 3.5]])
    np.testing.assert_array_equal(p.score, [1.0])


def test_csv_extra_integer_column_is_kept_as_integers(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("tomo,class,x,y,z,score,instance\nTS_1,ribosome,1,2,3,0.5,7\n")
    p = read_picks_csv(path)
    assert p.extra["instance"].dtype == np.int64 and p.extra["instance"].tolist() == [7]


def test_csv_voxel_units_convert_x_y_z_voxels_to_angstrom_in_axis_order(tmp_path):
    path = tmp_path / "vox.csv"
    path.write_text("tomo,class,x,y,z\nTS_1,ribosome,1,2,3\n")
    p = read_picks_csv(path, voxel_spacing=10.0, units="voxel")
    np.testing.assert_allclose(p.xyz, [[10.0, 20.0, 30.0]])


def test_csv_voxel_units_accept_a_spacing_per_tomogram(tmp_path):
    path = tmp_path / "vox.csv"
    path.write_text("tomo,class,x,y,z\nA,ribosome,1,2,3\nB,ribosome,1,2,3\n")
    p = read_picks_csv(path, voxel_spacing={"A": 10.0, "B": 5.0}, units="voxel")
    np.testing.assert_allclose(p.xyz, [[10.0, 20.0, 30.0], [5.0, 10.0, 15.0]])


def test_csv_voxel_units_without_spacing_is_an_error(tmp_path):
    path = tmp_path / "vox.csv"
    path.write_text("tomo,class,x,y,z\nTS_1,ribosome,1,2,3\n")
    with pytest.raises(ValueError, match="voxel_spacing"):
        read_picks_csv(path, units="voxel")


def test_csv_missing_column_is_an_error_naming_it(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("tomo,class,x,y\nTS_1,ribosome,1,2\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 1: missing column\(s\) \['z'\]"):
        read_picks_csv(path)


def test_csv_non_numeric_coordinate_is_an_error_naming_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("tomo,class,x,y,z\nTS_1,ribosome,1,2,3\nTS_1,ribosome,1,two,3\n")
    with pytest.raises(ValueError, match=r"bad.csv, row 2 \(line 3\), column 'y'.*'two'"):
        read_picks_csv(path)


def test_csv_nan_coordinate_is_an_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("tomo,class,x,y,z\nTS_1,ribosome,nan,2,3\n")
    with pytest.raises(ValueError, match=r"row 1 \(line 2\), column 'x'"):
        read_picks_csv(path)


def test_csv_with_only_a_header_gives_no_picks(tmp_path):
    path = tmp_path / "none.csv"
    path.write_text("tomo,class,x,y,z,score\n")
    assert len(read_picks_csv(path)) == 0


# --------------------------------------------------------------------------- copick


def test_copick_round_trip_writes_one_file_per_run_and_object(tmp_path, picks):
    paths = write_copick(tmp_path, picks, user_id="tester", session_id="1")
    expected = {
        tmp_path / "ExperimentRuns" / run / "Picks" / f"tester_1_{obj}.json"
        for run, obj in [("TS_5", "ribosome"), ("TS_5", "apo-ferritin"),
                         ("TS_6", "ribosome"), ("TS_6", "apo-ferritin")]
    }
    assert {Path(p) for p in paths} == expected
    back = read_copick(tmp_path)
    order = np.lexsort((picks.xyz[:, 0], picks.cls.astype(str), picks.tomo.astype(str)))
    back_order = np.lexsort((back.xyz[:, 0], back.cls.astype(str), back.tomo.astype(str)))
    _assert_same(back.select(back_order), picks.select(order))
    assert set(back.extra["user_id"]) == {"tester"}


def test_copick_file_holds_the_copick_fields(tmp_path, picks):
    path = write_copick(tmp_path, picks.for_tomo("TS_6").for_class("ribosome"))[0]
    doc = json.loads(open(path).read())
    assert doc["pickable_object_name"] == "ribosome"
    assert (doc["user_id"], doc["session_id"], doc["run_name"]) == ("cryo3d", "0", "TS_6")
    assert doc["voxel_spacing"] is None and doc["unit"] == "angstrom" and doc["trust_orientation"] is False
    point = doc["points"][0]
    assert set(point) == {"location", "transformation_", "instance_id", "score"}
    assert set(point["location"]) == {"x", "y", "z"}
    np.testing.assert_array_equal(point["transformation_"], np.eye(4))
    assert point["instance_id"] == 0


def _copick_file(tmp_path, doc, run="TS_1", name="u_0_ribosome.json"):
    folder = tmp_path / "ExperimentRuns" / run / "Picks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(doc))
    return path


def test_copick_centre_adds_the_transformation_translation(tmp_path):
    t = np.eye(4)
    t[:3, 3] = [1.0, -2.0, 0.5]
    path = _copick_file(tmp_path, {
        "pickable_object_name": "ribosome", "user_id": "u", "session_id": "0", "run_name": "TS_1",
        "points": [{"location": {"x": 10.0, "y": 20.0, "z": 30.0}, "transformation_": t.tolist(),
                    "instance_id": 0, "score": 0.25}],
    })
    p = read_copick_json(path)
    np.testing.assert_allclose(p.xyz, [[11.0, 18.0, 30.5]])
    np.testing.assert_allclose(p.score, [0.25])


def test_copick_extra_keys_are_accepted_and_missing_run_name_comes_from_the_path(tmp_path):
    path = _copick_file(tmp_path, {
        "pickable_object_name": "ribosome", "user_id": "u", "session_id": "0",
        "some_future_field": {"anything": [1, 2]},
        "points": [{"location": {"x": 1.0, "y": 2.0, "z": 3.0, "unit": "angstrom"}, "extra": True}],
    }, run="TS_42")
    p = read_copick_json(path)
    assert p.tomo.tolist() == ["TS_42"]
    np.testing.assert_allclose(p.xyz, [[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(p.score, [1.0])


def test_read_copick_filters_by_user_and_object(tmp_path, picks):
    write_copick(tmp_path, picks, user_id="alice", session_id="0")
    write_copick(tmp_path, picks, user_id="bob", session_id="0")
    p = read_copick(tmp_path, user_id="bob", objects=["ribosome"])
    assert len(p) == 3
    assert set(p.extra["user_id"]) == {"bob"} and set(p.cls) == {"ribosome"}


def test_write_copick_rejects_an_underscore_in_user_id(tmp_path, picks):
    with pytest.raises(ValueError, match="user_id"):
        write_copick(tmp_path, picks, user_id="my_tool")


# --------------------------------------------------------------------------- STAR


def test_star_round_trip_through_voxel_coordinates(tmp_path, picks):
    path = tmp_path / "particles.star"
    write_star(path, picks, voxel_spacing=10.0)
    _assert_same(read_star(path, voxel_spacing=10.0), picks, atol=1e-6)


def test_star_coordinates_are_voxels_in_x_y_z_order(tmp_path):
    import starfile

    p = Picks(["TS_1"], ["ribosome"], [[10.0, 20.0, 30.0]])
    path = tmp_path / "one.star"
    write_star(path, p, voxel_spacing=10.0)
    row = starfile.read(path, always_dict=True)["particles"].iloc[0]
    assert row["rlnTomoName"] == "TS_1"
    assert [row["rlnCoordinateX"], row["rlnCoordinateY"], row["rlnCoordinateZ"]] == [1.0, 2.0, 3.0]


def test_star_class_number_maps_onto_the_particle_set(tmp_path):
    path = tmp_path / "relion.star"
    path.write_text(
        "data_optics\nloop_\n_rlnOpticsGroup #1\n1\n\n"
        "data_particles\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
        "_rlnCoordinateZ #4\n_rlnClassNumber #5\nTS_01 1 2 3 2\nTS_01 4 5 6 1\n"
    )
    p = read_star(path, voxel_spacing=2.0, particles=PARTICLES)
    assert p.cls.tolist() == ["apo-ferritin", "ribosome"]
    np.testing.assert_allclose(p.xyz, [[2.0, 4.0, 6.0], [8.0, 10.0, 12.0]])


def test_star_in_voxels_without_spacing_is_an_error(tmp_path):
    path = tmp_path / "particles.star"
    path.write_text("data_particles\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
                    "_rlnCoordinateZ #4\n_rlnClassName #5\nTS_01 1 2 3 ribosome\n")
    with pytest.raises(ValueError, match="voxel_spacing"):
        read_star(path)


def test_star_written_in_pixels_carries_its_pixel_size_in_the_optics_table(tmp_path, picks):
    path = tmp_path / "particles.star"
    write_star(path, picks, voxel_spacing=10.0)
    _assert_same(read_star(path), picks, atol=1e-6)


# --------------------------------------------------------------------------- dispatch


def test_read_and_write_picks_dispatch_on_the_ending(tmp_path, picks):
    assert write_picks(tmp_path / "p.csv", picks) == [str(tmp_path / "p.csv")]
    _assert_same(read_picks(tmp_path / "p.csv"), picks)
    write_picks(tmp_path / "p.star", picks, voxel_spacing=7.0)
    _assert_same(read_picks(tmp_path / "p.star", voxel_spacing=7.0), picks, atol=1e-6)
    written = write_picks(tmp_path / "copick", picks)
    assert len(written) == 4
    assert len(read_picks(tmp_path / "copick")) == len(picks)
    assert len(read_picks(written[0])) >= 1


def test_unsupported_picks_ending_is_an_error(tmp_path):
    path = tmp_path / "p.xlsx"
    path.write_text("")
    with pytest.raises(ValueError, match="unsupported picks file ending"):
        read_picks(path)


# --------------------------------------------------------------------------- validation

SHAPES = {"TS_1": (20, 40, 60)}  # [z, y, x] voxels
SPACINGS = {"TS_1": 10.0}  # valid x range: [-5, 595] Angstrom


def test_valid_picks_pass_validation():
    p = Picks(["TS_1", "TS_1"], ["ribosome", "apo-ferritin"], [[-5.0, 0.0, 0.0], [595.0, 395.0, 195.0]])
    validate_picks(p, PARTICLES, SHAPES, SPACINGS)


def test_unknown_class_is_an_error_naming_source_row_and_known_classes():
    p = Picks(["TS_1", "TS_1"], ["ribosome", "proteasome"], [[1.0, 1.0, 1.0]] * 2)
    with pytest.raises(ValueError, match=r"gt.csv: row 2 .*'proteasome'.*\['ribosome', 'apo-ferritin'\]"):
        validate_picks(p, PARTICLES, source="gt.csv")


def test_non_finite_coordinate_is_a_validation_error():
    p = Picks(["TS_1"], ["ribosome"], [[1.0, np.inf, 1.0]])
    with pytest.raises(ValueError, match="non-finite"):
        validate_picks(p, PARTICLES)


def test_pick_outside_the_tomogram_is_an_error_naming_tomogram_axis_and_range():
    p = Picks(["TS_1", "TS_1"], ["ribosome"] * 2, [[10.0, 10.0, 10.0], [600.0, 10.0, 10.0]])
    with pytest.raises(ValueError, match=r"'TS_1'.*row 2.*x = 600.0 Angstrom.*\[-5.0, 595.0\]"):
        validate_picks(p, PARTICLES, SHAPES, SPACINGS)


def test_picks_for_a_tomogram_not_given_are_an_error():
    p = Picks(["TS_2"], ["ribosome"], [[10.0, 10.0, 10.0]])
    with pytest.raises(ValueError, match=r"\['TS_2'\] that are not among the tomograms"):
        validate_picks(p, PARTICLES, SHAPES, SPACINGS)


def test_picks_given_as_zyx_get_a_swap_hint():
    # True (x, y, z) = (500, 100, 50) written as (z, y, x): x = 50 fits but z = 500 does not.
    p = Picks(["TS_1"], ["ribosome"], [[50.0, 100.0, 500.0]])
    with pytest.raises(ValueError, match=r"swapped\?.*x and z swapped"):
        validate_picks(p, PARTICLES, SHAPES, SPACINGS)


def test_out_of_range_picks_without_a_simple_cause_get_no_swap_hint():
    p = Picks(["TS_1"], ["ribosome"], [[5000.0, 5000.0, 5000.0]])
    with pytest.raises(ValueError) as info:
        validate_picks(p, PARTICLES, SHAPES, SPACINGS)
    assert "swapped" not in str(info.value)


def test_validation_accepts_the_built_in_czii_classes():
    p = Picks(["TS_1"], ["virus-like-particle"], [[10.0, 10.0, 10.0]])
    validate_picks(p, CZII_PARTICLES, SHAPES, SPACINGS)

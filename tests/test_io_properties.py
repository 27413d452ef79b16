"""Property tests of the STAR and copick JSON readers: generated files read back to their values,
mutated files read to the right values or raise ValueError naming the file, never anything else."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryo3d.io.copick_files import load_copick_file
from cryo3d.io.star import read_star

SETTINGS = settings(max_examples=500, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: starfile (pandas) takes ~10 ms a file: the two mutation properties share 500 examples.
HALF = settings(SETTINGS, max_examples=250)

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-", min_size=1, max_size=8).filter(
    lambda s: s.lower() not in ("nan", "inf", "infinity", "na", "null", "none", "true", "false") and not s[0].isdigit()
    and not s.startswith("-"))
coord = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
score = st.floats(min_value=0.0, max_value=1.0)
#: JSON values of the wrong kind for a number, a name or an object field.
junk = st.one_of(st.text(max_size=5), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2),
                 st.integers(), max_size=1), st.booleans())


@st.composite
def star_rows(draw):
    n = draw(st.integers(min_value=0, max_value=6))
    return [(draw(names), draw(coord), draw(coord), draw(coord), draw(names), draw(score)) for _ in range(n)]


def _star_text(rows, spacing: float) -> str:
    """A RELION 4 STAR file (optics with the pixel size, particles in pixels), formatted here: fast."""
    head = ("data_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnTomoTiltSeriesPixelSize #2\n1\t{!r}\n\n"
            "data_particles\n\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
            "_rlnCoordinateZ #4\n_rlnClassName #5\n_rlnAutopickFigureOfMerit #6\n").format(spacing)
    body = "".join(f"{t}\t{x / spacing!r}\t{y / spacing!r}\t{z / spacing!r}\t{c}\t{s!r}\n"
                   for t, x, y, z, c, s in rows)
    return head + body


def _is_our_error(exc: BaseException, path: Path) -> bool:
    return isinstance(exc, (ValueError, FileNotFoundError)) and str(path) in str(exc)


@SETTINGS
@given(rows=star_rows(), spacing=st.sampled_from([1.0, 7.5, 10.0, 13.48]))
def test_generated_relion4_star_reads_back_to_its_angstrom_values(rows, spacing):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.star"
        path.write_text(_star_text(rows, spacing))  # starfile's own writer: tests/test_io_star.py
        got = read_star(path)  # an empty loop (labels, no rows) is a file without picks
        want = np.array([r[1:4] for r in rows], dtype=np.float64).reshape(-1, 3)
        np.testing.assert_allclose(got.xyz, want, rtol=1e-12, atol=1e-9)
        assert got.tomo.tolist() == [r[0] for r in rows] and got.cls.tolist() == [r[4] for r in rows]
        np.testing.assert_allclose(got.score, [r[5] for r in rows], rtol=0, atol=1e-15)


@HALF
@given(rows=star_rows().filter(bool), data=st.data())
def test_a_star_file_with_one_cell_replaced_by_text_is_an_error_naming_the_label(rows, data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.star"
        lines = _star_text(rows, 10.0).splitlines()
        first = next(i for i, line in enumerate(lines) if line.startswith("_rlnAutopickFigureOfMerit")) + 1
        data_lines = [i for i in range(first, len(lines)) if lines[i].strip()]
        i = data.draw(st.sampled_from(data_lines))
        cells = lines[i].split("\t")
        j = data.draw(st.sampled_from([1, 2, 3, 5]))  # pixel x, y, z and the score
        cells[j] = data.draw(names)
        lines[i] = "\t".join(cells)
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(ValueError) as exc:
            read_star(path)
        assert str(path) in str(exc.value) and "label _rln" in str(exc.value)


@HALF
@given(rows=star_rows().filter(bool), data=st.data())
def test_a_star_file_with_text_cut_out_or_inserted_reads_or_raises_our_error(rows, data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.star"
        text = _star_text(rows, 10.0)
        a = data.draw(st.integers(0, len(text)))
        b = data.draw(st.integers(a, min(len(text), a + 40)))
        insert = data.draw(st.text(alphabet=" \t\n_#\"'abcXYZ0123456789.-", max_size=12))
        path.write_text(text[:a] + insert + text[b:])
        try:
            got = read_star(path)
        except Exception as exc:  # noqa: BLE001 - the property: only our error type, naming the file
            assert _is_our_error(exc, path), repr(exc)
            return
        assert np.isfinite(got.xyz).all() and np.isfinite(got.score).all()
        assert all(isinstance(t, str) and t for t in got.tomo.tolist())


@st.composite
def copick_docs(draw):
    n = draw(st.integers(min_value=0, max_value=5))
    points = []
    for _ in range(n):
        pt = {"location": {"x": draw(coord), "y": draw(coord), "z": draw(coord)}}
        if draw(st.booleans()):
            t = np.eye(4)
            t[:3, 3] = [draw(coord), draw(coord), draw(coord)]
            pt["transformation_"] = t.tolist()
        if draw(st.booleans()):
            pt["score"] = draw(score)
        if draw(st.booleans()):
            pt["instance_id"] = draw(st.integers(0, 1000))
        points.append(pt)
    return {"pickable_object_name": draw(names), "user_id": draw(names.filter(lambda s: "_" not in s)),
            "session_id": draw(st.sampled_from(["0", "1", "17"])), "run_name": draw(names), "points": points}


def _expected(doc):
    xyz = [[p["location"][a] + (p["transformation_"][i][3] if "transformation_" in p else 0.0)
            for i, a in enumerate("xyz")] for p in doc["points"]]
    return np.array(xyz, dtype=np.float64).reshape(-1, 3), [p.get("score", 1.0) for p in doc["points"]]


@SETTINGS
@given(doc=copick_docs())
def test_generated_copick_json_reads_back_to_its_centres(doc):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "u_0_obj.json"
        path.write_text(json.dumps(doc))
        meta, got = load_copick_file(path)
        xyz, sc = _expected(doc)
        np.testing.assert_allclose(got.xyz, xyz, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(got.score, sc)
        assert got.tomo.tolist() == [doc["run_name"]] * len(xyz)
        assert meta["user_id"] == doc["user_id"] and meta["session_id"] == doc["session_id"]


@SETTINGS
@given(doc=copick_docs(), data=st.data())
def test_copick_json_with_a_field_of_the_wrong_kind_or_missing_is_our_error(doc, data):
    fields = ["pickable_object_name", "user_id", "session_id", "points"]
    fields += [f"points.{i}.location.{a}" for i in range(len(doc["points"])) for a in "xyz"]
    fields += [f"points.{i}.location" for i in range(len(doc["points"]))]
    field = data.draw(st.sampled_from(fields))
    drop = data.draw(st.booleans())
    keys = field.split(".")
    parent = doc
    for k in keys[:-1]:
        parent = parent[int(k)] if isinstance(parent, list) else parent[k]
    if drop and keys[-1] in ("points", "location", "x", "y", "z"):
        del parent[keys[-1]]
    else:
        value = data.draw(junk)
        if keys[-1] in ("x", "y", "z") and isinstance(value, bool) is False and isinstance(value, (int, float)):
            value = "not a number"
        if keys[-1] in ("pickable_object_name", "user_id", "session_id") and isinstance(value, str):
            value = [value]
        parent[keys[-1]] = value
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ExperimentRuns" / "TS_1" / "Picks" / "x.json"  # no user/session/object in the name
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(doc))
        if field == "points" and doc.get("points", None) == []:  # an explicit [] is a valid file without picks
            assert len(load_copick_file(path)[1]) == 0
            return
        with pytest.raises(ValueError) as exc:
            load_copick_file(path)
        assert str(path) in str(exc.value)


@SETTINGS
@given(doc=copick_docs(), cut=st.integers(min_value=0, max_value=400), data=st.data())
def test_copick_json_cut_or_garbled_reads_to_its_values_or_raises_our_error(doc, cut, data):
    text = json.dumps(doc)
    cut = min(cut, len(text))
    garble = data.draw(st.text(alphabet='{}[]":,0123456789.eE-nulltrueNaN ', max_size=6))
    mutated = text[:cut] + garble + text[cut + data.draw(st.integers(0, 8)):]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "u_0_obj.json"
        path.write_text(mutated)
        try:
            meta, got = load_copick_file(path)
        except Exception as exc:  # noqa: BLE001 - the property: only our error type, naming the file
            assert _is_our_error(exc, path), repr(exc)
            return
        # it parsed: then it is a valid copick document, and we return exactly what it says
        parsed = json.loads(mutated)
        xyz, sc = _expected({"points": [
            {k: v for k, v in p.items() if k != "score" or v is not None} for p in parsed["points"]]})
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        np.testing.assert_allclose(got.xyz, xyz, rtol=1e-12, atol=1e-9)
        assert all(math.isfinite(v) for v in got.score)


def test_a_copick_file_without_points_is_an_error_not_zero_picks(tmp_path):
    path = tmp_path / "u_0_ribosome.json"
    path.write_text(json.dumps({"pickable_object_name": "ribosome", "user_id": "u", "session_id": "0",
                                "run_name": "TS_1"}))
    with pytest.raises(ValueError, match="'points' is missing"):
        load_copick_file(path)

"""The HTML report: outcome colours under known picks, Angstrom -> pixel mapping, slabs, folder, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryo3d.particles import ParticleClass, ParticleSet
from cryo3d.picks import Picks
from cryo3d.report import ReportVolume, write_report
from cryo3d.report.outcomes import FP, MISSED, TP, match_outcomes, pr_curve
from cryo3d.report.palette import OUTCOME_COLOURS, hex_to_rgb
from cryo3d.report.slabs import Slab, in_slab

SP = 10.0  # Angstrom per voxel
SHAPE = (40, 80, 120)  # z, y, x: x != y so a swap shows
ONE = ParticleSet((ParticleClass("blob", 60.0, 1.0),))
TWO = ParticleSet((ParticleClass("a", 60.0, 1.0), ParticleClass("b", 60.0, 1.0)))


def _volume(centres_xyz, rng, z_half=3):
    """Noise with bright balls (radius 3 voxels, or z-thickness 2*z_half+1) at the given Angstrom centres."""
    vol = rng.normal(scale=0.1, size=SHAPE).astype(np.float32)
    z, y, x = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    for cx, cy, cz in centres_xyz:  # test geometry written out by hand, independent of cryo3d.coords
        vx, vy, vz = cx / SP, cy / SP, cz / SP
        vol[((x - vx) ** 2 + (y - vy) ** 2 <= 9) & (np.abs(z - vz) <= z_half)] = 10.0
    return vol


def _pixel(rec, x_a, y_a):
    """PNG (column, row) of a physical (horizontal, vertical) position, from the axes box and limits."""
    left, top, right, bottom = rec["axes_px"]
    (x0, x1), (y0, y1) = rec["xlim"], rec["ylim"]
    col = left + (x_a - x0) / (x1 - x0) * (right - left)
    row = top + (y1 - y_a) / (y1 - y0) * (bottom - top)  # y grows upwards (origin lower)
    return col, row


def _rgb(png, col, row, r=0):
    """RGB (0..255) pixels in a (2r+1)^2 block at (col, row)."""
    c, rr = int(round(col)), int(round(row))
    return png[rr - r:rr + r + 1, c - r:c + r + 1, :3].reshape(-1, 3) * 255.0


def _has_colour(png, col, row, hex_colour, r=2, tol=70.0):
    px = _rgb(png, col, row, r)
    return bool((np.linalg.norm(px - np.array(hex_to_rgb(hex_colour)), axis=1) < tol).any())


def _central_slab(doc):
    """The slab through the middle of the depth (z = 200 A here): slabs are listed in z order."""
    return next(r for r in doc["tomograms"][0]["slabs"] if r["slab_planes"][0] <= SHAPE[0] // 2 <= r["slab_planes"][1])


def _brightness(png, col, row):
    return float(_rgb(png, col, row, 2).mean() / 255.0)


@pytest.fixture(scope="module")
def known_report(tmp_path_factory):
    """One tomogram: a true positive at A, a missed particle at B, a false positive at C (all at z = 200 A)."""
    rng = np.random.default_rng(0)
    A, B, C = (300.0, 500.0, 200.0), (800.0, 250.0, 200.0), (950.0, 650.0, 200.0)
    vol = _volume([A, B], rng)
    gt = Picks(["t1", "t1"], ["blob", "blob"], [A, B])
    tp_pick = (A[0] + 10.0, A[1], A[2])  # 10 A off: within 0.5 x 60 A
    pred = Picks(["t1", "t1"], ["blob", "blob"], [tp_pick, C], [0.9, 0.8])
    out = tmp_path_factory.mktemp("rep") / "report"
    write_report(out, [ReportVolume("t1", vol, SP)], pred, ONE, gt=gt)
    doc = json.loads((out / "report.json").read_text())
    return out, doc, {"tp": tp_pick, "fp": C, "missed": B}


def test_report_folder_holds_index_and_every_png_it_links(known_report):
    import re

    out, doc, _ = known_report
    html = (out / "index.html").read_text()
    links = re.findall(r'src="([^"]+)"', html)
    assert links and all((out / f).exists() for f in links)
    assert "<script" not in html.lower() and "http" not in html.lower()


def test_axes_span_the_tomogram_in_angstrom_with_x_horizontal(known_report):
    _, doc, _ = known_report
    rec = _central_slab(doc)
    assert (rec["horizontal"], rec["vertical"]) == ("x", "y")
    # voxel i spans (i - 0.5) * SP .. (i + 0.5) * SP
    assert rec["xlim"] == pytest.approx([-0.5 * SP, (SHAPE[2] - 0.5) * SP])
    assert rec["ylim"] == pytest.approx([-0.5 * SP, (SHAPE[1] - 0.5) * SP])
    assert rec["slab_planes"][0] <= 20 <= rec["slab_planes"][1]


@pytest.mark.parametrize("which,outcome", [("tp", TP), ("fp", FP), ("missed", MISSED)])
def test_ring_under_a_known_pick_has_its_outcome_colour(known_report, which, outcome):
    import matplotlib.image as mpimg

    out, doc, picks = known_report
    rec = _central_slab(doc)
    png = mpimg.imread(out / rec["file"])
    x, y, _ = picks[which]
    for dx, dy in [(60, 0), (-60, 0), (0, 60), (0, -60)]:  # on the ring: radius 60 A in x and in y
        col, row = _pixel(rec, x + dx, y + dy)
        assert _has_colour(png, col, row, OUTCOME_COLOURS[outcome]), (which, dx, dy)
        for other in {TP, FP, MISSED} - {outcome}:
            assert not _has_colour(png, col, row, OUTCOME_COLOURS[other], r=1, tol=40.0), (which, other)


def test_particles_show_bright_under_their_picks_and_false_pick_shows_background(known_report):
    import matplotlib.image as mpimg

    out, doc, picks = known_report
    rec = _central_slab(doc)
    png = mpimg.imread(out / rec["file"])
    assert _brightness(png, *_pixel(rec, *picks["missed"][:2])) > 0.9
    assert _brightness(png, *_pixel(rec, picks["tp"][0] - 10.0, picks["tp"][1])) > 0.9
    assert _brightness(png, *_pixel(rec, *picks["fp"][:2])) < 0.8


def test_slab_holds_exactly_its_planes_and_the_picks_on_them(tmp_path):
    """Thin disks on the first and last plane of a slab show; those one plane outside do not."""
    import matplotlib.image as mpimg

    from cryo3d.report.rendering import render_slab

    rng = np.random.default_rng(1)
    slab = Slab(0, 10, 14)
    inside = [(300.0, 300.0, 100.0), (700.0, 400.0, 140.0)]  # z planes 10 and 14
    outside = [(500.0, 600.0, 90.0), (1000.0, 200.0, 150.0)]  # z planes 9 and 15
    vol = _volume(inside + outside, rng, z_half=0)
    xyz = np.array(inside + outside)
    m = in_slab(xyz, SP, slab)
    assert m.tolist() == [True, True, False, False]
    rec = render_slab(tmp_path / "s.png", vol, SP, slab, xyz[m], np.full(int(m.sum()), 60.0),
                      [OUTCOME_COLOURS[TP]] * int(m.sum()), None, "t")
    png = mpimg.imread(tmp_path / "s.png")
    for x, y, _ in inside:
        assert _brightness(png, *_pixel(rec, x, y)) > 0.9
        assert _has_colour(png, *_pixel(rec, x + 60.0, y), OUTCOME_COLOURS[TP])
    for x, y, _ in outside:
        assert _brightness(png, *_pixel(rec, x, y)) < 0.8
        assert not _has_colour(png, *_pixel(rec, x + 60.0, y), OUTCOME_COLOURS[TP])


def test_orthogonal_view_puts_z_vertical_at_the_particle_height(tmp_path):
    import matplotlib.image as mpimg

    from cryo3d.report.rendering import render_slab

    rng = np.random.default_rng(2)
    P = (400.0, 400.0, 120.0)
    vol = _volume([P], rng)
    rec = render_slab(tmp_path / "xz.png", vol, SP, Slab(1, 38, 42), np.array([P]), np.array([60.0]),
                      [OUTCOME_COLOURS[TP]], None, "t")
    assert (rec["horizontal"], rec["vertical"]) == ("x", "z")
    png = mpimg.imread(tmp_path / "xz.png")
    assert _brightness(png, *_pixel(rec, P[0], P[2])) > 0.9
    assert _has_colour(png, *_pixel(rec, P[0], P[2] + 60.0), OUTCOME_COLOURS[TP])


def test_outcomes_match_one_to_one_by_score_within_half_the_radius():
    gt = Picks(["t"] * 2, ["blob"] * 2, [[0, 0, 0], [1000, 0, 0]])
    pred = Picks(["t"] * 4, ["blob"] * 4, [[10, 0, 0], [20, 0, 0], [1031, 0, 0], [5000, 0, 0]], [0.5, 0.9, 0.7, 0.6])
    oc = match_outcomes(pred, gt, ONE)
    # the higher-scoring of two picks on one particle takes it; 31 A > 0.5 x 60 A misses
    assert oc.pred.tolist() == [FP, TP, FP, FP]
    assert oc.gt.tolist() == [TP, MISSED]


def test_outcomes_keep_tomograms_apart():
    gt = Picks(["t1"], ["blob"], [[0, 0, 0]])
    pred = Picks(["t2"], ["blob"], [[0, 0, 0]])
    oc = match_outcomes(pred, gt, ONE)
    assert oc.pred.tolist() == [FP] and oc.gt.tolist() == [MISSED]


def test_confusion_counts_a_particle_picked_as_another_class():
    gt = Picks(["t"] * 3, ["a", "a", "b"], [[0, 0, 0], [500, 0, 0], [1000, 0, 0]])
    pred = Picks(["t"] * 3, ["a", "b", "b"], [[0, 0, 0], [505, 0, 0], [3000, 0, 0]], [0.9, 0.8, 0.7])
    conf = match_outcomes(pred, gt, TWO).confusion
    # rows a, b, background; columns a, b, missed
    assert conf.tolist() == [[1, 1, 0], [0, 0, 1], [0, 1, 0]]


def test_pr_curve_counts_true_positives_above_each_threshold():
    cur = pr_curve(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), n_gt=4, beta=1.0)
    assert cur["threshold"].tolist() == [0.9, 0.8, 0.7]
    assert cur["precision"] == pytest.approx([1.0, 0.5, 2 / 3])
    assert cur["recall"] == pytest.approx([0.25, 0.25, 0.5])


def test_report_refuses_to_replace_a_folder_that_is_not_a_report(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a cryo3d report"):
        write_report(tmp_path, [], Picks.empty(), ONE)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_report_replaces_an_older_report_whole(tmp_path):
    out = tmp_path / "r"
    vol = np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32)
    write_report(out, [ReportVolume("old", vol, SP)], Picks.empty(), ONE)
    write_report(out, [ReportVolume("new", vol, SP)], Picks.empty(), ONE)
    files = sorted(p.name for p in out.iterdir())
    assert not any("old" in f for f in files) and any("new" in f for f in files)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_report_warns_about_picks_of_tomograms_it_was_not_given(tmp_path):
    vol = np.zeros((8, 16, 16), np.float32)
    with pytest.warns(UserWarning, match="have no picks.*not among the given tomograms"):
        write_report(tmp_path / "r", [ReportVolume("TS_1", vol, SP)], Picks(["TS_01"], ["blob"], [[0, 0, 0]]), ONE)


def test_report_rejects_a_class_outside_the_particle_set(tmp_path):
    with pytest.raises(ValueError, match="unknown particle class 'ribo'"):
        write_report(tmp_path / "r", [], Picks(["t"], ["ribo"], [[0, 0, 0]]), ONE)


def test_training_report_handler_logs_a_warning_instead_of_failing(tmp_path, caplog):
    from cryo3d.report import TrainingReportHandler

    class Broken:  # a metric without what the report needs
        last = {"score": 0.5}

    h = TrainingReportHandler(Broken(), dataset=None, output_dir=str(tmp_path))
    with caplog.at_level("WARNING", logger="cryo3d"):
        h._soft(h._write, None, "test")  # dataset None: the write raises inside
    assert "training report not written" in caplog.text


def test_cli_report_writes_a_report_from_files(small_synth, tmp_path, capsys):
    from cryo3d.cli import main

    data, _ = small_synth
    rc = main(["report", str(data / "tomograms"), str(data / "picks.csv"), "--gt", str(data / "picks.csv"),
               "--out", str(tmp_path / "rep")])
    assert rc == 0 and (tmp_path / "rep" / "index.html").exists()
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert len(doc["tomograms"]) == 2 and doc["has_gt"]
    # ground truth against itself: every pick is a true positive
    assert all(r[5] == 0 and r[6] == 0 for r in doc["class_rows"])


def test_cli_view_without_napari_says_how_to_install_it(small_synth, capsys, monkeypatch):
    import builtins

    from cryo3d.cli import main

    real = builtins.__import__

    def no_napari(name, *a, **k):
        if name == "napari" or name.startswith("napari."):
            raise ImportError("No module named 'napari'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_napari)
    data, _ = small_synth
    tomo = sorted((data / "tomograms").iterdir())[0]
    assert main(["view", str(tomo)]) == 2
    assert "pip install 'cryo3d[view]'" in capsys.readouterr().out


def test_cli_evaluate_report_writes_curves_and_slabs(small_synth, tmp_path, capsys):
    from cryo3d.cli import main

    data, _ = small_synth
    rc = main(["evaluate", str(data / "picks.csv"), str(data / "picks.csv"), "--report", str(tmp_path / "ev"),
               "--tomograms", str(data / "tomograms")])
    assert rc == 0
    doc = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert doc["curves"]["file"] == "curves.png" and doc["confusion"]["file"] == "confusion.png"
    assert (tmp_path / "ev" / doc["tomograms"][0]["slabs"][0]["file"]).exists()


def test_cli_predict_report_shows_the_picks_and_heatmaps(tmp_path, capsys):
    import torch

    from cryo3d.cli import main
    from cryo3d.io.picks_csv import write_picks_csv
    from cryo3d.io.tomogram import write_mrc
    from cryo3d.networks import build_network
    from cryo3d.particles import CZII_PARTICLES

    cfg = dict(name="unet-tiny", in_channels=1, out_channels=6, ds_factor=2, prior=0.01)
    torch.manual_seed(0)
    ck = tmp_path / "model.pt"
    torch.save({"network": build_network(dict(cfg)).state_dict(),
                "cryo3d": {"network": cfg, "particles": CZII_PARTICLES.to_dict(), "voxel_spacing": 10.0,
                           "patch_size": [32, 32, 32], "ds_factor": 2, "thresholds": [0.0] * 6}}, ck)
    write_mrc(tmp_path / "TS_1.mrc", np.random.default_rng(0).standard_normal((24, 32, 40)).astype(np.float32), 10.0)
    write_picks_csv(tmp_path / "gt.csv", Picks(["TS_1"], ["ribosome"], [[200.0, 150.0, 120.0]]))
    rc = main(["predict", str(ck), str(tmp_path / "TS_1.mrc"), "--out", str(tmp_path / "pred"), "--device", "cpu",
               "--write-heatmaps", "--report", "--report-gt", str(tmp_path / "gt.csv"), "--quiet"])
    assert rc == 0
    doc = json.loads((tmp_path / "pred" / "report" / "report.json").read_text())
    t = doc["tomograms"][0]
    assert t["name"] == "TS_1" and t["heatmaps"]["classes"] == CZII_PARTICLES.names
    assert doc["has_gt"]


def test_cut_radius_is_the_sphere_section_at_the_nearest_slab_face():
    from cryo3d.report.slabs import cut_radius

    slab = Slab(0, 10, 14)  # z from 95 to 145 A
    xyz = np.array([[0, 0, 120.0], [0, 0, 180.0], [0, 0, 300.0]])
    r = cut_radius(xyz, np.full(3, 60.0), SP, slab)
    assert r == pytest.approx([60.0, np.sqrt(60.0**2 - 35.0**2), 0.0])


def test_slabs_are_planned_in_z_order_whatever_the_order_of_the_fractions():
    from cryo3d.report.slabs import plan_slabs

    slabs = plan_slabs(64, 2)  # default fractions start at the centre
    assert [s.lo for s in slabs] == sorted(s.lo for s in slabs) and len(slabs) == 5


def test_report_page_lists_slabs_in_z_order_each_labelled_with_its_z_range(known_report):
    import re

    out, doc, _ = known_report
    ranges = [r["slab_angstrom"] for r in doc["tomograms"][0]["slabs"]]
    assert ranges == sorted(ranges)
    html = (out / "index.html").read_text()
    found = re.findall(r"z = (-?[\d.]+) to (-?[\d.]+) Å", html)  # each caption is also the image's alt text
    shown = [(float(a), float(b)) for a, b in dict.fromkeys(found)]
    assert shown == [(round(a), round(b)) for a, b in ranges]
    assert "in z order" in html


def test_palette_has_at_least_twelve_distinct_class_colours():
    from cryo3d.report.palette import class_colours

    cols = class_colours([f"c{i}" for i in range(12)])
    assert len(set(cols.values())) == 12


def test_outcome_colours_are_far_from_every_class_colour():
    from cryo3d.report.palette import CLASS_PALETTE, MIN_OUTCOME_DISTANCE

    o = np.array([hex_to_rgb(c) for c in OUTCOME_COLOURS.values()], float)
    c = np.array([hex_to_rgb(x) for x in CLASS_PALETTE], float)
    assert np.linalg.norm(o[:, None] - c[None], axis=2).min() >= MIN_OUTCOME_DISTANCE


def _curves(thresholds):
    from cryo3d.report.curves import class_curves_figure

    rng = np.random.default_rng(0)
    names = ["a", "b", "c"]
    scores = {n: rng.uniform(0, 1, 30) for n in names}
    is_tp = {n: s > 0.5 for n, s in scores.items()}
    return class_curves_figure(names, scores, is_tp, {n: 20 for n in names}, thresholds)


def test_curves_draw_each_class_in_its_palette_colour():
    from matplotlib.colors import to_hex

    from cryo3d.report.palette import class_colours

    fig, _ = _curves(None)
    want = class_colours(["a", "b", "c"])
    pr = fig.axes[0]
    assert {ln.get_label(): to_hex(ln.get_color()) for ln in pr.get_lines() if not ln.get_label().startswith("_")} \
        == {f"{n} (20)": c.lower() for n, c in want.items()}


def test_precision_recall_legend_lies_outside_every_axes():
    fig, _ = _curves(None)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    assert fig.legends and not any(ax.get_legend() for ax in fig.axes)
    leg = fig.legends[0].get_window_extent(r)
    assert not any(leg.overlaps(ax.get_window_extent(r)) for ax in fig.axes)


def test_curves_mark_a_known_threshold_with_a_dashed_line_per_class():
    fig, rec = _curves({"a": 0.3, "b": 0.5, "c": 0.7})
    f_lines = [ln for ln in fig.axes[1].get_lines() if (ln.get_gid() or "").startswith("threshold:")]
    assert sorted(ln.get_xdata()[0] for ln in f_lines) == [0.3, 0.5, 0.7]
    assert all(ln.get_linestyle() == "--" for ln in f_lines)
    assert rec["threshold_note"] == ""


def test_curves_say_the_threshold_is_unknown_when_none_is_given():
    fig, rec = _curves(None)
    notes = [t for t in fig.texts if t.get_gid() == "threshold-note"]
    assert len(notes) == 1 and "threshold unknown" in notes[0].get_text()
    assert not [ln for ax in fig.axes for ln in ax.get_lines() if (ln.get_gid() or "").startswith("threshold:")]


def test_report_of_csv_picks_without_threshold_says_so_under_the_curves(known_report):
    out, doc, _ = known_report
    assert "threshold unknown" in doc["curves"]["caption"]
    assert "threshold unknown" in (out / "index.html").read_text()

"""``cryo3d view``'s napari layers: one world frame (Angstrom, z-y-x), sizes from radii, class colours, outcomes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cryo3d.particles import ParticleClass, ParticleSet
from cryo3d.picks import Picks
from cryo3d.report import ReportVolume
from cryo3d.report.palette import OUTCOME_COLOURS, class_colours
from cryo3d.report.outcomes import FP, MISSED, TP
from cryo3d.report.viewer import layer_specs

SP = 10.0
SHAPE = (64, 48, 80)  # z, y, x: all different so a swapped axis shows
TWO = ParticleSet((ParticleClass("ribosome", 150.0, 1.0), ParticleClass("ferritin", 60.0, 1.0)))


def _scene(n=40, seed=0):
    """A tomogram with a bright voxel under each of ``n`` picks spread over all planes (Angstrom x, y, z)."""
    rng = np.random.default_rng(seed)
    vox = np.column_stack([rng.integers(0, s, n) for s in SHAPE])  # [z, y, x] voxel indices
    vol = np.zeros(SHAPE, np.float32)
    vol[tuple(vox.T)] = 1.0
    xyz = vox[:, ::-1] * SP + rng.uniform(-4.0, 4.0, (n, 3))  # written out by hand, within 0.4 voxel of the centre
    cls = np.array(["ribosome", "ferritin"])[rng.integers(0, 2, n)]
    return ReportVolume("t1", vol, SP), Picks(["t1"] * n, cls, xyz, rng.uniform(0.5, 1.0, n)), vox


def _layer(specs, name):
    return next(s for s in specs if s.kwargs["name"] == name)


def test_every_pick_lies_within_an_image_plane_at_its_world_position():
    tomo, picks, vox = _scene()
    specs = layer_specs(tomo, picks, None, TWO)
    image, pts = specs[0], _layer(specs, "picks")
    scale = np.asarray(image.kwargs["scale"], np.float64)
    assert np.allclose(scale, SP)
    world = pts.data
    assert np.allclose(world, picks.xyz[:, ::-1])  # Angstrom, z-y-x
    lo, hi = -0.5 * scale, (np.asarray(SHAPE) - 0.5) * scale  # the image's extent in world units
    assert ((world >= lo) & (world <= hi)).all()
    plane = np.floor(world / scale + 0.5).astype(int)  # the image plane (and voxel) napari shows each point on
    assert (plane == vox).all()
    assert (image.data[tuple(plane.T)] == 1.0).all()


def test_point_sizes_are_class_diameters_in_angstrom():
    tomo, picks, _ = _scene()
    pts = _layer(layer_specs(tomo, picks, None, TWO), "picks")
    assert np.allclose(pts.kwargs["size"], np.where(picks.cls == "ribosome", 300.0, 120.0))
    assert pts.kwargs["out_of_slice_display"] is True


def test_picks_and_ground_truth_are_separate_layers_in_the_report_class_colours():
    tomo, picks, _ = _scene()
    gt = picks.select(np.arange(10))
    specs = layer_specs(tomo, picks, gt, TWO)
    col = class_colours(TWO.names)
    for name, table in (("picks", picks), ("ground truth", gt)):
        assert _layer(specs, name).kwargs["face_color"] == [col[c] for c in table.cls]
    assert _layer(specs, "picks").kwargs["symbol"] != _layer(specs, "ground truth").kwargs["symbol"]


def test_outcome_layers_split_picks_into_true_and_false_positives_and_missed_particles():
    tomo, picks, _ = _scene()
    gt_xyz = np.concatenate([picks.xyz[:5] + 5.0, [[400.0, 300.0, 320.0]]])  # 5 found, 1 missed
    gt = Picks(["t1"] * 6, list(picks.cls[:5]) + ["ferritin"], gt_xyz)
    specs = layer_specs(tomo, picks, gt, TWO)
    tp, fp, missed = (_layer(specs, n) for n in ("true positives", "false positives", "missed"))
    assert len(tp.data) == 5 and len(fp.data) == len(picks) - 5 and len(missed.data) == 1
    assert np.allclose(missed.data, [[320.0, 300.0, 400.0]])
    assert tp.kwargs["face_color"][0] == OUTCOME_COLOURS[TP] and fp.kwargs["face_color"][0] == OUTCOME_COLOURS[FP]
    assert missed.kwargs["face_color"][0] == OUTCOME_COLOURS[MISSED]
    assert len({tp.kwargs["symbol"], fp.kwargs["symbol"], missed.kwargs["symbol"]}) == 3


_SCREENSHOT = textwrap.dedent("""
    import numpy as np
    from cryo3d.particles import ParticleClass, ParticleSet
    from cryo3d.picks import Picks
    from cryo3d.report import ReportVolume
    from cryo3d.report.palette import class_colours, hex_to_rgb
    from cryo3d.report.viewer import view
    ps = ParticleSet((ParticleClass("ribosome", 150.0, 1.0),))
    vol = np.zeros((64, 48, 80), np.float32)
    picks = Picks(["t1"], ["ribosome"], [[400.0, 240.0, 530.0]], [0.9])  # plane z = 53
    v = view(ReportVolume("t1", vol, 10.0), picks, None, ps, run=False)
    v.dims.set_point(0, 530.0)
    img = v.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
    want = np.array(hex_to_rgb(class_colours(["ribosome"])["ribosome"]), float)
    near = np.linalg.norm(img - want, axis=-1) < 120  # opacity blends the colour with the black image
    print("pixels", int(near.sum()))
    assert near.sum() > 50, near.sum()
    v.dims.set_point(0, 100.0)  # far from the pick's sphere: no point drawn
    img = v.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
    assert (np.linalg.norm(img - want, axis=-1) < 120).sum() == 0
    v.close()
""")


def test_napari_screenshot_under_xvfb_shows_the_pick_on_its_plane(tmp_path):
    pytest.importorskip("napari")
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed")
    display = ":%d" % (90 + os.getpid() % 50)
    server = subprocess.Popen([xvfb, display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb", NAPARI_ASYNC="0")
        r = subprocess.run([sys.executable, "-c", _SCREENSHOT], env=env, capture_output=True, text=True, timeout=170)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    finally:
        server.terminate()
        server.wait(timeout=10)

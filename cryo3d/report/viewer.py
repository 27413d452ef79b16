"""``cryo3d view``: tomogram, picks and ground truth as napari layers (napari is an optional extra).

The layers are planned by :func:`layer_specs`, a pure function (NumPy in, data and keyword
arguments out) that needs no napari and no display; :func:`view` only hands them to napari.
Every layer shares one world frame: Angstrom, axes ``[z, y, x]``. The image's ``scale`` is
the voxel spacing per axis, so voxel index ``i`` sits at world ``i * spacing``; a pick's
world position is its voxel coordinate (:func:`cryo3d.coords.angstrom_to_voxel`) times the
same scale, so it lies on the plane it belongs to. Point ``size`` is the class diameter in
Angstrom (napari sizes are diameters in world units); a point shows on every plane its
sphere reaches (``out_of_slice_display``). Colours come from :mod:`cryo3d.report.palette`
(class colours as in the report). Layers: the tomogram, ``picks`` (discs), ``ground truth``
(rings) and, with ground truth, one layer per outcome (true positives, false positives,
missed), told apart by symbol and outcome colour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cryo3d import coords
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks
from cryo3d.report.outcomes import FP, MISSED, TP, match_outcomes
from cryo3d.report.palette import OUTCOME_COLOURS, OUTCOME_NAMES, class_colours
from cryo3d.report.slabs import robust_limits

__all__ = ["NAPARI_MISSING", "LayerSpec", "import_napari", "layer_specs", "view"]

NAPARI_MISSING = ("cryo3d view needs napari, which is not installed: pip install 'cryo3d[view]' "
                  "(or pip install 'napari[all]'), on a machine with a display")

#: napari symbol per outcome: the outcome reads from the shape as well as the colour.
_OUTCOME_SYMBOLS = {TP: "ring", FP: "x", MISSED: "square"}


@dataclass(frozen=True)
class LayerSpec:
    """One napari layer: ``viewer.add_<kind>(data, **kwargs)``.

    Attributes:
        kind: ``"image"`` or ``"points"``.
        data: the image ``[z, y, x]``, or points ``[N, 3]`` in world coordinates (Angstrom, ``[z, y, x]``).
        kwargs: keyword arguments of ``add_image`` / ``add_points`` (``name``, ``scale``, ``size``, colours...).
    """

    kind: str
    data: Any
    kwargs: dict = field(default_factory=dict)


def import_napari() -> Any:
    """Import napari or raise ``ImportError`` with :data:`NAPARI_MISSING`."""
    try:
        import napari  # noqa: F401
    except ImportError as e:
        raise ImportError(NAPARI_MISSING) from e
    return napari


def _points(name: str, table: Picks, particles: ParticleSet, spacing: float, colours: list[str], symbol: str,
            where: str) -> LayerSpec:
    """A points layer of ``table``'s rows in world coordinates, sized by the class diameter."""
    idx = particles.indices(table.cls, where=where)
    scale = np.full(3, spacing)
    world = coords.angstrom_to_voxel(table.xyz, spacing) * scale  # napari: world = voxel index x image scale
    return LayerSpec("points", np.asarray(world, np.float64).reshape(-1, 3), {
        "name": name, "size": 2.0 * particles.radii[idx], "face_color": list(colours), "symbol": symbol,
        "opacity": 0.6, "out_of_slice_display": True,
        "features": {"class": np.asarray(table.cls, str), "score": np.asarray(table.score, np.float64)},
    })


def layer_specs(tomogram: Any, picks: Picks | None, gt: Picks | None, particles: ParticleSet,
                distance_multiplier: float = 0.5) -> list[LayerSpec]:
    """The napari layers of one tomogram, its picks and its ground truth (module docstring).

    Args:
        tomogram: a :class:`~cryo3d.io.tomogram.Tomogram` (name, data ``[z, y, x]``, voxel_spacing).
        picks: predictions (only this tomogram's rows are shown), or None.
        gt: ground truth, or None.
        particles: classes (radius -> point size, class -> colour).
        distance_multiplier: match radius of the outcome layers, a fraction of the class radius.

    Returns:
        The image layer first, then the points layers that have points.
    """
    sp = coords.check_voxel_spacing(tomogram.voxel_spacing, where=f"tomogram {tomogram.name}")
    data = tomogram.data
    lo, hi = robust_limits(data[:: max(1, data.shape[0] // 16)])
    specs = [LayerSpec("image", data, {"name": tomogram.name, "scale": (sp, sp, sp), "contrast_limits": (lo, hi),
                                       "colormap": "gray"})]
    cols = class_colours(particles.names)
    tabs = {}
    for label, table, symbol in (("picks", picks, "disc"), ("ground truth", gt, "ring")):
        if table is None:
            continue
        t = table.for_tomo(tomogram.name)
        tabs[label] = t
        if len(t):
            specs.append(_points(label, t, particles, sp, [cols[n] for n in t.cls], symbol, label))
    if "picks" in tabs and "ground truth" in tabs:
        p, g = tabs["picks"], tabs["ground truth"]
        oc = match_outcomes(p, g, particles, distance_multiplier)
        for code, table, rows in ((TP, p, oc.pred == TP), (FP, p, oc.pred == FP), (MISSED, g, oc.gt == MISSED)):
            if rows.any():
                sub = table.select(rows)
                specs.append(_points(OUTCOME_NAMES[code] + ("s" if code != MISSED else ""), sub, particles, sp,
                                     [OUTCOME_COLOURS[code]] * len(sub), _OUTCOME_SYMBOLS[code], "outcomes"))
    return specs


def view(tomogram: Any, picks: Picks | None, gt: Picks | None, particles: ParticleSet, run: bool = True,
         show: bool = True) -> Any:
    """Open a napari viewer with the layers of :func:`layer_specs` (world units: Angstrom, axes ``[z, y, x]``).

    Args:
        tomogram: a :class:`~cryo3d.io.tomogram.Tomogram` (name, data, voxel_spacing).
        picks: predictions (their rows of this tomogram are shown), or None.
        gt: ground truth, or None.
        particles: classes (radius -> point size, class -> colour).
        run: start napari's event loop (False returns the viewer, for scripts and tests).
        show: show the window (a hidden viewer's screenshots are blank).

    Returns:
        The ``napari.Viewer``.
    """
    napari = import_napari()
    v = napari.Viewer(title=f"cryo3d: {tomogram.name}", show=show)
    for spec in layer_specs(tomogram, picks, gt, particles):
        getattr(v, f"add_{spec.kind}")(spec.data, **spec.kwargs)
    if run:
        napari.run()
    return v

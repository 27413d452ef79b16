"""``cryo3d view``: tomogram, picks and ground truth as napari layers (napari is an optional extra).

napari is imported only here and only when called; without it the command fails with
one line saying how to install it. Layers: the tomogram (robust-percentile contrast,
``scale`` = voxel spacing so napari's world coordinates are Angstrom ``[z, y, x]``), and
one points layer per picks table, sized by the class radius and coloured by class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cryo3d import coords
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks
from cryo3d.report.palette import class_colours
from cryo3d.report.slabs import robust_limits

__all__ = ["NAPARI_MISSING", "import_napari", "view"]

NAPARI_MISSING = ("cryo3d view needs napari, which is not installed: pip install 'cryo3d[view]' "
                  "(or pip install 'napari[all]'), on a machine with a display")


def import_napari() -> Any:
    """Import napari or raise ``ImportError`` with :data:`NAPARI_MISSING`."""
    try:
        import napari  # noqa: F401
    except ImportError as e:
        raise ImportError(NAPARI_MISSING) from e
    return napari


def view(tomogram: Any, picks: Picks | None, gt: Picks | None, particles: ParticleSet, run: bool = True) -> Any:
    """Open a napari viewer with the tomogram and its picks (world units: Angstrom, axes ``[z, y, x]``).

    Args:
        tomogram: a :class:`~cryo3d.io.tomogram.Tomogram` (name, data, voxel_spacing).
        picks: predictions (their rows of this tomogram are shown), or None.
        gt: ground truth, or None.
        particles: classes (radius -> point size, class -> colour).
        run: start napari's event loop (False returns the viewer, for scripts).
    """
    napari = import_napari()
    sp = float(tomogram.voxel_spacing)
    v = napari.Viewer(title=f"cryo3d: {tomogram.name}")
    lo, hi = robust_limits(tomogram.data[:: max(1, tomogram.data.shape[0] // 16)])
    v.add_image(tomogram.data, name=tomogram.name, scale=(sp, sp, sp), contrast_limits=(lo, hi), colormap="gray")
    cols = class_colours(particles.names)
    for label, table, symbol in (("ground truth", gt, "ring"), ("picks", picks, "disc")):
        if table is None:
            continue
        t = table.for_tomo(tomogram.name)
        if not len(t):
            continue
        idx = particles.indices(t.cls, where=label)
        zyx_a = coords.angstrom_to_voxel(t.xyz, sp) * sp  # world coordinates: voxel index x spacing, [z, y, x]
        v.add_points(zyx_a, name=label, size=2.0 * particles.radii[idx], face_color=[cols[n] for n in t.cls],
                     symbol=symbol, opacity=0.5, properties={"class": np.asarray(t.cls, str), "score": t.score})
    if run:
        napari.run()
    return v

"""Images of a tomogram: slab views with picks, orthogonal views, the pick gallery, heatmaps.

Drawn with matplotlib's object API (``Figure`` + Agg canvas; no pyplot state, so it is
safe in a training process and needs no display). Every image has physical axes in
Angstrom (the picks' unit), the tomogram's name and voxel spacing in its title, and its
contrast set by robust percentiles (1 and 99 %). Each writer returns a record of where
the axes sit in the PNG (pixels, origin top-left) and which physical range they show,
which ``report.json`` keeps, so a reader (or a test) can map Angstrom to PNG pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.ndimage import zoom

from cryo3d import coords
from cryo3d.report.palette import hex_to_rgb
from cryo3d.report.slabs import Slab, crop_slab, extent_angstrom, robust_limits, slab_image

__all__ = ["render_slab", "render_gallery", "render_heatmaps", "new_figure", "save_figure", "AXIS_NAMES"]

#: Physical axis name of each array axis.
AXIS_NAMES = ("z", "y", "x")
DPI = 100
_MARGIN = dict(left=80, right=20, top=46, bottom=52)  # pixels around an image's axes
_MIN_WIDTH = 560  # pixels: a narrow image gets a wider right margin so that its title fits


def new_figure(width_px: float, height_px: float):
    """A ``Figure`` of the given size in pixels (at :data:`DPI`) on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib is heavy; training imports the report
    from matplotlib.figure import Figure  # (as above)

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path) -> None:
    """Write ``fig`` as PNG (the caller writes into a folder that is swapped in atomically)."""
    fig.savefig(str(path), dpi=DPI, format="png", pil_kwargs={"compress_level": 3})  # zlib 6 costs 2x the time


def _axes_record(fig, ax) -> dict:
    """Axes box in PNG pixels (``[left, top, right, bottom]``, origin top-left) and its data limits."""
    W, H = fig.get_size_inches() * DPI
    bb = ax.get_position()  # figure fractions; fixed axes (no layout engine), so no draw is needed
    return {
        "axes_px": [float(bb.x0 * W), float(H - bb.y1 * H), float(bb.x1 * W), float(H - bb.y0 * H)],
        "xlim": [float(v) for v in ax.get_xlim()],
        "ylim": [float(v) for v in ax.get_ylim()],
        "png_size": [int(round(W)), int(round(H))],
    }


def render_slab(
    path: str | Path,
    data: np.ndarray,
    voxel_spacing: float,
    slab: Slab,
    xyz: np.ndarray,
    radii: np.ndarray,
    ring_colours: Sequence[str],
    inner_colours: Sequence[str] | None,
    title: str,
    target_px: int = 760,
    dashed: np.ndarray | None = None,
) -> dict:
    """One slab (mean of its planes) with circles for the picks it holds; write a PNG.

    Args:
        path: PNG to write.
        data: tomogram ``[z, y, x]``.
        voxel_spacing: Angstrom per voxel.
        slab: the planes to average (axis 0: x-y image; 1: x-z; 2: y-z).
        xyz: picks to draw, ``[N, 3]`` Angstrom ``(x, y, z)`` (already selected for the slab).
        radii: circle radius per pick, Angstrom ``[N]``.
        ring_colours: outer ring colour per pick (the outcome, or the class without ground truth).
        inner_colours: inner ring colour per pick (the class), or None.
        title: figure title.
        target_px: size of the image's longer side in pixels (before clipping the scale to 0.5..8 px per voxel).
        dashed: boolean ``[N]``: draw these dashed and thinner (particles centred outside the slab
            whose sphere reaches into it; ``radii`` then holds the radius of the cut).

    Returns:
        The image record (``axes_px``, ``xlim``, ``ylim``, axis names, slab range in Angstrom).
    """
    from matplotlib.collections import EllipseCollection  # lazy: matplotlib (as above)

    img = slab_image(data, slab)
    rows_axis, cols_axis = [a for a in range(3) if a != slab.axis]
    ext = extent_angstrom(data.shape, voxel_spacing)  # [(z, y, x), 2]
    h_idx, v_idx = 2 - cols_axis, 2 - rows_axis  # xyz columns shown horizontally / vertically
    scale = float(np.clip(target_px / max(img.shape), 0.5, 8.0))
    w_px, h_px = img.shape[1] * scale, img.shape[0] * scale
    m = dict(_MARGIN)
    m["right"] += max(0.0, _MIN_WIDTH - (w_px + m["left"] + m["right"]))  # room for the title
    W, H = w_px + m["left"] + m["right"], h_px + m["top"] + m["bottom"]
    fig = new_figure(W, H)
    ax = fig.add_axes([m["left"] / W, m["bottom"] / H, w_px / W, h_px / H])
    lo, hi = robust_limits(img)
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect="auto",
              extent=(ext[cols_axis, 0], ext[cols_axis, 1], ext[rows_axis, 0], ext[rows_axis, 1]),
              interpolation="antialiased")
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    dashed = np.zeros(len(xyz), bool) if dashed is None else np.asarray(dashed, bool)
    ring_colours, radii = np.asarray(ring_colours, dtype=object), np.asarray(radii, np.float64)
    inner_colours = None if inner_colours is None else np.asarray(inner_colours, dtype=object)
    lw = float(np.clip(scale * 0.9, 1.5, 3.0))
    for sel, style, width in ((dashed, (0, (3, 3)), max(1.0, lw * 0.5)), (~dashed, "solid", lw)):
        if not sel.any():
            continue  # dashed first: the picks centred in the slab are drawn on top
        off = xyz[sel][:, [h_idx, v_idx]]
        d = 2.0 * radii[sel]
        ax.add_collection(EllipseCollection(d, d, np.zeros(len(d)), units="xy", offsets=off,
                                            offset_transform=ax.transData, facecolors="none",
                                            edgecolors=list(ring_colours[sel]), linewidths=width, linestyles=style))
        if inner_colours is not None and style == "solid":
            ax.add_collection(EllipseCollection(0.72 * d, 0.72 * d, np.zeros(len(d)), units="xy", offsets=off,
                                                offset_transform=ax.transData, facecolors="none",
                                                edgecolors=list(inner_colours[sel]), linewidths=max(1.0, lw * 0.6)))
    ax.set_xlim(ext[cols_axis, 0], ext[cols_axis, 1])
    ax.set_ylim(ext[rows_axis, 0], ext[rows_axis, 1])
    ax.set_xlabel(f"{AXIS_NAMES[cols_axis]} (Å)")
    ax.set_ylabel(f"{AXIS_NAMES[rows_axis]} (Å)")
    ax.tick_params(labelsize=8)
    fig.text(6 / W, 1.0 - 6 / H, title, fontsize=9, va="top", ha="left")
    rec = _axes_record(fig, ax)
    save_figure(fig, path)
    a0, a1 = slab.angstrom_range(voxel_spacing)
    rec.update({
        "file": Path(path).name, "horizontal": AXIS_NAMES[cols_axis], "vertical": AXIS_NAMES[rows_axis],
        "slab_axis": AXIS_NAMES[slab.axis], "slab_planes": [slab.lo, slab.hi], "slab_angstrom": [a0, a1],
        "n_drawn": int((~dashed).sum()), "n_cut": int(dashed.sum()), "contrast": [lo, hi],
    })
    return rec


def _tile(crop: np.ndarray, size: int) -> np.ndarray:
    """A crop scaled to ``size x size`` and to 0..1 by its robust range (NaN -> its median)."""
    c = crop.copy()
    finite = np.isfinite(c)
    c[~finite] = np.median(c[finite]) if finite.any() else 0.0
    lo, hi = robust_limits(c)
    c = np.clip((c - lo) / (hi - lo), 0.0, 1.0)
    return zoom(c, size / c.shape[0], order=1)[:size, :size]


def render_gallery(
    path: str | Path,
    data: np.ndarray,
    voxel_spacing: float,
    rows: Sequence[dict],
    title: str,
    tile: int = 64,
    border: int = 3,
) -> dict:
    """A mosaic of small x-y crops centred on picks, one labelled row per group; write a PNG.

    Args:
        path: PNG to write.
        data: tomogram ``[z, y, x]``.
        voxel_spacing: Angstrom per voxel.
        rows: each ``{"label": str, "xyz": [N, 3] Angstrom, "colours": [N] hex, "scores": [N] or None,
            "radius": Angstrom}``; a crop spans 3 radii and averages a slab one radius thick.
        title: figure title.
        tile: tile size in pixels.
        border: width of the outcome-coloured frame in pixels.

    Returns:
        Record with ``file`` and the rows' labels and tile widths in Angstrom.
    """
    rows = [r for r in rows if len(r["xyz"])]
    ncol = max([len(r["xyz"]) for r in rows] + [1])
    label_w, gap, top = 250, 6, 40
    T = tile + 2 * border
    W = label_w + ncol * (T + gap) + 10
    Hm = max(1, len(rows)) * (T + 18)  # a row: frame, tile, score line
    mosaic = np.full((Hm, ncol * (T + gap), 3), 1.0, dtype=np.float32)
    texts = []
    for i, r in enumerate(rows):
        rad_v = float(coords.length_to_voxels(r["radius"], voxel_spacing))
        half_yx, half_z = max(2, int(np.ceil(1.5 * rad_v))), max(0, int(round(rad_v / 2)))
        vox = coords.angstrom_to_voxel(np.asarray(r["xyz"], np.float64).reshape(-1, 3), voxel_spacing)
        for j, v in enumerate(vox):
            y0, x0 = i * (T + 18), j * (T + gap)
            mosaic[y0:y0 + T, x0:x0 + T] = hex_to_rgb(r["colours"][j])
            mosaic[y0:y0 + T, x0:x0 + T] /= 255.0
            t = _tile(crop_slab(data, v, half_yx, half_z), tile)
            mosaic[y0 + border:y0 + border + tile, x0 + border:x0 + border + tile] = t[..., None]
            if r.get("scores") is not None:
                texts.append((x0 + T / 2, y0 + T + 1, f"{float(r['scores'][j]):.2f}"))
        r["_tile_angstrom"] = float(coords.voxels_to_length(2 * half_yx + 1, voxel_spacing))
    H = Hm + top + 10
    fig = new_figure(W, H)
    ax = fig.add_axes([label_w / W, 10 / H, mosaic.shape[1] / W, Hm / H])
    ax.imshow(mosaic, origin="upper", aspect="auto", interpolation="nearest",
              extent=(0, mosaic.shape[1], mosaic.shape[0], 0))
    ax.set_axis_off()
    for x, y, s in texts:
        ax.text(x, y, s, ha="center", va="top", fontsize=7)
    for i, r in enumerate(rows):
        fig.text(6 / W, 1.0 - (top + i * (T + 18) + T / 2) / H,
                 f"{r['label']}\n(tile {r['_tile_angstrom']:.0f} Å wide)", fontsize=8, va="center")
    fig.suptitle(title, fontsize=10, y=1.0 - 6 / H, va="top")
    save_figure(fig, path)
    return {"file": Path(path).name, "rows": [{"label": r["label"], "n": len(r["xyz"]),
                                               "tile_angstrom": r["_tile_angstrom"]} for r in rows]}


def render_heatmaps(
    path: str | Path,
    heatmaps: dict[str, tuple[np.ndarray, int]],
    voxel_spacing: float,
    title: str,
) -> dict:
    """The central z-plane of each class heatmap (values 0..1, physical axes); write a PNG.

    Args:
        path: PNG to write.
        heatmaps: ``{class: (heatmap [z, y, x] at 1/f, f)}``.
        voxel_spacing: full-resolution Angstrom per voxel.
        title: figure title.
    """
    names = list(heatmaps)
    ncol = min(3, len(names))
    nrow = -(-len(names) // ncol)
    fig = new_figure(330 * ncol, 300 * nrow + 40)
    for k, n in enumerate(names):
        hm, f = heatmaps[n]
        ax = fig.add_subplot(nrow, ncol, k + 1)
        zc = hm.shape[0] // 2
        # heatmap voxel edges: centres at ds_to_voxel(j), edges half a heatmap voxel either side
        e = np.stack([np.full(3, -0.5), np.asarray(hm.shape, np.float64) - 0.5])
        xyz = coords.ds_to_angstrom(e, voxel_spacing, f)
        ax.imshow(np.asarray(hm[zc], np.float32), cmap="magma", vmin=0.0, vmax=1.0, origin="lower",
                  extent=(xyz[0, 0], xyz[1, 0], xyz[0, 1], xyz[1, 1]), aspect="equal")
        zA = float(coords.ds_to_angstrom(np.array([zc, 0.0, 0.0]), voxel_spacing, f)[2])
        ax.set_title(f"{n} (z = {zA:.0f} Å)", fontsize=8)
        ax.set_xlabel("x (Å)", fontsize=8)
        ax.set_ylabel("y (Å)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, path)
    return {"file": Path(path).name, "classes": names}

"""Write a report folder: ``index.html``, its PNGs and ``report.json`` (what each image shows).

The folder is written whole into a temporary sibling and then moved into place; an
existing report folder is replaced only once the new one is complete (and a folder that
is not a cryo3d report is never replaced).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

import cryo3d
from cryo3d import coords
from cryo3d.io.atomic import write_json_atomic, write_text_atomic
from cryo3d.io.output_guard import hold_temp, remove_stale_temps
from cryo3d.io.tomogram import read_tomogram
from cryo3d.metrics import score_picks
from cryo3d.particles import ParticleSet
from cryo3d.picks import Picks
from cryo3d.report.curves import render_class_curves, render_confusion, render_training
from cryo3d.report.outcomes import FP, MISSED, TP, match_outcomes
from cryo3d.report.page import render_page
from cryo3d.report.palette import OUTCOME_COLOURS, OUTCOME_NAMES, class_colours
from cryo3d.report.rendering import render_gallery, render_heatmaps, render_slab
from cryo3d.report.slabs import Slab, cut_radius, in_slab, plan_slabs, slab_half_width

__all__ = ["ReportVolume", "write_report", "load_heatmaps", "MARKER"]

#: ``report.json``'s ``generator`` value; a folder holding it may be replaced by a new report.
MARKER = "cryo3d report"


@dataclass
class ReportVolume:
    """A tomogram to show: name, ``[z, y, x]`` voxels, Angstrom per voxel (a :class:`~cryo3d.io.tomogram.Tomogram` works too)."""

    name: str
    data: np.ndarray
    voxel_spacing: float


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "tomo"


def _thresholds(thresholds: Any, particles: ParticleSet) -> dict[str, float] | None:
    if thresholds is None:
        return None
    if isinstance(thresholds, Mapping):
        return {n: float(thresholds[n]) for n in particles.names if n in thresholds}
    t = np.asarray(thresholds, np.float64).reshape(-1)
    if t.size == 1:
        t = np.full(len(particles), t[0])
    if t.shape[0] != len(particles):
        raise ValueError(f"thresholds: expected one or {len(particles)} (one per class), got {t.shape[0]}")
    return {n: float(v) for n, v in zip(particles.names, t)}


def load_heatmaps(folder: str | os.PathLike, volumes: Sequence[Any], particles: ParticleSet) -> dict:
    """Heatmaps written by ``cryo3d predict --write-heatmaps``: ``<folder>/<tomogram>_<class>.mrc``.

    ``folder`` may also be a predict output folder (its ``heatmaps/`` is used). The
    downsampling factor is the ratio of the heatmap's to the tomogram's voxel spacing.

    Returns:
        ``{tomogram: {class: (heatmap [z, y, x], factor)}}`` for the files found.
    """
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: heatmap folder not found")
    if (d / "heatmaps").is_dir():
        d = d / "heatmaps"
    out: dict = {}
    for v in volumes:
        for n in particles.names:
            p = d / f"{v.name}_{n}.mrc"
            if not p.exists():
                continue
            h = read_tomogram(p)
            f = coords.ds_factor_between(h.voxel_spacing, v.voxel_spacing)
            if abs(f - round(f)) > 1e-3 or round(f) < 1:
                warnings.warn(f"{p}: voxel spacing {h.voxel_spacing} A is not a whole multiple of the tomogram's "
                              f"{v.voxel_spacing} A; heatmap not shown", stacklevel=2)
                continue
            out.setdefault(v.name, {})[n] = (np.asarray(h.data), int(round(f)))
    if not out:
        warnings.warn(f"{d}: no heatmap named <tomogram>_<class>.mrc for these tomograms", stacklevel=2)
    return out


def _report_own_files(out: Path) -> set[str] | None:
    """The names an existing report in ``out`` wrote (its ``report.json``'s ``files``), None if not a report."""
    try:
        doc = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("generator") != MARKER:
        return None
    files = doc.get("files")
    if isinstance(files, list):
        return {str(f) for f in files} | {"report.json"}
    # a report written before "files" was recorded: its page, record and images
    return {"index.html", "report.json"} | {p.name for p in out.glob("*.png") if p.is_file()}


def _check_report_target(out: Path) -> None:
    """Refuse ``out`` unless it is missing, empty, or a cryo3d report holding only its own files."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder; give a folder for the report")
    if not out.is_dir() or not any(out.iterdir()):
        return
    own = _report_own_files(out)
    if own is None:
        raise ValueError(f"{out}: folder exists and is not a cryo3d report (no report.json); "
                         "choose an empty or new folder")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in own)
    if foreign:
        raise ValueError(f"{out}: report folder also holds files the report did not write ({', '.join(foreign[:3])}); "
                         "the report replaces its folder, so move them out or choose another folder")


@contextlib.contextmanager
def _report_folder(out: Path):
    """Yield a fresh temporary folder; on success it replaces ``out`` (see module docstring).

    ``out`` must be missing, empty or a report holding only what it wrote (checked before
    and again just before the swap). Temporary folders of killed runs (``.NAME.tmp-*``,
    ``.NAME.old-*``) are removed, unless a live run holds them.
    """
    _check_report_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:10]}"
    tmp.mkdir()
    held = hold_temp(tmp)
    try:
        yield tmp
        _check_report_target(out)
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:10]}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(held)


def write_report(
    out_dir: str | os.PathLike,
    volumes: Sequence[Any],
    picks: Picks,
    particles: ParticleSet,
    gt: Picks | None = None,
    heatmaps: Mapping[str, Mapping[str, tuple[np.ndarray, int]]] | None = None,
    thresholds: Mapping[str, float] | Sequence[float] | float | None = None,
    title: str = "cryo3d report",
    notes: Sequence[str] = (),
    beta: float = 4.0,
    distance_multiplier: float = 0.5,
    history: Mapping[str, Sequence[dict]] | None = None,
    slab_fractions: Sequence[float] = (0.5, 0.2, 0.35, 0.65, 0.8),
    gallery_n: int = 8,
    matching: str | None = None,
) -> Path:
    """Render the report of some tomograms and their picks into ``out_dir``.

    Per tomogram: z-slabs (mean over about one particle radius, the mean class radius)
    with every pick centred in the slab as a circle of its class radius (a particle centred
    outside whose sphere reaches in: dashed, the radius of the cut), coloured by outcome (outer ring)
    and class (inner ring) when there is ground truth, by class otherwise; x-z and y-z
    slabs through the centre; a gallery of the top-scoring picks, the highest-scoring false
    positives and the missed particles of each class; optional heatmaps. Then per-class
    precision-recall, F-beta against threshold and score histograms, the class confusion,
    and training curves (``history``). Outcomes: :mod:`cryo3d.report.outcomes`.

    Args:
        out_dir: the report folder (created or replaced whole; never a non-report folder).
        volumes: tomograms to show (``name``, ``data [z, y, x]``, ``voxel_spacing`` Angstrom).
        picks: predictions (``xyz`` Angstrom, ``score``); rows of other tomograms are ignored.
        particles: classes with radii (Angstrom) and weights; every class in the picks must be known.
        gt: ground truth, or None.
        heatmaps: ``{tomogram: {class: (heatmap [z, y, x], factor)}}`` (see :func:`load_heatmaps`).
        thresholds: per-class score threshold (dict, list, or one number): images, gallery,
            outcomes and confusion use the picks at or above it; the curves use every pick and
            mark it. None: every pick is shown.
        title: page title.
        notes: lines shown under the title.
        beta, distance_multiplier: the F-beta's beta and match radius / particle radius.
        history: ``{"val": val_metrics records, "train": train_metrics records}`` for training curves.
        slab_fractions: z positions of the slabs (fractions of the depth; shown in z order).
        gallery_n: tiles per gallery row.
        matching: the score table's matching rule (:func:`cryo3d.metrics.score_picks`; None: its default).

    Returns:
        Path of ``index.html``.
    """
    out = Path(out_dir)
    volumes = list(volumes)
    names = [str(v.name) for v in volumes]
    if len(set(names)) != len(names):
        raise ValueError(f"report: tomograms {sorted({n for n in names if names.count(n) > 1})} share a name")
    particles.indices(picks.cls, where="picks")
    if gt is not None:
        particles.indices(gt.cls, where="ground truth")
    if names:
        others = sorted(set(map(str, picks.tomograms)) - set(names))
        bare = [n for n in names if n not in set(map(str, picks.tomograms))]
        if others and bare:  # a likely name mismatch (one table may hold many tomograms: that alone is fine)
            warnings.warn(f"report: tomograms {bare[:5]} have no picks, while the picks name tomograms "
                          f"{others[:5]} that are not among the given tomograms (check the names)", stacklevel=2)
        picks = picks.select(np.isin(picks.tomo.astype(str), names))
        if gt is not None:
            gt = gt.select(np.isin(gt.tomo.astype(str), names))
    thr = _thresholds(thresholds, particles)
    cls_idx = particles.indices(picks.cls)
    keep = np.ones(len(picks), bool) if thr is None else \
        picks.score >= np.array([thr.get(n, -np.inf) for n in particles.names])[cls_idx]
    shown = picks.select(keep)
    s_idx = particles.indices(shown.cls)
    ccol = class_colours(particles.names)
    has_gt = gt is not None
    oc = match_outcomes(shown, gt, particles, distance_multiplier) if has_gt else None
    g_idx = particles.indices(gt.cls) if has_gt else None
    radii = particles.radii
    slab_thick = float(radii.mean())

    with _report_folder(out) as tmp:
        doc: dict[str, Any] = {
            "generator": MARKER, "version": getattr(cryo3d, "__version__", "?"), "title": title,
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "notes": list(notes),
            "has_gt": has_gt, "class_colours": ccol,
            "outcome_colours": {OUTCOME_NAMES[k]: v for k, v in OUTCOME_COLOURS.items()},
            "matching_note": (f"Outcomes: a pick is a true positive within {distance_multiplier:g} x its class radius "
                              "of a true particle of its class (greedy one-to-one by score, per tomogram); "
                              "the score table below uses cryo3d's metric with its default matching."),
            "tomograms": [], "beta": beta, "distance_multiplier": distance_multiplier,
            "thresholds": thr,
        }
        rows = []
        for k, n in enumerate(particles.names):
            r = [n, f"{radii[k]:g}", int((s_idx == k).sum()), "" if thr is None or n not in thr else f"{thr[n]:.3f}"]
            if has_gt:
                r += [int(((s_idx == k) & (oc.pred == TP)).sum()), int(((s_idx == k) & (oc.pred == FP)).sum()),
                      int(((g_idx == k) & (oc.gt == MISSED)).sum())]
            rows.append(r)
        doc["class_rows"] = rows
        if has_gt:
            kw = {} if matching is None else {"matching": matching}
            res = score_picks(shown, gt, particles, beta=beta, distance_multiplier=distance_multiplier, **kw)
            doc["score_table"] = res.table()
            doc["score_name"] = f"F{beta:g}, {res.matching} matching, picks at or above the thresholds"

        for ti, v in enumerate(volumes):
            data, sp = v.data, coords.check_voxel_spacing(v.voxel_spacing, where=f"tomogram {v.name}")
            if np.ndim(data) != 3:
                raise ValueError(f"tomogram {v.name}: expected a 3D [z, y, x] array, got shape {np.shape(data)}")
            stem = f"t{ti:02d}_{_safe(v.name)}"
            pm = shown.tomo.astype(str) == v.name
            pxyz, pc = shown.xyz[pm], s_idx[pm]
            if has_gt:
                gm = (gt.tomo.astype(str) == v.name) & (oc.gt == MISSED)
                xyz = np.concatenate([pxyz, gt.xyz[gm]])
                cidx = np.concatenate([pc, g_idx[gm]])
                outc = np.concatenate([oc.pred[pm], oc.gt[gm]])
                ring = np.array([OUTCOME_COLOURS[int(o)] for o in outc], dtype=object)
                inner = np.array([ccol[particles.names[c]] for c in cidx], dtype=object)
            else:
                xyz, cidx = pxyz, pc
                ring = np.array([ccol[particles.names[c]] for c in cidx], dtype=object)
                inner = None
            rad = radii[cidx] if len(cidx) else np.zeros(0)
            Z, Y, X = data.shape
            ext_a = coords.voxel_to_angstrom(np.array([Z - 1, Y - 1, X - 1], np.float64), sp)
            t = {"name": v.name, "anchor": stem, "voxel_spacing": sp, "shape_zyx": [Z, Y, X],
                 "describe": (f"{X} x {Y} x {Z} voxels (x, y, z) at {sp:g} Å per voxel = "
                              f"{ext_a[0] + sp:.0f} x {ext_a[1] + sp:.0f} x {ext_a[2] + sp:.0f} Å; "
                              f"{int(pm.sum())} picks shown"), "slabs": [], "ortho": []}
            if has_gt:
                t["counts"] = [{"class": n, "true pos.": int(((pc == k) & (oc.pred[pm] == TP)).sum()),
                                "false pos.": int(((pc == k) & (oc.pred[pm] == FP)).sum()),
                                "missed": int(((g_idx[gm] == k)).sum())} for k, n in enumerate(particles.names)]
            half = slab_half_width(slab_thick, sp)
            slabs = plan_slabs(Z, half, slab_fractions, axis=0)
            ortho = [Slab(1, max(0, Y // 2 - half), min(Y - 1, Y // 2 + half)),
                     Slab(2, max(0, X // 2 - half), min(X - 1, X // 2 + half))]
            for j, s in enumerate(slabs + ortho):
                cut = cut_radius(xyz, rad, sp, s)
                m = in_slab(xyz, sp, s) | (cut > 0)  # centred in the slab, or reaching into it (dashed)
                dashed = ~in_slab(xyz, sp, s)[m]
                r_draw = np.where(dashed, cut[m], rad[m])
                a0, a1 = s.angstrom_range(sp)
                ax_name = "xyz"[2 - s.axis]
                cap = f"{v.name} · {ax_name} = {a0:.0f} to {a1:.0f} Å (mean of {s.hi - s.lo + 1} planes) · {sp:g} Å/voxel"
                kind = "slab" if s.axis == 0 else ("xz" if s.axis == 1 else "yz")
                f = tmp / (f"{stem}_slab{j}.png" if s.axis == 0 else f"{stem}_{kind}.png")
                rec = render_slab(f, data, sp, s, xyz[m], r_draw, ring[m], None if inner is None else inner[m], cap,
                                  dashed=dashed)
                rec.update({"caption": cap, "kind": kind})
                (t["slabs"] if s.axis == 0 else t["ortho"]).append(rec)
            # gallery
            grows = []
            for k, n in enumerate(particles.names):
                sel = np.nonzero(pc == k)[0]
                sc = shown.score[pm][sel]
                top = sel[np.argsort(-sc, kind="stable")[:gallery_n]]
                if has_gt:
                    cols = [OUTCOME_COLOURS[int(o)] for o in oc.pred[pm][top]]
                else:
                    cols = [ccol[n]] * len(top)
                grows.append({"label": f"{n}\ntop-scoring picks", "xyz": pxyz[top], "colours": cols,
                              "scores": shown.score[pm][top], "radius": radii[k]})
                if has_gt:
                    fps = sel[oc.pred[pm][sel] == FP]
                    fps = fps[np.argsort(-shown.score[pm][fps], kind="stable")[:gallery_n]]
                    grows.append({"label": f"{n}\nhighest-scoring false positives", "xyz": pxyz[fps],
                                  "colours": [OUTCOME_COLOURS[FP]] * len(fps), "scores": shown.score[pm][fps],
                                  "radius": radii[k]})
                    mis = np.nonzero((g_idx[gm] == k))[0][:gallery_n]
                    grows.append({"label": f"{n}\nmissed particles", "xyz": gt.xyz[gm][mis],
                                  "colours": [OUTCOME_COLOURS[MISSED]] * len(mis), "scores": None,
                                  "radius": radii[k]})
            if any(len(r["xyz"]) for r in grows):
                gcap = (f"{v.name}: x-y crops centred on picks (mean over a slab one radius thick); frame colour = "
                        + ("outcome" if has_gt else "class") + "; number = score")
                t["gallery"] = render_gallery(tmp / f"{stem}_gallery.png", data, sp, grows,
                                              f"{v.name} · {sp:g} Å/voxel")
                t["gallery"]["caption"] = gcap
            if heatmaps and heatmaps.get(v.name):
                hcap = f"{v.name}: predicted heatmaps, central z-plane (0 black .. 1 bright)"
                t["heatmaps"] = render_heatmaps(tmp / f"{stem}_heatmaps.png", dict(heatmaps[v.name]), sp, hcap)
                t["heatmaps"]["caption"] = hcap
            doc["tomograms"].append(t)

        # per-class curves from every pick (not only those kept)
        all_idx = cls_idx
        scores = {n: picks.score[all_idx == k] for k, n in enumerate(particles.names)}
        if len(picks) or has_gt:
            is_tp = n_gt = None
            if has_gt:
                oc_all = match_outcomes(picks, gt, particles, distance_multiplier)
                is_tp = {n: oc_all.pred[all_idx == k] == TP for k, n in enumerate(particles.names)}
                n_gt = {n: int((g_idx == k).sum()) for k, n in enumerate(particles.names)}
            doc["curves"] = render_class_curves(tmp / "curves.png", particles.names, scores, is_tp, n_gt, thr, ccol,
                                                beta)
            t_part = doc["curves"]["threshold_note"] or "dashed: chosen threshold"
            doc["curves"]["caption"] = ("every pick, before thresholds; dot: best F-beta; " + t_part
                                        if has_gt else "score histogram of every pick; " + t_part)
        if has_gt:
            doc["confusion"] = render_confusion(tmp / "confusion.png", oc)
            doc["confusion"]["caption"] = (
                "Rows: true class (last row: picks near no true particle); columns: the class it was picked as "
                f"(last column: not picked). A true particle counts under another class when an unmatched pick of "
                f"that class lies within {distance_multiplier:g} x the true class's radius.")
        if history and (history.get("val") or history.get("train")):
            doc["training"] = render_training(tmp / "training.png", history.get("val", []),
                                              history.get("train", []), beta)
            doc["training"]["caption"] = "from val_metrics.jsonl and train_metrics.jsonl of the run folder"
        write_text_atomic(tmp / "index.html", render_page(doc))
        doc["files"] = sorted({p.name for p in tmp.iterdir()} | {"report.json"})  # what a later run may replace
        write_json_atomic(tmp / "report.json", doc)
    return out / "index.html"

"""Scoring picks files against ground truth: the I/O edge of :mod:`cryo3d.metrics`.

Used by ``cryo3d evaluate`` and the bundle's ``evaluate.yaml``.
"""

from __future__ import annotations

import os
import warnings
from typing import Mapping, Sequence

import numpy as np

from cryo3d.io.atomic import write_json_atomic
from cryo3d.io.pick_formats import read_picks
from cryo3d.io.pick_validation import scale_mismatch_note, voxel_index_note
from cryo3d.metrics import MATCHINGS, score_picks, sweep_thresholds
from cryo3d.particles import ParticleSet, load_particles
from cryo3d.picks import Picks
from cryo3d.tomogram_scores import scores_by_tomogram, spread_line


def check_inputs(pred: Picks, gt: Picks, pred_path: str | os.PathLike, gt_path: str | os.PathLike,
                 tomograms: Sequence[str] | None = None, particles: ParticleSet | None = None,
                 distance_multiplier: float = 0.5, shapes: Mapping[str, tuple[int, int, int]] | None = None,
                 voxel_spacings: Mapping[str, float] | None = None) -> tuple[Picks, list[str]]:
    """Catch the inputs that would give a silently wrong score; return the ground truth to use and notes.

    * the ground truth holds no picks (a header only): every score is 0;
    * prediction and ground truth share no tomogram name: every prediction is a false
      positive and every particle a miss (names are file stems or copick run names);
    * duplicate ground-truth rows (same tomogram, class and x, y, z): a duplicate can never
      be matched (one-to-one matching), so it halves recall; the duplicates are dropped;
    * coordinates in voxels instead of Angstrom (with ``particles``): no pick matches and one
      table's coordinates are a voxel spacing's multiple of the other's
      (:func:`~cryo3d.io.pick_validation.scale_mismatch_note`), or, given the tomograms'
      ``shapes`` and ``voxel_spacings``, every pick lies within the first 1/spacing of its volume
      (:func:`~cryo3d.io.pick_validation.voxel_index_note`, the check ``prepare`` makes).

    Returns the ground truth without duplicate rows and one message per finding.
    """
    notes: list[str] = []
    if shapes is not None and voxel_spacings is not None:
        notes += [n for n in (voxel_index_note(x, shapes, voxel_spacings, str(path))
                              for x, path in ((pred, pred_path), (gt, gt_path))) if n]
    if particles is not None and len(gt) and len(pred) and not notes:  # one unit warning is enough
        note = scale_mismatch_note(pred, gt, particles, str(pred_path), str(gt_path), distance_multiplier)
        if note:
            notes.append(note)
    if len(gt) == 0:
        notes.append(f"{gt_path}: the ground truth holds no picks (a header only?): every score is 0")
    elif len(pred):
        pt, gt_t = set(pred.tomograms), set(gt.tomograms)
        if tomograms is not None:
            pt, gt_t = pt & set(tomograms), gt_t & set(tomograms)
        if not pt & gt_t:
            notes.append(
                f"{pred_path} and {gt_path} share no tomogram name (prediction: {sorted(pt)[:5]}, ground truth: "
                f"{sorted(gt_t)[:5]}): every prediction counts as a false positive and every particle as missed; "
                "tomograms are matched by name (file stem or copick run)"
            )
    if len(gt):
        key = np.array([f"{t}\x00{c}" for t, c in zip(gt.tomo.tolist(), gt.cls.tolist())], dtype=object)
        _, inv = np.unique(key, return_inverse=True)
        table = np.column_stack([inv.astype(np.float64), np.asarray(gt.xyz, dtype=np.float64)])
        _, first = np.unique(table, axis=0, return_index=True)
        if len(first) < len(gt):
            keep = np.zeros(len(gt), bool)
            keep[first] = True
            n = int((~keep).sum())
            i = int(np.flatnonzero(~keep)[0])
            notes.append(
                f"{gt_path}: {n} duplicate ground-truth row(s) (same tomogram, class and x, y, z; the first is row "
                f"{i + 1}, tomogram {str(gt.tomo[i])!r}, class {str(gt.cls[i])!r}) were dropped: a duplicate can "
                "never be matched and would have lowered recall"
            )
            gt = gt.select(keep)
    return gt, notes


def evaluate_files(
    pred: str | os.PathLike,
    gt: str | os.PathLike,
    particles: ParticleSet | str | None = None,
    beta: float = 4.0,
    distance_multiplier: float = 0.5,
    matching: str = "czii",
    sweep: bool = True,
    tomograms: Sequence[str] | None = None,
    output_json: str | os.PathLike | None = None,
    voxel_spacing: float | None = None,
    labels: tuple[str | None, str | None] | None = None,
    shapes: Mapping[str, tuple[int, int, int]] | None = None,
    voxel_spacings: Mapping[str, float] | None = None,
) -> dict:
    """Score a predicted picks file against a ground-truth one.

    Args:
        pred, gt (path or Picks):
            Picks tables (CSV ``tomo,class,x,y,z[,score]`` in Angstrom, copick, STAR), or picks
            already read (e.g. from a copick project by user and session).
        particles (ParticleSet or path or None): Classes with radii and weights (default: the CZII set).
        beta, distance_multiplier, matching:
            As in :func:`cryo3d.metrics.score_picks` (default: the CZII challenge's rule). The
            score under the other matching is computed too and printed beside it.
        sweep (bool): Also report the score with each class at its best threshold.
        tomograms (names, optional): Score only these tomograms.
        output_json (path, optional): Where to write the result (atomically).
        labels ((str or None, str or None), optional):
            Names of ``pred`` and ``gt`` in the report and warnings when they are given as
            picks read from files (default: the path, or ``copick user/session``).
        voxel_spacing (float, optional):
            Angstrom per pixel of RELION 4 STAR coordinates (default: the file's optics table).
        shapes, voxel_spacings (mappings of tomogram name -> ``(Z, Y, X)`` / Angstrom, optional):
            The tomograms' sizes, for the warning about voxel indices written as Angstrom.

    Returns:
        dict: ``score``, ``per_class`` rows, ``scores`` (``{matching: score}`` for both
            matchings), ``per_tomogram`` (``{tomogram: score}``, each scored alone: the
            spread behind ``score``; a line of the text when there are several), ``text`` (the printed table), ``warnings`` (see :func:`check_inputs`;
            also issued as ``UserWarning``) and, with ``sweep``, ``best_thresholds`` and
            ``best_score``.
    """
    ps = particles if isinstance(particles, ParticleSet) else load_particles(particles)
    p = pred if isinstance(pred, Picks) else read_picks(pred, voxel_spacing=voxel_spacing, particles=ps)
    g = gt if isinstance(gt, Picks) else read_picks(gt, voxel_spacing=voxel_spacing, particles=ps)
    pred, gt = (lab if lab else (x if not isinstance(x, Picks) else _source(x))
                for x, lab in zip((pred, gt), labels or (None, None)))
    g, notes = check_inputs(p, g, pred, gt, tomograms, particles=ps, distance_multiplier=distance_multiplier,
                            shapes=shapes, voxel_spacings=voxel_spacings)
    for n in notes:
        warnings.warn(n, UserWarning, stacklevel=2)
    kw = dict(beta=beta, distance_multiplier=distance_multiplier, matching=matching, tomograms=tomograms)
    res = score_picks(p, g, ps, **kw)
    out = {
        "pred": str(pred), "gt": str(gt), "beta": beta, "distance_multiplier": distance_multiplier,
        "matching": matching, "score": float(res.score), "per_class": res.to_rows(), "text": res.table(),
        "scores": {matching: float(res.score)}, "warnings": notes,
    }
    names = list(tomograms) if tomograms is not None else sorted(
        {str(t) for t in g.tomo} | ({str(t) for t in p.tomo} if matching == "greedy" else set()))
    out["per_tomogram"] = scores_by_tomogram(p, g, ps, names, beta=beta, distance_multiplier=distance_multiplier,
                                             matching=matching)
    if len(names) > 1:  # the spread behind the pooled figure
        out["text"] += "\n" + spread_line(out["per_tomogram"])
    for other in MATCHINGS:
        if other != matching:
            alt = score_picks(p, g, ps, **{**kw, "matching": other})
            out["scores"][other] = float(alt.score)
            fs = ", ".join(f"{c.name} {c.fbeta:.4f}" for c in alt.per_class)
            out["text"] += f"\nscore with {other} matching beside it: {alt.score:.4f} (F{beta:g}: {fs})"
    if sweep and len(p):
        sw = sweep_thresholds(p, g, ps, **kw)
        out["best_thresholds"] = sw["best_threshold"]
        out["best_score"] = float(sw["score"])
        out["text"] += "\n\nwith the best score threshold per class (optimistic: chosen on these picks):\n"
        out["text"] += sw["result"].table()
    if output_json is not None:
        write_json_atomic(output_json, out)
    return out


def _source(picks) -> str:
    """What picks read from a project are called in the report: ``user/session``."""
    users = sorted(set(picks.extra.get("user_id", []).tolist())) if "user_id" in picks.extra else []
    sessions = sorted(set(picks.extra.get("session_id", []).tolist())) if "session_id" in picks.extra else []
    return f"copick {'+'.join(users) or '?'}/{'+'.join(sessions) or '?'}"

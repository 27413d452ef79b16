"""Scoring picks files against ground truth: the I/O edge of :mod:`cryo3d.metrics`.

Used by ``cryo3d evaluate`` and the bundle's ``evaluate.yaml``.
"""

from __future__ import annotations

import os
from typing import Sequence

from cryo3d.io.atomic import write_json_atomic
from cryo3d.particles import ParticleSet, load_particles


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
) -> dict:
    """Score a predicted picks file against a ground-truth one.

    Parameters
    ----------
    pred, gt : path or Picks
        Picks tables (CSV ``tomo,class,x,y,z[,score]`` in Angstrom, copick, STAR), or picks
        already read (e.g. from a copick project by user and session).
    particles : ParticleSet or path or None
        Classes with radii and weights (default: the CZII set).
    beta, distance_multiplier, matching
        As in :func:`cryo3d.metrics.score_picks` (default: the CZII challenge's rule). The
        score under the other matching is computed too and printed beside it.
    sweep : bool
        Also report the score with each class at its best threshold.
    tomograms : names, optional
        Score only these tomograms.
    output_json : path, optional
        Where to write the result (atomically).
    voxel_spacing : float, optional
        Angstrom per pixel of RELION 4 STAR coordinates (default: the file's optics table).

    Returns
    -------
    dict
        ``score``, ``per_class`` rows, ``scores`` (``{matching: score}`` for both
        matchings), ``text`` (the printed table) and, with ``sweep``, ``best_thresholds``
        and ``best_score``.
    """
    from cryo3d.io.picks import read_picks
    from cryo3d.metrics import MATCHINGS, score_picks, sweep_thresholds
    from cryo3d.picks import Picks

    ps = particles if isinstance(particles, ParticleSet) else load_particles(particles)
    p = pred if isinstance(pred, Picks) else read_picks(pred, voxel_spacing=voxel_spacing, particles=ps)
    g = gt if isinstance(gt, Picks) else read_picks(gt, voxel_spacing=voxel_spacing, particles=ps)
    pred, gt = (x if not isinstance(x, Picks) else _source(x) for x in (pred, gt))
    kw = dict(beta=beta, distance_multiplier=distance_multiplier, matching=matching, tomograms=tomograms)
    res = score_picks(p, g, ps, **kw)
    out = {
        "pred": str(pred), "gt": str(gt), "beta": beta, "distance_multiplier": distance_multiplier,
        "matching": matching, "score": float(res.score), "per_class": res.to_rows(), "text": res.table(),
        "scores": {matching: float(res.score)},
    }
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

"""``cryo3d evaluate``: score predicted picks against ground truth (CZII F-beta)."""

from __future__ import annotations

import argparse
import json
import sys

from cryo3d.commands.copick_inputs import evaluate_inputs
from cryo3d.commands.report import report_files
from cryo3d.evaluation import evaluate_files
from cryo3d.io.atomic import json_default
from cryo3d.io.output_guard import refuse_input_as_output
from cryo3d.io.tomogram import find_tomograms, read_tomogram


def run(a: argparse.Namespace) -> int:
    """Print the per-class table (or JSON); optionally write the JSON file and the HTML report."""
    refuse_input_as_output("evaluate", [("--json", a.json), ("--report", a.report)],
                           [a.pred, a.gt, getattr(a, "particles", None), getattr(a, "copick_config", None),
                            *(a.report_tomograms or [])])
    pred, gt, particles, runs = evaluate_inputs(a)  # files, or a copick project's picks by user and session
    to_file = a.json not in (None, "-")
    shapes = spacings = None
    if a.report_tomograms:  # their headers: warn when picks look like voxel indices (as prepare does)
        vols = [read_tomogram(f, check_finite=False, check_constant=False) for f in find_tomograms(a.report_tomograms)]
        shapes, spacings = {v.name: v.shape for v in vols}, {v.name: float(v.voxel_spacing) for v in vols}
    rep = evaluate_files(pred, gt, particles=particles, beta=a.beta, distance_multiplier=a.distance_multiplier,
                         matching=a.matching, sweep=a.sweep, tomograms=runs, output_json=a.json if to_file else None,
                         labels=(a.pred, a.gt), shapes=shapes, voxel_spacings=spacings)
    if a.json == "-":  # --json alone: the result as JSON on stdout (and nothing else there)
        print(json.dumps({k: v for k, v in rep.items() if k != "text"}, indent=2, default=json_default))
    else:
        print(rep["text"])
    if a.report:
        index = report_files(a.report, a.report_tomograms or [], pred, gt=gt, particles=particles)
        print(f"wrote {index} (open it in a browser)", file=sys.stderr if a.json == "-" else sys.stdout)
    return 0

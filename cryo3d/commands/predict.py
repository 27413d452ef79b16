"""``cryo3d predict``: pick particles in whole tomograms with a trained checkpoint."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cryo3d.checkpoints import load_checkpoint
from cryo3d.commands.copick_inputs import check_predictions_writable, predict_tomograms, write_predictions
from cryo3d.commands.report import report_files
from cryo3d.inference import predict
from cryo3d.io.copick_picks import check_copick_names
from cryo3d.io.copick_tomogram import input_name
from cryo3d.io.czii_submission import write_submission
from cryo3d.io.output_guard import output_lock, refuse_input_as_output
from cryo3d.io.tomogram import find_tomograms
from cryo3d.particles import ParticleSet


def checkpoint_particles(checkpoint: str) -> ParticleSet:
    """The particle set a checkpoint was trained with (the report's radii and colours)."""
    return ParticleSet.from_dict(load_checkpoint(checkpoint)["cryo3d"]["particles"])


def run(a: argparse.Namespace) -> int:
    """Predict the tomograms (files or a copick project's), write picks, optionally the report.

    The output folder is locked for the whole run (a second run into it is refused) and may
    not be one of the inputs.
    """
    refuse_input_as_output("predict", [("--out", a.out)],
                           [a.checkpoint, *(a.tomograms or []), a.report_gt, a.copick_config])
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 holds the lock for all ranks
        return _run(a)
    with output_lock(a.out, "predict"):
        return _run(a)


def _run(a: argparse.Namespace) -> int:
    thr = None
    if a.threshold is not None:
        thr = a.threshold[0] if len(a.threshold) == 1 else a.threshold
    if a.copick_config:  # the project's tomograms, on any storage; refuse now, not after inference, to overwrite picks
        paths = predict_tomograms(a)
        check_predictions_writable(a, paths)
    elif not a.tomograms:
        raise ValueError("predict: give tomogram files, folders or globs, or --copick-config")
    else:
        paths = find_tomograms(a.tomograms)
    check_copick_names([input_name(p) for p in paths], user_id=a.user_id, session_id=a.session_id)
    picks = predict(
        a.checkpoint, paths, a.out, voxel_spacing=a.voxel_spacing, thresholds=thr,
        tta=a.tta, overlap=a.overlap, sw_batch_size=a.sw_batch_size, device=a.device,
        write_heatmaps=a.write_heatmaps, user_id=a.user_id, session_id=a.session_id, progress=not a.quiet,
        force=a.force, compile=a.compile, density_factor=a.density_cap, class_decision=a.class_decision,
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 merges and writes; the others did their share
        return 0
    print(f"wrote {len(picks)} picks of {len(picks.tomograms)} tomograms to {a.out}/picks.csv and {a.out}/copick/")
    if "czii-submission" in a.format:
        write_submission(Path(a.out) / "submission.csv", picks)
        print(f"wrote {a.out}/submission.csv (CZII challenge submission)")
    if a.copick_config:
        written = write_predictions(a, picks, paths)
        print(f"wrote {len(written)} pick sets into {a.copick_config} as user {a.user_id!r}, session {a.session_id!r}")
    if a.report:
        index = report_files(str(Path(a.out) / "report"), paths, picks, gt=a.report_gt,
                             heatmaps=str(Path(a.out) / "heatmaps") if a.write_heatmaps else None,
                             particles=checkpoint_particles(a.checkpoint), voxel_spacing=a.voxel_spacing)
        print(f"wrote {index} (open it in a browser)")
    return 0

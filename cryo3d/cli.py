"""The ``cryo3d`` command: ``synth``, ``prepare``, ``evaluate`` (and more as they land).

Run ``cryo3d <command> --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

def cmd_synth(a: argparse.Namespace) -> int:
    from cryo3d.particles import load_particles
    from cryo3d.synth import SynthConfig, synthesize

    over = dict(seed=a.seed)
    if a.shape:
        over["shape"] = tuple(a.shape)
    for key in ("voxel_spacing", "snr", "tilt_range", "particles_per_class", "defocus_um"):
        v = getattr(a, key)
        if v is not None:
            over[key] = v[0] if len(v) == 1 else tuple(v)
    cfg = SynthConfig.preset(a.preset, **over)
    particles = load_particles(a.particles) if a.particles else None  # None: the preset's own set
    man = synthesize(a.out, a.n, cfg, particles, prefix=a.prefix, overwrite=a.overwrite, progress=not a.quiet)
    n = sum(sum(t["counts"].values()) for t in man["tomograms"])
    print(f"wrote {len(man['tomograms'])} tomograms with {n} particles of {len(man['particles']['classes'])} "
          f"classes (preset {man['preset']}) to {a.out} (tomograms/, picks.csv, copick/, manifest.json)")
    return 0


def cmd_prepare(a: argparse.Namespace) -> int:
    from cryo3d.io.pick_formats import read_picks
    from cryo3d.io.tomogram import find_tomograms, read_tomogram
    from cryo3d.particles import ParticleSet, load_particles
    from cryo3d.store import StoreSettings, prepare_store

    tomo_specs, picks_path, particles_path = a.tomograms, a.picks, a.particles
    if a.copick_config:  # a copick project: tomograms, ground truth and classes from it
        from cryo3d.copick_commands import prepare_inputs

        tomos, picks, particles = prepare_inputs(a)
    elif a.data:
        d = Path(a.data)
        tomo_specs = tomo_specs or [str(d / "tomograms")]
        picks_path = picks_path or str(d / "picks.csv")
        if particles_path is None and (d / "manifest.json").exists():
            import json

            particles = ParticleSet.from_dict(json.loads((d / "manifest.json").read_text())["particles"])
        else:
            particles = load_particles(particles_path)
    else:
        particles = load_particles(particles_path)
    if not a.copick_config:
        if not tomo_specs or not picks_path:
            from cryo3d.errors import Cryo3DError

            raise Cryo3DError("give --data FOLDER (synth layout), both --tomograms and --picks, or --copick-config")
        from cryo3d.io.copick_project import tomogram_sizes

        tomos = [read_tomogram(f, voxel_spacing=a.voxel_spacing) for f in find_tomograms(tomo_specs)]
        spacings = sorted({float(t.voxel_spacing) for t in tomos})
        if a.target_spacing is None and len(spacings) > 1:  # e.g. the default synth preset draws one per tomogram
            a.target_spacing = spacings[0]
            print(f"prepare: the tomograms have voxel spacings {spacings[0]:g}-{spacings[-1]:g} A; resampling them "
                  f"all to the finest, {spacings[0]:g} A (choose with --target-spacing)", file=sys.stderr)
        picks = read_picks(picks_path, voxel_spacing=a.picks_voxel_spacing or a.voxel_spacing, particles=particles,
                           class_name=a.class_name, tomogram_sizes=tomogram_sizes(tomos))
    settings = StoreSettings(
        patch_size=a.patch_size if len(a.patch_size) == 3 else a.patch_size[0],
        stride=a.stride if len(a.stride) == 3 else a.stride[0],
        ds_factor=a.ds_factor,
        precompute_heatmaps=a.precompute_heatmaps,
        normalization=a.normalization,
        voxel_spacing=a.target_spacing,
    )
    man = prepare_store(tomos, picks, particles, a.out, settings, overwrite=a.overwrite, progress=not a.quiet,
                        source=str(picks_path or a.copick_config))
    print(f"store {a.out}: {man['n_patches']} patches of {man['patch_size']} voxels, "
          f"{man['n_keypoints']} keypoint rows, ds_factor {man['ds_factor']}")
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from cryo3d.copick_commands import evaluate_inputs
    from cryo3d.evaluation import evaluate_files

    pred, gt, particles, runs = evaluate_inputs(a)  # files, or a copick project's picks by user and session
    to_file = a.json not in (None, "-")
    rep = evaluate_files(pred, gt, particles=particles, beta=a.beta, distance_multiplier=a.distance_multiplier,
                         matching=a.matching, sweep=a.sweep, tomograms=runs, output_json=a.json if to_file else None,
                         labels=(a.pred, a.gt))
    if a.json == "-":  # --json alone: the result as JSON on stdout (and nothing else there)
        import json

        from cryo3d.io.atomic import json_default

        print(json.dumps({k: v for k, v in rep.items() if k != "text"}, indent=2, default=json_default))
    else:
        print(rep["text"])
    if a.report:
        from cryo3d.report.commands import report_files

        index = report_files(a.report, a.report_tomograms or [], pred, gt=gt, particles=particles)
        print(f"wrote {index} (open it in a browser)", file=sys.stderr if a.json == "-" else sys.stdout)
    return 0


def _sw_batch_size(value: str) -> int | str:
    """``--sw-batch-size``: a positive int or ``auto``."""
    from cryo3d.sliding_window import parse_sw_batch_size

    try:
        return parse_sw_batch_size(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("sw_batch_size: ")) from None


def cmd_predict(a: argparse.Namespace) -> int:
    from cryo3d.inference import predict
    from cryo3d.io.tomogram import find_tomograms

    thr = None
    if a.threshold is not None:
        thr = a.threshold[0] if len(a.threshold) == 1 else a.threshold
    if a.copick_config:  # tomograms from the project; refuse now, not after inference, to overwrite picks
        from cryo3d.copick_commands import check_predictions_writable, predict_tomograms, write_predictions

        paths = predict_tomograms(a)
        check_predictions_writable(a, paths)
    elif not a.tomograms:
        raise ValueError("predict: give tomogram files, folders or globs, or --copick-config")
    else:
        paths = find_tomograms(a.tomograms)
    picks = predict(
        a.checkpoint, paths, a.out, voxel_spacing=a.voxel_spacing, thresholds=thr,
        tta=a.tta, overlap=a.overlap, sw_batch_size=a.sw_batch_size, device=a.device,
        write_heatmaps=a.write_heatmaps, user_id=a.user_id, session_id=a.session_id, progress=not a.quiet,
        force=a.force, compile=a.compile,
    )
    import os

    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 merges and writes; the others did their share
        return 0
    print(f"wrote {len(picks)} picks of {len(picks.tomograms)} tomograms to {a.out}/picks.csv and {a.out}/copick/")
    if a.copick_config:
        written = write_predictions(a, picks, paths)
        print(f"wrote {len(written)} pick sets into {a.copick_config} as user {a.user_id!r}, session {a.session_id!r}")
    if a.report:
        from cryo3d.report.commands import checkpoint_particles, report_files

        index = report_files(str(Path(a.out) / "report"), paths, picks, gt=a.report_gt,
                             heatmaps=str(Path(a.out) / "heatmaps") if a.write_heatmaps else None,
                             particles=checkpoint_particles(a.checkpoint), voxel_spacing=a.voxel_spacing)
        print(f"wrote {index} (open it in a browser)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cryo3d",
        description="Find particles in cryo-electron tomograms: simulate data, build patch stores, "
        "train (MONAI bundle), predict and evaluate. Coordinates are (x, y, z) in Angstrom.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from cryo3d.copick_commands import add_project_options

    s = sub.add_parser("synth", help="simulate tomograms with known particles (the built-in data)",
                       description="Simulate cryo-ET-like tomograms (missing wedge, CTF band-pass, noise, "
                       "membranes, gold) with particles of several classes; write MRC, picks.csv, copick JSON.")
    s.add_argument("--out", default="data/synth", help="output folder (default: %(default)s)")
    s.add_argument("--n", type=int, default=4, help="number of tomograms (default: %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    s.add_argument("--preset", default="default", choices=["default", "clean", "hard", "ood", "crowded12"],
                   help="default: randomised shapes, sizes, distractors and imaging (what training uses); "
                   "clean: high SNR, no distractors; hard: low SNR, crowded; ood: the CZII classes with held-out "
                   "shapes at 10.012 A; crowded12: 12 crowded protein-like classes (its own particle set)")
    s.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), help="tomogram size in voxels (default: the preset's, 184 256 256; 128 256 256 for ood and crowded12)")
    s.add_argument("--voxel-spacing", type=float, nargs="+", metavar="A", help="Angstrom per voxel, or LOW HIGH")
    s.add_argument("--snr", type=float, nargs="+", help="signal-to-noise ratio, or LOW HIGH")
    s.add_argument("--tilt-range", type=float, nargs="+", help="maximum tilt in degrees about y, or LOW HIGH")
    s.add_argument("--defocus-um", type=float, nargs="+", help="defocus in micrometres, or LOW HIGH")
    s.add_argument("--particles-per-class", type=int, nargs="+", help="particles of each class, or LOW HIGH")
    s.add_argument("--particles", help="YAML/JSON particle set (default: the preset's, the 6 CZII classes "
                   "except for crowded12)")
    s.add_argument("--prefix", default="synth", help="tomogram name prefix (default: %(default)s)")
    s.add_argument("--overwrite", action="store_true", help="redo tomograms already in the folder")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("prepare", help="cut tomograms and picks into a patch store",
                       description="Cut tomograms into overlapping patches with their keypoints "
                       "(memory-mapped arrays + one keypoint table + manifest.json).")
    s.add_argument("--data", help="a folder in the synth layout (tomograms/, picks.csv, manifest.json)")
    s.add_argument("--tomograms", nargs="+", help="tomogram files, folders or globs (.mrc .rec .map .nii .nii.gz)")
    s.add_argument("--picks", help="picks: CSV (tomo,class,x,y,z in Angstrom), copick JSON or root, or STAR")
    s.add_argument("--particles", help="YAML/JSON particle set (default: the 6 CZII classes)")
    s.add_argument("--voxel-spacing", type=float, help="override the tomograms' voxel spacing (Angstrom)")
    s.add_argument("--out", default="data/store", help="store folder (default: %(default)s)")
    s.add_argument("--patch-size", type=int, nargs="+", default=[64], help="patch size in voxels: N or Z Y X (default 64)")
    s.add_argument("--stride", type=int, nargs="+", default=[48], help="patch stride in voxels: N or Z Y X (default 48)")
    s.add_argument("--ds-factor", type=int, default=2, help="heatmap downsampling factor (default: %(default)s)")
    s.add_argument("--precompute-heatmaps", action="store_true", help="also store downsampled heatmaps (cheap path)")
    s.add_argument("--normalization", default="robust_zscore", choices=["robust_zscore", "none"])
    s.add_argument("--target-spacing", type=float,
                   help="resample tomograms to this voxel spacing (Angstrom) first, e.g. 20 to train at bin 2")
    s.add_argument("--overwrite", action="store_true", help="replace an existing store")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--picks-voxel-spacing", type=float, metavar="A",
                   help="Angstrom per pixel of STAR _rlnCoordinateX/Y/Z (default: --voxel-spacing, else the file's optics)")
    s.add_argument("--class-name", help="class of every pick of a file without a class column (copick CSV, STAR)")
    add_project_options(s)
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("predict", help="pick particles in whole tomograms with a trained checkpoint",
                       description="Sliding-window inference (the training patch as window, Gaussian blending), "
                       "optional test-time flips, peak extraction; writes OUT/picks.csv (tomo,class,x,y,z,score in "
                       "Angstrom), OUT/copick/ JSON and optionally heatmaps as MRC. Finished tomograms are skipped "
                       "when the command is repeated. Under torchrun (torchrun --nproc-per-node=N -m cryo3d.cli predict ...) the "
                       "tomograms are shared among the ranks and rank 0 merges the outputs.")
    s.add_argument("checkpoint", help="a checkpoint written by the training bundle (best.pt, final.pt, last_*.pt)")
    s.add_argument("tomograms", nargs="*", help="tomogram files, folders or globs (.mrc .rec .map .nii .nii.gz .zarr)")
    s.add_argument("--out", default="predictions", help="output folder (default: %(default)s)")
    s.add_argument("--voxel-spacing", type=float, help="override the tomograms' voxel spacing (Angstrom)")
    s.add_argument("--threshold", type=float, nargs="+",
                   help="peak score threshold: one, or one per class (default: the checkpoint's validated thresholds)")
    s.add_argument("--tta", default="none", choices=["none", "flips", "flips_rot90"], help="test-time augmentation")
    s.add_argument("--overlap", type=float, default=0.25, help="window overlap (default: %(default)s)")
    s.add_argument("--sw-batch-size", type=_sw_batch_size, default="auto",
                   help="windows per forward pass; auto: 4 on the CPU, as many as fill the GPU (default: %(default)s)")
    s.add_argument("--compile", action="store_true",
                   help="torch.compile the network (compiles once per process; pays off over many tomograms)")
    s.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    s.add_argument("--write-heatmaps", action="store_true", help="also write each class heatmap as MRC")
    s.add_argument("--user-id", "--user", default="cryo3d", help="copick user id of the written picks (default: %(default)s)")
    s.add_argument("--session-id", "--session", default="0", help="copick session id of the written picks (default: %(default)s)")
    s.add_argument("--overwrite", action="store_true", help="replace picks of --user/--session already in the copick project")
    s.add_argument("--force", action="store_true",
                   help="write into an output folder (--out) that holds files predict did not write (ground truth "
                   "picks.csv, a copick project, other users' picks, tomograms); refused without it")
    add_project_options(s, gt=False)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--report", action="store_true", help="also write an HTML report to OUT/report/index.html")
    s.add_argument("--report-gt", help="ground-truth picks for the report (colours picks by outcome)")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("evaluate", help="score predicted picks against ground truth (CZII F-beta)",
                       description="Per-class precision, recall and F-beta, scored exactly as the CZII "
                       "challenge (every ground-truth particle within distance_multiplier x radius of a "
                       "prediction is a true positive), with greedy one-to-one matching beside it.")
    s.add_argument("pred", nargs="?", help="predicted picks (CSV / copick / STAR); with --copick-config: default "
                   "the project's picks of --user/--session")
    s.add_argument("gt", nargs="?", help="ground-truth picks (CSV / copick / STAR); with --copick-config: default the "
                   "project's picks of --gt-user/--gt-session")
    s.add_argument("--voxel-spacing", type=float, metavar="A", help="Angstrom per pixel of STAR _rlnCoordinateX/Y/Z "
                   "(RELION 4; default: the file's optics table)")
    s.add_argument("--class-name", help="class of every pick of a file without a class column (copick CSV, STAR)")
    s.add_argument("--user-id", "--user", help="copick user of the predictions (with --copick-config)")
    s.add_argument("--session-id", "--session", help="copick session of the predictions (with --copick-config)")
    add_project_options(s)
    s.add_argument("--particles", help="YAML/JSON particle set with radii and weights (default: CZII)")
    s.add_argument("--beta", type=float, default=4.0, help="F-beta's beta (default: %(default)s)")
    s.add_argument("--distance-multiplier", type=float, default=0.5, help="match radius / particle radius")
    s.add_argument("--matching", default="czii", choices=["czii", "greedy"],
                   help="the CZII challenge's rule, or greedy one-to-one by score; the other is printed "
                   "beside it (default: %(default)s)")
    s.add_argument("--sweep", action="store_true", help="also find the best score threshold per class")
    s.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="--json alone: print the result as JSON instead of the table; --json FILE: also "
                   "write it to FILE")
    s.add_argument("--report", metavar="DIR", help="also write an HTML report (curves, confusion; slabs with "
                   "--tomograms) to DIR/index.html")
    s.add_argument("--tomograms", nargs="+", dest="report_tomograms",
                   help="tomogram files, folders or globs to show in the report")
    s.set_defaults(func=cmd_evaluate)

    from cryo3d.workflows.tuning.command import add_tune_parser

    add_tune_parser(sub)  # cryo3d tune: Optuna studies over the training bundle
    from cryo3d.report.commands import add_report_parsers

    add_report_parsers(sub)  # cryo3d report, cryo3d view
    from cryo3d.workflows.bundle_commands import add_bundle_parsers

    add_bundle_parsers(sub)  # cryo3d train, cryo3d bundle-path
    return p


def failure_message(e: BaseException) -> str | None:
    """One line for an expected failure (bad input, unwritable output), or None for a bug.

    Expected: :class:`~cryo3d.errors.Cryo3DError` and other ``ValueError`` (their messages
    name file, field and expectation), and ``OSError`` (missing file, permission denied,
    read-only or full disk: named with its file).
    """
    if isinstance(e, UnicodeDecodeError):
        msg = f"a file is not UTF-8 text ({e}); expected UTF-8"
    elif isinstance(e, ValueError):
        msg = str(e)
    elif isinstance(e, OSError):
        what = {PermissionError: "permission denied: cannot read or write it"}.get(type(e), e.strerror or str(e))
        name = e.filename if e.filename is not None else ""
        if e.filename2 is not None:
            name = f"{name} -> {e.filename2}"
        msg = f"{name}: {what}" if name else str(e)
        if isinstance(e, PermissionError) or getattr(e, "errno", None) == 30:  # EROFS: read-only file system
            msg += "; choose a folder you can write to (e.g. --out elsewhere) or fix its permissions"
    else:
        return None
    return " ".join(msg.split("\n"))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"cryo3d: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cryo3d``. Expected failures print one line ``cryo3d CMD: error: ...`` and return 2;
    ``--debug`` (anywhere on the line) shows the traceback instead."""
    import warnings

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [x for x in argv if x != "--debug"]
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    a, extra = parser.parse_known_args(argv)
    if extra and not getattr(a, "takes_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    old_show = warnings.showwarning
    if not debug:
        warnings.showwarning = _show_warning  # our warnings name their file: one line, no source location
    try:
        return int((a.func(a, extra) if getattr(a, "takes_overrides", False) else a.func(a)) or 0)
    except Exception as e:
        msg = None if debug else failure_message(e)
        if msg is None:
            raise
        print(f"cryo3d {a.command}: error: {msg}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = old_show


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``cryo3d`` command line: every command's parser, and running the one asked for.

Run ``cryo3d <command> --help`` for each command's options. This module builds parsers
only (argparse); a command's work is the ``run`` of its module in :mod:`cryo3d.commands`
(or its workflow's command module), imported when that command runs (:class:`Command`):
so each command module imports its dependencies at its top, and ``cryo3d --help`` or a
light command never waits for torch, MONAI, copick or matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import Any, Sequence

from cryo3d.workflows.bundle_commands import add_bundle_parsers
from cryo3d.workflows.tuning.command import add_tune_parser


class Command:
    """A command's function, imported from its module when the command runs.

    Args:
        module: the module that holds it, e.g. ``"cryo3d.commands.predict"``.
        name: the function, called with the parsed arguments (default ``run``).
    """

    def __init__(self, module: str, name: str = "run") -> None:
        self.module, self.name = module, name

    def __call__(self, a: argparse.Namespace) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(a)

def _sw_batch_size(value: str) -> int | str:
    """``--sw-batch-size``: a positive int or ``auto``."""
    try:
        return Command("cryo3d.sliding_window", "parse_sw_batch_size")(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("sw_batch_size: ")) from None


def add_project_options(p: argparse.ArgumentParser, gt: bool = True) -> None:
    """``--copick-config`` and the selectors of tomograms (and ground truth when ``gt``)."""
    g = p.add_argument_group("copick project")
    g.add_argument("--copick-config", help="a copick project's config JSON: tomograms (OME-Zarr), picks and "
                   "particle classes (pickable_objects) come from it")
    g.add_argument("--tomo-type", help="copick tomogram type, e.g. wbp (default: the project's only one)")
    g.add_argument("--copick-voxel-spacing", type=float, metavar="A",
                   help="copick voxel spacing of the tomograms to read (default: the project's only one)")
    g.add_argument("--runs", nargs="+", help="copick runs to use (default: all)")
    g.add_argument("--trust-spacing", choices=["zarr", "copick"],
                   help="when a tomogram's OME-Zarr scale and its VoxelSpacing folder differ by more than rounding: "
                   "which is right (default: a difference up to 2%% is the folder's rounding and the OME-Zarr "
                   "scale is used, with a warning; a larger one is an error)")
    if gt:
        g.add_argument("--gt-user", help="copick user of the ground-truth picks (default: the only one)")
        g.add_argument("--gt-session", help="copick session of the ground-truth picks (default: the only one)")


def _non_negative(text: str) -> float:
    """A finite number >= 0 (argparse type)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (v >= 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


def add_tomograms_star_option(p: argparse.ArgumentParser) -> None:
    """``--tomograms-star``: RELION 5 tomogram sizes for centred STAR coordinates."""
    p.add_argument("--tomograms-star", metavar="FILE",
                   help="RELION 5 tomograms.star (_rlnTomoName, _rlnTomoSizeX/Y/Z, _rlnTomoTiltSeriesPixelSize): the "
                   "tomogram sizes that STAR _rlnCenteredCoordinateX/Y/ZAngst need; particles of other tomograms "
                   "are left out with a warning")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cryo3d",
        description="Find particles in cryo-electron tomograms: simulate data, build patch stores, "
        "train (MONAI bundle), predict and evaluate. Coordinates are (x, y, z) in Angstrom.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("synth", help="simulate tomograms with known particles (the built-in data)",
                       description="Simulate cryo-ET-like tomograms (a tilt series with per-projection CTF, dose "
                       "and noise reconstructed by weighted back-projection, or a Fourier-domain wedge and CTF; "
                       "membranes, gold) with particles of several classes; write MRC, picks.csv, copick JSON.")
    s.add_argument("--out", default="data/synth", help="output folder (default: %(default)s)")
    s.add_argument("--n", type=int, default=4, help="number of tomograms (default: %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    s.add_argument("--preset", default="default", choices=["default", "demo", "clean", "hard", "ood", "crowded12", "tilt"],
                   help="default: randomised shapes, sizes, distractors and imaging (what training uses); "
                   "clean: high SNR, no distractors; hard: low SNR, crowded; ood: the CZII classes with held-out "
                   "shapes at 10.012 A; crowded12: 12 crowded protein-like classes (its own particle set); "
                   "tilt: 7 held-out classes imaged through a tilt series and weighted back-projection")
    s.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), help="tomogram size in voxels (default: the preset's, 184 256 256; 128 256 256 for ood, crowded12 and tilt)")
    s.add_argument("--voxel-spacing", type=float, nargs="+", metavar="A", help="Angstrom per voxel, or LOW HIGH")
    s.add_argument("--snr", type=float, nargs="+", help="signal-to-noise ratio, or LOW HIGH")
    s.add_argument("--tilt-range", type=float, nargs="+", help="maximum tilt in degrees about y, or LOW HIGH")
    s.add_argument("--defocus-um", type=float, nargs="+", help="defocus in micrometres, or LOW HIGH")
    s.add_argument("--particles-per-class", type=int, nargs="+", help="particles of each class, or LOW HIGH")
    s.add_argument("--particles", help="YAML/JSON particle set (default: the preset's, the 6 CZII classes "
                   "except for crowded12 and tilt)")
    s.add_argument("--structures", metavar="DIR",
                   help="a folder of density maps (.mrc/.map, voxel size from the header) and/or atomic models "
                   "(.pdb/.cif, density computed from the atoms): one class per file, named by its stem, radius "
                   "sqrt(5/3) x its radius of gyration; writes particles.yaml for that set. 'pseudo-atomic' (the "
                   "default preset's and crowded12's): built-in protein-like models; 'none': geometric shapes only")
    s.add_argument("--prefix", default="synth", help="tomogram name prefix (default: %(default)s)")
    s.add_argument("--overwrite", action="store_true", help="redo tomograms already in the folder")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=Command("cryo3d.commands.synth"))

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
    add_tomograms_star_option(s)
    add_project_options(s)
    s.set_defaults(func=Command("cryo3d.commands.prepare"))

    s = sub.add_parser("predict", help="pick particles in whole tomograms with a trained checkpoint",
                       description="Sliding-window inference (the training patch as window, Gaussian blending), "
                       "optional test-time flips, peak extraction; writes OUT/picks.csv (tomo,class,x,y,z,score in "
                       "Angstrom), OUT/copick/ JSON and optionally heatmaps as MRC. Finished tomograms are skipped "
                       "when the command is repeated with the same checkpoint and settings and the tomogram's "
                       "content unchanged (a SHA-256 of every byte of the file, or of every file of an OME-Zarr "
                       "folder). Under torchrun (torchrun --nproc-per-node=N -m cryo3d.cli predict ...) the "
                       "tomograms are shared among the ranks and rank 0 merges the outputs.")
    s.add_argument("checkpoint", help="a checkpoint written by the training bundle (best.pt, final.pt, last_*.pt)")
    s.add_argument("tomograms", nargs="*", help="tomogram files, folders or globs (.mrc .rec .map .nii .nii.gz .zarr)")
    s.add_argument("--out", default="predictions", help="output folder (default: %(default)s)")
    s.add_argument("--voxel-spacing", type=float, help="override the tomograms' voxel spacing (Angstrom)")
    s.add_argument("--threshold", type=float, nargs="+",
                   help="peak score threshold: one, or one per class (default: the checkpoint's validated thresholds)")
    s.add_argument("--tta", default=None, choices=["none", "flips", "flips_rot90"],
                   help="test-time augmentation: none, the 3 axis flips (4 passes averaged) or flips and 2 quarter "
                        "turns (6); default: the checkpoint's, the one its thresholds were validated under")
    s.add_argument("--density-cap", type=_non_negative, default=None, metavar="FACTOR",
                   help="a class reports at most FACTOR x the particle density of the checkpoint's training "
                   "annotations per tomogram, its highest scores kept, with a warning (default: 2.5, "
                   "cryo3d.peak_selection.DENSITY_CAP_FACTOR; 0: no cap)")
    s.add_argument("--class-decision", default=None, choices=["independent", "strongest"],
                   help="independent: each class's peaks on their own; strongest: a peak is kept only where its "
                   "class is the model's strongest at that voxel (one particle, one class) (default: the rule the "
                   "checkpoint's thresholds were validated under: strongest since it is recorded, else independent)")
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
    s.add_argument("--format", action="append", choices=["czii-submission"], default=[],
                   help="also write OUT/submission.csv, the CZII challenge's format (id,experiment,particle_type,x,y,z)")
    s.set_defaults(func=Command("cryo3d.commands.predict"))

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
    s.add_argument("--user-id", "--user", help="copick user of the predictions (a copick project or root folder)")
    s.add_argument("--session-id", "--session", help="copick session of the predictions (a copick project or root "
                   "folder)")
    add_project_options(s)
    s.add_argument("--particles", help="particle set with radii and weights: a built-in name (czii, czii-ood, "
                   "crowded12) or a YAML/JSON file (default: czii; with --copick-config the project's objects, "
                   "weighted as the CZII challenge where their names match)")
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
                   help="tomogram files, folders or globs to show in the report (their sizes also place RELION 5 "
                   "centred STAR coordinates and tell picks written in voxels, a warning); a .star here is taken as --tomograms-star")
    add_tomograms_star_option(s)
    s.set_defaults(func=Command("cryo3d.commands.evaluate"))

    s = sub.add_parser("export", help="write picks in another format (a CZII challenge submission.csv, CSV, STAR)",
                       description="Read picks (CSV, challenge submission CSV, copick JSON or root, STAR) and write "
                       "them as the CZII challenge's submission.csv (id,experiment,particle_type,x,y,z in Angstrom; "
                       "ids 0..n-1, no score column), cryo3d's CSV, or RELION STAR (RELION 4 pixels with "
                       "--voxel-spacing, RELION 5 centred Angstrom with --tomograms-star).")
    s.add_argument("picks", help="picks file or copick root")
    s.add_argument("--format", required=True, choices=["czii-submission", "csv", "star"], help="output format")
    s.add_argument("--out", required=True, help="output file (written atomically)")
    s.add_argument("--min-score", type=float, metavar="S", help="keep picks with score >= S (default: all)")
    s.add_argument("--voxel-spacing", type=float, metavar="A",
                   help="Angstrom per pixel of STAR pixel coordinates (read), and of --format star (written)")
    s.add_argument("--particles", help="YAML/JSON particle set (STAR _rlnClassNumber)")
    s.add_argument("--class-name", help="class of every pick of a file without a class column (copick CSV, STAR)")
    add_tomograms_star_option(s)
    s.set_defaults(func=Command("cryo3d.commands.export"))

    add_tune_parser(sub)  # cryo3d tune: Optuna studies over the training bundle
    add_report_parsers(sub)  # cryo3d report, cryo3d view
    add_bundle_parsers(sub)  # cryo3d train, cryo3d bundle-path
    return p


def add_report_parsers(sub: Any) -> None:
    """Add ``report`` and ``view`` to the ``cryo3d`` sub-command parsers."""
    s = sub.add_parser(
        "report", help="write an HTML report (slabs with picks, gallery, curves, confusion) to open in a browser",
        description="Render tomograms and their picks into a folder with a static index.html and its PNGs "
        "(no server, no internet): z-slabs and x-z / y-z views with picks as circles of the particle radius "
        "(coloured by outcome against --gt: true positive, false positive, missed; else by class), a gallery "
        "of the top picks, worst false positives and misses, per-class precision-recall, F-beta against "
        "threshold, score histograms and the class confusion.")
    s.add_argument("inputs", nargs="*", metavar="TOMOGRAMS... PICKS",
                   help="tomogram files, folders or globs (.mrc .rec .map .nii .nii.gz .zarr), then the picks: CSV "
                   "(tomo,class,x,y,z[,score] in Angstrom), copick JSON or root, or STAR. With --copick-config: "
                   "none (the project's tomograms and picks of --user/--session) or only the picks file")
    s.add_argument("--gt", help="ground-truth picks (same formats): colour picks by outcome; with --copick-config: "
                   "default the project's picks of --gt-user/--gt-session, if any")
    s.add_argument("--user-id", "--user", help="copick user of the picks (a copick project or root folder)")
    s.add_argument("--session-id", "--session", help="copick session of the picks (a copick project or root folder)")
    add_project_options(s)
    s.add_argument("--heatmaps", help="folder of heatmaps from cryo3d predict --write-heatmaps (<tomo>_<class>.mrc)")
    s.add_argument("--out", required=True, help="report folder (created, or replaced if it holds a report)")
    s.add_argument("--particles", help="YAML/JSON particle set with radii and weights (default: the 6 CZII classes)")
    s.add_argument("--voxel-spacing", type=float, help="override the tomograms' voxel spacing (Angstrom)")
    s.add_argument("--threshold", type=float, nargs="+",
                   help="show picks with score at or above this (one, or one per class); curves use every pick")
    add_tomograms_star_option(s)
    s.set_defaults(func=Command("cryo3d.commands.report"))

    s = sub.add_parser("view", help="open a tomogram with picks and ground truth in napari (optional extra)",
                       description="napari layers: the tomogram (Angstrom world units), picks and ground truth as "
                       "points sized by the particle radius and coloured by class. Needs napari "
                       "(pip install 'cryo3d[view]') and a display.")
    s.add_argument("tomogram", nargs="?", help="a tomogram file (with --copick-config: default the tomogram of "
                   "the one run in --runs)")
    s.add_argument("--picks", help="predicted picks file (with --copick-config: default the project's picks of "
                   "--user/--session, if any)")
    s.add_argument("--gt", help="ground-truth picks file (with --copick-config: default the project's picks of "
                   "--gt-user/--gt-session, if any)")
    s.add_argument("--user-id", "--user", help="copick user of the picks (a copick project or root folder)")
    s.add_argument("--session-id", "--session", help="copick session of the picks (a copick project or root folder)")
    add_project_options(s)
    s.add_argument("--particles", help="YAML/JSON particle set (default: the 6 CZII classes)")
    s.add_argument("--voxel-spacing", type=float, help="override the tomogram's voxel spacing (Angstrom)")
    add_tomograms_star_option(s)
    s.set_defaults(func=Command("cryo3d.commands.report", "run_view"))


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

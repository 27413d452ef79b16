"""Per-tomogram results of ``cryo3d predict``, keyed by what they were made from.

A finished tomogram's picks are kept in ``OUT/per_tomogram/<name>.csv`` with a record
``OUT/per_tomogram/<name>.json`` holding the key they were made from:

* the run key: the checkpoint's fingerprint (size, mtime, SHA-256 of the whole file), every
  inference setting and the voxel-spacing override;
* the tomogram's content fingerprint (:func:`cryo3d.fingerprints.tomogram_fingerprint`: for a
  local file or folder a SHA-256 of every byte, for a copick tomogram in object storage or on
  another machine each file's size, modification time and the content hash the storage keeps);
* the SHA-256 of the CSV itself and the outputs made (picks, heatmaps).

A result is reused only when all of these match and the files are still what the
record says, so another tomogram with the same file stem, another checkpoint or other
settings are computed afresh, and a rerun asking for more outputs (heatmaps) makes them.
The record is written after the CSV (both atomically); a kill between the two leaves a
record whose CSV hash does not match, which is recomputed. Outputs of tomograms that are
not in the call are removed by :meth:`ResultStore.remove_stale`.

:func:`check_output_folder` refuses a folder that holds files ``predict`` did not write
(ground truth, a copick project, tomograms) unless told to write there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from cryo3d.errors import Cryo3DError
from cryo3d.fingerprints import file_fingerprint, tomogram_fingerprint
from cryo3d.io.atomic import json_default, write_json_atomic
from cryo3d.io.copick_tomogram import CopickTomogramSource
from cryo3d.io.tomogram import MRC_SUFFIXES, NIFTI_SUFFIXES

#: Marker of the record ``predict`` writes into its output folder.
PREDICT_RECORD = "predict.json"
WRITER = "cryo3d predict"


def _sha256_file(path: Path) -> str:
    return file_fingerprint(path)["sha256"]


def _plain(obj: Any) -> Any:
    """JSON-normal form (tuples -> lists, NumPy -> Python), so keys compare after a round trip."""
    return json.loads(json.dumps(obj, default=json_default, sort_keys=True))


def run_key(checkpoint: str | os.PathLike, settings: Mapping[str, Any], voxel_spacing: float | None) -> dict:
    """What every result of a call depends on besides its tomogram: checkpoint and settings."""
    return _plain({
        "checkpoint": file_fingerprint(checkpoint),
        "settings": dict(settings),
        "voxel_spacing_override": voxel_spacing,
    })


class ResultStore:
    """The per-tomogram results in ``out/per_tomogram`` for one run key.

    Args:
        out: the output folder of ``predict``.
        key: :func:`run_key` of this call.
    """

    def __init__(self, out: str | os.PathLike, key: Mapping[str, Any]) -> None:
        self.out = Path(out)
        self.dir = self.out / "per_tomogram"
        self.key = _plain(dict(key))
        self._fingerprints: dict[str, dict] = {}

    def _fingerprint(self, tomogram: str | os.PathLike | CopickTomogramSource) -> dict:
        """The tomogram's fingerprint, taken once per call: at lookup, before inference reads it, so
        the record holds what was read (a file changed meanwhile is computed afresh next time)."""
        key = str(tomogram)
        if key not in self._fingerprints:
            self._fingerprints[key] = _plain(tomogram_fingerprint(tomogram))
        return self._fingerprints[key]

    def _paths(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.csv", self.dir / f"{name}.json"

    def heatmap_paths(self, name: str, classes: Sequence[str]) -> list[Path]:
        """``out/heatmaps/<tomogram>_<class>.mrc`` for each class."""
        return [self.out / "heatmaps" / f"{name}_{c}.mrc" for c in classes]

    def lookup(self, name: str, tomogram: str | os.PathLike | CopickTomogramSource,
               outputs: Iterable[str]) -> Path | None:
        """The CSV of ``name`` if it was made from this tomogram's content with this run key and
        has every output in ``outputs`` (and those files are intact); else None."""
        csv, rec_path = self._paths(name)
        if not (csv.is_file() and rec_path.is_file()):
            return None
        try:
            rec = json.loads(rec_path.read_text())
        except (OSError, ValueError):
            return None
        if rec.get("key") != self.key or rec.get("tomogram") != self._fingerprint(tomogram):
            return None
        if rec.get("csv_sha256") != _sha256_file(csv):
            return None
        made = rec.get("outputs", {})
        for kind in outputs:
            files = made.get(kind)
            if files is None:
                return None
            for f in files:  # heatmaps: each file still there with the size it was written with
                fp = self.out / f["path"]
                if not fp.is_file() or fp.stat().st_size != f["size"]:
                    return None
        return csv

    def record(self, name: str, tomogram: str | os.PathLike | CopickTomogramSource,
               outputs: Mapping[str, Sequence[Path]]) -> None:
        """Record that ``name``'s CSV (already written) and ``outputs`` were made from ``tomogram``."""
        csv, rec_path = self._paths(name)
        write_json_atomic(rec_path, {
            "written_by": WRITER,
            "name": name,
            "tomogram_path": str(tomogram),
            "tomogram": self._fingerprint(tomogram),
            "key": self.key,
            "csv_sha256": _sha256_file(csv),
            "outputs": {k: [{"path": str(Path(p).relative_to(self.out)), "size": Path(p).stat().st_size} for p in v]
                        for k, v in outputs.items()},
        })

    def csv_path(self, name: str) -> Path:
        return self._paths(name)[0]

    def remove_stale(self, keep: Iterable[str], user_id: str, session_id: str,
                     copick_written: Iterable[str] = ()) -> list[str]:
        """Remove outputs of tomograms not in ``keep``; return what was removed (relative paths).

        Removes their per-tomogram CSV and record and heatmaps, and every copick picks file of
        this ``user_id`` and ``session_id`` under ``out/copick`` that this call did not write
        (``copick_written``): runs no longer in the call and objects no longer found. Files of
        other users and sessions are never touched.
        """
        keep = set(keep)
        removed: list[Path] = []
        if self.dir.is_dir():
            for p in list(self.dir.glob("*.csv")) + list(self.dir.glob("*.json")):
                if p.stem not in keep:
                    removed.append(p)
        hdir = self.out / "heatmaps"
        if hdir.is_dir():  # keep only the heatmaps the kept tomograms' records list
            listed = set()
            for n in keep:
                try:
                    rec = json.loads(self._paths(n)[1].read_text())
                    listed |= {f["path"] for f in rec.get("outputs", {}).get("heatmaps", [])}
                except (OSError, ValueError, AttributeError, KeyError, TypeError):
                    pass
            for p in hdir.glob("*.mrc"):
                if str(p.relative_to(self.out)) not in listed:
                    removed.append(p)
        runs = self.out / "copick" / "ExperimentRuns"
        written = {str(Path(w).resolve()) for w in copick_written}
        if runs.is_dir():
            for p in runs.glob(f"*/Picks/{user_id}_{session_id}_*.json"):
                if str(p.resolve()) not in written:
                    removed.append(p)
        for p in removed:
            p.unlink(missing_ok=True)
        if runs.is_dir():  # run folders left empty
            for run in runs.iterdir():
                picks = run / "Picks"
                if picks.is_dir() and not any(picks.iterdir()):
                    picks.rmdir()
                if run.is_dir() and not any(run.iterdir()):
                    run.rmdir()
        return sorted(str(p.relative_to(self.out)) for p in removed)


# --------------------------------------------------------------------------- foreign folders

#: What ``predict`` writes into its output folder (anything else there is not ours).
_OWN = {"picks.csv", "copick", "per_tomogram", "heatmaps", PREDICT_RECORD}


def _ours(out: Path) -> bool:
    rec = out / PREDICT_RECORD
    if not rec.is_file():
        return False
    try:
        return json.loads(rec.read_text()).get("written_by") == WRITER
    except (OSError, ValueError, AttributeError):
        return False


def _picks_hash(out: Path) -> str | None:
    p = out / "picks.csv"
    return _sha256_file(p) if p.is_file() else None


def _picks_unchanged(out: Path) -> bool:
    """Whether ``out/picks.csv`` is the file predict's record names (records without a hash: trusted)."""
    try:
        want = json.loads((out / PREDICT_RECORD).read_text()).get("picks_sha256")
    except (OSError, ValueError, AttributeError):
        return False
    return want is None or want == _picks_hash(out)


def foreign_files(out: str | os.PathLike, tomogram_paths: Sequence[str], user_id: str, session_id: str) -> list[str]:
    """Reasons why ``out`` holds files that ``predict`` did not write (empty: safe to write).

    Looks for: a ``picks.csv`` without a predict record (ground truth), a copick project
    (a config or ``ExperimentRuns`` at the top, or picks of other users/sessions, or
    tomograms, in ``out/copick``), tomogram files (the inputs among them), ``manifest.json`` or
    ``tomograms/`` (a dataset folder).
    """
    o = Path(out)
    if not o.exists():
        return []
    if not o.is_dir():
        return [f"{o} is a file, not a folder"]
    why: list[str] = []
    ours = _ours(o)
    if (o / "picks.csv").exists() and not ours:
        why.append(f"{o / 'picks.csv'} was not written by cryo3d predict (ground truth?)")
    elif (o / "picks.csv").is_file() and not _picks_unchanged(o):
        why.append(f"{o / 'picks.csv'} is not the one cryo3d predict wrote (its content changed since; ground truth?)")
    for marker in ("copick_config.json", "config.json", "ExperimentRuns", "manifest.json", "tomograms", "store"):
        if (o / marker).exists():
            why.append(f"{o / marker} belongs to a dataset or copick project")
    runs = o / "copick" / "ExperimentRuns"
    if runs.is_dir():
        others = [p for p in runs.glob("*/Picks/*.json") if not p.name.startswith(f"{user_id}_{session_id}_")]
        if others:
            why.append(f"{o / 'copick'} holds picks of other users or sessions (e.g. {others[0].relative_to(o)})")
        if any(p.name != "Picks" for p in runs.glob("*/*")):
            why.append(f"{o / 'copick'} holds more than picks (tomograms, segmentations: a copick project)")
    if (o / "copick").is_dir() and not ours and not why:
        why.append(f"{o / 'copick'} was not written by cryo3d predict")
    suffixes = MRC_SUFFIXES + NIFTI_SUFFIXES
    tomos = [p for p in o.iterdir() if p.name.lower().endswith(suffixes)]
    if tomos:
        why.append(f"{o} holds tomograms (e.g. {tomos[0].name})")
    outside = {str(Path(t).resolve().parent) for t in tomogram_paths}
    if str(o.resolve()) in outside and not tomos:
        why.append(f"{o} holds the input tomograms")
    return why


def check_output_folder(out: str | os.PathLike, tomogram_paths: Sequence[str], user_id: str, session_id: str,
                        force: bool = False) -> None:
    """Raise :class:`Cryo3DError` when ``out`` holds files predict did not write, unless ``force``."""
    if force:
        return
    why = foreign_files(out, tomogram_paths, user_id, session_id)
    if why:
        raise Cryo3DError(
            f"{out}: output folder holds files cryo3d predict did not write, which it would overwrite or mix "
            f"with: {'; '.join(why)}. Choose an empty or new folder (--out), or pass --force to write there anyway"
        )


def write_record(out: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Write ``out/predict.json`` atomically, marked as written by predict, with the hash of ``out/picks.csv``.

    The hash lets a later run tell its own ``picks.csv`` from one put there since (ground truth).
    """
    write_json_atomic(Path(out) / PREDICT_RECORD,
                      {"written_by": WRITER, **dict(record), "picks_sha256": _picks_hash(Path(out))})

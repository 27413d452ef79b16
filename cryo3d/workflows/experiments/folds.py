"""The data of an experiment: its source tomograms, k folds by tomogram, one dataset view per split.

Why split views: the bundle's patch store is keyed by geometry only and holds the
training tomograms of one split, so each fold gets its own dataset folder whose
``tomograms/`` and ``picks.csv`` are links to one source folder (nothing is copied).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from cryo3d.io.atomic import write_json_atomic
from cryo3d.io.tomogram import find_tomograms, tomogram_name
from cryo3d.synth import SynthConfig, synthesize
from cryo3d.workflows.bundle import raw_bundle_keys

#: Files of a dataset folder that a split view links to (when the source has them).
VIEW_ITEMS = ("tomograms", "picks.csv", "particles.yaml", "manifest.json")


def source_tomograms(
    dataset_dir: str | os.PathLike,
    n_synth: int | None = None,
    synth_shape: Sequence[int] = (184, 256, 256),
    synth_preset: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[str]:
    """Names of the tomograms of a dataset folder, simulating them first when it has none.

    The folder is the bundle's layout (``tomograms/`` + ``picks.csv``). An empty or
    missing one is filled with ``n_synth`` synthetic tomograms exactly as the bundle's
    ``ensure_data`` would (same preset, shape and seed; None: the shipped bundle's
    ``n_synth_tomograms`` and ``synth_preset``).

    Returns:
        Sorted tomogram names (file stems).
    """
    d = Path(dataset_dir)
    tdir = d / "tomograms"
    if not (tdir.is_dir() and any(tdir.iterdir())):
        bundle = raw_bundle_keys()
        preset = bundle["synth_preset"] if synth_preset is None else synth_preset
        n = int(bundle["n_synth_tomograms"] if n_synth is None else n_synth)
        cfg = SynthConfig.preset(preset, shape=tuple(int(s) for s in synth_shape), seed=seed)
        synthesize(d, n, cfg, progress=progress)
    if not (d / "picks.csv").exists():
        raise FileNotFoundError(f"{d / 'picks.csv'}: the dataset folder needs picks.csv (tomo,class,x,y,z in Angstrom)")
    names = [tomogram_name(p) for p in find_tomograms([str(tdir)])]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{tdir}: tomogram names must be unique, {dup} appear more than once")
    return sorted(names)


def make_folds(names: Sequence[str], k: int = 4, seed: int = 0) -> list[list[str]]:
    """Split tomograms into ``k`` folds: the validation tomograms of each fold.

    Every tomogram is in exactly one fold; fold sizes differ by at most one. The split is
    a seeded permutation of the sorted names, so it depends only on the set of names,
    ``k`` and ``seed``. Fold ``i`` trains on all other tomograms.

    Raises:
        ValueError: When ``k < 2``, names repeat, or there are fewer than ``k`` tomograms.
    """
    k = int(k)
    if k < 2:
        raise ValueError(f"k must be at least 2 for k-fold cross-validation, got {k}")
    uniq = sorted(set(names))
    if len(uniq) != len(names):
        raise ValueError(f"tomogram names must be unique, got {sorted(names)}")
    if len(uniq) < k:
        raise ValueError(
            f"{k}-fold cross-validation needs at least {k} tomograms (one per fold), got {len(uniq)}: {uniq}; "
            "lower --k or add tomograms (--n-synth for the built-in data, in a fresh --dataset-dir)"
        )
    order = np.random.default_rng(seed).permutation(len(uniq))
    return [sorted(uniq[i] for i in order[j::k]) for j in range(k)]


def check_folds(folds: Sequence[Sequence[str]], names: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``folds`` partition ``names`` (each in exactly one fold, none empty)."""
    seen: dict[str, int] = {}
    for i, f in enumerate(folds):
        if not f:
            raise ValueError(f"fold {i} has no validation tomogram")
        for n in f:
            if n in seen:
                raise ValueError(f"tomogram {n!r} is in folds {seen[n]} and {i}; each must be in exactly one")
            seen[n] = i
    unknown = sorted(set(seen) - set(names))
    missing = sorted(set(names) - set(seen))
    if unknown or missing:
        raise ValueError(f"folds do not partition the tomograms: unknown {unknown}, in no fold {missing}")


def ensure_folds(path: str | os.PathLike, names: Sequence[str], k: int = 4, seed: int = 0) -> list[list[str]]:
    """The folds stored at ``path`` (``folds.json``), made and stored first when absent.

    A stored file made from other tomograms, ``k`` or ``seed`` is an error (a run folder
    keeps one split so that resumed and added runs stay comparable).
    """
    p = Path(path)
    if p.exists():
        rec = json.loads(p.read_text())
        if rec.get("k") != int(k) or rec.get("seed") != int(seed) or sorted(rec.get("tomograms", [])) != sorted(names):
            raise ValueError(
                f"{p}: folds made with k={rec.get('k')}, seed={rec.get('seed')} of tomograms {rec.get('tomograms')}; "
                f"asked for k={k}, seed={seed} of {sorted(names)}; use another run folder"
            )
        folds = [list(f) for f in rec["folds"]]
        check_folds(folds, names)
        return folds
    folds = make_folds(names, k, seed)
    check_folds(folds, names)
    write_json_atomic(p, {"k": int(k), "seed": int(seed), "tomograms": sorted(names), "folds": folds})
    return folds


def split_view(source: str | os.PathLike, view: str | os.PathLike) -> Path:
    """A dataset folder for one split: links to ``source``'s tomograms and picks, its own store.

    The bundle cuts the patch store from the training tomograms of its split, so two
    splits of one folder need two stores; a view shares everything else. Idempotent; a
    link that points elsewhere is an error.
    """
    src, dst = Path(source).resolve(), Path(view)
    dst.mkdir(parents=True, exist_ok=True)
    for item in VIEW_ITEMS:
        s, d = src / item, dst / item
        if not s.exists():
            continue
        if d.is_symlink() or d.exists():
            if not d.is_symlink() or Path(os.readlink(d)).resolve() != s:
                raise ValueError(f"{d}: expected a link to {s}; this view belongs to another dataset, "
                                 "use another run folder")
            continue
        os.symlink(s, d, target_is_directory=s.is_dir())
    return dst


def fold_overrides(view: str | os.PathLike, val_tomograms: Sequence[str]) -> dict:
    """Bundle overrides that train on a split view, validating on ``val_tomograms``."""
    return {"dataset_dir": os.path.abspath(view), "val_tomograms": list(val_tomograms)}


def check_no_leak(view: str | os.PathLike, val_tomograms: Sequence[str]) -> None:
    """Raise ``ValueError`` if a patch store of the view holds a validation tomogram."""
    for man in sorted((Path(view) / "store").glob("*/manifest.json")):
        held = {t["name"] for t in json.loads(man.read_text()).get("tomograms", [])}
        leak = sorted(held & set(val_tomograms))
        if leak:
            raise ValueError(f"{man.parent}: validation tomograms {leak} are in the training store")

"""Held-out test tomograms beside the built-in training data: what the README's evaluate step scores.

Validation tomograms choose ``best.pt`` and its thresholds, so a figure on them is
optimistic, and the training tomograms are seen. The built-in data therefore gains
``dataset_dir/test/``: tomograms of the same simulator settings, drawn with another seed
(:data:`TEST_SEED_OFFSET` added to the training data's), never read by training or
validation. ``cryo3d predict`` + ``cryo3d evaluate`` on that folder is a figure on
tomograms the model never saw.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from cryo3d.particles import ParticleSet
from cryo3d.synth import SynthConfig, synthesize

logger = logging.getLogger("cryo3d")

#: Folder of the held-out test tomograms inside a built-in dataset folder.
TEST_DIR = "test"
#: Name prefix of the test tomograms (``test_000``, ...): never a training or validation name.
TEST_PREFIX = "test"
#: Added to the training data's simulator seed for the test tomograms (``scripts/eval_heldout.py``'s
#: default seed is the same for a run of seed 0, so its default tomograms are these).
TEST_SEED_OFFSET = 1000


def heldout_config(training_manifest: dict) -> SynthConfig:
    """The simulator settings of the test tomograms: the training data's, with the seed moved on.

    Args:
        training_manifest: the ``manifest.json`` of the built-in training data.

    Returns:
        A :class:`SynthConfig` equal to the training data's but for ``seed + TEST_SEED_OFFSET``.
    """
    known = {f.name for f in fields(SynthConfig)}
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in training_manifest["config"].items() if k in known}
    cfg["seed"] = int(cfg.get("seed", 0)) + TEST_SEED_OFFSET
    return SynthConfig(**cfg)


def ensure_heldout_set(dataset_dir: str | Path, n_test: int, progress: bool = True) -> Path | None:
    """Simulate ``n_test`` held-out test tomograms into ``dataset_dir/test/`` (resumable).

    Only for built-in data (``dataset_dir/manifest.json`` written by the simulator). The
    folder holds the simulator's layout (``tomograms/test_*.mrc``, ``picks.csv``,
    ``copick/``, ``manifest.json``). A folder that already holds at least ``n_test`` test
    tomograms of these settings is left as it is; a ``test/`` folder that is not the
    simulator's, or was made with other settings, is left alone with a warning.

    Args:
        dataset_dir: the built-in training data's folder.
        n_test: test tomograms to have (0: none).
        progress: show a progress bar.

    Returns:
        The test folder, or None when there is none to use.
    """
    d = Path(dataset_dir)
    man_path = d / "manifest.json"
    if n_test <= 0 or not man_path.exists():
        return None
    man = json.loads(man_path.read_text())
    if man.get("kind") != "cryo3d-synth":
        return None
    out = d / TEST_DIR
    cfg = heldout_config(man)
    old = _read_manifest(out / "manifest.json")
    if out.exists() and any(out.iterdir()):
        if old is None or old.get("kind") != "cryo3d-synth":
            logger.warning("%s holds files the simulator did not write: no held-out test tomograms made there", out)
            return None
        if old.get("config") != _jsonable(asdict(cfg)):
            logger.warning("%s holds test tomograms of other simulator settings than %s: left as they are (delete "
                           "the folder to simulate them anew)", out, man_path)
            return out
        if len(old.get("tomograms", [])) >= n_test:
            return out
    particles = ParticleSet.from_dict(man["particles"]) if "particles" in man else None
    logger.info("simulating %d held-out test tomograms (seed %d) into %s: never trained or validated on",
                n_test, cfg.seed, out)
    synthesize(out, n_test, cfg, particles, prefix=TEST_PREFIX, progress=progress)
    return out


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _jsonable(x: Any) -> Any:
    """``x`` as the simulator's manifest records it (tuples as lists)."""
    return json.loads(json.dumps(x))

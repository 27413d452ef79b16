"""The model zoo's ``models/model.pt``: training exports its best checkpoint there, inference looks there.

MONAI bundles keep their weights in ``<bundle_root>/models/model.pt`` (``ckpt_path``). For
cryo3d's bundle a training run's ``output_dir`` is its ``bundle_root``: when training ends,
:func:`export_model` copies ``checkpoints/best.pt`` (the network and what ``predict`` needs:
classes, spacing, patch, thresholds) to ``models/model.pt`` atomically; inference without
``--checkpoint`` resolves it with :func:`bundle_checkpoint`, and stops with one line naming
what is missing when there is none.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cryo3d.io.atomic import atomic_path

__all__ = ["MODEL_FILE", "bundle_checkpoint", "export_model"]

#: Where a bundle keeps its weights, relative to ``bundle_root`` (the model zoo's convention).
MODEL_FILE = Path("models") / "model.pt"


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def export_model(ckpt_dir: str | os.PathLike, ckpt_path: str | os.PathLike) -> str | None:
    """Copy ``<ckpt_dir>/best.pt`` to ``ckpt_path`` (``<bundle_root>/models/model.pt``), atomically.

    Args:
        ckpt_dir (path-like): The training run's checkpoint folder.
        ckpt_path (path-like): Destination, normally ``<output_dir>/models/model.pt``.

    Returns:
        str or None: The path written; None when there is no ``best.pt`` yet (no validation
        ran) or on a rank other than 0 of a distributed run.
    """
    best = Path(ckpt_dir) / "best.pt"
    if _rank() != 0 or not best.is_file():
        return None
    dest = Path(ckpt_path)
    with atomic_path(dest) as tmp:
        shutil.copyfile(best, tmp)
    print(f"exported {best} to {dest} (the bundle's model; inference reads it without --checkpoint)")
    return str(dest)


def bundle_checkpoint(checkpoint: str | os.PathLike | None, bundle_root: str | os.PathLike) -> str:
    """The checkpoint bundle inference loads.

    ``checkpoint`` when given (``--checkpoint``; the default is ``ckpt_path``, i.e.
    ``<bundle_root>/models/model.pt``); when that file does not exist, a training run's
    ``<bundle_root>/checkpoints/best.pt`` (a run stopped before it exported its model).

    Args:
        checkpoint (path-like or None): The requested checkpoint file.
        bundle_root (path-like): The bundle's root: a training ``output_dir`` or a bundle folder.

    Returns:
        str: An existing checkpoint file.

    Raises:
        SystemExit: Neither exists: one line naming the files looked for and what to do
            (``monai.bundle run`` would otherwise print a long traceback).
    """
    root = Path(bundle_root)
    default = root / MODEL_FILE
    want = Path(checkpoint) if checkpoint not in (None, "") else default
    if want.is_file():
        return str(want)
    fallback = root / "checkpoints" / "best.pt"
    if want == default and fallback.is_file():
        return str(fallback)
    looked = f"{want}" + (f" nor {fallback}" if want == default else "")
    raise SystemExit(
        f"cryo3d bundle inference: error: no checkpoint: neither {looked} exists; train first (training exports "
        f"<output_dir>/{MODEL_FILE.as_posix()}), pass --bundle_root <training output_dir>, or --checkpoint FILE"
        if want == default else
        f"cryo3d bundle inference: error: checkpoint {want} does not exist; expected a checkpoint written by the "
        "training bundle (models/model.pt, checkpoints/best.pt)"
    )

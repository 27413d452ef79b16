"""Checkpoints that survive a kill and load as data.

* :func:`save_checkpoint`: ``torch.save`` to a temporary file beside the destination,
  ``fsync``, rename over the destination, ``fsync`` the folder. A reader (or a resumed run)
  sees the old file or the new one, never half of one.
* :func:`load_checkpoint`: ``torch.load(weights_only=True)`` with one clear message for
  anything that is not a checkpoint (missing, a folder, empty, random bytes, a pickle
  that asks for Python objects: its payload is never run).
* :class:`AtomicCheckpointSaver`: the training bundle's checkpoint handler (every epoch's
  ``last_checkpoint_epoch=N.pt`` and the ``best.pt`` of the key metric).
* :class:`CheckpointResumer`: the bundle's resume handler (loads with ``weights_only=True``,
  restores the saver's best metric).

Why not MONAI's ``CheckpointSaver``: it writes through ignite's ``Checkpoint``, which
deletes the previous file *before* writing the new one and (in MONAI's ``_DiskSaver``)
writes in place, so a kill during a save leaves a 0-byte or no checkpoint; and its best
metric is not part of what a resumed run restores, so the first validation after a
resume always overwrote ``best.pt``. The handlers here keep ignite's event API and
MONAI's ``save_dict`` convention (any objects with ``state_dict``) and change only
the order of writes and what is remembered.
"""

from __future__ import annotations

import logging
import os
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from ignite.engine import Events

from cryo3d.errors import Cryo3DError
from cryo3d.io.atomic import atomic_path

logger = logging.getLogger("cryo3d")

#: The key under which :class:`AtomicCheckpointSaver` stores its own state in a checkpoint.
SAVER_KEY = "checkpoint_saver"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:  # pragma: no cover  (platforms without directory handles)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def save_checkpoint(obj: Mapping[str, Any], path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically: temp file, fsync, rename, fsync the folder."""
    p = Path(path)
    with atomic_path(p) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    _fsync_dir(p.parent)


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a whole ``torch.save`` zip file (its central directory is readable)."""
    try:
        with zipfile.ZipFile(path) as z:
            return len(z.namelist()) > 0
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _is_pickle(p: Path) -> bool:
    """Whether ``p`` (or the ``data.pkl`` of a torch zip) parses as a pickle: opcodes read, nothing built or run.

    Tells a crafted pickle that the safe loader refuses from bytes that are no pickle at all.
    """
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                names = [n for n in z.namelist() if n.endswith("data.pkl")]
                if not names:
                    return False
                with z.open(names[0]) as f:
                    for _ in pickletools.genops(f):
                        pass
        else:
            with open(p, "rb") as f:
                for _ in pickletools.genops(f):  # stops at the first pickle's STOP
                    pass
    except Exception:  # noqa: BLE001 - anything that does not parse is no pickle
        return False
    return True


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint as data (``weights_only=True``): tensors and plain Python values only.

    Raises:
        Cryo3DError: One line naming the file and what is wrong: not found, a folder, empty, not a
            PyTorch checkpoint, or a pickle that asks to build Python objects or that loading as
            data does not accept (refused unrun: a cryo3d checkpoint holds only tensors and plain values).
    """
    p = Path(path)
    hint = "expected a checkpoint written by the cryo3d training bundle (best.pt, last_checkpoint_epoch=N.pt)"
    if not p.exists():
        raise Cryo3DError(f"{p}: checkpoint not found; {hint}")
    if p.is_dir():
        raise Cryo3DError(f"{p}: is a folder; {hint}")
    if p.stat().st_size == 0:
        raise Cryo3DError(f"{p}: checkpoint is empty (0 bytes); {hint}")
    try:
        with warnings.catch_warnings():  # a crafted pickle's protocol: the refusal below says all there is
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ck = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        text = str(exc)
        name = re.search(r"GLOBAL ([\w.]+)", text)
        if name or "Unsupported global" in text or "Unsupported class" in text:
            raise Cryo3DError(
                f"{p}: refused: the file asks to build Python objects"
                f"{f' ({name.group(1)})' if name else ''} that a checkpoint does not need (it may run code); "
                f"cryo3d refuses to unpickle code, and nothing in it was run. {hint}"
            ) from None
        if ("Weights only load failed" in text or "WeightsUnpickler" in text) and _is_pickle(p):
            op = re.search(r"Unsupported operand (\d+)", text)
            what = f" (pickle opcode {int(op.group(1))} {bytes([int(op.group(1))])!r})" if op else ""
            raise Cryo3DError(
                f"{p}: refused: a pickle that loading as data (weights_only=True) does not accept{what}; cryo3d "
                f"refuses to unpickle code, and nothing in it was run. {hint}"
            ) from None
        raise Cryo3DError(f"{p}: not a PyTorch checkpoint ({type(exc).__name__}); {hint}") from None
    if not isinstance(ck, dict):
        raise Cryo3DError(f"{p}: holds a {type(ck).__name__}, not a checkpoint mapping; {hint}")
    return ck


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        return obj.module
    return obj


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _epoch_of(p: Path) -> int:
    m = re.findall(r"(\d+)", p.stem)
    return int(m[-1]) if m else -1


class AtomicCheckpointSaver:
    """Save ``save_dict`` every ``save_interval`` epochs and/or whenever the key metric improves.

    A drop-in for the part of MONAI's ``CheckpointSaver`` the bundle uses (see the module
    docstring for why it is not used). Files: ``<file_prefix>_checkpoint_epoch=<N>.pt``
    (the newest ``n_saved`` kept; older ones, also those of earlier runs, are removed only
    after the new one is complete) and ``key_metric_filename`` (``best.pt``), replaced only
    by a strictly better metric. The best metric is part of :meth:`state_dict` (put the
    saver into the resume checkpoint's ``save_dict``) and is also read back from an
    existing ``best.pt``, so ``best.pt`` only ever improves across kills and resumes.
    Only rank 0 writes under ``torch.distributed``.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: objects with ``state_dict()`` (network, optimizer, trainer, ...), as for MONAI.
        file_prefix: prefix of the interval files (``last``).
        save_interval: save every this many epochs (0: never).
        n_saved: interval files kept.
        save_key_metric: save ``key_metric_filename`` when the engine's key metric improves.
        key_metric_name: metric name in ``engine.state.metrics`` (default: the engine's key metric).
        key_metric_filename: file name of the best checkpoint.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        file_prefix: str = "",
        save_interval: int = 0,
        n_saved: int = 1,
        save_key_metric: bool = False,
        key_metric_name: str | None = None,
        key_metric_filename: str = "best.pt",
    ) -> None:
        if not save_dict:
            raise Cryo3DError("AtomicCheckpointSaver: save_dict is empty; expected objects with state_dict()")
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.file_prefix = file_prefix
        self.save_interval = int(save_interval)
        self.n_saved = max(1, int(n_saved))
        self.save_key_metric = save_key_metric
        self.key_metric_name = key_metric_name
        self.key_metric_filename = key_metric_filename
        self.best_metric: float | None = None
        self.best_epoch: int = -1
        self._best_file_read = False
        self._engine: Any = None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """``best_metric`` and ``best_epoch`` (plain types: loads with ``weights_only=True``)."""
        self._read_best_file()
        return {"best_metric": None if self.best_metric is None else float(self.best_metric),
                "best_epoch": int(self.best_epoch)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the best metric (keeping the better of it and an existing ``best.pt``'s)."""
        m = state.get("best_metric")
        if m is not None and (self.best_metric is None or float(m) > self.best_metric):
            self.best_metric, self.best_epoch = float(m), int(state.get("best_epoch", -1))
        self._sync_engine()

    def _sync_engine(self) -> None:
        st = getattr(self._engine, "state", None)
        if st is not None and self.best_metric is not None:
            st.best_metric, st.best_metric_epoch = self.best_metric, self.best_epoch

    def _read_best_file(self) -> None:
        """Take the metric stored in an existing best file into account (once)."""
        if self._best_file_read or not self.save_key_metric:
            return
        self._best_file_read = True
        p = self.save_dir / self.key_metric_filename
        if not p.exists():
            return
        try:
            ck = load_checkpoint(p)
        except Cryo3DError as e:
            logger.warning("%s; it will be replaced by the next validated model", e)
            return
        st = ck.get(SAVER_KEY) or {}
        m = st.get("best_metric")
        if m is None and isinstance(ck.get("cryo3d"), Mapping):
            m = ck["cryo3d"].get("val_score")  # a best.pt written before this saver existed
        if m is not None and (self.best_metric is None or float(m) > self.best_metric):
            self.best_metric, self.best_epoch = float(m), int(st.get("best_epoch", -1))

    # ------------------------------------------------------------------ events
    def attach(self, engine: Any) -> None:
        """Attach to an ignite engine (the trainer for interval saves, the evaluator for the best)."""
        self._engine = engine
        self._remove_stale_temporaries()
        if self.save_key_metric:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.metrics_completed)
        if self.save_interval > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.interval_completed)

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of a save that was killed (``.<name>.<hex>.tmp.pt``)."""
        if _rank() != 0 or not self.save_dir.is_dir():
            return
        names = [f"{self.file_prefix}_checkpoint_epoch="] if self.save_interval > 0 else []
        if self.save_key_metric:
            names.append(self.key_metric_filename)
        for p in self.save_dir.glob(".*.tmp.pt"):
            if any(p.name.startswith("." + n) for n in names):
                p.unlink(missing_ok=True)

    def _checkpoint(self) -> dict:
        out = {k: _unwrap(v).state_dict() for k, v in self.save_dict.items()}
        out[SAVER_KEY] = self.state_dict()
        return out

    def interval_completed(self, engine: Any) -> None:
        """Write ``<prefix>_checkpoint_epoch=<N>.pt``, then remove the older ones."""
        if _rank() != 0:
            return
        epoch = int(engine.state.epoch)
        path = self.save_dir / f"{self.file_prefix}_checkpoint_epoch={epoch}.pt"
        save_checkpoint(self._checkpoint(), path)
        olds = sorted(self.save_dir.glob(f"{self.file_prefix}_checkpoint_epoch=*.pt"), key=_epoch_of)
        keep = {p.name for p in olds[-self.n_saved:]} | {path.name}
        for p in olds:
            if p.name not in keep:
                p.unlink(missing_ok=True)

    def metrics_completed(self, engine: Any) -> None:
        """Write the best file when the key metric beats every earlier one (strictly)."""
        name = self.key_metric_name or getattr(engine.state, "key_metric_name", None)
        if name is None:
            raise Cryo3DError("AtomicCheckpointSaver: no key_metric_name and the engine has no key metric")
        metric = float(engine.state.metrics[name])
        self._read_best_file()
        if self.best_metric is not None and not metric > self.best_metric:
            self._sync_engine()
            return
        self.best_metric, self.best_epoch = metric, int(engine.state.epoch)
        if _rank() == 0:
            save_checkpoint(self._checkpoint(), self.save_dir / self.key_metric_filename)
        self._sync_engine()


class CheckpointResumer:
    """Resume a run from a checkpoint: load it as data and restore every object of ``load_dict``.

    Like MONAI's ``CheckpointLoader`` (attached to the trainer's ``STARTED`` event, keeps the
    trainer's configured ``max_epochs``), but loads through :func:`load_checkpoint` (one clear
    message for a bad file) and treats ``optional`` keys missing from an older checkpoint as
    a warning (a checkpoint written before the saver's state was saved still resumes).

    Args:
        load_path: the checkpoint (``None``: nothing to resume; the handler does nothing).
        load_dict: name -> object with ``load_state_dict``.
        map_location: as for ``torch.load``.
        optional: keys that may be missing from the checkpoint.
    """

    def __init__(self, load_path: str | os.PathLike | None, load_dict: Mapping[str, Any], map_location: Any = "cpu",
                 optional: tuple[str, ...] = ("best_saver",)) -> None:
        self.load_path = load_path
        self.load_dict = dict(load_dict)
        self.map_location = map_location
        self.optional = tuple(optional)

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Any) -> None:
        if self.load_path is None:
            return
        ck = load_checkpoint(self.load_path, self.map_location)
        missing = [k for k in self.load_dict if k not in ck]
        required = [k for k in missing if k not in self.optional]
        if required:
            raise Cryo3DError(
                f"{self.load_path}: checkpoint has no {required}; expected the keys {sorted(self.load_dict)} "
                "of the training bundle's last_checkpoint_epoch=N.pt"
            )
        if missing:
            logger.warning("%s: no %s in this (older) checkpoint; starting them afresh", self.load_path, missing)
        prior_max_epochs = engine.state.max_epochs
        for k, obj in self.load_dict.items():
            if k in ck:
                _unwrap(obj).load_state_dict(ck[k])
        if prior_max_epochs is not None and engine.state.epoch > prior_max_epochs:
            raise Cryo3DError(
                f"{self.load_path}: the checkpoint is at epoch {engine.state.epoch}, past max_epochs "
                f"{prior_max_epochs}; raise max_epochs to train on"
            )
        engine.state.max_epochs = prior_max_epochs
        logger.info("resumed from %s (epoch %s)", self.load_path, engine.state.epoch)

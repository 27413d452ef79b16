"""Atomic writes: a reader never sees half a file, an interrupted writer leaves the old one.

Every writer of the project (tomograms, picks, manifests, reports, study exports) goes
through :func:`atomic_path` or the two helpers built on it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np

#: ``errno`` values of a full disk or an exhausted quota.
_DISK_FULL = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)


def file_suffix(path: str | os.PathLike) -> str:
    """Lower-case file ending, ``.nii.gz`` counted as one."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return p.suffix.lower()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True, keep_suffix: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    The temporary file lives in the destination folder (so ``os.replace`` is an atomic
    rename on the same file system), has a unique name (concurrent writers do not collide)
    and keeps the destination's ending (some writers, nibabel for one, choose compression
    by it). On an exception it is removed and the destination is left as it was. Missing
    parent folders are created. A full disk or quota (``ENOSPC``, ``EDQUOT``) is re-raised
    as an ``OSError`` naming ``path`` (a failed ``write`` names no file).

    Args:
        path (path-like): Final destination.
        overwrite (bool): If False and ``path`` exists, raise ``FileExistsError`` before writing.
        keep_suffix (bool): End the temporary name with the destination's ending; False ends it in
            ``.partial`` (for folders whose readers glob by ending, e.g. copick's ``Picks/*.json``).
    """
    dest = Path(path)
    if dest.is_dir():
        raise IsADirectoryError(f"{dest}: is a folder, expected a file path to write")
    if not overwrite and dest.exists():
        raise FileExistsError(f"{dest}: file exists (pass overwrite=True to replace it)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    end = file_suffix(dest) if keep_suffix else ".partial"
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp{end}"
    try:
        yield str(tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if exc.errno in _DISK_FULL:  # a write() names no file: name the one the user asked for
            raise OSError(exc.errno, f"{exc.strerror or os.strerror(exc.errno)} (disk full or quota exceeded) while "
                          "writing it; the file was left as it was: free some space or write elsewhere",
                          str(dest)) from None
        if exc.filename is not None and str(exc.filename) == str(tmp):  # name the file the user asked for
            raise type(exc)(exc.errno, exc.strerror, str(dest)) from None
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str, durable: bool = False, keep_suffix: bool = True) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically.

    Args:
        durable (bool): Also ``fsync`` the file before the rename (and the folder after it), so
            even a crash of the machine leaves the old or the new file, never an empty one.
        keep_suffix (bool): See :func:`atomic_path`.
    """
    with atomic_path(path, keep_suffix=keep_suffix) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
    if durable:
        fd = os.open(Path(path).parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def json_default(x: Any) -> Any:
    """``json.dumps`` fallback for NumPy scalars and arrays and tuples."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (NumPy values converted) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent, default=json_default) + "\n")

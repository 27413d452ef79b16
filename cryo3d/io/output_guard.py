"""Output paths that cannot eat inputs, runs that do not collide, temporaries that do not pile up.

The project's rule: an output path never deletes or overwrites a file that the command did
not write, unless ``--overwrite`` names it. The pieces every command uses for it:

* :func:`refuse_input_as_output`: an output path that is one of the command's inputs (or a
  folder holding one) is refused before any work.
* :func:`output_lock`: an exclusive ``fcntl.flock`` on the output folder, so a
  second run into the same folder is refused with one line instead of both "succeeding".
* :func:`remove_stale_temps`: temporary siblings left by killed runs (``.NAME.tmp-<hex>``)
  are removed by the next run, unless a live run holds them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from cryo3d.errors import Cryo3DError

__all__ = ["refuse_input_as_output", "output_lock", "hold_output", "release_output", "hold_temp",
           "remove_stale_temps"]

#: Folders this process holds with :func:`hold_output`: resolved path -> open descriptor.
_HELD: dict[str, int] = {}

def _resolved(p: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(p)))).resolve()


def refuse_input_as_output(command: str, outputs: Iterable[tuple[str, str | os.PathLike | None]],
                           inputs: Iterable[str | os.PathLike | None], holding: bool = False) -> None:
    """Raise :class:`Cryo3DError` when an output path is one of the inputs (or, with ``holding``, a folder above one).

    Args:
        command (str): The command's name, for the message.
        outputs: ``(option, path)`` pairs; ``None`` paths (option not given) are skipped.
        inputs: Input files or folders; ``None`` entries are skipped.
        holding (bool): Also refuse an output folder that holds an input.

    Raises:
        Cryo3DError: Naming the option, the path and the input it would overwrite.
    """
    ins = [(i, _resolved(i)) for i in inputs if i not in (None, "", "-")]
    for option, out in outputs:
        if out in (None, "", "-"):
            continue
        o = _resolved(out)
        for given, i in ins:
            if o == i or (holding and o in i.parents):
                raise Cryo3DError(
                    f"{option} {out} is {'the input' if o == i else 'a folder holding the input'} "
                    f"{given}; writing there would overwrite it. Give another output path")


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold an exclusive lock on the folder ``folder`` (created if missing) while the block runs.

    The lock is a ``flock`` on the folder itself, so nothing is written into it (a folder that
    turns out to be the user's is left as it was); the kernel drops it when the process dies.

    Raises:
        Cryo3DError: Another run (of any cryo3d command) holds the folder now.
    """
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Cryo3DError(f"{d} is in use by another cryo3d {command} run; wait for it to finish or choose "
                              "another output folder") from None
        yield d
    finally:
        os.close(fd)  # closing releases the lock


def hold_output(folder: str | os.PathLike, command: str) -> str:
    """Take :func:`output_lock`'s lock on ``folder`` and keep it until :func:`release_output` (or
    the process ends): for a run whose steps are not one ``with`` block, such as a MONAI bundle's
    ``initialize`` and ``finalize``. Holding a folder this process holds already is a no-op.

    Returns:
        ``folder`` as given (so a bundle expression can pass it on).

    Raises:
        Cryo3DError: Another process holds the folder now.
    """
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    key = str(d.resolve())
    if key in _HELD:
        return str(folder)
    fd = os.open(d, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Cryo3DError(f"{d} is in use by another cryo3d {command} run; wait for it to finish or choose "
                          "another output folder") from None
    _HELD[key] = fd
    return str(folder)


def release_output(folder: str | os.PathLike) -> None:
    """Give back a folder taken with :func:`hold_output` (nothing when this process does not hold it)."""
    fd = _HELD.pop(str(Path(folder).resolve()), None)
    if fd is not None:
        os.close(fd)


def hold_temp(path: str | os.PathLike) -> int:
    """Lock a temporary folder as held by this process; returns the descriptor (close it to release)."""
    fd = os.open(Path(path), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def remove_stale_temps(dest: str | os.PathLike, kinds: tuple[str, ...] = ("tmp", "old")) -> list[str]:
    """Remove ``.NAME.<kind>-<hex>`` siblings of ``dest`` that no live run holds.

    Only names of exactly that pattern (this destination's own temporaries) are touched; a
    temporary locked with :func:`hold_temp` by a live process is left alone.

    Returns:
        list of str: The folders removed.
    """
    d = Path(dest)
    pat = re.compile(rf"^\.{re.escape(d.name)}\.(?:{'|'.join(kinds)})-[0-9a-f]{{10}}$")
    removed = []
    if not d.parent.is_dir():
        return removed
    for p in d.parent.iterdir():
        if not pat.match(p.name) or not p.is_dir() or p.is_symlink():
            continue
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live run writes there
        finally:
            os.close(fd)
        shutil.rmtree(p, ignore_errors=True)
        removed.append(str(p))
    return removed

"""Picks files as the CZII challenge shipped them, read through copick with no rename.

copick names a picks file ``Picks/<user>_<session>_<object>.json`` and takes the three
selectors from that name. The challenge's training data (and every copy of it) holds
``ExperimentRuns/<run>/Picks/<object>.json`` instead, with ``user_id`` (``curation``) and
``session_id`` (``0``) only inside the JSON; copick's listing then fails with an
``IndexError``. :class:`ShippedPicksView` is a read-only view of copick's file system that
shows each such file under the name copick expects (from the JSON's own fields) and reads
the real file behind it. Nothing in the project is renamed or written: writing to, or
removing, a mapped name is refused.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from copick.util.reconnecting_fs import ReconnectingFileSystem
from fsspec import AbstractFileSystem

__all__ = ["ShippedPicksView", "install_shipped_picks_view"]

log = logging.getLogger(__name__)


def _shipped_name(stem: str) -> bool:
    """A picks file name copick cannot split into user, session and object."""
    return len(stem.split("_")) < 3


class ShippedPicksView(ReconnectingFileSystem):
    """copick's file system, with ``Picks/<object>.json`` shown as ``Picks/<user>_<session>_<object>.json``.

    Args:
        inner (ReconnectingFileSystem): The file system copick opened for a root (``fs_overlay`` or
            ``fs_static``); every other operation goes to it unchanged.
    """

    def __init__(self, inner: ReconnectingFileSystem):
        AbstractFileSystem.__init__(self, skip_instance_cache=True)
        self._url, self._fs_args, self._fs = inner._url, inner._fs_args, inner._fs
        self._root_ref = inner._root_ref
        self._aliases: dict[str, str] = {}  # copick's name -> the file as shipped

    def _alias_of(self, path: str) -> str | None:
        """copick's name for a shipped ``Picks/<object>.json`` (from its JSON), or None to hide it."""
        folder, _, name = path.rpartition("/")
        try:
            with self._fs.open(path, "r") as fh:
                doc = json.load(fh)
            user, session = doc.get("user_id"), doc.get("session_id")
            obj = doc.get("pickable_object_name") or name.removesuffix(".json")
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("%s: not a readable copick picks file (%s); left out", path, exc)
            return None
        if not user or session is None or "_" in f"{user}{session}":
            log.warning("%s: copick picks without a usable user_id/session_id (%r, %r); left out", path, user, session)
            return None
        return f"{folder}/{user}_{session}_{obj}.json"

    def glob(self, path: str, **kwargs: Any) -> Any:
        """copick's listing, with shipped picks files under the names copick expects."""
        found = self._fs.glob(path, **kwargs)
        if "/Picks/" not in path or not isinstance(found, list):
            return found
        out, real = [], set(found)
        for p in found:
            stem = p.rpartition("/")[2].removesuffix(".json")
            if not p.endswith(".json") or not _shipped_name(stem):
                out.append(p)
                continue
            alias = self._alias_of(p)
            if alias is not None and alias not in real:  # a renamed copy next to it wins
                self._aliases[alias] = p
                out.append(alias)
        return out

    def _real(self, path: str, mode: str = "rb") -> str:
        path = self._strip_protocol(path)
        if path in self._aliases:
            if any(c in mode for c in "wa+x"):
                raise PermissionError(f"{self._aliases[path]}: picks as shipped are read-only; cryo3d never "
                                      "rewrites them (write under another user or session)")
            return self._aliases[path]
        return path

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        """Open a file; a mapped name opens the shipped file (reading only)."""
        return self._fs.open(self._real(path, mode), mode, **kwargs)

    def exists(self, path: str, **kwargs: Any) -> bool:
        return self._strip_protocol(path) in self._aliases or self._fs.exists(path, **kwargs)

    def rm(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(path, str):
            self._real(path, "w")
        return self._fs.rm(path, *args, **kwargs)


def install_shipped_picks_view(root: Any) -> Any:
    """Give a copick filesystem root the read-only view of shipped picks names; returns the root.

    Roots of other backends (the data portal, ...) and copick versions without
    ``ReconnectingFileSystem`` are returned unchanged.
    """
    overlay = getattr(root, "fs_overlay", None)
    if not isinstance(overlay, ReconnectingFileSystem) or isinstance(overlay, ShippedPicksView):
        return root
    static = getattr(root, "fs_static", None)
    view = ShippedPicksView(overlay)
    view._root_ref = overlay._root_ref
    root.fs_overlay = view
    if static is overlay:
        root.fs_static = view
    elif isinstance(static, ReconnectingFileSystem):
        root.fs_static = ShippedPicksView(static)
    return root

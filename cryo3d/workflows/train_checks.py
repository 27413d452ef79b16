"""What ``cryo3d train`` checks before the bundle runs, and its errors made one line after.

A training run fails late and deep: MONAI evaluates ``$@trainer.run()`` and wraps whatever
went wrong inside in ``RuntimeError('Failed to evaluate ConfigExpression: ...')``, a
traceback of a hundred lines. So :func:`check_train_settings` checks what can be known
before the run (the network's name and arguments, the output folder, the pretrained
weights, boolean keys, the checkpoint to resume from), and :func:`unwrap_bundle_error` takes an expected failure (one
of the project's own errors, a ``ValueError`` or an ``OSError`` such as a full disk) out of
MONAI's wrapping so the CLI prints it as one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from cryo3d.errors import Cryo3DError
from cryo3d.networks import check_network_choice
from cryo3d.options import CODE_PREFIXES, parse_flag
from cryo3d.workflows.bundle import raw_bundle_keys

#: How MONAI's config items wrap an error raised while evaluating or instantiating them.
MONAI_WRAPPERS = ("Failed to evaluate", "Failed to instantiate")
#: ``pretrained`` values that mean "no file" (see :mod:`cryo3d.pretrained`).
NO_FILE_WORDS = ("", "auto", "none", "null", "off")


def _is_code(value: Any) -> bool:
    """Whether a config file's value is MONAI code (evaluated, so not checkable as data here)."""
    return isinstance(value, str) and value.lstrip()[:1] in CODE_PREFIXES


def _raw_item(node: Any, key: str) -> Any:
    """The raw value at a ``#`` key path of a config (``train#dataloader#shuffle``), or None.

    A config may spell a path in one key (``train#sampler: {shuffle: true}``, as
    ``multi_gpu_train.yaml`` does), so every split of the path is tried.
    """
    parts = key.split("#")
    for n in range(len(parts), 0, -1):
        head, rest = "#".join(parts[:n]), "#".join(parts[n:])
        if isinstance(node, Mapping) and head in node:
            child = node[head]
        elif isinstance(node, list) and head.isdigit() and int(head) < len(node):
            child = node[int(head)]
        else:
            continue
        found = child if not rest else _raw_item(child, rest)
        if found is not None:
            return found
    return None


def check_flags(raw: Mapping[str, Any], overrides: MutableMapping[str, Any]) -> None:
    """Read every override of a boolean config key strictly (:func:`cryo3d.options.parse_flag`).

    A top-level key is checked (the config itself reads it strictly, as it does for
    ``python -m monai.bundle run``); a nested component argument (``train#dataloader#shuffle``)
    is replaced by the boolean, as MONAI would hand the string ``'false'`` to the component.

    Raises:
        Cryo3DError: a value that is not a boolean word, naming the key.
    """
    for key, value in list(overrides.items()):
        if isinstance(_raw_item(raw, key), bool):
            flag = parse_flag(value, key)
            if "#" in key:
                overrides[key] = flag


def check_output_folder(path: Any, field: str) -> None:
    """Refuse an output folder that cannot be written before any work is done.

    Args:
        path: the folder (it may not exist yet: its nearest existing parent must be writable).
        field: the key, for the message.

    Raises:
        Cryo3DError: naming the key, the folder and what is wrong.
    """
    p = Path(os.fspath(path))
    if p.exists() and not p.is_dir():
        raise Cryo3DError(f"{field}: {p} is a file; expected a folder for the run's checkpoints, logs and report")
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise Cryo3DError(f"{field}: {p}: {probe} is a file, not a folder; expected a folder path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise Cryo3DError(f"{field}: {probe} is not writable (read-only or permission denied); "
                          "choose a folder you can write to")


def check_pretrained(value: Any) -> None:
    """Refuse a ``pretrained`` value that names no readable weights file, before the run.

    Raises:
        Cryo3DError: a missing file, or one that is not a cryo3d weights file.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in NO_FILE_WORDS):
        return
    if not isinstance(value, (str, os.PathLike)):
        raise Cryo3DError(f"pretrained: expected 'auto', a weights file or none, got {value!r}")
    p = Path(os.fspath(value))
    if not p.is_file():
        raise Cryo3DError(f"pretrained: {p}: no such weights file (give a file from scripts/pretrain.py, "
                          "'auto' or none)")
    from cryo3d.pretrained import read_weights  # torch: paid only when a file is given

    try:
        read_weights(p)
    except ValueError as e:
        raise Cryo3DError(f"pretrained: {e}") from None


def check_resume(output_dir: Any, merged: Mapping[str, Any]) -> None:
    """Refuse, before the run, a checkpoint to resume from that cannot be loaded or was made for another network.

    The run resumes from the newest complete ``output_dir/checkpoints/last*.pt``
    (:func:`cryo3d.workflows.run.latest_checkpoint`); it is loaded as data here, and the
    network it records (name, ``network_overrides``, ``ds_factor``) is compared with the
    run's.

    Args:
        output_dir: the run folder.
        merged: the run's top-level settings (config with the command line's keys).

    Raises:
        Cryo3DError: naming the checkpoint and what does not fit.
    """
    from cryo3d.checkpoints import load_checkpoint
    from cryo3d.workflows.run import latest_checkpoint

    path = latest_checkpoint(Path(os.fspath(output_dir)) / "checkpoints")
    if path is None:
        return
    made = (load_checkpoint(path).get("cryo3d") or {}).get("network") or {}
    want: dict[str, Any] = {"name": merged.get("network_name"), "ds_factor": merged.get("ds_factor")}
    if isinstance(merged.get("network_overrides"), Mapping):
        want.update(merged["network_overrides"])

    def norm(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    for key, value in want.items():
        if key in made and not _is_code(value) and norm(made[key]) != norm(value):
            field = {"name": "network_name", "ds_factor": "ds_factor"}.get(key, f"network_overrides#{key}")
            raise Cryo3DError(f"{path}: the run would resume from this checkpoint, made with {field} "
                              f"{made[key]!r}, but {field} is {value!r} now; train with the settings it was made "
                              "with, or choose a new --output-dir")


def check_train_settings(config_files: Sequence[str], overrides: MutableMapping[str, Any]) -> None:
    """Check a training run's settings before MONAI runs it (``overrides`` may be changed in place).

    Args:
        config_files: the bundle config files of the run.
        overrides: the command line's top-level (and ``#`` path) keys.

    Raises:
        Cryo3DError: one line naming the key and what was expected: an unknown
            ``network_name``, a ``network_overrides`` key the network does not take, an
            unwritable ``output_dir``, a ``pretrained`` that is not a weights file, a boolean
            key that is not a boolean, a checkpoint to resume from that is unreadable or was
            made for another network.
    """
    raw = raw_bundle_keys(config_files)
    check_flags(raw, overrides)
    merged = {**raw, **{k: v for k, v in overrides.items() if "#" not in k}}
    name, net_over = merged.get("network_name"), merged.get("network_overrides")
    if "network_name" not in merged and "network_overrides" in merged:
        name = None  # set by a config file this check cannot see; checked when the network is built
        net_over = None
    if ("network_name" in merged or "network_overrides" in merged) and not _is_code(name) and not _is_code(net_over):
        try:
            check_network_choice(name, net_over)
        except ValueError as e:
            raise Cryo3DError(str(e)) from None
    if merged.get("output_dir") is not None and not _is_code(merged["output_dir"]):
        check_output_folder(merged["output_dir"], "output_dir")
        check_resume(merged["output_dir"], merged)
    if not _is_code(merged.get("pretrained")):
        check_pretrained(merged.get("pretrained"))


def unwrap_bundle_error(error: BaseException, output_dir: Any = None) -> BaseException:
    """The expected failure inside MONAI's ``Failed to evaluate ...`` wrapping, or ``error`` itself.

    Follows the ``RuntimeError('Failed to evaluate/instantiate ...')`` chain MONAI builds
    (``raise ... from e``) to the error raised by our code or the system. That error is
    returned when it is expected (:class:`~cryo3d.errors.Cryo3DError`, another
    ``ValueError``, an ``OSError`` such as a full disk or a read-only folder); a network
    that does not fit the checkpoint to resume from becomes a one-line
    :class:`~cryo3d.errors.Cryo3DError`. Anything else (a bug) is returned unchanged.

    An ``OSError`` that names no file (a write that failed when its buffer was flushed, as
    on a full disk) is named by the run's folder.

    Args:
        error: what ``monai.bundle.run`` raised.
        output_dir: the run's folder, to name where a write failed when the error does not.

    Returns:
        The error to report.
    """
    cur: BaseException = error
    seen: set[int] = set()
    while (isinstance(cur, RuntimeError) and str(cur).startswith(MONAI_WRAPPERS)
           and cur.__cause__ is not None and id(cur) not in seen):
        seen.add(id(cur))
        cur = cur.__cause__
    if cur is error:
        return error
    if isinstance(cur, OSError) and cur.filename is None and output_dir is not None:
        what = cur.strerror or str(cur)
        return Cryo3DError(f"output_dir {output_dir}: a write of the training run failed: {what}; free space "
                           "or permissions there (and in dataset_dir), or choose another --output-dir")
    if isinstance(cur, (ValueError, OSError)):
        return cur
    text = str(cur)
    if isinstance(cur, RuntimeError) and "Error(s) in loading state_dict" in text:
        first = text.splitlines()[0].rstrip(":. ")
        return Cryo3DError(f"resume: the checkpoint in output_dir/checkpoints does not fit this network ({first}); "
                           "train with the settings it was made with, or choose a new --output-dir")
    return error

"""``cryo3d train`` and ``cryo3d bundle-path``: the shipped bundle as commands.

``cryo3d train`` is a thin front to MONAI's bundle runner: it runs the bundle's
``training`` workflow through :func:`monai.bundle.run` with the shipped ``metadata.json``,
``train.yaml`` and ``logging.conf`` (or the files given), and every ``--key value`` as a
top-level override, its value read exactly as ``python -m monai.bundle run`` reads it
(Python Fire's literal parser). So::

    cryo3d train --dataset-dir data/picker --max_epochs 5

is the same run as::

    python -m monai.bundle run training --meta_file M --config_file T --logging_file L \\
        --dataset_dir data/picker --max_epochs 5

Every value is data (:func:`cryo3d.options.check_data_value`): a ``$`` expression, ``%``
macro or ``@`` reference, or a component key (``_target_`` ...), at any depth of a dict or
list, is refused before anything runs; put code in a config file and pass it with
``--config-file``. ``network_name`` and ``network_overrides`` are checked against the known
networks and the chosen family's constructor, the output folder and ``pretrained`` before
the run, and an expected failure inside the run (a bad checkpoint, a full disk, bad data)
surfaces as its own one-line error rather than MONAI's ``Failed to evaluate`` wrapping
(:func:`unwrap_bundle_error`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from fire.parser import DefaultParseValue

from cryo3d.errors import Cryo3DError
from cryo3d.options import check_data_key, check_data_value
from cryo3d.workflows.bundle import bundle_dir, config_files, config_path, raw_bundle_keys

#: The bundle workflow ``cryo3d train`` runs (``python -m monai.bundle run training``).
TRAINING_ID = "training"
#: Arguments of the bundle runner itself rather than config keys.
RUNNER_FILES = ("config_file", "meta_file", "logging_file")


def parse_overrides(extra: Sequence[str]) -> dict[str, Any]:
    """``["--max_epochs", "5", "--network-name=unet-small"]`` -> ``{"max_epochs": 5, "network_name": "unet-small"}``.

    Dashes in key names become underscores (``--dataset-dir`` is ``dataset_dir``); MONAI's
    ``#`` component paths (``--network_def#channels``) pass through. Values are parsed as
    MONAI's own CLI parses them (Fire: Python literals, anything else a string).

    Raises:
        Cryo3DError: an argument that is not ``--key value``/``--key=value``, or a key or
            value that is config code (``$``, ``%``, ``@``, ``_target_``; see
            :func:`cryo3d.options.check_data_value`).
    """
    out: dict[str, Any] = {}
    items = list(extra)
    i = 0
    while i < len(items):
        arg = items[i]
        if not arg.startswith("--") or arg == "--":
            raise Cryo3DError(f"{arg!r}: expected --KEY VALUE (a top-level key of the bundle config)")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(items) or items[i + 1].startswith("--"):
                raise Cryo3DError(f"--{key}: expected a value after it (--{key} VALUE)")
            value = items[i + 1]
            i += 1
        i += 1
        name = check_data_key(key.replace("-", "_"), f"--{key}")
        out[name] = check_data_value(DefaultParseValue(value), f"--{key}")
    return out


def run_bundle(**kwargs: Any) -> None:
    """:func:`monai.bundle.run`, imported when a run starts: MONAI pulls in torch and ignite
    (seconds), which ``cryo3d --help`` and the other commands' parsers need not pay."""
    from monai.bundle import run

    run(**kwargs)


def cmd_train(a: argparse.Namespace, extra: Sequence[str]) -> int:
    """Run the bundle's ``training`` with the shipped (or given) configs and the overrides."""
    over = parse_overrides(extra)
    for key in ("dataset_dir", "output_dir"):
        if getattr(a, key) is not None:
            over[key] = check_data_value(getattr(a, key), f"--{key.replace('_', '-')}")
    files = {key: over.pop(key, None) or getattr(a, key) for key in RUNNER_FILES}  # --config_file spelt MONAI's way
    cfg = config_files(files["config_file"])
    # imported here: the checks build on cryo3d.networks (torch), which the CLI's parser must not import
    from cryo3d.workflows.train_checks import check_train_settings, unwrap_bundle_error

    check_train_settings(cfg, over)
    try:
        run_bundle(run_id=TRAINING_ID, meta_file=files["meta_file"] or str(config_path("metadata.json")),
                   config_file=cfg[0] if len(cfg) == 1 else cfg,
                   logging_file=files["logging_file"] or str(config_path("logging.conf")), **over)
    except Exception as e:
        root = unwrap_bundle_error(e, over.get("output_dir") or raw_bundle_keys(cfg).get("output_dir"))
        if root is e:
            raise
        raise root from e
    return 0


def cmd_bundle_path(a: argparse.Namespace) -> int:
    """Print the shipped bundle's folder (or one of its config files)."""
    print(config_path(a.file) if a.file else bundle_dir())
    return 0


def add_bundle_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``cryo3d train`` and ``cryo3d bundle-path`` to the CLI's subcommands."""
    s = sub.add_parser(
        "train", allow_abbrev=False, help="train the picker: the bundle's training workflow (as python -m monai.bundle run training)",
        description="Run the shipped bundle's training workflow (configs/train.yaml) through MONAI's bundle "
        "runner. Any --KEY VALUE sets that top-level key of the config, parsed as MONAI's CLI parses it "
        "(e.g. --max_epochs 5 --network_name unet-small --time_budget 20 --write_report false). Values are data: "
        "$ expressions, % macros, @ references and _target_ keys are refused (put code in a --config-file); "
        "booleans read true/false, yes/no, on/off, 1/0. Without --dataset-dir it "
        "simulates the built-in data into data/picker/. Running it again resumes.")
    s.add_argument("--dataset-dir", help="data folder: tomograms/ + picks.csv (+ particles.yaml), or where the "
                   "built-in data is simulated (default: the config's, data/picker)")
    s.add_argument("--output-dir", help="run folder: checkpoints/, logs, report (default: the config's, runs/picker)")
    s.add_argument("--config-file", nargs="+", metavar="YAML",
                   help="bundle config file(s), later ones overriding earlier (default: the shipped train.yaml)")
    s.add_argument("--meta-file", help="bundle metadata (default: the shipped metadata.json)")
    s.add_argument("--logging-file", help="logging config (default: the shipped logging.conf)")
    s.set_defaults(func=cmd_train, takes_overrides=True)

    s = sub.add_parser("bundle-path", help="print where the shipped MONAI bundle (configs/, docs/) is installed",
                       description="Print the installed bundle folder, or with FILE one of its configs, e.g. "
                       "python -m monai.bundle run training --config_file $(cryo3d bundle-path train.yaml) ...")
    s.add_argument("file", nargs="?", help="a config file name (train.yaml, metadata.json, tune.yaml, ...)")
    s.set_defaults(func=cmd_bundle_path)

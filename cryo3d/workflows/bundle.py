"""Where the shipped training bundle is, and reading its configs.

The bundle's files (``bundles/cryo3d_picker/`` in the source tree) install as the package
data of ``cryo3d.bundles``, so they are found through :mod:`importlib.resources` the same
way in a wheel and in a checkout; ``cryo3d bundle-path`` prints the folder. One loader
(:func:`parse_bundle`) serves the CLI, tuning and experiments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cryo3d.errors import Cryo3DError

if TYPE_CHECKING:
    from monai.bundle import ConfigParser

#: The bundle shipped with cryo3d (a folder of ``cryo3d.bundles``).
BUNDLE_NAME = "cryo3d_picker"

#: A bundle config file or several (later files win), as ``--config_file`` takes them.
ConfigFiles = str | os.PathLike | Sequence[str | os.PathLike] | None


def bundle_dir() -> Path:
    """The shipped bundle's folder (``configs/``, ``docs/``) on this machine."""
    root = resources.files("cryo3d.bundles") / BUNDLE_NAME
    path = Path(str(root))
    if not (path / "configs").is_dir():
        raise Cryo3DError(f"the cryo3d bundle is not installed as files at {path}: reinstall cryo3d")
    return path


def config_path(name: str) -> Path:
    """The path of one of the bundle's config files, e.g. ``config_path("train.yaml")``."""
    return bundle_dir() / "configs" / name


def config_files(files: ConfigFiles = None, default: str = "train.yaml") -> list[str]:
    """``files`` as a list of paths; the shipped ``default`` config when ``files`` is None."""
    if files is None:
        return [str(config_path(default))]
    if isinstance(files, (str, os.PathLike)):
        return [str(files)]
    return [str(f) for f in files]


def parse_bundle(files: ConfigFiles = None, overrides: Mapping[str, Any] | None = None) -> ConfigParser:
    """A MONAI ``ConfigParser`` over the bundle config(s) with top-level ``overrides`` applied.

    Args:
        files: config file(s), later ones winning; the shipped ``train.yaml`` when None.
        overrides: top-level keys to replace (``{"network_name": "unet-small"}``).

    Example:
        >>> parse_bundle(overrides={"ds_factor": 2}).get_parsed_content("ds_factor")
        2
    """
    # imported here: monai.bundle pulls in torch and ignite (seconds), and the CLI's parser
    # imports this module to find the bundle; only parsing a config needs MONAI
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(files))
    parser.update(dict(overrides or {}))
    return parser


def raw_bundle_keys(files: ConfigFiles = None) -> dict:
    """The raw (unevaluated) top-level keys of the bundle config(s), later files winning.

    Raises:
        FileNotFoundError: a config file that does not exist.
        Cryo3DError: a file that is not YAML or not a mapping.
    """
    out: dict[str, Any] = {}
    for f in config_files(files):
        if not Path(f).is_file():
            raise FileNotFoundError(f"bundle config {f} not found")
        try:
            keys = yaml.safe_load(Path(f).read_text()) or {}
        except yaml.YAMLError as e:
            raise Cryo3DError(f"{f}: not a valid YAML bundle config ({' '.join(str(e).split())})") from None
        if not isinstance(keys, dict):
            raise Cryo3DError(f"{f}: expected a mapping of config keys, got a {type(keys).__name__}")
        out.update(keys)
    return out

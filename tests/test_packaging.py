"""The distribution's layout: import names, package list, the bundle as package data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cryo3d.workflows.bundle import bundle_dir, config_path

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> installed import name (pyproject's package-dir)
IMPORT_ROOTS = {"cryo3d": "cryo3d", "transforms": "cryo3d_transforms", "bundles": "cryo3d.bundles"}

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in IMPORT_ROOTS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found <= listed, f"package folders missing from pyproject's packages: {sorted(found - listed)}"


def test_no_bare_transforms_package_is_installed():
    setuptools = _pyproject()["tool"]["setuptools"]
    assert "transforms" not in setuptools["packages"]
    assert setuptools["package-dir"]["cryo3d_transforms"] == "transforms"


def test_license_is_an_spdx_expression_not_a_table():
    assert _pyproject()["project"]["license"] == "Apache-2.0"


def test_bundle_configs_are_found_through_the_package():
    d = bundle_dir()
    for name in ("metadata.json", "train.yaml", "tune.yaml", "inference.yaml", "logging.conf"):
        assert config_path(name).is_file(), name
    assert (d / "docs" / "README.md").is_file()

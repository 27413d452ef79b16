"""cryo3d installed from its wheel (not editable) works like any other package.

The wheel is built from a copy of the sources, installed into a fresh virtual environment
whose only view of the test environment is its third-party packages (torch, MONAI, ...), and
every command runs from a folder outside the checkout that holds a ``transforms.py`` of the
user's own (which must not shadow ours).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: What the distribution is built from (pyproject's packages, package-dir and readme).
SOURCES = ("pyproject.toml", "README.md", "cryo3d", "transforms", "bundles")
#: Bundle settings small enough for CI's 2 cores (as tests/test_bundle.py's TINY).
TINY = {"n_synth_tomograms": 2, "synth_shape": "[64,64,64]", "patch_size": 32, "stride": 32,
        "network_name": "unet-tiny", "batch_size": 2, "num_workers": 0, "epoch_length": 2, "val_interval": 1,
        "threads": 1, "max_epochs": 1, "time_budget": "null", "write_report": "false"}


def _run(cmd: list[str], cwd: Path, env: dict, timeout: int = 300) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, work folder, env): the wheel installed into a fresh venv; cwd outside the checkout."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        p = ROOT / name
        shutil.copytree(p, src / name, ignore=ignore) if p.is_dir() else shutil.copy2(p, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation",
          "-w", str(base / "dist"), str(src)], base, env)
    (wheel,) = (base / "dist").glob("cryo3d-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, env)
    vpy = venv / "bin" / "python"
    site = Path(_run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base, env).strip())
    # the test environment's third-party packages as a plain path entry: its .pth files (our
    # editable install among them) are not processed there, so only the wheel provides cryo3d
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "zz_test_environment.pth").write_text("\n".join(deps) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "-q", "--no-deps", "--no-index",
          "--ignore-installed", str(wheel)], base, env)
    work = base / "work"
    work.mkdir()
    (work / "transforms.py").write_text("raise ImportError('a user file named transforms.py was imported')\n")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv, work, env, site


def test_the_wheel_installs_the_package_data_and_unique_import_names(installed):
    venv, work, env, site = installed
    out = _run([str(venv / "bin" / "python"), "-c",  # where each package is found, without importing torch
                "import importlib.util as u; "
                "print(*(u.find_spec(m).origin for m in ('cryo3d', 'cryo3d_transforms', 'cryo3d.bundles')))"],
               work, env)
    assert all(Path(line).is_relative_to(site) for line in out.split())
    assert not (site / "transforms").exists() and not (site / "bundles").exists()
    assert (site / "cryo3d" / "weights" / "unet-tiny_ds1.pt").is_file()
    assert Path(_run(["cryo3d", "bundle-path", "train.yaml"], work, env).strip()) == (
        site / "cryo3d" / "bundles" / "cryo3d_picker" / "configs" / "train.yaml")


def test_every_command_runs_from_the_installed_wheel(installed):
    venv, work, env, _ = installed
    tiny = [w for k, v in TINY.items() for w in (f"--{k}", str(v))]
    log = _run(["cryo3d", "train", "--dataset-dir", "data", "--output-dir", "runs", *tiny], work, env)
    assert "pretrained" in log  # the shipped weights were found as package data
    ckpt = work / "runs" / "checkpoints" / "best.pt"
    assert ckpt.is_file()
    _run(["cryo3d", "predict", str(ckpt), "data/tomograms", "--out", "pred", "--quiet"], work, env)
    assert (work / "pred" / "picks.csv").is_file()
    assert "F" in _run(["cryo3d", "evaluate", "pred/picks.csv", "data/picks.csv"], work, env)
    _run(["cryo3d", "report", "data/tomograms", "pred/picks.csv", "--gt", "data/picks.csv", "--out", "report"],
         work, env)
    assert (work / "report" / "index.html").is_file()
    space = "space:\n  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n"
    (work / "tune.yaml").write_text(space)  # one searched key: a 1-epoch trial has no room for a beta schedule
    fixed = [f"{k}={v}" for k, v in TINY.items()] + ["dataset_dir=data"]
    _run(["cryo3d", "tune", "--config", "tune.yaml", "--n-trials", "1", "--out", "tune", "--quiet", "--fixed", *fixed],
         work, env)
    assert (work / "tune" / "picker" / "best_overrides.yaml").is_file()

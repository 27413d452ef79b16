"""Shared fixtures: small synthetic data built once per session."""

from __future__ import annotations

import numpy as np
import pytest

from cryo3d.array_module import cupy_available

BACKENDS = ["numpy"] + (["cupy"] if cupy_available() else [])


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.skipif(
    not cupy_available(), reason="needs CuPy and a CUDA GPU"))])
def xp(request):
    """The array module: NumPy always, CuPy where a GPU exists (skipped otherwise)."""
    if request.param == "numpy":
        return np
    import cupy

    return cupy


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory):
    """Two small synthetic tomograms (48 x 96 x 96, 10 A voxels) written with their picks."""
    from cryo3d.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig.preset("clean", shape=(48, 96, 96), particles_per_class=3, seed=7)
    man = synthesize(out, 2, cfg, progress=False)
    return out, man


@pytest.fixture(scope="session")
def copick_project(tmp_path_factory):
    """A copick project built with copick's own API: filesystem config, 3 runs (64^3 voxels at
    10 A, OME-Zarr ``wbp``), ground truth of two users (``curation/0`` exact, ``octopi/1`` shifted
    by 30 A in x), the six CZII classes as pickable objects. Returns (config path, exact picks)."""
    import copick
    from copick.models import PickableObject

    from cryo3d.io.picks_csv import read_picks_csv
    from cryo3d.io.tomogram import read_tomogram
    from cryo3d.particles import CZII_PARTICLES
    from cryo3d.synth import SynthConfig, synthesize

    base = tmp_path_factory.mktemp("copick")
    cfg = SynthConfig.preset("clean", shape=(64, 64, 64), particles_per_class=2, voxel_spacing=10.0, seed=3)
    synthesize(base / "synth", 3, cfg, progress=False)
    objects = [PickableObject(name=c.name, is_particle=True, label=i + 1, radius=c.radius)
               for i, c in enumerate(CZII_PARTICLES.classes)]
    config = base / "config.json"
    root = copick.new_config(str(config), str(base / "overlay"), pickable_objects=objects)
    picks = read_picks_csv(base / "synth" / "picks.csv")
    for f in sorted((base / "synth" / "tomograms").glob("*.mrc")):
        t = read_tomogram(f)
        run = root.new_run(t.name)
        run.new_voxel_spacing(t.voxel_spacing).new_tomogram("wbp").from_numpy(np.asarray(t.data), levels=1)
        for user, session, dx in (("curation", "0", 0.0), ("octopi", "1", 30.0)):
            for name in CZII_PARTICLES.names:
                sub = picks.for_tomo(t.name).for_class(name)
                run.new_picks(name, session, user).from_numpy(sub.xyz + [dx, 0.0, 0.0], scores=sub.score)
    return config, picks

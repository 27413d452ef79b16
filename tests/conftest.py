"""Shared fixtures: small synthetic data built once per session."""

from __future__ import annotations

import numpy as np
import pytest

from cryo3d.backend import cupy_available

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

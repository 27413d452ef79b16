"""A copick project as data source and destination (copick's own API builds and reads it)."""

from __future__ import annotations

import numpy as np
import pytest

from cryo3d.io.copick_project import (
    project_particles,
    project_picks,
    project_tomograms,
    write_project_picks,
)
from cryo3d.picks import Picks


def _sorted(p: Picks) -> Picks:
    return p.select(np.lexsort((p.xyz[:, 2], p.xyz[:, 1], p.xyz[:, 0], p.cls.astype(str), p.tomo.astype(str))))


def test_particles_come_from_pickable_objects_in_label_order(copick_project):
    config, _ = copick_project
    ps = project_particles(config)
    assert ps.names[:2] == ["apo-ferritin", "beta-amylase"] and ps.radii[0] == 60.0


def test_tomograms_are_read_lazily_from_ome_zarr_and_named_by_run(copick_project):
    import zarr

    config, _ = copick_project
    tomos = project_tomograms(config, "wbp", 10.0)
    assert [t.name for t in tomos] == ["synth_000", "synth_001", "synth_002"]
    assert isinstance(tomos[0].data, zarr.Array) and tomos[0].shape == (64, 64, 64)
    assert tomos[0].voxel_spacing == 10.0


def test_ground_truth_of_one_user_has_the_exact_coordinates(copick_project):
    config, picks = copick_project
    got = project_picks(config, "curation", "0")
    np.testing.assert_allclose(_sorted(got).xyz, _sorted(picks).xyz, atol=1e-9)


def test_two_users_without_a_filter_is_an_error_naming_both(copick_project):
    config, _ = copick_project
    with pytest.raises(ValueError, match="curation.*octopi"):
        project_picks(config)


def test_an_unknown_run_is_an_error_listing_the_runs(copick_project):
    config, _ = copick_project
    with pytest.raises(ValueError, match="synth_000"):
        project_tomograms(config, runs=["TS_99"])


def test_writing_refuses_to_replace_existing_picks_of_that_user_and_session(copick_project):
    config, picks = copick_project
    with pytest.raises(ValueError, match="already holds picks"):
        write_project_picks(config, picks, "curation", "0")


def test_a_copick_zarr_path_is_a_tomogram_named_by_its_run(copick_project):
    from cryo3d.io.tomogram import find_tomograms, read_tomogram

    config, _ = copick_project
    zarr_dir = config.parent / "overlay" / "ExperimentRuns" / "synth_001" / "VoxelSpacing10.000" / "wbp.zarr"
    assert find_tomograms([str(zarr_dir)]) == [str(zarr_dir)]
    t = read_tomogram(zarr_dir)
    assert t.name == "synth_001" and t.voxel_spacing == 10.0 and np.asarray(t.data[:2]).shape == (2, 64, 64)


def test_prepare_cuts_a_store_from_the_project_with_one_users_ground_truth(copick_project, tmp_path, capsys):
    import json

    from cryo3d.cli import main

    config, picks = copick_project
    args = ["prepare", "--copick-config", str(config), "--runs", "synth_000", "--patch-size", "32",
            "--stride", "32", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "curation" in capsys.readouterr().err
    assert main([*args, "--gt-user", "curation", "--gt-session", "0", "--out", str(tmp_path / "s")]) == 0
    man = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert man["particles"]["classes"][0]["name"] == "apo-ferritin"

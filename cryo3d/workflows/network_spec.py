"""What the training bundle's network is built from, known before any data is made.

``network_def`` of ``train.yaml`` needs the number of classes (one output channel each).
It must not come from the data: ``python -m monai.bundle ckpt_export network_def ...``
parses ``network_def`` alone and would otherwise simulate tomograms into an empty
``dataset_dir``. :func:`bundle_particles` applies the rule the data set-up applies, from
files that already exist (a particles file, a copick project's config, the dataset
folder's ``particles.yaml`` or manifest) or from the simulator preset that an empty folder
would be filled with; :func:`check_data_particles` checks at training start that the data
agrees. :func:`network_data_format` is the ``network_data_format`` of the bundle's
``metadata.json`` for a parsed config and the tomograms' voxel spacing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from cryo3d import coords
from cryo3d.bundle_keys import NULL_WORDS
from cryo3d.io.copick_project import project_particles
from cryo3d.particles import BUILTIN_PARTICLE_SETS, ParticleSet, builtin_particles, load_particles
from cryo3d.resolution import TrainingGeometry, choose_geometry
from cryo3d.synth import SynthConfig


def _is_auto(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("auto", "", "null", "none"))


def structures_key(value: Any) -> str | None:
    """The bundle's ``synth_structures`` key: a folder, or None for null (also as MONAI's CLI passes it)."""
    if value is None or str(value).strip().lower() in NULL_WORDS:
        return None
    return str(value)


def bundle_particles(
    particle_set: Any,
    dataset_dir: str | os.PathLike,
    synth_preset: str = "demo",
    copick_config: str | os.PathLike | None = None,
    synth_structures: str | None = None,
) -> ParticleSet:
    """The classes a training run learns, without making or reading any tomogram.

    Args:
        particle_set: ``"auto"`` (or null): as the data says, in the order the data set-up
            reads it: a copick project's ``pickable_objects`` (``copick_config``), else
            ``dataset_dir/particles.yaml``, else the simulator preset's set when
            ``dataset_dir`` has no tomograms yet (it will be simulated), else the particles
            of ``dataset_dir/manifest.json``, else the CZII set. Or a built-in set name
            (``czii``, ``czii-ood``, ``crowded12``), or a particles YAML/JSON file.
        dataset_dir: the bundle's ``dataset_dir`` (read, never written).
        synth_preset: the simulator preset an empty ``dataset_dir`` is filled with.
        copick_config: a copick project's config file, or None.
        synth_structures: the folder of structures an empty ``dataset_dir`` is simulated from
            (its particle set is derived from them), or None.

    Returns:
        The particle set; its length is the network's number of output channels.

    Raises:
        FileNotFoundError: When ``particle_set`` names neither a built-in set nor a file.
    """
    if not _is_auto(particle_set):
        name = str(particle_set).strip()
        if name in BUILTIN_PARTICLE_SETS:
            return builtin_particles(name)
        if not Path(name).is_file():
            raise FileNotFoundError(f"particle_set: {name}: no such particles file (expected 'auto', a YAML/JSON "
                                    f"particles file or one of {list(BUILTIN_PARTICLE_SETS)})")
        return load_particles(name)
    if copick_config is not None and str(copick_config).strip().lower() not in ("", "null", "none"):
        return project_particles(copick_config)
    d = Path(dataset_dir)
    if (d / "particles.yaml").is_file():
        return load_particles(str(d / "particles.yaml"))
    tdir = d / "tomograms"
    if not (tdir.is_dir() and any(tdir.iterdir())):
        return SynthConfig.preset(synth_preset, structures=structures_key(synth_structures)).particles()
    manifest = d / "manifest.json"
    if manifest.is_file():
        man = json.loads(manifest.read_text())
        if "particles" in man:
            return ParticleSet.from_dict(man["particles"], source=f"{manifest}: particles")
    return builtin_particles("czii")


def check_data_particles(network_particles: ParticleSet, data_particles: ParticleSet) -> ParticleSet:
    """``network_particles`` when the data's classes are the same, a clear error otherwise.

    Args:
        network_particles: the classes the network was built for (:func:`bundle_particles`).
        data_particles: the classes of the prepared data.

    Returns:
        ``network_particles``.

    Raises:
        ValueError: naming both class lists.
    """
    if network_particles.to_dict() != data_particles.to_dict():
        raise ValueError(
            f"particle_set: the network is built for classes {network_particles.names} but the data has "
            f"{data_particles.names}; set particle_set: auto, or put the particles file into dataset_dir as "
            "particles.yaml"
        )
    return network_particles


def bundle_geometry(parser: ConfigParser, native_spacing: float) -> TrainingGeometry:
    """The training geometry a parsed ``train.yaml`` chooses for tomograms at ``native_spacing``.

    The same rule the data set-up applies (:func:`cryo3d.resolution.choose_geometry`, the
    patch a multiple of the network's spatial divisor), with the bundle's keys
    (``voxel_spacing``, ``patch_size``, ``stride``, ``batch_size``, ``ds_factor``).

    Args:
        parser: the bundle's config (:func:`cryo3d.workflows.bundle.parse_bundle`).
        native_spacing: the tomograms' voxel spacing (Angstrom).

    Returns:
        The chosen geometry.
    """
    p = parser.get_parsed_content
    network = p("network_def")
    return choose_geometry(p("particles"), native_spacing, p("voxel_spacing"), p("patch_size"), p("stride"),
                           p("batch_size"), divisor=int(network.spatial_divisor), ds_factor=int(p("ds_factor")))


def network_data_format(parser: ConfigParser, native_spacing: float) -> dict:
    """The ``network_data_format`` of ``metadata.json`` for a parsed ``train.yaml``.

    Args:
        parser: the bundle's config.
        native_spacing: the tomograms' voxel spacing (Angstrom).

    Returns:
        ``{"inputs": {"image": ...}, "outputs": {"pred": ...}}`` with the spatial shapes
        (voxels, ``[z, y, x]``), channels, voxel spacings (Angstrom) and output stride.
    """
    geo = bundle_geometry(parser, native_spacing)
    ds = int(parser.get_parsed_content("ds_factor"))
    names = parser.get_parsed_content("particles").names
    patch = (geo.patch_size,) * 3
    return {
        "inputs": {"image": {
            "num_channels": 1, "spatial_shape": list(patch), "voxel_spacing": [geo.voxel_spacing] * 3,
        }},
        "outputs": {"pred": {
            "format": "heatmap", "num_channels": len(names), "spatial_shape": list(coords.ds_shape(patch, ds)),
            "voxel_spacing": [coords.ds_voxel_spacing(geo.voxel_spacing, ds)] * 3, "ds_factor": ds,
            "channel_def": {str(i): n for i, n in enumerate(names)},
        }},
    }

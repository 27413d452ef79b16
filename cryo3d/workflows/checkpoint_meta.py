"""What a training checkpoint carries besides the weights, for ``cryo3d predict``.

:class:`CheckpointMeta` is saved by the bundle's ``CheckpointSaver`` next to the network:
the network config, the particle classes, the training geometry and, once validated, the
best per-class thresholds (as plain JSON types, so the checkpoint loads with
``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from cryo3d.io.atomic import json_default
from cryo3d.metric_ignite import ParticleFBeta
from cryo3d.particles import ParticleSet
from cryo3d.peak_selection import CLASS_DECISION
from cryo3d.sliding_window import TTA_MODES


class CheckpointMeta:
    """Settings a checkpoint carries for ``cryo3d predict`` (has ``state_dict`` for ``CheckpointSaver``).

    Args:
        network: the network config dict (as given to ``cryo3d.networks.build_network``).
        particles: the class set.
        voxel_spacing, patch_size, ds_factor: the training geometry.
        metric: a :class:`cryo3d.metric_ignite.ParticleFBeta` whose best thresholds are saved when known.
        class_density: ``[C]`` annotated particles per cubic Angstrom of the training tomograms
            (:func:`cryo3d.peak_selection.class_densities`): ``predict`` caps each class at a
            multiple of it.
        tta: the test-time augmentation validation chose the thresholds under (the bundle's
            ``val_tta``); ``predict`` applies it unless told otherwise.
    """

    def __init__(self, network: dict, particles: ParticleSet, voxel_spacing: float,
                 patch_size: int | Sequence[int], ds_factor: int, metric: ParticleFBeta | None = None,
                 class_density: Sequence[float] | None = None, tta: str = "none") -> None:
        if tta not in TTA_MODES:
            raise ValueError(f"val_tta: expected one of {list(TTA_MODES)}, got {tta!r}")
        self.network = dict(network)
        self.particles = particles
        self.voxel_spacing = float(voxel_spacing)
        ps = patch_size
        self.patch_size = [int(ps)] * 3 if np.isscalar(ps) else [int(p) for p in ps]
        self.ds_factor = int(ds_factor)
        self.metric = metric
        self.class_density = None if class_density is None else [float(v) for v in class_density]
        self.tta = tta

    def state_dict(self) -> dict:
        d = {
            "network": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.network.items()},
            "particles": self.particles.to_dict(),
            "voxel_spacing": self.voxel_spacing,
            "patch_size": self.patch_size,
            "ds_factor": self.ds_factor,
            "class_decision": CLASS_DECISION,  # the rule validation chose the thresholds under
            "tta": self.tta,  # and the test-time augmentation of its heatmaps
        }
        if self.class_density is not None:
            d["class_density"] = self.class_density
        if self.metric is not None and self.metric.last.get("thresholds"):
            d["thresholds"] = self.metric.last["thresholds"]
            d["val_score"] = self.metric.last["score"]
            d["unlearned_classes"] = list(self.metric.last.get("unlearned", []))
            if self.metric.last.get("temperature"):  # the thresholds are on scores tempered by it
                d["score_temperature"] = self.metric.last["temperature"]
        # plain JSON types only, so the checkpoint loads with torch.load(weights_only=True)
        return json.loads(json.dumps(d, default=json_default))

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore: the bundle config defines the settings."""

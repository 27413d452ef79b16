"""Pretrained weights: made on the built-in simulator, shipped in the package, fine-tuned on a user's data.

A user has a few annotated tomograms and a CPU budget of minutes. Starting from weights
that already know "a dark blob of this size in missing-wedge noise" (learned on the
domain-randomised simulator by ``scripts/pretrain.py``) leaves the budget for the user's
own classes and contrast. The weights are produced by the project's own code and are
small (the CPU default U-Net has 63k parameters), so they ship inside the package
(``cryo3d/weights/<network>_ds<f>.pt``); nothing is downloaded.

File format (loaded with ``torch.load(weights_only=True)``: tensors and plain types only)::

    {"network": state_dict, "cryo3d_pretrained": {"network": config dict, "classes": [names],
     "voxel_spacing": float, "ds_factor": int, "made_by": str}}

Loading (:func:`init_network`) copies every tensor whose name and shape match. The output
head (one channel per class) is mapped **by class name**: a user's ``ribosome`` channel
starts from the pretrained ``ribosome`` channel, and classes the simulator never had keep
their fresh initialisation (bias = logit of the prior). Why by hand: MONAI's
``CheckpointLoader(strict_shape=False)`` skips mismatched tensors but cannot map channels
by name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from cryo3d.io.atomic import atomic_path
from cryo3d.particles import ParticleSet

logger = logging.getLogger("cryo3d")

#: Where the shipped weights live (package data).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Key of the metadata in a pretrained-weights file.
META_KEY = "cryo3d_pretrained"
#: Parameter-name prefix of the networks' output head (one row per class).
HEAD_PREFIX = "head."


def shipped_weights(network_config: Mapping[str, Any]) -> Path | None:
    """The shipped weights file for this network name and output stride, or None."""
    p = WEIGHTS_DIR / f"{network_config['name']}_ds{int(network_config.get('ds_factor', 1))}.pt"
    return p if p.is_file() else None


def _source(pretrained: Any, network_config: Mapping[str, Any]) -> Path | None:
    if pretrained is None or (isinstance(pretrained, str) and pretrained.strip().lower() in ("", "none", "null", "off")):
        return None
    if isinstance(pretrained, str) and pretrained.strip().lower() == "auto":
        p = shipped_weights(network_config)
        if p is None:
            logger.info("pretrained: auto: no shipped weights for %s at ds %s; training from scratch",
                        network_config["name"], network_config.get("ds_factor", 1))
        return p
    p = Path(os.fspath(pretrained))
    if not p.is_file():
        raise FileNotFoundError(f"pretrained: {p}: no such weights file (give a file from scripts/pretrain.py, "
                                "'auto' or null)")
    return p


def read_weights(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(state_dict, meta)`` of a pretrained-weights file; a clear error for anything else."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one message
        raise ValueError(f"{path}: not a cryo3d pretrained-weights file ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("network"), dict) or META_KEY not in obj:
        raise ValueError(f"{path}: not a cryo3d pretrained-weights file (expected keys 'network' and '{META_KEY}'; "
                         "make one with scripts/pretrain.py)")
    return obj["network"], dict(obj[META_KEY])


def init_network(network: torch.nn.Module, pretrained: Any, particles: ParticleSet,
                 network_config: Mapping[str, Any]) -> torch.nn.Module:
    """Initialise ``network`` from pretrained weights (``"auto"``, a path, or None for none).

    Args:
        network: the freshly built network.
        pretrained: ``"auto"`` (the shipped weights for this network, if any), a file, or None.
        particles: the classes being trained (the head is mapped by their names).
        network_config: the network's config (name, ds_factor) to find shipped weights.

    Returns:
        ``network`` (changed in place).
    """
    src = _source(pretrained, network_config)
    if src is None:
        return network
    state, meta = read_weights(src)
    if meta.get("network", {}).get("name") not in (None, network_config.get("name")):
        logger.warning("pretrained: %s was made for network %s, not %s; copying only matching tensors",
                       src, meta["network"].get("name"), network_config.get("name"))
    own = network.state_dict()
    src_classes = list(meta.get("classes", []))
    rows = [(i, src_classes.index(n)) for i, n in enumerate(particles.names) if n in src_classes]
    copied, head_mapped, skipped = 0, 0, []
    for k, v in own.items():
        w = state.get(k)
        if w is None:
            skipped.append(k)
            continue
        if k.startswith(HEAD_PREFIX) and w.ndim >= 1 and w.shape[1:] == v.shape[1:] and w.shape[0] == len(src_classes):
            if rows:
                dst, srcr = zip(*rows)
                v = v.clone()
                v[list(dst)] = w[list(srcr)].to(v.dtype)
                own[k] = v
                head_mapped += 1
            continue
        if w.shape != v.shape:
            skipped.append(k)
            continue
        own[k] = w.to(v.dtype)
        copied += 1
    network.load_state_dict(own)
    mapped = [particles.names[i] for i, _ in rows]
    logger.info("pretrained: %s (made at %s A, ds %s): %d tensors copied, head mapped for classes %s%s",
                src, meta.get("voxel_spacing"), meta.get("ds_factor"), copied, mapped or "none",
                f"; {len(skipped)} left as initialised" if skipped else "")
    return network


def export_weights(network: torch.nn.Module, network_config: Mapping[str, Any], particles: ParticleSet,
                   voxel_spacing: float, dest: str | os.PathLike, made_by: str = "") -> Path:
    """Write a pretrained-weights file atomically (tensors and plain types: ``weights_only`` loadable)."""
    state = {k.removeprefix("module."): v.detach().cpu().clone() for k, v in network.state_dict().items()}
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(network_config).items()}
    meta = {"network": cfg, "classes": list(particles.names), "voxel_spacing": float(voxel_spacing),
            "ds_factor": int(cfg.get("ds_factor", 1)), "made_by": str(made_by)}
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        torch.save({"network": state, META_KEY: meta}, tmp)
    return dest

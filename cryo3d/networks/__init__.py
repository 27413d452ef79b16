"""Networks that map a tomogram patch to per-class heatmap logits at output stride ``ds_factor``.

Two families, both built from MONAI blocks and both returning logits
``[B, C, Z/ds, Y/ds, X/ds]`` with the output layer's bias set to ``logit(prior)``:

* :class:`UNet3D` (``"unet"``): residual 3D U-Net whose decoder stops at ``1/ds``;
* :class:`SEFPN3D` (``"sefpn"``): residual encoder with squeeze-and-excitation and a
  feature-pyramid decoder (``fusion="parallel" | "cascade" | "pc"``).

Build one from a plain dict or a preset name::

    build_network({"name": "unet", "in_channels": 1, "out_channels": 6, "ds_factor": 2})
    build_network("unet-small", out_channels=6)        # preset + overrides
    build_network({"name": "sefpn-small", "fusion": "cascade", "se": False})

or from a MONAI bundle: ``_target_: cryo3d.networks.UNet3D`` (or ``SEFPN3D``) with the
constructor's arguments, or ``_target_: cryo3d.networks.build_network`` with
``name_or_config``. Every network compiles with ``torch.jit.script`` (for
``python -m monai.bundle ckpt_export``) and gives the eager output.

Presets (``PRESETS``) pick widths for the hardware: ``*-tiny`` for tests, ``*-small`` for
CPU training on 64^3 patches (2 cores, minutes), ``*-base`` and ``*-large`` for a GPU.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from torch import nn

from cryo3d.networks.heads import PriorHead, prior_logits
from cryo3d.networks.pyramid import PyramidNetwork
from cryo3d.networks.sefpn import SEFPN3D, SEResBlock
from cryo3d.networks.unet import UNet3D
from cryo3d.options import parse_flag

__all__ = [
    "NETWORKS",
    "PRESETS",
    "PriorHead",
    "PyramidNetwork",
    "SEFPN3D",
    "SEResBlock",
    "UNet3D",
    "build_network",
    "check_network_choice",
    "count_parameters",
    "network_config",
    "prior_logits",
]

#: Network families by name.
NETWORKS: dict[str, type[nn.Module]] = {"unet": UNet3D, "sefpn": SEFPN3D}

#: Named configurations; any key may be overridden by the caller.
PRESETS: dict[str, dict[str, Any]] = {
    "unet-tiny": {"name": "unet", "channels": (8, 16, 32), "num_res_units": 1},
    "unet-small": {"name": "unet", "channels": (16, 32, 64, 128), "num_res_units": 2},
    "unet-base": {"name": "unet", "channels": (32, 64, 128, 256), "num_res_units": 2},
    "unet-large": {"name": "unet", "channels": (32, 64, 128, 256, 512), "num_res_units": 2},
    "sefpn-tiny": {"name": "sefpn", "channels": (8, 16, 32), "fpn_channels": 8, "blocks_per_level": 1},
    "sefpn-small": {"name": "sefpn", "channels": (16, 32, 64, 128), "fpn_channels": 32, "blocks_per_level": (0, 1, 2, 2)},
    "sefpn-base": {"name": "sefpn", "channels": (32, 64, 128, 256), "fpn_channels": 64, "blocks_per_level": (1, 2, 2, 2)},
    "sefpn-large": {
        "name": "sefpn", "channels": (32, 64, 128, 256, 512), "fpn_channels": 96, "blocks_per_level": (1, 2, 3, 3, 2),
    },
}


def network_config(name_or_config: str | Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Resolve a preset or family name plus overrides into a full config dict.

    Args:
        name_or_config: A family name (``"unet"``, ``"sefpn"``), a preset name
            (``"unet-small"``, ...), or a dict with a ``"name"`` key (family or preset) and
            constructor arguments.
        **kwargs: Overrides, applied last.

    Returns:
        ``{"name": family, **constructor arguments}``.

    Raises:
        ValueError: On a missing ``"name"`` or an unknown name.
    """
    if isinstance(name_or_config, str):
        given: dict[str, Any] = {"name": name_or_config}
    elif isinstance(name_or_config, Mapping):
        given = dict(name_or_config)
        if "name" not in given:
            raise ValueError(f"network config needs a 'name' key (one of {sorted(NETWORKS) + sorted(PRESETS)}), got {given}")
    else:
        raise ValueError(f"network: expected a name or a config dict, got {type(name_or_config).__name__}")
    name = given["name"]
    if name in PRESETS:
        cfg = dict(PRESETS[name])
    elif name in NETWORKS:
        cfg = {"name": name}
    else:
        raise ValueError(f"unknown network {name!r}; families: {sorted(NETWORKS)}, presets: {sorted(PRESETS)}")
    given.pop("name")
    cfg.update(given)
    cfg.update(kwargs)
    return cfg


def build_network(name_or_config: str | Mapping[str, Any], **kwargs: Any) -> nn.Module:
    """Build a network from a family/preset name or a config dict (see :func:`network_config`).

    Args:
        name_or_config: A family or preset name, or a config dict with a ``"name"`` key.
        **kwargs: Overrides, applied last.

    Returns:
        The network (a :class:`~cryo3d.networks.pyramid.PyramidNetwork`), scriptable with
        ``torch.jit.script``.

    Raises:
        ValueError: On an unknown name or an argument the family does not take (the message
            lists the valid ones).
    """
    cfg = network_config(name_or_config, **kwargs)
    cls = NETWORKS[cfg.pop("name")]
    valid = constructor_keys(cls)
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config key(s) {unknown}; valid keys: {valid}")
    params = inspect.signature(cls.__init__).parameters
    for key, value in cfg.items():  # MONAI's CLI hands {se: false} over as the string 'false'
        if isinstance(params[key].default, bool):
            cfg[key] = parse_flag(value, f"network_overrides#{key}")
    return cls(**cfg)


def constructor_keys(cls: type[nn.Module]) -> list[str]:
    """The arguments a network family's constructor takes (its config keys besides ``name``)."""
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


#: Config keys the training bundle sets from their own keys (``network_config`` of train.yaml).
BUNDLE_SET_KEYS = ("name", "in_channels", "out_channels", "ds_factor", "prior")


def check_network_choice(name: Any, overrides: Any = None) -> None:
    """Check the bundle's ``network_name`` and ``network_overrides`` before anything is built.

    Args:
        name: ``network_name``: a preset (``unet-small``) or family (``unet``) name.
        overrides: ``network_overrides``: a mapping of constructor arguments of that family
            (e.g. ``{"fusion": "cascade", "se": False}`` for SE-FPN), or None.

    Raises:
        ValueError: naming the key and the valid names or constructor arguments.
    """
    known = sorted(PRESETS) + sorted(NETWORKS)
    if not isinstance(name, str) or name not in known:
        raise ValueError(f"network_name: unknown network {name!r}; expected one of {known}")
    if overrides is None:
        return
    if not isinstance(overrides, Mapping):
        raise ValueError(f"network_overrides: expected a mapping of constructor arguments (e.g. "
                         f"{{fusion: cascade}}), got {overrides!r}")
    cls = NETWORKS[network_config(name)["name"]]
    valid = [k for k in constructor_keys(cls) if k not in BUNDLE_SET_KEYS]
    for key in overrides:
        if key in BUNDLE_SET_KEYS:
            raise ValueError(f"network_overrides: {key!r} is set by the bundle (network_name, num_classes, "
                             "ds_factor, prior); set that key instead")
        if key not in valid:
            raise ValueError(f"network_overrides: {key!r} is not an argument of {cls.__name__} "
                             f"({name}); valid keys: {valid}")
        if isinstance(inspect.signature(cls.__init__).parameters[key].default, bool):
            parse_flag(overrides[key], f"network_overrides#{key}")


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``.

    Args:
        model: the network.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        The number of parameters.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

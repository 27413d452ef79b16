"""The resolution pyramid every cryo3d network is built on: widths per level, output level, input checks.

Level ``i`` of a network has stride ``2**i``; ``channels[i]`` is its width and
``depth = len(channels) - 1`` is the number of downsamplings, so inputs must be divisible
by ``2**depth``. A network emits its logits at level ``log2(ds_factor)``.
:class:`PyramidNetwork` resolves these once for :class:`~cryo3d.networks.unet.UNet3D` and
:class:`~cryo3d.networks.sefpn.SEFPN3D` and checks an input against them; the checks are
TorchScript-compatible (``torch.jit.script`` compiles them with the network's ``forward``).
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

#: Default activation and normalisation of every convolution block (MONAI layer-factory specs).
DEFAULT_ACT = ("leakyrelu", {"negative_slope": 0.01, "inplace": True})
DEFAULT_NORM = ("instance", {"affine": True})


def output_level(ds_factor: int) -> int:
    """Pyramid level ``log2(ds_factor)`` at which a network emits its output.

    Args:
        ds_factor: the output stride.

    Returns:
        ``log2(ds_factor)``.

    Raises:
        ValueError: If ``ds_factor`` is not a positive power of two.
    """
    ds = int(ds_factor)
    if ds != ds_factor or ds < 1 or ds & (ds - 1):
        raise ValueError(f"ds_factor must be a power of two (1, 2, 4, ...), got {ds_factor!r}")
    return ds.bit_length() - 1


def shape_text(shape: List[int]) -> str:
    """``shape`` written as a Python tuple, ``"(16, 18, 16)"`` (TorchScript-compatible)."""
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join([str(s) for s in shape]) + ")"


def check_divisible(spatial_shape: List[int], divisor: int, network: str) -> None:
    """Raise a clear error when an input's spatial size is not a multiple of ``divisor``.

    Args:
        spatial_shape: ``(Z, Y, X)`` of the input.
        divisor: ``2 ** depth`` of the network.
        network: name used in the message.

    Raises:
        ValueError: naming the sizes that are not multiples of ``divisor``.
    """
    bad: List[int] = []
    for s in spatial_shape:
        if s % divisor != 0:
            bad.append(s)
    if len(bad) > 0:
        raise ValueError(
            f"{network}: input spatial size {shape_text(spatial_shape)} (z, y, x) must be divisible by "
            f"2**depth = {divisor}; pad or crop the patch (sizes {bad} are not)"
        )


def normalise_channels(
    channels: Sequence[int] | None,
    depth: int | None,
    base_channels: int | None,
    network: str,
    default: Sequence[int] = (16, 32, 64, 128),
) -> tuple[int, ...]:
    """Resolve the per-level channel list from ``channels`` or ``(base_channels, depth)``.

    ``channels[i]`` is the width at pyramid level ``i`` (stride ``2**i``); the number of
    downsampling steps (the network's ``depth``) is ``len(channels) - 1``. With
    ``channels`` None, ``channels = base_channels * 2**i`` for ``i = 0..depth``, where a
    missing ``base_channels`` or ``depth`` is taken from ``default``.

    Args:
        channels: width per level, or None.
        depth: number of downsamplings (must match ``channels`` when both are given).
        base_channels: width of level 0 when ``channels`` is None.
        network: name used in error messages.
        default: the channels when neither ``channels`` nor ``depth``/``base_channels`` is given.

    Returns:
        The width of every level, ``depth + 1`` positive ints.

    Raises:
        ValueError: On fewer than 2 levels, a non-positive width or a ``depth`` that does not
            match ``channels``.
    """
    if channels is None:
        if depth is None and base_channels is None:
            channels = default
        else:
            base = int(default[0]) if base_channels is None else int(base_channels)
            levels = len(default) - 1 if depth is None else int(depth)
            channels = [base * 2**i for i in range(levels + 1)]
    chans = tuple(int(c) for c in channels)
    if len(chans) < 2:
        raise ValueError(f"{network}: channels needs at least 2 levels (depth >= 1), got {chans}")
    if any(c <= 0 for c in chans):
        raise ValueError(f"{network}: channels must be positive, got {chans}")
    if depth is not None and int(depth) != len(chans) - 1:
        raise ValueError(
            f"{network}: depth={depth} does not match channels={chans} (depth = number of downsamplings = len(channels) - 1)"
        )
    return chans


class PyramidNetwork(nn.Module):
    """Base of the cryo3d networks: the pyramid's levels and the checks of an input against them.

    Args:
        network: the network's name in messages (``"UNet3D"``).
        in_channels: input channels (1 for a tomogram).
        out_channels: number of classes ``C`` (logits out).
        ds_factor: output stride, a power of two with ``log2(ds_factor) <= depth``.
        channels: width per level (see :func:`normalise_channels`).
        depth: alternative to ``channels``, with ``base_channels``.
        base_channels: alternative to ``channels``, with ``depth``.

    Attributes:
        channels: the width per level.
        depth: number of downsamplings, ``len(channels) - 1``.
        out_level: level of the output, ``log2(ds_factor)``.
        output_stride: ``ds_factor``.
        spatial_divisor: ``2**depth``: input spatial sizes must be multiples of it.

    Raises:
        ValueError: On bad channels or a ``ds_factor`` that is not a power of two within the depth.
    """

    def __init__(
        self,
        network: str,
        in_channels: int,
        out_channels: int,
        ds_factor: int,
        channels: Sequence[int] | None,
        depth: int | None,
        base_channels: int | None,
    ) -> None:
        super().__init__()
        chans = normalise_channels(channels, depth, base_channels, network)
        self.network_name = network
        self.depth = len(chans) - 1
        self.out_level = output_level(ds_factor)
        if self.out_level > self.depth:
            raise ValueError(f"{network}: ds_factor={ds_factor} needs depth >= {self.out_level}, got depth={self.depth}")
        self.channels = chans
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.output_stride = int(ds_factor)
        self.spatial_divisor = 2**self.depth

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error unless ``x`` is ``[B, C, Z, Y, X]`` with sizes divisible by ``2**depth``.

        Args:
            x: the network's input.

        Raises:
            ValueError: naming the expected layout or the sizes that do not divide.
        """
        if x.dim() != 5:
            raise ValueError(f"{self.network_name}: expected input [B, C, Z, Y, X], got shape {shape_text(x.shape)}")
        check_divisible(x.shape[2:], self.spatial_divisor, self.network_name)

"""Pieces shared by every cryo3d network: the prior-initialised output head and shape checks.

The output head is a 1x1x1 convolution producing one logit per particle class. Its bias
is set to ``logit(prior)`` and its weights to small values, so that at initialisation
``sigmoid(logits)`` is close to ``prior`` everywhere (the mean foreground fraction of the
heatmap). The loss at initialisation is then what theory says: for BCE on a soft target
of mean ``m``, ``-(m log(prior) + (1 - m) log(1 - prior))`` (the focal-loss / RetinaNet
"prior probability" initialisation, Lin et al. 2017).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

#: Default prior: mean foreground fraction of a typical heatmap (sparse particles).
DEFAULT_PRIOR = 0.01

#: Default standard deviation of the head's initial weights (RetinaNet uses 0.01).
DEFAULT_HEAD_INIT_STD = 0.01


def prior_logits(prior: float | Sequence[float], out_channels: int) -> torch.Tensor:
    """Bias values ``log(p / (1 - p))`` so that ``sigmoid(bias) == prior``.

    Parameters
    ----------
    prior : float or sequence of float
        Initial foreground probability, one value for all channels or one per channel;
        each in the open interval (0, 1).
    out_channels : int
        Number of output channels ``C``.

    Returns
    -------
    torch.Tensor
        float32 ``[C]``.
    """
    if isinstance(prior, (int, float)):
        values = [float(prior)] * out_channels
    else:
        values = [float(p) for p in prior]
        if len(values) != out_channels:
            raise ValueError(f"prior: expected a float or {out_channels} values (one per output channel), got {len(values)}")
    for p in values:
        if not 0.0 < p < 1.0:
            raise ValueError(f"prior: every value must lie in the open interval (0, 1), got {p}")
    return torch.tensor([math.log(p / (1.0 - p)) for p in values], dtype=torch.float32)


class PriorHead(nn.Module):
    """1x1x1 convolution to ``out_channels`` logits, bias initialised to ``logit(prior)``.

    Parameters
    ----------
    in_channels, out_channels : int
        Feature channels in, class logits out.
    prior : float or sequence of float
        Initial ``sigmoid`` output (per channel or shared), see :func:`prior_logits`.
    init_std : float
        Standard deviation of the initial weights (normal, mean 0). Small values keep the
        initial output close to ``prior``; 0 makes it exactly ``prior``.
    spatial_dims : int
        2 or 3 (3 for tomograms).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        prior: float | Sequence[float] = DEFAULT_PRIOR,
        init_std: float = DEFAULT_HEAD_INIT_STD,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        conv_type = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.conv = conv_type(in_channels, out_channels, kernel_size=1, bias=True)
        if init_std < 0:
            raise ValueError(f"head_init_std must be >= 0, got {init_std}")
        with torch.no_grad():
            if init_std == 0:
                self.conv.weight.zero_()
            else:
                nn.init.normal_(self.conv.weight, mean=0.0, std=init_std)
            self.conv.bias.copy_(prior_logits(prior, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def output_level(ds_factor: int) -> int:
    """Pyramid level ``log2(ds_factor)`` at which a network emits its output.

    Raises
    ------
    ValueError
        If ``ds_factor`` is not a positive power of two.
    """
    ds = int(ds_factor)
    if ds != ds_factor or ds < 1 or ds & (ds - 1):
        raise ValueError(f"ds_factor must be a power of two (1, 2, 4, ...), got {ds_factor!r}")
    return ds.bit_length() - 1


def check_divisible(spatial_shape: Sequence[int], divisor: int, network: str) -> None:
    """Raise a clear error when an input's spatial size is not a multiple of ``divisor``.

    Parameters
    ----------
    spatial_shape : sequence of int
        ``(Z, Y, X)`` of the input.
    divisor : int
        ``2 ** depth`` of the network.
    network : str
        Name used in the message.
    """
    bad = [int(s) for s in spatial_shape if int(s) % divisor]
    if bad:
        raise ValueError(
            f"{network}: input spatial size {tuple(int(s) for s in spatial_shape)} (z, y, x) must be divisible by "
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

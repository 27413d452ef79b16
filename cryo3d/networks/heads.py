"""The prior-initialised output head every cryo3d network ends with.

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

    Args:
        prior: Initial foreground probability, one value for all channels or one per
            channel; each in the open interval (0, 1).
        out_channels: Number of output channels ``C``.

    Returns:
        float32 ``[C]``.

    Raises:
        ValueError: On a wrong number of values or a value outside (0, 1).
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

    Args:
        in_channels: Feature channels in.
        out_channels: Class logits out.
        prior: Initial ``sigmoid`` output (per channel or shared), see :func:`prior_logits`.
        init_std: Standard deviation of the initial weights (normal, mean 0). Small values
            keep the initial output close to ``prior``; 0 makes it exactly ``prior``.
        spatial_dims: 2 or 3 (3 for tomograms).

    Raises:
        ValueError: On a negative ``init_std`` or a bad ``prior``.
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

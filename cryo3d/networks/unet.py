"""3D U-Net with an output stride: logits at ``1 / ds_factor`` of the input resolution.

Built from MONAI's blocks (``ResidualUnit`` for the encoder and decoder stages,
``Convolution`` (transposed) or ``UpSample`` for upsampling). Unlike
``monai.networks.nets.UNet``, the decoder stops at the heatmap's resolution: with
``ds_factor = 2`` there is no full-resolution decoding, which saves the most expensive
stage of a 3D U-Net. The encoder still starts at full resolution, so fine detail enters
through the strided convolutions.
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit, UpSample
from torch import nn

from cryo3d.networks.heads import (
    DEFAULT_HEAD_INIT_STD,
    DEFAULT_PRIOR,
    PriorHead,
    check_divisible,
    normalise_channels,
    output_level,
)

DEFAULT_ACT = ("leakyrelu", {"negative_slope": 0.01, "inplace": True})
DEFAULT_NORM = ("instance", {"affine": True})


class UNet3D(nn.Module):
    """3D residual U-Net whose decoder stops at output stride ``ds_factor``.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for a tomogram).
    out_channels : int
        Number of classes ``C``; the network returns logits ``[B, C, Z/ds, Y/ds, X/ds]``.
    ds_factor : int
        Output stride, a power of two with ``log2(ds_factor) <= depth`` (1, 2 or 4 in use).
    channels : sequence of int, optional
        Width per level; level ``i`` has stride ``2**i``. ``depth = len(channels) - 1``
        downsamplings, so input sizes must be divisible by ``2**depth``.
        Default ``(16, 32, 64, 128)`` (the ``unet-small`` preset).
    depth, base_channels : int, optional
        Alternative to ``channels``: ``channels = base_channels * 2**i, i = 0..depth``
        (missing one taken from the default). ``depth`` given together with ``channels``
        must match it.
    num_res_units : int
        Convolutions per ``ResidualUnit`` (encoder and decoder stages).
    norm, act : str or (str, dict)
        MONAI layer-factory specs (e.g. ``"instance"``, ``("group", {"num_groups": 8})``,
        ``"batch"``). Instance norm (default) keeps samples independent in training mode.
    dropout : float
        Dropout probability in every convolution block (0 disables it).
    upsample : {"deconv", "trilinear"}
        Transposed convolution (with norm and activation) or trilinear interpolation
        preceded by a 1x1x1 convolution (MONAI ``UpSample``, ``nontrainable`` mode).
    prior : float or sequence of float
        Initial sigmoid output of every channel (see :class:`~cryo3d.networks.heads.PriorHead`).
    head_init_std : float
        Standard deviation of the output layer's initial weights.

    Attributes
    ----------
    output_stride : int
        ``ds_factor``.
    spatial_divisor : int
        ``2**depth``: input spatial sizes must be multiples of it.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 6,
        ds_factor: int = 2,
        channels: Sequence[int] | None = None,
        depth: int | None = None,
        base_channels: int | None = None,
        num_res_units: int = 2,
        norm: str | tuple = DEFAULT_NORM,
        act: str | tuple = DEFAULT_ACT,
        dropout: float = 0.0,
        upsample: str = "deconv",
        prior: float | Sequence[float] = DEFAULT_PRIOR,
        head_init_std: float = DEFAULT_HEAD_INIT_STD,
    ) -> None:
        super().__init__()
        chans = normalise_channels(channels, depth, base_channels, "UNet3D")
        self.depth = len(chans) - 1
        self.out_level = output_level(ds_factor)
        if self.out_level > self.depth:
            raise ValueError(f"UNet3D: ds_factor={ds_factor} needs depth >= {self.out_level}, got depth={self.depth}")
        if upsample not in ("deconv", "trilinear"):
            raise ValueError(f"UNet3D: upsample must be 'deconv' or 'trilinear', got {upsample!r}")
        self.channels = chans
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.output_stride = int(ds_factor)
        self.spatial_divisor = 2**self.depth
        drop = float(dropout) if dropout else None

        def res_unit(cin: int, cout: int, stride: int) -> ResidualUnit:
            return ResidualUnit(
                3, cin, cout, strides=stride, kernel_size=3, subunits=num_res_units, act=act, norm=norm, dropout=drop
            )

        # encoder: level 0 at full resolution, level i at stride 2**i
        self.encoder = nn.ModuleList([res_unit(self.in_channels, chans[0], 1)])
        for i in range(1, self.depth + 1):
            self.encoder.append(res_unit(chans[i - 1], chans[i], 2))

        # decoder: from the bottom up to the output level only
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(self.depth - 1, self.out_level - 1, -1):
            if upsample == "deconv":
                up: nn.Module = Convolution(
                    3, chans[i + 1], chans[i], strides=2, kernel_size=3, is_transposed=True, act=act, norm=norm, dropout=drop
                )
            else:
                up = UpSample(
                    3, chans[i + 1], chans[i], scale_factor=2, mode="nontrainable", interp_mode="trilinear",
                    align_corners=False,
                )
            self.up.append(up)
            self.decoder.append(res_unit(2 * chans[i], chans[i], 1))

        self.head = PriorHead(chans[self.out_level], self.out_channels, prior=prior, init_std=head_init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C, Z/ds, Y/ds, X/ds]`` for an input ``[B, in_channels, Z, Y, X]``."""
        if x.ndim != 5:
            raise ValueError(f"UNet3D: expected input [B, C, Z, Y, X], got shape {tuple(x.shape)}")
        check_divisible(x.shape[2:], self.spatial_divisor, "UNet3D")
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        for k, (up, dec) in enumerate(zip(self.up, self.decoder)):
            level = self.depth - 1 - k
            x = dec(torch.cat([up(x), skips[level]], dim=1))
        return self.head(x)

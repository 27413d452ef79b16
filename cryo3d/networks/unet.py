"""3D U-Net with an output stride: logits at ``1 / ds_factor`` of the input resolution.

Built from MONAI's blocks (``ResidualUnit`` for the encoder and decoder stages,
``Convolution`` (transposed) or ``UpSample`` for upsampling). Unlike
``monai.networks.nets.UNet``, the decoder stops at the heatmap's resolution: with
``ds_factor = 2`` there is no full-resolution decoding, which saves the most expensive
stage of a 3D U-Net. The encoder still starts at full resolution, so fine detail enters
through the strided convolutions.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit, UpSample
from torch import nn

from cryo3d.networks.heads import DEFAULT_HEAD_INIT_STD, DEFAULT_PRIOR, PriorHead
from cryo3d.networks.pyramid import DEFAULT_ACT, DEFAULT_NORM, PyramidNetwork


class UNet3D(PyramidNetwork):
    """3D residual U-Net whose decoder stops at output stride ``ds_factor``.

    Args:
        in_channels: Input channels (1 for a tomogram).
        out_channels: Number of classes ``C``; the network returns logits
            ``[B, C, Z/ds, Y/ds, X/ds]``.
        ds_factor: Output stride, a power of two with ``log2(ds_factor) <= depth`` (1, 2 or
            4 in use).
        channels: Width per level; level ``i`` has stride ``2**i``. ``depth = len(channels) - 1``
            downsamplings, so input sizes must be divisible by ``2**depth``.
            Default ``(16, 32, 64, 128)`` (the ``unet-small`` preset).
        depth: Alternative to ``channels``, with ``base_channels``:
            ``channels = base_channels * 2**i, i = 0..depth`` (missing one taken from the
            default). ``depth`` given together with ``channels`` must match it.
        base_channels: See ``depth``.
        num_res_units: Convolutions per ``ResidualUnit`` (encoder and decoder stages).
        norm: MONAI layer-factory spec, str or (str, dict) (e.g. ``"instance"``,
            ``("group", {"num_groups": 8})``, ``"batch"``). Instance norm (default) keeps
            samples independent in training mode.
        act: MONAI layer-factory spec of the activation, str or (str, dict).
        dropout: Dropout probability in every convolution block (0 disables it).
        upsample: ``"deconv"`` or ``"trilinear"``: transposed convolution (with norm and
            activation) or trilinear interpolation preceded by a 1x1x1 convolution (MONAI
            ``UpSample``, ``nontrainable`` mode).
        prior: Initial sigmoid output of every channel, float or one per channel (see
            :class:`~cryo3d.networks.heads.PriorHead`).
        head_init_std: Standard deviation of the output layer's initial weights.

    Attributes:
        output_stride: ``ds_factor``.
        spatial_divisor: ``2**depth``: input spatial sizes must be multiples of it.

    Raises:
        ValueError: On bad channels, ``ds_factor`` or ``upsample``.
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
        super().__init__("UNet3D", in_channels, out_channels, ds_factor, channels, depth, base_channels)
        chans = self.channels
        if upsample not in ("deconv", "trilinear"):
            raise ValueError(f"UNet3D: upsample must be 'deconv' or 'trilinear', got {upsample!r}")
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
        self.check_input(x)
        skips: List[torch.Tensor] = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        level = self.depth - 1
        for up, dec in zip(self.up, self.decoder):
            x = dec(torch.cat([up(x), skips[level]], dim=1))
            level -= 1
        return self.head(x)

"""SE-FPN: a residual 3D encoder with squeeze-and-excitation and a feature-pyramid decoder.

Encoder: a stem convolution, then per level ``i`` (stride ``2**i``) a few residual blocks
whose residual branch ends with MONAI's ``ChannelSELayer`` (Hu et al. 2018). ``se=False``
removes exactly those SE layers (the ablation), nothing else.

Decoder: a feature pyramid over the levels whose stride is at least the output stride
(``levels L..depth`` with ``L = log2(ds_factor)``; finer levels only feed the encoder).
Each pyramid level gets a 1x1x1 lateral convolution to ``fpn_channels``, then one of three
fusions brings the pyramid to the output stride:

* ``parallel``: every level is upsampled (trilinear) straight to the output stride; the
  concatenation is fused by one 1x1x1 convolution, all levels at once (a 3x3x3 fusion of
  ``levels * fpn_channels`` inputs at the output stride cost more than the encoder).
* ``cascade``: the classic top-down FPN path: from the coarsest level down, upsample by 2,
  add the next lateral, smooth with a 3x3x3 convolution, level by level.
* ``pc``: both paths on the same laterals, concatenated and fused by a 1x1x1 convolution.

A 3x3x3 convolution and the prior-initialised 1x1x1 head give ``C`` logits.

The residual block is written here (from MONAI ``Convolution`` and ``ChannelSELayer``)
because MONAI's ``SEBlock`` family is bottleneck-only (1x1-3x3-1x1), always carries its SE
layer and hard-codes batch norm, so it could serve neither the SE ablation nor instance
norm. MONAI has no 3D FPN decoder for dense outputs at a chosen stride
(``FeaturePyramidNetwork`` returns the levels separately), hence the fusions.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from monai.networks.blocks import ChannelSELayer, Convolution, UpSample
from monai.networks.layers.factories import Act, split_args
from torch import nn

from cryo3d.networks.heads import DEFAULT_HEAD_INIT_STD, DEFAULT_PRIOR, PriorHead
from cryo3d.networks.pyramid import DEFAULT_ACT, DEFAULT_NORM, PyramidNetwork

FUSIONS = ("parallel", "cascade", "pc")


@torch.jit.interface
class _TensorModule(nn.Module):
    """What TorchScript needs to call a module picked from a ``ModuleList`` by a loop index."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - nn.Sequential's argument name
        pass


class SEResBlock(nn.Module):
    """Basic residual block ``act(SE(conv-norm-act-conv-norm(x)) + shortcut(x))``.

    Args:
        in_channels: Channels in.
        out_channels: Channels out.
        stride: 1, or 2 to halve every spatial size (first block of a level).
        norm: MONAI layer-factory spec of the normalisation, str or (str, dict).
        act: MONAI layer-factory spec of the activation, str or (str, dict).
        dropout: Dropout after the first convolution (None: none).
        se: Whether the residual branch ends with a ``ChannelSELayer``.
        se_reduction: SE reduction ratio ``r`` (hidden width ``out_channels // r``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        norm: str | tuple = DEFAULT_NORM,
        act: str | tuple = DEFAULT_ACT,
        dropout: float | None = None,
        se: bool = True,
        se_reduction: int = 4,
    ) -> None:
        super().__init__()
        self.conv1 = Convolution(3, in_channels, out_channels, strides=stride, kernel_size=3, act=act, norm=norm, dropout=dropout)
        self.conv2 = Convolution(3, out_channels, out_channels, kernel_size=3, act=None, norm=norm)
        self.se: nn.Module = ChannelSELayer(3, out_channels, r=se_reduction) if se else nn.Identity()
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = Convolution(3, in_channels, out_channels, strides=stride, kernel_size=1, act=None, norm=norm)
        act_name, act_args = split_args(act)
        self.act = Act[act_name](**act_args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.conv2(self.conv1(x))) + self.shortcut(x))


def _upsample(channels: int, scale: int) -> nn.Module:
    """Parameter-free trilinear upsampling by ``scale`` (identity for 1)."""
    if scale == 1:
        return nn.Identity()
    return UpSample(
        3, channels, channels, scale_factor=scale, mode="nontrainable", pre_conv=None, interp_mode="trilinear",
        align_corners=False,
    )


class SEFPN3D(PyramidNetwork):
    """Residual SE encoder + feature-pyramid decoder, logits at output stride ``ds_factor``.

    Args:
        in_channels: Input channels (1 for a tomogram).
        out_channels: Number of classes ``C``; returns logits ``[B, C, Z/ds, Y/ds, X/ds]``.
        ds_factor: Output stride, a power of two with ``log2(ds_factor) <= depth``.
        channels: Encoder width per level (stride ``2**i``); ``depth = len(channels) - 1``;
            inputs must be divisible by ``2**depth``. Default ``(16, 32, 64, 128)``.
        depth: Alternative to ``channels``, with ``base_channels`` (``base_channels * 2**i``).
        base_channels: See ``depth``.
        blocks_per_level: Residual blocks per level, int or one per level (the first of
            levels ``>= 1`` is strided). Level 0 may have 0 blocks (stem only).
        fpn_channels: Width of the pyramid (laterals, fusions, head).
        fusion: ``"parallel"``, ``"cascade"`` or ``"pc"``: the pyramid fusion, see the
            module docstring.
        se: Squeeze-and-excitation in every encoder block (False for the ablation).
        se_reduction: SE reduction ratio.
        norm: As in :class:`~cryo3d.networks.unet.UNet3D`.
        act: As in :class:`~cryo3d.networks.unet.UNet3D`.
        dropout: As in :class:`~cryo3d.networks.unet.UNet3D`.
        prior: Output-layer initialisation, see :class:`~cryo3d.networks.heads.PriorHead`.
        head_init_std: Output-layer initialisation, see :class:`~cryo3d.networks.heads.PriorHead`.

    Raises:
        ValueError: On bad channels, ``ds_factor``, ``fusion`` or ``blocks_per_level``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 6,
        ds_factor: int = 2,
        channels: Sequence[int] | None = None,
        depth: int | None = None,
        base_channels: int | None = None,
        blocks_per_level: int | Sequence[int] = 1,
        fpn_channels: int = 32,
        fusion: str = "pc",
        se: bool = True,
        se_reduction: int = 4,
        norm: str | tuple = DEFAULT_NORM,
        act: str | tuple = DEFAULT_ACT,
        dropout: float = 0.0,
        prior: float | Sequence[float] = DEFAULT_PRIOR,
        head_init_std: float = DEFAULT_HEAD_INIT_STD,
    ) -> None:
        super().__init__("SEFPN3D", in_channels, out_channels, ds_factor, channels, depth, base_channels)
        chans = self.channels
        if fusion not in FUSIONS:
            raise ValueError(f"SEFPN3D: fusion must be one of {FUSIONS}, got {fusion!r}")
        if isinstance(blocks_per_level, int):
            blocks = [blocks_per_level] * len(chans)
        else:
            blocks = [int(b) for b in blocks_per_level]
        if len(blocks) != len(chans) or blocks[0] < 0 or any(b < 1 for b in blocks[1:]):
            raise ValueError(
                f"SEFPN3D: blocks_per_level needs {len(chans)} values (level 0 >= 0, others >= 1), got {blocks_per_level}"
            )
        self.blocks_per_level = tuple(blocks)
        self.fusion = fusion
        self.se = bool(se)
        drop = float(dropout) if dropout else None

        def block(cin: int, cout: int, stride: int) -> SEResBlock:
            return SEResBlock(cin, cout, stride, norm=norm, act=act, dropout=drop, se=se, se_reduction=se_reduction)

        # encoder
        self.stem = Convolution(3, self.in_channels, chans[0], kernel_size=3, act=act, norm=norm)
        self.encoder = nn.ModuleList([nn.Sequential(*[block(chans[0], chans[0], 1) for _ in range(blocks[0])])])
        for i in range(1, self.depth + 1):
            stage = [block(chans[i - 1], chans[i], 2)] + [block(chans[i], chans[i], 1) for _ in range(blocks[i] - 1)]
            self.encoder.append(nn.Sequential(*stage))

        # pyramid: levels out_level .. depth
        self.levels = list(range(self.out_level, self.depth + 1))
        f = int(fpn_channels)
        self.lateral = nn.ModuleList([Convolution(3, chans[i], f, kernel_size=1, conv_only=True) for i in self.levels])
        if fusion in ("cascade", "pc"):
            # one smoothing conv per merged level (every pyramid level but the coarsest)
            self.up2 = _upsample(f, 2)
            self.smooth = nn.ModuleList(
                [Convolution(3, f, f, kernel_size=3, act=act, norm=norm) for _ in self.levels[:-1]]
            )
        if fusion in ("parallel", "pc"):
            self.to_output = nn.ModuleList([_upsample(f, 2 ** (i - self.out_level)) for i in self.levels])
            self.parallel_fuse = Convolution(3, f * len(self.levels), f, kernel_size=1, act=act, norm=norm)
        if fusion == "pc":
            self.pc_fuse = Convolution(3, 2 * f, f, kernel_size=1, act=act, norm=norm)
        self.head_conv = Convolution(3, f, f, kernel_size=3, act=act, norm=norm, dropout=drop)
        self.head = PriorHead(f, self.out_channels, prior=prior, init_std=head_init_std)

    def _cascade(self, lats: List[torch.Tensor]) -> torch.Tensor:
        p = lats[-1]
        for k in range(len(lats) - 2, -1, -1):
            smooth: _TensorModule = self.smooth[k]  # indexed by a loop variable: TorchScript needs the interface
            p = smooth.forward(lats[k] + self.up2(p))
        return p

    def _parallel(self, lats: List[torch.Tensor]) -> torch.Tensor:
        ups: List[torch.Tensor] = []
        for j, up in enumerate(self.to_output):
            ups.append(up(lats[j]))
        return self.parallel_fuse(torch.cat(ups, dim=1))

    def _fuse(self, lats: List[torch.Tensor]) -> torch.Tensor:
        # by the modules this fusion built (TorchScript resolves hasattr when compiling)
        if hasattr(self, "pc_fuse"):
            return self.pc_fuse(torch.cat([self._cascade(lats), self._parallel(lats)], dim=1))
        if hasattr(self, "smooth"):
            return self._cascade(lats)
        return self._parallel(lats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C, Z/ds, Y/ds, X/ds]`` for an input ``[B, in_channels, Z, Y, X]``."""
        self.check_input(x)
        feats: List[torch.Tensor] = []
        x = self.stem(x)
        for stage in self.encoder:
            x = stage(x)
            feats.append(x)
        lats: List[torch.Tensor] = []
        for j, lat in enumerate(self.lateral):
            lats.append(lat(feats[self.levels[j]]))
        return self.head(self.head_conv(self._fuse(lats)))

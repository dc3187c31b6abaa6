"""`TimeEmbedResBlock` (official `models/time_embed.py`): a 3-D conv residual block with an optional timestep bias.

    h = Conv3d(SiLU(GN(x)));  h += Linear(SiLU(emb)) (per channel);  h = Conv3d(Drop(SiLU(GN(h))));  out = skip(x) + h

Layout NCDHW = (B, C, T, H, W). GroupNorm uses 32 groups when the channels divide by 32, else one group per
channel (so the 65-channel input with the observation indicator has 65 groups); eps 1e-5. Official Sequential
indices are kept: in_layers.{0 norm, 1 SiLU, 2 conv}, emb_layers.{0 SiLU, 1 linear},
out_layers.{0 norm, 1 SiLU, 2 dropout, 3 conv}. The last conv starts at zero, so a fresh block is the identity
(or the 1×1×1 skip).
"""
from __future__ import annotations

from mindspore import nn

from ..kernels import Conv3d, GroupNorm
from .init import init_linear, zero_cell


def _groups(channels: int, preferred: int = 32) -> int:
    return preferred if channels % preferred == 0 else channels


def conv3d(cin: int, cout: int, kernel: int) -> nn.Conv3d:
    # the kernels' Conv3d: the direct 3×3×3 kernel for kernel 3, nn.Conv3d itself for the 1×1×1 skip
    return Conv3d(cin, cout, kernel, pad_mode="pad", padding=kernel // 2, has_bias=True)


class TimeEmbedResBlock(nn.Cell):
    def __init__(self, channels: int, out_channels: int, dropout: float = 0.0, emb_channels: int = 0,
                 use_scale_shift_norm: bool = False):
        super().__init__()
        if use_scale_shift_norm:
            raise ValueError("time_embed_use_scale_shift_norm=True is not supported; valid: False")
        self.use_embed = emb_channels > 0
        # the SiLU after each GroupNorm runs inside the norm (one fused pass); the Identity keeps the official
        # Sequential indices, and so the parameter names
        self.in_layers = nn.SequentialCell([GroupNorm(_groups(channels), channels, eps=1e-5, silu=True),
                                            nn.Identity(), conv3d(channels, out_channels, 3)])
        if self.use_embed:
            self.emb_layers = nn.SequentialCell([nn.SiLU(), init_linear(nn.Dense(emb_channels, out_channels), "0")])
        self.out_layers = nn.SequentialCell([GroupNorm(_groups(out_channels), out_channels, eps=1e-5, silu=True),
                                             nn.Identity(),
                                             nn.Dropout(p=dropout), zero_cell(conv3d(out_channels, out_channels, 3))])
        self.has_skip = channels != out_channels
        if self.has_skip:
            self.skip_connection = conv3d(channels, out_channels, 1)

    def construct(self, x, emb=None):
        """x (B, C, T, H, W), emb (B, C_t) or None → (B, C_out, T, H, W)."""
        h = self.in_layers(x)
        if self.use_embed:
            h = h + self.emb_layers(emb)[:, :, None, None, None]
        h = self.out_layers(h)
        skip = self.skip_connection(x) if self.has_skip else x
        return skip + h

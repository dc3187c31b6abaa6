"""Frame-wise KL autoencoder of PreDiff (official `prediff.taming.AutoencoderKL`).

Layout NCHW; sequences are folded as (B·T, C, H, W) by the caller. With k = len(block_out_channels)
the latent grid is H / 2^(k-1) (128 → 16 for the paper's four blocks).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from mindspore import Tensor, nn

from . import posterior
from .blocks import (DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D, check_activation, conv2d,
                     group_norm)

DOWN_BLOCK_TYPES = ("DownEncoderBlock2D",)
UP_BLOCK_TYPES = ("UpDecoderBlock2D",)


def _block_kind(name: str, valid: Tuple[str, ...], what: str) -> str:
    # The official factories strip a leading "UNetRes" before looking the name up.
    kind = name[len("UNetRes"):] if name.startswith("UNetRes") else name
    if kind not in valid:
        raise ValueError(f"unsupported {what} {name!r}; valid: {', '.join(valid)}")
    return kind


class Encoder(nn.Cell):
    """(N, C_in, H, W) → (N, 2·latent, H/2^(k-1), W/2^(k-1)): conv_in, down blocks, mid block, norm, SiLU, conv_out."""

    def __init__(self, in_channels: int, latent_channels: int, block_out_channels: Sequence[int],
                 layers_per_block: int, norm_num_groups: int):
        super().__init__()
        chans = list(block_out_channels)
        self.conv_in = conv2d(in_channels, chans[0], 3, padding=1)
        self.down_blocks = nn.CellList([
            DownEncoderBlock2D(chans[max(i - 1, 0)], chans[i], layers_per_block, norm_num_groups,
                               add_downsample=i < len(chans) - 1)
            for i in range(len(chans))])
        self.mid_block = UNetMidBlock2D(chans[-1], norm_num_groups)
        self.conv_norm_out = group_norm(norm_num_groups, chans[-1], silu=True)
        self.conv_out = conv2d(chans[-1], 2 * latent_channels, 3, padding=1)

    def construct(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for block in self.down_blocks:
            h = block(h)
        h = self.mid_block(h)
        return self.conv_out(self.conv_norm_out(h))


class Decoder(nn.Cell):
    """(N, latent, h, w) → (N, C_out, h·2^(k-1), w·2^(k-1)): conv_in, mid block, up blocks, norm, SiLU, conv_out.

    Up blocks run over the reversed channel list with layers_per_block + 1 resnets each. No output activation.
    """

    def __init__(self, latent_channels: int, out_channels: int, block_out_channels: Sequence[int],
                 layers_per_block: int, norm_num_groups: int):
        super().__init__()
        chans = list(reversed(block_out_channels))
        self.conv_in = conv2d(latent_channels, chans[0], 3, padding=1)
        self.mid_block = UNetMidBlock2D(chans[0], norm_num_groups)
        self.up_blocks = nn.CellList([
            UpDecoderBlock2D(chans[max(i - 1, 0)], chans[i], layers_per_block + 1, norm_num_groups,
                             add_upsample=i < len(chans) - 1)
            for i in range(len(chans))])
        self.conv_norm_out = group_norm(norm_num_groups, chans[-1], silu=True)
        self.conv_out = conv2d(chans[-1], out_channels, 3, padding=1)

    def construct(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)
        h = self.mid_block(h)
        for block in self.up_blocks:
            h = block(h)
        return self.conv_out(self.conv_norm_out(h))


class AutoencoderKL(nn.Cell):
    """The PreDiff VAE; constructor arguments are the official ones (`config_json` of the fixtures).

    Parameter names follow the official state_dict (spec Appendix C), so
    `models.load_official_state_dict(net, state)` loads official weights directly. Fresh weights use
    MindSpore's Conv2d/Dense defaults, which equal PyTorch's (kaiming-uniform a = √5, bias U(±1/√fan_in)).

    Graph mode: jit a `def` function that calls `net.encode` / `net.decode` / `net(...)`. Compiling a bound
    method directly (`ms.jit(net.encode)`) works on its own, but MindSpore 2.10 then leaves
    `net.__parse_method__ = "encode"` behind, so a later graph that calls `net(...)` compiles `encode`
    in place of `construct` and fails.

    `sample_size` and `scaling_factor` exist in the official signature but do not affect the network;
    they are accepted and stored for completeness.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3,
                 down_block_types: Sequence[str] = ("DownEncoderBlock2D",),
                 up_block_types: Sequence[str] = ("UpDecoderBlock2D",),
                 block_out_channels: Sequence[int] = (64,), layers_per_block: int = 1, act_fn: str = "silu",
                 latent_channels: int = 4, norm_num_groups: int = 32, sample_size: int = 32,
                 scaling_factor: float = 0.18215):
        super().__init__()
        check_activation(act_fn)
        down = [_block_kind(t, DOWN_BLOCK_TYPES, "down block type") for t in down_block_types]
        up = [_block_kind(t, UP_BLOCK_TYPES, "up block type") for t in up_block_types]
        chans = [int(c) for c in block_out_channels]
        if not chans or len(down) != len(chans) or len(up) != len(chans):
            raise ValueError(f"down_block_types ({len(down)}), up_block_types ({len(up)}) and block_out_channels "
                             f"({len(chans)}) must have the same non-zero length")
        if min(chans) < 1 or layers_per_block < 1 or latent_channels < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError("channel counts and layers_per_block must be positive integers")
        self.latent_channels = int(latent_channels)
        self.downscale = 2 ** (len(chans) - 1)
        self.sample_size = sample_size
        self.scaling_factor = scaling_factor
        self.encoder = Encoder(in_channels, latent_channels, chans, layers_per_block, norm_num_groups)
        self.decoder = Decoder(latent_channels, out_channels, chans, layers_per_block, norm_num_groups)
        self.quant_conv = conv2d(2 * latent_channels, 2 * latent_channels, 1)
        self.post_quant_conv = conv2d(latent_channels, latent_channels, 1)

    def encode(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) → posterior moments (N, 2·latent, H/f, W/f), f = 2^(len(blocks)-1).

        Channels [0, latent) are the mean, the rest the raw log-variance; see `models.vae.posterior`."""
        return self.quant_conv(self.encoder(x))

    def decode(self, z: Tensor) -> Tensor:
        """(N, latent, h, w) → reconstruction (N, C_out, h·f, w·f), unbounded (no output activation)."""
        return self.decoder(self.post_quant_conv(z))

    def construct(self, x: Tensor, noise: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """(reconstruction (N, C_out, H, W), moments (N, 2·latent, H/f, W/f)).

        The latent is `mean + std · noise` when `noise` (N, latent, H/f, W/f) is given, else the mean."""
        moments = self.encode(x)
        z = posterior.mode(moments) if noise is None else posterior.sample(moments, noise)
        return self.decode(z), moments

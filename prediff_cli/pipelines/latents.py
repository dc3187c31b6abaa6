"""Frame-wise VAE coding of NTHWC sequences (docs/design.md).

PreDiff's VAE works on single frames; sequences are folded as (N·T, C, H, W). These cells do the folding so the
rest of the pipeline speaks NTHWC everywhere: pixels (B, T, H, W, 1) on 0–1 ↔ latents (B, T, h, w, L).
"""
from __future__ import annotations

from mindspore import nn, ops

from prediff.compile import compiled


class SequenceEncoder(nn.Cell):
    """Pixels (B, T, H, W, C) → posterior moments (B, T, h, w, 2L): channels [:L] mean, [L:] log-variance."""

    def __init__(self, vae: nn.Cell):
        super().__init__()
        self.vae = vae

    def construct(self, x):
        b, t, h, w, c = x.shape
        frames = ops.transpose(x.reshape(b * t, h, w, c), (0, 3, 1, 2))
        moments = self.vae.encode(frames)
        _, m, hh, ww = moments.shape
        return ops.transpose(moments, (0, 2, 3, 1)).reshape(b, t, hh, ww, m)


class SequenceDecoder(nn.Cell):
    """Latents (B, T, h, w, L) → pixels (B, T, H, W, C) on the 0–1 scale (not clipped)."""

    def __init__(self, vae: nn.Cell, scale_factor: float = 1.0):
        super().__init__()
        self.vae = vae
        self.inv_scale = 1.0 / float(scale_factor)

    def construct(self, z):
        b, t, h, w, l = z.shape
        frames = ops.transpose(z.reshape(b * t, h, w, l), (0, 3, 1, 2)) * self.inv_scale
        x = self.vae.decode(frames)
        _, c, hh, ww = x.shape
        return ops.transpose(x, (0, 2, 3, 1)).reshape(b, t, hh, ww, c)


def split_moments(moments):
    """(…, 2L) → mean (…, L), log-variance (…, L) clamped to [-30, 20] as the official posterior does."""
    mean, logvar = ops.split(moments, moments.shape[-1] // 2, axis=-1)
    return mean, ops.clamp(logvar, -30.0, 20.0)


def posterior_sample(moments, noise):
    """mean + exp(½·logvar)·noise on channel-last moments."""
    mean, logvar = split_moments(moments)
    return mean + ops.exp(0.5 * logvar) * noise


def frozen(net: nn.Cell) -> nn.Cell:
    """Inference mode and no gradients: the VAE is fixed while the latent models train."""
    net.set_train(False)
    for p in net.get_parameters():
        p.requires_grad = False
    return net


def jit_encoder(vae: nn.Cell):
    """A compiled pixels → moments function for a frozen VAE."""
    encoder = SequenceEncoder(vae)

    @compiled
    def encode(x):
        return encoder(x)

    return encode


def jit_decoder(vae: nn.Cell, scale_factor: float = 1.0):
    """A compiled latents → pixels function for a frozen VAE."""
    decoder = SequenceDecoder(vae, scale_factor)

    @compiled
    def decode(z):
        return decoder(z)

    return decode

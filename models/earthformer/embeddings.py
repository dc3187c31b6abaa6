"""Timestep and position embeddings (official `models/utils.py` and `PosEmbed`)."""
from __future__ import annotations

import math

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from .init import normal_table


#: how the sinusoid's frequencies are computed: "official" as the official PyTorch code does (float32 exp accurate to
#: about 1e-7); "mindearth" with MindSpore's float32 exp, as MindEarth's port does (on CPU accurate to only about
#: 4.5e-6, which moves cos(t·f) by up to 1e-3 near t = 1000: a converted MindEarth network must compute them its way)
TIMESTEP_FREQUENCIES = ("official", "mindearth")


def timestep_frequencies(dim: int, max_period: float = 10000.0, kind: str = "official") -> np.ndarray:
    """f_k = exp(−ln(max_period)·k/half), k = 0..half−1, float32, computed the `kind` way (`TIMESTEP_FREQUENCIES`)."""
    half = dim // 2
    if kind == "mindearth":  # MindEarth's expression, in MindSpore ops on the current device
        return ops.exp(-math.log(max_period) * ops.arange(start=0, end=half, dtype=ms.float32) / half).asnumpy()
    if kind != "official":
        raise ValueError(f"unknown timestep_frequencies {kind!r}; valid: {', '.join(TIMESTEP_FREQUENCIES)}")
    return np.exp(-math.log(max_period) * np.arange(half, dtype=np.float32) / half).astype(np.float32)


class TimestepEmbedding(nn.Cell):
    """Integer timesteps (B,) → sinusoidal embedding (B, dim): [cos(t·f), sin(t·f)] (cosines first), zero-padded
    by one column when `dim` is odd; `frequencies` as in `timestep_frequencies`."""

    def __init__(self, dim: int, frequencies: str = "official"):
        super().__init__()
        self.dim = dim
        self.freqs = Tensor(timestep_frequencies(dim, kind=frequencies)[None, :])

    def construct(self, t):
        args = ops.cast(t, ms.float32)[:, None] * self.freqs
        emb = ops.concat((ops.cos(args), ops.sin(args)), axis=-1)
        if self.dim % 2:
            emb = ops.concat((emb, ops.zeros_like(emb[:, :1])), axis=-1)
        return emb


class TimeEmbedLayer(nn.Cell):
    """`layer`: Linear(base → C_t), SiLU, Linear(C_t → C_t); keeps the framework's default Linear init (the
    official reset does not touch it)."""

    def __init__(self, base_channels: int, time_embed_channels: int):
        super().__init__()
        self.layer = nn.SequentialCell([nn.Dense(base_channels, time_embed_channels), nn.SiLU(),
                                        nn.Dense(time_embed_channels, time_embed_channels)])

    def construct(self, x):
        return self.layer(x)


class PosEmbed(nn.Cell):
    """Learned "t+h+w" position embedding: x (B, T, H, W, C) + T_embed[t] + H_embed[h] + W_embed[w]."""

    def __init__(self, embed_dim: int, max_t: int, max_h: int, max_w: int, typ: str = "t+h+w"):
        super().__init__()
        if typ != "t+h+w":
            raise ValueError(f"unsupported pos_embed_type {typ!r}; valid: t+h+w")
        self.embed_dim = embed_dim
        self.T_embed = nn.Embedding(max_t, embed_dim, embedding_table=normal_table((max_t, embed_dim)))
        self.H_embed = nn.Embedding(max_h, embed_dim, embedding_table=normal_table((max_h, embed_dim)))
        self.W_embed = nn.Embedding(max_w, embed_dim, embedding_table=normal_table((max_w, embed_dim)))

    def construct(self, x):
        _, t, h, w, c = x.shape
        # the positions are 0..n−1 along each axis, so the lookup is a slice of each table
        return x + self.T_embed.embedding_table[:t].reshape(t, 1, 1, c) \
            + self.H_embed.embedding_table[:h].reshape(1, h, 1, c) \
            + self.W_embed.embedding_table[:w].reshape(1, 1, w, c)

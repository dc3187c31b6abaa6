"""Timestep and position embeddings (reference spec §3.3)."""
from __future__ import annotations

import math

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from .init import normal_table


def timestep_frequencies(dim: int, max_period: float = 10000.0) -> np.ndarray:
    """f_k = exp(−ln(max_period)·k/half), k = 0..half−1 (float32, as the official code computes them)."""
    half = dim // 2
    return np.exp(-math.log(max_period) * np.arange(half, dtype=np.float32) / half).astype(np.float32)


class TimestepEmbedding(nn.Cell):
    """Integer timesteps (B,) → sinusoidal embedding (B, dim): [cos(t·f), sin(t·f)] (cosines first), zero-padded
    by one column when `dim` is odd."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.freqs = Tensor(timestep_frequencies(dim)[None, :])

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

"""Attention-pool readout of the alignment network (CLIP-style, official `AttentionPool3d`).

Tokens (N, C, L) → prepend their mean as token 0 → add a learned positional embedding (C, L+1) → 1×1 conv to
q|k|v → multi-head attention (q and k both scaled by head_dim^−¼, heads contiguous within each of q, k, v) →
1×1 conv to the output channels → token 0.
"""
from __future__ import annotations

import numpy as np
from mindspore import Parameter, Tensor, nn, ops


class AttentionPool3d(nn.Cell):
    def __init__(self, data_dim: int, embed_dim: int, num_heads: int, output_dim: int):
        super().__init__()
        self.positional_embedding = Parameter(
            Tensor((np.random.standard_normal((embed_dim, data_dim + 1)) / embed_dim ** 0.5).astype(np.float32)),
            name="positional_embedding")
        self.qkv_proj = nn.Conv1d(embed_dim, 3 * embed_dim, 1, has_bias=True)
        self.c_proj = nn.Conv1d(embed_dim, output_dim, 1, has_bias=True)
        self.num_heads = num_heads
        self.scale = 1.0 / float(np.sqrt(np.sqrt(embed_dim // num_heads)))

    def construct(self, x):
        """x (N, C, L) → (N, output_dim)."""
        n, c, _ = x.shape
        x = ops.concat((x.mean(axis=-1, keep_dims=True), x), axis=-1) + self.positional_embedding[None]
        length = x.shape[-1]
        qkv = self.qkv_proj(x)
        q, k, v = ops.split(qkv, c, axis=1)
        hc = c // self.num_heads
        q = (q * self.scale).reshape(n * self.num_heads, hc, length)
        k = (k * self.scale).reshape(n * self.num_heads, hc, length)
        v = v.reshape(n * self.num_heads, hc, length)
        weights = ops.softmax(ops.matmul(ops.transpose(q, (0, 2, 1)), k), axis=-1)  # (N·heads, L, L)
        out = ops.matmul(v, ops.transpose(weights, (0, 2, 1))).reshape(n, c, length)
        return self.c_proj(out)[:, :, 0]

"""Single-head spatial self-attention of the VAE mid block (official `AttentionBlock`)."""
from __future__ import annotations

import math

from mindspore import Tensor, nn, ops

from ..kernels import GroupNorm


class AttentionBlock(nn.Cell):
    """(N, C, H, W) → (N, C, H, W): x + proj_attn(softmax(q kᵀ / √C) v) over the L = H·W positions.

    q, k, v are linear maps (C → C, with bias) of the group-normalised input. The official cells
    `query`, `key`, `value`, `proj_attn` are kept for their parameter names; their weights are applied
    as one 2-D GEMM over all N·L tokens (measured faster on CPU than calling the Dense cells on
    (N, L, C) or multiplying channel-first with a broadcast weight).
    """

    def __init__(self, channels: int, groups: int, eps: float):
        super().__init__()
        if channels % groups:
            raise ValueError(f"norm_num_groups={groups} does not divide {channels} channels")
        self.scale = 1.0 / math.sqrt(channels)
        self.group_norm = GroupNorm(groups, channels, eps=eps)
        self.query = nn.Dense(channels, channels)
        self.key = nn.Dense(channels, channels)
        self.value = nn.Dense(channels, channels)
        self.proj_attn = nn.Dense(channels, channels)
        self.matmul_nt = ops.MatMul(transpose_b=True)
        self.bmm_nt = ops.BatchMatMul(transpose_b=True)

    def _linear(self, dense: nn.Dense, tokens: Tensor) -> Tensor:
        # tokens (N·L, C_in) → (N·L, C_out); PyTorch/MindSpore Dense weight layout is (C_out, C_in).
        return ops.bias_add(self.matmul_nt(tokens, dense.weight), dense.bias)

    def construct(self, x: Tensor) -> Tensor:
        n, c, height, width = x.shape
        length = height * width
        tokens = self.group_norm(x).reshape(n, c, length).transpose(0, 2, 1).reshape(n * length, c)
        q = self._linear(self.query, tokens).reshape(n, length, c)
        k = self._linear(self.key, tokens).reshape(n, length, c)
        v = self._linear(self.value, tokens).reshape(n, length, c)
        probs = ops.softmax(self.bmm_nt(q * self.scale, k), axis=-1)  # (N, L_query, L_key)
        out = self._linear(self.proj_attn, ops.bmm(probs, v).reshape(n * length, c))
        return x + out.reshape(n, length, c).transpose(0, 2, 1).reshape(n, c, height, width)

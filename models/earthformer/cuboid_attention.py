"""Cuboid self-attention with relative position bias (official `cuboid_transformer.py`; Earthformer, NeurIPS 2022).

The (T, H, W) grid is cut into non-overlapping cuboids of size (bT, bH, bW); attention runs inside each cuboid,
all cuboids in parallel. Axis strategy "l" (local) splits an axis of length L as (L/b, b) — contiguous blocks;
"d" (dilated) as (b, L/b) — strided samples. Cuboids are ordered row-major over the block-count axes of T, H, W,
and positions inside a cuboid row-major over the block axes.

Everything that depends on shapes (padding, cuboid reorder permutations, the relative-position gather index) is
fixed at construction from the layer's `data_shape`, so the compiled graph has static shapes and no
data-dependent control flow. Shifted windows are not supported (PreDiff's patterns use none). Sizes the cuboids
do not divide are zero-padded after the LayerNorm and the padding takes part in the attention unmasked — the
official behaviour for padding_type "zeros", the only one PreDiff uses.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common import dtype as mstype

from ..keyed_dropout import KeyedDropout
from ..kernels import CuboidAttentionCore, Dense, LayerNorm
from .init import init_linear, normal_table

STRATEGIES = ("l", "d")


def effective_cuboid_size(data_shape: Sequence[int], cuboid_size: Sequence[int]) -> Tuple[int, int, int]:
    """A cuboid dimension larger than the data is clipped to the data (official `update_cuboid_size_shift_size`)."""
    return tuple(min(int(d), int(b)) for d, b in zip(data_shape, cuboid_size))


def relative_position_index(cuboid_size: Sequence[int]) -> np.ndarray:
    """(V, V) int64 index into the bias table, V = bT·bH·bW:
    idx = (Δt + bT−1)(2bH−1)(2bW−1) + (Δh + bH−1)(2bW−1) + (Δw + bW−1), Δ = coord_i − coord_j ('ij' meshgrid)."""
    bt, bh, bw = (int(b) for b in cuboid_size)
    coords = np.stack(np.meshgrid(np.arange(bt), np.arange(bh), np.arange(bw), indexing="ij")).reshape(3, -1)
    rel = coords[:, :, None] - coords[:, None, :]
    return ((rel[0] + bt - 1) * (2 * bh - 1) * (2 * bw - 1) + (rel[1] + bh - 1) * (2 * bw - 1)
            + (rel[2] + bw - 1)).astype(np.int64)


def _reorder_plan(padded: Sequence[int], cuboid: Sequence[int], strategy: Sequence[str]):
    """Shapes and permutations turning (B, T, H, W, C) into (B, num_cuboids, volume, C) and back."""
    split, nblock_axes, block_axes = [], [], []
    for i, (length, b, s) in enumerate(zip(padded, cuboid, strategy)):
        if s == "l":
            split += [length // b, b]
            nblock_axes.append(2 * i + 1)
            block_axes.append(2 * i + 2)
        else:
            split += [b, length // b]
            nblock_axes.append(2 * i + 2)
            block_axes.append(2 * i + 1)
    forward = (0,) + tuple(nblock_axes) + tuple(block_axes) + (7,)
    inverse = tuple(int(i) for i in np.argsort(forward))
    counts = tuple(split[a - 1] for a in nblock_axes)
    sizes = tuple(split[a - 1] for a in block_axes)
    return tuple(split), forward, counts + sizes, inverse


class CuboidSelfAttentionLayer(nn.Cell):
    """Pre-norm cuboid self-attention on (B, T, H, W, C); returns the attention output (the residual is added
    by the caller). `data_shape` = (T, H, W) of the inputs this layer will see."""

    def __init__(self, dim: int, num_heads: int, cuboid_size: Sequence[int], data_shape: Sequence[int],
                 strategy: Sequence[str] = ("l", "l", "l"), padding_type: str = "zeros", attn_drop: float = 0.0,
                 proj_drop: float = 0.0, use_final_proj: bool = True, use_relative_pos: bool = True,
                 attn_linear_init_mode: str = "0", proj_linear_init_mode: str = "2"):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if any(s not in STRATEGIES for s in strategy):
            raise ValueError(f"unsupported cuboid strategy {tuple(strategy)}; valid per axis: {', '.join(STRATEGIES)}")
        if padding_type != "zeros":
            raise ValueError(f"unsupported padding_type {padding_type!r}; valid: zeros")
        self.dim, self.num_heads = dim, num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.cuboid_size = tuple(int(b) for b in cuboid_size)
        self.use_relative_pos, self.use_final_proj = use_relative_pos, use_final_proj

        t, h, w = (int(d) for d in data_shape)
        eff = effective_cuboid_size((t, h, w), self.cuboid_size)
        self.pads = tuple((b - d % b) % b for d, b in zip((t, h, w), eff))
        self.data_shape = (t, h, w)
        padded = tuple(d + p for d, p in zip((t, h, w), self.pads))
        self.split_shape, self.forward_perm, self.blocked_shape, self.inverse_perm = \
            _reorder_plan(padded, eff, strategy)
        self.padded_shape = padded
        self.volume = int(np.prod(eff))
        self.num_cuboids = int(np.prod(padded)) // self.volume

        self.norm = LayerNorm(dim, epsilon=1e-5)
        self.qkv = init_linear(Dense(dim, 3 * dim, has_bias=False), attn_linear_init_mode)
        self.attn_drop = nn.Dropout(p=attn_drop)
        if use_final_proj:
            self.proj = init_linear(Dense(dim, dim), proj_linear_init_mode)
            self.proj_drop = nn.Dropout(p=proj_drop)
        if use_relative_pos:
            rows = (2 * self.cuboid_size[0] - 1) * (2 * self.cuboid_size[1] - 1) * (2 * self.cuboid_size[2] - 1)
            self.relative_position_bias_table = Parameter(normal_table((rows, num_heads)),
                                                          name="relative_position_bias_table")
            self._index = relative_position_index(self.cuboid_size)
            # the official code slices the constructor-size index to the effective volume
            self.bias_index = Tensor(self._index[:self.volume, :self.volume].reshape(-1).astype(np.int32))
        self._matmul_tb = ops.MatMul(transpose_b=True)
        # the fused attention core (and its gradient kernel) replaces the reorder / batched-matmul path wherever
        # it computes the same function: in inference, and in training without attention dropout or with the
        # trainers' keyed dropout (the kernel applies the same masks; MindSpore's own dropout stream it cannot
        # reproduce); `fuse_core = False` forces the standard path (tests compare the two)
        self.fuse_core = True
        self.attn_drop_p = float(attn_drop)
        self.no_drop = Tensor(np.uint32(0))
        self.core = CuboidAttentionCore(num_heads, self.scale, eff, strategy, padded)
        if not use_relative_pos:
            self.zero_bias = Tensor(np.zeros((num_heads, self.volume, self.volume), np.float32))

    def _relative_bias(self):
        """(heads, V, V): the bias of query position i and key position j inside a cuboid, per head."""
        v = self.volume
        bias = ops.gather(self.relative_position_bias_table, self.bias_index, 0).reshape(v, v, self.num_heads)
        return ops.transpose(bias, (2, 0, 1))

    def official_buffers(self):
        return {"relative_position_index": self._index} if self.use_relative_pos else {}

    def construct(self, x):
        b, t, h, w, c = x.shape
        if self.fuse_core and self.core.fused and x.dtype == mstype.float32:
            if not self.training or self.attn_drop_p == 0.0:
                return self._fused(x, self.no_drop, self.no_drop)
            if isinstance(self.attn_drop.dropout, KeyedDropout):
                return self._fused(x, self.attn_drop.dropout.offset(), self.attn_drop.dropout.threshold)
        x = self.norm(x)
        if self.pads[0] or self.pads[1] or self.pads[2]:
            x = ops.pad(x, (0, 0, 0, self.pads[2], 0, self.pads[1], 0, self.pads[0]))
        # (B, T, H, W, C) → (B, N, V, C)
        x = x.reshape((b,) + self.split_shape + (c,))
        x = ops.transpose(x, self.forward_perm).reshape(b, self.num_cuboids, self.volume, c)
        nh, hc, n, v = self.num_heads, self.head_dim, self.num_cuboids, self.volume
        # q, k, v from three 2-D matmuls on slices of the fused weight: slicing a (…, 3, heads, hc) activation
        # costs more on CPU than the projection itself; the 1/sqrt(hc) scale is folded into the q weight
        rows = x.reshape(-1, c)
        weight = self.qkv.weight  # (3C, C)
        q = self._matmul_tb(rows, weight[:c] * self.scale)
        k = self._matmul_tb(rows, weight[c:2 * c])
        val = self._matmul_tb(rows, weight[2 * c:])
        q = ops.transpose(q.reshape(b, n, v, nh, hc), (0, 1, 3, 2, 4))  # (B, N, heads, V, hc)
        k = ops.transpose(k.reshape(b, n, v, nh, hc), (0, 1, 3, 4, 2))  # (B, N, heads, hc, V)
        val = ops.transpose(val.reshape(b, n, v, nh, hc), (0, 1, 3, 2, 4))
        score = ops.matmul(q, k)  # (B, N, heads, V, V)
        if self.use_relative_pos:
            score = score + self._relative_bias()
        weights = self.attn_drop(ops.softmax(score, axis=-1))
        out = ops.matmul(weights, val)  # (B, N, heads, V, hc)
        out = ops.transpose(out, (0, 1, 3, 2, 4)).reshape(b, n, v, c)
        if self.use_final_proj:
            out = self.proj_drop(self.proj(out))
        # (B, N, V, C) → (B, T, H, W, C)
        out = ops.transpose(out.reshape((b,) + self.blocked_shape + (c,)), self.inverse_perm)
        out = out.reshape((b,) + self.padded_shape + (c,))
        if self.pads[0] or self.pads[1] or self.pads[2]:
            out = out[:, :t, :h, :w]
        return out

    def _fused(self, x, drop_offset, drop_threshold):
        """The natural layout throughout: one projection to q, k, v, the fused core, the output projection."""
        # through the layer itself, so that it runs the GEMM kernels and an activation stash can keep its output
        qkv = self.qkv(self.norm(x))
        bias = self._relative_bias() if self.use_relative_pos else self.zero_bias
        out = self.core(qkv, bias, drop_offset, drop_threshold)
        if self.use_final_proj:
            out = self.proj_drop(self.proj(out))
        return out

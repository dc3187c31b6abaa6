"""`StackCuboidSelfAttentionBlock` with inter-FFNs: for each pattern layer j, x = x + attn_j(x); x = ffn_j(x)."""
from __future__ import annotations

from typing import Sequence

from mindspore import nn

from .cuboid_attention import CuboidSelfAttentionLayer
from .ffn import PositionwiseFFN


class StackCuboidSelfAttentionBlock(nn.Cell):
    def __init__(self, dim: int, num_heads: int, cuboid_sizes: Sequence[Sequence[int]], data_shape: Sequence[int],
                 attn_drop: float = 0.0, proj_drop: float = 0.0, ffn_drop: float = 0.0, activation: str = "gelu",
                 padding_type: str = "zeros", use_relative_pos: bool = True, use_final_proj: bool = True,
                 attn_linear_init_mode: str = "0", ffn_linear_init_mode: str = "0",
                 ffn2_linear_init_mode: str = "2", attn_proj_linear_init_mode: str = "2"):
        super().__init__()
        self.ffn_l = nn.CellList([
            PositionwiseFFN(dim, 4 * dim, dropout=ffn_drop, activation=activation,
                            linear_init_mode=ffn_linear_init_mode, ffn2_linear_init_mode=ffn2_linear_init_mode)
            for _ in cuboid_sizes])
        self.attn_l = nn.CellList([
            CuboidSelfAttentionLayer(dim, num_heads, size, data_shape, padding_type=padding_type,
                                     attn_drop=attn_drop, proj_drop=proj_drop, use_final_proj=use_final_proj,
                                     use_relative_pos=use_relative_pos, attn_linear_init_mode=attn_linear_init_mode,
                                     proj_linear_init_mode=attn_proj_linear_init_mode)
            for size in cuboid_sizes])

    def construct(self, x):
        """x (B, T, H, W, C) → same shape."""
        for attn, ffn in zip(self.attn_l, self.ffn_l):
            x = x + attn(x)
            x = ffn(x)
        return x

"""`NoisyCuboidTransformerEncoder`: the knowledge-alignment network U(z_t, t) (official `models.py`).

The UNet's encoder half on the noisy target latent alone (no context, no observation channel), then a per-frame
attention-pool readout: the last `out_len` frames of the deepest level, (B·T, C, h·w) tokens → GroupNorm →
SiLU → AttentionPool3d → (B, T, out_channels). Trained to predict each target frame's mean intensity (0–1).
"""
from __future__ import annotations

from typing import Optional, Sequence

from mindspore import nn, ops

from ..kernels import ChannelsFirst, ChannelsLast, GroupNorm
from ..recompute import enable_recompute
from .attention_pool import AttentionPool3d
from .embeddings import PosEmbed, TimeEmbedLayer, TimestepEmbedding
from .options import block_widths, check_supported, level_cuboids, level_patterns
from .sampling_layers import merging_levels
from .stack_block import StackCuboidSelfAttentionBlock
from .time_embed_block import TimeEmbedResBlock


class NoisyCuboidTransformerEncoder(nn.Cell):
    def __init__(self, input_shape: Sequence[int], out_channels: int = 1, base_units: int = 128, block_units=None,
                 scale_alpha: float = 1.0, depth=(4, 4, 4), downsample: int = 2, downsample_type: str = "patch_merge",
                 block_attn_patterns=None, num_heads: int = 4, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 ffn_drop: float = 0.0, ffn_activation: str = "gelu", gated_ffn: bool = False,
                 norm_layer: str = "layer_norm", use_inter_ffn: bool = True, hierarchical_pos_embed: bool = False,
                 pos_embed_type: str = "t+h+w", padding_type: str = "zeros", checkpoint_level=0,
                 use_relative_pos: bool = True, self_attn_use_final_proj: bool = True, num_global_vectors: int = 0,
                 use_global_vector_ffn: bool = True, use_global_self_attn: bool = False,
                 separate_global_qkv: bool = False, global_dim_ratio: int = 1, attn_linear_init_mode: str = "0",
                 ffn_linear_init_mode: str = "0", ffn2_linear_init_mode: str = "2",
                 attn_proj_linear_init_mode: str = "2", conv_init_mode: str = "0", down_linear_init_mode: str = "0",
                 global_proj_linear_init_mode: str = "2", norm_init_mode: str = "0",
                 time_embed_channels_mult: int = 4, time_embed_use_scale_shift_norm: bool = False,
                 time_embed_dropout: float = 0.0, pool: str = "attention", readout_seq: bool = True,
                 out_len: Optional[int] = None, timestep_frequencies: str = "official"):
        super().__init__()
        check_supported(num_global_vectors=num_global_vectors, downsample_type=downsample_type, gated_ffn=gated_ffn,
                        norm_layer=norm_layer, hierarchical_pos_embed=hierarchical_pos_embed,
                        use_inter_ffn=use_inter_ffn, time_embed_use_scale_shift_norm=time_embed_use_scale_shift_norm,
                        norm_init_mode=norm_init_mode, conv_init_mode=conv_init_mode)
        if pool != "attention":
            raise ValueError(f"unsupported pool {pool!r}; valid: attention")
        if not readout_seq:
            raise ValueError("readout_seq=False is not supported; valid: True")
        t, h, w, c = (int(v) for v in input_shape)
        self.depth = [int(d) for d in depth]
        self.num_blocks = len(self.depth)
        self.out_len = int(out_len) if out_len is not None else t
        factors = (1, int(downsample), int(downsample))
        self.block_units = block_widths(base_units, self.num_blocks, int(downsample), scale_alpha, block_units)
        time_channels = self.block_units[0] * time_embed_channels_mult

        self.first_proj = TimeEmbedResBlock(c, base_units, dropout=proj_drop)
        self.pos_embed = PosEmbed(base_units, t, h, w, pos_embed_type)
        self.timestep_embedding = TimestepEmbedding(self.block_units[0], timestep_frequencies)
        self.time_embed = TimeEmbedLayer(self.block_units[0], time_channels)
        downs, mem_shapes = merging_levels(self.block_units, (t, h, w, base_units), factors, down_linear_init_mode)
        self.mem_shapes = mem_shapes
        if self.num_blocks > 1:
            self.downsample_layers = nn.CellList(downs)
        cuboids = level_cuboids(level_patterns(block_attn_patterns, self.num_blocks), mem_shapes)
        self.down_self_blocks = nn.CellList([nn.CellList([
            StackCuboidSelfAttentionBlock(
                mem_shapes[i][-1], num_heads, cuboids[i], mem_shapes[i][:3], attn_drop=attn_drop,
                proj_drop=proj_drop, ffn_drop=ffn_drop, activation=ffn_activation, padding_type=padding_type,
                use_relative_pos=use_relative_pos, use_final_proj=self_attn_use_final_proj,
                attn_linear_init_mode=attn_linear_init_mode, ffn_linear_init_mode=ffn_linear_init_mode,
                ffn2_linear_init_mode=ffn2_linear_init_mode, attn_proj_linear_init_mode=attn_proj_linear_init_mode)
            for _ in range(self.depth[i])]) for i in range(self.num_blocks)])
        self.down_time_embed_blocks = nn.CellList([
            TimeEmbedResBlock(mem_shapes[i][-1], mem_shapes[i][-1], dropout=time_embed_dropout,
                              emb_channels=time_channels) for i in range(self.num_blocks)])
        self.to_ncthw, self.to_nthwc = ChannelsFirst(), ChannelsLast()
        # the official `checkpoint_level` (gradient checkpointing) maps onto MindSpore's recomputation marks
        enable_recompute(self, int(checkpoint_level))
        last = mem_shapes[-1]
        # official indices: out.0 GroupNorm(min(C, 32), C), out.1 SiLU, out.2 attention pool; on (B·T, C, h·w);
        # the SiLU runs fused inside the norm, an Identity holds its index
        self.out = nn.SequentialCell([GroupNorm(min(last[-1], 32), last[-1], eps=1e-5, silu=True), nn.Identity(),
                                      AttentionPool3d(last[1] * last[2], last[-1], num_heads, out_channels)])

    def construct(self, zt, t):
        """zt (B, T, H, W, C), t int (B,) → (B, out_len, out_channels)."""
        b = zt.shape[0]
        x = self.to_nthwc(self.first_proj(self.to_ncthw(zt)))
        x = self.pos_embed(x)
        t_emb = self.time_embed(self.timestep_embedding(t))
        for i in range(self.num_blocks):
            if i > 0:
                x = self.downsample_layers[i - 1](x)
            for block in self.down_self_blocks[i]:
                x = self.to_nthwc(self.down_time_embed_blocks[i](self.to_ncthw(x), t_emb))
                x = block(x)
        x = x[:, x.shape[1] - self.out_len:]
        _, tt, hh, ww, cc = x.shape
        tokens = ops.transpose(x.reshape(b * tt, hh * ww, cc), (0, 2, 1))  # (B·T, C, h·w)
        return self.out(tokens).reshape(b, tt, -1)

"""`CuboidTransformerUNet`: PreDiff's latent denoiser (gaozhihan/PreDiff `cuboid_transformer_unet.py`).

Forward, with x the noisy target latent (B, T_out, H, W, C), t (B,) and cond the context latent (B, T_in, H, W, C):
1. concatenate along time, context first → (B, T, H, W, C), T = T_in + T_out;
2. append the observation indicator (1 for context frames, 0 for target frames) → C + 1 channels;
3. `first_proj` (3-D conv res block) to base_units; 4. add the position embedding;
5. t_emb = time_embed(sinusoid(t)); 6. each encoder level: depth × [shared time-embedding res block, cuboid
   block]; skip kept; patch merging between levels; 7. decoder levels mirror the encoder, the skip added on entry,
   nearest upsampling + conv between levels; 8. `final_proj` on the target frames → ε (B, T_out, H, W, C).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from mindspore import Tensor, nn, ops

from ..kernels import ChannelsFirst, ChannelsLast, Dense
from ..recompute import enable_recompute
from .embeddings import PosEmbed, TimeEmbedLayer, TimestepEmbedding
from .init import init_linear
from .options import block_widths, check_supported, level_cuboids, level_patterns
from .sampling_layers import Upsample3DLayer, merging_levels
from .stack_block import StackCuboidSelfAttentionBlock
from .time_embed_block import TimeEmbedResBlock


class CuboidTransformerUNet(nn.Cell):
    def __init__(self, input_shape: Sequence[int], target_shape: Sequence[int], base_units: int = 128,
                 block_units=None, scale_alpha: float = 1.0, depth=(4, 4, 4), downsample: int = 2,
                 downsample_type: str = "patch_merge", upsample_type: str = "upsample", upsample_kernel_size: int = 3,
                 block_attn_patterns=None, num_heads: int = 4, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 ffn_drop: float = 0.0, ffn_activation: str = "gelu", gated_ffn: bool = False,
                 norm_layer: str = "layer_norm", use_inter_ffn: bool = True, hierarchical_pos_embed: bool = False,
                 pos_embed_type: str = "t+h+w", padding_type: str = "zeros", checkpoint_level=0,
                 use_relative_pos: bool = True, self_attn_use_final_proj: bool = True, num_global_vectors: int = 0,
                 use_global_vector_ffn: bool = True, use_global_self_attn: bool = False,
                 separate_global_qkv: bool = False, global_dim_ratio: int = 1, attn_linear_init_mode: str = "0",
                 ffn_linear_init_mode: str = "0", ffn2_linear_init_mode: str = "2",
                 attn_proj_linear_init_mode: str = "2", conv_init_mode: str = "0", down_linear_init_mode: str = "0",
                 up_linear_init_mode: str = "0", global_proj_linear_init_mode: str = "2", norm_init_mode: str = "0",
                 time_embed_channels_mult: int = 4, time_embed_use_scale_shift_norm: bool = False,
                 time_embed_dropout: float = 0.0, unet_res_connect: bool = True,
                 timestep_frequencies: str = "official"):
        super().__init__()
        check_supported(num_global_vectors=num_global_vectors, downsample_type=downsample_type, gated_ffn=gated_ffn,
                        norm_layer=norm_layer, hierarchical_pos_embed=hierarchical_pos_embed,
                        use_inter_ffn=use_inter_ffn, time_embed_use_scale_shift_norm=time_embed_use_scale_shift_norm,
                        norm_init_mode=norm_init_mode, conv_init_mode=conv_init_mode)
        if upsample_type != "upsample":
            raise ValueError(f"unsupported upsample_type {upsample_type!r}; valid: upsample")
        t_in, h, w, c = (int(v) for v in input_shape)
        t_out, h2, w2, c2 = (int(v) for v in target_shape)
        if (h, w, c) != (h2, w2, c2):
            raise ValueError(f"input_shape {tuple(input_shape)} and target_shape {tuple(target_shape)} must share H, W, C")
        self.in_len, self.out_len, self.channels = t_in, t_out, c
        self.depth = [int(d) for d in depth]
        self.num_blocks = len(self.depth)
        self.unet_res_connect = unet_res_connect
        factors = (1, int(downsample), int(downsample))
        self.block_units = block_widths(base_units, self.num_blocks, int(downsample), scale_alpha, block_units)
        time_channels = self.block_units[0] * time_embed_channels_mult

        self.first_proj = TimeEmbedResBlock(c + 1, base_units, dropout=proj_drop)
        self.pos_embed = PosEmbed(base_units, t_in + t_out, h, w, pos_embed_type)
        self.timestep_embedding = TimestepEmbedding(self.block_units[0], timestep_frequencies)
        self.time_embed = TimeEmbedLayer(self.block_units[0], time_channels)

        downs, mem_shapes = merging_levels(self.block_units, (t_in + t_out, h, w, base_units), factors,
                                           down_linear_init_mode)
        self.mem_shapes = mem_shapes
        if self.num_blocks > 1:
            self.downsample_layers = nn.CellList(downs)
            self.upsample_layers = nn.CellList([
                Upsample3DLayer(mem_shapes[i + 1][-1], mem_shapes[i][-1], mem_shapes[i][:3], upsample_kernel_size)
                for i in range(self.num_blocks - 1)])
        cuboids = level_cuboids(level_patterns(block_attn_patterns, self.num_blocks), mem_shapes)

        def stack(i):
            return StackCuboidSelfAttentionBlock(
                mem_shapes[i][-1], num_heads, cuboids[i], mem_shapes[i][:3], attn_drop=attn_drop,
                proj_drop=proj_drop, ffn_drop=ffn_drop, activation=ffn_activation, padding_type=padding_type,
                use_relative_pos=use_relative_pos, use_final_proj=self_attn_use_final_proj,
                attn_linear_init_mode=attn_linear_init_mode, ffn_linear_init_mode=ffn_linear_init_mode,
                ffn2_linear_init_mode=ffn2_linear_init_mode, attn_proj_linear_init_mode=attn_proj_linear_init_mode)

        def time_block(i):
            return TimeEmbedResBlock(mem_shapes[i][-1], mem_shapes[i][-1], dropout=time_embed_dropout,
                                     emb_channels=time_channels)

        self.down_self_blocks = nn.CellList([nn.CellList([stack(i) for _ in range(self.depth[i])])
                                             for i in range(self.num_blocks)])
        self.up_self_blocks = nn.CellList([nn.CellList([stack(i) for _ in range(self.depth[i])])
                                           for i in range(self.num_blocks)])
        self.down_time_embed_blocks = nn.CellList([time_block(i) for i in range(self.num_blocks)])
        self.up_time_embed_blocks = nn.CellList([time_block(i) for i in range(self.num_blocks)])
        self.final_proj = init_linear(Dense(base_units, c), "2")
        indicator = np.zeros((1, t_in + t_out, h, w, 1), np.float32)
        indicator[:, :t_in] = 1.0
        self.obs_indicator = Tensor(indicator)
        # (B, T, H, W, C) ↔ (B, C, T, H, W) around the 3-D conv blocks (fused tiled transposes in inference)
        self.to_ncthw, self.to_nthwc = ChannelsFirst(), ChannelsLast()
        # the official `checkpoint_level` (gradient checkpointing) maps onto MindSpore's recomputation marks
        enable_recompute(self, int(checkpoint_level))

    def embed(self, x, t, cond):
        """Steps 1-5: x (B, T_out, H, W, C), t int (B,), cond (B, T_in, H, W, C) → (tokens (B, T, H, W, base_units),
        t_emb (B, time_channels))."""
        x = ops.concat((cond, x), axis=1)
        x = ops.concat((x, ops.broadcast_to(self.obs_indicator, x.shape[:-1] + (1,))), axis=-1)
        x = self.to_nthwc(self.first_proj(self.to_ncthw(x)))
        x = self.pos_embed(x)
        return x, self.time_embed(self.timestep_embedding(t))

    def block(self, x, t_emb, time_block, block):
        """One unit of a level: the level's shared time-embedding res block (channels-first), then a cuboid block."""
        return block(self.to_nthwc(time_block(self.to_ncthw(x), t_emb)))

    def head(self, x):
        """Step 8: tokens (B, T, H, W, base_units) → ε of the target frames (B, T_out, H, W, C)."""
        return self.final_proj(x[:, self.in_len:])

    def construct(self, x, t, cond):
        """x (B, T_out, H, W, C), t int (B,), cond (B, T_in, H, W, C) → ε (B, T_out, H, W, C)."""
        x, t_emb = self.embed(x, t, cond)
        skips = []
        for i in range(self.num_blocks):
            if i > 0:
                x = self.downsample_layers[i - 1](x)
            for blk in self.down_self_blocks[i]:
                x = self.block(x, t_emb, self.down_time_embed_blocks[i], blk)
            if i < self.num_blocks - 1:
                skips.append(x)
        for i in range(self.num_blocks - 1, -1, -1):
            if self.unet_res_connect and i < self.num_blocks - 1:
                x = x + skips[i]
            for blk in self.up_self_blocks[i]:
                x = self.block(x, t_emb, self.up_time_embed_blocks[i], blk)
            if i > 0:
                x = self.upsample_layers[i - 1](x)
        return self.head(x)

    def embed_cells(self):
        """The cells `embed` runs (their parameters are the stem's)."""
        return (self.first_proj, self.pos_embed, self.timestep_embedding, self.time_embed)

    def head_cells(self):
        """The cells `head` runs."""
        return (self.final_proj,)

    def plan(self):
        """`construct` between `embed` and `head` as a flat list of steps, for per-block gradient graphs.

        Each step is (kind, level, cells): "block" → x = self.block(x, t_emb, *cells); "down" / "up" → x = cells[0](x);
        "save" → keep x as the skip of `level`; "add" → x = x + the skip of `level`. Running the steps in order
        (`run_plan`) reproduces `construct` exactly (tested).
        """
        steps = []
        for i in range(self.num_blocks):
            if i > 0:
                steps.append(("down", i, (self.downsample_layers[i - 1],)))
            steps += [("block", i, (self.down_time_embed_blocks[i], blk)) for blk in self.down_self_blocks[i]]
            if i < self.num_blocks - 1:
                steps.append(("save", i, ()))
        for i in range(self.num_blocks - 1, -1, -1):
            if self.unet_res_connect and i < self.num_blocks - 1:
                steps.append(("add", i, ()))
            steps += [("block", i, (self.up_time_embed_blocks[i], blk)) for blk in self.up_self_blocks[i]]
            if i > 0:
                steps.append(("up", i, (self.upsample_layers[i - 1],)))
        return steps

    def run_plan(self, x, t_emb, steps=None, run=None):
        """x, t_emb from `embed` → (the input of `head`, the input x of every step), running `plan()` step by step.

        `steps` (each starting with the plan's kind and level) and `run(step, x, t_emb)`, which computes a "block",
        "down" or "up" step, stand in for the plan and its cells where a caller runs each step its own way (the
        per-block gradient runs compiled graphs and keeps the inputs to recompute from); the skips are kept here.
        """
        steps = self.plan() if steps is None else steps
        run = self._run_step if run is None else run
        kept, skips = [], {}
        for step in steps:
            kind, level = step[0], step[1]
            kept.append(x)
            if kind == "save":
                skips[level] = x
            elif kind == "add":
                x = x + skips[level]
            else:
                x = run(step, x, t_emb)
        return x, kept

    def _run_step(self, step, x, t_emb):
        """A "block", "down" or "up" step of `plan()` on its own cells."""
        kind, _, cells = step
        return self.block(x, t_emb, *cells) if kind == "block" else cells[0](x)

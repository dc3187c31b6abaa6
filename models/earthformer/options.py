"""Shared constructor logic of the two Earthformer networks: which official options are supported, block widths,
and the cuboid sizes of each level."""
from __future__ import annotations

from typing import List, Sequence

from .init import check_mode
from .patterns import cuboid_sizes


def round_to(value: int, multiple: int) -> int:
    """The official `round_to` (kept bit-for-bit: it only changes values that are not multiples)."""
    return value + (value - value % multiple) % multiple


def block_widths(base_units: int, num_blocks: int, downsample: int, scale_alpha: float,
                 block_units=None) -> List[int]:
    if block_units is not None:
        units = [int(u) for u in block_units]
        if len(units) != num_blocks or units[0] != base_units:
            raise ValueError(f"block_units {units} must have {num_blocks} entries starting with base_units {base_units}")
        return units
    return [round_to(base_units * int((downsample ** scale_alpha) ** i), 4) for i in range(num_blocks)]


def level_patterns(block_attn_patterns, num_blocks: int) -> List[str]:
    if block_attn_patterns is None:
        raise ValueError("block_attn_patterns is required (explicit block_cuboid_size lists are not supported)")
    if isinstance(block_attn_patterns, str):
        return [block_attn_patterns] * num_blocks
    patterns = list(block_attn_patterns)
    if len(patterns) != num_blocks:
        raise ValueError(f"block_attn_patterns has {len(patterns)} entries for {num_blocks} levels")
    return patterns


def level_cuboids(patterns: Sequence[str], mem_shapes: Sequence[Sequence[int]]):
    return [cuboid_sizes(p, shape) for p, shape in zip(patterns, mem_shapes)]


def check_supported(num_global_vectors=0, downsample_type="patch_merge", gated_ffn=False, norm_layer="layer_norm",
                    hierarchical_pos_embed=False, use_inter_ffn=True, time_embed_use_scale_shift_norm=False,
                    norm_init_mode="0", conv_init_mode="0", **_ignored) -> None:
    """Reject official options PreDiff does not use, naming what is supported."""
    if num_global_vectors:
        raise ValueError(f"num_global_vectors={num_global_vectors} is not supported; valid: 0")
    if downsample_type != "patch_merge":
        raise ValueError(f"unsupported downsample_type {downsample_type!r}; valid: patch_merge")
    if gated_ffn:
        raise ValueError("gated_ffn=True is not supported; valid: False")
    if norm_layer != "layer_norm":
        raise ValueError(f"unsupported norm_layer {norm_layer!r}; valid: layer_norm")
    if hierarchical_pos_embed:
        raise ValueError("hierarchical_pos_embed=True is not supported; valid: False")
    if not use_inter_ffn:
        raise ValueError("use_inter_ffn=False is not supported; valid: True")
    if time_embed_use_scale_shift_norm:
        raise ValueError("time_embed_use_scale_shift_norm=True is not supported; valid: False")
    check_mode("norm_init_mode", norm_init_mode)
    check_mode("conv_init_mode", conv_init_mode)

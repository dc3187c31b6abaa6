"""Fused float32 CPU kernels (MindSpore AOT custom ops) behind drop-in cells, and their bf16 inference path; see
`fused`, `library` and `precision`."""
from .conv import Conv2d, Conv3d, UpsampleConv2d
from .dense import Dense
from .fused import ChannelsFirst, ChannelsLast, CuboidAttentionCore, Gelu, GroupNorm, LayerNorm
from .library import library_path, unavailable_reason, uses_avx512
from .precision import PRECISIONS, apply_precision, bf16_support, resolve_precision
from .reductions import SquareSum

__all__ = ["ChannelsFirst", "Conv2d", "Conv3d", "Dense", "ChannelsLast", "CuboidAttentionCore", "Gelu", "GroupNorm",
           "LayerNorm", "PRECISIONS", "SquareSum", "UpsampleConv2d", "apply_precision", "bf16_support", "library_path",
           "resolve_precision", "unavailable_reason", "uses_avx512"]

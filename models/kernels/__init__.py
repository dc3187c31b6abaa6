"""Fused float32 CPU kernels (MindSpore AOT custom ops) behind drop-in cells; see `fused` and `library`."""
from .conv import Conv2d, Conv3d, UpsampleConv2d
from .dense import Dense
from .fused import ChannelsFirst, ChannelsLast, CuboidAttentionCore, Gelu, GroupNorm, LayerNorm
from .library import library_path, unavailable_reason, uses_avx512
from .reductions import SquareSum

__all__ = ["ChannelsFirst", "Conv2d", "Conv3d", "Dense", "ChannelsLast", "CuboidAttentionCore", "Gelu", "GroupNorm", "LayerNorm", "SquareSum", "UpsampleConv2d", "library_path",
           "unavailable_reason", "uses_avx512"]
